//! Abstract specifications of this layer, in the style of mC2's layer
//! interfaces: pure state and pure transitions, no locks, no links.
//!
//! - [`QueueSpec`]: each queue is a sequence of thread ids; `enqueue`
//!   appends (refused if the thread is in any queue), `dequeue` pops the
//!   head, `remove` deletes wherever it is.
//! - [`SchedSpec`]: per thread a state and home CPU, per CPU the running
//!   thread, the ready sequence, the hand-off slot (a thread to run next,
//!   ahead of the ready sequence), the tick count and the set of sleepers,
//!   plus the wait queues handed out; yield, block, wake, sleep, tick, exit,
//!   reap as atomic steps. Where the implementation may choose (the order in
//!   which one tick wakes several sleepers), the step takes the choice as a
//!   witness and checks it.
//!
//! The implementation is checked against these by the proptest state
//! machines in `tests/` (and the whole-kernel spec reuses them). Compiled
//! only for tests or with the `spec` feature.

extern crate alloc;

use crate::queue::QueueError;
use crate::sched::{SchedError, State};
use crate::Tid;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

/// Abstract queue set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueSpec {
    pub queues: Vec<VecDeque<Tid>>,
    pub threads: usize,
}

impl QueueSpec {
    pub fn new(queues: usize, threads: usize) -> Self {
        QueueSpec { queues: (0..queues).map(|_| VecDeque::new()).collect(), threads }
    }

    fn holds(&self, t: Tid) -> bool {
        self.queues.iter().any(|q| q.contains(&t))
    }

    pub fn enqueue(&mut self, q: usize, t: Tid) -> Result<(), QueueError> {
        if q >= self.queues.len() {
            return Err(QueueError::NoSuchQueue);
        }
        if t as usize >= self.threads {
            return Err(QueueError::NoSuchThread);
        }
        if self.holds(t) {
            return Err(QueueError::AlreadyQueued);
        }
        self.queues[q].push_back(t);
        Ok(())
    }

    pub fn dequeue(&mut self, q: usize) -> Option<Tid> {
        self.queues.get_mut(q)?.pop_front()
    }

    pub fn remove(&mut self, q: usize, t: Tid) -> bool {
        match self.queues.get_mut(q).and_then(|qq| qq.iter().position(|&x| x == t).map(|i| (qq, i))) {
            Some((qq, i)) => {
                qq.remove(i);
                true
            }
            None => false,
        }
    }
}

/// Where a thread waits, if anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    /// In CPU `c`'s ready queue.
    Ready(usize),
    /// In wait queue `q`.
    Wait(usize),
    /// Among CPU `c`'s sleepers.
    Sleep(usize),
    /// In CPU `c`'s hand-off slot.
    Handoff(usize),
}

/// Abstract scheduler: what each CPU runs and what waits where.
///
/// Thread ids `0..cpus` are the idle threads: idle thread `c` is pinned to
/// CPU `c`, always `Running` (it is the CPU's fallback, also while another
/// thread runs) and never queued. Every other thread is `Free`, `Blocked`
/// (reserved and not started, taken from a wait queue and not yet woken,
/// waiting in a wait queue or asleep), `Ready` (in exactly its home CPU's
/// ready sequence or hand-off slot), `Running` (current of its home CPU) or
/// `Zombie`. See [`check`](Self::check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedSpec {
    pub state: Vec<State>,
    pub home: Vec<usize>,
    pub current: Vec<Tid>,
    pub ready: Vec<VecDeque<Tid>>,
    /// Per CPU, a thread to run next ahead of the ready sequence.
    pub handoff: Vec<Option<Tid>>,
    /// Wait queues handed out (by the implementation's ids), with their waiters.
    pub waiting: BTreeMap<usize, VecDeque<Tid>>,
    /// Ids [`alloc_queue`](Self::alloc_queue) hands out, lowest free first.
    pub wait_ids: Range<usize>,
    /// Timer ticks seen by each CPU.
    pub ticks: Vec<u64>,
    /// Sleepers of each CPU and the tick each waits for (a set).
    pub sleeping: Vec<BTreeMap<Tid, u64>>,
}

