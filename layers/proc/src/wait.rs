//! How this layer blocks and wakes threads: the [`Sched`] interface (the
//! thread layer's scheduler in the kernel, a model in tests) and the result
//! slot each blocked thread finds filled in when it is woken.

use abi::Error;
use core::sync::atomic::{AtomicU64, Ordering};
use lock::Padded;
use thread::{Scheduler, Tid, MAX_THREADS};

/// What the process layer needs from the scheduler.
pub trait Sched {
    /// The thread running on this CPU.
    fn current(&self) -> Tid;
    /// A fresh wait queue.
    fn alloc_queue(&self) -> Result<usize, Error>;
    /// Give back an empty wait queue.
    fn free_queue(&self, q: usize);
    /// Put the current thread at the tail of `q`, drop `release` (a lock
    /// guard), sleep until woken.
    fn block<G>(&self, q: usize, release: G);
    /// Take the oldest waiter out of `q` without waking it yet.
    fn take(&self, q: usize) -> Option<Tid>;
    /// Make a thread taken from a queue runnable.
    fn wake(&self, t: Tid);
    /// Like `wake`, for a peer of synchronous IPC: if it shares the caller's
    /// CPU it may run next, since the caller usually blocks right after.
    fn wake_peer(&self, t: Tid) {
        self.wake(t)
    }
    /// Put a taken (still blocked) thread back at the tail of `q`.
    fn requeue(&self, q: usize, t: Tid);
    /// Is anyone waiting in `q`?
    fn has_waiters(&self, q: usize) -> bool;
}

impl Sched for Scheduler {
    fn current(&self) -> Tid {
        Scheduler::current(self, machine::cpu::id())
    }
    fn alloc_queue(&self) -> Result<usize, Error> {
        Scheduler::alloc_queue(self).map_err(|_| Error::TableFull)
    }
    fn free_queue(&self, q: usize) {
        let _ = Scheduler::free_queue(self, q);
    }
    fn block<G>(&self, q: usize, release: G) {
        self.block_on_killable(machine::cpu::id(), q, release)
    }
    fn take(&self, q: usize) -> Option<Tid> {
        self.queues.dequeue(q)
    }
    fn wake(&self, t: Tid) {
        self.make_runnable(t)
    }
    fn wake_peer(&self, t: Tid) {
        self.wake_handoff(t)
    }
    fn requeue(&self, q: usize, t: Tid) {
        let _ = self.queues.enqueue(q, t);
    }
    fn has_waiters(&self, q: usize) -> bool {
        !self.queues.is_empty(q)
    }
}

/// Per-thread result of a blocking operation, written by the thread that
/// completes it before waking the waiter (the scheduler's queue locks order
/// the write before the waiter's read).
pub struct Results {
    /// Per thread, on a cache line of its own.
    slots: [Padded<ResultSlot>; MAX_THREADS],
}

struct ResultSlot {
    value: AtomicU64,
    second: AtomicU64,
}

impl Default for Results {
    fn default() -> Self {
        Self::new()
    }
}

/// A blocked thread's result: not yet written.
pub const PENDING: u64 = u64::MAX - 1;

impl Results {
    pub const fn new() -> Self {
        Results { slots: [const { Padded::new(ResultSlot { value: AtomicU64::new(PENDING), second: AtomicU64::new(0) }) }; MAX_THREADS] }
    }

    /// Mark `t`'s result as not yet known (before it blocks).
    pub fn arm(&self, t: Tid) {
        self.slots[t as usize].value.store(PENDING, Ordering::Relaxed);
    }

    /// Deliver `r` (and a second value) to `t`.
    pub fn set(&self, t: Tid, r: Result<u64, Error>, second: u64) {
        self.slots[t as usize].second.store(second, Ordering::Relaxed);
        self.slots[t as usize].value.store(abi::encode(r), Ordering::Release);
    }

    /// `t`'s result, or `None` if nothing was delivered (woken for another
    /// reason, e.g. killed).
    pub fn get(&self, t: Tid) -> Option<(Result<u64, Error>, u64)> {
        let v = self.slots[t as usize].value.load(Ordering::Acquire);
        (v != PENDING).then(|| (abi::decode(v), self.slots[t as usize].second.load(Ordering::Relaxed)))
    }
}

/// The kernel's result slots.
pub static RESULTS: Results = Results::new();
