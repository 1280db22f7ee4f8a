//! The scheduler (`sched::Scheduler`) refines `spec::SchedSpec`.
//!
//! On the host the scheduler runs its state machine without switching
//! stacks, so a proptest state machine can drive one `Scheduler` (16 CPUs'
//! worth of tables, all idle threads adopted; operations on three CPUs, each
//! passed explicitly) and the spec side by side: allocate, start, release a
//! slot, yield, the idle loop's step, block on a wait queue (also with a
//! wake-up arriving between the lock's release and the switch, through the
//! guard), wake one / all / a given thread, take a waiter and then make it
//! runnable, hand it off to run next (`wake_handoff`, as the calling CPU) or
//! put it back in a queue, flush a hand-off, interrupt, sleep until a tick,
//! tick, exit, reap, hand out and take back wait queues; with hostile
//! arguments (idle, free, running, queued or out-of-range threads, bad
//! CPUs, queues never handed out or not wait queues). The first driven CPU
//! is the test thread's own host CPU index (`machine::cpu::id()`), which is
//! the CPU `wake_handoff` acts for.
//!
//! After every step the results must be equal, and so must every thread's
//! state, home CPU and queue, every CPU's current thread, ready queue, tick
//! count and sleepers, every wait queue's contents and the number of wait
//! queues in use. The implementation's state must also satisfy the layer's
//! invariants, read through its public interface alone (a Ready thread is
//! in exactly its home CPU's ready queue, or is the one thread in its hand-off
//! slot; each CPU runs exactly one thread;
//! a Running thread is current of its home CPU; idle threads are never
//! queued), and so must the spec's (`SchedSpec::check`). The mutants in
//! `sched::mutant` must be caught.
//!
//! The one choice the spec leaves open is the order in which one tick wakes
//! several sleepers: the step reads it from the implementation's ready
//! queue and the spec checks it is exactly the due sleepers.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use std::sync::atomic::Ordering;
use thread::sched::{mutant, MAX_QUEUES};
use thread::spec::{SchedSpec, Where};
use thread::{Scheduler, State, Tid, MAX_THREADS};

use machine::MAX_CPUS;

/// CPUs the operations run on (the other CPUs stay idle, and are compared too).
const CPUS: usize = 3;

/// The driven CPUs: the calling OS thread's own host CPU index first (the
/// CPU `wake_handoff` acts for), then the next two.
fn driven() -> [usize; CPUS] {
    let me = machine::cpu::id();
    [me, (me + 1) % MAX_CPUS, (me + 2) % MAX_CPUS]
}

/// Model CPU `k` (an index into `driven()`), or a CPU that does not exist.
fn real(k: usize) -> usize {
    driven().get(k).copied().unwrap_or(MAX_CPUS)
}
/// Wait queue ids (the implementation numbers them after the ready and sleep queues).
const FIRST_WAIT: usize = 2 * MAX_CPUS;

/// A thread: the i-th live non-idle one (mod their number), or any id.
#[derive(Clone, Copy, Debug)]
enum Pick {
    Live(usize),
    Raw(Tid),
}

/// A queue: the i-th handed-out wait queue (mod their number), or any id.
#[derive(Clone, Copy, Debug)]
enum QPick {
    Held(usize),
    Raw(usize),
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Alloc,
    Release(Pick),
    Start(Pick, usize),
    Yield(usize),
    Idle(usize),
    Block(usize, QPick),
    /// Block, with the thread woken (`wake_thread`) when the guard drops.
    BlockWokenEarly(usize, QPick),
    WakeOne(QPick),
    WakeAll(QPick),
    WakeThread(QPick, Pick),
    /// Take the oldest waiter, then make it runnable (proc's take + wake).
    TakeWake(QPick),
    /// Take the oldest waiter, then hand it off as the calling CPU (`driven()[0]`).
    TakeHandoff(QPick),
    /// The `call` pattern: take the oldest waiter of one queue, hand it off
    /// as the calling CPU, then block the calling CPU's thread on another.
    HandoffThenBlock(QPick, QPick),
    /// Take the oldest waiter of one queue and put it at the tail of another.
    TakeRequeue(QPick, QPick),
    Flush(usize),
    Interrupt(Pick),
    Sleep(usize, u64),
    Tick(usize),
    Exit(usize),
    Reap(Pick),
    AllocQueue,
    FreeQueue(QPick),
}

