//! Synchronous IPC (the seed's "synchronized inter process communication").
//!
//! Naming: channels are numbered `0..MAX_CHANNELS`. A process claims a free
//! number ([`Channels::create`]) and becomes the channel's only receiver; any
//! process may send to a claimed number. Send and receive rendezvous: the
//! first to arrive blocks until the other comes, then the message is copied
//! once, straight from the sender's buffer into the receiver's (no kernel
//! buffer). Senders waiting on one channel are served in FIFO order.
//!
//! Short messages (up to [`abi::SHORT_MESSAGE`] bytes) may travel in
//! registers instead of memory ([`Place::Regs`], the `CALL_SHORT` system
//! call): the kernel then never walks a page table for them, which is what
//! makes the client/server round trip cheap. Either side may use either
//! place; a short message received into memory, or a memory message of at
//! most `SHORT_MESSAGE` bytes received into registers, is the same message.
//!
//! Nothing is lost: a message is only dropped from the sender's point of
//! view when `send` returns `Ok`, and that happens exactly when the copy into
//! the receiver's buffer succeeded. If the receiver's buffer turns out to be
//! bad, the receiver gets `BadAddress` and the sender keeps waiting for the
//! next receive; if the sender's buffer is bad, the sender gets `BadAddress`.

use crate::wait::{Sched, RESULTS};
use crate::Pid;
use abi::Error;
use core::sync::atomic::{AtomicU64, Ordering};
use lock::{Padded, SpinLock};
use thread::{Tid, MAX_THREADS};

/// Channels the kernel holds at once: enough for every process to hold its
/// most ([`abi::MAX_CHANNELS_PER_PROCESS`]), so that no process can fill the
/// table for the others.
pub const MAX_CHANNELS: usize = abi::CHANNELS;
const _: () = assert!(MAX_CHANNELS >= crate::table::MAX_PROCS * abi::MAX_CHANNELS_PER_PROCESS);

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
    /// Copy `buf.len()` bytes at `va` of `pid` into `buf`.
    fn read(&self, pid: Pid, va: u64, buf: &mut [u8]) -> Result<(), CopyFault>;
    /// Copy `data` to `va` of `pid`.
    fn write(&self, pid: Pid, va: u64, data: &[u8]) -> Result<(), CopyFault>;
}

/// Words of a short message (little-endian bytes, the rest zero).
pub type Words = [u64; abi::SHORT_WORDS];

/// Where one side of a transfer keeps its message: `len` is the message's
/// length for a sender, the capacity for a receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// User memory at `va`.
    Mem { va: u64, len: usize },
    /// Registers (the words for a sender; a receiver's are filled in).
    Regs { words: Words, len: usize },
}

impl Place {
    fn len(&self) -> usize {
        match *self {
            Place::Mem { len, .. } | Place::Regs { len, .. } => len,
        }
    }
}

/// `words` with the bytes from `len` on cleared (they are not part of the
/// message).
#[inline(always)]
fn trim(mut words: Words, len: usize) -> Words {
    let bits = (len as u32).saturating_mul(8);
    for (i, w) in words.iter_mut().enumerate() {
        // The low `bits - 64 i` bits (all of them past 64).
        *w &= u64::MAX.checked_shl(bits.saturating_sub(64 * i as u32)).map_or(u64::MAX, |m| !m);
    }
    words
}

