//! Synchronous IPC (the seed's "synchronized inter process communication").
//!
//! Naming: channels are numbered `0..MAX_CHANNELS`. A process claims a free
//! number ([`Channels::create`]) and becomes the channel's only receiver; any
//! process may send to a claimed number. Send and receive rendezvous: the
//! first to arrive blocks until the other comes, then the message is copied
//! once, straight from the sender's buffer into the receiver's (no kernel
//! buffer). Senders waiting on one channel are served in FIFO order.
//!
//! Nothing is lost: a message is only dropped from the sender's point of
//! view when `send` returns `Ok`, and that happens exactly when the copy into
//! the receiver's buffer succeeded. If the receiver's buffer turns out to be
//! bad, the receiver gets `BadAddress` and the sender keeps waiting for the
//! next receive; if the sender's buffer is bad, the sender gets `BadAddress`.

use crate::wait::{Sched, RESULTS};
use crate::Pid;
use abi::Error;
use lock::SpinLock;
use thread::{Tid, MAX_THREADS};

/// Channels the kernel holds at once.
pub const MAX_CHANNELS: usize = 128;

/// Which side of a copy had a bad buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyFault {
    Source,
    Destination,
}

/// Copying between two processes' memory (the trap layer, with their
/// address spaces; a model in tests).
pub trait Copier {
    fn copy(&self, src: Pid, src_va: u64, dst: Pid, dst_va: u64, len: usize) -> Result<(), CopyFault>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiting {
    tid: Tid,
    pid: Pid,
    va: u64,
    len: usize,
}

#[derive(Clone, Copy, Debug)]
struct Channel {
    receiver: Pid,
    /// Senders wait here (FIFO).
    senders: usize,
    /// The receiver waits here when no sender is waiting.
    receiving: usize,
    /// The blocked receiver's buffer, if it is waiting.
    waiting_receiver: Option<Waiting>,
}

pub struct Channels {
    table: [SpinLock<Option<Channel>>; MAX_CHANNELS],
    /// What each blocked sender offers (indexed by thread).
    requests: [SpinLock<Option<Waiting>>; MAX_THREADS],
}

impl Default for Channels {
    fn default() -> Self {
        Self::new()
    }
}

fn chan_index(chan: u64) -> Result<usize, Error> {
    usize::try_from(chan).ok().filter(|&c| c < MAX_CHANNELS).ok_or(Error::NoSuchObject)
}

impl Channels {
    pub const fn new() -> Self {
        Channels { table: [const { SpinLock::new(None) }; MAX_CHANNELS], requests: [const { SpinLock::new(None) }; MAX_THREADS] }
    }

    /// Claim channel `want` (or the lowest free one with `u64::MAX`) for `pid`.
    pub fn create(&self, s: &impl Sched, pid: Pid, want: u64) -> Result<u64, Error> {
        let claim = |i: usize| -> Result<Option<u64>, Error> {
            let mut g = self.table[i].lock();
            if g.is_some() {
                return Ok(None);
            }
            let senders = s.alloc_queue()?;
            let receiving = match s.alloc_queue() {
                Ok(q) => q,
                Err(e) => {
                    s.free_queue(senders);
                    return Err(e);
                }
            };
            *g = Some(Channel { receiver: pid, senders, receiving, waiting_receiver: None });
            Ok(Some(i as u64))
        };
        if want == u64::MAX {
            for i in 0..MAX_CHANNELS {
                if let Some(c) = claim(i)? {
                    return Ok(c);
                }
            }
            return Err(Error::TableFull);
        }
        let i = usize::try_from(want).ok().filter(|&c| c < MAX_CHANNELS).ok_or(Error::Invalid)?;
        claim(i)?.ok_or(Error::Busy)
    }

