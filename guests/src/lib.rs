//! # guests: the test guests of mc2's hypervisor
//!
//! Bare-metal images, not mc2 programs: each binary (`testguest`, `chaos`)
//! starts in real mode at guest-physical 0x10000 (see `src/boot.S` for the
//! boot protocol), switches to long mode and runs Rust code from this
//! library: COM1 output, port I/O, the IDT and TSS, the 8259 and 8254
//! set-up, the debug-exit port, a PRNG, and "try an instruction, recover
//! from its exception" for chaos. Built by `cargo xtask` (xtask/src/guests.rs)
//! with `guest.ld` into flat binaries that go into the boot bundle.
//!
//! Assumes the PC of mc2's VMM (libs/vdev): COM1 at 0x3f8, 8259A pair,
//! 8254 PIT, debug exit at port 0x501. `unsafe` is everywhere here: these
//! are the bare-metal guests, the one place in mc2 that is not user code.
#![no_std]
#![allow(clippy::missing_safety_doc, clippy::undocumented_unsafe_blocks)]

use core::arch::asm;
use freestanding as _;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

/// The debug-exit port of mc2's VMM (and QEMU's isa-debug-exit).
pub const DEBUG_EXIT: u16 = 0x501;
const COM1: u16 = 0x3f8;
const COM1_LSR: u16 = 0x3fd;
/// PC16550D LSR bit 5: transmitter holding register empty.
const LSR_THRE: u8 = 0x20;

extern "C" {
    static isr_stubs: u8;
    static mut gdt_tss: [u64; 2];
    pub static mut pd: [u64; 512];
    /// The RAM limit in KiB the VMM passed in ECX (0 when booted otherwise).
    pub static boot_ram_kib: u32;
    static ist_top: u8;
    static mut last_vector: u64;
    #[link_name = "last_fault_rip"]
    static mut LAST_FAULT_RIP: u64;
    #[link_name = "ticks"]
    static TICKS: AtomicU64;
    #[link_name = "lapic_ticks"]
    static LAPIC_TICKS: AtomicU64;
    #[link_name = "nmi_count"]
    static NMI_COUNT: AtomicU64;
    #[link_name = "nmi_nested"]
    static NMI_NESTED: AtomicU64;
}

pub fn outb(port: u16, v: u8) {
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) }
}
pub fn outw(port: u16, v: u16) {
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags)) }
}
pub fn outl(port: u16, v: u32) {
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags)) }
}
pub fn inb(port: u16) -> u8 {
    let v: u8;
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags)) }
    v
}
pub fn inw(port: u16) -> u16 {
    let v: u16;
    unsafe { asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags)) }
    v
}
pub fn inl(port: u16) -> u32 {
    let v: u32;
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags)) }
    v
}

pub fn putc(c: u8) {
    while inb(COM1_LSR) & LSR_THRE == 0 {
        core::hint::spin_loop();
    }
    outb(COM1, c);
}

pub struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            putc(b);
        }
        Ok(())
    }
}

pub fn print_fmt(args: fmt::Arguments<'_>) {
    let _ = Serial.write_fmt(args);
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// The name exception reports start with ("guest", "chaos").
static mut NAME: &str = "guest";

pub fn set_name(name: &'static str) {
    unsafe { NAME = name };
}

fn name() -> &'static str {
    unsafe { NAME }
}

/// End the VM with `status` through the debug-exit port; never returns.
pub fn exit(status: u8) -> ! {
    outb(DEBUG_EXIT, status);
    loop {
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// Timer interrupts (vector 0x20) counted by the interrupt path.
pub fn ticks() -> u64 {
    unsafe { TICKS.load(Ordering::SeqCst) }
}

/// Local APIC timer interrupts (vector 0x40) counted by the interrupt path
/// (which leaves their EOI to the caller).
pub fn lapic_ticks() -> u64 {
    unsafe { LAPIC_TICKS.load(Ordering::SeqCst) }
}

/// NMIs taken (vector 2), and whether one ever arrived inside another's
/// handler (boot.S: the first NMI sends itself a second one).
pub fn nmis() -> (u64, bool) {
    unsafe { (NMI_COUNT.load(Ordering::SeqCst), NMI_NESTED.load(Ordering::SeqCst) != 0) }
}

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    u64::from(hi) << 32 | u64::from(lo)
}

pub fn wrmsr(msr: u32, v: u64) {
    unsafe { asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack, preserves_flags)) }
}

pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    u64::from(hi) << 32 | u64::from(lo)
}

/// CPUID leaf `leaf` (subleaf 0): EAX, EBX, ECX, EDX.
pub fn cpuid(leaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// The TSS (64-bit, SDM Vol. 3A §8.7): IST1 for every interrupt, so that
/// a broken RSP (chaos) still reaches the handlers.
#[repr(C, packed)]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap: u16,
}

static mut TSS: Tss = Tss { reserved0: 0, rsp: [0; 3], reserved1: 0, ist: [0; 7], reserved2: 0, reserved3: 0, iomap: 104 };

#[repr(C, align(16))]
struct Idt([u64; 512]);

static mut IDT: Idt = Idt([0; 512]);

