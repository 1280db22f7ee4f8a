//! Time: the TSC read directly (mc2 leaves RDTSC usable in user mode) for
//! busy loops and fine timing; `sys::clock` gives the TSC rate.

/// The time-stamp counter now.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the counter; mc2 does not set CR4.TSD, so it
    // is allowed in ring 3 (docs/syscalls.md, `clock`, returns the same counter).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Busy-loop until at least `cycles` TSC ticks have passed.
///
/// The counter is read every [`SPIN_BATCH`] steps of a trivial loop, not
/// every step: on hardware that overshoots by a few dozen cycles at most,
/// and under QEMU TCG, where every guest RDTSC takes one emulator-wide lock
/// (`vm_clock_lock`, written on each read), busy loops on several vCPUs no
/// longer serialise each other through it.
pub fn spin(cycles: u64) {
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < cycles {
        for i in 0..SPIN_BATCH {
            core::hint::black_box(i);
        }
    }
}

/// Loop steps between two counter reads in [`spin`].
pub const SPIN_BATCH: u32 = 16;

/// Busy-loop until the TSC reaches `deadline`.
pub fn spin_until(deadline: u64) {
    while rdtsc() < deadline {
        core::hint::spin_loop();
    }
}

/// TSC ticks per millisecond (from the `clock` call; 1 if it fails, so
/// divisions stay defined).
pub fn ticks_per_ms() -> u64 {
    crate::sys::clock().map(|(_, r)| r.max(1)).unwrap_or(1)
}
