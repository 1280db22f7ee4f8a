//! Deliberately wrong locks, compiled only for the checks (`cfg(test)`,
//! `cfg(loom)`, `cfg(shuttle)` or feature `mutants`), to show that the model
//! checks catch each kind of bug:
//!
//! - [`RelaxedTicket`], [`RelaxedMcs`]: the real algorithms with every
//!   ordering `Relaxed`. Mutually exclusive, but critical sections are not
//!   ordered (a data race on the protected data): loom must catch them.
//! - [`RacyTas`]: test-and-set written as a load then a store: two CPUs can
//!   both see "free" and both enter. Breaks mutual exclusion.
//! - [`UnfairTas`]: a correct test-and-set lock (atomic swap), but not FIFO:
//!   the FIFO check must catch it.
//!
//! Their `RawLock` impls are false promises on purpose; never use them.
#![allow(clippy::new_without_default)]

use crate::sync::{loom_const_fn, spin_wait, AtomicBool, AtomicU32, CachePadded, Ordering};
use crate::RawLock;
use machine::cpu::MAX_CPUS;

/// Ticket lock with `Relaxed` everywhere (no Acquire/Release).
#[derive(Debug)]
pub struct RelaxedTicket {
    next: AtomicU32,
    owner: AtomicU32,
}

impl RelaxedTicket {
    loom_const_fn! {
        /// An unlocked lock.
        pub fn new() -> RelaxedTicket {
            RelaxedTicket { next: AtomicU32::new(0), owner: AtomicU32::new(0) }
        }
    }
}