/// A driven CPU, the caller's own (where hand-offs happen) more often.
fn cpu() -> impl Strategy<Value = usize> {
    prop_oneof![2 => Just(0), 1 => 1..CPUS]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        8 => (0usize..16).prop_map(Pick::Live),
        1 => (0 as Tid..(MAX_CPUS + 4) as Tid).prop_map(Pick::Raw),
        1 => prop_oneof![Just(MAX_THREADS as Tid), Just(Tid::MAX)].prop_map(Pick::Raw),
    ]
}

/// Wait queues for the wake operations (the layers above wake only wait
/// queues: a ready queue is its CPU's, a sleep queue the tick's).
fn qpick() -> impl Strategy<Value = QPick> {
    prop_oneof![
        // Mostly the first two, so that waiters pile up.
        8 => prop_oneof![4 => 0usize..2, 1 => 0usize..8].prop_map(QPick::Held),
        // A wait queue never handed out, or past the last queue.
        1 => prop_oneof![Just(FIRST_WAIT + 40), Just(MAX_QUEUES), Just(usize::MAX)].prop_map(QPick::Raw),
    ]
}

/// Any queue id, ready and sleep queues included (for `free_queue`).
fn qpick_any() -> impl Strategy<Value = QPick> {
    prop_oneof![4 => qpick(), 1 => (0..FIRST_WAIT).prop_map(QPick::Raw)]
}

fn op() -> BoxedStrategy<Op> {
    prop_oneof![
        4 => Just(Op::Alloc),
        1 => pick().prop_map(Op::Release),
        5 => (pick(), prop_oneof![6 => cpu(), 1 => Just(CPUS)]).prop_map(|(p, c)| Op::Start(p, c)),
        4 => cpu().prop_map(Op::Yield),
        6 => cpu().prop_map(Op::Idle),
        8 => (cpu(), qpick()).prop_map(|(c, q)| Op::Block(c, q)),
        2 => (cpu(), qpick()).prop_map(|(c, q)| Op::BlockWokenEarly(c, q)),
        2 => qpick().prop_map(Op::WakeOne),
        1 => qpick().prop_map(Op::WakeAll),
        1 => (qpick(), pick()).prop_map(|(q, p)| Op::WakeThread(q, p)),
        1 => qpick().prop_map(Op::TakeWake),
        2 => qpick().prop_map(Op::TakeHandoff),
        2 => (qpick(), qpick()).prop_map(|(a, b)| Op::HandoffThenBlock(a, b)),
        1 => (qpick(), qpick()).prop_map(|(a, b)| Op::TakeRequeue(a, b)),
        2 => cpu().prop_map(Op::Flush),
        1 => pick().prop_map(Op::Interrupt),
        3 => (cpu(), 0u64..4).prop_map(|(c, d)| Op::Sleep(c, d)),
        4 => cpu().prop_map(Op::Tick),
        2 => cpu().prop_map(Op::Exit),
        2 => pick().prop_map(Op::Reap),
        1 => Just(Op::AllocQueue),
        1 => qpick_any().prop_map(Op::FreeQueue),
    ]
    .boxed()
}

fn thread_of(s: &SchedSpec, p: Pick) -> Tid {
    match p {
        Pick::Raw(t) => t,
        Pick::Live(i) => {
            let live: Vec<Tid> = (MAX_CPUS..MAX_THREADS).filter(|&t| s.state[t] != State::Free).map(|t| t as Tid).collect();
            if live.is_empty() {
                MAX_CPUS as Tid
            } else {
                live[i % live.len()]
            }
        }
    }
}