impl SchedSpec {
    /// `cpus` CPUs (and idle threads), `threads` thread ids in all, wait
    /// queues numbered `wait_ids`.
    pub fn new(cpus: usize, threads: usize, wait_ids: Range<usize>) -> Self {
        let mut s = SchedSpec {
            state: alloc::vec![State::Free; threads],
            home: alloc::vec![0; threads],
            current: (0..cpus as Tid).collect(),
            ready: (0..cpus).map(|_| VecDeque::new()).collect(),
            handoff: alloc::vec![None; cpus],
            waiting: BTreeMap::new(),
            wait_ids,
            ticks: alloc::vec![0; cpus],
            sleeping: (0..cpus).map(|_| BTreeMap::new()).collect(),
        };
        for c in 0..cpus {
            s.state[c] = State::Running;
            s.home[c] = c;
        }
        s
    }

    fn cpus(&self) -> usize {
        self.current.len()
    }

    fn idle(&self, cpu: usize) -> Tid {
        cpu as Tid
    }

    /// Is `t` an idle thread?
    pub fn is_idle(&self, t: Tid) -> bool {
        (t as usize) < self.cpus()
    }

    /// Where `t` waits, if anywhere.
    pub fn where_is(&self, t: Tid) -> Option<Where> {
        if let Some(c) = self.ready.iter().position(|r| r.contains(&t)) {
            return Some(Where::Ready(c));
        }
        if let Some(c) = self.handoff.iter().position(|&h| h == Some(t)) {
            return Some(Where::Handoff(c));
        }
        if let Some((&q, _)) = self.waiting.iter().find(|(_, w)| w.contains(&t)) {
            return Some(Where::Wait(q));
        }
        self.sleeping.iter().position(|s| s.contains_key(&t)).map(Where::Sleep)
    }

    fn run_next(&mut self, cpu: usize) {
        let next = self.handoff[cpu].take().or_else(|| self.ready[cpu].pop_front()).unwrap_or(self.idle(cpu));
        self.state[next as usize] = State::Running;
        self.current[cpu] = next;
    }

    fn make_ready(&mut self, t: Tid) {
        self.state[t as usize] = State::Ready;
        self.ready[self.home[t as usize]].push_back(t);
    }

    /// Reserve the lowest free non-idle slot.
    pub fn alloc_thread(&mut self) -> Result<Tid, SchedError> {
        let t = (self.cpus()..self.state.len()).find(|&t| self.state[t] == State::Free).ok_or(SchedError::NoThreadSlot)?;
        self.state[t] = State::Blocked;
        Ok(t as Tid)
    }

    /// Give back a reserved slot that was never started (anything else: no effect).
    pub fn release_slot(&mut self, t: Tid) {
        let ti = t as usize;
        if !self.is_idle(t) && ti < self.state.len() && self.state[ti] == State::Blocked && self.where_is(t).is_none() {
            self.state[ti] = State::Free;
        }
    }

    /// Make reserved thread `t` ready on `cpu`, its home from now on.
    pub fn start(&mut self, t: Tid, cpu: usize) -> Result<(), SchedError> {
        let ti = t as usize;
        if cpu >= self.cpus() {
            return Err(SchedError::BadCpu);
        }
        if self.is_idle(t) || ti >= self.state.len() || self.state[ti] != State::Blocked || self.where_is(t).is_some() {
            return Err(SchedError::BadThread);
        }
        self.home[ti] = cpu;
        self.make_ready(t);
        Ok(())
    }

    /// Hand out the lowest free wait queue.
    pub fn alloc_queue(&mut self) -> Result<usize, SchedError> {
        let q = self.wait_ids.clone().find(|q| !self.waiting.contains_key(q)).ok_or(SchedError::NoQueue)?;
        self.waiting.insert(q, VecDeque::new());
        Ok(q)
    }

    /// Take back wait queue `q` if it is empty (one never handed out: no effect).
    pub fn free_queue(&mut self, q: usize) -> Result<(), SchedError> {
        if !self.wait_ids.contains(&q) {
            return Err(SchedError::NoQueue);
        }
        if self.waiting.get(&q).is_some_and(|w| !w.is_empty()) {
            return Err(SchedError::QueueBusy);
        }
        self.waiting.remove(&q);
        Ok(())
    }

    pub fn queues_in_use(&self) -> usize {
        self.waiting.len()
    }

    pub fn has_ready(&self, cpu: usize) -> bool {
        self.handoff[cpu].is_some() || !self.ready[cpu].is_empty()
    }

