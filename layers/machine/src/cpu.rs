//! Which CPU am I? The one question every layer above asks of the machine.
//!
//! On bare metal the answer is read from the per-CPU block through GS base
//! (set up once per CPU at boot, never changed). On the host, where the layer
//! crates are tested and benchmarked, each OS thread plays one CPU: it takes
//! the lowest free CPU index the first time it asks and gives it back when the
//! thread ends, so at most `MAX_CPUS` threads may ask at the same time.

/// Most CPUs mc2 brings up; per-CPU arrays in every layer are this long.
pub const MAX_CPUS: usize = 16;

/// Index of the CPU executing this code, in `0..MAX_CPUS` (0 is the boot CPU).
#[inline(always)]
pub fn id() -> usize {
    imp::id()
}

#[cfg(mc2_bare)]
mod imp {
    /// Offset of `PerCpu::cpu` in the per-CPU block that GS base points to.
    pub const CPU_INDEX_OFFSET: usize = 8;

    #[inline(always)]
    pub fn id() -> usize {
        let cpu: usize;
        // SAFETY: GS base is set to this CPU's per-CPU block before any Rust
        // code runs (boot.S for the BSP, the AP entry for the others) and is
        // never changed in kernel mode; the read has no side effects.
        unsafe {
            core::arch::asm!("mov {}, gs:[{off}]", out(reg) cpu, off = const CPU_INDEX_OFFSET,
                options(nostack, preserves_flags, readonly, pure));
        }
        cpu
    }
}

#[cfg(not(mc2_bare))]
mod imp {
    extern crate std;
    use super::MAX_CPUS;
    use core::cell::Cell;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// Bit i set: host CPU index i is taken by a live thread.
    static TAKEN: AtomicU64 = AtomicU64::new(0);

    struct Slot(Cell<usize>);

    impl Drop for Slot {
        fn drop(&mut self) {
            let id = self.0.get();
            if id < MAX_CPUS {
                TAKEN.fetch_and(!(1u64 << id), Ordering::AcqRel);
            }
        }
    }

    std::thread_local! {
        static SLOT: Slot = const { Slot(Cell::new(usize::MAX)) };
    }

    fn take() -> usize {
        let mut cur = TAKEN.load(Ordering::Acquire);
        loop {
            let free = (!cur).trailing_zeros() as usize;
            assert!(free < MAX_CPUS, "more than {MAX_CPUS} host threads act as CPUs at once");
            match TAKEN.compare_exchange_weak(cur, cur | (1 << free), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return free,
                Err(now) => cur = now,
            }
        }
    }

    #[inline]
    pub fn id() -> usize {
        SLOT.with(|s| {
            let id = s.0.get();
            if id != usize::MAX {
                return id;
            }
            let id = take();
            s.0.set(id);
            id
        })
    }
}
