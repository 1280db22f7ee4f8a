//! Time-stamp counter reads, fenced so the timed code cannot leak across them.

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the bench crate times with the x86-64 TSC");

use core::arch::x86_64::{_mm_lfence, _rdtsc};

/// TSC at this point: earlier instructions have completed (`lfence` before)
/// and later ones have not started (`lfence` after: rdtsc is not ordered with
/// respect to later instructions otherwise).
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: `lfence` and `rdtsc` exist on every x86-64 CPU (SSE2 is
    // baseline) and only read the counter / order instructions.
    #[allow(unused_unsafe)]
    unsafe {
        _mm_lfence();
        let t = _rdtsc();
        _mm_lfence();
        t
    }
}