fn queue_of(s: &SchedSpec, q: QPick) -> usize {
    match q {
        QPick::Raw(q) => q,
        QPick::Held(i) => {
            let held: Vec<usize> = s.waiting.keys().copied().collect();
            if held.is_empty() {
                FIRST_WAIT + 41
            } else {
                held[i % held.len()]
            }
        }
    }
}

/// Put a taken thread back into a handed-out queue: `b` if it is one, else `a`.
fn requeue_to(s: &SchedSpec, a: usize, b: usize) -> usize {
    if s.waiting.contains_key(&b) {
        b
    } else {
        a
    }
}

/// `op` with its model CPUs replaced by real ones.
fn real_op(op: Op) -> Op {
    match op {
        Op::Start(p, c) => Op::Start(p, real(c)),
        Op::Yield(c) => Op::Yield(real(c)),
        Op::Idle(c) => Op::Idle(real(c)),
        Op::Block(c, q) => Op::Block(real(c), q),
        Op::BlockWokenEarly(c, q) => Op::BlockWokenEarly(real(c), q),
        Op::Flush(c) => Op::Flush(real(c)),
        Op::Sleep(c, d) => Op::Sleep(real(c), d),
        Op::Tick(c) => Op::Tick(real(c)),
        Op::Exit(c) => Op::Exit(real(c)),
        op => op,
    }
}

/// Blocking operations are for a running non-idle thread and a handed-out
/// wait queue; anything else is outside their contract (skipped).
fn can_block(s: &SchedSpec, cpu: usize, q: Option<usize>) -> bool {
    !s.is_idle(s.current[cpu]) && q.is_none_or(|q| s.waiting.contains_key(&q))
}

/// Apply `op` to the spec alone; the result as text. `tick_order` is the
/// implementation's wake-up order for a tick (`None`: the spec's own).
fn apply_model(s: &mut SchedSpec, op: Op, tick_order: Option<&[Tid]>) -> String {
    let op = real_op(op);
    match op {
        Op::Alloc => format!("{:?}", s.alloc_thread()),
        Op::Release(p) => {
            s.release_slot(thread_of(s, p));
            String::new()
        }
        Op::Start(p, c) => format!("{:?}", s.start(thread_of(s, p), c)),
        Op::Yield(c) => {
            s.yield_now(c);
            String::new()
        }
        Op::Idle(c) => format!("{}", s.idle_step(c)),
        Op::Block(c, q) => {
            let q = queue_of(s, q);
            if can_block(s, c, Some(q)) {
                s.block_on(c, q);
            }
            String::new()
        }
        Op::BlockWokenEarly(c, q) => {
            let q = queue_of(s, q);
            if can_block(s, c, Some(q)) {
                let me = s.current[c];
                s.block_on_then(c, q, |s| {
                    s.wake_thread(q, me);
                });
            }
            String::new()
        }
        Op::WakeOne(q) => format!("{:?}", s.wake_one(queue_of(s, q))),
        Op::WakeAll(q) => format!("{:?}", s.wake_all(queue_of(s, q))),
        Op::WakeThread(q, p) => format!("{:?}", s.wake_thread(queue_of(s, q), thread_of(s, p))),
        Op::TakeWake(q) => {
            let t = s.take(queue_of(s, q));
            t.inspect(|&t| s.make_runnable(t));
            format!("{t:?}")
        }
        Op::TakeHandoff(q) => {
            let t = s.take(queue_of(s, q));
            t.inspect(|&t| s.wake_handoff(real(0), t));
            format!("{t:?}")
        }
        Op::TakeRequeue(a, b) => {
            let (a, b) = (queue_of(s, a), queue_of(s, b));
            let t = s.take(a);
            t.inspect(|&t| s.requeue(requeue_to(s, a, b), t));
            format!("{t:?}")
        }
        Op::HandoffThenBlock(a, b) => {
            let (a, b) = (queue_of(s, a), queue_of(s, b));
            let t = s.take(a);
            t.inspect(|&t| s.wake_handoff(real(0), t));
            if can_block(s, real(0), Some(b)) {
                s.block_on(real(0), b);
            }
            format!("{t:?}")
        }
        Op::Flush(c) => {
            s.flush_handoff(c);
            String::new()
        }
        Op::Interrupt(p) => format!("{:?}", s.interrupt(thread_of(s, p))),
        Op::Sleep(c, d) => {
            if can_block(s, c, None) {
                s.sleep_until(c, s.ticks[c] + d);
            }
            String::new()
        }
        Op::Tick(c) => {
            let own = s.due(c);
            let ok = s.tick(c, tick_order.unwrap_or(&own));
            String::from(if ok { "woke the due sleepers" } else { "woke others than the due sleepers" })
        }
        Op::Exit(c) => {
            if can_block(s, c, None) {
                s.exit_current(c);
            }
            String::new()
        }
        Op::Reap(p) => format!("{:?}", s.reap(thread_of(s, p))),
        Op::AllocQueue => format!("{:?}", s.alloc_queue()),
        Op::FreeQueue(q) => format!("{:?}", s.free_queue(queue_of(s, q))),
    }
}

