//! vmm: mc2's user-level virtual machine monitor.
//!
//! ```text
//! vmm IMAGE [--ram-mb N] [--arg N] [--time-limit SECONDS] [--epoch UNIX-SECONDS]
//! ```
//!
//! Creates a VM on the CPU it runs on (`vm_create`), backs its RAM with its
//! own pages, loads the flat image `IMAGE` from the boot bundle and runs it
//! until the guest exits or the VMM stops it. The devices are the virtual
//! PC of `vdev` (COM1, 8259A pair, 8254 PIT, RTC/CMOS, PCI host bridge,
//! debug exit at port 0x501); the exit loop is `vdev::monitor`.
//!
//! Boot protocol (docs/design.md, "User-level VMM"): the image is loaded at
//! guest-physical 0x10000 and entered in real mode at CS:IP = 0x1000:0000
//! (CS base 0x10000), DS = ES = FS = GS = 0x1000, SS:SP = 0000:FFFE, IF
//! clear, EBX = the `--arg` value (default 0), ECX = the RAM size in KiB.
//! RAM spans guest-physical 0 to `--ram-mb` MiB (default 8, at most 1024);
//! the first 2 MiB are mapped at start, the rest in 64 KiB chunks when the
//! guest first touches it; a touch beyond the RAM stops the VM.
//!
//! Output, one line each, all prefixed `[vmN] ` (N: the VM's id):
//! the guest's COM1 lines; `starting IMAGE (S bytes) with M MiB of RAM on
//! cpu C`; `note: ...` (a port without a device, an unknown MSR: once each);
//! at the end either `guest exited with status S` (debug-exit port or
//! hypercall RAX=0/RBX=S; the VMM then exits with S) or `stopped: REASON`
//! and a register line (exit status 3). Errors before the guest runs (no
//! such image, no VT-x/SVM, quota too small) print `vmm: ...` and exit 1;
//! bad usage exits 2. `--time-limit` stops a guest that runs longer.
//!
//! Assumes: the kernel's `vm_*` calls (docs/syscalls.md rows 33-40) and a
//! quota of at least the guest's RAM plus about 64 pages (heap, nested
//! page tables). Nothing the guest does can crash the VMM: every exit goes
//! through the bounds-checked monitor, and guest RAM is only ever reached
//! through safe slices.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use abi::vm::{self, Exit, Regs, Segment};
use abi::Error;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use rt::text::Words;
use rt::{println, proc, sys};
use vdev::board::{Board, Config};
use vdev::monitor::{End, Host, Monitor, CHUNK, MAX_RAM};

/// Where the image goes and where the guest starts (guest-physical).
const LOAD: u64 = 0x10000;
/// Guest RAM mapped before the guest runs.
const INITIAL_RAM: u64 = 2 << 20;
const DEFAULT_RAM_MB: u64 = 8;
/// 2025-01-01 00:00:00 UTC: the RTC's time at start unless `--epoch`.
const DEFAULT_EPOCH: u64 = 1_735_689_600;
/// Quota the VMM keeps beyond guest RAM (its heap, stack, nested tables).
const OVERHEAD_PAGES: u64 = 64;

/// Exit statuses of the VMM itself.
const FAILED: i32 = 1;
const USAGE_STATUS: i32 = 2;
const STOPPED: i32 = 3;

const USAGE: &str = "usage: vmm IMAGE [--ram-mb N] [--arg N] [--time-limit SECONDS] [--epoch UNIX-SECONDS]";

struct Options {
    image: String,
    ram_mb: u64,
    arg: u64,
    time_limit_s: Option<u64>,
    epoch: u64,
}

fn parse(args: &str) -> Result<Options, String> {
    let mut w = Words::new(args);
    let mut o = Options { image: String::new(), ram_mb: DEFAULT_RAM_MB, arg: 0, time_limit_s: None, epoch: DEFAULT_EPOCH };
    while let Some(word) = w.next() {
        match word {
            "--ram-mb" => o.ram_mb = w.need_u64("N after --ram-mb")?,
            "--arg" => o.arg = w.need_u64("N after --arg")?,
            "--time-limit" => o.time_limit_s = Some(w.need_u64("SECONDS after --time-limit")?),
            "--epoch" => o.epoch = w.need_u64("UNIX-SECONDS after --epoch")?,
            opt if opt.starts_with('-') => return Err(alloc::format!("unknown option `{opt}`")),
            image if o.image.is_empty() => o.image = String::from(image),
            extra => return Err(alloc::format!("unexpected argument `{extra}`")),
        }
    }
    if o.image.is_empty() {
        return Err(String::from("missing IMAGE"));
    }
    if o.ram_mb == 0 || o.ram_mb > MAX_RAM >> 20 {
        return Err(alloc::format!("--ram-mb must be 1..={}, not {}", MAX_RAM >> 20, o.ram_mb));
    }
    if o.arg > u32::MAX as u64 {
        return Err(alloc::format!("--arg must fit in 32 bits (it goes in EBX), not {}", o.arg));
    }
    Ok(o)
}

