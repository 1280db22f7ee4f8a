//! The real mutexes and condition variables (`proc::objects`) under real
//! concurrency, on the OS-thread harness (`common`): one OS thread per
//! simulated thread, blocking through `common::HostSched`.
//!
//! - producer/consumer over one mutex and two condition variables: every
//!   item consumed exactly once, per producer in order, exact counts; the
//!   data the mutex guards is only ever touched by one thread at a time
//!   (a `try_lock` on it must never fail); every queue served oldest first;
//! - many threads contending on one mutex: the order they got the mutex
//!   after waiting equals the order they entered its queue (FIFO hand-off),
//!   and a harness that serves the newest waiter instead is caught;
//! - two threads taking turns through one condition variable: no lost
//!   wake-up (a harness that queues a sleeper only after dropping its lock
//!   loses one, and the run is caught stuck);
//! - a creator's exit wakes its objects' waiters with `PeerGone` and frees
//!   their queues; an exiting owner's mutex goes to its oldest waiter;
//! - the error cases, one by one.

mod common;

use abi::Error;
use common::{check_queues_fifo, my_blocks, run, serial, set_current, Event, Fault, HostSched};
use proc::objects::{Objects, MAX_OBJECTS};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thread::Tid;

type Body<R> = (Tid, Box<dyn FnOnce() -> R + Send>);

/// What the kernel mutex guards. A `std` mutex only to *check* exclusion:
/// it is only ever `try_lock`ed, by the owner of the kernel mutex.
#[derive(Default)]
struct Data {
    buf: VecDeque<u64>,
    produced: u64,
    consumed: u64,
    /// Every consumption, in order: (consumer, item).
    log: Vec<(Tid, u64)>,
}

fn inside<R>(d: &Mutex<Data>, f: impl FnOnce(&mut Data) -> R) -> R {
    f(&mut d.try_lock().expect("two threads inside the kernel mutex at once"))
}

#[test]
fn producers_consumers_exact_counts() {
    let _g = serial();
    const P: u64 = 3;
    const C: Tid = 3;
    const N: u64 = 300;
    const CAP: usize = 4;
    let s = HostSched::new(Fault::None);
    let o = Arc::new(Objects::new());
    let m = o.mutex_create(&*s, 1).unwrap();
    let (not_full, not_empty) = (o.cv_create(&*s, 1).unwrap(), o.cv_create(&*s, 1).unwrap());
    let d = Arc::new(Mutex::new(Data::default()));
    let mut bodies: Vec<Body<Result<u64, Error>>> = Vec::new();
    for p in 0..P {
        let (s, o, d) = (s.clone(), o.clone(), d.clone());
        bodies.push((
            1 + p as Tid,
            Box::new(move || {
                for k in 0..N {
                    o.mutex_lock(&*s, m)?;
                    while inside(&d, |d| d.buf.len() == CAP) {
                        o.cv_wait(&*s, not_full, m)?;
                    }
                    inside(&d, |d| {
                        d.buf.push_back(p << 32 | k);
                        d.produced += 1;
                    });
                    o.cv_signal(&*s, not_empty)?;
                    o.mutex_unlock(&*s, m)?;
                }
                Ok(N)
            }),
        ));
    }
    for c in 0..C {
        let (s, o, d) = (s.clone(), o.clone(), d.clone());
        let me = 10 + c;
        bodies.push((
            me,
            Box::new(move || {
                let mut got = 0;
                loop {
                    o.mutex_lock(&*s, m)?;
                    while inside(&d, |d| d.buf.is_empty() && d.consumed < P * N) {
                        o.cv_wait(&*s, not_empty, m)?;
                    }
                    let item = inside(&d, |d| {
                        let item = d.buf.pop_front();
                        if let Some(x) = item {
                            d.consumed += 1;
                            d.log.push((me, x));
                        }
                        item
                    });
                    if item.is_none() {
                        // All consumed: let the other consumers see it too.
                        o.cv_broadcast(&*s, not_empty)?;
                        o.mutex_unlock(&*s, m)?;
                        return Ok(got);
                    }
                    got += 1;
                    if inside(&d, |d| d.consumed == P * N) {
                        o.cv_broadcast(&*s, not_empty)?;
                    }
                    o.cv_signal(&*s, not_full)?;
                    o.mutex_unlock(&*s, m)?;
                }
            }),
        ));
    }
    let results = run(&s, bodies, Duration::from_secs(30)).unwrap();
    let counts: Vec<u64> = results.into_iter().map(|r| r.expect("a call failed")).collect();
    let d = d.lock().unwrap();
    assert_eq!((d.produced, d.consumed), (P * N, P * N));
    assert_eq!(counts[P as usize..].iter().sum::<u64>(), P * N, "consumers' counts");
    let mut next = [0u64; P as usize];
    for &(_, x) in &d.log {
        let (p, k) = ((x >> 32) as usize, x & 0xffff_ffff);
        assert_eq!(k, next[p], "producer {p}'s items out of order or lost");
        next[p] += 1;
    }
    assert!(next.iter().all(|&n| n == N));
    assert!(d.buf.is_empty());
    assert!(s.blocks() > 0, "nobody ever waited: the test did not exercise blocking");
    // Every queue (the mutex's, both condition variables') served oldest first.
    check_queues_fifo(&s.events()).unwrap();
    assert_eq!(o.live(), (1, 2));
}

