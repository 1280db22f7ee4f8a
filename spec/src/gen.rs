//! Random conformance traces.
//!
//! A trace has three parts:
//! 1. **setup**: the driver starts 2 to 4 workers (`spawn conform "w i"`)
//!    on random CPUs with random quotas;
//! 2. **random**: calls issued by idle workers, every system call with
//!    arguments drawn from what exists (live pids, channels, objects, mapped
//!    arena pages, the issuer's children) and from what must be refused
//!    (null, unmapped, kernel-half, non-canonical, misaligned and
//!    end-of-user-space pointers, buffers crossing into unmapped pages,
//!    overlapping send and receive buffers, huge lengths, stale and forged
//!    ids, bad CPUs, too-long names and arguments, invalid UTF-8, unknown
//!    call numbers);
//! 3. **cleanup**: steps that end every trace process (reap zombies, exit
//!    idle workers leaves first, the driver kills blocked descendants,
//!    unblock orphans), so that the next trace starts from the same state.
//!
//! Every candidate step is run on a copy of the model first; steps the
//! model rejects ([`Reject`]: a worker that is busy, a race between two
//! woken processes, input the harness cannot replay, the known container
//! leak) are replaced by another draw. So every step of a generated trace
//! has a unique expected outcome.

use crate::model::*;
use crate::rng::Rng;
use crate::trace::{Arg, Call, Expect, Fill, Part, Step, Trace, Who};
use abi::nr;
use proc::table::INIT;
use proc::Pid;
use std::sync::Arc;

/// How big traces are.
#[derive(Clone, Copy, Debug)]
pub struct GenOpts {
    /// Random steps wanted (fewer when every worker ends up blocked).
    pub steps: usize,
}

impl Default for GenOpts {
    fn default() -> Self {
        GenOpts { steps: 40 }
    }
}

/// A generated trace with what the model expects of each step.
pub struct Generated {
    pub trace: Trace,
    pub expects: Vec<Expect>,
}

/// Kernel-half, non-canonical and other addresses no user buffer may reach.
pub const HOSTILE: [u64; 10] = [
    0,
    0x10,
    0xfff,
    0x5000_0000,
    0xffff_8000_0000_0000,
    0xffff_ffff_8010_0000,
    0x0000_8000_0000_0000,
    abi::USER_END - 8,
    u64::MAX - 3,
    0x8000_0000_0000_0000,
];

/// Mapped arena pages of `pid`.
fn arena_pages(m: &Model, pid: Pid) -> Vec<u64> {
    m.mm.spaces.get(&(pid as usize)).map_or(Vec::new(), |s| s.pages.keys().copied().filter(|&v| (ARENA..ARENA_END).contains(&v)).collect())
}

fn spawn_call(idx: usize, quota: u64, cpu: u64) -> Call {
    let args = format!("w {idx}");
    Call::new(
        nr::SPAWN,
        &[Arg::Buf(0), Arg::Val(WORKER.len() as u64), Arg::Val(quota), Arg::Val(cpu), Arg::Buf(64), Arg::Val(args.len() as u64)],
    )
    .fill(Fill::Bytes { off: 0, data: WORKER.as_bytes().to_vec() })
    .fill(Fill::Bytes { off: 64, data: args.into_bytes() })
}

struct Gen<'a> {
    rng: Rng,
    worker_pages: u64,
    cpus: u64,
    model: Model,
    steps: Vec<Step>,
    expects: Vec<Expect>,
    parts: Vec<Part>,
    _cfg: &'a Config,
}