struct Ref;

impl ReferenceStateMachine for Ref {
    type State = SchedSpec;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<SchedSpec> {
        Just(spec()).boxed()
    }

    fn transitions(_: &SchedSpec) -> BoxedStrategy<Op> {
        op()
    }

    fn apply(mut s: SchedSpec, op: &Op) -> SchedSpec {
        apply_model(&mut s, *op, None);
        s
    }
}

fn spec() -> SchedSpec {
    SchedSpec::new(MAX_CPUS, MAX_THREADS, FIRST_WAIT..MAX_QUEUES)
}

/// Wakes `t` from `q` when dropped: a waker that was waiting for the lock
/// the blocking thread releases.
struct WakeOnDrop<'a>(&'a Scheduler, usize, Tid);

impl Drop for WakeOnDrop<'_> {
    fn drop(&mut self) {
        self.0.wake_thread(self.1, self.2);
    }
}

struct Sut {
    sched: Box<Scheduler>,
    /// The spec, following the scheduler's tick orders.
    model: SchedSpec,
}

fn snapshot(s: &Scheduler, q: usize) -> Vec<Tid> {
    let mut out = [Tid::MAX; MAX_THREADS + 1];
    let n = s.queues.snapshot(q, &mut out);
    let v: Vec<Tid> = out.iter().copied().take_while(|&t| t != Tid::MAX).collect();
    assert_eq!(v.len(), n, "queue {q}: links and count disagree");
    v
}

impl Sut {
    fn new(m: u8) -> Sut {
        let sched = Box::new(Scheduler::new());
        for c in 0..MAX_CPUS {
            sched.init_idle(c, 0);
        }
        sched.mutant.store(m, Ordering::Relaxed);
        Sut { sched, model: spec() }
    }

