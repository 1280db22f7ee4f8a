//! Abstract specifications of this layer: pure state, every call one atomic
//! step, no locks, no scheduler queues, no result slots.
//!
//! - [`ProcSpec`]: the process table (state, parent link, thread, exit code,
//!   kill mark per pid; zombies until their parent reaps them; orphans go
//!   to init).
//! - [`ObjectsSpec`]: mutexes (owner, FIFO waiters) and condition variables
//!   (FIFO waiters).
//! - [`ChannelsSpec`]: channels (receiver, FIFO waiting senders with their
//!   messages, the waiting receiver) and the log of delivered messages.
//!
//! A call that would block returns [`Step::Blocked`]: the caller sleeps until
//! some later step wakes it with a [`Wake`] (the result it then returns).
//! Steps that wake threads return their wake-ups in order. A woken
//! condition-variable waiter (`Ok`) then re-acquires its mutex with an
//! ordinary [`ObjectsSpec::mutex_lock`] step, as the implementation does.
//! Where the implementation may choose (which of several zombie children
//! `wait` reaps), the spec lists the choices and the caller says which.
//!
//! The implementation is checked against these in `tests/`. Compiled only
//! for tests or with the `spec` feature.

extern crate alloc;

use crate::table::{PState, INIT, MAX_PROCS};
use crate::Pid;
use abi::Error;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use thread::Tid;

/// What a call does to its caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step<T> {
    /// It returns now with this result.
    Done(Result<T, Error>),
    /// It sleeps until a [`Wake`] for it.
    Blocked,
}

/// A sleeping thread is woken with a result (and a second value: a
/// receive's sender pid), as `wait::Results::set` delivers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Wake {
    pub tid: Tid,
    pub result: Result<u64, Error>,
    pub second: u64,
}

fn wake(tid: Tid, result: Result<u64, Error>) -> Wake {
    Wake { tid, result, second: 0 }
}

// ---- the process table ----

/// One process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PSpec {
    pub state: PState,
    pub parent: Pid,
    pub tid: Tid,
    pub exit_code: u64,
    pub killed: bool,
}

/// What `wait` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitSpec {
    /// Reap one of these zombie children (the caller picks; see
    /// [`ProcSpec::take_zombie`]).
    Reap(Vec<Pid>),
    Err(Error),
    /// Sleep until some child exits, then look again.
    Blocks,
}

/// The process table: pids `1..MAX_PROCS` (absent: free).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProcSpec {
    pub procs: BTreeMap<Pid, PSpec>,
}

impl ProcSpec {
    pub fn new() -> Self {
        Self::default()
    }

    fn live(&self, pid: Pid) -> bool {
        self.procs.get(&pid).is_some_and(|p| matches!(p.state, PState::Alive | PState::Starting))
    }

    /// The lowest free pid, as a child of `parent` (0 for init), not running yet.
    pub fn reserve(&mut self, parent: Pid) -> Result<Pid, Error> {
        let pid = (1..MAX_PROCS as Pid).find(|p| !self.procs.contains_key(p)).ok_or(Error::TableFull)?;
        self.procs.insert(pid, PSpec { state: PState::Starting, parent, tid: 0, exit_code: 0, killed: false });
        Ok(pid)
    }

    /// Free a pid that never started.
    pub fn unreserve(&mut self, pid: Pid) {
        if self.procs.get(&pid).is_some_and(|p| p.state == PState::Starting) {
            self.procs.remove(&pid);
        }
    }

    /// A reserved process starts running as thread `tid`.
    pub fn start(&mut self, pid: Pid, tid: Tid) {
        if let Some(p) = self.procs.get_mut(&pid).filter(|p| p.state == PState::Starting) {
            p.state = PState::Alive;
            p.tid = tid;
        }
    }

    pub fn get(&self, pid: u64) -> Result<PSpec, Error> {
        let pid = Pid::try_from(pid).map_err(|_| Error::NoSuchProcess)?;
        self.procs.get(&pid).copied().ok_or(Error::NoSuchProcess)
    }