impl Gen<'_> {
    fn try_step(&mut self, st: Step, part: Part) -> bool {
        let mut m = self.model.clone();
        match m.step(&st) {
            Ok(e) => {
                self.model = m;
                self.steps.push(st);
                self.expects.push(e);
                self.parts.push(part);
                true
            }
            Err(_) => false,
        }
    }

    fn next_worker_index(&self) -> Option<usize> {
        let used = self.steps.iter().filter(|s| s.call.nr == nr::SPAWN).count() + 1;
        let idx = (0..MAX_WORKERS).find(|i| !self.model.workers.contains_key(i) && !self.spawned_before(*i))?;
        (used < 200).then_some(idx)
    }

    /// Worker indices are never reused within a trace (the driver maps
    /// them to pids once).
    fn spawned_before(&self, i: usize) -> bool {
        self.steps.iter().any(|s| {
            s.call.nr == nr::SPAWN && s.call.fills.iter().any(|f| matches!(f, Fill::Bytes { off: 64, data } if *data == format!("w {i}").into_bytes()))
        })
    }

    fn idle_workers(&self) -> Vec<usize> {
        self.model
            .workers
            .iter()
            .filter(|(_, pid)| self.model.info.get(pid).is_some_and(|p| p.run == Run::Idle))
            .map(|(&i, _)| i)
            .collect()
    }

    fn worker_quota(&mut self) -> u64 {
        match self.rng.below(10) {
            0 => self.rng.below(self.worker_pages),
            _ => self.worker_pages + self.rng.range(2, 48),
        }
    }

    // ---- argument choices ----

    fn pid_choice(&mut self, me: Pid) -> u64 {
        let m = &self.model;
        let all: Vec<Pid> = m.procs.procs.keys().copied().collect();
        let mine: Vec<Pid> = m.procs.procs.iter().filter(|(_, p)| p.parent == me).map(|(&c, _)| c).collect();
        match self.rng.below(12) {
            0..=3 if !mine.is_empty() => *self.rng.pick(&mine).unwrap_or(&me) as u64,
            0..=6 => *self.rng.pick(&all).unwrap_or(&me) as u64,
            7 => me as u64,
            8 => *self.rng.pick(&[0u64, 63, 64, 1000, u64::MAX]).unwrap_or(&0),
            9 => INIT as u64,
            _ => self.rng.range(1, 70),
        }
    }

    fn chan_choice(&mut self, me: Pid, own: bool) -> u64 {
        let m = &self.model;
        let mine: Vec<u64> = m.chans.chans.iter().filter(|(&c, ch)| ch.receiver == me && c < FIRST_HARNESS_CHAN).map(|(&c, _)| c).collect();
        let others: Vec<u64> = m.chans.chans.iter().filter(|(&c, ch)| ch.receiver != me && c < FIRST_HARNESS_CHAN).map(|(&c, _)| c).collect();
        let r = self.rng.below(12);
        if own && r < 7 && !mine.is_empty() {
            return *self.rng.pick(&mine).unwrap_or(&0);
        }
        match r {
            0..=6 if !others.is_empty() => *self.rng.pick(&others).unwrap_or(&0),
            0..=7 if !mine.is_empty() => *self.rng.pick(&mine).unwrap_or(&0),
            8 => *self.rng.pick(&[128u64, 1000, u64::MAX, DRIVER_CHAN]).unwrap_or(&128),
            _ => self.rng.below(6),
        }
    }

    fn obj_choice(&mut self, ids: Vec<u64>) -> u64 {
        match self.rng.below(10) {
            0..=6 if !ids.is_empty() => *self.rng.pick(&ids).unwrap_or(&0),
            7 => *self.rng.pick(&[128u64, 1000, u64::MAX]).unwrap_or(&128),
            _ => self.rng.below(8),
        }
    }

    fn mutex_choice(&mut self, me: Pid) -> u64 {
        let tid = self.model.info.get(&me).map_or(0, |p| p.tid);
        let held: Vec<u64> = self.model.objs.mutexes.iter().filter(|(_, m)| m.owner == Some(tid)).map(|(&i, _)| i).collect();
        if !held.is_empty() && self.rng.chance(1, 2) {
            return *self.rng.pick(&held).unwrap_or(&0);
        }
        let ids = self.model.objs.mutexes.keys().copied().collect();
        self.obj_choice(ids)
    }

    fn cv_choice(&mut self) -> u64 {
        let ids = self.model.objs.cvs.keys().copied().collect();
        self.obj_choice(ids)
    }

    /// `file_size` or `file_read` of a boot file: real names, unknown,
    /// too long and non-UTF-8 ones, hostile pointers; reads from the start,
    /// the middle, the end and past it, into the scratch buffer, the
    /// read-only array or hostile addresses, with lengths from 0 to huge.
    fn file_choice(&mut self) -> Call {
        let files: Vec<(String, u64)> = self.model.cfg.programs.iter().map(|(n, d)| (n.clone(), d.len() as u64)).collect();
        let (name, size): (Vec<u8>, u64) = match self.rng.below(8) {
            0 => (b"no-such-file".to_vec(), 0),
            1 => (vec![0xff, 0xfe, b'x'], 0),
            2 => (vec![b'a'; 65], 0),
            _ => self.rng.pick(&files).map(|(n, l)| (n.clone().into_bytes(), *l)).unwrap_or_default(),
        };
        let (at, len) = match self.rng.below(10) {
            0 => (Arg::Val(*self.rng.pick(&HOSTILE).unwrap_or(&0)), name.len() as u64),
            1 => (Arg::Ro(0), name.len() as u64),
            _ => (Arg::Buf(0), name.len() as u64),
        };
        let fill = Fill::Bytes { off: 0, data: name };
        if self.rng.chance(1, 3) {
            return Call::new(nr::FILE_SIZE, &[at, Arg::Val(len)]).fill(fill);
        }
        let offset = *self.rng.pick(&[0, 0, 1, 100, size / 2, size.saturating_sub(10), size, size + 100, u64::MAX]).unwrap_or(&0);
        let off = *self.rng.pick(&[128u64, 1000, 4000]).unwrap_or(&128);
        let buf = match self.rng.below(8) {
            0 => Arg::Ro(0),
            1 => Arg::Val(*self.rng.pick(&HOSTILE).unwrap_or(&0)),
            _ => Arg::Buf(off),
        };
        let cap = *self.rng.pick(&[0u64, 1, 64, 1000, 4096, BUF_LEN - off, u64::MAX]).unwrap_or(&64);
        Call::new(nr::FILE_READ, &[at, Arg::Val(len), Arg::Val(offset), buf, Arg::Val(cap), Arg::Val(0)]).fill(fill)
    }

    /// A virtual-machine call on an id that names no VM (traces create
    /// none): each call's argument checks, in the kernel's order, then the
    /// lookup. Arena pages, hostile and misaligned addresses for `vm_map`.
    fn vm_choice(&mut self, me: Pid) -> Call {
        let id = *self.rng.pick(&[0u64, 1, 3, 7, 8, 1000, u64::MAX]).unwrap_or(&0);
        let v = Arg::Val;
        let buf = |g: &mut Self| match g.rng.below(6) {
            0 => Arg::Ro(0),
            1 => Arg::Val(*g.rng.pick(&HOSTILE).unwrap_or(&0)),
            _ => Arg::Buf(g.rng.below(1024)),
        };
        match self.rng.below(8) {
            7 => {
                let port = *self.rng.pick(&[0x20u64, 0x21, 0xffff, 0x10000]).unwrap_or(&0);
                let mode = *self.rng.pick(&[0u64, 1, 2, 3, 4]).unwrap_or(&0);
                let value = *self.rng.pick(&[0u64, 0xff, 0x100]).unwrap_or(&0);
                Call::vals(nr::VM_POST, &[id, port, mode, value])
            }
            0 => {
                let pages = arena_pages(&self.model, me);
                let va = match self.rng.below(4) {
                    0 | 1 => self.rng.pick(&pages).copied().unwrap_or(ARENA),
                    2 => *self.rng.pick(&HOSTILE).unwrap_or(&0),
                    _ => ARENA + 8,
                };
                let gpa = *self.rng.pick(&[0u64, 0x1000, 0x10_0000, 0x123, !0xfff]).unwrap_or(&0);
                let n = *self.rng.pick(&[0u64, 1, 1, 3, 1 << 20, (1 << 20) + 1]).unwrap_or(&1);
                let rights = *self.rng.pick(&[0u64, 1, 2, 3, 4, 0xff]).unwrap_or(&3);
                Call::vals(nr::VM_MAP, &[id, gpa, va, n, rights])
            }
            1 => {
                let b = buf(self);
                let flags = *self.rng.pick(&[0u64, 1, 2, 4, 7, 8]).unwrap_or(&0);
                Call::new(nr::VM_RUN, &[v(id), b, v(flags), v(0), v(0)])
            }
            2 => {
                let b = buf(self);
                let len = *self.rng.pick(&[0u64, abi::vm::Regs::SIZE as u64 - 1, abi::vm::Regs::SIZE as u64, 4096]).unwrap_or(&0);
                Call::new(nr::VM_GET_REGS, &[v(id), b, v(len)])
            }
            3 => {
                let b = buf(self);
                let len = *self.rng.pick(&[0u64, abi::vm::Regs::SIZE as u64 - 1, abi::vm::Regs::SIZE as u64, 4096]).unwrap_or(&0);
                Call::new(nr::VM_SET_REGS, &[v(id), b, v(len)])
            }
            4 => {
                let vector = *self.rng.pick(&[0u64, 14, 31, 32, 255, 256]).unwrap_or(&0);
                let kind = *self.rng.pick(&[0u64, 1, 2, 3, 4, 7, 8]).unwrap_or(&0);
                let code = *self.rng.pick(&[abi::vm::NO_ERROR_CODE, 0, 1 << 32]).unwrap_or(&0);
                Call::vals(nr::VM_INJECT, &[id, vector, kind, code])
            }
            5 => {
                let b = buf(self);
                let len = *self.rng.pick(&[0u64, 32, 4096]).unwrap_or(&0);
                Call::new(nr::VM_LIST, &[b, v(len)])
            }
            _ => Call::vals(nr::VM_DESTROY, &[id]),
        }
    }

    /// `call_short`: a send, a receive or both, registers of random bytes,
    /// lengths around the 24-byte limit, sometimes neither channel.
    fn call_short_choice(&mut self, me: Pid) -> Call {
        let none = abi::NO_CHANNEL;
        let (chan, reply) = match self.rng.below(8) {
            0 => (none, self.chan_choice(me, true)),
            1 => (self.chan_choice(me, false), none),
            2 => (none, none),
            _ => (self.chan_choice(me, false), self.chan_choice(me, true)),
        };
        let len = match self.rng.below(8) {
            0 => abi::SHORT_MESSAGE as u64 + self.rng.range(1, 8),
            1 => *self.rng.pick(&[u64::MAX, 1 << 32]).unwrap_or(&u64::MAX),
            _ => self.rng.range(0, abi::SHORT_MESSAGE as u64),
        };
        Call::vals(nr::CALL_SHORT, &[chan, reply, len, self.rng.next_u64(), self.rng.next_u64(), self.rng.next_u64()])
    }

    fn msg_len(&mut self) -> u64 {
        match self.rng.below(16) {
            0 => 0,
            1 => 1,
            2 => 4096,
            3 => 4095,
            4 => 4097,
            5 => *self.rng.pick(&[u64::MAX, 1 << 32, 65536]).unwrap_or(&u64::MAX),
            6..=9 => self.rng.range(1, 64),
            _ => self.rng.range(1, 4096),
        }
    }

    /// Mapped arena pages of `pid`.
    fn arena_pages(&self, pid: Pid) -> Vec<u64> {
        arena_pages(&self.model, pid)
    }

    fn arena_page(&mut self) -> u64 {
        ARENA + self.rng.below(64) * PAGE
    }

    /// A buffer of `len` bytes for the kernel to read (`write` false) or
    /// write, good or bad.
    fn ptr(&mut self, pid: Pid, len: u64, write: bool) -> Arg {
        let small = len <= abi::MAX_MESSAGE as u64;
        let mapped = self.arena_pages(pid);
        match self.rng.below(20) {
            0..=9 if small && len <= BUF_LEN => Arg::Buf(self.rng.below(BUF_LEN - len + 1)),
            10..=11 if small && len <= RO_LEN => Arg::Ro(self.rng.below(RO_LEN - len + 1)),
            12..=13 if !mapped.is_empty() => {
                // In a mapped arena page, sometimes running into the next page.
                let p = *self.rng.pick(&mapped).unwrap_or(&ARENA);
                Arg::Val(p + self.rng.below(PAGE))
            }
            14 if !write => Arg::Val(0x40_0000 + self.rng.below(2 * PAGE)),
            15 => Arg::Val(self.arena_page() + self.rng.below(PAGE)),
            _ => Arg::Val(*self.rng.pick(&HOSTILE).unwrap_or(&0)),
        }
    }

    fn pattern(&mut self, a: Arg, len: u64) -> Option<Fill> {
        match a {
            Arg::Buf(off) if len > 0 && len <= abi::MAX_MESSAGE as u64 && off + len <= BUF_LEN => {
                Some(Fill::Pattern { off, len, seed: self.rng.next_u64() & 0xffff_ffff })
            }
            _ => None,
        }
    }

    /// A call that makes something happen between processes (a
    /// rendezvous, a hand-off, a wake-up, a reap), when one is possible.
    fn purposeful(&mut self, me: Pid) -> Option<Call> {
        let Gen { model: m, rng, .. } = self;
        let arena_page = |rng: &mut Rng| ARENA + rng.below(64) * PAGE;
        let tid = m.info.get(&me)?.tid;
        let v = Arg::Val;
        let mut options: Vec<Call> = Vec::new();
        let mine: Vec<u64> = m.chans.chans.iter().filter(|(&c, ch)| ch.receiver == me && c < FIRST_HARNESS_CHAN).map(|(&c, _)| c).collect();
        for (&c, ch) in &m.chans.chans {
            if c >= FIRST_HARNESS_CHAN {
                continue;
            }
            if ch.receiver != me && ch.waiting.is_some() {
                let cap = ch.waiting.as_ref().map_or(0, |w| w.cap as u64);
                let len = rng.range(0, cap.min(4096));
                let off = rng.below(BUF_LEN - len + 1);
                let fill = Fill::Pattern { off, len, seed: rng.next_u64() & 0xffff };
                options.push(Call::new(nr::SEND, &[v(c), Arg::Buf(off), v(len)]).fill(fill.clone()));
                let reply = rng.pick(&mine).copied();
                if let Some(r) = reply {
                    let roff = rng.below(BUF_LEN - 4096);
                    options.push(Call::new(nr::CALL, &[v(c), Arg::Buf(off), v(len), v(r), Arg::Buf(roff), v(4096)]).fill(fill));
                }
                // The same in registers (a send only, or a call).
                let slen = rng.range(0, cap.min(abi::SHORT_MESSAGE as u64));
                let words = [rng.next_u64(), rng.next_u64(), rng.next_u64()];
                options.push(Call::vals(nr::CALL_SHORT, &[c, reply.unwrap_or(abi::NO_CHANNEL), slen, words[0], words[1], words[2]]));
            }
            if ch.receiver == me && !ch.senders.is_empty() {
                let cap = if rng.chance(1, 4) { rng.range(1, 64) } else { 4096 };
                let arena = arena_pages(m, me);
                let dst = match arena.first() {
                    Some(&a) if rng.chance(1, 3) => Arg::Val(a + rng.below(64)),
                    _ => Arg::Buf(rng.below(BUF_LEN - 4096)),
                };
                options.push(Call::new(nr::RECV, &[v(c), dst, v(cap)]));
                options.push(Call::vals(nr::CALL_SHORT, &[abi::NO_CHANNEL, c, 0, 0, 0, 0]));
            }
        }
        if mine.is_empty() || rng.chance(1, 6) {
            options.push(Call::vals(nr::CHAN_CREATE, &[u64::MAX]));
        } else if let Some(&c) = rng.pick(&mine) {
            let off = rng.below(BUF_LEN - 4096);
            options.push(Call::new(nr::RECV, &[v(c), Arg::Buf(off), v(4096)]));
        }
        let held: Vec<u64> = m.objs.mutexes.iter().filter(|(_, x)| x.owner == Some(tid)).map(|(&i, _)| i).collect();
        let cvs: Vec<u64> = m.objs.cvs.keys().copied().collect();
        for &mx in &held {
            options.push(Call::vals(nr::MUTEX_UNLOCK, &[mx]));
            if let Some(&cv) = rng.pick(&cvs) {
                options.push(Call::vals(nr::CV_WAIT, &[cv, mx]));
            }
        }
        if held.is_empty() {
            if let Some(&mx) = rng.pick(&m.objs.mutexes.keys().copied().collect::<Vec<_>>()) {
                options.push(Call::vals(nr::MUTEX_LOCK, &[mx]));
            } else {
                options.push(Call::vals(nr::MUTEX_CREATE, &[]));
            }
        }
        if cvs.is_empty() {
            options.push(Call::vals(nr::CV_CREATE, &[]));
        }
        for (&cv, c) in &m.objs.cvs {
            if !c.waiters.is_empty() {
                options.push(Call::vals(if rng.chance(1, 3) { nr::CV_BROADCAST } else { nr::CV_SIGNAL }, &[cv]));
            }
        }
        let mut peers = Vec::new();
        for (&c, p) in &m.procs.procs {
            if p.parent == me {
                options.push(Call::vals(nr::WAIT, &[if rng.chance(1, 3) { abi::ANY_CHILD } else { c as u64 }]));
                if rng.chance(1, 4) {
                    options.push(Call::vals(nr::KILL, &[c as u64]));
                }
            }
            if c != me && m.info.get(&c).is_some_and(|i| matches!(i.who, Some(Who::Worker(_)))) {
                peers.push(c as u64);
            }
        }
        if let Some(&peer) = rng.pick(&peers) {
            let call = if rng.chance(2, 3) { Call::vals(nr::SHM_OFFER, &[peer, arena_page(rng)]) } else { Call::vals(nr::SHM_STATUS, &[peer]) };
            options.push(call);
        }
        let arena = arena_pages(m, me);
        if let Some(&a) = rng.pick(&arena) {
            options.push(Call::vals(nr::MEM_UNMAP, &[a, 1]));
            // Send from mapped (possibly shared) memory, so that its bytes travel.
            for (&c, ch) in &m.chans.chans {
                if c < FIRST_HARNESS_CHAN && ch.receiver != me && ch.waiting.is_some() {
                    options.push(Call::new(nr::SEND, &[v(c), v(a + rng.below(256)), v(rng.range(1, 128))]));
                }
            }
        }
        options.push(Call::vals(nr::MEM_MAP, &[arena_page(rng), rng.range(1, 4), 1]));
        rng.pick(&options).cloned()
    }

    /// A random call for idle worker `i`.
    fn random_call(&mut self, i: usize) -> Option<Call> {
        let me = self.model.pid_of_worker(i)?;
        if self.rng.chance(1, 2) {
            if let Some(c) = self.purposeful(me) {
                return Some(c);
            }
        }
        if self.rng.chance(1, 16) {
            return Some(self.call_short_choice(me));
        }
        if self.rng.chance(1, 24) {
            return Some(self.file_choice());
        }
        if self.rng.chance(1, 24) {
            return Some(self.vm_choice(me));
        }
        // Weights per call number (0..=30), then a few unknown numbers.
        const W: [u64; 32] = [
            2, 6, 5, 2, 1, 2, 2, 3, 3, 2, 12, 10, 8, 6, 4, 4, 6, 5, 3, 4, 4, 3, 1, 9, 5, 2, 2, 4, 6, 2, 1, 2,
        ];
        let pick = self.rng.weighted(&W) as u64;
        let v = Arg::Val;
        let call = match pick {
            nr::EXIT => Call::vals(nr::EXIT, &[self.rng.below(256)]),
            nr::SPAWN => return Some(self.spawn_choice(me)),
            nr::WAIT => {
                let w = if self.rng.chance(1, 3) { abi::ANY_CHILD } else { self.pid_choice(me) };
                Call::vals(nr::WAIT, &[w])
            }
            nr::SLEEP => Call::vals(nr::SLEEP, &[self.rng.below(3)]),
            nr::CONSOLE_WRITE => {
                let len = match self.rng.below(6) {
                    0 => 5000,
                    1 => u64::MAX,
                    _ => self.rng.below(40),
                };
                let p = if self.rng.chance(1, 2) && len < 100 { Arg::Ro(self.rng.below(100)) } else { Arg::Val(*self.rng.pick(&HOSTILE).unwrap_or(&0)) };
                Call::new(nr::CONSOLE_WRITE, &[p, v(len)])
            }
            nr::CONSOLE_READ => {
                let len = if self.rng.chance(1, 3) { 0 } else { self.rng.range(1, 300) };
                let p = if len == 0 && self.rng.chance(1, 2) { Arg::Buf(0) } else { Arg::Val(*self.rng.pick(&HOSTILE).unwrap_or(&0)) };
                Call::new(nr::CONSOLE_READ, &[p, v(len)])
            }
            nr::SEND => {
                let chan = self.chan_choice(me, false);
                let len = self.msg_len();
                let p = self.ptr(me, len, false);
                let mut c = Call::new(nr::SEND, &[v(chan), p, v(len)]);
                if let Some(f) = self.pattern(p, len) {
                    c = c.fill(f);
                }
                c
            }
            nr::RECV => {
                let chan = self.chan_choice(me, true);
                let cap = match self.rng.below(6) {
                    0 => 0,
                    1 => u64::MAX,
                    _ => self.rng.range(1, 4096),
                };
                let p = self.ptr(me, cap.min(4096), true);
                Call::new(nr::RECV, &[v(chan), p, v(cap)])
            }
            nr::CALL => {
                let chan = self.chan_choice(me, false);
                let reply = self.chan_choice(me, true);
                let len = self.msg_len();
                let sp = self.ptr(me, len, false);
                let cap = self.rng.range(0, 4096);
                // Sometimes the reply lands on top of the request.
                let rp = if self.rng.chance(1, 4) { sp } else { self.ptr(me, cap, true) };
                let mut c = Call::new(nr::CALL, &[v(chan), sp, v(len), v(reply), rp, v(cap)]);
                if let Some(f) = self.pattern(sp, len) {
                    c = c.fill(f);
                }
                c
            }
            nr::SHM_OFFER => {
                let peer = self.pid_choice(me);
                let va = match self.rng.below(10) {
                    0..=5 => self.arena_page(),
                    6 => self.arena_page() + 8,
                    7 => *self.arena_pages(me).first().unwrap_or(&ARENA),
                    _ => *self.rng.pick(&HOSTILE).unwrap_or(&0),
                };
                Call::vals(nr::SHM_OFFER, &[peer, va])
            }
            nr::SHM_STATUS => Call::vals(nr::SHM_STATUS, &[self.pid_choice(me)]),
            nr::MUTEX_LOCK | nr::MUTEX_UNLOCK => Call::vals(pick, &[self.mutex_choice(me)]),
            nr::CV_WAIT => {
                let cv = self.cv_choice();
                let m = self.mutex_choice(me);
                Call::vals(nr::CV_WAIT, &[cv, m])
            }
            nr::CV_SIGNAL | nr::CV_BROADCAST => Call::vals(pick, &[self.cv_choice()]),
            nr::MEM_MAP => {
                let va = match self.rng.below(12) {
                    0..=7 => self.arena_page(),
                    8 => self.arena_page() + 1,
                    9 => 0x40_0000,
                    _ => *self.rng.pick(&HOSTILE).unwrap_or(&0) & !0xfff,
                };
                let pages = match self.rng.below(16) {
                    0 => 0,
                    1 => 1 << 16,
                    2 => 1 << 17,
                    3 => u64::MAX,
                    _ => self.rng.range(1, 6),
                };
                let prot = *self.rng.pick(&[1u64, 1, 1, 1, 1, 0, 2, 3, 4]).unwrap_or(&1);
                Call::vals(nr::MEM_MAP, &[va, pages, prot])
            }
            nr::MEM_UNMAP => {
                let mapped = self.arena_pages(me);
                let va = match self.rng.below(8) {
                    0..=4 if !mapped.is_empty() => *self.rng.pick(&mapped).unwrap_or(&ARENA),
                    5 => self.arena_page() + 3,
                    6 => self.arena_page(),
                    _ => *self.rng.pick(&HOSTILE).unwrap_or(&0) & !0xfff,
                };
                let pages = if self.rng.chance(1, 8) { 0 } else { self.rng.range(1, 3) };
                Call::vals(nr::MEM_UNMAP, &[va, pages])
            }
            nr::PS => {
                let len = *self.rng.pick(&[0u64, 63, 64, 640, 64 * 40, 1 << 40]).unwrap_or(&640);
                let p = match self.rng.below(4) {
                    0 => Arg::Ro(0),
                    1 => Arg::Val(*self.rng.pick(&HOSTILE).unwrap_or(&0)),
                    _ if len <= 64 * 40 => Arg::Buf(self.rng.below(64)),
                    _ => Arg::Val(0),
                };
                Call::new(nr::PS, &[p, v(len)])
            }
            nr::PROGRAMS => {
                let len = *self.rng.pick(&[0u64, 1, 5, 40, 200, 4096]).unwrap_or(&200);
                let p = match self.rng.below(4) {
                    0 => Arg::Ro(0),
                    1 => Arg::Val(*self.rng.pick(&HOSTILE).unwrap_or(&0)),
                    _ => Arg::Buf(self.rng.below(BUF_LEN - 4096)),
                };
                Call::new(nr::PROGRAMS, &[p, v(len)])
            }
            nr::KILL => Call::vals(nr::KILL, &[self.pid_choice(me)]),
            nr::CHAN_CREATE => {
                let want = match self.rng.below(8) {
                    0..=3 => u64::MAX,
                    4 => *self.rng.pick(&[MAX_CHANNELS as u64, 1000, DRIVER_CHAN]).unwrap_or(&DRIVER_CHAN),
                    _ => self.rng.below(12),
                };
                Call::vals(nr::CHAN_CREATE, &[want])
            }
            nr::SYSINFO => {
                let len = *self.rng.pick(&[64u64, 64, 63, 0, 200]).unwrap_or(&64);
                let p = match self.rng.below(4) {
                    0 => Arg::Ro(0),
                    1 => Arg::Val(*self.rng.pick(&HOSTILE).unwrap_or(&0)),
                    _ => Arg::Buf(self.rng.below(1024)),
                };
                Call::new(nr::SYSINFO, &[p, v(len)])
            }
            nr::POWEROFF => Call::vals(nr::POWEROFF, &[self.rng.below(3)]),
            31 => Call::vals(*self.rng.pick(&[nr::COUNT, 999, 1 << 63, u64::MAX]).unwrap_or(&999), &[1, 2, 3]),
            other => Call::vals(other, &[]),
        };
        Some(call)
    }

    fn spawn_choice(&mut self, me: Pid) -> Call {
        let cpu = if self.rng.chance(1, 10) { *self.rng.pick(&[self.cpus, 99, u64::MAX]).unwrap_or(&99) } else { self.rng.below(self.cpus) };
        // Now and then a process limit for the child's subtree (1: no children).
        let cpu = if self.rng.chance(1, 6) { cpu | abi::spawn_cpu(0, 1 + self.rng.below(3) as u32) } else { cpu };
        let quota = self.worker_quota();
        let spare = self.model.usage(self.model.info.get(&me).map_or(mm::ContainerId::ROOT, |p| p.container));
        let quota = match self.rng.below(8) {
            0 => spare.0 - spare.1 + 1,
            _ => quota,
        };
        match self.rng.below(10) {
            0..=5 => match self.next_worker_index() {
                Some(i) => spawn_call(i, quota, cpu),
                None => spawn_call(0, 1, cpu),
            },
            6 => {
                // Another program of the image: always too little quota to start.
                let names: Vec<String> = self.model.cfg.programs.iter().map(|(n, _)| n.clone()).collect();
                let name = self.rng.pick(&names).cloned().unwrap_or_default();
                Call::new(nr::SPAWN, &[Arg::Buf(0), Arg::Val(name.len() as u64), Arg::Val(self.rng.below(4)), Arg::Val(cpu), Arg::Buf(64), Arg::Val(0)])
                    .fill(Fill::Bytes { off: 0, data: name.into_bytes() })
            }
            7 => {
                let (name, len): (&[u8], u64) = match self.rng.below(4) {
                    0 => (b"no-such-program", 15),
                    1 => (b"conform", 40),
                    2 => (b"\xffconform", 8),
                    _ => (b"", 0),
                };
                Call::new(nr::SPAWN, &[Arg::Buf(0), Arg::Val(len), Arg::Val(quota), Arg::Val(cpu), Arg::Buf(64), Arg::Val(3)])
                    .fill(Fill::Bytes { off: 0, data: name.to_vec() })
                    .fill(Fill::Bytes { off: 64, data: b"w 0".to_vec() })
            }
            8 => {
                let bad = *self.rng.pick(&HOSTILE).unwrap_or(&0);
                let (np, ap) = if self.rng.chance(1, 2) { (Arg::Val(bad), Arg::Buf(64)) } else { (Arg::Buf(0), Arg::Val(bad)) };
                Call::new(nr::SPAWN, &[np, Arg::Val(7), Arg::Val(quota), Arg::Val(cpu), ap, Arg::Val(3)])
                    .fill(Fill::Bytes { off: 0, data: WORKER.as_bytes().to_vec() })
                    .fill(Fill::Bytes { off: 64, data: b"w 0".to_vec() })
            }
            _ => {
                // Arguments too long, or not UTF-8.
                let (data, len) = if self.rng.chance(1, 2) { (vec![b'x'; 300], 257) } else { (vec![b'w', b' ', 0xc3], 3) };
                Call::new(nr::SPAWN, &[Arg::Buf(0), Arg::Val(7), Arg::Val(quota), Arg::Val(cpu), Arg::Buf(64), Arg::Val(len)])
                    .fill(Fill::Bytes { off: 0, data: WORKER.as_bytes().to_vec() })
                    .fill(Fill::Bytes { off: 64, data })
            }
        }
    }

    // ---- cleanup ----

    fn is_driver_descendant(&self, pid: Pid) -> bool {
        self.model.procs.ancestors(pid).contains(&self.model.driver)
    }

    fn who(&self, pid: Pid) -> Option<Who> {
        self.model.info.get(&pid).and_then(|p| p.who)
    }

    fn cleanup_candidates(&self) -> Vec<Step> {
        let m = &self.model;
        let mut out = Vec::new();
        let pids = m.trace_pids();
        let idle = |pid: &Pid| m.info.get(pid).is_some_and(|p| p.run == Run::Idle);
        let run = |pid: &Pid| m.info.get(pid).map(|p| p.run.clone());
        // 1. Reap zombies (a container with children left is destroyed
        //    once they are gone: ReapSemantics::Deferred).
        for &z in &pids {
            if run(&z) != Some(Run::Zombie) {
                continue;
            }
            let parent = m.procs.procs.get(&z).map_or(0, |p| p.parent);
            match self.who(parent) {
                Some(w @ Who::Worker(_)) if idle(&parent) => out.push(Step { who: w, call: Call::vals(nr::WAIT, &[z as u64]) }),
                Some(Who::Driver) => out.push(Step { who: Who::Driver, call: Call::vals(nr::WAIT, &[z as u64]) }),
                _ => {}
            }
        }
        // 2. The driver kills blocked descendants.
        let blocked: Vec<Pid> = pids.iter().copied().filter(|p| matches!(run(p), Some(Run::Blocked(_))) && self.is_driver_descendant(*p)).collect();
        for p in blocked {
            out.push(Step { who: Who::Driver, call: Call::vals(nr::KILL, &[p as u64]) });
        }
        // 3. Idle workers exit.
        for &p in &pids {
            if idle(&p) {
                if let Some(w) = self.who(p) {
                    out.push(Step { who: w, call: Call::vals(nr::EXIT, &[0]) });
                }
            }
        }
        // 4. Blocked orphans: release what they wait for.
        for &p in &pids {
            let Some(Run::Blocked(c)) = run(&p) else { continue };
            match c {
                Cont::Recv { chan, .. } => out.push(Step { who: Who::Driver, call: Call::new(nr::SEND, &[Arg::Val(chan), Arg::Buf(0), Arg::Val(0)]) }),
                Cont::Cv { cv, .. } => out.push(Step { who: Who::Driver, call: Call::vals(nr::CV_SIGNAL, &[cv]) }),
                Cont::Send { chan, .. } => {
                    if let Some(r) = m.chans.chans.get(&chan).map(|ch| ch.receiver) {
                        if let (Some(w @ Who::Worker(_)), true) = (self.who(r), idle(&r)) {
                            out.push(Step { who: w, call: Call::new(nr::RECV, &[Arg::Val(chan), Arg::Buf(0), Arg::Val(4096)]) });
                        }
                    }
                }
                Cont::Mutex { m: mx } => {
                    let owner = m.objs.mutexes.get(&mx).and_then(|x| x.owner);
                    if let Some(o) = owner.and_then(|t| m.info.iter().find(|(_, i)| i.tid == t).map(|(&p, _)| p)) {
                        if let (Some(w @ Who::Worker(_)), true) = (self.who(o), idle(&o)) {
                            out.push(Step { who: w, call: Call::vals(nr::MUTEX_UNLOCK, &[mx]) });
                        }
                    }
                }
                Cont::Wait { .. } => {}
            }
        }
        out
    }

    fn cleanup(&mut self) -> bool {
        for _ in 0..400 {
            if self.model.trace_pids().is_empty() {
                return true;
            }
            let cands = self.cleanup_candidates();
            if !cands.into_iter().any(|c| self.try_step(c, Part::Cleanup)) {
                return false;
            }
        }
        false
    }
}

