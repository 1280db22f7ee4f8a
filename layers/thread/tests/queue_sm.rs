//! The shared queue library (`queue::QueueSet`) refines `spec::QueueSpec`.
//!
//! A proptest state machine drives one `QueueSet<3, 6>` and the abstract
//! queue set side by side with enqueue, dequeue, remove, len and home on
//! three queues and six threads, hostile operations included (a thread that
//! is already queued, removing from the wrong queue, queue ids and thread
//! ids out of range). After every step the results must be equal and so must
//! every queue's full contents (`snapshot`), every length and every
//! thread's home queue. The two mutants in `queue::mutant` must be caught.
//!
//! A short storm at the end runs the same library from several OS threads
//! (each playing a CPU) and checks that no thread id is lost or duplicated
//! and that the links still agree with the counts.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use std::sync::atomic::Ordering;
use thread::queue::{mutant, QueueSet};
use thread::spec::QueueSpec;
use thread::Tid;

const Q: usize = 3;
const T: usize = 6;

#[derive(Clone, Copy, Debug)]
enum Op {
    Enqueue(usize, Tid),
    Dequeue(usize),
    Remove(usize, Tid),
    Len(usize),
    Home(Tid),
}

/// Mostly valid ids, sometimes one past the end or far out.
fn queue() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0..Q, 1 => Just(Q), 1 => Just(usize::MAX)]
}

fn tid() -> impl Strategy<Value = Tid> {
    prop_oneof![8 => 0..T as Tid, 1 => Just(T as Tid), 1 => Just(Tid::MAX - 1)]
}

fn op() -> BoxedStrategy<Op> {
    prop_oneof![
        6 => (queue(), tid()).prop_map(|(q, t)| Op::Enqueue(q, t)),
        4 => queue().prop_map(Op::Dequeue),
        4 => (queue(), tid()).prop_map(|(q, t)| Op::Remove(q, t)),
        1 => queue().prop_map(Op::Len),
        1 => tid().prop_map(Op::Home),
    ]
    .boxed()
}

/// The model's answer, as text (results of different types compare as text).
fn apply_model(s: &mut QueueSpec, op: Op) -> String {
    match op {
        Op::Enqueue(q, t) => format!("{:?}", s.enqueue(q, t)),
        Op::Dequeue(q) => format!("{:?}", s.dequeue(q)),
        Op::Remove(q, t) => format!("{:?}", s.remove(q, t)),
        Op::Len(q) => format!("{:?}", s.queues.get(q).map_or(0, |x| x.len())),
        Op::Home(t) => format!("{:?}", s.queues.iter().position(|x| x.contains(&t))),
    }
}

fn apply_impl(qs: &QueueSet<Q, T>, op: Op) -> String {
    match op {
        Op::Enqueue(q, t) => format!("{:?}", qs.enqueue(q, t)),
        Op::Dequeue(q) => format!("{:?}", qs.dequeue(q)),
        Op::Remove(q, t) => format!("{:?}", qs.remove(q, t)),
        Op::Len(q) => format!("{:?}", qs.len(q)),
        Op::Home(t) => format!("{:?}", qs.home(t)),
    }
}

/// Every observable of the queue set against the model.
fn compare(qs: &QueueSet<Q, T>, m: &QueueSpec) -> Result<(), String> {
    for q in 0..Q + 1 {
        // One slot more than can be queued: a cycle in the links would fill it.
        let mut out = [Tid::MAX; T + 1];
        let n = qs.snapshot(q, &mut out);
        let want: Vec<Tid> = m.queues.get(q).map(|x| x.iter().copied().collect()).unwrap_or_default();
        let walked: Vec<Tid> = out.iter().copied().take_while(|&t| t != Tid::MAX).collect();
        if n != want.len() || walked != want || qs.len(q) != want.len() || qs.is_empty(q) != want.is_empty() {
            return Err(format!("queue {q}: {walked:?} (len {n}), model {want:?}"));
        }
    }
    for t in 0..T as Tid + 1 {
        let want = m.queues.iter().position(|x| x.contains(&t));
        if qs.home(t) != want {
            return Err(format!("thread {t}: home {:?}, model {want:?}", qs.home(t)));
        }
    }
    Ok(())
}

struct Ref;

impl ReferenceStateMachine for Ref {
    type State = QueueSpec;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<QueueSpec> {
        Just(QueueSpec::new(Q, T)).boxed()
    }

    fn transitions(_: &QueueSpec) -> BoxedStrategy<Op> {
        op()
    }

    fn apply(mut s: QueueSpec, op: &Op) -> QueueSpec {
        apply_model(&mut s, *op);
        s
    }
}

struct Sut {
    qs: Box<QueueSet<Q, T>>,
    model: QueueSpec,
}

