//! Starvation-free mutexes and condition variables (the seed's "starvation
//! free condition variable").
//!
//! - A mutex has an owner (a thread) and a FIFO queue of waiters. Unlock
//!   hands the mutex directly to the oldest waiter, so no waiter can be
//!   overtaken by a thread that arrives later: each waits at most for the
//!   critical sections of those ahead of it.
//! - A condition variable has a FIFO queue of waiters. `wait` atomically
//!   (under the CV's lock) releases the mutex, with the same hand-off, and
//!   enqueues the caller; `signal` wakes the oldest waiter, which then queues
//!   for the mutex in FIFO order again. A signal can therefore not be lost
//!   between a waiter's release of the mutex and its sleep, and no waiter is
//!   passed over forever.
//!
//! Objects are numbered `0..MAX_OBJECTS` per kind, owned by the process that
//! created them and destroyed when it exits (waiters get `PeerGone`). A
//! mutex held by an exiting thread is handed on as if unlocked.
//!
//! Lock order: a CV's lock before a mutex's lock; never the reverse.

use crate::wait::{Sched, RESULTS};
use crate::Pid;
use abi::Error;
use lock::SpinLock;
use thread::Tid;

/// Mutexes (and, separately, condition variables) the kernel holds at once:
/// enough for every process to hold its most ([`abi::MAX_MUTEXES_PER_PROCESS`],
/// [`abi::MAX_CVS_PER_PROCESS`]), so that no process can fill the table for
/// the others.
pub const MAX_OBJECTS: usize = abi::OBJECTS;
const _: () = assert!(MAX_OBJECTS >= crate::table::MAX_PROCS * abi::MAX_MUTEXES_PER_PROCESS);
const _: () = assert!(MAX_OBJECTS >= crate::table::MAX_PROCS * abi::MAX_CVS_PER_PROCESS);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MutexState {
    creator: Pid,
    owner: Option<Tid>,
    queue: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CvState {
    creator: Pid,
    queue: usize,
}

pub struct Objects {
    mutexes: [SpinLock<Option<MutexState>>; MAX_OBJECTS],
    cvs: [SpinLock<Option<CvState>>; MAX_OBJECTS],
}

impl Default for Objects {
    fn default() -> Self {
        Self::new()
    }
}

fn slot<T>(table: &[T], id: u64) -> Result<&T, Error> {
    table.get(usize::try_from(id).map_err(|_| Error::NoSuchObject)?).ok_or(Error::NoSuchObject)
}

impl Objects {
    pub const fn new() -> Self {
        Objects { mutexes: [const { SpinLock::new(None) }; MAX_OBJECTS], cvs: [const { SpinLock::new(None) }; MAX_OBJECTS] }
    }

    pub fn mutex_create(&self, s: &impl Sched, creator: Pid) -> Result<u64, Error> {
        // One thread per process: nothing else creates for `creator` meanwhile.
        if self.mutexes.iter().filter(|m| m.lock().is_some_and(|m| m.creator == creator)).count() >= abi::MAX_MUTEXES_PER_PROCESS {
            return Err(Error::TooMany);
        }
        for (i, m) in self.mutexes.iter().enumerate() {
            let mut g = m.lock();
            if g.is_none() {
                let queue = s.alloc_queue()?;
                *g = Some(MutexState { creator, owner: None, queue });
                return Ok(i as u64);
            }
        }
        Err(Error::TableFull)
    }

    /// Block until the caller owns mutex `id`.
    pub fn mutex_lock(&self, s: &impl Sched, id: u64) -> Result<u64, Error> {
        let me = s.current();
        let slot = slot(&self.mutexes, id)?;
        let mut g = slot.lock();
        let m = g.as_mut().ok_or(Error::NoSuchObject)?;
        match m.owner {
            None => {
                m.owner = Some(me);
                Ok(0)
            }
            Some(o) if o == me => Err(Error::WouldDeadlock),
            Some(_) => {
                let q = m.queue;
                RESULTS.arm(me);
                s.block(q, g);
                // Woken by unlock (ownership handed to us) or by destruction.
                RESULTS.get(me).map(|(r, _)| r).unwrap_or(Err(Error::PeerGone))
            }
        }
    }

    /// Hand the mutex in `m` on to its oldest waiter, or free it.
    fn hand_on(s: &impl Sched, m: &mut MutexState) {
        match s.take(m.queue) {
            Some(t) => {
                m.owner = Some(t);
                RESULTS.set(t, Ok(0), 0);
                s.wake(t);
            }
            None => m.owner = None,
        }
    }

    pub fn mutex_unlock(&self, s: &impl Sched, id: u64) -> Result<u64, Error> {
        let me = s.current();
        let mut g = slot(&self.mutexes, id)?.lock();
        let m = g.as_mut().ok_or(Error::NoSuchObject)?;
        if m.owner != Some(me) {
            return Err(Error::NotOwner);
        }
        Self::hand_on(s, m);
        Ok(0)
    }

    pub fn cv_create(&self, s: &impl Sched, creator: Pid) -> Result<u64, Error> {
        if self.cvs.iter().filter(|c| c.lock().is_some_and(|c| c.creator == creator)).count() >= abi::MAX_CVS_PER_PROCESS {
            return Err(Error::TooMany);
        }
        for (i, c) in self.cvs.iter().enumerate() {
            let mut g = c.lock();
            if g.is_none() {
                let queue = s.alloc_queue()?;
                *g = Some(CvState { creator, queue });
                return Ok(i as u64);
            }
        }
        Err(Error::TableFull)
    }

    /// Release `mutex`, wait on `cv`, re-acquire `mutex`.
    pub fn cv_wait(&self, s: &impl Sched, cv: u64, mutex: u64) -> Result<u64, Error> {
        let me = s.current();
        let cslot = slot(&self.cvs, cv)?;
        let mslot = slot(&self.mutexes, mutex)?;
        let cg = cslot.lock();
        let q = cg.as_ref().ok_or(Error::NoSuchObject)?.queue;
        {
            let mut mg = mslot.lock();
            let m = mg.as_mut().ok_or(Error::NoSuchObject)?;
            if m.owner != Some(me) {
                return Err(Error::NotOwner);
            }
            Self::hand_on(s, m);
        }
        RESULTS.arm(me);
        s.block(q, cg);
        match RESULTS.get(me) {
            Some((Ok(_), _)) => self.mutex_lock(s, mutex),
            Some((Err(e), _)) => Err(e),
            None => Err(Error::PeerGone),
        }
    }

    /// Wake the oldest waiter of `cv`; returns how many were woken (0 or 1).
    pub fn cv_signal(&self, s: &impl Sched, cv: u64) -> Result<u64, Error> {
        let g = slot(&self.cvs, cv)?.lock();
        let c = g.as_ref().ok_or(Error::NoSuchObject)?;
        match s.take(c.queue) {
            Some(t) => {
                RESULTS.set(t, Ok(0), 0);
                s.wake(t);
                Ok(1)
            }
            None => Ok(0),
        }
    }

    pub fn cv_broadcast(&self, s: &impl Sched, cv: u64) -> Result<u64, Error> {
        let g = slot(&self.cvs, cv)?.lock();
        let c = g.as_ref().ok_or(Error::NoSuchObject)?;
        let mut n = 0;
        while let Some(t) = s.take(c.queue) {
            RESULTS.set(t, Ok(0), 0);
            s.wake(t);
            n += 1;
        }
        Ok(n)
    }

    /// A process is gone: destroy its objects (waking their waiters with
    /// `PeerGone`) and hand on every mutex its thread `tid` still holds.
    pub fn process_exit(&self, s: &impl Sched, pid: Pid, tid: Tid) {
        for m in &self.mutexes {
            let mut g = m.lock();
            let Some(st) = g.as_mut() else { continue };
            if st.creator == pid {
                while let Some(t) = s.take(st.queue) {
                    RESULTS.set(t, Err(Error::PeerGone), 0);
                    s.wake(t);
                }
                s.free_queue(st.queue);
                *g = None;
            } else if st.owner == Some(tid) {
                Self::hand_on(s, st);
            }
        }
        for c in &self.cvs {
            let mut g = c.lock();
            let Some(st) = g.as_ref() else { continue };
            if st.creator == pid {
                while let Some(t) = s.take(st.queue) {
                    RESULTS.set(t, Err(Error::PeerGone), 0);
                    s.wake(t);
                }
                s.free_queue(st.queue);
                *g = None;
            }
        }
    }

    /// Objects alive (for leak checks).
    pub fn live(&self) -> (usize, usize) {
        (self.mutexes.iter().filter(|m| m.lock().is_some()).count(), self.cvs.iter().filter(|c| c.lock().is_some()).count())
    }
}

/// The kernel's objects.
pub static OBJECTS: Objects = Objects::new();