/// Generate the trace for `seed`.
pub fn generate(cfg: &Arc<Config>, env: &Env, seed: u64, opts: GenOpts, mutant: Mutant) -> Result<Generated, String> {
    let worker_pages = cfg.worker_pages().ok_or("the boot image has no usable `conform` program")?;
    let mut g = Gen {
        rng: Rng::new(seed),
        worker_pages,
        cpus: cfg.cpus,
        model: Model::new(cfg.clone(), env, mutant)?,
        steps: Vec::new(),
        expects: Vec::new(),
        parts: Vec::new(),
        _cfg: cfg,
    };
    let n = g.rng.range(2, 4) as usize;
    for i in 0..n {
        let q = worker_pages + g.rng.range(4, 60);
        let cpu = g.rng.below(g.cpus);
        // One trace in three: worker 0 has quota for a child of its own
        // but a process limit of 1 or 2, so that its spawns meet the limit.
        if i == 0 && g.rng.chance(1, 3) {
            let big = 2 * worker_pages + g.rng.range(40, 80);
            let word = abi::spawn_cpu(cpu as u32, 1 + g.rng.below(2) as u32);
            if g.try_step(Step { who: Who::Driver, call: spawn_call(i, big, word) }, Part::Setup) {
                continue;
            }
        }
        if !g.try_step(Step { who: Who::Driver, call: spawn_call(i, q, cpu) }, Part::Setup) {
            return Err(format!("seed {seed}: the driver cannot start worker {i} ({q} pages)"));
        }
    }
    // Random steps; the model after each, so that a cleanup that gets stuck
    // (blocked orphans nothing can release) can fall back to a shorter trace.
    let mut snapshots = vec![(g.model.clone(), g.steps.len())];
    let mut tries = 0;
    while g.parts.iter().filter(|p| **p == Part::Random).count() < opts.steps && tries < opts.steps * 30 {
        tries += 1;
        let idle = g.idle_workers();
        let st = if idle.is_empty() || g.rng.chance(1, 40) {
            // Everyone is blocked (or now and then): the driver starts another worker.
            match g.next_worker_index() {
                Some(i) => {
                    let q = worker_pages + g.rng.range(4, 40);
                    let cpu = g.rng.below(g.cpus);
                    Step { who: Who::Driver, call: spawn_call(i, q, cpu) }
                }
                None => break,
            }
        } else {
            let i = *g.rng.pick(&idle).unwrap_or(&0);
            match g.random_call(i) {
                Some(c) => Step { who: Who::Worker(i), call: c },
                None => continue,
            }
        };
        if g.try_step(st, Part::Random) {
            snapshots.push((g.model.clone(), g.steps.len()));
        }
    }
    let full = (g.steps.clone(), g.expects.clone(), g.parts.clone());
    while let Some((m, len)) = snapshots.pop() {
        g.model = m;
        g.steps = full.0[..len].to_vec();
        g.expects = full.1[..len].to_vec();
        g.parts = full.2[..len].to_vec();
        if g.cleanup() {
            return Ok(Generated { trace: Trace { seed, steps: g.steps, parts: g.parts }, expects: g.expects });
        }
    }
    Err(format!("seed {seed}: no cleanup found even for the setup alone"))
}