impl Sut {
    fn new(mutant: u8) -> Sut {
        let qs = Box::new(QueueSet::new());
        qs.mutant.store(mutant, Ordering::Relaxed);
        Sut { qs, model: QueueSpec::new(Q, T) }
    }

    fn step(&mut self, op: Op) -> Result<(), String> {
        let got = apply_impl(&self.qs, op);
        let want = apply_model(&mut self.model, op);
        if got != want {
            return Err(format!("{op:?}: queues gave {got}, model {want}"));
        }
        compare(&self.qs, &self.model).map_err(|e| format!("after {op:?}: {e}"))
    }
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = Ref;

    fn init_test(_: &QueueSpec) -> Sut {
        Sut::new(0)
    }

    fn apply(mut sut: Sut, _: &QueueSpec, op: Op) -> Sut {
        if let Err(e) = sut.step(op) {
            panic!("{e}");
        }
        sut
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

prop_state_machine! {
    #![proptest_config(Config { cases: cases(512), ..Config::default() })]
    #[test]
    fn queues_refine_model(sequential 1..80 => Sut);
}

/// The refinement as a plain function with mutant `m` on: Err(counterexample).
fn run(m: u8, cases: u32) -> Result<(), String> {
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    runner
        .run(&Ref::sequential_strategy(1..80), |(_, ops, _)| {
            let mut sut = Sut::new(m);
            for &op in &ops {
                // A mutant may also trip an overflow check: a failure too.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sut.step(op)));
                r.unwrap_or_else(|_| Err(format!("{op:?} panicked"))).map_err(TestCaseError::fail)?;
            }
            Ok(())
        })
        .map_err(|e| format!("{e}"))
}

#[test]
fn catches_remove_ignoring_home() {
    let e = run(mutant::REMOVE_IGNORES_HOME, 500).expect_err("mutant not caught");
    assert!(e.contains("Remove"), "{e}");
}

#[test]
fn catches_unlink_keeping_home() {
    let e = run(mutant::UNLINK_KEEPS_HOME, 500).expect_err("mutant not caught");
    assert!(e.contains("home") || e.contains("AlreadyQueued"), "{e}");
}

/// Three OS threads (CPUs) each own some thread ids and move them between
/// the queues (enqueue, dequeue anything, remove their own) for a while;
/// afterwards every id is in exactly one queue or held by exactly one
/// worker, and every queue's links agree with its count. (Few threads, for
/// 100 ms: spinning threads on an oversubscribed host convoy behind a
/// preempted lock holder, so a fixed number of rounds can take very long.)
#[test]
fn storm_keeps_every_thread_once() {
    const W: usize = 3;
    const TT: usize = 32;
    let qs: &'static QueueSet<Q, TT> = Box::leak(Box::new(QueueSet::new()));
    let held: Vec<Vec<Tid>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..W)
            .map(|w| {
                sc.spawn(move || {
                    // Ids w, w+W, ... start in this worker's hands.
                    let mut mine: Vec<Tid> = (w..TT).step_by(W).map(|t| t as Tid).collect();
                    let mut x = 0x9e37_79b9_u32.wrapping_mul(w as u32 + 1);
                    let end = std::time::Instant::now() + std::time::Duration::from_millis(100);
                    let mut rounds = 0u32;
                    while rounds % 64 != 0 || std::time::Instant::now() < end {
                        rounds += 1;
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        let q = (x as usize >> 8) % Q;
                        match x % 3 {
                            0 if !mine.is_empty() => {
                                let t = mine.swap_remove((x as usize >> 4) % mine.len());
                                qs.enqueue(q, t).expect("a held thread is in no queue");
                            }
                            1 => mine.extend(qs.dequeue(q)),
                            _ => {
                                // Remove an id we do not hold, if it is in q.
                                let t = (x >> 12) as Tid % TT as Tid;
                                if !mine.contains(&t) && qs.remove(q, t) {
                                    mine.push(t);
                                }
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seen = vec![0; TT];
    for t in held.iter().flatten() {
        seen[*t as usize] += 1;
        assert_eq!(qs.home(*t), None, "thread {t} is held and queued");
    }
    for q in 0..Q {
        let mut out = [Tid::MAX; TT + 1];
        let n = qs.snapshot(q, &mut out);
        let walked: Vec<Tid> = out.iter().copied().take_while(|&t| t != Tid::MAX).collect();
        assert_eq!(walked.len(), n, "queue {q}: the links and the count disagree");
        for &t in &walked {
            seen[t as usize] += 1;
            assert_eq!(qs.home(t), Some(q), "thread {t} linked into queue {q}");
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "every thread once: {seen:?}");
}
