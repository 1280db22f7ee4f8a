//! The real synchronous IPC (`proc::ipc::Channels`) under real concurrency,
//! on the OS-thread harness (`common`): one OS thread per process, blocking
//! through `common::HostSched`, copying through `common::Memory`.
//!
//! - a relay chain over three channels (4 senders -> relay -> relay -> sink,
//!   2 more senders straight into the middle channel), checksummed messages
//!   of varying length: at every hop the recorded sender is the real one,
//!   and the sink gets every message of every sender exactly once, in that
//!   sender's order;
//! - request/reply: clients call a server that answers on each client's own
//!   channel (both rendezvous directions: waiting senders, waiting receiver);
//! - a harness that serves the newest waiting sender first is caught by the
//!   per-sender order check;
//! - the error paths with their exact effects: a bad receive buffer sends
//!   the sender to the back of the line with its message, a too-large
//!   message fails the sender only, a bad send buffer fails the sender only,
//!   a receiver's bad buffer found by a sender fails the receive and keeps
//!   the sender waiting; killed (interrupted) receivers withdraw their
//!   buffer and killed senders their message;
//! - the receiver's exit wakes its channels' senders with `PeerGone` and
//!   gives back the channels' queues.

mod common;

use abi::Error;
use common::{check_queues_fifo, fnv1a, run, serial, set_current, Event, Fault, HostSched, Memory, BAD_VA};
use proc::ipc::{Channels, Place, Words, MAX_CHANNELS};
use proc::Pid;
use std::sync::Arc;
use std::time::Duration;
use thread::Tid;

type Body<R> = (Tid, Box<dyn FnOnce() -> R + Send>);