    /// The running thread of `cpu` goes to the back of the ready sequence if
    /// another thread is ready (the idle thread does not yield: it is left
    /// by [`idle_step`](Self::idle_step)).
    pub fn yield_now(&mut self, cpu: usize) {
        let cur = self.current[cpu];
        if !self.has_ready(cpu) || cur as usize == cpu {
            return;
        }
        self.make_ready(cur);
        self.run_next(cpu);
    }

    /// The idle loop's step: leave the idle thread for the first ready one.
    pub fn idle_step(&mut self, cpu: usize) -> bool {
        if self.current[cpu] as usize != cpu || !self.has_ready(cpu) {
            return false;
        }
        self.run_next(cpu);
        true
    }

    /// Block the running (non-idle) thread of `cpu` on wait queue `q`.
    pub fn block_on(&mut self, cpu: usize, q: usize) {
        self.block_on_then(cpu, q, |_| {})
    }

    /// [`block_on`](Self::block_on), with `meanwhile` (what others do once
    /// the caller's lock is released) happening after the thread is in the
    /// queue and before its CPU moves on: if that wakes it, the CPU finds it
    /// ready like any other thread.
    pub fn block_on_then(&mut self, cpu: usize, q: usize, meanwhile: impl FnOnce(&mut Self)) {
        let cur = self.current[cpu];
        debug_assert!(!self.is_idle(cur) && self.waiting.contains_key(&q));
        self.state[cur as usize] = State::Blocked;
        self.waiting.entry(q).or_default().push_back(cur);
        meanwhile(self);
        self.run_next(cpu);
    }

    /// Wake the oldest waiter of `q`: it joins its home CPU's ready sequence.
    pub fn wake_one(&mut self, q: usize) -> Option<Tid> {
        let t = self.waiting.get_mut(&q)?.pop_front()?;
        self.make_ready(t);
        Some(t)
    }

    pub fn wake_all(&mut self, q: usize) -> usize {
        let mut n = 0;
        while self.wake_one(q).is_some() {
            n += 1;
        }
        n
    }

    /// Take the oldest waiter out of `q` without waking it (it stays
    /// blocked, in no queue, until [`make_runnable`](Self::make_runnable),
    /// [`wake_handoff`](Self::wake_handoff) or [`requeue`](Self::requeue)).
    pub fn take(&mut self, q: usize) -> Option<Tid> {
        self.waiting.get_mut(&q)?.pop_front()
    }

    /// A taken thread joins its home CPU's ready sequence.
    pub fn make_runnable(&mut self, t: Tid) {
        self.make_ready(t);
    }

    /// A taken thread goes back to the tail of `q`.
    pub fn requeue(&mut self, q: usize, t: Tid) {
        self.waiting.entry(q).or_default().push_back(t);
    }

    /// A taken thread is woken by a thread running on `cpu`: if it lives
    /// there and the hand-off slot is free, it runs next on that CPU, ahead
    /// of the ready sequence; otherwise as [`make_runnable`](Self::make_runnable).
    pub fn wake_handoff(&mut self, cpu: usize, t: Tid) {
        if self.home[t as usize] == cpu && self.handoff[cpu].is_none() {
            self.state[t as usize] = State::Ready;
            self.handoff[cpu] = Some(t);
        } else {
            self.make_ready(t);
        }
    }

    /// `cpu`'s hand-off slot, if taken, goes to the back of its ready sequence.
    pub fn flush_handoff(&mut self, cpu: usize) {
        if let Some(t) = self.handoff[cpu].take() {
            self.ready[cpu].push_back(t);
        }
    }

    /// Wake `t` if it waits in `q`.
    pub fn wake_thread(&mut self, q: usize, t: Tid) -> bool {
        let Some(w) = self.waiting.get_mut(&q) else { return false };
        let Some(i) = w.iter().position(|&x| x == t) else { return false };
        w.remove(i);
        self.make_ready(t);
        true
    }

    /// Wake `t` wherever it waits or sleeps (not if it is ready or running).
    pub fn interrupt(&mut self, t: Tid) -> bool {
        match self.where_is(t) {
            Some(Where::Wait(q)) => self.wake_thread(q, t),
            Some(Where::Sleep(c)) => {
                self.sleeping[c].remove(&t);
                self.make_ready(t);
                true
            }
            _ => false,
        }
    }

