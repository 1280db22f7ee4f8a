//! The big kernel lock (the seed's mC2-bl build, cargo feature `bkl`): one
//! lock held by whichever CPU is executing kernel code, so the whole kernel
//! runs serialised, for comparison with the fine-grained kernel.
//!
//! A CPU takes it when it enters the kernel (system call, interrupt or
//! exception) and drops it when it returns to user mode or halts in its idle
//! loop. A context switch inside the kernel keeps it: the lock belongs to the
//! CPU, and the thread switched to continues kernel work on that CPU. Waiting
//! for it, a CPU serves TLB shootdowns posted to it (the holder may be waiting
//! for exactly that), so it spins on `try_lock` rather than queueing: the
//! comparison build gives up the lock's FIFO order there. Without the feature
//! every function here is empty.

#[cfg(feature = "bkl")]
mod imp {
    use core::sync::atomic::{AtomicBool, Ordering};
    use lock::{DefaultLock, RawLock};
    use machine::MAX_CPUS;

    static BKL: DefaultLock = DefaultLock::NEW;
    static HELD: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

    pub fn enter() {
        let cpu = machine::cpu::id();
        if !HELD[cpu].load(Ordering::Relaxed) {
            // The holder may be waiting for this CPU to acknowledge a TLB
            // shootdown, which it cannot take as an interrupt here (masked):
            // serve it while waiting, or both would wait forever.
            while !BKL.try_lock(cpu) {
                mm::kernel::serve_shootdowns();
                machine::x86::pause();
            }
            HELD[cpu].store(true, Ordering::Relaxed);
        }
    }

    pub fn leave() {
        let cpu = machine::cpu::id();
        if HELD[cpu].swap(false, Ordering::Relaxed) {
            // SAFETY: HELD[cpu] was set by `enter` on this CPU, which holds the lock.
            #[allow(unsafe_code)]
            unsafe {
                BKL.unlock(cpu)
            };
        }
    }
}

#[cfg(not(feature = "bkl"))]
mod imp {
    #[inline(always)]
    pub fn enter() {}
    #[inline(always)]
    pub fn leave() {}
}

/// Take the big kernel lock if this CPU does not hold it (no-op unless `bkl`).
pub use imp::enter;
/// Drop it if held (no-op unless `bkl`).
pub use imp::leave;

/// Is this the big-kernel-lock build?
pub const ENABLED: bool = cfg!(feature = "bkl");