/// Message `seq` of `sender`: sender, seq, length, payload, FNV-1a of all that.
fn message(sender: u32, seq: u32) -> Vec<u8> {
    let len = 20 + ((sender as usize * 7919 + seq as usize * 104_729) % 600);
    let mut m = vec![0u8; len];
    m[0..4].copy_from_slice(&sender.to_le_bytes());
    m[4..8].copy_from_slice(&seq.to_le_bytes());
    m[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    let mut x = sender.wrapping_mul(0x9e37_79b9) ^ seq.wrapping_add(1);
    for b in &mut m[12..len - 8] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let sum = fnv1a(&m[..len - 8]);
    m[len - 8..].copy_from_slice(&sum.to_le_bytes());
    m
}

/// (sender, seq) of a message that is intact.
fn check(m: &[u8]) -> Result<(u32, u32), String> {
    let n = m.len();
    if n < 20 || u32::from_le_bytes(m[8..12].try_into().unwrap()) as usize != n {
        return Err(format!("{n}-byte message with a wrong length field"));
    }
    if fnv1a(&m[..n - 8]) != u64::from_le_bytes(m[n - 8..].try_into().unwrap()) {
        return Err(format!("{n}-byte message with a wrong checksum"));
    }
    let (s, q) = (u32::from_le_bytes(m[0..4].try_into().unwrap()), u32::from_le_bytes(m[4..8].try_into().unwrap()));
    if message(s, q) != m {
        return Err(format!("message {q} of {s} corrupted"));
    }
    Ok((s, q))
}

struct World {
    s: Arc<HostSched>,
    c: Arc<Channels>,
    mem: Arc<Memory>,
}

impl World {
    fn new(fault: Fault) -> World {
        World { s: HostSched::new(fault), c: Arc::new(Channels::new()), mem: Arc::new(Memory::new()) }
    }

    fn parts(&self) -> (Arc<HostSched>, Arc<Channels>, Arc<Memory>) {
        (self.s.clone(), self.c.clone(), self.mem.clone())
    }
}

/// A sender: `n` messages to `chan`, from address 0 of its memory.
/// What a chain member returns: the sink, per original sender, the
/// sequence numbers it got, in order; the others nothing.
type Log = Result<Vec<Vec<u32>>, String>;

fn sender(w: &World, pid: Pid, chan: u64, n: u32) -> Body<Log> {
    let (s, c, mem) = w.parts();
    let body = move || {
        for seq in 0..n {
            let m = message(pid, seq);
            mem.write(pid, 0, &m);
            c.send(&*s, &*mem, pid, chan, 0, m.len()).map_err(|e| format!("pid {pid}: send {seq}: {e:?}"))?;
        }
        Ok(Vec::new())
    };
    (pid as Tid, Box::new(body))
}

/// A relay: receives `n` messages on `from` and forwards each to `to`,
/// checking each on the way (intact, and sent by the process it names, if
/// `direct` says it came straight from its sender).
fn relay(w: &World, pid: Pid, from: u64, to: u64, n: u32, direct: &'static [Pid]) -> Body<Log> {
    let (s, c, mem) = w.parts();
    let body = move || {
        for k in 0..n {
            let (len, who) = c.recv(&*s, &*mem, pid, from, 0, abi::MAX_MESSAGE).map_err(|e| format!("relay {pid}: recv {k}: {e:?}"))?;
            let m = mem.read(pid, 0, len as usize);
            let (sender, _) = check(&m).map_err(|e| format!("relay {pid}: {e}"))?;
            if direct.contains(&sender) && who != sender as u64 {
                return Err(format!("relay {pid}: message of pid {sender} recorded as from pid {who}"));
            }
            c.send(&*s, &*mem, pid, to, 0, len as usize).map_err(|e| format!("relay {pid}: send {k}: {e:?}"))?;
        }
        Ok(Vec::new())
    };
    (pid as Tid, Box::new(body))
}

/// The chain: returns, per original sender, the sequence numbers the sink
/// got, in the order it got them, and the harness's queue log.
fn chain(fault: Fault, m: u32) -> Result<(Vec<Vec<u32>>, Vec<Event>), String> {
    // Pids: relays 2 and 3, sink 4, senders 10..=13 into A, 14 and 15 into B.
    let w = World::new(fault);
    let a = w.c.create(&*w.s, 2, u64::MAX).unwrap();
    let b = w.c.create(&*w.s, 3, u64::MAX).unwrap();
    let sink_chan = w.c.create(&*w.s, 4, 77).unwrap();
    let mut bodies = vec![relay(&w, 2, a, b, 4 * m, &[10, 11, 12, 13]), relay(&w, 3, b, sink_chan, 6 * m, &[14, 15])];
    let (s, c, mem) = w.parts();
    let sink: Body<Log> = (
        4,
        Box::new(move || {
            let mut got = vec![Vec::new(); 6];
            for k in 0..6 * m {
                let (len, who) = c.recv(&*s, &*mem, 4, sink_chan, 64, abi::MAX_MESSAGE).map_err(|e| format!("sink: recv {k}: {e:?}"))?;
                if who != 3 {
                    return Err(format!("sink: message from pid {who}, not the relay"));
                }
                let (sender, seq) = check(&mem.read(4, 64, len as usize))?;
                got[sender as usize - 10].push(seq);
            }
            Ok(got)
        }),
    );
    bodies.push(sink);
    for p in 10..=13 {
        bodies.push(sender(&w, p, a, m));
    }
    for p in 14..=15 {
        bodies.push(sender(&w, p, b, m));
    }
    let mut results = run(&w.s, bodies, Duration::from_secs(30))?.into_iter().collect::<Result<Vec<_>, _>>()?;
    assert!(w.s.blocks() > 0);
    assert_eq!(w.c.live(), 3);
    let got = results.swap_remove(2);
    Ok((got, w.s.events()))
}

#[test]
fn relay_chain_delivers_every_message_once_in_order() {
    let _g = serial();
    const M: u32 = 120;
    let (got, events) = chain(Fault::None, M).unwrap();
    for (i, seqs) in got.iter().enumerate() {
        assert_eq!(*seqs, (0..M).collect::<Vec<_>>(), "sender pid {}: lost, duplicated or reordered", 10 + i);
    }
    // Waiting senders were served in the order they arrived.
    let most = check_queues_fifo(&events).unwrap();
    assert!(most >= 2, "never two senders waiting at once: FIFO not exercised");
}

#[test]
fn newest_sender_first_is_caught() {
    let _g = serial();
    // (Per-sender order cannot show it: a sender has one message in flight.)
    for _ in 0..10 {
        let (_, events) = chain(Fault::TakeNewest, 40).unwrap();
        match check_queues_fifo(&events) {
            Err(e) => return assert!(e.contains("before"), "{e}"),
            Ok(most) => assert!(most < 2, "newest-first service with {most} senders waiting went unnoticed"),
        }
    }
    panic!("never two senders waiting at once in 10 runs");
}

#[test]
fn clients_call_a_server() {
    let _g = serial();
    const CLIENTS: Pid = 6;
    const CALLS: u32 = 150;
    let w = World::new(Fault::None);
    let server_chan = w.c.create(&*w.s, 2, 0).unwrap();
    let mut bodies: Vec<Body<Result<u32, String>>> = Vec::new();
    let (s, c, mem) = w.parts();
    bodies.push((
        2,
        Box::new(move || {
            for k in 0..CLIENTS * CALLS {
                let (len, who) = c.recv(&*s, &*mem, 2, server_chan, 0, 1024).map_err(|e| format!("server: recv {k}: {e:?}"))?;
                let req = mem.read(2, 0, len as usize);
                let (client, seq) = check(&req[8..])?;
                if who != client as u64 {
                    return Err(format!("server: request of pid {client} recorded as from {who}"));
                }
                // Answer with message seq + 1000 of the client, on the channel it named.
                let reply = message(client, seq + 1000);
                mem.write(2, 2048, &reply);
                let chan = u64::from_le_bytes(req[..8].try_into().unwrap());
                c.send(&*s, &*mem, 2, chan, 2048, reply.len()).map_err(|e| format!("server: reply {k}: {e:?}"))?;
            }
            Ok(0)
        }),
    ));
    for p in 20..20 + CLIENTS {
        let (s, c, mem) = w.parts();
        let mine = c.create(&*s, p, u64::MAX).unwrap();
        bodies.push((
            p as Tid,
            Box::new(move || {
                for seq in 0..CALLS {
                    let mut req = mine.to_le_bytes().to_vec();
                    req.extend(message(p, seq));
                    mem.write(p, 0, &req);
                    c.send(&*s, &*mem, p, server_chan, 0, req.len()).map_err(|e| format!("client {p}: send: {e:?}"))?;
                    let (len, who) = c.recv(&*s, &*mem, p, mine, 4096, 1024).map_err(|e| format!("client {p}: recv: {e:?}"))?;
                    let reply = mem.read(p, 4096, len as usize);
                    if who != 2 || check(&reply)? != (p, seq + 1000) {
                        return Err(format!("client {p}: call {seq}: wrong reply from pid {who}"));
                    }
                }
                Ok(CALLS)
            }),
        ));
    }
    for r in run(&w.s, bodies, Duration::from_secs(30)).unwrap() {
        r.unwrap();
    }
    assert_eq!(w.c.live(), 1 + CLIENTS as usize);
    check_queues_fifo(&w.s.events()).unwrap();
    // Both ways of meeting happened: a receiver waiting for a sender, and
    // senders waiting for the receiver.
    let waited: std::collections::HashSet<Tid> = w.s.events().iter().filter_map(|e| match *e {
        Event::Enq(_, t) => Some(t),
        _ => None,
    }).collect();
    assert!(waited.contains(&2) && waited.len() > 2, "waiters: {waited:?}");
}

/// Run `f` as simulated thread `tid` on its own OS thread.
fn spawn<R: Send + 'static>(tid: Tid, f: impl FnOnce() -> R + Send + 'static) -> std::thread::JoinHandle<R> {
    std::thread::spawn(move || {
        set_current(tid);
        f()
    })
}

