//! The host harness the proc checks run the real proc code on.
//!
//! - [`HostSched`]: `proc::wait::Sched` with one OS thread per simulated
//!   thread. `block(q, guard)` puts the caller's tid at the tail of `q` (a
//!   real `thread::queue::QueueSet`), drops the guard, then parks the OS
//!   thread until `wake(tid)`; a wake-up that comes before the park is kept
//!   (a per-tid flag under a mutex, cleared before the tid is queued). Every
//!   queue operation is logged in order, so the checks can compare the
//!   order threads entered a queue with the order they left it. Two
//!   deliberate faults ([`Fault`]) show that the checks can fail.
//! - [`Memory`]: per-process byte arrays as `proc::ipc::Copier`.
//! - [`run`]: start the threads, wait for them with a deadline; if they are
//!   stuck (a lost wake-up, a deadlock), interrupt every blocked thread so
//!   they all return, and report who was stuck where.
//! - [`serial`]: tests in one binary run one at a time (proc's result slots
//!   are one global table indexed by tid, and each OS thread that takes a
//!   spin lock holds one of the host's 16 CPU indices while it lives).
#![allow(dead_code)]

use proc::ipc::{CopyFault, Copier};
use proc::wait::Sched;
use proc::Pid;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use thread::queue::QueueSet;
use thread::{Tid, MAX_THREADS};

/// `yield_now` rounds a blocked thread spins before it parks.
const SPINS: usize = 200;

/// Queues the harness hands out.
pub const QUEUES: usize = thread::MAX_WAIT_QUEUES;

/// A queue operation, in the order they happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `tid` went to the tail of `q` to sleep.
    Enq(usize, Tid),
    /// `tid` was taken from the head of `q`.
    Take(usize, Tid),
    /// `tid` (taken, still asleep) was put back at the tail of `q`.
    Requeue(usize, Tid),
}

/// Deliberate faults of the harness scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// `take` takes the newest waiter instead of the oldest.
    TakeNewest,
    /// `block` drops the caller's lock before queueing it.
    ReleaseBeforeQueue,
}

pub struct HostSched {
    queues: Box<QueueSet<QUEUES, MAX_THREADS>>,
    used: Mutex<Vec<bool>>,
    /// Per tid: woken since it last went to sleep.
    woken: Vec<(Mutex<bool>, Condvar)>,
    log: Mutex<Vec<Event>>,
    blocks: AtomicUsize,
    pub fault: Fault,
    /// Set when the threads are being torn down: programs stop.
    abort: AtomicBool,
    /// Per tid: blocked in `block` right now.
    asleep: Vec<AtomicBool>,
}

thread_local! {
    static ME: Cell<Tid> = const { Cell::new(Tid::MAX) };
    static MY_BLOCKS: Cell<usize> = const { Cell::new(0) };
}

/// Make the calling OS thread simulated thread `tid`.
pub fn set_current(tid: Tid) {
    ME.with(|m| m.set(tid));
}

/// How often the calling thread has blocked so far.
pub fn my_blocks() -> usize {
    MY_BLOCKS.with(|b| b.get())
}

