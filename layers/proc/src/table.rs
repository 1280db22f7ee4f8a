//! The process table: who exists, who is whose parent, who has exited.
//!
//! A process is one thread plus (in the trap layer) an address space and a
//! container. Pids are `1..MAX_PROCS`; pid 1 is init. Parent/child links,
//! exits and waits are serialised by one lock (they are rare and short);
//! a parent blocks in `wait` on its own wait queue, and an exiting child
//! wakes that queue under the same lock, so a wake-up cannot be lost.

use crate::wait::{Sched, RESULTS};
use abi::Error;
use arrayvec::ArrayString;
use lock::SpinLock;
use thread::Tid;

/// A process id (`1..MAX_PROCS`; 0 is "none").
pub type Pid = u32;
/// Process slots (pid 0 unused).
pub const MAX_PROCS: usize = abi::MAX_PROCESSES + 1;
/// The process orphans are given to.
pub const INIT: Pid = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PState {
    Free,
    /// Reserved by spawn, not running yet.
    Starting,
    Alive,
    /// Exited, not yet reaped by its parent.
    Zombie,
    /// Being reaped (its resources are being freed).
    Reaping,
}

#[derive(Clone, Copy, Debug)]
pub struct Proc {
    pub state: PState,
    pub tid: Tid,
    pub parent: Pid,
    pub cpu: u32,
    pub name: ArrayString<32>,
    /// Container id (the trap layer's mm container), as a raw index.
    pub container: u16,
    pub exit_code: u64,
    pub killed: bool,
    /// Where this process waits for its children.
    pub child_queue: usize,
}

const FREE: Proc = Proc {
    state: PState::Free,
    tid: 0,
    parent: 0,
    cpu: 0,
    name: ArrayString::new_const(),
    container: 0,
    exit_code: 0,
    killed: false,
    child_queue: 0,
};

pub struct ProcTable {
    procs: SpinLock<[Proc; MAX_PROCS]>,
    /// `killed` of each pid, readable without the lock (checked on every
    /// return to user mode).
    killed: [core::sync::atomic::AtomicBool; MAX_PROCS],
}

impl Default for ProcTable {
    fn default() -> Self {
        Self::new()
    }
}

fn index(pid: u64) -> Result<usize, Error> {
    usize::try_from(pid).ok().filter(|&p| p > 0 && p < MAX_PROCS).ok_or(Error::NoSuchProcess)
}

impl ProcTable {
    pub const fn new() -> Self {
        ProcTable { procs: SpinLock::new([FREE; MAX_PROCS]), killed: [const { core::sync::atomic::AtomicBool::new(false) }; MAX_PROCS] }
    }

    /// Reserve a pid for a child of `parent` (0 for init).
    pub fn reserve(&self, s: &impl Sched, parent: Pid, name: &str, cpu: usize, container: u16) -> Result<Pid, Error> {
        let child_queue = s.alloc_queue()?;
        let mut t = self.procs.lock();
        let Some(pid) = (1..MAX_PROCS).find(|&p| t[p].state == PState::Free) else {
            drop(t);
            s.free_queue(child_queue);
            return Err(Error::TableFull);
        };
        let mut n = ArrayString::new();
        for c in name.chars().take(32) {
            if n.try_push(c).is_err() {
                break;
            }
        }
        self.killed[pid].store(false, core::sync::atomic::Ordering::Relaxed);
        t[pid] = Proc { state: PState::Starting, tid: 0, parent, cpu: cpu as u32, name: n, container, exit_code: 0, killed: false, child_queue };
        Ok(pid as Pid)
    }

    /// Give back a pid reserved by [`reserve`](Self::reserve) whose process never started.
    pub fn unreserve(&self, s: &impl Sched, pid: Pid) {
        let mut t = self.procs.lock();
        if let Some(p) = t.get_mut(pid as usize).filter(|p| p.state == PState::Starting) {
            s.free_queue(p.child_queue);
            *p = FREE;
        }
    }

    /// The process's thread is about to run.
    pub fn start(&self, pid: Pid, tid: Tid) {
        let mut t = self.procs.lock();
        if let Some(p) = t.get_mut(pid as usize) {
            p.state = PState::Alive;
            p.tid = tid;
        }
    }

    pub fn get(&self, pid: u64) -> Result<Proc, Error> {
        let t = self.procs.lock();
        let p = t[index(pid)?];
        if p.state == PState::Free {
            return Err(Error::NoSuchProcess);
        }
        Ok(p)
    }

    /// Alive or starting (a peer one can talk to).
    pub fn is_live(&self, pid: u64) -> bool {
        self.get(pid).is_ok_and(|p| matches!(p.state, PState::Alive | PState::Starting))
    }