    fn step(&mut self, op: Op) -> Result<(), String> {
        let (s, m) = (&*self.sched, &mut self.model);
        let mut order = None;
        let model_op = op;
        let op = real_op(op);
        // Resolve picks and preconditions on the spec before the step.
        let got = match op {
            Op::Alloc => format!("{:?}", s.alloc_thread()),
            Op::Release(p) => {
                s.release_slot(thread_of(m, p));
                String::new()
            }
            Op::Start(p, c) => format!("{:?}", s.start(thread_of(m, p), c, 0, 0, 0)),
            Op::Yield(c) => {
                s.yield_now(c);
                String::new()
            }
            Op::Idle(c) => format!("{}", s.idle_step(c)),
            Op::Block(c, q) => {
                let q = queue_of(m, q);
                if can_block(m, c, Some(q)) {
                    s.block_on(c, q, ());
                }
                String::new()
            }
            Op::BlockWokenEarly(c, q) => {
                let q = queue_of(m, q);
                if can_block(m, c, Some(q)) {
                    s.block_on(c, q, WakeOnDrop(s, q, s.current(c)));
                }
                String::new()
            }
            Op::WakeOne(q) => format!("{:?}", s.wake_one(queue_of(m, q))),
            Op::WakeAll(q) => format!("{:?}", s.wake_all(queue_of(m, q))),
            Op::WakeThread(q, p) => format!("{:?}", s.wake_thread(queue_of(m, q), thread_of(m, p))),
            Op::TakeWake(q) => {
                let t = s.queues.dequeue(queue_of(m, q));
                t.inspect(|&t| s.make_runnable(t));
                format!("{t:?}")
            }
            Op::TakeHandoff(q) => {
                let t = s.queues.dequeue(queue_of(m, q));
                t.inspect(|&t| s.wake_handoff(t));
                format!("{t:?}")
            }
            Op::TakeRequeue(a, b) => {
                let (a, b) = (queue_of(m, a), queue_of(m, b));
                let t = s.queues.dequeue(a);
                t.inspect(|&t| s.queues.enqueue(requeue_to(m, a, b), t).unwrap());
                format!("{t:?}")
            }
            Op::HandoffThenBlock(a, b) => {
                let (a, b) = (queue_of(m, a), queue_of(m, b));
                let t = s.queues.dequeue(a);
                t.inspect(|&t| s.wake_handoff(t));
                // (Precondition on the spec as it will be after the wake-up:
                // the wake-up changes nothing about the caller.)
                if can_block(m, real(0), Some(b)) {
                    s.block_on(real(0), b, ());
                }
                format!("{t:?}")
            }
            Op::Flush(c) => {
                s.flush_handoff(c);
                String::new()
            }
            Op::Interrupt(p) => format!("{:?}", s.interrupt(thread_of(m, p))),
            Op::Sleep(c, d) => {
                if can_block(m, c, None) {
                    s.sleep_until(c, s.ticks(c) + d);
                }
                String::new()
            }
            Op::Tick(c) => {
                let before = snapshot(s, c).len();
                s.tick(c);
                order = Some(snapshot(s, c).get(before..).map(<[Tid]>::to_vec).unwrap_or_default());
                String::from("woke the due sleepers")
            }
            Op::Exit(c) => {
                if can_block(m, c, None) {
                    s.exit_current(c);
                }
                String::new()
            }
            Op::Reap(p) => format!("{:?}", s.reap(thread_of(m, p))),
            Op::AllocQueue => format!("{:?}", s.alloc_queue()),
            Op::FreeQueue(q) => format!("{:?}", s.free_queue(queue_of(m, q))),
        };
        let want = apply_model(m, model_op, order.as_deref());
        if got != want {
            return Err(format!("{op:?}: scheduler gave {got:?}, spec {want:?}"));
        }
        compare(s, m).map_err(|e| format!("after {op:?}: {e}"))?;
        invariants(s).map_err(|e| format!("after {op:?}: {e}"))?;
        m.check().map_err(|e| format!("after {op:?}: spec: {e}"))
    }
}

/// Where the implementation holds `t`, in the spec's terms. (The hand-off
/// slot cannot be read: a Ready thread in no queue is taken to be there,
/// and `invariants` checks there is at most one per CPU.)
fn where_impl(s: &Scheduler, t: Tid) -> Option<Where> {
    match s.queues.home(t) {
        Some(q) if q < MAX_CPUS => Some(Where::Ready(q)),
        Some(q) if q < 2 * MAX_CPUS => Some(Where::Sleep(q - MAX_CPUS)),
        Some(q) => Some(Where::Wait(q)),
        None if s.state(t) == State::Ready && (t as usize) >= MAX_CPUS => Some(Where::Handoff(s.home_cpu(t))),
        None => None,
    }
}