/// Move `len` bytes from `src` (of `spid`) to `dst` (of `dpid`); the words
/// a register destination receives.
fn transfer(c: &impl Copier, spid: Pid, src: &Place, dpid: Pid, dst: &Place) -> Result<Words, CopyFault> {
    let len = src.len();
    match (*src, *dst) {
        (Place::Mem { va: s, .. }, Place::Mem { va: d, .. }) => c.copy(spid, s, dpid, d, len).map(|()| [0; abi::SHORT_WORDS]),
        (Place::Regs { words, .. }, Place::Mem { va, .. }) => c.write(dpid, va, &abi::short_bytes(&words)[..len]).map(|()| [0; abi::SHORT_WORDS]),
        (Place::Mem { va, .. }, Place::Regs { .. }) => {
            let mut b = [0u8; abi::SHORT_MESSAGE];
            c.read(spid, va, &mut b[..len])?;
            Ok(abi::short_words(&b[..len]))
        }
        (Place::Regs { words, .. }, Place::Regs { .. }) => Ok(trim(words, len)),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiting {
    tid: Tid,
    pid: Pid,
    place: Place,
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

/// One thread's IPC slots.
struct Mailbox {
    /// What the thread offers while it is blocked sending.
    request: SpinLock<Option<Waiting>>,
    /// The words delivered to it while it is blocked as a register receiver
    /// (written before its result, read after: `RESULTS` orders them).
    inbox: [AtomicU64; abi::SHORT_WORDS],
}

/// The channel table. Each channel and each thread's mailbox sit on cache
/// lines of their own, so that pairs of processes on different CPUs share
/// no line through it.
pub struct Channels {
    table: [Padded<SpinLock<Option<Channel>>>; MAX_CHANNELS],
    mailboxes: [Padded<Mailbox>; MAX_THREADS],
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
        Channels {
            table: [const { Padded::new(SpinLock::new(None)) }; MAX_CHANNELS],
            mailboxes: [const { Padded::new(Mailbox { request: SpinLock::new(None), inbox: [const { AtomicU64::new(0) }; abi::SHORT_WORDS] }) }; MAX_THREADS],
        }
    }

    /// Claim channel `want` (or the lowest free one with `u64::MAX`) for `pid`.
    /// Errors, in this order: `Invalid` (no such channel number), `TooMany`
    /// (`pid` holds [`abi::MAX_CHANNELS_PER_PROCESS`]), `Busy` (`want` is
    /// taken), `TableFull`.
    pub fn create(&self, s: &impl Sched, pid: Pid, want: u64) -> Result<u64, Error> {
        let wanted = match want {
            u64::MAX => None,
            w => Some(usize::try_from(w).ok().filter(|&c| c < MAX_CHANNELS).ok_or(Error::Invalid)?),
        };
        // One thread per process: nothing else claims for `pid` meanwhile.
        if self.table.iter().filter(|c| c.lock().as_ref().is_some_and(|c| c.receiver == pid)).count() >= abi::MAX_CHANNELS_PER_PROCESS {
            return Err(Error::TooMany);
        }
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
        let Some(i) = wanted else {
            for i in 0..MAX_CHANNELS {
                if let Some(c) = claim(i)? {
                    return Ok(c);
                }
            }
            return Err(Error::TableFull);
        };
        claim(i)?.ok_or(Error::Busy)
    }

    /// Send `len` bytes at `va` of `pid` on `chan`; returns when a receiver
    /// has the message.
    pub fn send(&self, s: &impl Sched, c: &impl Copier, pid: Pid, chan: u64, va: u64, len: usize) -> Result<u64, Error> {
        self.send_from(s, c, pid, chan, Place::Mem { va, len })
    }

    /// Send the message at `src` (memory or registers) of `pid` on `chan`.
    pub fn send_from(&self, s: &impl Sched, c: &impl Copier, pid: Pid, chan: u64, src: Place) -> Result<u64, Error> {
        let len = src.len();
        let max = if matches!(src, Place::Regs { .. }) { abi::SHORT_MESSAGE } else { abi::MAX_MESSAGE };
        if len > max {
            return Err(Error::TooLarge);
        }
        let me = s.current();
        let mut g = self.table[chan_index(chan)?].lock();
        let ch = g.as_mut().ok_or(Error::NoSuchObject)?;
        if ch.receiver == pid {
            return Err(Error::SelfChannel);
        }
        if let Some(r) = ch.waiting_receiver {
            if len > r.place.len() {
                return Err(Error::TooLarge);
            }
            match transfer(c, pid, &src, r.pid, &r.place) {
                Ok(words) => {
                    ch.waiting_receiver = None;
                    // The receiver is the only thread in its queue.
                    if s.take(ch.receiving) == Some(r.tid) {
                        if matches!(r.place, Place::Regs { .. }) {
                            self.post(r.tid, &words);
                        }
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
        *self.mailboxes[me as usize].request.lock() = Some(Waiting { tid: me, pid, place: src });
        RESULTS.arm(me);
        s.block(q, g);
        *self.mailboxes[me as usize].request.lock() = None;
        RESULTS.get(me).map(|(r, _)| r).unwrap_or(Err(Error::PeerGone))
    }

    /// Receive on `chan` into `cap` bytes at `va` of `pid`; returns (length,
    /// sender pid).
    pub fn recv(&self, s: &impl Sched, c: &impl Copier, pid: Pid, chan: u64, va: u64, cap: usize) -> Result<(u64, u64), Error> {
        self.recv_into(s, c, pid, chan, Place::Mem { va, len: cap }).map(|(n, from, _)| (n, from))
    }

    /// Receive on `chan` into `dst` (memory, or registers for at most
    /// `SHORT_MESSAGE` bytes); returns (length, sender pid, the words for a
    /// register destination).
    pub fn recv_into(&self, s: &impl Sched, c: &impl Copier, pid: Pid, chan: u64, dst: Place) -> Result<(u64, u64, Words), Error> {
        // Registers always hold up to SHORT_MESSAGE bytes.
        let (cap, dst) = match dst {
            Place::Regs { .. } => (abi::SHORT_MESSAGE, Place::Regs { words: [0; abi::SHORT_WORDS], len: abi::SHORT_MESSAGE }),
            m => (m.len(), m),
        };
        let me = s.current();
        let mut g = self.table[chan_index(chan)?].lock();
        let ch = g.as_mut().ok_or(Error::NoSuchObject)?;
        if ch.receiver != pid {
            return Err(Error::NotPermitted);
        }
        while let Some(t) = s.take(ch.senders) {
            let Some(w) = *self.mailboxes[t as usize].request.lock() else {
                // Cannot happen (a sender records its request before
                // queueing); fail it rather than lose track of it.
                RESULTS.set(t, Err(Error::PeerGone), 0);
                s.wake(t);
                continue;
            };
            if w.place.len() > cap {
                RESULTS.set(t, Err(Error::TooLarge), 0);
                s.wake(t);
                continue;
            }
            match transfer(c, w.pid, &w.place, pid, &dst) {
                Ok(words) => {
                    RESULTS.set(t, Ok(0), 0);
                    s.wake_peer(t);
                    return Ok((w.place.len() as u64, w.pid as u64, words));
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
        ch.waiting_receiver = Some(Waiting { tid: me, pid, place: dst });
        RESULTS.arm(me);
        s.block(q, g);
        self.received(me, chan_index(chan)?, matches!(dst, Place::Regs { .. }))
    }

    #[inline(always)]
    fn post(&self, t: Tid, words: &Words) {
        for (slot, w) in self.mailboxes[t as usize].inbox.iter().zip(words) {
            slot.store(*w, Ordering::Relaxed);
        }
    }

    #[inline(always)]
    fn collect(&self, t: Tid) -> Words {
        let b = &self.mailboxes[t as usize].inbox;
        [b[0].load(Ordering::Relaxed), b[1].load(Ordering::Relaxed), b[2].load(Ordering::Relaxed)]
    }

    /// The fast path of `CALL_SHORT` (the client/server round trip): send
    /// the register message `words` (`len` bytes) on `send`, whose receiver
    /// already waits for a register message, and wait for one on `recv`,
    /// where no sender waits yet. Both channels stay locked (lower index
    /// first) from the checks until the caller is queued, so the exchange is
    /// one step; the receiver runs next if it shares this CPU. `None`: the
    /// case is not that one and nothing was done; the general path
    /// ([`send_from`](Self::send_from) then [`recv_into`](Self::recv_into))
    /// gives the same result as this would.
    pub fn call_short_fast(&self, s: &impl Sched, pid: Pid, send: u64, words: Words, len: usize, recv: u64) -> Option<Result<(u64, u64, Words), Error>> {
        let (a, b) = (chan_index(send).ok()?, chan_index(recv).ok()?);
        if a == b || len > abi::SHORT_MESSAGE {
            return None;
        }
        let (mut lo, mut hi) = (self.table[a.min(b)].lock(), self.table[a.max(b)].lock());
        let (ga, gb) = if a < b { (&mut lo, &mut hi) } else { (&mut hi, &mut lo) };
        let (Some(cha), Some(chb)) = (ga.as_mut(), gb.as_mut()) else { return None };
        let r = cha.waiting_receiver?;
        if cha.receiver == pid || chb.receiver != pid || !matches!(r.place, Place::Regs { .. }) || s.has_waiters(chb.senders) {
            return None;
        }
        // As `send_from` with a waiting receiver: deliver, wake it.
        cha.waiting_receiver = None;
        let woken = s.take(cha.receiving) == Some(r.tid);
        if woken {
            self.post(r.tid, &trim(words, len));
            RESULTS.set(r.tid, Ok(len as u64), pid as u64);
        }
        // As `recv_into` with no sender waiting: offer our registers, sleep.
        let me = s.current();
        chb.waiting_receiver = Some(Waiting { tid: me, pid, place: Place::Regs { words: [0; abi::SHORT_WORDS], len: abi::SHORT_MESSAGE } });
        let q = chb.receiving;
        RESULTS.arm(me);
        if woken {
            s.wake_peer(r.tid);
        }
        let rest = if a < b { drop(lo); hi } else { drop(hi); lo };
        s.block(q, rest);
        Some(self.received(me, b, true))
    }

    /// What a receiver that slept on channel index `i` got when woken
    /// (`regs`: the words of its register destination).
    #[inline(always)]
    fn received(&self, me: Tid, i: usize, regs: bool) -> Result<(u64, u64, Words), Error> {
        match RESULTS.get(me) {
            Some((r, sender)) => r.map(|len| (len, sender, if regs { self.collect(me) } else { [0; abi::SHORT_WORDS] })),
            None => {
                // Woken without a message (killed): withdraw the buffer.
                if let Some(ch) = self.table[i].lock().as_mut() {
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
