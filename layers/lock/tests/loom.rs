//! Loom: every interleaving of the real lock code under the C11 memory model.
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p lock --release --test loom --target-dir target/loom`
//!
//! The protected data is a `loom::cell::UnsafeCell`, so loom reports any two
//! accesses to it that are not ordered by happens-before (a missing
//! Acquire/Release shows up here even when the threads never overlap).
#![cfg(loom)]

use lock::mutants::{RacyTas, RelaxedMcs, RelaxedTicket};
use lock::{McsLock, RawLock, TicketLock};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use std::panic::{self, AssertUnwindSafe};

struct Shared<L> {
    lock: L,
    data: UnsafeCell<usize>,
}

// SAFETY: `data` is only touched while holding `lock` (for the correct locks;
// for the mutants loom is expected to report the race).
unsafe impl<L: RawLock> Sync for Shared<L> {}

/// `iters` locked increments as CPU `cpu`; odd CPUs start with `try_lock`
/// (falling back to `lock`), and alternate.
fn work<L: RawLock>(sh: &Shared<L>, cpu: usize, iters: usize) {
    for i in 0..iters {
        if !((i + cpu) % 2 == 1 && sh.lock.try_lock(cpu)) {
            sh.lock.lock(cpu);
        }
        assert!(sh.lock.is_locked());
        // SAFETY: the lock is held (loom checks that the accesses are ordered).
        sh.data.with_mut(|p| unsafe { *p += 1 });
        // SAFETY: held as `cpu`.
        unsafe { sh.lock.unlock(cpu) };
    }
}

/// `threads` loom threads (CPUs 0..threads, the main thread is CPU 0) each do
/// `iters` locked increments; the total must be exact.
fn counter_model<L: RawLock + 'static>(threads: usize, iters: usize) {
    let sh = Arc::new(Shared { lock: L::new(), data: UnsafeCell::new(0) });
    let handles: Vec<_> = (1..threads)
        .map(|cpu| {
            let sh = sh.clone();
            loom::thread::spawn(move || work(&*sh, cpu, iters))
        })
        .collect();
    work(&*sh, 0, iters);
    for h in handles {
        h.join().unwrap();
    }
    sh.lock.lock(0);
    // SAFETY: held, and every other thread has been joined.
    let total = sh.data.with(|p| unsafe { *p });
    assert_eq!(total, threads * iters);
    // SAFETY: held as CPU 0.
    unsafe { sh.lock.unlock(0) };
    assert!(!sh.lock.is_locked());
}

/// Exhaustive (no preemption bound).
fn exhaustive<L: RawLock + 'static>(threads: usize, iters: usize) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = None;
    b.max_branches = 100_000;
    b.check(move || counter_model::<L>(threads, iters));
}

/// At most `bound` preemptions per execution.
fn bounded<L: RawLock + 'static>(threads: usize, iters: usize, bound: usize) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    b.max_branches = 100_000;
    b.check(move || counter_model::<L>(threads, iters));
}

/// Runs a check that must fail; passes iff it panics with a message that
/// contains `expect` (so the bug found is the one planted).
fn must_fail(name: &str, expect: &str, f: impl FnOnce()) {
    let payload = match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => panic!("{name}: loom found no bug in a deliberately wrong lock"),
        Err(p) => p,
    };
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("<non-string panic>");
    assert!(msg.contains(expect), "{name}: expected a failure mentioning {expect:?}, got: {msg}");
}

// Budget notes (release build, 2 cores): with spin loops, loom's state space
// grows fast. Two threads, one acquisition each, is exhaustive in
// milliseconds for both locks; two acquisitions each (node reuse, hand-over
// to a waiter that arrived while we held) is exhaustive in ~5 s for the
// ticket lock but minutes for MCS, so MCS gets a preemption bound of 4
// there. Three threads: MCS with bound 2 is fast; the ticket lock's two
// waiters spin on the same word and, with bound 2, loom explores their
// yield ping-pong until it hits its branch limit (minutes), so it gets bound 1.

#[test]
fn ticket_2_threads_exhaustive() {
    exhaustive::<TicketLock>(2, 1);
}

#[test]
fn mcs_2_threads_exhaustive() {
    exhaustive::<McsLock>(2, 1);
}

#[test]
fn ticket_2_threads_2_rounds_exhaustive() {
    exhaustive::<TicketLock>(2, 2);
}

#[test]
fn mcs_2_threads_2_rounds_bounded() {
    bounded::<McsLock>(2, 2, 4);
}

#[test]
fn ticket_3_threads_bounded() {
    bounded::<TicketLock>(3, 1, 1);
}

#[test]
fn mcs_3_threads_bounded() {
    bounded::<McsLock>(3, 1, 2);
}

#[test]
fn teeth_relaxed_ticket_is_caught() {
    must_fail("RelaxedTicket", "Causality violation", || exhaustive::<RelaxedTicket>(2, 1));
}

#[test]
fn teeth_relaxed_mcs_is_caught() {
    must_fail("RelaxedMcs", "Causality violation", || exhaustive::<RelaxedMcs>(2, 1));
}

#[test]
fn teeth_racy_tas_is_caught() {
    must_fail("RacyTas", "Causality violation", || exhaustive::<RacyTas>(2, 1));
}