    /// `pid` exits with `code`: a zombie; its children go to init. Returns
    /// the processes whose waiting threads are woken: its parent, and init
    /// if init got zombie children.
    pub fn exit(&mut self, pid: Pid, code: u64) -> Vec<Pid> {
        if !self.live(pid) {
            return Vec::new();
        }
        let p = self.procs.get_mut(&pid).expect("live");
        p.state = PState::Zombie;
        p.exit_code = code;
        let parent = p.parent;
        let mut wake_init = false;
        for c in self.procs.values_mut().filter(|c| c.parent == pid) {
            c.parent = INIT;
            wake_init |= c.state == PState::Zombie;
        }
        let mut woken = Vec::new();
        if self.procs.contains_key(&parent) {
            woken.push(parent);
        }
        if wake_init && self.procs.contains_key(&INIT) {
            woken.push(INIT);
        }
        woken
    }

    /// `pid` waits for its child `which` (or any child, `abi::ANY_CHILD`).
    pub fn wait(&self, pid: Pid, which: u64) -> WaitSpec {
        if which != abi::ANY_CHILD {
            match Pid::try_from(which).ok().filter(|&c| c > 0 && (c as usize) < MAX_PROCS).map(|c| self.procs.get(&c)) {
                None | Some(None) => return WaitSpec::Err(Error::NoSuchProcess),
                Some(Some(c)) if c.parent != pid => return WaitSpec::Err(Error::NotChild),
                _ => {}
            }
        }
        let mine: Vec<(Pid, PSpec)> =
            self.procs.iter().filter(|(_, c)| c.parent == pid && c.state != PState::Reaping).map(|(&c, &p)| (c, p)).collect();
        let zombies: Vec<Pid> = mine
            .iter()
            .filter(|(c, p)| p.state == PState::Zombie && (which == abi::ANY_CHILD || *c as u64 == which))
            .map(|(c, _)| *c)
            .collect();
        if !zombies.is_empty() {
            WaitSpec::Reap(zombies)
        } else if mine.is_empty() {
            WaitSpec::Err(Error::NoChildren)
        } else {
            WaitSpec::Blocks
        }
    }

    /// Reap zombie `child` (one `wait` offered): it is being freed until
    /// [`release`](Self::release).
    pub fn take_zombie(&mut self, child: Pid) -> Option<PSpec> {
        let p = self.procs.get_mut(&child).filter(|p| p.state == PState::Zombie)?;
        p.state = PState::Reaping;
        Some(*p)
    }

    /// Free a reaped process's pid.
    pub fn release(&mut self, pid: Pid) {
        if self.procs.get(&pid).is_some_and(|p| p.state == PState::Reaping) {
            self.procs.remove(&pid);
        }
    }

    /// `killer` marks `target` killed; allowed for its ancestors only.
    pub fn kill(&mut self, killer: Pid, target: u64) -> Result<Tid, Error> {
        self.kill_if(target, |s, t| s.ancestors(t).contains(&killer))
    }

    /// [`kill`](Self::kill) with the caller's permission rule, asked once
    /// `target` is known to be live (as `ProcTable::kill_if`).
    pub fn kill_if(&mut self, target: u64, permitted: impl FnOnce(&Self, Pid) -> bool) -> Result<Tid, Error> {
        let t = Pid::try_from(target).ok().filter(|&t| t > 0 && (t as usize) < MAX_PROCS).ok_or(Error::NoSuchProcess)?;
        if !self.live(t) {
            return Err(Error::NoSuchProcess);
        }
        if !permitted(self, t) {
            return Err(Error::NotPermitted);
        }
        let p = self.procs.get_mut(&t).expect("live");
        p.killed = true;
        Ok(p.tid)
    }

    /// Parent, grandparent, ... of `pid` (stops at 0, a free pid or a repeat).
    pub fn ancestors(&self, pid: Pid) -> Vec<Pid> {
        let mut out = Vec::new();
        let mut a = self.procs.get(&pid).map_or(0, |p| p.parent);
        while a != 0 && !out.contains(&a) {
            out.push(a);
            a = self.procs.get(&a).map_or(0, |p| p.parent);
        }
        out
    }

    pub fn killed(&self, pid: Pid) -> bool {
        self.procs.get(&pid).is_some_and(|p| p.killed)
    }

    pub fn count(&self) -> usize {
        self.procs.len()
    }