// SAFETY: none. Deliberately wrong (no happens-before between critical
// sections); test-only.
unsafe impl RawLock for RelaxedTicket {
    #[cfg(not(loom))]
    const NEW: Self = Self::new();
    #[cfg(loom)]
    fn new() -> Self {
        Self::new()
    }
    fn lock_with(&self, _cpu: usize, doorway: impl FnOnce()) {
        let t = self.next.fetch_add(1, Ordering::Relaxed);
        doorway();
        while self.owner.load(Ordering::Relaxed) != t {
            spin_wait();
        }
    }
    fn try_lock(&self, _cpu: usize) -> bool {
        let o = self.owner.load(Ordering::Relaxed);
        self.next.compare_exchange(o, o.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
    unsafe fn unlock(&self, _cpu: usize) {
        let o = self.owner.load(Ordering::Relaxed);
        self.owner.store(o.wrapping_add(1), Ordering::Relaxed);
    }
    fn is_locked(&self) -> bool {
        self.next.load(Ordering::Relaxed) != self.owner.load(Ordering::Relaxed)
    }
}

struct Node {
    locked: AtomicBool,
    next: AtomicU32,
}

impl Node {
    loom_const_fn! {
        fn new() -> CachePadded<Node> {
            CachePadded(Node { locked: AtomicBool::new(false), next: AtomicU32::new(0) })
        }
    }
}

/// MCS lock with `Relaxed` everywhere (no Acquire/Release).
pub struct RelaxedMcs {
    tail: AtomicU32,
    nodes: [CachePadded<Node>; MAX_CPUS],
}

impl RelaxedMcs {
    /// An unlocked lock.
    #[cfg(not(loom))]
    pub const fn new() -> RelaxedMcs {
        RelaxedMcs { tail: AtomicU32::new(0), nodes: [const { Node::new() }; MAX_CPUS] }
    }
    /// An unlocked lock.
    #[cfg(loom)]
    pub fn new() -> RelaxedMcs {
        RelaxedMcs { tail: AtomicU32::new(0), nodes: core::array::from_fn(|_| Node::new()) }
    }
}

// SAFETY: none. Deliberately wrong (no happens-before between critical
// sections); test-only.
unsafe impl RawLock for RelaxedMcs {
    #[cfg(not(loom))]
    const NEW: Self = Self::new();
    #[cfg(loom)]
    fn new() -> Self {
        Self::new()
    }
    fn lock_with(&self, cpu: usize, doorway: impl FnOnce()) {
        let me = &self.nodes[cpu];
        let prev = self.tail.swap(cpu as u32 + 1, Ordering::Relaxed);
        doorway();
        if prev != 0 {
            me.locked.store(true, Ordering::Relaxed);
            self.nodes[prev as usize - 1].next.store(cpu as u32 + 1, Ordering::Relaxed);
            while me.locked.load(Ordering::Relaxed) {
                spin_wait();
            }
        }
    }
    fn try_lock(&self, cpu: usize) -> bool {
        self.tail.compare_exchange(0, cpu as u32 + 1, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
    unsafe fn unlock(&self, cpu: usize) {
        let me = &self.nodes[cpu];
        let mut next = me.next.load(Ordering::Relaxed);
        if next == 0 {
            if self.tail.compare_exchange(cpu as u32 + 1, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                return;
            }
            while next == 0 {
                spin_wait();
                next = me.next.load(Ordering::Relaxed);
            }
        }
        me.next.store(0, Ordering::Relaxed);
        self.nodes[next as usize - 1].locked.store(false, Ordering::Relaxed);
    }
    fn is_locked(&self) -> bool {
        self.tail.load(Ordering::Relaxed) != 0
    }
}

/// Test-and-set "lock" that tests, then sets: not atomic, so not exclusive.
#[derive(Debug)]
pub struct RacyTas {
    locked: AtomicBool,
}

impl RacyTas {
    loom_const_fn! {
        /// An unlocked lock.
        pub fn new() -> RacyTas {
            RacyTas { locked: AtomicBool::new(false) }
        }
    }
}

// SAFETY: none. Deliberately wrong (two CPUs can both enter); test-only.
unsafe impl RawLock for RacyTas {
    #[cfg(not(loom))]
    const NEW: Self = Self::new();
    #[cfg(loom)]
    fn new() -> Self {
        Self::new()
    }
    fn lock_with(&self, _cpu: usize, doorway: impl FnOnce()) {
        doorway();
        loop {
            if !self.locked.load(Ordering::Acquire) {
                self.locked.store(true, Ordering::Relaxed);
                return;
            }
            spin_wait();
        }
    }
    fn try_lock(&self, _cpu: usize) -> bool {
        if self.locked.load(Ordering::Acquire) {
            return false;
        }
        self.locked.store(true, Ordering::Relaxed);
        true
    }
    unsafe fn unlock(&self, _cpu: usize) {
        self.locked.store(false, Ordering::Release);
    }
    fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

/// A correct test-and-set lock (atomic swap) that is not FIFO: whoever swaps
/// first after a release wins, whatever the arrival order.
#[derive(Debug)]
pub struct UnfairTas {
    locked: AtomicBool,
}

impl UnfairTas {
    loom_const_fn! {
        /// An unlocked lock.
        pub fn new() -> UnfairTas {
            UnfairTas { locked: AtomicBool::new(false) }
        }
    }
}

// SAFETY: mutual exclusion holds (one atomic swap from false to true wins; the
// Acquire swap pairs with the Release store). Only FIFO order is missing,
// which RawLock does not promise; it lives here as the FIFO check's target.
unsafe impl RawLock for UnfairTas {
    #[cfg(not(loom))]
    const NEW: Self = Self::new();
    #[cfg(loom)]
    fn new() -> Self {
        Self::new()
    }
    fn lock_with(&self, _cpu: usize, doorway: impl FnOnce()) {
        doorway();
        while self.locked.swap(true, Ordering::Acquire) {
            spin_wait();
        }
    }
    fn try_lock(&self, _cpu: usize) -> bool {
        !self.locked.swap(true, Ordering::Acquire)
    }
    unsafe fn unlock(&self, _cpu: usize) {
        self.locked.store(false, Ordering::Release);
    }
    fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}