/// One page of guest RAM, page-aligned by its type so that a boxed slice
/// of them can be shared into the VM.
#[repr(C, align(4096))]
#[derive(Clone)]
struct Page([u8; 4096]);

/// The VMM's side of the monitor: system calls, and guest RAM as boxed
/// runs of pages, one per 64 KiB chunk, allocated on demand.
struct Vmm {
    id: u64,
    chunks: Vec<Option<Box<[Page]>>>,
}

impl Vmm {
    /// The bytes of guest-physical `gpa` onwards within its page, if backed.
    fn page_mut(&mut self, gpa: u64) -> Option<&mut [u8]> {
        let chunk = self.chunks.get_mut((gpa / CHUNK) as usize)?.as_mut()?;
        let page = chunk.get_mut(((gpa % CHUNK) / 4096) as usize)?;
        page.0.get_mut((gpa % 4096) as usize..)
    }
}

impl Host for Vmm {
    fn run(&mut self, flags: u64, deadline: u64, in_value: u64) -> Result<Exit, Error> {
        sys::vm_run(self.id, flags, deadline, in_value)
    }

    fn get_regs(&mut self) -> Result<Regs, Error> {
        sys::vm_get_regs(self.id)
    }

    fn set_regs(&mut self, r: &Regs) -> Result<(), Error> {
        sys::vm_set_regs(self.id, r).map(|_| ())
    }

