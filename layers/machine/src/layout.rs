//! Where things are in the kernel's virtual address space.
//!
//! ```text
//! 0x0000_0000_0000_0000 .. 0x0000_8000_0000_0000   user (per address space)
//! 0xffff_8000_0000_0000 .. +64 TiB                  direct map of physical memory (PHYS_MAP_BASE)
//! 0xffff_fe00_0000_0000 .. +2 MiB                   process kernel stacks, guard pages below each (KSTACK_AREA)
//! 0xffff_ffff_8000_0000 .. +1 GiB                   kernel image (KERNEL_VMA + physical)
//! ```
//! At boot the direct map covers 0..4 GiB (2 MiB pages, MMIO above 3 GiB uncached).

/// Base of the kernel image mapping: virtual = KERNEL_VMA + physical.
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;
/// Base of the direct map of physical memory.
pub const PHYS_MAP_BASE: u64 = 0xffff_8000_0000_0000;
/// Base of the kernel-stack area: 2 MiB of 4 KiB pages where process
/// kernel stacks are mapped with unmapped guard pages below each (`mm::kmap::StackArea`).
pub const KSTACK_AREA: u64 = 0xffff_fe00_0000_0000;
/// How much of physical memory the boot page tables map directly.
pub const BOOT_PHYS_MAP_SIZE: u64 = 4 << 30;
/// Physical page the AP trampoline is copied to (SIPI vector = this >> 12).
pub const TRAMPOLINE_PHYS: u64 = 0x8000;

/// Virtual address of physical address `pa` in the direct map.
#[inline(always)]
pub const fn phys_to_virt(pa: u64) -> u64 {
    PHYS_MAP_BASE + pa
}

/// Physical address of a kernel-image virtual address (code, statics).
#[inline(always)]
pub const fn image_virt_to_phys(va: u64) -> u64 {
    va - KERNEL_VMA
}

/// Physical address of a direct-map or kernel-image virtual address, if it is one.
#[inline]
pub const fn kernel_virt_to_phys(va: u64) -> Option<u64> {
    if va >= KERNEL_VMA {
        Some(va - KERNEL_VMA)
    } else if va >= PHYS_MAP_BASE && va < PHYS_MAP_BASE + (64 << 40) {
        Some(va - PHYS_MAP_BASE)
    } else {
        None
    }
}
