//! Ticket lock: FIFO, two 32-bit counters, one atomic read-modify-write per
//! acquire+release.

use crate::sync::{loom_const_fn, spin_wait, AtomicU32, Ordering};
use crate::RawLock;
use core::fmt;

/// A ticket lock (mC2's `ticket_lock`: `next` and `now`).
///
/// Acquire takes a ticket with one `fetch_add` on `next` and waits until
/// `owner` shows that ticket; release hands the lock to the next ticket with a
/// plain `Release` store to `owner`. CPUs are served in the order they took
/// their tickets.
///
/// Invariants (all arithmetic wrapping, mod 2^32):
/// - `next - owner` is the number of CPUs holding or waiting for the lock;
///   it is at most the number of CPUs inside `lock_with`, so it never wraps
///   (at most `MAX_CPUS` < 2^32).
/// - The lock is held by the CPU whose ticket equals `owner`, and only that CPU
///   writes `owner` (in `unlock`); `next` is only changed by `fetch_add` (and
///   the `try_lock` CAS, which takes ticket `owner` when nobody waits).
pub struct TicketLock {
    /// The next ticket to hand out.
    next: AtomicU32,
    /// The ticket being served (the holder's ticket, while held).
    owner: AtomicU32,
}

impl TicketLock {
    loom_const_fn! {
        /// An unlocked ticket lock.
        pub fn new() -> TicketLock {
            TicketLock { next: AtomicU32::new(0), owner: AtomicU32::new(0) }
        }
    }

    /// A free lock whose counters both stand at `n` (to test wrap-around).
    #[cfg(all(test, not(loom), not(shuttle)))]
    pub(crate) fn at(n: u32) -> TicketLock {
        TicketLock { next: AtomicU32::new(n), owner: AtomicU32::new(n) }
    }

    #[cold]
    #[inline(never)]
    fn wait_for(&self, ticket: u32) {
        while self.owner.load(Ordering::Acquire) != ticket {
            spin_wait();
        }
    }
}

impl Default for TicketLock {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: a CPU leaves `lock_with` only once `owner` equals its ticket (or
// `try_lock` succeeds only by taking ticket `owner` itself); tickets are
// unique because they come from one atomic `fetch_add`/CAS on `next`, and
// `owner` moves past a ticket only in `unlock` by its holder. So at most one
// CPU holds the lock. The `Release` store in `unlock` and the `Acquire` load
// that observes it order every critical section before the next one.
unsafe impl RawLock for TicketLock {
    #[cfg(not(loom))]
    const NEW: Self = Self::new();
    #[cfg(loom)]
    fn new() -> Self {
        Self::new()
    }

    #[inline]
    fn lock_with(&self, _cpu: usize, doorway: impl FnOnce()) {
        // Relaxed: taking a ticket only orders us among the waiters; the
        // synchronisation with the previous holder is the Acquire load of
        // `owner` below, which reads the value its `unlock` stored.
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        doorway();
        if self.owner.load(Ordering::Acquire) != ticket {
            self.wait_for(ticket);
        }
    }

    #[inline]
    fn try_lock(&self, _cpu: usize) -> bool {
        // Acquire: if `owner` == `next`, this load read the last holder's
        // release, which orders its critical section before ours.
        let owner = self.owner.load(Ordering::Acquire);
        // Taking ticket `owner` succeeds only if nobody holds or waits
        // (`next == owner`); then `owner` cannot move until we release.
        self.next
            .compare_exchange(owner, owner.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    #[inline]
    unsafe fn unlock(&self, _cpu: usize) {
        // Only the holder writes `owner`, so this Relaxed load reads our own
        // ticket.
        let ticket = self.owner.load(Ordering::Relaxed);
        self.owner.store(ticket.wrapping_add(1), Ordering::Release);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.next.load(Ordering::Relaxed) != self.owner.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for TicketLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketLock")
            .field("next", &self.next.load(Ordering::Relaxed))
            .field("owner", &self.owner.load(Ordering::Relaxed))
            .finish()
    }
}
