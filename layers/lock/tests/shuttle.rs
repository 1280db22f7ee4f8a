//! Shuttle: randomized and PCT schedules of 3 and 4 threads over the real lock
//! code, for mutual exclusion and FIFO order.
//!
//! `RUSTFLAGS="--cfg shuttle" cargo test -p lock --release --test shuttle --target-dir target/shuttle`
//!
//! Shuttle is sequentially consistent (orderings are loom's job); it reaches
//! more threads and longer runs. Every atomic operation is a preemption point.
//!
//! FIFO: the `doorway` closure records the doorway order into a plain
//! `std::sync::Mutex<Vec<usize>>` (not a shuttle primitive, so no preemption
//! point between the lock's doorway atomic and the record), and each thread
//! records itself again once inside the critical section; the two orders must
//! be equal.
#![cfg(shuttle)]

use lock::mutants::{RacyTas, RelaxedMcs, RelaxedTicket, UnfairTas};
use lock::{McsLock, RawLock, TicketLock};
use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::sync::atomic::{AtomicUsize, Ordering};
use shuttle::{Config, Runner};
use shuttle::sync::Arc;
use std::panic::{self, AssertUnwindSafe};

const RANDOM_ITERS: usize = 10_000;
const PCT_ITERS: usize = 10_000;
const PCT_DEPTH: usize = 3;
/// Acquisitions per thread in each execution.
const ROUNDS: usize = 3;

struct Shared<L> {
    lock: L,
    /// CPUs inside the critical section right now (must be 0 or 1).
    inside: AtomicUsize,
    /// Incremented non-atomically (load, then store: a preemption point in
    /// between), so overlapping critical sections lose updates.
    counter: AtomicUsize,
    doorways: std::sync::Mutex<Vec<usize>>,
    acquired: std::sync::Mutex<Vec<usize>>,
}

fn run_threads<L: RawLock + 'static>(threads: usize, check_fifo: bool) {
    let sh = Arc::new(Shared {
        lock: L::NEW,
        inside: AtomicUsize::new(0),
        counter: AtomicUsize::new(0),
        doorways: std::sync::Mutex::new(Vec::new()),
        acquired: std::sync::Mutex::new(Vec::new()),
    });
    let handles: Vec<_> = (0..threads)
        .map(|cpu| {
            let sh = sh.clone();
            shuttle::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    sh.lock.lock_with(cpu, || sh.doorways.lock().unwrap().push(cpu));
                    sh.acquired.lock().unwrap().push(cpu);
                    assert_eq!(sh.inside.fetch_add(1, Ordering::SeqCst), 0, "two CPUs in the critical section");
                    let v = sh.counter.load(Ordering::SeqCst);
                    sh.counter.store(v + 1, Ordering::SeqCst);
                    sh.inside.fetch_sub(1, Ordering::SeqCst);
                    // SAFETY: held as `cpu`.
                    unsafe { sh.lock.unlock(cpu) };
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(sh.counter.load(Ordering::SeqCst), threads * ROUNDS, "lost updates");
    assert!(!sh.lock.is_locked());
    if check_fifo {
        let d = sh.doorways.lock().unwrap().clone();
        let a = sh.acquired.lock().unwrap().clone();
        assert_eq!(d, a, "acquisition order differs from doorway order (not FIFO)");
    }
}

/// `shuttle::check_random`, with shuttle's "only SeqCst is modelled" warning
/// silenced (orderings are checked by loom).
fn random<L: RawLock + 'static>(threads: usize, fifo: bool) {
    let runner = Runner::new(RandomScheduler::new(RANDOM_ITERS), config());
    runner.run(move || run_threads::<L>(threads, fifo));
}

/// `shuttle::check_pct`, warning silenced.
fn pct<L: RawLock + 'static>(threads: usize, fifo: bool) {
    let runner = Runner::new(PctScheduler::new(PCT_DEPTH, PCT_ITERS), config());
    runner.run(move || run_threads::<L>(threads, fifo));
}

fn config() -> Config {
    let mut c = Config::new();
    c.silence_warnings = true;
    c
}

/// Runs a check that must fail; passes iff it panics with a message that
/// contains `expect` (so the bug found is the one planted).
fn must_fail(name: &str, expect: &str, f: impl FnOnce()) {
    let payload = match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => panic!("{name}: shuttle found no bug in a deliberately wrong lock"),
        Err(p) => p,
    };
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("<non-string panic>");
    assert!(msg.contains(expect), "{name}: expected a failure mentioning {expect:?}, got: {msg}");
}

#[test]
fn ticket_random_3() {
    random::<TicketLock>(3, true);
}
#[test]
fn ticket_random_4() {
    random::<TicketLock>(4, true);
}
#[test]
fn ticket_pct_3() {
    pct::<TicketLock>(3, true);
}
#[test]
fn ticket_pct_4() {
    pct::<TicketLock>(4, true);
}
#[test]
fn mcs_random_3() {
    random::<McsLock>(3, true);
}
#[test]
fn mcs_random_4() {
    random::<McsLock>(4, true);
}
#[test]
fn mcs_pct_3() {
    pct::<McsLock>(3, true);
}
#[test]
fn mcs_pct_4() {
    pct::<McsLock>(4, true);
}

#[test]
fn teeth_racy_tas_breaks_mutual_exclusion_random() {
    must_fail("RacyTas", "two CPUs in the critical section", || random::<RacyTas>(3, false));
}
#[test]
fn teeth_racy_tas_breaks_mutual_exclusion_pct() {
    must_fail("RacyTas", "two CPUs in the critical section", || pct::<RacyTas>(3, false));
}
#[test]
fn teeth_unfair_tas_is_not_fifo_random() {
    // Mutual exclusion holds for UnfairTas: only the FIFO check may fail.
    random::<UnfairTas>(3, false);
    must_fail("UnfairTas", "not FIFO", || random::<UnfairTas>(3, true));
}
#[test]
fn teeth_unfair_tas_is_not_fifo_pct() {
    pct::<UnfairTas>(3, false);
    must_fail("UnfairTas", "not FIFO", || pct::<UnfairTas>(3, true));
}

/// Scope of the tool: shuttle runs every atomic as SeqCst, so the Relaxed
/// mutants (caught by loom) pass here. If this ever fails, shuttle started
/// modelling weak memory and the Relaxed mutants belong in `must_fail` too.
#[test]
fn relaxed_mutants_pass_under_sequential_consistency() {
    random::<RelaxedTicket>(3, true);
    random::<RelaxedMcs>(3, true);
}
