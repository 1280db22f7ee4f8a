//! # `lock`: mc2's spin locks
//!
//! The layer above `machine`, modelled on mC2's spin-lock module. It provides
//! two interchangeable FIFO spin locks behind one interface, [`RawLock`]:
//!
//! - [`TicketLock`]: two counters; one `fetch_add` to acquire, one plain
//!   store to release. Waiters all spin on one word.
//! - [`McsLock`]: a queue lock with one cache-line-padded node per CPU inside
//!   the lock (mC2's layout, no allocation); each waiter spins on its own line.
//!
//! and [`SpinLock<T, L>`], data guarded by either (by default
//! [`DefaultLock`]: the ticket lock, or the MCS lock with feature `mcs`),
//! reached through a [`SpinLockGuard`] that unlocks on drop; and [`Once`],
//! a value set once at boot and read by every CPU.
//!
//! ## What it assumes of the layer below (`machine`)
//! - `machine::cpu::MAX_CPUS` (16) bounds CPU indices; it sizes the MCS node
//!   array.
//! - `machine::cpu::id()` (used by [`SpinLock`] only, never by the raw locks)
//!   returns an index `< MAX_CPUS` that is distinct for every CPU running at
//!   the same time and does not change while that CPU holds a guard (the
//!   kernel holds spin locks with interrupts masked, so no migration or
//!   re-entry on the same CPU).
//! - Nothing else: the locks are written against Rust's atomics (the C++20
//!   memory model), not against the stronger x86 ordering.
//!
//! ## Invariants
//! - Mutual exclusion: between a return from [`RawLock::lock_with`] (or a
//!   successful [`RawLock::try_lock`]) and the matching
//!   [`RawLock::unlock`], no other CPU returns from them; each unlock
//!   *happens before* the next acquisition (Release/Acquire pairs).
//! - FIFO (ticket and MCS): CPUs acquire in the order in which they passed the
//!   lock's doorway step (ticket taken / node swapped into the tail), which is
//!   where `lock_with` runs its `doorway` closure.
//! - Each lock's own invariants are on [`TicketLock`] and [`McsLock`].
//!
//! ## Checks
//! `tests/loom.rs` (`--cfg loom`: every interleaving under the C11 model),
//! `tests/shuttle.rs` (`--cfg shuttle`: randomized and PCT schedules, mutual
//! exclusion and FIFO), `tests/spinlock.rs` (guards, threads). The module
//! `mutants` holds deliberately wrong locks the checks must reject.
#![no_std]

#[cfg(test)]
extern crate std;

mod mcs;
mod once;
mod padded;
mod spinlock;
mod sync;
mod ticket;

#[cfg(any(test, loom, shuttle, feature = "mutants"))]
pub mod mutants;

pub use machine::cpu::MAX_CPUS;
pub use mcs::McsLock;
pub use once::Once;
pub use padded::Padded;
pub use spinlock::{SpinLock, SpinLockGuard};
pub use ticket::TicketLock;

/// The lock behind [`SpinLock`] unless another is named: the ticket lock, or
/// the MCS lock when the crate feature `mcs` is on.
#[cfg(not(feature = "mcs"))]
pub type DefaultLock = TicketLock;
/// The lock behind [`SpinLock`] unless another is named: the ticket lock, or
/// the MCS lock when the crate feature `mcs` is on.
#[cfg(feature = "mcs")]
pub type DefaultLock = McsLock;

/// A spin lock without data: acquire and release as a given CPU.
///
/// # Safety
/// Implementors guarantee mutual exclusion between lock and unlock for all
/// cpus: between a CPU's return from `lock_with` (or a `try_lock` that
/// returned `true`) and its `unlock`, no other CPU returns from either, and
/// each `unlock` happens-before the next acquisition.
///
/// The guarantee is for callers that pass, among the CPUs inside `lock_with`
/// or holding this lock at the same time, distinct `cpu` values `< MAX_CPUS`
/// (the MCS lock keys its queue nodes by `cpu`). [`SpinLock`] passes
/// `machine::cpu::id()`, which is such a value.
pub unsafe trait RawLock: Sync + Send {
    /// An unlocked lock (for `static`s and `const fn`s). Absent under
    /// `--cfg loom`, where atomics cannot be built at compile time; use
    /// [`RawLock::new`] there.
    #[cfg(not(loom))]
    const NEW: Self;