/// Every observable of the scheduler against the spec.
fn compare(s: &Scheduler, m: &SchedSpec) -> Result<(), String> {
    for t in 0..MAX_THREADS as Tid {
        let ti = t as usize;
        if s.state(t) != m.state[ti] {
            return Err(format!("thread {t}: {:?}, spec {:?}", s.state(t), m.state[ti]));
        }
        if m.state[ti] != State::Free && m.state[ti] != State::Blocked && s.home_cpu(t) != m.home[ti] {
            return Err(format!("thread {t}: home CPU {}, spec {}", s.home_cpu(t), m.home[ti]));
        }
        if where_impl(s, t) != m.where_is(t) {
            return Err(format!("thread {t}: in {:?}, spec {:?}", where_impl(s, t), m.where_is(t)));
        }
    }
    for c in 0..MAX_CPUS {
        if s.current(c) != m.current[c] {
            return Err(format!("CPU {c} runs {}, spec {}", s.current(c), m.current[c]));
        }
        let (ready, want) = (snapshot(s, c), Vec::from(m.ready[c].clone()));
        // (The hand-off slot: compared through where_impl and has_ready.)
        if ready != want || s.has_ready(c) != m.has_ready(c) {
            return Err(format!("CPU {c}: ready {ready:?}, spec {want:?}"));
        }
        if s.ticks(c) != m.ticks[c] {
            return Err(format!("CPU {c}: tick {}, spec {}", s.ticks(c), m.ticks[c]));
        }
        let mut sleeping = snapshot(s, MAX_CPUS + c);
        sleeping.sort_unstable();
        let want: Vec<Tid> = m.sleeping[c].keys().copied().collect();
        if sleeping != want || s.has_sleepers(c) != m.has_sleepers(c) {
            return Err(format!("CPU {c}: sleepers {sleeping:?}, spec {want:?}"));
        }
    }
    for (&q, w) in &m.waiting {
        let (got, want) = (snapshot(s, q), Vec::from(w.clone()));
        if got != want {
            return Err(format!("wait queue {q}: {got:?}, spec {want:?}"));
        }
    }
    if s.queues_in_use() != m.queues_in_use() {
        return Err(format!("{} wait queues in use, spec {}", s.queues_in_use(), m.queues_in_use()));
    }
    Ok(())
}