/// Run `steps` on a fresh model: each step's expectation, or the first
/// step the model rejects.
pub fn expectations(cfg: &Arc<Config>, env: &Env, steps: &[Step], mutant: Mutant) -> Result<(Vec<Expect>, Model), (usize, Reject)> {
    let mut m = Model::new(cfg.clone(), env, mutant).map_err(|e| (0, Reject::Model(e)))?;
    let mut out = Vec::with_capacity(steps.len());
    for (i, st) in steps.iter().enumerate() {
        out.push(m.step(st).map_err(|r| (i, r))?);
    }
    Ok((out, m))
}

/// A trace made of `setup` then `random`, with a fresh cleanup; None if
/// the model rejects a step or no cleanup exists.
pub fn assemble(cfg: &Arc<Config>, env: &Env, seed: u64, setup: &[Step], random: &[Step], mutant: Mutant) -> Option<Generated> {
    let worker_pages = cfg.worker_pages()?;
    let mut g = Gen {
        rng: Rng::new(seed),
        worker_pages,
        cpus: cfg.cpus,
        model: Model::new(cfg.clone(), env, mutant).ok()?,
        steps: Vec::new(),
        expects: Vec::new(),
        parts: Vec::new(),
        _cfg: cfg,
    };
    for st in setup {
        if !g.try_step(st.clone(), Part::Setup) {
            return None;
        }
    }
    for st in random {
        if !g.try_step(st.clone(), Part::Random) {
            return None;
        }
    }
    g.cleanup().then_some(Generated { trace: Trace { seed, steps: g.steps, parts: g.parts }, expects: g.expects })
}

