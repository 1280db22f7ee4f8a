//! vmm: mc2's user-level virtual machine monitor.
//!
//! ```text
//! vmm IMAGE [--ram-mb N] [--arg N] [--time-limit SECONDS] [--epoch UNIX-SECONDS]
//!           [--initrd FILE] [--trap-cpuid | --user-cpuid] [--no-post] [--lapic | --no-lapic]
//!           [--exit-every-us N] [--exit-notes] [-- KERNEL COMMAND LINE...]
//! ```
//!
//! Creates a VM on the CPU it runs on (`vm_create`), backs its RAM with its
//! own pages, loads `IMAGE` from the boot bundle and runs it until the guest
//! exits or the VMM stops it. `IMAGE` is either a flat image (below) or a
//! Linux bzImage (recognised by its setup header): then the VMM is the boot
//! loader of the Linux 32-bit boot protocol (`linuxboot`, and
//! docs/design.md "Linux guests"): the protected-mode kernel at 1 MiB, the
//! `--initrd` file high in RAM, the boot parameters page with the e820 map,
//! and the command line after `--` (default [`LINUX_CMDLINE`]); RAM
//! defaults to [`LINUX_RAM_MB`] MiB. A Linux guest runs with
//! `RUN_USER_CPUID` (its kernel boots on the filtered CPUID leaves, its
//! programs read the processor's own without a world switch each, under
//! SVM) unless `--trap-cpuid`; `--user-cpuid` asks for it for a flat
//! image too. Writes to the 8259s' ports are posted (`vm_post`: the kernel
//! queues them and answers reads of the masks, the VMM applies them at the
//! next exit) unless `--no-post`. A Linux guest's vCPU has a local APIC in
//! x2APIC mode, kept by the kernel (`RUN_LAPIC`; its timer's deadlines,
//! EOIs and interrupts never come here), and the ACPI tables that tell
//! Linux so (`linuxboot::acpi_tables`), unless `--no-lapic`; `--lapic`
//! gives a flat image one. `--exit-every-us N` is a measuring aid: the
//! running guest exits to the VMM at least every N µs (one more world
//! switch and VMM round trip each time), to time what those cost a
//! workload (`cargo xtask bench guests --exit-every-us N`); so is
//! `--exit-notes`: at each console line of the guest's that starts
//! `mc2-bench `, the VMM prints the exits so far (`[vmN] exits at LINE:
//! all N; kernel-handled: ...`; the bench counts each workload's from
//! them). The devices are the virtual
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
//! Console input: at start the VMM offers its parent a shared page
//! (`ATTACH_VA`); once the shell's `vm attach` completes the pair, bytes
//! typed there reach the guest's COM1 (see docs/design.md).
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

use abi::vm::{self, Exit, ExitKind, Regs, Segment};
use abi::Error;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};
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

const USAGE: &str = "usage: vmm IMAGE [--ram-mb N] [--arg N] [--time-limit SECONDS] [--epoch UNIX-SECONDS] [--initrd FILE] [--trap-cpuid | --user-cpuid] [--no-post] [--lapic | --no-lapic] [--exit-every-us N] [--exit-notes] [-- LINUX COMMAND LINE]";

/// A Linux guest's RAM unless `--ram-mb`: Debian's kernel decompresses
/// itself at 16 MiB into an area of about 64 MiB (`init_size`), and its
/// initramfs goes above that.
const LINUX_RAM_MB: u64 = 128;
/// A Linux guest's command line unless one follows `--`: the console on
/// the emulated 16550, no local APIC (the virtual PC has 8259 PICs only),
/// no reboot on panic (`panic=-1` resets, which ends the VM).
pub const LINUX_CMDLINE: &str = "console=ttyS0 quiet panic=-1 tsc=reliable";

struct Options {
    image: String,
    ram_mb: Option<u64>,
    initrd: Option<String>,
    cmdline: Option<String>,
    arg: u64,
    time_limit_s: Option<u64>,
    epoch: u64,
    /// `RUN_USER_CPUID` asked for (`--user-cpuid`) or refused
    /// (`--trap-cpuid`); by default a Linux guest has it, a flat image not.
    user_cpuid: Option<bool>,
    /// Post the 8259s' ports (`vm_post`) unless `--no-post`.
    post_pic: bool,
    /// A local APIC in the kernel (`RUN_LAPIC`) asked for (`--lapic`) or
    /// refused (`--no-lapic`); by default a Linux guest has it (with the
    /// ACPI tables that tell Linux so), a flat image not.
    lapic: Option<bool>,
    /// `--exit-every-us N`: a measuring aid (`Monitor::exit_every`).
    exit_every_us: u64,
    /// `--exit-notes`: a measuring aid: at each console line that starts
    /// `mc2-bench `, print the exit counts so far.
    exit_notes: bool,
}