    /// The running (non-idle) thread of `cpu` sleeps until the CPU's tick
    /// count reaches `until` (no effect if it has).
    pub fn sleep_until(&mut self, cpu: usize, until: u64) {
        let cur = self.current[cpu];
        debug_assert!(!self.is_idle(cur));
        if self.ticks[cpu] >= until {
            return;
        }
        self.state[cur as usize] = State::Blocked;
        self.sleeping[cpu].insert(cur, until);
        self.run_next(cpu);
    }

    pub fn has_sleepers(&self, cpu: usize) -> bool {
        !self.sleeping[cpu].is_empty()
    }

    /// The sleepers of `cpu` that the next tick wakes.
    pub fn due(&self, cpu: usize) -> Vec<Tid> {
        let now = self.ticks[cpu] + 1;
        self.sleeping[cpu].iter().filter(|(_, &u)| u <= now).map(|(&t, _)| t).collect()
    }

    /// A tick on `cpu`: every sleeper whose time has come becomes ready, in
    /// the order `order` (the implementation's choice). `false` (and no
    /// effect) unless `order` holds exactly those sleepers, once each.
    pub fn tick(&mut self, cpu: usize, order: &[Tid]) -> bool {
        let mut due = self.due(cpu);
        let mut given = order.to_vec();
        due.sort_unstable();
        given.sort_unstable();
        if due != given {
            return false;
        }
        self.ticks[cpu] += 1;
        for &t in order {
            self.sleeping[cpu].remove(&t);
            self.make_ready(t);
        }
        true
    }

    /// The running (non-idle) thread of `cpu` ends: it is a zombie until reaped.
    pub fn exit_current(&mut self, cpu: usize) {
        let cur = self.current[cpu];
        debug_assert!(!self.is_idle(cur));
        self.state[cur as usize] = State::Zombie;
        self.run_next(cpu);
    }

    pub fn reap(&mut self, t: Tid) -> Result<(), SchedError> {
        let ti = t as usize;
        if self.is_idle(t) || ti >= self.state.len() || self.state[ti] != State::Zombie {
            return Err(SchedError::BadThread);
        }
        self.state[ti] = State::Free;
        Ok(())
    }

    /// The invariants every reachable state satisfies.
    pub fn check(&self) -> Result<(), String> {
        for c in 0..self.cpus() {
            let idle = c as Tid;
            if self.state[c] != State::Running || self.home[c] != c || self.where_is(idle).is_some() {
                return Err(format!("idle thread {c}: {:?} on CPU {}, in {:?}", self.state[c], self.home[c], self.where_is(idle)));
            }
            let cur = self.current[c];
            if self.state[cur as usize] != State::Running || self.home[cur as usize] != c {
                return Err(format!("CPU {c} runs {cur}, which is {:?} on CPU {}", self.state[cur as usize], self.home[cur as usize]));
            }
            for &t in &self.ready[c] {
                if self.state[t as usize] != State::Ready || self.home[t as usize] != c {
                    return Err(format!("{t} in CPU {c}'s ready queue is {:?} on CPU {}", self.state[t as usize], self.home[t as usize]));
                }
            }
        }
        for t in self.cpus()..self.state.len() {
            let tt = t as Tid;
            let n = self.ready.iter().chain(self.waiting.values()).map(|q| q.iter().filter(|&&x| x == tt).count()).sum::<usize>()
                + self.sleeping.iter().filter(|s| s.contains_key(&tt)).count()
                + self.handoff.iter().filter(|&&h| h == Some(tt)).count();
            let running_on = self.current.iter().filter(|&&x| x == tt).count();
            let ok = match self.state[t] {
                State::Ready => n == 1 && matches!(self.where_is(tt), Some(Where::Ready(c) | Where::Handoff(c)) if c == self.home[t]),
                State::Running => n == 0 && running_on == 1 && self.current[self.home[t]] == tt,
                State::Blocked => n <= 1 && !matches!(self.where_is(tt), Some(Where::Ready(_) | Where::Handoff(_))),
                State::Free | State::Zombie => n == 0,
            };
            if !ok || (self.state[t] != State::Running && running_on != 0) {
                return Err(format!("thread {t}: {:?} on CPU {}, queued {n} times ({:?}), current of {running_on} CPUs", self.state[t], self.home[t], self.where_is(tt)));
            }
        }
        Ok(())
    }
}