/// What a set of traces exercised: per call, how often it returned each
/// result, blocked, or ended the caller.
#[derive(Default, Debug)]
pub struct Coverage {
    /// (call number, outcome) → count; outcomes: "ok", an error name, "blocks", "exits".
    pub counts: std::collections::BTreeMap<(u64, String), u64>,
    pub steps: u64,
    pub wakeups: u64,
}

impl Coverage {
    pub fn add(&mut self, g: &Generated) {
        for (st, e) in g.trace.steps.iter().zip(&g.expects) {
            self.steps += 1;
            let own = e.answers.iter().find(|(w, _)| *w == st.who).map(|(_, a)| a.clone());
            let outcome = if e.blocks {
                "blocks".to_string()
            } else if st.call.nr == nr::EXIT {
                "exits".to_string()
            } else {
                match own {
                    Some(crate::trace::Answer::Ret { rax: Some(r), .. }) => match abi::decode(r) {
                        Ok(_) => "ok".into(),
                        Err(e) => format!("{e:?}"),
                    },
                    _ => "ok".into(),
                }
            };
            let others = e.answers.iter().filter(|(w, a)| *w != st.who && !matches!(a, crate::trace::Answer::Hello)).count();
            self.wakeups += others as u64;
            *self.counts.entry((st.call.nr.min(nr::COUNT), outcome)).or_default() += 1;
        }
    }

