//! MCS queue lock: FIFO, each waiter spins on its own cache line.

use crate::sync::{loom_const_fn, spin_wait, AtomicBool, AtomicU32, CachePadded, Ordering};
use crate::RawLock;
use core::fmt;
use machine::cpu::MAX_CPUS;

/// `tail`/`next` value meaning "no CPU"; CPU `c` is stored as `c + 1`.
const NONE: u32 = 0;

/// One CPU's queue node. Lives inside the lock (mC2's layout: one node per
/// CPU per lock), so the lock needs no allocation and no per-CPU storage
/// outside itself.
struct Node {
    /// While the CPU waits: `true` until its predecessor hands the lock over.
    locked: AtomicBool,
    /// The successor in the queue (`cpu + 1`), or `NONE`.
    next: AtomicU32,
}

impl Node {
    loom_const_fn! {
        fn new() -> CachePadded<Node> {
            CachePadded(Node { locked: AtomicBool::new(false), next: AtomicU32::new(NONE) })
        }
    }
}

/// An MCS lock (mC2's `mcs_lock`: a tail plus one node per CPU).
///
/// Acquire swaps this CPU into `tail`; if there was a predecessor, links
/// behind it and spins on its own node until the predecessor clears `locked`.
/// Release either swings `tail` back to empty (no successor) or clears the
/// successor's `locked`.
///
/// Invariants:
/// - `tail == NONE` iff nobody holds or waits; otherwise `tail - 1` is the
///   CPU at the end of the queue.
/// - `nodes[c].next == NONE` whenever CPU `c` is not in the queue (release
///   resets it after reading it), so the uncontended acquire is one swap.
/// - `nodes[c].locked` is written by `c` (set, before linking, only when it
///   has to wait) and by `c`'s predecessor (cleared: the hand-over).
/// - Nodes are padded to 64 bytes, so each waiter spins on its own line.
#[repr(C)]
pub struct McsLock {
    tail: CachePadded<AtomicU32>,
    nodes: [CachePadded<Node>; MAX_CPUS],
}

impl McsLock {
    #[cfg(not(loom))]
    /// An unlocked MCS lock.
    pub const fn new() -> McsLock {
        McsLock { tail: CachePadded(AtomicU32::new(NONE)), nodes: [const { Node::new() }; MAX_CPUS] }
    }

    #[cfg(loom)]
    /// An unlocked MCS lock.
    pub fn new() -> McsLock {
        McsLock { tail: CachePadded(AtomicU32::new(NONE)), nodes: core::array::from_fn(|_| Node::new()) }
    }

    /// The node of CPU `cpu`. Panics if `cpu >= MAX_CPUS` (one compare, never
    /// taken in a correct kernel; kept because the raw API is safe to call).
    #[inline(always)]
    fn node(&self, cpu: usize) -> &Node {
        &self.nodes[cpu]
    }

    /// The node named by a `tail`/`next` value other than `NONE`.
    #[inline(always)]
    fn node_of(&self, id: u32) -> &Node {
        // Values other than NONE are only ever written as `cpu + 1` with
        // `cpu < MAX_CPUS` (checked by `node`), so this index is in bounds;
        // the remaining check costs nothing measurable on these slow paths.
        &self.nodes[(id - 1) as usize]
    }

    #[cold]
    #[inline(never)]
    fn wait_behind(&self, me: &Node, cpu: usize, prev: u32) {
        // Set before linking: the predecessor can only clear it after it has
        // read our link, which the Release store below orders after this.
        me.locked.store(true, Ordering::Relaxed);
        self.node_of(prev).next.store(cpu as u32 + 1, Ordering::Release);
        // Acquire: pairs with the predecessor's Release hand-over.
        while me.locked.load(Ordering::Acquire) {
            spin_wait();
        }
    }

    #[cold]
    #[inline(never)]
    fn hand_over(&self, me: &Node, next: u32) {
        let mut next = next;
        while next == NONE {
            // A successor swapped itself into `tail` but has not linked yet.
            spin_wait();
            next = me.next.load(Ordering::Acquire);
        }
        // Keep the invariant "next == NONE while out of the queue". Nobody
        // else writes our `next` now: our successor already linked, and a
        // later one links behind it.
        me.next.store(NONE, Ordering::Relaxed);
        // Release: our critical section happens before the successor's.
        self.node_of(next).locked.store(false, Ordering::Release);
    }
}

impl Default for McsLock {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: the queue is the order of swaps on `tail`. A CPU leaves `lock_with`
// either because its swap found the queue empty (it is the head) or because
// its predecessor cleared its `locked` in `unlock`, after which the
// predecessor touches the lock no more. A successful `try_lock` CAS likewise
// makes the caller the head of an empty queue. So exactly the head holds the
// lock. Release/Acquire pairs: the `unlock` CAS / hand-over store with the
// next head's swap / spin load; the node reset and `locked = true` are
// published by the Release in the swap and the link store. Requires callers
// that are inside `lock_with`/holding at the same time to pass different
// `cpu` values (see `RawLock`).
unsafe impl RawLock for McsLock {
    #[cfg(not(loom))]
    const NEW: Self = Self::new();
    #[cfg(loom)]
    fn new() -> Self {
        Self::new()
    }

    #[inline]
    fn lock_with(&self, cpu: usize, doorway: impl FnOnce()) {
        let me = self.node(cpu);
        // AcqRel: Acquire pairs with the last holder's Release (its CAS back to
        // NONE) when the queue was empty; Release publishes `me.next == NONE`
        // to the successor that will link behind us.
        let prev = self.tail.swap(cpu as u32 + 1, Ordering::AcqRel);
        doorway();
        if prev != NONE {
            self.wait_behind(me, cpu, prev);
        }
    }

    #[inline]
    fn try_lock(&self, cpu: usize) -> bool {
        let _ = self.node(cpu);
        self.tail
            .compare_exchange(NONE, cpu as u32 + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    #[inline]
    unsafe fn unlock(&self, cpu: usize) {
        let me = self.node(cpu);
        // Acquire: the successor's `locked = true` (before its Release link)
        // must be ordered before our clearing store.
        let next = me.next.load(Ordering::Acquire);
        if next == NONE
            && self
                .tail
                .compare_exchange(cpu as u32 + 1, NONE, Ordering::Release, Ordering::Relaxed)
                .is_ok()
        {
            return;
        }
        self.hand_over(me, next);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.tail.load(Ordering::Relaxed) != NONE
    }
}

impl fmt::Debug for McsLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail = self.tail.load(Ordering::Relaxed);
        let mut d = f.debug_struct("McsLock");
        match tail {
            NONE => d.field("tail", &None::<usize>),
            t => d.field("tail", &Some(t as usize - 1)),
        };
        d.finish()
    }
}