    /// An unlocked lock (same as `NEW`).
    #[cfg(not(loom))]
    #[inline]
    fn new() -> Self
    where
        Self: Sized,
    {
        Self::NEW
    }

    /// An unlocked lock.
    #[cfg(loom)]
    fn new() -> Self
    where
        Self: Sized;

    /// Acquire as CPU `cpu` (< MAX_CPUS). `doorway` runs right after the lock's
    /// doorway step (ticket taken / node enqueued), before waiting; used by the FIFO checks.
    fn lock_with(&self, cpu: usize, doorway: impl FnOnce());

    /// Acquire as CPU `cpu` (< MAX_CPUS): spin until held.
    #[inline]
    fn lock(&self, cpu: usize) {
        self.lock_with(cpu, || {})
    }

    /// Acquire as CPU `cpu` if nobody holds or waits for the lock; `true` if
    /// now held. Never waits.
    fn try_lock(&self, cpu: usize) -> bool;

    /// Release.
    ///
    /// # Safety
    /// The caller holds the lock as `cpu`.
    unsafe fn unlock(&self, cpu: usize);

    /// Whether some CPU holds (or waits for) the lock: a racy snapshot, for
    /// assertions and diagnostics only.
    fn is_locked(&self) -> bool;
}

// Plain unit tests; under loom/shuttle the atomics only work inside a model.
#[cfg(all(test, not(loom), not(shuttle)))]
mod tests {
    use super::*;
    use std::format;

    fn basic<L: RawLock>() {
        let l = L::new();
        assert!(!l.is_locked());
        l.lock(3);
        assert!(l.is_locked());
        assert!(!l.try_lock(4));
        // SAFETY: held as CPU 3.
        unsafe { l.unlock(3) };
        assert!(!l.is_locked());
        assert!(l.try_lock(5));
        assert!(l.is_locked());
        // SAFETY: held as CPU 5.
        unsafe { l.unlock(5) };
        let mut ran = false;
        l.lock_with(MAX_CPUS - 1, || ran = true);
        assert!(ran);
        // SAFETY: held as CPU MAX_CPUS - 1.
        unsafe { l.unlock(MAX_CPUS - 1) };
        assert!(!l.is_locked());
    }

    #[test]
    fn ticket_basic() {
        basic::<TicketLock>();
    }

    #[test]
    fn mcs_basic() {
        basic::<McsLock>();
    }

    #[test]
    fn mutants_basic() {
        basic::<mutants::RelaxedTicket>();
        basic::<mutants::RelaxedMcs>();
        basic::<mutants::UnfairTas>();
        let l = mutants::RacyTas::new();
        l.lock(0);
        assert!(l.is_locked());
        // SAFETY: held as CPU 0.
        unsafe { l.unlock(0) };
    }

    #[test]
    fn ticket_wraps() {
        let l = TicketLock::NEW;
        for _ in 0..3 {
            l.lock(0);
            // SAFETY: held as CPU 0.
            unsafe { l.unlock(0) };
        }
        // Both counters just below the wrap point.
        let l = TicketLock::at(u32::MAX - 2);
        for i in 0..6 {
            if i % 2 == 0 {
                l.lock(0);
            } else {
                assert!(l.try_lock(0));
            }
            assert!(l.is_locked());
            assert!(!l.try_lock(1));
            // SAFETY: held as CPU 0.
            unsafe { l.unlock(0) };
            assert!(!l.is_locked());
        }
        assert_eq!(format!("{l:?}"), "TicketLock { next: 3, owner: 3 }");
    }

    #[test]
    fn mcs_layout() {
        assert_eq!(core::mem::align_of::<McsLock>(), 64);
        assert_eq!(core::mem::size_of::<McsLock>(), 64 * (MAX_CPUS + 1));
    }

    #[test]
    #[should_panic]
    fn mcs_rejects_cpu_out_of_range() {
        McsLock::new().lock(MAX_CPUS);
    }

    #[test]
    fn debug_does_not_lock() {
        let l = TicketLock::new();
        l.lock(0);
        assert_eq!(format!("{l:?}"), "TicketLock { next: 1, owner: 0 }");
        // SAFETY: held as CPU 0.
        unsafe { l.unlock(0) };
        let m = McsLock::new();
        assert_eq!(format!("{m:?}"), "McsLock { tail: None }");
        m.lock(2);
        assert_eq!(format!("{m:?}"), "McsLock { tail: Some(2) }");
        // SAFETY: held as CPU 2.
        unsafe { m.unlock(2) };
    }
}