    /// One line per call: `name: N (ok a, Err b, ...)`.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut by_call: std::collections::BTreeMap<u64, Vec<(String, u64)>> = Default::default();
        for ((n, o), c) in &self.counts {
            by_call.entry(*n).or_default().push((o.clone(), *c));
        }
        for (n, outs) in by_call {
            let total: u64 = outs.iter().map(|(_, c)| c).sum();
            let parts: Vec<String> = outs.iter().map(|(o, c)| format!("{o} {c}")).collect();
            let name = if n >= nr::COUNT { "unknown numbers" } else { crate::trace::call_name(n) };
            out.push_str(&format!("{name:>14}: {total:>6}  ({})\n", parts.join(", ")));
        }
        out.push_str(&format!("{} steps, {} blocked processes woken with an answer\n", self.steps, self.wakeups));
        out
    }
}

/// The orphan-container trace (a regression trace for a leak the
/// conformance checks found in mc2): a worker whose child outlives it is
/// reaped while that child's container still hangs below its own. As
/// documented (`semantics` Deferred) the reaped container goes, and its
/// quota returns to the grandparent, when the orphan is reaped; mc2 used to
/// never destroy it (`semantics` Leak, now a wrong spec the kernel must
/// disagree with).
pub fn container_leak_trace(cfg: &Arc<Config>, env: &Env, semantics: ReapSemantics) -> Result<Generated, String> {
    let mut model = Model::new(cfg.clone(), env, Mutant::None)?;
    model.reap = semantics;
    let (mut g, wp) = fixed_gen(cfg, model)?;
    let w = Who::Worker;
    step(&mut g, Who::Driver, spawn_call(0, 3 * wp + 20, 1), Part::Setup)?;
    step(&mut g, w(0), spawn_call(1, 2 * wp + 10, 2), Part::Random)?;
    let p1 = g.model.pid_of_worker(1).ok_or("w1 did not start")?;
    step(&mut g, w(1), spawn_call(2, wp + 5, 3), Part::Random)?;
    step(&mut g, w(1), Call::vals(nr::EXIT, &[0]), Part::Random)?;
    step(&mut g, w(0), Call::vals(nr::WAIT, &[p1 as u64]), Part::Random)?;
    step(&mut g, w(2), Call::vals(nr::EXIT, &[0]), Part::Random)?;
    fixed_done(g, "orphan-container")
}