/// Start a sender (pid = tid) of `len` bytes from `va` and wait until it
/// sleeps on the channel.
fn queued_sender(w: &World, pid: Pid, chan: u64, va: u64, len: usize) -> std::thread::JoinHandle<Result<u64, Error>> {
    let (s, c, mem) = w.parts();
    let j = spawn(pid, move || c.send(&*s, &*mem, pid, chan, va, len));
    w.s.wait_blocked(pid);
    j
}

#[test]
fn bad_buffers_and_sizes_fail_only_their_owner() {
    let _g = serial();
    let w = World::new(Fault::None);
    let (s, c, mem) = w.parts();
    // The main thread is the receiver, pid 2, for the non-blocking receives.
    set_current(2);
    let x = c.create(&*s, 2, u64::MAX).unwrap();
    for (p, fill) in [(10, 0xaa), (11, 0xbb)] {
        mem.write(p, 0, &[fill; 10]);
    }
    mem.write(12, 0, &[0xcc; 600]);
    let a = queued_sender(&w, 10, x, 0, 10);
    let b = queued_sender(&w, 11, x, 0, 10);
    let big = queued_sender(&w, 12, x, 0, 600);
    // Our buffer is bad: the oldest sender goes to the back of the line.
    assert_eq!(c.recv(&*s, &*mem, 2, x, BAD_VA, 100), Err(Error::BadAddress));
    assert_eq!(c.recv(&*s, &*mem, 2, x, 0, 100), Ok((10, 11)));
    assert_eq!(mem.read(2, 0, 10), [0xbb; 10]);
    // 600 bytes do not fit in 100: that sender fails, the next one is served.
    assert_eq!(c.recv(&*s, &*mem, 2, x, 0, 100), Ok((10, 10)));
    assert_eq!(mem.read(2, 0, 10), [0xaa; 10]);
    assert_eq!([a.join().unwrap(), b.join().unwrap(), big.join().unwrap()], [Ok(0), Ok(0), Err(Error::TooLarge)]);

    // Now a waiting receiver (thread 2 on its own OS thread, 8-byte buffer).
    let recv = |va: u64, cap: usize| {
        let (s, c, mem) = w.parts();
        let j = spawn(2, move || c.recv(&*s, &*mem, 2, x, va, cap));
        w.s.wait_blocked(2);
        j
    };
    let r = recv(0, 8);
    set_current(13);
    mem.write(13, 0, &[0xdd; 20]);
    assert_eq!(c.send(&*s, &*mem, 13, x, 0, 20), Err(Error::TooLarge), "too big for the waiting buffer");
    assert_eq!(c.send(&*s, &*mem, 13, x, BAD_VA, 5), Err(Error::BadAddress), "our own buffer is bad");
    assert!(w.s.is_blocked(2), "the receiver still waits");
    assert_eq!(c.send(&*s, &*mem, 13, x, 0, 5), Ok(0));
    assert_eq!(r.join().unwrap(), Ok((5, 13)));
    assert_eq!(mem.read(2, 0, 5), [0xdd; 5]);

    // The waiting receiver's buffer is bad: its receive fails, the sender waits on.
    let r = recv(BAD_VA, 64);
    let g = spawn(14, {
        let (s, c, mem) = w.parts();
        mem.write(14, 0, &[0xee; 7]);
        move || c.send(&*s, &*mem, 14, x, 0, 7)
    });
    assert_eq!(r.join().unwrap(), Err(Error::BadAddress));
    w.s.wait_blocked(14);
    set_current(2);
    assert_eq!(c.recv(&*s, &*mem, 2, x, 0, 64), Ok((7, 14)));
    assert_eq!(g.join().unwrap(), Ok(0));

    // The rest of the errors.
    assert_eq!(c.send(&*s, &*mem, 2, x, 0, 1), Err(Error::SelfChannel));
    assert_eq!(c.send(&*s, &*mem, 3, x, 0, abi::MAX_MESSAGE + 1), Err(Error::TooLarge));
    assert_eq!(c.send(&*s, &*mem, 3, x + 1, 0, 1), Err(Error::NoSuchObject));
    assert_eq!(c.send(&*s, &*mem, 3, MAX_CHANNELS as u64, 0, 1), Err(Error::NoSuchObject));
    assert_eq!(c.recv(&*s, &*mem, 3, x, 0, 1), Err(Error::NotPermitted));
    assert_eq!(c.recv(&*s, &*mem, 2, u64::MAX, 0, 1), Err(Error::NoSuchObject));
    assert_eq!(c.create(&*s, 3, x), Err(Error::Busy));
    assert_eq!(c.create(&*s, 3, MAX_CHANNELS as u64), Err(Error::Invalid));
    // A process holds at most MAX_CHANNELS_PER_PROCESS channels.
    for _ in 0..abi::MAX_CHANNELS_PER_PROCESS {
        c.create(&*s, 3, u64::MAX).unwrap();
    }
    assert_eq!(c.create(&*s, 3, u64::MAX), Err(Error::TooMany));
    assert_eq!(c.create(&*s, 3, MAX_CHANNELS as u64 - 1), Err(Error::TooMany));
    assert_eq!(c.create(&*s, 3, MAX_CHANNELS as u64), Err(Error::Invalid));
    // Only more processes than the kernel can hold could fill the table.
    let others: Vec<u32> = (100..).take((MAX_CHANNELS - 1 - abi::MAX_CHANNELS_PER_PROCESS).div_ceil(abi::MAX_CHANNELS_PER_PROCESS)).collect();
    assert!(others.len() + 2 > abi::MAX_PROCESSES);
    for &p in &others {
        for _ in 0..abi::MAX_CHANNELS_PER_PROCESS {
            if c.create(&*s, p, u64::MAX).is_err() {
                break;
            }
        }
    }
    assert_eq!(c.create(&*s, 999, u64::MAX), Err(Error::TableFull));
    for p in others {
        c.process_exit(&*s, p);
    }
    // Exit gives a process's channels back: it may claim the most again.
    c.process_exit(&*s, 3);
    for _ in 0..abi::MAX_CHANNELS_PER_PROCESS {
        c.create(&*s, 3, u64::MAX).unwrap();
    }
    c.process_exit(&*s, 3);
    c.process_exit(&*s, 2);
    assert_eq!((c.live(), s.queues_in_use()), (0, 0));
}

