//! Access to physical memory through the kernel's direct map
//! (`layout::PHYS_MAP_BASE`): the one way the layers above read and write
//! page-table pages, frames they hand to user space and firmware tables.
//!
//! Every function is `unsafe`: physical memory includes the kernel's own
//! image and every other owner's pages, so the caller must own the bytes it
//! touches (the allocation table says who does). Ranges are bounds-checked
//! against the direct map's size; a range outside it panics (a kernel bug,
//! never reachable from user input, which is checked before it gets here).

use crate::layout::phys_to_virt;
use core::sync::atomic::{AtomicU64, Ordering};

/// Bytes of physical memory the direct map currently covers.
static DIRECT_MAP_SIZE: AtomicU64 = AtomicU64::new(crate::layout::BOOT_PHYS_MAP_SIZE);

/// Record how much the (rebuilt) direct map covers.
pub fn set_direct_map_size(bytes: u64) {
    DIRECT_MAP_SIZE.store(bytes, Ordering::Relaxed);
}

fn check(pa: u64, len: usize) {
    let end = pa.checked_add(len as u64);
    assert!(end.is_some_and(|e| e <= DIRECT_MAP_SIZE.load(Ordering::Relaxed)), "physical range {pa:#x}+{len:#x} outside the direct map");
}

/// Virtual address of physical `pa` in the direct map, bounds-checked.
/// (On the host, where there is no direct map, this panics.)
pub fn virt(pa: u64, len: usize) -> *mut u8 {
    assert!(cfg!(mc2_bare), "no direct map of physical memory on the host");
    check(pa, len);
    phys_to_virt(pa) as *mut u8
}

/// Read the 64-bit word at `pa` (8-byte aligned).
///
/// # Safety
/// The caller owns (or may read) the word at `pa`.
pub unsafe fn read_u64(pa: u64) -> u64 {
    // SAFETY: in the direct map (checked); the caller owns the word; aligned.
    unsafe { core::ptr::read_volatile(virt(pa, 8) as *const u64) }
}

/// Write the 64-bit word at `pa` (8-byte aligned).
///
/// # Safety
/// The caller owns the word at `pa`.
pub unsafe fn write_u64(pa: u64, v: u64) {
    // SAFETY: in the direct map (checked); the caller owns the word; aligned.
    unsafe { core::ptr::write_volatile(virt(pa, 8) as *mut u64, v) }
}

/// Copy `buf.len()` bytes from physical `pa`.
///
/// # Safety
/// The caller may read `[pa, pa + buf.len())`.
pub unsafe fn read(pa: u64, buf: &mut [u8]) {
    let src = virt(pa, buf.len());
    // SAFETY: source in the direct map (checked) and readable by contract;
    // the destination is a distinct Rust slice.
    unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) }
}

/// Copy `data` to physical `pa`.
///
/// # Safety
/// The caller owns `[pa, pa + data.len())`.
pub unsafe fn write(pa: u64, data: &[u8]) {
    let dst = virt(pa, data.len());
    // SAFETY: destination in the direct map (checked) and owned by contract.
    unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) }
}

/// Copy `len` bytes between two physical ranges (they may not overlap).
///
/// # Safety
/// The caller may read the source and owns the destination.
pub unsafe fn copy(dst: u64, src: u64, len: usize) {
    let (d, s) = (virt(dst, len), virt(src, len));
    // SAFETY: both in the direct map (checked); ownership by contract.
    unsafe { core::ptr::copy(s, d, len) }
}

/// Zero `len` bytes at `pa`.
///
/// # Safety
/// The caller owns `[pa, pa + len)`.
pub unsafe fn zero(pa: u64, len: usize) {
    let dst = virt(pa, len);
    // SAFETY: in the direct map (checked) and owned by contract.
    unsafe { core::ptr::write_bytes(dst, 0, len) }
}

/// A `'static` slice of `n` values of `T` over physical memory at `pa`
/// (boot-time carving of tables such as the allocation table).
///
/// # Safety
/// `[pa, pa + n * size_of::<T>())` is RAM nobody else will ever use, suitably
/// aligned for `T`, and its current bytes (or zeroes: it is zeroed first) are a
/// valid `T` for every element.
pub unsafe fn carve<T>(pa: u64, n: usize) -> &'static mut [T] {
    let bytes = n * core::mem::size_of::<T>();
    let p = virt(pa, bytes);
    assert_eq!(p as usize % core::mem::align_of::<T>(), 0, "misaligned carve");
    // SAFETY: per the contract, exclusively ours forever and valid once zeroed.
    unsafe {
        core::ptr::write_bytes(p, 0, bytes);
        core::slice::from_raw_parts_mut(p as *mut T, n)
    }
}