/// The generator of a fixed trace (no randomness) over `model`, and the
/// pages a worker needs.
fn fixed_gen<'a>(cfg: &'a Arc<Config>, model: Model) -> Result<(Gen<'a>, u64), String> {
    let wp = cfg.worker_pages().ok_or("the boot image has no usable `conform` program")?;
    Ok((Gen { rng: Rng::new(0), worker_pages: wp, cpus: cfg.cpus, model, steps: Vec::new(), expects: Vec::new(), parts: Vec::new(), _cfg: cfg }, wp))
}

/// End a fixed trace: clean up, and hand the steps over.
fn fixed_done(mut g: Gen, what: &str) -> Result<Generated, String> {
    if !g.cleanup() {
        return Err(format!("no cleanup for the {what} trace"));
    }
    Ok(Generated { trace: Trace { seed: 0, steps: g.steps, parts: g.parts }, expects: g.expects })
}

/// One step of a fixed trace, run in the model (an error if it will not run).
fn step(g: &mut Gen, who: Who, call: Call, part: Part) -> Result<(), String> {
    let what = crate::trace::describe(&Step { who, call: call.clone() });
    if g.try_step(Step { who, call }, part) {
        Ok(())
    } else {
        Err(format!("the fixed trace does not run in the model at `{what}`"))
    }
}