#[test]
fn killed_waiters_withdraw() {
    let _g = serial();
    let w = World::new(Fault::None);
    let (s, c, mem) = w.parts();
    let x = c.create(&*s, 2, u64::MAX).unwrap();
    // A receiver killed while it waits withdraws its buffer ...
    let r = spawn(2, {
        let (s, c, mem) = w.parts();
        move || c.recv(&*s, &*mem, 2, x, 0, 64)
    });
    s.wait_blocked(2);
    assert!(s.interrupt(2));
    assert_eq!(r.join().unwrap(), Err(Error::PeerGone));
    // ... so a sender now waits instead of writing into it.
    mem.write(10, 0, b"hello");
    let a = queued_sender(&w, 10, x, 0, 5);
    // A sender killed while it waits takes its message back.
    mem.write(11, 0, b"lost!");
    let b = queued_sender(&w, 11, x, 0, 5);
    assert!(s.interrupt(11));
    assert_eq!(b.join().unwrap(), Err(Error::PeerGone));
    set_current(2);
    assert_eq!(c.recv(&*s, &*mem, 2, x, 0, 64), Ok((5, 10)));
    assert_eq!(mem.read(2, 0, 5), b"hello");
    assert_eq!(a.join().unwrap(), Ok(0));
    // Nothing left: the next receive waits (and is killed in turn).
    let r = spawn(2, {
        let (s, c, mem) = w.parts();
        move || c.recv(&*s, &*mem, 2, x, 0, 64)
    });
    s.wait_blocked(2);
    assert!(s.interrupt(2));
    assert_eq!(r.join().unwrap(), Err(Error::PeerGone));
}

