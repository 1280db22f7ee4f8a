//! Regression check: a kill that comes after a thread has decided to wait
//! but before it is in the wait queue must not be lost
//! (`Scheduler::block_on_killable`). Before the fix the thread went to
//! sleep for good and the killer's `wait` hung (found by the fuzzer: the
//! master's `wait` for its killed clock process never returned).

use machine::MAX_CPUS;
use thread::{Scheduler, Tid};

fn running_thread(s: &Scheduler) -> Tid {
    for c in 0..MAX_CPUS {
        s.init_idle(c, 0);
    }
    let t = s.alloc_thread().unwrap();
    s.start(t, 0, 0, 0, 0).unwrap();
    assert!(s.idle_step(0));
    assert_eq!(s.current(0), t);
    t
}

#[test]
fn a_thread_interrupted_before_it_queues_does_not_sleep() {
    let s = Box::new(Scheduler::new());
    let t = running_thread(&s);
    let q = s.alloc_queue().unwrap();
    // The kill: the thread is in no queue yet, so there is nothing to wake.
    assert!(!s.interrupt(t));
    s.block_on_killable(0, q, ());
    assert_eq!(s.current(0), t, "the killed thread went to sleep: the kill was lost");
    assert_eq!(s.wake_one(q), None, "the killed thread was left in the wait queue");
}

#[test]
fn a_thread_not_interrupted_sleeps_until_woken() {
    let s = Box::new(Scheduler::new());
    let t = running_thread(&s);
    let q = s.alloc_queue().unwrap();
    s.block_on_killable(0, q, ());
    assert_eq!(s.current(0), 0, "the idle thread runs while the thread waits");
    // A kill now finds it in the queue and wakes it.
    assert!(s.interrupt(t));
    assert!(s.idle_step(0));
    assert_eq!(s.current(0), t);
}