    /// Send `len` bytes at `va` of `pid` on `chan`; returns when a receiver
    /// has the message.
    pub fn send(&self, s: &impl Sched, c: &impl Copier, pid: Pid, chan: u64, va: u64, len: usize) -> Result<u64, Error> {
        if len > abi::MAX_MESSAGE {
            return Err(Error::TooLarge);
        }
        let me = s.current();
        let mut g = self.table[chan_index(chan)?].lock();
        let ch = g.as_mut().ok_or(Error::NoSuchObject)?;
        if ch.receiver == pid {
            return Err(Error::SelfChannel);
        }
        if let Some(r) = ch.waiting_receiver {
            if len > r.len {
                return Err(Error::TooLarge);
            }
            match c.copy(pid, va, r.pid, r.va, len) {
                Ok(()) => {
                    ch.waiting_receiver = None;
                    // The receiver is the only thread in its queue.
                    if s.take(ch.receiving) == Some(r.tid) {
                        RESULTS.set(r.tid, Ok(len as u64), pid as u64);
                        s.wake_peer(r.tid);
                    }
                    return Ok(0);
                }
                Err(CopyFault::Source) => return Err(Error::BadAddress),
                Err(CopyFault::Destination) => {
                    // The receiver's buffer is bad: fail its receive, keep
                    // our message and wait for the next one.
                    ch.waiting_receiver = None;
                    if s.take(ch.receiving) == Some(r.tid) {
                        RESULTS.set(r.tid, Err(Error::BadAddress), 0);
                        s.wake(r.tid);
                    }
                }
            }
        }
        let q = ch.senders;
        *self.requests[me as usize].lock() = Some(Waiting { tid: me, pid, va, len });
        RESULTS.arm(me);
        s.block(q, g);
        *self.requests[me as usize].lock() = None;
        RESULTS.get(me).map(|(r, _)| r).unwrap_or(Err(Error::PeerGone))
    }

    /// Receive on `chan` into `cap` bytes at `va` of `pid`; returns (length,
    /// sender pid).
    pub fn recv(&self, s: &impl Sched, c: &impl Copier, pid: Pid, chan: u64, va: u64, cap: usize) -> Result<(u64, u64), Error> {
        let me = s.current();
        let mut g = self.table[chan_index(chan)?].lock();
        let ch = g.as_mut().ok_or(Error::NoSuchObject)?;
        if ch.receiver != pid {
            return Err(Error::NotPermitted);
        }
        while let Some(t) = s.take(ch.senders) {
            let Some(w) = *self.requests[t as usize].lock() else {
                // Cannot happen (a sender records its request before
                // queueing); fail it rather than lose track of it.
                RESULTS.set(t, Err(Error::PeerGone), 0);
                s.wake(t);
                continue;
            };
            if w.len > cap {
                RESULTS.set(t, Err(Error::TooLarge), 0);
                s.wake(t);
                continue;
            }
            match c.copy(w.pid, w.va, pid, va, w.len) {
                Ok(()) => {
                    RESULTS.set(t, Ok(0), 0);
                    s.wake_peer(t);
                    return Ok((w.len as u64, w.pid as u64));
                }
                Err(CopyFault::Source) => {
                    RESULTS.set(t, Err(Error::BadAddress), 0);
                    s.wake(t);
                }
                Err(CopyFault::Destination) => {
                    // Our buffer is bad: the sender goes back in line (at the
                    // tail: the only way its order can change) and keeps its message.
                    s.requeue(ch.senders, t);
                    return Err(Error::BadAddress);
                }
            }
        }
        let q = ch.receiving;
        ch.waiting_receiver = Some(Waiting { tid: me, pid, va, len: cap });
        RESULTS.arm(me);
        s.block(q, g);
        match RESULTS.get(me) {
            Some((r, sender)) => r.map(|len| (len, sender)),
            None => {
                // Woken without a message (killed): withdraw the buffer.
                if let Some(ch) = self.table[chan_index(chan)?].lock().as_mut() {
                    if ch.waiting_receiver.is_some_and(|w| w.tid == me) {
                        ch.waiting_receiver = None;
                    }
                }
                Err(Error::PeerGone)
            }
        }
    }

    /// A process is gone: release its channels (waiting senders get
    /// `PeerGone`).
    pub fn process_exit(&self, s: &impl Sched, pid: Pid) {
        for slot in &self.table {
            let mut g = slot.lock();
            let Some(ch) = g.as_ref() else { continue };
            if ch.receiver != pid {
                continue;
            }
            while let Some(t) = s.take(ch.senders) {
                RESULTS.set(t, Err(Error::PeerGone), 0);
                s.wake(t);
            }
            s.free_queue(ch.senders);
            s.free_queue(ch.receiving);
            *g = None;
        }
    }

    /// Channels claimed (for leak checks).
    pub fn live(&self) -> usize {
        self.table.iter().filter(|c| c.lock().is_some()).count()
    }
}

/// The kernel's channels.
pub static CHANNELS: Channels = Channels::new();