#[test]
fn receiver_exit_wakes_senders_with_peer_gone() {
    let _g = serial();
    let w = World::new(Fault::None);
    let (s, c, _) = w.parts();
    let x = c.create(&*s, 2, u64::MAX).unwrap();
    let y = c.create(&*s, 2, u64::MAX).unwrap();
    let z = c.create(&*s, 3, u64::MAX).unwrap();
    let senders: Vec<_> = [(10, x), (11, y), (12, x), (13, z)].into_iter().map(|(p, ch)| queued_sender(&w, p, ch, 0, 4)).collect();
    c.process_exit(&*s, 2);
    assert_eq!(c.live(), 1, "only pid 3's channel is left");
    assert_eq!(s.queues_in_use(), 2);
    let mut results: Vec<_> = senders.into_iter().map(Some).collect();
    for i in [0, 1, 2] {
        assert_eq!(results[i].take().unwrap().join().unwrap(), Err(Error::PeerGone));
    }
    assert!(s.is_blocked(13), "a sender to another receiver still waits");
    set_current(3);
    assert_eq!(c.recv(&*s, &*w.mem, 3, z, 0, 64), Ok((4, 13)));
    assert_eq!(results[3].take().unwrap().join().unwrap(), Ok(0));
    c.process_exit(&*s, 3);
    assert_eq!((c.live(), s.queues_in_use()), (0, 0));
}