/// Load a TSS (selector 0x20) and an IDT whose 256 gates lead to the stubs
/// of boot.S, all on IST1.
pub fn setup_interrupts() {
    unsafe {
        let tss = &raw mut TSS;
        (*tss).ist[0] = &raw const ist_top as u64;
        let base = tss as u64;
        let limit = core::mem::size_of::<Tss>() as u64 - 1;
        // 64-bit available TSS descriptor, present (SDM Vol. 3A §8.2.3).
        let low = (limit & 0xffff) | (base & 0xff_ffff) << 16 | 0x89 << 40 | ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
        let g = &raw mut gdt_tss;
        (*g)[0] = low;
        (*g)[1] = base >> 32;
        asm!("ltr {0:x}", in(reg) 0x20u16, options(nostack));
        let stubs = &raw const isr_stubs as u64;
        let idt = &raw mut IDT;
        for v in 0..256 {
            let h = stubs + v as u64 * 16;
            // Interrupt gate, DPL 0, present, IST1, code selector 0x18.
            (*idt).0[2 * v] = (h & 0xffff) | 0x18 << 16 | 1 << 32 | 0x8e << 40 | ((h >> 16) & 0xffff) << 48;
            (*idt).0[2 * v + 1] = h >> 32;
        }
        let ptr: [u64; 2] = [(256 * 16 - 1) | (idt as u64) << 16, (idt as u64) >> 48];
        asm!("lidt [{}]", in(reg) ptr.as_ptr(), options(nostack));
    }
}

/// Program the 8259A pair (8259A datasheet: ICW1-ICW4, then OCW1 masks):
/// vectors `base`..`base + 15`, cascade on IR2, 8086 mode, normal EOI.
pub fn pic_init(base: u8, master_mask: u8, slave_mask: u8) {
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    outb(0x20, 0x11);
    outb(0x21, base);
    outb(0x21, 0x04);
    outb(0x21, 0x01);
    outb(0xa0, 0x11);
    outb(0xa1, base + 8);
    outb(0xa1, 0x02);
    outb(0xa1, 0x01);
    outb(0x21, master_mask);
    outb(0xa1, slave_mask);
}

/// 8254 channel 0 in mode 2 (rate generator) at `hz` (8254 datasheet:
/// control word 0x34 = counter 0, LSB then MSB, mode 2, binary).
pub fn pit_init(hz: u32) {
    let div = (1_193_182 / hz.max(19)).min(0xffff) as u16;
    outb(0x43, 0x34);
    outb(0x40, div as u8);
    outb(0x40, (div >> 8) as u8);
}

/// The frame the stubs of boot.S build.
#[repr(C)]
pub struct Frame {
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// An exception no recovery point expected: report and exit with status 1.
#[no_mangle]
extern "C" fn guest_exception(f: &Frame) -> ! {
    let cr2: u64;
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    println!("{}: exception {} at rip {:#x} (error code {:#x}, cr2 {:#x})", name(), f.vector, f.rip, f.error, cr2);
    exit(1)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("{}: panic: {}", name(), info);
    exit(2)
}

/// xorshift64* (Vigna): deterministic from the seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Run the instruction(s) in `$insn` (one string; `;` separates
/// instructions) with a recovery point: an exception or interrupt comes
/// back to the end of the block, with RSP as it was (the handler ran on
/// IST1), RBX and RBP restored, DF clear and the data segments reloaded.
/// Evaluates to the vector taken, or `None`. The trailing operands are the
/// instruction's; RAX and R11 are used by the recovery, so the operands
/// must name RAX as an output (`out("rax") _` at least).
#[macro_export]
macro_rules! recover {
    ($insn:literal, $($operands:tt)*) => {{
        $crate::recover_begin();
        unsafe {
            core::arch::asm!(
                "push rbx",
                "push rbp",
                "lea r11, [rip + 2f]",
                "mov [rip + recover_rip], r11",
                "mov [rip + recover_rsp], rsp",
                $insn,
                "mov qword ptr [rip + recover_rip], 0",
                "2:",
                "mov r11d, 0x10",
                "mov ds, r11d",
                "mov es, r11d",
                "mov ss, r11d",
                "cld",
                "pop rbp",
                "pop rbx",
                $($operands)*,
                out("r11") _,
            )
        }
        $crate::recover_end()
    }};
}

#[doc(hidden)]
pub fn recover_begin() {
    unsafe { last_vector = u64::MAX };
}

#[doc(hidden)]
pub fn recover_end() -> Option<u8> {
    let v = unsafe { last_vector };
    (v != u64::MAX).then_some(v as u8)
}

/// RIP of the last recovered exception.
pub fn last_fault_rip() -> u64 {
    unsafe { LAST_FAULT_RIP }
}

/// Read CR0/CR3/CR4.
pub fn cr0() -> u64 {
    let v;
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)) };
    v
}
pub fn cr3() -> u64 {
    let v;
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)) };
    v
}
pub fn cr4() -> u64 {
    let v;
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)) };
    v
}

pub fn invlpg(addr: u64) {
    unsafe { asm!("invlpg [{}]", in(reg) addr, options(nostack)) };
}