/// One mutex's hand-offs against its queue: the threads that waited got
/// the mutex in the order they entered the queue.
fn check_fifo(events: &[Event], q: usize, acquired: &[(Tid, bool)]) -> Result<(), String> {
    let arrivals: Vec<Tid> = events.iter().filter(|e| matches!(**e, Event::Enq(x, _) if x == q)).map(tid_of).collect();
    let handed: Vec<Tid> = acquired.iter().filter(|(_, waited)| *waited).map(|(t, _)| *t).collect();
    if arrivals != handed {
        let i = arrivals.iter().zip(&handed).position(|(a, b)| a != b).unwrap_or(arrivals.len().min(handed.len()));
        return Err(format!(
            "hand-off {i}: queue order {:?}.., got the mutex {:?}.. ({} waits, {} hand-offs)",
            &arrivals[i..(i + 5).min(arrivals.len())],
            &handed[i..(i + 5).min(handed.len())],
            arrivals.len(),
            handed.len()
        ));
    }
    Ok(())
}

fn tid_of(e: &Event) -> Tid {
    match *e {
        Event::Enq(_, t) | Event::Take(_, t) | Event::Requeue(_, t) => t,
    }
}

/// `T` threads lock and unlock one mutex `R` times each; returns the queue
/// events and the acquisitions (thread, whether it had to wait).
/// (thread, whether it had to wait) per acquisition, in order.
type Acquired = Vec<(Tid, bool)>;

fn contend(fault: Fault) -> Result<(Vec<Event>, Acquired), String> {
    const T: Tid = 6;
    const R: usize = 60;
    let s = HostSched::new(fault);
    let o = Arc::new(Objects::new());
    let m = o.mutex_create(&*s, 1).unwrap();
    assert_eq!(s.queues_in_use(), 1, "the mutex's queue is queue 0");
    let acquired = Arc::new(Mutex::new(Vec::new()));
    let start = Arc::new(std::sync::Barrier::new(T as usize));
    let bodies: Vec<Body<Result<(), Error>>> = (1..=T)
        .map(|t| {
            let (s, o, acquired, start) = (s.clone(), o.clone(), acquired.clone(), start.clone());
            let body: Box<dyn FnOnce() -> Result<(), Error> + Send> = Box::new(move || {
                start.wait();
                for _ in 0..R {
                    let before = my_blocks();
                    o.mutex_lock(&*s, m)?;
                    acquired.try_lock().expect("two owners at once").push((t, my_blocks() > before));
                    // A short critical section, so that others pile up behind.
                    let until = std::time::Instant::now() + Duration::from_micros(20);
                    while std::time::Instant::now() < until {
                        std::hint::spin_loop();
                    }
                    o.mutex_unlock(&*s, m)?;
                }
                Ok(())
            });
            (t, body)
        })
        .collect();
    for r in run(&s, bodies, Duration::from_secs(30))? {
        r.map_err(|e| format!("{e:?}"))?;
    }
    let acquired = acquired.lock().unwrap().clone();
    Ok((s.events(), acquired))
}

/// The longest `q` was when a waiter was taken from it.
fn longest_at_take(events: &[Event], q: usize) -> usize {
    let (mut len, mut most) = (0usize, 0);
    for e in events {
        match *e {
            Event::Enq(x, _) if x == q => len += 1,
            Event::Take(x, _) if x == q => {
                most = most.max(len);
                len -= 1;
            }
            _ => {}
        }
    }
    most
}

/// `contend` until some hand-off had at least `n` waiters to choose from
/// (how much the threads overlap is up to the host's scheduler).
fn contend_until(fault: Fault, n: usize) -> (Vec<Event>, Acquired) {
    for _ in 0..10 {
        let (events, acquired) = contend(fault).unwrap();
        if longest_at_take(&events, 0) >= n {
            return (events, acquired);
        }
    }
    panic!("never {n} waiters at once in 10 runs: FIFO not exercised");
}