/// The two-bad-buffers trace (a regression trace for a divergence the
/// conformance checks found, seed 795768887126 shrunk to 4 steps): a
/// sender whose buffer is unmapped waits on a channel whose receiver then
/// passes a buffer that runs past the end of the address space. The
/// sender's fault is reported (it gets BadAddress) and the receiver goes on
/// waiting; mc2 used to fail the receiver instead (its copy checked the
/// destination's overflow before the source).
pub fn bad_buffers_trace(cfg: &Arc<Config>, env: &Env) -> Result<Generated, String> {
    let model = Model::new(cfg.clone(), env, Mutant::None)?;
    let (mut g, wp) = fixed_gen(cfg, model)?;
    let w = Who::Worker;
    step(&mut g, Who::Driver, spawn_call(0, wp + 4, 1), Part::Setup)?;
    step(&mut g, Who::Driver, spawn_call(1, wp + 4, 0), Part::Setup)?;
    step(&mut g, w(1), Call::vals(nr::CHAN_CREATE, &[5]), Part::Random)?;
    step(&mut g, w(0), Call::vals(nr::SEND, &[5, 16, 18]), Part::Random)?;
    step(&mut g, w(1), Call::vals(nr::RECV, &[5, 0xffff_ffff_ffff_fffc, 1417]), Part::Random)?;
    fixed_done(g, "two-bad-buffers")
}

/// The limits trace: a worker started with a process limit of 2 (itself and
/// one more) may start one child but not a second, nor may that child start
/// a grandchild, until the child is reaped; a process holds at most
/// `abi::MAX_CHANNELS_PER_PROCESS` channels (its harness channel counts) and
/// as many mutexes and condition variables as their limits; every extra
/// claim is `TooMany`.
pub fn limits_trace(cfg: &Arc<Config>, env: &Env, mutant: Mutant) -> Result<Generated, String> {
    let model = Model::new(cfg.clone(), env, mutant)?;
    let (mut g, wp) = fixed_gen(cfg, model)?;
    let w = Who::Worker;
    let cpu = |c: u64, max_procs: u32| abi::spawn_cpu(c as u32 % cfg.cpus as u32, max_procs);
    step(&mut g, Who::Driver, spawn_call(0, 4 * wp + 40, cpu(1, 2)), Part::Setup)?;
    step(&mut g, w(0), spawn_call(1, wp + 8, cpu(2, 0)), Part::Random)?;
    step(&mut g, w(0), spawn_call(2, wp + 8, cpu(3, 0)), Part::Random)?;
    step(&mut g, w(1), spawn_call(3, 1, cpu(0, 0)), Part::Random)?;
    for _ in 0..abi::MAX_CHANNELS_PER_PROCESS {
        step(&mut g, w(1), Call::vals(nr::CHAN_CREATE, &[u64::MAX]), Part::Random)?;
    }
    step(&mut g, w(1), Call::vals(nr::CHAN_CREATE, &[7]), Part::Random)?;
    for _ in 0..=abi::MAX_MUTEXES_PER_PROCESS {
        step(&mut g, w(1), Call::vals(nr::MUTEX_CREATE, &[]), Part::Random)?;
    }
    for _ in 0..=abi::MAX_CVS_PER_PROCESS {
        step(&mut g, w(1), Call::vals(nr::CV_CREATE, &[]), Part::Random)?;
    }
    let p1 = g.model.pid_of_worker(1).ok_or("w1 did not start")?;
    step(&mut g, w(1), Call::vals(nr::EXIT, &[0]), Part::Random)?;
    step(&mut g, w(0), Call::vals(nr::WAIT, &[p1 as u64]), Part::Random)?;
    step(&mut g, w(0), spawn_call(4, wp + 8, cpu(3, 0)), Part::Random)?;
    fixed_done(g, "limits")
}

/// The orphan-kill trace: w1 (a child of w0) starts w2 and exits; once w0
/// has reaped w1, w2 is init's orphan, but its container still lies below
/// w0's, so w0 may kill it (and w2's own kill of w0 is refused).
pub fn orphan_kill_trace(cfg: &Arc<Config>, env: &Env, mutant: Mutant) -> Result<Generated, String> {
    let model = Model::new(cfg.clone(), env, mutant)?;
    let (mut g, wp) = fixed_gen(cfg, model)?;
    let w = Who::Worker;
    let cpu = |c: u64| c % cfg.cpus;
    step(&mut g, Who::Driver, spawn_call(0, 3 * wp + 20, cpu(1)), Part::Setup)?;
    step(&mut g, w(0), spawn_call(1, 2 * wp + 10, cpu(2)), Part::Random)?;
    step(&mut g, w(1), spawn_call(2, wp + 5, cpu(3)), Part::Random)?;
    let p0 = g.model.pid_of_worker(0).ok_or("w0 did not start")?;
    let p1 = g.model.pid_of_worker(1).ok_or("w1 did not start")?;
    let p2 = g.model.pid_of_worker(2).ok_or("w2 did not start")?;
    step(&mut g, w(1), Call::vals(nr::EXIT, &[0]), Part::Random)?;
    step(&mut g, w(0), Call::vals(nr::WAIT, &[p1 as u64]), Part::Random)?;
    step(&mut g, w(2), Call::vals(nr::KILL, &[p0 as u64]), Part::Random)?;
    step(&mut g, w(0), Call::vals(nr::KILL, &[p2 as u64]), Part::Random)?;
    fixed_done(g, "orphan-kill")
}