/// The layer's invariants, read from the implementation alone.
fn invariants(s: &Scheduler) -> Result<(), String> {
    for c in 0..MAX_CPUS {
        let idle = c as Tid;
        if s.state(idle) != State::Running || s.queues.home(idle).is_some() {
            return Err(format!("idle thread {c}: {:?}, queued in {:?}", s.state(idle), s.queues.home(idle)));
        }
        let cur = s.current(c);
        if s.state(cur) != State::Running || s.home_cpu(cur) != c {
            return Err(format!("CPU {c} runs {cur}: {:?}, home CPU {}", s.state(cur), s.home_cpu(cur)));
        }
        for t in snapshot(s, c) {
            if s.state(t) != State::Ready || s.home_cpu(t) != c {
                return Err(format!("thread {t} in CPU {c}'s ready queue: {:?}, home CPU {}", s.state(t), s.home_cpu(t)));
            }
        }
    }
    let mut handoffs = [0; MAX_CPUS];
    for t in MAX_CPUS as Tid..MAX_THREADS as Tid {
        let on = (0..MAX_CPUS).filter(|&c| s.current(c) == t).count();
        let home = s.queues.home(t);
        if s.state(t) == State::Ready && home.is_none() {
            // In its CPU's hand-off slot: one at most, and the CPU knows.
            let c = s.home_cpu(t);
            handoffs[c] += 1;
            if handoffs[c] > 1 || !s.has_ready(c) {
                return Err(format!("thread {t}: Ready in no queue, CPU {c} has {} such, has_ready {}", handoffs[c], s.has_ready(c)));
            }
        }
        let ok = match s.state(t) {
            State::Ready => home.is_none_or(|q| q == s.home_cpu(t)),
            State::Running => on == 1 && s.current(s.home_cpu(t)) == t && home.is_none(),
            State::Blocked => home.is_none_or(|q| q >= MAX_CPUS),
            State::Free | State::Zombie => home.is_none(),
        };
        if !ok || (on > 0 && s.state(t) != State::Running) {
            return Err(format!("thread {t}: {:?}, home CPU {}, queue {home:?}, current of {on} CPUs", s.state(t), s.home_cpu(t)));
        }
    }
    // Outside the driven CPUs nothing ever happens.
    for c in (0..MAX_CPUS).filter(|c| !driven().contains(c)) {
        if s.current(c) != c as Tid || s.has_ready(c) {
            return Err(format!("CPU {c} was touched"));
        }
    }
    Ok(())
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = Ref;

    fn init_test(_: &SchedSpec) -> Sut {
        Sut::new(0)
    }

    fn apply(mut sut: Sut, _: &SchedSpec, op: Op) -> Sut {
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
    #![proptest_config(Config { cases: cases(256), ..Config::default() })]
    #[test]
    fn scheduler_refines_spec(sequential 1..120 => Sut);
}

/// The refinement as a plain function with mutant `m` on: Err(counterexample).
fn run(m: u8, cases: u32) -> Result<(), String> {
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    runner
        .run(&Ref::sequential_strategy(1..120), |(_, ops, _)| {
            let mut sut = Sut::new(m);
            for &op in &ops {
                sut.step(op).map_err(TestCaseError::fail)?;
            }
            Ok(())
        })
        .map_err(|e| format!("{e}"))
}

#[test]
fn catches_start_keeping_stale_home() {
    let e = run(mutant::START_KEEPS_HOME, 500).expect_err("mutant not caught");
    assert!(e.contains("home CPU") || e.contains("ready"), "{e}");
}

#[test]
fn catches_block_releasing_the_lock_early() {
    // The waker that was waiting for the lock finds the thread not yet
    // queued: it sleeps on with nobody left to wake it.
    let e = run(mutant::BLOCK_RELEASES_EARLY, 500).expect_err("mutant not caught");
    assert!(e.contains("BlockWokenEarly"), "{e}");
}

#[test]
fn catches_hand_off_to_a_foreign_cpu() {
    let e = run(mutant::HANDOFF_IGNORES_HOME, 500).expect_err("mutant not caught");
    assert!(e.contains("Handoff"), "{e}");
}

/// The spec's reachable states satisfy its own invariants, and the op mix
/// reaches the interesting ones (over plain random runs of the spec).
#[test]
fn op_mix_reaches_every_state() {
    // A fixed seed: the same runs every time (coverage must not be luck).
    let mut runner = TestRunner::deterministic();
    let strat = Ref::sequential_strategy(1..120);
    let names = [
        "Free",
        "Ready",
        "Running",
        "Blocked",
        "Zombie",
        "two waiters in a queue",
        "a sleeper",
        "a tick woke a sleeper",
        "an early wake-up kept its CPU",
        "a hand-off",
        "a hand-off ran ahead of a ready queue",
    ];
    let mut seen = [false; 11];
    for _ in 0..128 {
        let (init, ops, _) = strat.new_tree(&mut runner).unwrap().current();
        let mut s = init;
        for op in ops {
            let before = s.clone();
            apply_model(&mut s, op, None);
            s.check().unwrap_or_else(|e| panic!("after {op:?}: {e}"));
            for t in MAX_CPUS..MAX_THREADS {
                seen[s.state[t] as usize] = true;
            }
            seen[5] |= s.waiting.values().any(|w| w.len() > 1);
            seen[6] |= s.sleeping.iter().any(|x| !x.is_empty());
            seen[7] |= matches!(real_op(op), Op::Tick(c) if !before.due(c).is_empty());
            seen[8] |= matches!(real_op(op), Op::BlockWokenEarly(c, _) if before.current[c] == s.current[c] && !s.is_idle(s.current[c]));
            seen[9] |= s.handoff.iter().any(|h| h.is_some());
            seen[10] |= (0..MAX_CPUS).any(|c| before.handoff[c].is_some() && s.current[c] == before.handoff[c].unwrap() && !before.ready[c].is_empty());
        }
    }
    let missed: Vec<_> = names.iter().zip(seen).filter(|(_, s)| !s).map(|(n, _)| n).collect();
    assert!(missed.is_empty(), "never reached: {missed:?}");
}
