//! The boot CPU's way into Rust, and the contract with the kernel binary.
//!
//! `boot.S` (multiboot header, 32-bit entry, long mode, higher half, AP
//! trampoline) ends in [`mc2_machine_bsp_entry`], which sets up CPU 0's
//! descriptor tables and per-CPU block and calls the kernel binary's
//! `mc2_kernel_main(Handoff)`. APs end in `mc2_kernel_ap_main(cpu)` (see
//! [`crate::smp`]). The kernel binary must define both:
//!
//! ```ignore
//! #[no_mangle] fn mc2_kernel_main(handoff: machine::boot::Handoff) -> ! { .. }
//! #[no_mangle] fn mc2_kernel_ap_main(cpu: usize) -> ! { .. }
//! ```

/// What the loader handed over, not yet parsed.
#[derive(Clone, Copy, Debug)]
pub struct Handoff {
    /// Physical address of the Multiboot information structure.
    pub mbi_phys: u64,
    /// The magic value the loader passed (checked by boot.S already).
    pub magic: u32,
}

#[cfg(mc2_bare)]
core::arch::global_asm!(include_str!("arch/boot.S"), options(att_syntax));

#[cfg(mc2_bare)]
#[no_mangle]
extern "C" fn mc2_machine_bsp_entry(mbi_phys: u64) -> ! {
    extern "Rust" {
        fn mc2_kernel_main(handoff: Handoff) -> !;
    }
    let apic_id = crate::x86::cpuid(1, 0).ebx >> 24;
    // SAFETY: first Rust code on the boot CPU, index 0 is the BSP's.
    unsafe { crate::percpu::init_this_cpu(0, apic_id) };
    // SAFETY: the kernel binary defines this entry point (module docs).
    unsafe { mc2_kernel_main(Handoff { mbi_phys, magic: crate::multiboot::LOADER_MAGIC }) }
}

/// Physical range `[start, end)` the kernel image (code, data, bss) occupies.
#[cfg(mc2_bare)]
pub fn image_range() -> (u64, u64) {
    extern "C" {
        static __image_start_phys: u8;
        static __bss_end_phys: u8;
    }
    // Linker-script symbols whose addresses are the values; never read.
    (core::ptr::addr_of!(__image_start_phys) as u64, core::ptr::addr_of!(__bss_end_phys) as u64)
}

/// A section of the kernel image as linked: virtual start, physical start,
/// length, writable, executable.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    pub va: u64,
    pub pa: u64,
    pub len: u64,
    pub write: bool,
    pub exec: bool,
}

/// The higher-half image sections with the rights they need (text R-X,
/// read-only data R--, data and bss RW-), from the linker script's symbols.
#[cfg(mc2_bare)]
pub fn image_sections() -> [Section; 3] {
    extern "C" {
        static __text_start: u8;
        static __text_end: u8;
        static __rodata_start: u8;
        static __rodata_end: u8;
        static __data_start: u8;
        static __bss_end: u8;
    }
    let a = |p: *const u8| p as u64;
    let sec = |start: u64, end: u64, write: bool, exec: bool| Section {
        va: start,
        pa: crate::layout::image_virt_to_phys(start),
        len: end - start,
        write,
        exec,
    };
    // Linker-script symbols: only their addresses are used.
    [
        sec(a(core::ptr::addr_of!(__text_start)), a(core::ptr::addr_of!(__text_end)), false, true),
        sec(a(core::ptr::addr_of!(__rodata_start)), a(core::ptr::addr_of!(__rodata_end)), false, false),
        sec(a(core::ptr::addr_of!(__data_start)), a(core::ptr::addr_of!(__bss_end)), true, false),
    ]
}

/// Guard pages the kernel page tables leave unmapped: below the boot stack
/// and below every per-CPU stack.
#[cfg(mc2_bare)]
pub fn guard_pages() -> impl Iterator<Item = u64> {
    extern "C" {
        static mc2_boot_stack_guard: u8;
    }
    core::iter::once(core::ptr::addr_of!(mc2_boot_stack_guard) as u64).chain(crate::percpu::guard_pages())
}