fn parse(args: &str) -> Result<Options, String> {
    let mut w = Words::new(args);
    let mut o = Options { image: String::new(), ram_mb: None, initrd: None, cmdline: None, arg: 0, time_limit_s: None, epoch: DEFAULT_EPOCH, user_cpuid: None, post_pic: true, lapic: None, exit_every_us: 0, exit_notes: false };
    while let Some(word) = w.next() {
        match word {
            "--ram-mb" => o.ram_mb = Some(w.need_u64("N after --ram-mb")?),
            "--initrd" => o.initrd = Some(String::from(w.next().ok_or("missing FILE after --initrd")?)),
            "--" => o.cmdline = Some(w.rest()),
            "--arg" => o.arg = w.need_u64("N after --arg")?,
            "--time-limit" => o.time_limit_s = Some(w.need_u64("SECONDS after --time-limit")?),
            "--epoch" => o.epoch = w.need_u64("UNIX-SECONDS after --epoch")?,
            "--trap-cpuid" => o.user_cpuid = Some(false),
            "--no-post" => o.post_pic = false,
            "--lapic" => o.lapic = Some(true),
            "--no-lapic" => o.lapic = Some(false),
            "--user-cpuid" => o.user_cpuid = Some(true),
            "--exit-every-us" => o.exit_every_us = w.need_u64("N after --exit-every-us")?,
            "--exit-notes" => o.exit_notes = true,
            opt if opt.starts_with('-') => return Err(alloc::format!("unknown option `{opt}`")),
            image if o.image.is_empty() => o.image = String::from(image),
            extra => return Err(alloc::format!("unexpected argument `{extra}`")),
        }
    }
    if o.image.is_empty() {
        return Err(String::from("missing IMAGE"));
    }
    if let Some(mb) = o.ram_mb.filter(|&mb| mb == 0 || mb > MAX_RAM >> 20) {
        return Err(alloc::format!("--ram-mb must be 1..={}, not {mb}", MAX_RAM >> 20));
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
    /// `--exit-notes`.
    exit_notes: bool,
    chunks: Vec<Option<Box<[Page]>>>,
    console: ConsoleIn,
}

/// Console input from the shell (`vm attach`): a page shared with the
/// parent, offered at start; Ready once the shell offers its side. Layout
/// (words): 0 = bytes the shell has written, 1 = bytes the VMM has taken;
/// the ring is bytes [`RING_AT`].. of [`RING`] bytes.
struct ConsoleIn {
    page: Option<rt::shm::SharedPage>,
    ready: bool,
    /// TSC of the next `shm_status` poll (a system call: not every turn).
    next_poll: u64,
    poll_every: u64,
}

pub const ATTACH_VA: u64 = 0x7100_0000_0000;
const RING_AT: usize = 64;
const RING: u64 = 2048;

impl ConsoleIn {
    fn new(tsc_per_ms: u64) -> ConsoleIn {
        let parent = sys::getppid().unwrap_or(0);
        let page = rt::shm::SharedPage::offer(parent, ATTACH_VA).ok().map(|(p, _)| p);
        ConsoleIn { page, ready: false, next_poll: 0, poll_every: tsc_per_ms.saturating_mul(20) }
    }

    fn input(&mut self, accept: &mut dyn FnMut(u8) -> bool) {
        let Some(page) = &self.page else { return };
        if !self.ready {
            let now = rt::time::rdtsc();
            if now < self.next_poll {
                return;
            }
            self.next_poll = now.saturating_add(self.poll_every);
            match sys::shm_status(page.peer()) {
                Ok(abi::ShmState::Ready) => self.ready = true,
                Ok(abi::ShmState::Dead) | Err(_) => {
                    self.page = None;
                    return;
                }
                Ok(abi::ShmState::Pending) => return,
            }
        }
        let (written, mut taken) = (page.load(0), page.load(1));
        while taken < written && written - taken <= RING {
            let mut b = [0u8];
            page.read_bytes(RING_AT + (taken % RING) as usize, &mut b);
            if !accept(b[0]) {
                break;
            }
            taken += 1;
        }
        page.store(1, taken);
    }
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

    fn post(&mut self, port: u16, mode: u64, value: u8) -> Result<(), Error> {
        sys::vm_post(self.id, port, mode, value).map(|_| ())
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
        // The bench's workloads (`cargo xtask bench guests`) print a line
        // as they start and end: the exits so far, to count each one's.
        if self.exit_notes && text.starts_with("mc2-bench ") {
            if let Some(i) = vm_info(self.id) {
                println!("[vm{}] exits at {text}: all {}; {}", self.id, i.exits, handled_words(&i.handled));
            }
        }
    }

    fn note(&mut self, msg: fmt::Arguments<'_>) {
        println!("[vm{}] note: {msg}", self.id);
    }

    fn input(&mut self, accept: &mut dyn FnMut(u8) -> bool) {
        self.console.input(accept);
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

/// VM `id`'s record in `vm_list`.
fn vm_info(id: u64) -> Option<vm::Info> {
    let mut infos = [vm::Info::default(); 16];
    let n = sys::vm_list(&mut infos).unwrap_or(0).min(infos.len());
    infos[..n].iter().find(|i| u64::from(i.id) == id).copied()
}

/// `kernel-handled: host interrupts N cpuid N msr N posted io N other N`.
fn handled_words(h: &[u64; vm::HANDLED_KINDS]) -> String {
    use abi::vm::{HANDLED_CPUID, HANDLED_INTERRUPT, HANDLED_IO, HANDLED_MSR, HANDLED_OTHER};
    alloc::format!(
        "kernel-handled: host interrupts {} cpuid {} msr {} posted io {} other {}",
        h[HANDLED_INTERRUPT], h[HANDLED_CPUID], h[HANDLED_MSR], h[HANDLED_IO], h[HANDLED_OTHER]
    )
}

fn print_regs(id: u64, r: &Regs) {
    let cs = &r.seg[vm::CS];
    println!(
        "[vm{id}]   rip {:#x} rsp {:#x} rflags {:#x} cr0 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x} cs {:#x} (base {:#x}, attrib {:#x})",
        r.rip, r.gpr[vm::RSP], r.rflags, r.cr0, r.cr3, r.cr4, r.efer, cs.selector, cs.base, cs.attrib
    );
}

/// What the VMM boots.
enum Guest {
    /// A flat image at [`LOAD`], entered in real mode.
    Flat,
    /// A Linux bzImage: where its pieces go, its command line and initrd.
    Linux { image: linuxboot::Image, layout: linuxboot::Layout, cmdline: String, initrd: Option<String> },
}

/// Size of bundle file `name`, or the message saying why not.
fn bundle_size(name: &str, what: &str) -> Result<u64, String> {
    match sys::file_size(name) {
        Ok(s) => Ok(s),
        Err(Error::NoSuchProgram) => Err(alloc::format!("no {what} `{name}` in the boot bundle (`programs` lists its files)")),
        Err(e) => Err(alloc::format!("{name}: {e}")),
    }
}

/// Decide what `IMAGE` is and lay the guest out (before any VM exists, so
/// that every refusal is a plain message). Returns the guest, the RAM size
/// and the RAM that must be there before the guest runs.
fn prepare(o: &Options, size: u64) -> Result<(Guest, u64, u64), String> {
    let mut head = [0u8; linuxboot::HEAD_BYTES];
    let got = if size >= head.len() as u64 { sys::file_read(&o.image, 0, &mut head).map_err(|e| alloc::format!("{}: {e}", o.image))? } else { 0 };
    let linux = if got == head.len() as u64 { linuxboot::Image::parse(&head, size).ok() } else { None };
    let Some(image) = linux else {
        if o.initrd.is_some() || o.cmdline.is_some() {
            return Err(alloc::format!("{}: not a Linux bzImage, so --initrd and `-- COMMAND LINE` do not apply", o.image));
        }
        let ram_bytes = o.ram_mb.unwrap_or(DEFAULT_RAM_MB) << 20;
        let initial = INITIAL_RAM.min(ram_bytes);
        if size == 0 || LOAD + size > initial {
            return Err(alloc::format!("{}: {size} bytes do not fit between {LOAD:#x} and {initial:#x}, the RAM mapped at start", o.image));
        }
        return Ok((Guest::Flat, ram_bytes, initial));
    };
    let ram_bytes = o.ram_mb.unwrap_or(LINUX_RAM_MB) << 20;
    let initrd_size = match &o.initrd {
        Some(name) => bundle_size(name, "initrd")?,
        None => 0,
    };
    let mut cmdline = o.cmdline.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| String::from(LINUX_CMDLINE));
    // The firmware's part the VMM plays: telling Linux the TSC's rate (the
    // guest reads the CPU's own TSC). A PC's Linux measures it against
    // the PIT, which needs a thousand port reads in 10 ms: through VM exits
    // to this VMM, under an emulator, they take far longer, and Linux
    // would give the TSC up. `tsc_early_khz` is Linux's documented way to
    // be told (Documentation/admin-guide/kernel-parameters.txt).
    if !cmdline.contains("tsc_early_khz=") {
        cmdline.push_str(&alloc::format!(" tsc_early_khz={}", rt::time::ticks_per_ms()));
    }
    let layout = linuxboot::plan(&image, ram_bytes, cmdline.len(), initrd_size).map_err(|e| alloc::format!("{}: {e}", o.image))?;
    // Loaded before the start: the low 2 MiB, the kernel, the initrd.
    let initial = INITIAL_RAM + image.kernel_len + initrd_size;
    Ok((Guest::Linux { image, layout, cmdline, initrd: o.initrd.clone() }, ram_bytes, initial))
}

fn main() -> i32 {
    let o = match parse(rt::args()) {
        Ok(o) => o,
        Err(e) => {
            println!("vmm: {e}\n{USAGE}");
            return USAGE_STATUS;
        }
    };
    let prepared = bundle_size(&o.image, "guest image").and_then(|size| prepare(&o, size).map(|p| (size, p)));
    let (size, (guest, ram_bytes, initial)) = match prepared {
        Ok(p) => p,
        Err(e) => {
            println!("vmm: {e}");
            return FAILED;
        }
    };
    let need = initial.div_ceil(4096) + OVERHEAD_PAGES;
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
    let status = run_vm(id, &o, &guest, ram_bytes, size, cpu);
    if let Err(e) = sys::vm_destroy(id) {
        println!("[vm{id}] vm_destroy: {e}");
    }
    status
}

/// Copy bundle file `name` (`size` bytes) to guest-physical `gpa`, 64 KiB
/// at a time, skipping its first `skip` bytes.
fn load_file(m: &mut Monitor, host: &mut Vmm, name: &str, skip: u64, size: u64, gpa: u64) -> Result<(), String> {
    let mut buf: Vec<u8> = Vec::new();
    buf.try_reserve_exact(CHUNK as usize).map_err(|_| String::from("out of memory for the load buffer"))?;
    buf.resize(CHUNK as usize, 0);
    let mut off = 0;
    while skip + off < size {
        let n = match sys::file_read(name, skip + off, &mut buf) {
            Ok(0) => break,
            Ok(n) => (n as usize).min(buf.len()),
            Err(e) => return Err(alloc::format!("reading {name} at {}: {e}", skip + off)),
        };
        m.load(host, gpa + off, &buf[..n]).map_err(|stop| alloc::format!("loading {name}: {stop}"))?;
        off += n as u64;
    }
    Ok(())
}

/// Put a Linux guest's pieces in place (the boot loader's work, boot.rst
/// "32-bit boot protocol") and return the vCPU state at its entry.
fn load_linux(m: &mut Monitor, host: &mut Vmm, o: &Options, guest: &Guest, size: u64) -> Result<Regs, String> {
    let Guest::Linux { image, layout, cmdline, initrd } = guest else {
        return Err(String::from("not a Linux guest"));
    };
    let put = |m: &mut Monitor, host: &mut Vmm, gpa: u64, data: &[u8]| m.load(host, gpa, data).map_err(|stop| alloc::format!("{stop}"));
    put(m, host, layout.gdt, &linuxboot::GDT)?;
    if m.lapic() {
        put(m, host, linuxboot::ACPI_ADDR, &linuxboot::acpi_tables())?;
    }
    put(m, host, layout.boot_params, &linuxboot::boot_params(image, layout, m.lapic()))?;
    let mut line = Vec::from(cmdline.as_bytes());
    line.push(0);
    put(m, host, layout.cmdline, &line)?;
    load_file(m, host, &o.image, image.kernel_offset, size, layout.kernel)?;
    if let Some(name) = initrd {
        load_file(m, host, name, 0, layout.initrd_size, layout.initrd)?;
    }
    Ok(linuxboot::entry_regs(layout))
}

fn run_vm(id: u64, o: &Options, guest: &Guest, ram_bytes: u64, size: u64, cpu: u64) -> i32 {
    let mut chunks = Vec::new();
    if chunks.try_reserve_exact((ram_bytes / CHUNK) as usize).is_err() {
        println!("[vm{id}] out of memory for the RAM table");
        return FAILED;
    }
    chunks.resize_with((ram_bytes / CHUNK) as usize, || None);
    let tsc_per_ms = rt::time::ticks_per_ms();
    let mut host = Vmm { id, exit_notes: o.exit_notes, chunks, console: ConsoleIn::new(tsc_per_ms) };
    let now = rt::time::rdtsc();
    let board = Board::new(&Config { tsc_per_ms, ram_bytes, epoch_unix: o.epoch }, now);
    let limit = o.time_limit_s.map(|s| now.saturating_add(s.saturating_mul(1000).saturating_mul(tsc_per_ms)));
    let mut m = Monitor::new(board, ram_bytes, limit, tsc_per_ms);
    if let Err(stop) = m.back_range(&mut host, INITIAL_RAM) {
        println!("[vm{id}] cannot map the first {} KiB of guest RAM: {stop}", INITIAL_RAM.min(ram_bytes) / 1024);
        return FAILED;
    }
    if o.user_cpuid.unwrap_or(matches!(guest, Guest::Linux { .. })) {
        m.standing_flags |= vm::RUN_USER_CPUID;
    }
    m.post_pic = o.post_pic;
    if o.lapic.unwrap_or(matches!(guest, Guest::Linux { .. })) {
        m.standing_flags |= vm::RUN_LAPIC;
    }
    m.exit_every = o.exit_every_us.saturating_mul(tsc_per_ms) / 1000;
    let regs = match guest {
        Guest::Flat => load_file(&mut m, &mut host, &o.image, 0, size, LOAD).map(|()| initial_regs(o.arg, ram_bytes)),
        Guest::Linux { .. } => load_linux(&mut m, &mut host, o, guest, size),
    };
    let regs = match regs {
        Ok(r) => r,
        Err(e) => {
            println!("[vm{id}] {e}");
            return FAILED;
        }
    };
    if let Err(e) = sys::vm_set_regs(id, &regs) {
        println!("[vm{id}] vm_set_regs: {e}");
        return FAILED;
    }
    match guest {
        Guest::Flat => println!("[vm{id}] starting {} ({size} bytes) with {} MiB of RAM on cpu {cpu}", o.image, ram_bytes >> 20),
        Guest::Linux { image, layout, cmdline, initrd } => println!(
            "[vm{id}] starting Linux {} (boot protocol {}.{:02}, {size} bytes{}) with {} MiB of RAM on cpu {cpu}: {cmdline}",
            o.image,
            image.version >> 8,
            image.version & 0xff,
            match initrd {
                Some(n) => alloc::format!(", initrd {n} {} bytes at {:#x}", layout.initrd_size, layout.initrd),
                None => String::new(),
            },
            ram_bytes >> 20
        ),
    }
    let started = rt::time::rdtsc();
    let end = m.run(&mut host);
    let ms = rt::time::rdtsc().saturating_sub(started) / tsc_per_ms.max(1);
    let backed = m.backed_bytes() >> 10;
    println!("[vm{id}] ran {ms} ms, {} exits (and {} the kernel handled, {} of them posted 8259 writes), {backed} KiB of guest RAM backed", m.exits, m.kernel_exits, m.posted_writes);
    let k = &m.by_kind;
    let mut ports = m.io_ports;
    ports.sort_unstable_by_key(|p| core::cmp::Reverse(p.1));
    let mut busiest = String::new();
    for (port, n) in ports.iter().filter(|p| p.1 > 0) {
        let _ = write!(busiest, "{}{port:#x} ({n})", if busiest.is_empty() { "" } else { ", " });
    }
    println!(
        "[vm{id}] exits: io {} memfault {} hlt {} msr {} window {} deadline {}; busiest ports {busiest}",
        k[ExitKind::Io as usize],
        k[ExitKind::MemFault as usize],
        k[ExitKind::Hlt as usize],
        k[ExitKind::Msr as usize],
        k[ExitKind::InterruptWindow as usize],
        k[ExitKind::Deadline as usize],
    );
    // The kernel's share by kind: world switches this VMM never saw.
    if let Some(i) = vm_info(id) {
        println!("[vm{id}] {}", handled_words(&i.handled));
    }
    match end {
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