    /// `pid` exits with `code`: it becomes a zombie, its children go to
    /// init, and its parent (or init, for orphaned zombies) is woken.
    pub fn exit(&self, s: &impl Sched, pid: Pid, code: u64) {
        let mut t = self.procs.lock();
        let i = pid as usize;
        if i == 0 || i >= MAX_PROCS || !matches!(t[i].state, PState::Alive | PState::Starting) {
            return;
        }
        t[i].state = PState::Zombie;
        t[i].exit_code = code;
        let mut wake_init = false;
        for c in 1..MAX_PROCS {
            if t[c].parent == pid && t[c].state != PState::Free {
                t[c].parent = INIT;
                wake_init |= t[c].state == PState::Zombie;
            }
        }
        let parent = t[i].parent as usize;
        let wake = |q: usize| {
            while let Some(w) = s.take(q) {
                RESULTS.set(w, Ok(0), 0);
                s.wake(w);
            }
        };
        if parent > 0 && parent < MAX_PROCS && t[parent].state != PState::Free {
            wake(t[parent].child_queue);
        }
        if wake_init && t[INIT as usize].state != PState::Free {
            wake(t[INIT as usize].child_queue);
        }
    }

    /// Wait for child `which` (or any child with `abi::ANY_CHILD`) of `pid`
    /// to exit; returns it, marked Reaping (the caller frees its resources
    /// and then calls [`release`](Self::release)), with its exit code.
    pub fn wait(&self, s: &impl Sched, pid: Pid, which: u64) -> Result<(Pid, Proc), Error> {
        loop {
            let mut t = self.procs.lock();
            if which != abi::ANY_CHILD {
                let c = index(which)?;
                if t[c].state == PState::Free {
                    return Err(Error::NoSuchProcess);
                }
                if t[c].parent != pid {
                    return Err(Error::NotChild);
                }
            }
            let mine = |c: usize| t[c].parent == pid && t[c].state != PState::Free && t[c].state != PState::Reaping;
            let zombie = (1..MAX_PROCS).find(|&c| mine(c) && t[c].state == PState::Zombie && (which == abi::ANY_CHILD || c as u64 == which));
            if let Some(c) = zombie {
                t[c].state = PState::Reaping;
                return Ok((c as Pid, t[c]));
            }
            if !(1..MAX_PROCS).any(mine) {
                return Err(Error::NoChildren);
            }
            let me = s.current();
            let q = t[pid as usize].child_queue;
            RESULTS.arm(me);
            s.block(q, t);
            if RESULTS.get(me).is_none() {
                return Err(Error::PeerGone); // interrupted (killed)
            }
        }
    }

    /// Free a reaped process's slot.
    pub fn release(&self, s: &impl Sched, pid: Pid) {
        let mut t = self.procs.lock();
        if let Some(p) = t.get_mut(pid as usize).filter(|p| p.state == PState::Reaping) {
            s.free_queue(p.child_queue);
            *p = FREE;
        }
    }

    /// Mark `target` killed if `killer` is one of its ancestors; returns its
    /// thread (to interrupt if it is blocked).
    pub fn kill(&self, killer: Pid, target: u64) -> Result<Tid, Error> {
        self.kill_and(killer, target, |_| {})
    }

    /// [`kill`](Self::kill), running `interrupt` on the target's thread
    /// while the table is still locked: the process cannot exit, be reaped
    /// and have its thread slot reused by another process in between (the
    /// kill mark would then land on that one).
    pub fn kill_and(&self, killer: Pid, target: u64, interrupt: impl FnOnce(Tid)) -> Result<Tid, Error> {
        self.kill_if(
            target,
            |t, target| {
                let mut a = t[target].parent;
                let mut hops = 0;
                while a != killer {
                    if a == 0 || hops > MAX_PROCS {
                        return false;
                    }
                    a = t[a as usize].parent;
                    hops += 1;
                }
                true
            },
            interrupt,
        )
    }

    /// [`kill_and`](Self::kill_and) with the caller's own permission rule:
    /// `permitted(table, target index)` runs under the table's lock once
    /// `target` is known to be live (the trap layer asks whether the
    /// target's container lies below the killer's, so that orphans stay
    /// killable by the ancestors they had).
    pub fn kill_if(
        &self,
        target: u64,
        permitted: impl FnOnce(&[Proc; MAX_PROCS], usize) -> bool,
        interrupt: impl FnOnce(Tid),
    ) -> Result<Tid, Error> {
        let mut t = self.procs.lock();
        let i = index(target)?;
        if !matches!(t[i].state, PState::Alive | PState::Starting) {
            return Err(Error::NoSuchProcess);
        }
        if !permitted(&t, i) {
            return Err(Error::NotPermitted);
        }
        t[i].killed = true;
        self.killed[i].store(true, core::sync::atomic::Ordering::Release);
        if t[i].tid != 0 {
            interrupt(t[i].tid);
        }
        Ok(t[i].tid)
    }

    pub fn killed(&self, pid: Pid) -> bool {
        self.killed.get(pid as usize).is_some_and(|k| k.load(core::sync::atomic::Ordering::Acquire))
    }

    /// Live and zombie processes (for `ps`), in pid order.
    pub fn list(&self, out: &mut arrayvec::ArrayVec<(Pid, Proc), MAX_PROCS>) {
        let t = self.procs.lock();
        for p in 1..MAX_PROCS {
            if t[p].state != PState::Free {
                let _ = out.try_push((p as Pid, t[p]));
            }
        }
    }

    /// Processes in any state but Free.
    pub fn count(&self) -> usize {
        self.procs.lock().iter().filter(|p| p.state != PState::Free).count()
    }
}

/// The kernel's process table.
pub static PROCS: ProcTable = ProcTable::new();