    /// Invariants: a process's parent is 0 (init's), init, or a live
    /// process (children leave for init when their parent exits), and
    /// parent links have no cycles.
    pub fn check(&self) -> Result<(), alloc::string::String> {
        for (&pid, p) in &self.procs {
            if p.parent != 0 && p.parent != INIT && !self.live(p.parent) {
                return Err(alloc::format!("pid {pid} ({:?}) has parent {} which is not live", p.state, p.parent));
            }
            if self.ancestors(pid).contains(&pid) {
                return Err(alloc::format!("pid {pid} is its own ancestor"));
            }
        }
        Ok(())
    }
}

// ---- mutexes and condition variables ----

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MutexSpec {
    pub creator: Pid,
    pub owner: Option<Tid>,
    /// Threads waiting to own it, oldest first.
    pub waiters: VecDeque<Tid>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CvSpec {
    pub creator: Pid,
    /// Threads waiting for a signal, oldest first.
    pub waiters: VecDeque<Tid>,
}

/// Mutexes and condition variables, numbered `0..capacity` per kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectsSpec {
    pub mutexes: BTreeMap<u64, MutexSpec>,
    pub cvs: BTreeMap<u64, CvSpec>,
    pub capacity: u64,
}

impl ObjectsSpec {
    pub fn new(capacity: usize) -> Self {
        ObjectsSpec { mutexes: BTreeMap::new(), cvs: BTreeMap::new(), capacity: capacity as u64 }
    }

    pub fn mutex_create(&mut self, creator: Pid) -> Result<u64, Error> {
        if self.mutexes.values().filter(|m| m.creator == creator).count() >= abi::MAX_MUTEXES_PER_PROCESS {
            return Err(Error::TooMany);
        }
        let id = (0..self.capacity).find(|i| !self.mutexes.contains_key(i)).ok_or(Error::TableFull)?;
        self.mutexes.insert(id, MutexSpec { creator, owner: None, waiters: VecDeque::new() });
        Ok(id)
    }

    pub fn cv_create(&mut self, creator: Pid) -> Result<u64, Error> {
        if self.cvs.values().filter(|c| c.creator == creator).count() >= abi::MAX_CVS_PER_PROCESS {
            return Err(Error::TooMany);
        }
        let id = (0..self.capacity).find(|i| !self.cvs.contains_key(i)).ok_or(Error::TableFull)?;
        self.cvs.insert(id, CvSpec { creator, waiters: VecDeque::new() });
        Ok(id)
    }

    /// `me` takes mutex `id`, or queues for it.
    pub fn mutex_lock(&mut self, me: Tid, id: u64) -> Step<u64> {
        let Some(m) = self.mutexes.get_mut(&id) else { return Step::Done(Err(Error::NoSuchObject)) };
        match m.owner {
            None => {
                m.owner = Some(me);
                Step::Done(Ok(0))
            }
            Some(o) if o == me => Step::Done(Err(Error::WouldDeadlock)),
            Some(_) => {
                m.waiters.push_back(me);
                Step::Blocked
            }
        }
    }

    /// The oldest waiter becomes the owner (woken with `Ok`), or the mutex is free.
    fn hand_on(m: &mut MutexSpec) -> Option<Wake> {
        m.owner = m.waiters.pop_front();
        m.owner.map(|t| wake(t, Ok(0)))
    }

    pub fn mutex_unlock(&mut self, me: Tid, id: u64) -> (Result<u64, Error>, Option<Wake>) {
        let Some(m) = self.mutexes.get_mut(&id) else { return (Err(Error::NoSuchObject), None) };
        if m.owner != Some(me) {
            return (Err(Error::NotOwner), None);
        }
        (Ok(0), Self::hand_on(m))
    }

    /// `me` releases mutex `m` (handing it on) and waits on `cv`, in one step.
    pub fn cv_wait(&mut self, me: Tid, cv: u64, m: u64) -> (Step<u64>, Option<Wake>) {
        if !self.cvs.contains_key(&cv) {
            return (Step::Done(Err(Error::NoSuchObject)), None);
        }
        let Some(mx) = self.mutexes.get_mut(&m) else { return (Step::Done(Err(Error::NoSuchObject)), None) };
        if mx.owner != Some(me) {
            return (Step::Done(Err(Error::NotOwner)), None);
        }
        let w = Self::hand_on(mx);
        self.cvs.get_mut(&cv).expect("checked").waiters.push_back(me);
        (Step::Blocked, w)
    }