#[test]
fn contended_mutex_hands_off_in_queue_order() {
    let _g = serial();
    let (events, acquired) = contend_until(Fault::None, 3);
    assert_eq!(acquired.len(), 6 * 60);
    check_fifo(&events, 0, &acquired).unwrap();
}

#[test]
fn fifo_check_catches_newest_first_hand_off() {
    let _g = serial();
    let (events, acquired) = contend_until(Fault::TakeNewest, 2);
    let e = check_fifo(&events, 0, &acquired).expect_err("a newest-first hand-off was not caught");
    assert!(e.contains("queue order"), "{e}");
}

/// Two threads take turns `R` times through one mutex and one condition
/// variable (signal, not broadcast: a lost wake-up leaves both asleep).
fn take_turns(fault: Fault, deadline: Duration) -> Result<(), String> {
    const R: u32 = 400;
    let s = HostSched::new(fault);
    let o = Arc::new(Objects::new());
    let m = o.mutex_create(&*s, 1).unwrap();
    let cv = o.cv_create(&*s, 1).unwrap();
    let turn = Arc::new(Mutex::new(0u32));
    let bodies: Vec<Body<Result<(), Error>>> = (0..2u32)
        .map(|me| {
            let (s, o, turn) = (s.clone(), o.clone(), turn.clone());
            let body: Box<dyn FnOnce() -> Result<(), Error> + Send> = Box::new(move || {
                for _ in 0..R {
                    o.mutex_lock(&*s, m)?;
                    while *turn.try_lock().expect("exclusion") != me {
                        o.cv_wait(&*s, cv, m)?;
                    }
                    *turn.try_lock().expect("exclusion") = 1 - me;
                    o.cv_signal(&*s, cv)?;
                    o.mutex_unlock(&*s, m)?;
                }
                Ok(())
            });
            (1 + me as Tid, body)
        })
        .collect();
    for r in run(&s, bodies, deadline)? {
        r.map_err(|e| format!("{e:?}"))?;
    }
    Ok(())
}

#[test]
fn turns_through_a_condition_variable_lose_no_wake_up() {
    let _g = serial();
    take_turns(Fault::None, Duration::from_secs(30)).unwrap();
}

#[test]
fn lost_wake_up_is_caught_as_stuck() {
    let _g = serial();
    let e = take_turns(Fault::ReleaseBeforeQueue, Duration::from_secs(1)).expect_err("the lost wake-up was not caught");
    assert!(e.contains("stuck") && e.contains("asleep"), "{e}");
}

/// Run `f` as simulated thread `tid` on its own OS thread.
fn spawn<R: Send + 'static>(tid: Tid, f: impl FnOnce() -> R + Send + 'static) -> std::thread::JoinHandle<R> {
    std::thread::spawn(move || {
        set_current(tid);
        f()
    })
}

