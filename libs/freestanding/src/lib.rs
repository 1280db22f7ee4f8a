//! # freestanding: what the prebuilt `core` expects of a binary without libc
//!
//! mc2 builds its kernel and its user programs for the host target
//! (`x86_64-unknown-linux-gnu`) with the prebuilt `core`, which calls
//! `memcpy`, `memmove`, `memset`, `memcmp` and `bcmp` (on linux-gnu these come
//! from libc, which mc2 does not link) and references `rust_eh_personality`
//! and `_Unwind_Resume` (it was built with unwinding; mc2 aborts on panic, so
//! they are never called).
//!
//! Everything here is compiled only for freestanding builds (`--cfg mc2_bare`
//! for the kernel, `--cfg mc2_user` for user programs); on the host the crate
//! is empty, so host tests keep libc's versions. A binary must mention the
//! crate (`use freestanding as _;`) for the linker to see it.
#![no_std]

#[cfg(any(mc2_bare, mc2_user))]
mod imp {
    use core::arch::asm;

    /// # Safety
    /// `dst` and `src` are valid for `n` bytes and do not overlap.
    #[no_mangle]
    pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: REP MOVSB copies exactly n bytes forwards (DF is clear: the
        // ABI requires it at calls, and mc2's trap entries execute CLD); the
        // caller vouches for the ranges.
        unsafe {
            asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
                 options(nostack, preserves_flags));
        }
        dst
    }

    /// # Safety
    /// `dst` and `src` are valid for `n` bytes; they may overlap.
    #[no_mangle]
    pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        if n == 0 || (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
            // SAFETY: a forward copy is correct when dst is below src or disjoint.
            return unsafe { memcpy(dst, src, n) };
        }
        // SAFETY: overlapping with dst above src: copy backwards from the last
        // byte; the STD/CLD pair leaves DF clear again.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
                 options(nostack));
        }
        dst
    }

    /// # Safety
    /// `dst` is valid for `n` bytes.
    #[no_mangle]
    pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
        // SAFETY: REP STOSB stores n bytes forwards; the caller vouches for dst.
        unsafe {
            asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
                 options(nostack, preserves_flags));
        }
        dst
    }

    /// # Safety
    /// `a` and `b` are valid for `n` bytes.
    #[no_mangle]
    pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        for i in 0..n {
            // SAFETY: i < n and both ranges are valid for n bytes.
            let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
            if x != y {
                return x as i32 - y as i32;
            }
        }
        0
    }

    /// # Safety
    /// As [`memcmp`].
    #[no_mangle]
    pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: same contract.
        unsafe { memcmp(a, b, n) }
    }

    /// Referenced by the prebuilt `core`; never called (panics abort).
    #[no_mangle]
    extern "C" fn rust_eh_personality() {}

    /// Referenced by the landing pads of the prebuilt `alloc` (built with
    /// unwinding); never reached, since mc2 aborts on panic instead of
    /// unwinding. Halting here beats returning into a landing pad.
    #[no_mangle]
    extern "C" fn _Unwind_Resume() -> ! {
        loop {
            core::hint::spin_loop();
        }
    }
}
