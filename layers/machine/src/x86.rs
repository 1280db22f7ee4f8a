//! Thin wrappers over x86-64 instructions the kernel needs (Intel SDM Vol. 2).
//!
//! Privileged ones are `unsafe fn`: executing them in ring 3 (for instance in a
//! host test) faults, and most change machine state other code relies on.

use core::arch::asm;

/// Write a byte to an I/O port.
///
/// # Safety
/// Ring 0 only; the caller owns the device behind `port`.
#[inline]
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller guarantees ring 0 and ownership of the port.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) }
}

/// Read a byte from an I/O port.
///
/// # Safety
/// Ring 0 only; the caller owns the device behind `port` (reads can have side effects).
#[inline]
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller guarantees ring 0 and ownership of the port.
    unsafe { asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags)) }
    value
}

/// Write a 16-bit word to an I/O port.
///
/// # Safety
/// As [`outb`].
#[inline]
pub unsafe fn outw(port: u16, value: u16) {
    // SAFETY: the caller guarantees ring 0 and ownership of the port.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags)) }
}

/// Write a 32-bit word to an I/O port.
///
/// # Safety
/// As [`outb`].
#[inline]
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller guarantees ring 0 and ownership of the port.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) }
}

/// Read a 32-bit word from an I/O port.
///
/// # Safety
/// As [`inb`].
#[inline]
pub unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: the caller guarantees ring 0 and ownership of the port.
    unsafe { asm!("in eax, dx", out("eax") value, in("dx") port, options(nomem, nostack, preserves_flags)) }
    value
}

/// Read a model-specific register.
///
/// # Safety
/// Ring 0 only; `msr` must exist on this CPU (else #GP).
#[inline]
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees ring 0 and that the MSR exists.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (hi as u64) << 32 | lo as u64
}

/// Write a model-specific register.
///
/// # Safety
/// Ring 0 only; `msr` must exist and `value` must be valid for it; the caller
/// answers for what the new value changes.
#[inline]
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees ring 0, a valid MSR and value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// MSR numbers (Intel SDM Vol. 4, Table 2-2).
pub mod msr {
    pub const IA32_APIC_BASE: u32 = 0x1b;
    pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
    pub const IA32_PAT: u32 = 0x277;
    pub const IA32_EFER: u32 = 0xc000_0080;
    pub const IA32_STAR: u32 = 0xc000_0081;
    pub const IA32_LSTAR: u32 = 0xc000_0082;
    pub const IA32_FMASK: u32 = 0xc000_0084;
    pub const IA32_FS_BASE: u32 = 0xc000_0100;
    pub const IA32_GS_BASE: u32 = 0xc000_0101;
    pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
}

/// Time-stamp counter (RDTSC). Usable in any ring unless CR4.TSD is set.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter and has no other effect.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// RDTSC ordered after all earlier instructions (LFENCE; RDTSC, SDM Vol. 2B RDTSC).
#[inline(always)]
pub fn rdtsc_ordered() -> u64 {
    // SAFETY: LFENCE and RDTSC only order and read.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        core::arch::x86_64::_rdtsc()
    }
}

/// Result of CPUID.
#[derive(Clone, Copy, Debug)]
pub struct Cpuid {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// CPUID with a sub-leaf.
#[inline]
pub fn cpuid(leaf: u32, subleaf: u32) -> Cpuid {
    // CPUID is available on every x86-64 CPU and only reads.
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    Cpuid { eax: r.eax, ebx: r.ebx, ecx: r.ecx, edx: r.edx }
}

/// Spin-wait hint (PAUSE).
#[inline(always)]
pub fn pause() {
    core::hint::spin_loop();
}

macro_rules! control_register {
    ($read:ident, $write:ident, $reg:literal) => {
        #[doc = concat!("Read ", $reg, ".")]
        ///
        /// # Safety
        /// Ring 0 only.
        #[inline]
        pub unsafe fn $read() -> u64 {
            let v: u64;
            // SAFETY: the caller guarantees ring 0; reading a control register has no effect.
            unsafe { asm!(concat!("mov {}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) }
            v
        }
        #[doc = concat!("Write ", $reg, ".")]
        ///
        /// # Safety
        /// Ring 0 only; the caller answers for the new processor state.
        #[inline]
        pub unsafe fn $write(v: u64) {
            // SAFETY: the caller guarantees ring 0 and a valid value.
            unsafe { asm!(concat!("mov ", $reg, ", {}"), in(reg) v, options(nostack, preserves_flags)) }
        }
    };
}
control_register!(read_cr0, write_cr0, "cr0");
control_register!(read_cr2, write_cr2, "cr2");
control_register!(read_cr3, write_cr3, "cr3");
control_register!(read_cr4, write_cr4, "cr4");

/// CR4 bits (SDM Vol. 3A §2.5).
pub mod cr4 {
    pub const VMXE: u64 = 1 << 13;
    pub const FSGSBASE: u64 = 1 << 16;
    pub const OSXSAVE: u64 = 1 << 18;
}

/// Are maskable interrupts enabled (RFLAGS.IF)?
#[inline]
pub fn interrupts_enabled() -> bool {
    let flags: u64;
    // SAFETY: PUSHFQ/POP only read RFLAGS through the stack.
    unsafe { asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) }
    flags & (1 << 9) != 0
}

/// Mask maskable interrupts.
///
/// # Safety
/// Ring 0 only.
#[inline]
pub unsafe fn cli() {
    // SAFETY: the caller guarantees ring 0.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

/// Unmask interrupts and halt until one arrives, atomically (STI's one-instruction
/// shadow covers HLT, SDM Vol. 2B STI), then mask them again.
///
/// # Safety
/// Ring 0 only; interrupt handlers must be ready to run on this stack.
#[inline]
pub unsafe fn wait_for_interrupt() {
    // SAFETY: the caller guarantees ring 0 and a working IDT.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) }
}

/// Unmask interrupts briefly so pending ones are taken, then mask again.
///
/// # Safety
/// As [`wait_for_interrupt`].
#[inline]
pub unsafe fn take_pending_interrupts() {
    // SAFETY: the caller guarantees ring 0 and a working IDT.
    unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) }
}

/// Halt this CPU for good, interrupts masked.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: in ring 0 this stops the CPU; in ring 3 (never reached on the
        // host) it would fault. Masked interrupts keep it stopped (NMI aside).
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// Invalidate the TLB entry for one page.
///
/// # Safety
/// Ring 0 only.
#[inline]
pub unsafe fn invlpg(addr: usize) {
    // SAFETY: the caller guarantees ring 0; INVLPG only drops a TLB entry.
    unsafe { asm!("invlpg [{}]", in(reg) addr, options(nostack, preserves_flags)) }
}