/// One `CALL_SHORT` as the trap layer issues it: the fast path when it
/// applies, else send then receive.
fn call_short(s: &HostSched, c: &Channels, mem: &Memory, pid: Pid, send: u64, words: Words, len: usize, recv: u64) -> Result<(u64, u64, Words), Error> {
    if let Some(r) = c.call_short_fast(s, pid, send, words, len, recv) {
        return r;
    }
    c.send_from(s, mem, pid, send, Place::Regs { words, len })?;
    c.recv_into(s, mem, pid, recv, Place::Regs { words: [0; 3], len: abi::SHORT_MESSAGE })
}

/// Short messages in registers: clients call a server with `call_short`
/// (the fast path or the general one, whichever applies), the server replies
/// and waits with one `call_short`; every reply is the client's request plus
/// one, from the server, with the bytes past the length cleared. One client
/// receives its replies into memory instead (a register message delivered
/// into a buffer).
#[test]
fn short_calls_in_registers() {
    // One client and the server take turns (the fast path both ways); with
    // four, senders queue up and the general path serves them too.
    short_calls(1);
    short_calls(4);
}

fn short_calls(clients: Pid) {
    let _g = serial();
    #[allow(non_snake_case)]
    let CLIENTS = clients;
    const CALLS: u64 = 200;
    let w = World::new(Fault::None);
    set_current(2);
    let server_chan = w.c.create(&*w.s, 2, 0).unwrap();
    let mut chans = Vec::new();
    for p in 20..20 + CLIENTS {
        set_current(p as Tid);
        chans.push(w.c.create(&*w.s, p, u64::MAX).unwrap());
    }
    let mut bodies: Vec<Body<Result<u64, String>>> = Vec::new();
    let (s, c, mem) = w.parts();
    let reply_to = chans.clone();
    bodies.push((
        2,
        Box::new(move || {
            // The first request arrives with a receive only.
            let (mut len, mut who, mut m) =
                c.recv_into(&*s, &*mem, 2, server_chan, Place::Regs { words: [0; 3], len: 24 }).map_err(|e| format!("server: first: {e:?}"))?;
            for k in 1..=CLIENTS as u64 * CALLS {
                if len != 12 || m[1] >> 32 != 0 || m[2] != 0 {
                    return Err(format!("server: request {k}: {len} bytes {m:x?} (bytes past 12 must be clear)"));
                }
                let client = who as usize - 20;
                let chan = reply_to[client];
                let reply = [m[0] + 1, m[1] | 0xee00_0000_0000, 0];
                if k == CLIENTS as u64 * CALLS {
                    c.send_from(&*s, &*mem, 2, chan, Place::Regs { words: reply, len: 14 }).map_err(|e| format!("server: last reply: {e:?}"))?;
                    return Ok(k);
                }
                (len, who, m) = call_short(&s, &c, &mem, 2, chan, reply, 14, server_chan).map_err(|e| format!("server: reply {k}: {e:?}"))?;
            }
            unreachable!()
        }),
    ));
    for (i, p) in (20..20 + CLIENTS).enumerate() {
        let (s, c, mem) = w.parts();
        let mine = chans[i];
        bodies.push((
            p as Tid,
            Box::new(move || {
                for seq in 0..CALLS {
                    let v = (p as u64) << 40 | seq;
                    // 12 bytes: v and the low 4 bytes of word 1; garbage beyond.
                    let words = [v, 0xdead_beef_0000_0000 | seq, u64::MAX];
                    let (len, who, r) = if i == 1 {
                        // Replies into memory.
                        c.send_from(&*s, &*mem, p, server_chan, Place::Regs { words, len: 12 }).map_err(|e| format!("client {p}: send: {e:?}"))?;
                        let (len, who) = c.recv(&*s, &*mem, p, mine, 64, 100).map_err(|e| format!("client {p}: recv: {e:?}"))?;
                        let b = mem.read(p, 64, len as usize);
                        let mut r = [0u64; 3];
                        for (k, x) in b.chunks(8).enumerate() {
                            let mut q = [0u8; 8];
                            q[..x.len()].copy_from_slice(x);
                            r[k] = u64::from_le_bytes(q);
                        }
                        (len, who, r)
                    } else {
                        call_short(&s, &c, &mem, p, server_chan, words, 12, mine).map_err(|e| format!("client {p}: call {seq}: {e:?}"))?
                    };
                    let want = [v + 1, 0xee00_0000_0000 | seq, 0];
                    if who != 2 || len != 14 || r != want {
                        return Err(format!("client {p}: call {seq}: got {len} bytes {r:x?} from {who}, want 14 bytes {want:x?} from 2"));
                    }
                }
                Ok(CALLS)
            }),
        ));
    }
    for r in run(&w.s, bodies, Duration::from_secs(30)).unwrap() {
        r.unwrap();
    }
    check_queues_fifo(&w.s.events()).unwrap();
}

