//! The shared queue library (the seed's "shared queue library"): doubly
//! linked queues of thread ids, each queue behind its own lock, whose atomic
//! interface is an abstract queue (see [`crate::spec::QueueSpec`]).
//!
//! The links live in per-thread arrays (a thread is in at most one queue at
//! a time, as in mC2), so no memory is allocated. A thread's links are only
//! written by whoever holds the lock of the queue the thread is in; the
//! atomic `home` word (which queue holds the thread) is claimed with a
//! compare-and-swap before the thread is linked, so two CPUs can never put
//! the same thread into two queues.

use crate::Tid;
use core::sync::atomic::{AtomicU32, Ordering};
use lock::{Padded, SpinLock};

/// "No thread" / "no queue".
pub const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The queue id is out of range.
    NoSuchQueue,
    /// The thread id is out of range.
    NoSuchThread,
    /// The thread is already in some queue.
    AlreadyQueued,
}

#[derive(Clone, Copy)]
struct Ends {
    head: u32,
    tail: u32,
}

/// Deliberate bugs the refinement checks must catch (feature `mutants`;
/// set [`QueueSet::mutant`] to one of these; 0 is none).
#[cfg(feature = "mutants")]
pub mod mutant {
    /// `remove` unlinks the thread from whichever queue holds it, under the
    /// lock of the queue it was asked to remove it from.
    pub const REMOVE_IGNORES_HOME: u8 = 1;
    /// Unlinking leaves the thread's home word set, so it can never be
    /// queued again.
    pub const UNLINK_KEEPS_HOME: u8 = 2;
}

/// One queue: its ends under its lock, and its length.
struct Head {
    ends: SpinLock<Ends>,
    /// The queue's length: written under the queue's lock, read without it
    /// (a snapshot, like any length once the lock is dropped; it lets a
    /// caller that holds a lock of its own which orders the enqueues, such
    /// as a channel's, ask "anyone waiting?" without taking the queue's).
    len: AtomicU32,
}

/// One thread's links.
struct Links {
    next: AtomicU32,
    prev: AtomicU32,
    /// The queue that holds the thread, or NIL.
    home: AtomicU32,
}

/// `Q` queues over `T` thread ids. Each queue and each thread's links sit on
/// cache lines of their own: the queues of different CPUs (ready queues,
/// channels' wait queues) never share a line.
pub struct QueueSet<const Q: usize, const T: usize> {
    heads: [Padded<Head>; Q],
    links: [Padded<Links>; T],
    /// Which deliberate bug is on (see [`mutant`]).
    #[cfg(feature = "mutants")]
    pub mutant: core::sync::atomic::AtomicU8,
}

impl<const Q: usize, const T: usize> Default for QueueSet<Q, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const Q: usize, const T: usize> QueueSet<Q, T> {
    pub const fn new() -> Self {
        QueueSet {
            heads: [const { Padded::new(Head { ends: SpinLock::new(Ends { head: NIL, tail: NIL }), len: AtomicU32::new(0) }) }; Q],
            links: [const { Padded::new(Links { next: AtomicU32::new(NIL), prev: AtomicU32::new(NIL), home: AtomicU32::new(NIL) }) }; T],
            #[cfg(feature = "mutants")]
            mutant: core::sync::atomic::AtomicU8::new(0),
        }
    }

    fn check(&self, q: usize, t: Tid) -> Result<(), QueueError> {
        if q >= Q {
            return Err(QueueError::NoSuchQueue);
        }
        if t as usize >= T {
            return Err(QueueError::NoSuchThread);
        }
        Ok(())
    }

    /// Append `t` to the tail of queue `q`.
    pub fn enqueue(&self, q: usize, t: Tid) -> Result<(), QueueError> {
        self.check(q, t)?;
        let ti = t as usize;
        let mut e = self.heads[q].ends.lock();
        // Claim the thread for this queue (while holding q's lock, so a
        // concurrent dequeue from q cannot observe half-linked state).
        self.links[ti].home.compare_exchange(NIL, q as u32, Ordering::AcqRel, Ordering::Acquire).map_err(|_| QueueError::AlreadyQueued)?;
        self.links[ti].next.store(NIL, Ordering::Relaxed);
        self.links[ti].prev.store(e.tail, Ordering::Relaxed);
        if e.tail == NIL {
            e.head = t;
        } else {
            self.links[e.tail as usize].next.store(t, Ordering::Relaxed);
        }
        e.tail = t;
        self.count(q, 1);
        Ok(())
    }