    fn inject(&mut self, vector: u8) -> Result<(), Error> {
        sys::vm_inject(self.id, vector as u64, vm::EXTERNAL, vm::NO_ERROR_CODE).map(|_| ())
    }

    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) -> Result<(), Error> {
        let code = error_code.map(u64::from).unwrap_or(vm::NO_ERROR_CODE);
        sys::vm_inject(self.id, vector as u64, vm::EXCEPTION, code).map(|_| ())
    }

    fn map(&mut self, gpa: u64, pages: u64) -> Result<(), Error> {
        let index = (gpa / CHUNK) as usize;
        if !gpa.is_multiple_of(CHUNK) || pages == 0 || pages > CHUNK / 4096 || index >= self.chunks.len() {
            return Err(Error::Invalid);
        }
        // Out of heap (quota) is an error to report, not a panic.
        let mut run: Vec<Page> = Vec::new();
        run.try_reserve_exact(pages as usize).map_err(|_| Error::QuotaExceeded)?;
        run.resize(pages as usize, Page([0; 4096]));
        let run = run.into_boxed_slice();
        sys::vm_map(self.id, gpa, run.as_ptr() as u64, pages, vm::MAP_WRITE | vm::MAP_EXEC)?;
        self.chunks[index] = Some(run);
        Ok(())
    }

    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let Some(src) = self.page_mut(gpa.saturating_add(done as u64)) else { return false };
            let n = src.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&src[..n]);
            done += n;
        }
        true
    }

    fn write(&mut self, gpa: u64, buf: &[u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let Some(dst) = self.page_mut(gpa.saturating_add(done as u64)) else { return false };
            let n = dst.len().min(buf.len() - done);
            dst[..n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
        true
    }

    fn now(&mut self) -> u64 {
        rt::time::rdtsc()
    }

    fn console(&mut self, line: &[u8]) {
        // The guest's bytes never reach the console raw: no escape sequences.
        let text: String = line.iter().map(|&b| if b == b'\t' || (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect();
        println!("[vm{}] {text}", self.id);
    }

    fn note(&mut self, msg: fmt::Arguments<'_>) {
        println!("[vm{}] note: {msg}", self.id);
    }
}

/// The vCPU at the boot protocol's start (see the crate documentation).
fn initial_regs(arg: u64, ram_bytes: u64) -> Regs {
    let seg = |selector: u16, attrib: u16, base: u64| Segment { selector, attrib, limit: 0xffff, base };
    // Access rights (AMD APM Vol. 2 §15.5.1 layout): 0x9b code, 0x93 data,
    // present and accessed; 0x82 LDT; 0x8b busy TSS, as after reset.
    let data = seg((LOAD >> 4) as u16, 0x93, LOAD);
    let mut r = Regs { rip: 0, rflags: 2, cr0: 0x10, gdt_limit: 0xffff, idt_limit: 0x3ff, ..Regs::default() };
    r.seg = [data; 8];
    r.seg[vm::CS] = seg((LOAD >> 4) as u16, 0x9b, LOAD);
    r.seg[vm::SS] = seg(0, 0x93, 0);
    r.seg[vm::LDTR] = seg(0, 0x82, 0);
    r.seg[vm::TR] = seg(0, 0x8b, 0);
    r.gpr[vm::RSP] = 0xfffe;
    r.gpr[vm::RBX] = arg;
    r.gpr[vm::RCX] = ram_bytes / 1024;
    r
}

fn print_regs(id: u64, r: &Regs) {
    let cs = &r.seg[vm::CS];
    println!(
        "[vm{id}]   rip {:#x} rsp {:#x} rflags {:#x} cr0 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x} cs {:#x} (base {:#x}, attrib {:#x})",
        r.rip, r.gpr[vm::RSP], r.rflags, r.cr0, r.cr3, r.cr4, r.efer, cs.selector, cs.base, cs.attrib
    );
}

fn main() -> i32 {
    let o = match parse(rt::args()) {
        Ok(o) => o,
        Err(e) => {
            println!("vmm: {e}\n{USAGE}");
            return USAGE_STATUS;
        }
    };
    let ram_bytes = o.ram_mb << 20;
    let size = match sys::file_size(&o.image) {
        Ok(s) => s,
        Err(Error::NoSuchProgram) => {
            println!("vmm: no guest image `{}` in the boot bundle (`programs` lists its files)", o.image);
            return FAILED;
        }
        Err(e) => {
            println!("vmm: {}: {e}", o.image);
            return FAILED;
        }
    };
    let initial = INITIAL_RAM.min(ram_bytes);
    if size == 0 || LOAD + size > initial {
        println!("vmm: {}: {size} bytes do not fit between {LOAD:#x} and {initial:#x}, the RAM mapped at start", o.image);
        return FAILED;
    }
    let need = initial / 4096 + OVERHEAD_PAGES;
    match proc::spare_pages(0) {
        Ok(spare) if spare < need => {
            println!("vmm: needs at least {need} pages of quota for the first {} KiB of guest RAM, has {spare} to spare; start it with more (`run -q PAGES`)", initial / 1024);
            return FAILED;
        }
        Ok(_) => {}
        Err(e) => {
            println!("vmm: cannot read the quota: {e}");
            return FAILED;
        }
    }
    let cpu = proc::my_cpu().unwrap_or(0);
    let id = match sys::vm_create() {
        Ok(id) => id,
        Err(Error::NotSupported) => {
            println!("vmm: vm_create: not supported: this machine has no usable hardware virtualization (VT-x or SVM)");
            return FAILED;
        }
        Err(Error::Busy) => {
            println!("vmm: vm_create: cpu {cpu} already runs a VM (`vm list` shows it); start the VMM on another CPU");
            return FAILED;
        }
        Err(e) => {
            println!("vmm: vm_create: {e}");
            return FAILED;
        }
    };
    let status = run_vm(id, &o, ram_bytes, size, cpu);
    if let Err(e) = sys::vm_destroy(id) {
        println!("[vm{id}] vm_destroy: {e}");
    }
    status
}

fn run_vm(id: u64, o: &Options, ram_bytes: u64, size: u64, cpu: u64) -> i32 {
    let mut chunks = Vec::new();
    if chunks.try_reserve_exact((ram_bytes / CHUNK) as usize).is_err() {
        println!("[vm{id}] out of memory for the RAM table");
        return FAILED;
    }
    chunks.resize_with((ram_bytes / CHUNK) as usize, || None);
    let mut host = Vmm { id, chunks };
    let tsc_per_ms = rt::time::ticks_per_ms();
    let now = rt::time::rdtsc();
    let board = Board::new(&Config { tsc_per_ms, ram_bytes, epoch_unix: o.epoch }, now);
    let limit = o.time_limit_s.map(|s| now.saturating_add(s.saturating_mul(1000).saturating_mul(tsc_per_ms)));
    let mut m = Monitor::new(board, ram_bytes, limit, tsc_per_ms);
    if let Err(stop) = m.back_range(&mut host, INITIAL_RAM) {
        println!("[vm{id}] cannot map the first {} KiB of guest RAM: {stop}", INITIAL_RAM.min(ram_bytes) / 1024);
        return FAILED;
    }
    // The image, 4 KiB at a time straight into guest RAM.
    let mut buf = [0u8; 4096];
    let mut off = 0;
    while off < size {
        let n = match sys::file_read(&o.image, off, &mut buf) {
            Ok(0) => break,
            Ok(n) => n as usize,
            Err(e) => {
                println!("[vm{id}] reading {} at {off}: {e}", o.image);
                return FAILED;
            }
        };
        if let Err(stop) = m.load(&mut host, LOAD + off, &buf[..n.min(buf.len())]) {
            println!("[vm{id}] loading {}: {stop}", o.image);
            return FAILED;
        }
        off += n as u64;
    }
    if let Err(e) = sys::vm_set_regs(id, &initial_regs(o.arg, ram_bytes)) {
        println!("[vm{id}] vm_set_regs: {e}");
        return FAILED;
    }
    println!("[vm{id}] starting {} ({size} bytes) with {} MiB of RAM on cpu {cpu}", o.image, ram_bytes >> 20);
    match m.run(&mut host) {
        Ok(End::Exited(s)) => {
            println!("[vm{id}] guest exited with status {s}");
            s as i32
        }
        Ok(End::Stopped(stop)) => {
            println!("[vm{id}] stopped: {stop}");
            if let Ok(r) = sys::vm_get_regs(id) {
                print_regs(id, &r);
            }
            STOPPED
        }
        Err(e) => {
            println!("[vm{id}] {e}");
            FAILED
        }
    }
}

rt::entry!(main);