#[test]
fn creator_exit_wakes_waiters_with_peer_gone() {
    let _g = serial();
    let s = HostSched::new(Fault::None);
    let o = Arc::new(Objects::new());
    // Process 10 creates M and V; process 11 creates M2.
    let m = o.mutex_create(&*s, 10).unwrap();
    let v = o.cv_create(&*s, 10).unwrap();
    let m2 = o.mutex_create(&*s, 11).unwrap();
    // Thread 4 waits on V (having released M).
    let w3 = {
        let (s, o) = (s.clone(), o.clone());
        spawn(4, move || {
            o.mutex_lock(&*s, m).unwrap();
            o.cv_wait(&*s, v, m)
        })
    };
    s.wait_blocked(4);
    // Thread 1 (process 20) holds M and M2.
    let (tx, rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let h = {
        let (s, o) = (s.clone(), o.clone());
        spawn(1, move || {
            o.mutex_lock(&*s, m).unwrap();
            o.mutex_lock(&*s, m2).unwrap();
            tx.send(()).unwrap();
            go_rx.recv().unwrap();
            // Its process is gone by now: M with it, M2 handed on.
            (o.mutex_unlock(&*s, m), o.mutex_unlock(&*s, m2))
        })
    };
    rx.recv().unwrap();
    // Threads 2 and 3 queue for M, thread 5 for M2.
    let lockers: Vec<_> = [(2, m), (3, m), (5, m2)]
        .into_iter()
        .map(|(t, id)| {
            let (s2, o) = (s.clone(), o.clone());
            let j = spawn(t, move || {
                let r = o.mutex_lock(&*s2, id);
                // The new owner can unlock it (only it).
                let u = if r.is_ok() { Some(o.mutex_unlock(&*s2, id)) } else { None };
                (r, u)
            });
            s.wait_blocked(t);
            j
        })
        .collect();
    let queues = s.queues_in_use();
    o.process_exit(&*s, 10, 99);
    assert_eq!(s.queues_in_use(), queues - 2, "M's and V's queues are given back");
    assert_eq!(o.live(), (1, 0));
    o.process_exit(&*s, 20, 1);
    go_tx.send(()).unwrap();
    let results: Vec<_> = lockers.into_iter().map(|j| j.join().unwrap()).collect();
    assert_eq!(results[0], (Err(Error::PeerGone), None));
    assert_eq!(results[1], (Err(Error::PeerGone), None));
    assert_eq!(results[2], (Ok(0), Some(Ok(0))), "M2 goes to its waiter when its owner's process exits");
    assert_eq!(w3.join().unwrap(), Err(Error::PeerGone));
    assert_eq!(h.join().unwrap(), (Err(Error::NoSuchObject), Err(Error::NotOwner)));
    let taken: Vec<Tid> = s.events().iter().filter(|e| matches!(e, Event::Take(..))).map(tid_of).collect();
    assert_eq!(taken, [2, 3, 4, 5], "M's waiters oldest first, then V's, then M2's");
    o.process_exit(&*s, 11, 0);
    assert_eq!(o.live(), (0, 0));
    assert_eq!(s.queues_in_use(), 0, "every queue given back");
}

#[test]
fn errors() {
    let _g = serial();
    let s = HostSched::new(Fault::None);
    set_current(7);
    let o = Objects::new();
    let m = o.mutex_create(&*s, 1).unwrap();
    let cv = o.cv_create(&*s, 1).unwrap();
    assert_eq!(o.mutex_unlock(&*s, m), Err(Error::NotOwner), "unlocking a free mutex");
    assert_eq!(o.cv_wait(&*s, cv, m), Err(Error::NotOwner), "waiting without the mutex");
    assert_eq!(o.mutex_lock(&*s, m), Ok(0));
    assert_eq!(o.mutex_lock(&*s, m), Err(Error::WouldDeadlock));
    assert_eq!(o.cv_signal(&*s, cv), Ok(0), "no waiter");
    assert_eq!(o.cv_broadcast(&*s, cv), Ok(0));
    for bad in [MAX_OBJECTS as u64, u64::MAX, m + 1] {
        assert_eq!(o.mutex_lock(&*s, bad), Err(Error::NoSuchObject));
        assert_eq!(o.mutex_unlock(&*s, bad), Err(Error::NoSuchObject));
        assert_eq!(o.cv_signal(&*s, bad), Err(Error::NoSuchObject));
        assert_eq!(o.cv_broadcast(&*s, bad), Err(Error::NoSuchObject));
        assert_eq!(o.cv_wait(&*s, bad, m), Err(Error::NoSuchObject));
        assert_eq!(o.cv_wait(&*s, cv, bad), Err(Error::NoSuchObject));
    }
    // Someone else's mutex.
    set_current(8);
    assert_eq!(o.mutex_unlock(&*s, m), Err(Error::NotOwner));
    set_current(7);
    assert_eq!(o.mutex_unlock(&*s, m), Ok(0));
    // A process holds at most MAX_MUTEXES_PER_PROCESS mutexes and
    // MAX_CVS_PER_PROCESS condition variables.
    for _ in 0..abi::MAX_MUTEXES_PER_PROCESS {
        o.mutex_create(&*s, 2).unwrap();
    }
    for _ in 0..abi::MAX_CVS_PER_PROCESS {
        o.cv_create(&*s, 2).unwrap();
    }
    assert_eq!(o.mutex_create(&*s, 2), Err(Error::TooMany));
    assert_eq!(o.cv_create(&*s, 2), Err(Error::TooMany));
    // Only more processes than the kernel can hold could fill the tables.
    let mut p = 100;
    while (o.live().0 < MAX_OBJECTS || o.live().1 < MAX_OBJECTS) && p < 100 + 2 * proc::MAX_PROCS as u32 {
        for _ in 0..abi::MAX_MUTEXES_PER_PROCESS {
            let _ = o.mutex_create(&*s, p);
            let _ = o.cv_create(&*s, p);
        }
        p += 1;
    }
    assert!((p - 100) as usize + 1 > abi::MAX_PROCESSES, "{} processes filled the tables", p - 100 + 1);
    assert_eq!(o.mutex_create(&*s, 999), Err(Error::TableFull));
    assert_eq!(o.cv_create(&*s, 999), Err(Error::TableFull));
    for q in 100..p {
        o.process_exit(&*s, q, 0);
    }
    o.process_exit(&*s, 2, 0);
    assert_eq!(o.live(), (1, 1));
    o.process_exit(&*s, 1, 7);
    assert_eq!((o.live(), s.queues_in_use()), ((0, 0), 0));
    assert!(s.events().is_empty(), "nothing ever blocked");
}