/// The size rules of register messages: more than `SHORT_MESSAGE` bytes in
/// registers is `TooLarge` for the sender; a memory message longer than a
/// register receiver can take fails that sender only (`TooLarge`), and a
/// short enough one arrives in the registers, zero-padded. The fast path
/// declines what it does not handle (same channel twice, nobody waiting),
/// leaving everything as it was.
#[test]
fn short_message_sizes() {
    let _g = serial();
    let w = World::new(Fault::None);
    let (s, c, mem) = w.parts();
    set_current(2);
    let x = c.create(&*s, 2, u64::MAX).unwrap();
    set_current(10);
    assert_eq!(c.send_from(&*s, &*mem, 10, x, Place::Regs { words: [1, 2, 3], len: 25 }), Err(Error::TooLarge));
    assert!(c.call_short_fast(&*s, 10, x, [1, 2, 3], 8, x).is_none(), "same channel both ways");
    assert!(c.call_short_fast(&*s, 10, x, [1, 2, 3], 8, x + 1).is_none(), "nobody waits on x");
    // A 30-byte and a 5-byte memory message queue up; a register receive
    // fails the first sender and takes the second.
    mem.write(11, 0, &[7u8; 30]);
    mem.write(12, 0, b"hello");
    let big = queued_sender(&w, 11, x, 0, 30);
    let small = queued_sender(&w, 12, x, 0, 5);
    set_current(2);
    let (len, who, m) = c.recv_into(&*s, &*mem, 2, x, Place::Regs { words: [9; 3], len: 24 }).unwrap();
    assert_eq!((len, who), (5, 12));
    assert_eq!(m, [u64::from_le_bytes(*b"hello\0\0\0"), 0, 0]);
    assert_eq!(big.join().unwrap(), Err(Error::TooLarge));
    assert_eq!(small.join().unwrap(), Ok(0));
}