    /// Take the thread at the head of queue `q`.
    pub fn dequeue(&self, q: usize) -> Option<Tid> {
        if q >= Q {
            return None;
        }
        let mut e = self.heads[q].ends.lock();
        let t = e.head;
        if t == NIL {
            return None;
        }
        self.unlink(&mut e, q, t);
        Some(t)
    }

    /// Remove `t` from queue `q` wherever it is; false if it is not there.
    pub fn remove(&self, q: usize, t: Tid) -> bool {
        if self.check(q, t).is_err() {
            return false;
        }
        let mut e = self.heads[q].ends.lock();
        if self.links[t as usize].home.load(Ordering::Acquire) != q as u32 {
            #[cfg(feature = "mutants")]
            if self.mutant.load(Ordering::Relaxed) == mutant::REMOVE_IGNORES_HOME && self.links[t as usize].home.load(Ordering::Acquire) != NIL {
                self.unlink(&mut e, q, t);
                return true;
            }
            return false;
        }
        self.unlink(&mut e, q, t);
        true
    }

    /// Add `d` to queue `q`'s length (its lock held: a plain store suffices).
    fn count(&self, q: usize, d: i32) {
        let n = self.heads[q].len.load(Ordering::Relaxed);
        self.heads[q].len.store(n.wrapping_add_signed(d), Ordering::Release);
    }

    /// Unlink `t`, which is in queue `q`, whose ends are `e` (lock held).
    fn unlink(&self, e: &mut Ends, q: usize, t: Tid) {
        let ti = t as usize;
        let (p, n) = (self.links[ti].prev.load(Ordering::Relaxed), self.links[ti].next.load(Ordering::Relaxed));
        if p == NIL {
            e.head = n;
        } else {
            self.links[p as usize].next.store(n, Ordering::Relaxed);
        }
        if n == NIL {
            e.tail = p;
        } else {
            self.links[n as usize].prev.store(p, Ordering::Relaxed);
        }
        self.links[ti].next.store(NIL, Ordering::Relaxed);
        self.links[ti].prev.store(NIL, Ordering::Relaxed);
        self.count(q, -1);
        #[cfg(feature = "mutants")]
        if self.mutant.load(Ordering::Relaxed) == mutant::UNLINK_KEEPS_HOME {
            return;
        }
        self.links[ti].home.store(NIL, Ordering::Release);
    }

    /// Number of threads in queue `q`.
    pub fn len(&self, q: usize) -> usize {
        if q >= Q {
            return 0;
        }
        self.heads[q].len.load(Ordering::Acquire) as usize
    }

    pub fn is_empty(&self, q: usize) -> bool {
        self.len(q) == 0
    }

    /// Which queue holds `t`, if any.
    pub fn home(&self, t: Tid) -> Option<usize> {
        let h = self.links.get(t as usize)?.home.load(Ordering::Acquire);
        (h != NIL).then_some(h as usize)
    }

    /// Copy queue `q`'s contents, head first, into `out`; returns the length.
    /// (For the refinement checks and for diagnostics.)
    pub fn snapshot(&self, q: usize, out: &mut [Tid]) -> usize {
        if q >= Q {
            return 0;
        }
        let e = self.heads[q].ends.lock();
        let mut t = e.head;
        let mut n = 0;
        while t != NIL && n < out.len() {
            out[n] = t;
            n += 1;
            t = self.links[t as usize].next.load(Ordering::Relaxed);
        }
        self.heads[q].len.load(Ordering::Acquire) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_remove_and_errors() {
        let qs: QueueSet<2, 8> = QueueSet::new();
        for t in [3, 1, 4] {
            qs.enqueue(0, t).unwrap();
        }
        assert_eq!(qs.enqueue(1, 1), Err(QueueError::AlreadyQueued), "a thread is in one queue at a time");
        assert_eq!(qs.enqueue(2, 0), Err(QueueError::NoSuchQueue));
        assert_eq!(qs.enqueue(0, 8), Err(QueueError::NoSuchThread));
        assert!(qs.remove(0, 1));
        assert!(!qs.remove(0, 1));
        assert!(!qs.remove(1, 3), "not in that queue");
        assert_eq!(qs.dequeue(0), Some(3));
        assert_eq!(qs.dequeue(0), Some(4));
        assert_eq!(qs.dequeue(0), None);
        assert_eq!(qs.home(3), None);
    }
}