    /// Wake the oldest waiter of `cv` (it then re-acquires its mutex).
    pub fn cv_signal(&mut self, cv: u64) -> (Result<u64, Error>, Option<Wake>) {
        let Some(c) = self.cvs.get_mut(&cv) else { return (Err(Error::NoSuchObject), None) };
        let w = c.waiters.pop_front().map(|t| wake(t, Ok(0)));
        (Ok(w.is_some() as u64), w)
    }

    pub fn cv_broadcast(&mut self, cv: u64) -> (Result<u64, Error>, Vec<Wake>) {
        let Some(c) = self.cvs.get_mut(&cv) else { return (Err(Error::NoSuchObject), Vec::new()) };
        let ws: Vec<Wake> = c.waiters.drain(..).map(|t| wake(t, Ok(0))).collect();
        (Ok(ws.len() as u64), ws)
    }

    /// Take `t` out of whatever it waits in (it was killed): true if it waited.
    pub fn interrupt(&mut self, t: Tid) -> bool {
        let queues = self.mutexes.values_mut().map(|m| &mut m.waiters).chain(self.cvs.values_mut().map(|c| &mut c.waiters));
        for q in queues {
            if let Some(i) = q.iter().position(|&x| x == t) {
                q.remove(i);
                return true;
            }
        }
        false
    }

    /// Process `pid` (thread `tid`) is gone: its objects go, their waiters
    /// get `PeerGone`; other mutexes it holds are handed on. Mutexes first,
    /// each in id order, then condition variables.
    pub fn process_exit(&mut self, pid: Pid, tid: Tid) -> Vec<Wake> {
        let mut ws = Vec::new();
        let mut gone = Vec::new();
        for (&id, m) in self.mutexes.iter_mut() {
            if m.creator == pid {
                ws.extend(m.waiters.drain(..).map(|t| wake(t, Err(Error::PeerGone))));
                gone.push(id);
            } else if m.owner == Some(tid) {
                ws.extend(Self::hand_on(m));
            }
        }
        for id in gone {
            self.mutexes.remove(&id);
        }
        let mut gone = Vec::new();
        for (&id, c) in self.cvs.iter_mut().filter(|(_, c)| c.creator == pid) {
            ws.extend(c.waiters.drain(..).map(|t| wake(t, Err(Error::PeerGone))));
            gone.push(id);
        }
        for id in gone {
            self.cvs.remove(&id);
        }
        ws
    }
}

// ---- channels ----

/// A waiting sender's offer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Offer {
    pub tid: Tid,
    pub pid: Pid,
    pub msg: Vec<u8>,
    /// Its buffer cannot be read.
    pub bad: bool,
}

/// The waiting receiver's buffer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Want {
    pub tid: Tid,
    pub pid: Pid,
    pub cap: usize,
    /// Its buffer cannot be written.
    pub bad: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChanSpec {
    pub receiver: Pid,
    /// Waiting senders, oldest first.
    pub senders: VecDeque<Offer>,
    pub waiting: Option<Want>,
}

/// A message that reached a receiver's buffer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Delivery {
    pub chan: u64,
    pub from: Pid,
    pub to: Pid,
    pub msg: Vec<u8>,
}

/// Channels `0..capacity` and every message delivered so far.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelsSpec {
    pub chans: BTreeMap<u64, ChanSpec>,
    pub capacity: u64,
    pub delivered: Vec<Delivery>,
}

impl ChannelsSpec {
    pub fn new(capacity: usize) -> Self {
        ChannelsSpec { chans: BTreeMap::new(), capacity: capacity as u64, delivered: Vec::new() }
    }

    /// `pid` claims channel `want` (the lowest free with `u64::MAX`).
    pub fn create(&mut self, pid: Pid, want: u64) -> Result<u64, Error> {
        if want != u64::MAX && want >= self.capacity {
            return Err(Error::Invalid);
        }
        if self.chans.values().filter(|c| c.receiver == pid).count() >= abi::MAX_CHANNELS_PER_PROCESS {
            return Err(Error::TooMany);
        }
        let id = if want == u64::MAX {
            (0..self.capacity).find(|i| !self.chans.contains_key(i)).ok_or(Error::TableFull)?
        } else if want >= self.capacity {
            return Err(Error::Invalid);
        } else if self.chans.contains_key(&want) {
            return Err(Error::Busy);
        } else {
            want
        };
        self.chans.insert(id, ChanSpec { receiver: pid, senders: VecDeque::new(), waiting: None });
        Ok(id)
    }

