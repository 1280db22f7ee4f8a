//! Abstract specifications of this layer, in the style of mC2's layer
//! interfaces: pure state and pure transitions, no locks, no links.
//!
//! - [`QueueSpec`]: each queue is a sequence of thread ids; `enqueue`
//!   appends (refused if the thread is in any queue), `dequeue` pops the
//!   head, `remove` deletes wherever it is.
//! - [`SchedSpec`]: per thread a state and home CPU, per CPU the running
//!   thread and the ready sequence; yield, block, wake, exit, reap as atomic
//!   steps.
//!
//! The implementation is checked against these by the proptest state
//! machines in `tests/` (and the whole-kernel spec reuses them). Compiled
//! only for tests or with the `spec` feature.

extern crate alloc;

use crate::queue::QueueError;
use crate::sched::State;
use crate::Tid;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

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

/// Abstract scheduler: what each CPU runs and what waits where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedSpec {
    pub state: Vec<State>,
    pub home: Vec<usize>,
    pub current: Vec<Tid>,
    pub ready: Vec<VecDeque<Tid>>,
    /// Wait queues by id (ids as the implementation numbers them).
    pub waiting: Vec<VecDeque<Tid>>,
}

impl SchedSpec {
    pub fn new(cpus: usize, threads: usize, queues: usize) -> Self {
        let mut s = SchedSpec {
            state: alloc::vec![State::Free; threads],
            home: alloc::vec![0; threads],
            current: (0..cpus as Tid).collect(),
            ready: (0..cpus).map(|_| VecDeque::new()).collect(),
            waiting: (0..queues).map(|_| VecDeque::new()).collect(),
        };
        for c in 0..cpus {
            s.state[c] = State::Running;
            s.home[c] = c;
        }
        s
    }

    fn idle(&self, cpu: usize) -> Tid {
        cpu as Tid
    }

    fn run_next(&mut self, cpu: usize) {
        let next = self.ready[cpu].pop_front().unwrap_or(self.idle(cpu));
        self.state[next as usize] = State::Running;
        self.current[cpu] = next;
    }

    /// Reserve the lowest free non-idle slot.
    pub fn alloc_thread(&mut self) -> Option<Tid> {
        let cpus = self.current.len();
        let t = (cpus..self.state.len()).find(|&t| self.state[t] == State::Free)?;
        self.state[t] = State::Blocked;
        Some(t as Tid)
    }

    pub fn start(&mut self, t: Tid, cpu: usize) -> bool {
        let ti = t as usize;
        if ti < self.current.len() || ti >= self.state.len() || cpu >= self.current.len() || self.state[ti] != State::Blocked || self.waiting.iter().any(|q| q.contains(&t)) {
            return false;
        }
        self.home[ti] = cpu;
        self.state[ti] = State::Ready;
        self.ready[cpu].push_back(t);
        true
    }

    pub fn yield_now(&mut self, cpu: usize) {
        let cur = self.current[cpu];
        if self.ready[cpu].is_empty() || cur as usize == cpu {
            return;
        }
        self.state[cur as usize] = State::Ready;
        self.ready[cpu].push_back(cur);
        self.run_next(cpu);
    }

    /// Block the running thread of `cpu` on wait queue `q` (index into `waiting`).
    pub fn block_on(&mut self, cpu: usize, q: usize) {
        let cur = self.current[cpu];
        self.state[cur as usize] = State::Blocked;
        self.waiting[q].push_back(cur);
        self.run_next(cpu);
    }

    pub fn wake_one(&mut self, q: usize) -> Option<Tid> {
        let t = self.waiting[q].pop_front()?;
        self.state[t as usize] = State::Ready;
        self.ready[self.home[t as usize]].push_back(t);
        Some(t)
    }

    pub fn exit_current(&mut self, cpu: usize) {
        let cur = self.current[cpu];
        self.state[cur as usize] = State::Zombie;
        self.run_next(cpu);
    }

    pub fn reap(&mut self, t: Tid) -> bool {
        let ti = t as usize;
        if ti < self.current.len() || ti >= self.state.len() || self.state[ti] != State::Zombie {
            return false;
        }
        self.state[ti] = State::Free;
        true
    }
}