impl HostSched {
    pub fn new(fault: Fault) -> Arc<HostSched> {
        Arc::new(HostSched {
            queues: Box::new(QueueSet::new()),
            used: Mutex::new(vec![false; QUEUES]),
            woken: (0..MAX_THREADS).map(|_| (Mutex::new(false), Condvar::new())).collect(),
            log: Mutex::new(Vec::new()),
            blocks: AtomicUsize::new(0),
            fault,
            abort: AtomicBool::new(false),
            asleep: (0..MAX_THREADS).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    pub fn events(&self) -> Vec<Event> {
        self.log.lock().unwrap().clone()
    }

    /// Blocks so far, all threads.
    pub fn blocks(&self) -> usize {
        self.blocks.load(Ordering::Relaxed)
    }

    pub fn queues_in_use(&self) -> usize {
        self.used.lock().unwrap().iter().filter(|&&u| u).count()
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Which queue `t` sleeps in, if any.
    pub fn queue_of(&self, t: Tid) -> Option<usize> {
        self.queues.home(t)
    }

    /// Is `t` asleep in a queue?
    pub fn is_blocked(&self, t: Tid) -> bool {
        self.asleep[t as usize].load(Ordering::Acquire) && self.queues.home(t).is_some()
    }

    /// Wait (a short while at most) until `t` is asleep in a queue.
    pub fn wait_blocked(&self, t: Tid) {
        let end = Instant::now() + Duration::from_secs(10);
        while !self.is_blocked(t) {
            assert!(Instant::now() < end, "thread {t} never blocked");
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// The kill path: take `t` out of its queue and wake it without a
    /// result (as `thread::Scheduler::interrupt`).
    pub fn interrupt(&self, t: Tid) -> bool {
        match self.queues.home(t) {
            Some(q) if self.queues.remove(q, t) => {
                self.wake(t);
                true
            }
            _ => false,
        }
    }

    fn log(&self, e: Event) {
        self.log.lock().unwrap().push(e);
    }
}

impl Sched for HostSched {
    fn has_waiters(&self, q: usize) -> bool {
        !self.queues.is_empty(q)
    }

    fn current(&self) -> Tid {
        let t = ME.with(|m| m.get());
        assert!(t != Tid::MAX, "this OS thread plays no simulated thread");
        t
    }

    fn alloc_queue(&self) -> Result<usize, abi::Error> {
        let mut u = self.used.lock().unwrap();
        let q = u.iter().position(|&x| !x).ok_or(abi::Error::TableFull)?;
        u[q] = true;
        Ok(q)
    }

    fn free_queue(&self, q: usize) {
        let mut u = self.used.lock().unwrap();
        assert!(u[q], "queue {q} freed twice");
        assert!(self.queues.is_empty(q), "queue {q} freed with sleepers in it");
        u[q] = false;
    }

    fn block<G>(&self, q: usize, release: G) {
        let me = self.current();
        let (m, cv) = &self.woken[me as usize];
        *m.lock().unwrap() = false;
        let release = if self.fault == Fault::ReleaseBeforeQueue {
            drop(release);
            // Let the others in before we are queued.
            std::thread::yield_now();
            None
        } else {
            Some(release)
        };
        self.queues.enqueue(q, me).expect("a running thread is in no queue");
        self.asleep[me as usize].store(true, Ordering::Release);
        // Logged while the caller's lock is still held: the log's order of a
        // queue's events is the queue's order.
        self.log(Event::Enq(q, me));
        drop(release);
        self.blocks.fetch_add(1, Ordering::Relaxed);
        MY_BLOCKS.with(|b| b.set(b.get() + 1));
        // Spin a little first: waking a parked OS thread costs milliseconds
        // on a small loaded VM, and most waits here are short.
        for _ in 0..SPINS {
            if *m.lock().unwrap() {
                break;
            }
            std::thread::yield_now();
        }
        let mut w = m.lock().unwrap();
        while !*w {
            w = cv.wait(w).unwrap();
        }
        self.asleep[me as usize].store(false, Ordering::Release);
    }

    fn take(&self, q: usize) -> Option<Tid> {
        let t = if self.fault == Fault::TakeNewest {
            let mut out = [Tid::MAX; MAX_THREADS];
            let n = self.queues.snapshot(q, &mut out);
            let t = *out[..n].last()?;
            assert!(self.queues.remove(q, t));
            t
        } else {
            self.queues.dequeue(q)?
        };
        self.log(Event::Take(q, t));
        Some(t)
    }

    fn wake(&self, t: Tid) {
        let (m, cv) = &self.woken[t as usize];
        *m.lock().unwrap() = true;
        cv.notify_one();
    }

    fn requeue(&self, q: usize, t: Tid) {
        self.queues.enqueue(q, t).expect("a taken thread is in no queue");
        self.log(Event::Requeue(q, t));
    }
}

/// Per-process memory: `SPACE` bytes each; anything beyond faults.
pub struct Memory {
    spaces: Vec<Mutex<Vec<u8>>>,
}

pub const SPACE: usize = 16 * 1024;
/// An address no process has.
pub const BAD_VA: u64 = 1 << 40;

impl Memory {
    pub fn new() -> Memory {
        Memory { spaces: (0..proc::MAX_PROCS).map(|_| Mutex::new(vec![0; SPACE])).collect() }
    }

    pub fn write(&self, pid: Pid, va: u64, data: &[u8]) {
        self.spaces[pid as usize].lock().unwrap()[va as usize..va as usize + data.len()].copy_from_slice(data);
    }

    pub fn read(&self, pid: Pid, va: u64, len: usize) -> Vec<u8> {
        self.spaces[pid as usize].lock().unwrap()[va as usize..va as usize + len].to_vec()
    }
}

fn range(va: u64, len: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(va).ok()?;
    let end = start.checked_add(len)?;
    (end <= SPACE).then_some(start..end)
}

impl Copier for Memory {
    fn copy(&self, src: Pid, src_va: u64, dst: Pid, dst_va: u64, len: usize) -> Result<(), CopyFault> {
        let s = range(src_va, len).ok_or(CopyFault::Source)?;
        let d = range(dst_va, len).ok_or(CopyFault::Destination)?;
        let bytes = self.spaces[src as usize].lock().unwrap()[s].to_vec();
        self.spaces[dst as usize].lock().unwrap()[d].copy_from_slice(&bytes);
        Ok(())
    }

    fn read(&self, pid: Pid, va: u64, buf: &mut [u8]) -> Result<(), CopyFault> {
        let s = range(va, buf.len()).ok_or(CopyFault::Source)?;
        buf.copy_from_slice(&self.spaces[pid as usize].lock().unwrap()[s]);
        Ok(())
    }

    fn write(&self, pid: Pid, va: u64, data: &[u8]) -> Result<(), CopyFault> {
        let d = range(va, data.len()).ok_or(CopyFault::Destination)?;
        self.spaces[pid as usize].lock().unwrap()[d].copy_from_slice(data);
        Ok(())
    }
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Hold this for the whole test (first thing).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Done(Arc<(Mutex<usize>, Condvar)>);

impl Drop for Done {
    fn drop(&mut self) {
        let (m, cv) = &*self.0;
        *m.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        cv.notify_all();
    }
}

/// Run `bodies[i]` as simulated thread `tids[i]`, each on its own OS thread,
/// and return their results. If they are not all done by `deadline`, wake
/// every blocked one without a result (repeatedly, until all are done) and
/// return `Err` naming those that were stuck and where.
pub fn run<R: Send + 'static>(
    s: &Arc<HostSched>,
    bodies: Vec<(Tid, Box<dyn FnOnce() -> R + Send>)>,
    deadline: Duration,
) -> Result<Vec<R>, String> {
    let done = Arc::new((Mutex::new(0usize), Condvar::new()));
    let n = bodies.len();
    let tids: Vec<Tid> = bodies.iter().map(|(t, _)| *t).collect();
    let handles: Vec<_> = bodies
        .into_iter()
        .map(|(tid, f)| {
            let done = done.clone();
            std::thread::spawn(move || {
                // Counted as done even if the body panics.
                let _done = Done(done);
                set_current(tid);
                f()
            })
        })
        .collect();
    let end = Instant::now() + deadline;
    let mut stuck = String::new();
    {
        let (m, cv) = &*done;
        let mut g = m.lock().unwrap();
        while *g < n {
            let now = Instant::now();
            if now >= end {
                break;
            }
            g = cv.wait_timeout(g, end - now).unwrap().0;
        }
        if *g < n {
            for &t in &tids {
                if s.is_blocked(t) {
                    stuck += &format!(" thread {t} asleep in queue {:?};", s.queue_of(t));
                }
            }
            s.abort.store(true, Ordering::Relaxed);
            while *g < n {
                drop(g);
                for &t in &tids {
                    s.interrupt(t);
                }
                g = m.lock().unwrap();
                g = cv.wait_timeout(g, Duration::from_millis(5)).unwrap().0;
            }
        }
    }
    let results: Vec<R> = handles.into_iter().map(|h| h.join().expect("thread panicked")).collect();
    if stuck.is_empty() && s.aborted() {
        stuck = String::from(" (running, not asleep)");
    }
    if s.aborted() {
        Err(format!("stuck after {deadline:?}:{stuck}"))
    } else {
        Ok(results)
    }
}

/// FNV-1a, for checksummed messages.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Every queue served its sleepers oldest first: replaying the log, each
/// thread taken from a queue is the one at its head (a requeued thread
/// enters again at the tail). Returns the most sleepers any take chose
/// from (how much the check was exercised).
pub fn check_queues_fifo(events: &[Event]) -> Result<usize, String> {
    let mut queues: std::collections::HashMap<usize, std::collections::VecDeque<Tid>> = Default::default();
    let mut most = 0;
    for (i, e) in events.iter().enumerate() {
        match *e {
            Event::Enq(q, t) | Event::Requeue(q, t) => queues.entry(q).or_default().push_back(t),
            Event::Take(q, t) => {
                let w = queues.entry(q).or_default();
                most = most.max(w.len());
                match w.pop_front() {
                    Some(h) if h == t => {}
                    h => return Err(format!("event {i}: queue {q} served thread {t} before thread {h:?}, which entered first")),
                }
            }
        }
    }
    Ok(most)
}