    fn deliver(&mut self, chan: u64, from: Pid, to: Pid, msg: Vec<u8>) {
        self.delivered.push(Delivery { chan, from, to, msg });
    }

    /// Thread `me` of `pid` sends `msg` (from a readable buffer unless `bad`).
    pub fn send(&mut self, me: Tid, pid: Pid, chan: u64, msg: &[u8], bad: bool) -> (Step<u64>, Option<Wake>) {
        if msg.len() > abi::MAX_MESSAGE {
            return (Step::Done(Err(Error::TooLarge)), None);
        }
        let Some(ch) = self.chans.get_mut(&chan) else { return (Step::Done(Err(Error::NoSuchObject)), None) };
        if ch.receiver == pid {
            return (Step::Done(Err(Error::SelfChannel)), None);
        }
        let mut woken = None;
        if let Some(r) = ch.waiting.clone() {
            if msg.len() > r.cap {
                return (Step::Done(Err(Error::TooLarge)), None);
            }
            if bad {
                return (Step::Done(Err(Error::BadAddress)), None);
            }
            ch.waiting = None;
            if !r.bad {
                let w = Wake { tid: r.tid, result: Ok(msg.len() as u64), second: pid as u64 };
                self.deliver(chan, pid, r.pid, msg.to_vec());
                return (Step::Done(Ok(0)), Some(w));
            }
            // The receiver's buffer is bad: its receive fails, we wait on.
            woken = Some(wake(r.tid, Err(Error::BadAddress)));
        }
        ch.senders.push_back(Offer { tid: me, pid, msg: msg.to_vec(), bad });
        (Step::Blocked, woken)
    }

    /// Thread `me` of `pid` receives into `cap` bytes (writable unless `bad`):
    /// (length, sender pid).
    pub fn recv(&mut self, me: Tid, pid: Pid, chan: u64, cap: usize, bad: bool) -> (Step<(u64, u64)>, Vec<Wake>) {
        let mut ws = Vec::new();
        let Some(ch) = self.chans.get_mut(&chan) else { return (Step::Done(Err(Error::NoSuchObject)), ws) };
        if ch.receiver != pid {
            return (Step::Done(Err(Error::NotPermitted)), ws);
        }
        while let Some(s) = ch.senders.pop_front() {
            if s.msg.len() > cap {
                ws.push(wake(s.tid, Err(Error::TooLarge)));
            } else if s.bad {
                ws.push(wake(s.tid, Err(Error::BadAddress)));
            } else if bad {
                // Our buffer is bad: the sender goes to the back of the line.
                ch.senders.push_back(s);
                return (Step::Done(Err(Error::BadAddress)), ws);
            } else {
                ws.push(wake(s.tid, Ok(0)));
                let r = (s.msg.len() as u64, s.pid as u64);
                self.deliver(chan, s.pid, pid, s.msg);
                return (Step::Done(Ok(r)), ws);
            }
        }
        ch.waiting = Some(Want { tid: me, pid, cap, bad });
        (Step::Blocked, ws)
    }

    /// Take `t` out of whatever it waits in (it was killed): true if it waited.
    pub fn interrupt(&mut self, t: Tid) -> bool {
        for ch in self.chans.values_mut() {
            if let Some(i) = ch.senders.iter().position(|s| s.tid == t) {
                ch.senders.remove(i);
                return true;
            }
            if ch.waiting.as_ref().is_some_and(|w| w.tid == t) {
                ch.waiting = None;
                return true;
            }
        }
        false
    }

    /// Process `pid` is gone: its channels go, their senders get `PeerGone`.
    pub fn process_exit(&mut self, pid: Pid) -> Vec<Wake> {
        let mut ws = Vec::new();
        let gone: Vec<u64> = self.chans.iter().filter(|(_, c)| c.receiver == pid).map(|(&i, _)| i).collect();
        for id in gone {
            let ch = self.chans.remove(&id).expect("listed");
            ws.extend(ch.senders.into_iter().map(|s| wake(s.tid, Err(Error::PeerGone))));
        }
        ws
    }
}
