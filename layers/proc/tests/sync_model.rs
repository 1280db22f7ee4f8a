//! Stateright: every interleaving of the proc layer's blocking algorithms,
//! for small programs of three threads, against the atomic spec
//! (`proc::spec::{ObjectsSpec, ChannelsSpec}`).
//!
//! The model transcribes the algorithm of `objects.rs` and `ipc.rs` with the
//! scheduler interface of `wait.rs`: each step of a thread is one critical
//! section of the implementation (everything done under one object lock,
//! including queueing itself with `Sched::block`), so the interleavings of
//! the steps are exactly the orders in which the implementation's critical
//! sections can run. The concrete state is what the implementation keeps:
//! mutex owner and queue, condition-variable queues, per channel the
//! senders' and receiver's queues and the waiting receiver's buffer, the
//! senders' requests, the result slots (`wait::Results`) and who is asleep.
//! Next to it runs the spec, stepped at each call's linearization point.
//!
//! Programs, as the demo programs (prodcons, pingpong) use the calls:
//! producer/consumer over one mutex and two condition variables (a ring of
//! one slot, three items) with a third thread taking the mutex twice
//! (~140k states); and request/reply, one server answering two clients
//! three calls each, every client on its own reply channel (~17k states).
//! The mutant runs use smaller bounds and stop at the first discoveries.
//!
//! Properties, in every reachable state:
//! - no deadlock: some thread can step, or all are finished;
//! - no lost wake-up: a thread asleep in the implementation is asleep in the
//!   spec too (its wake-up was not consumed by a signal or sender that found
//!   nobody to wake);
//! - every call's result, every wake-up (who, with what) agrees with the spec;
//! - FIFO: the mutex is acquired in the order of the lock calls' arrival;
//!   senders are served in the order they arrived;
//! - mutual exclusion, and the programs' own checks (every item consumed
//!   once, in order; every reply right);
//! - and some states exist where the interesting things happen (a hand-off,
//!   a signalled waiter, two senders waiting, a waiting receiver).
//!
//! Teeth: four mutants of the algorithm must each be caught: `cv_wait`
//! dropping the condition variable's lock before queueing (lost wake-up),
//! unlock waking the oldest waiter without handing it the mutex (barging,
//! not FIFO), `recv` dropping the channel's lock before queueing (lost
//! wake-up), and `recv` serving the newest sender.

use abi::Error;
use proc::spec::{ChannelsSpec, ObjectsSpec, Step, Wake};
use stateright::{Checker, HasDiscoveries, Model, Property};
use std::collections::VecDeque;
use thread::Tid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Mutant {
    None,
    /// `cv_wait` releases the CV's lock, then queues itself under it again.
    CvWaitGap,
    /// Unlock wakes the oldest waiter but leaves the mutex free; the waiter
    /// tries again.
    NoHandOff,
    /// `recv` publishes its buffer, releases the channel's lock, then queues.
    RecvGap,
    /// `recv` takes the newest waiting sender.
    NewestSender,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Cond {
    Full,
    Empty,
}

/// The programs' instructions. One mutex (0), two CVs, channel `c` owned
/// by thread `c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Instr {
    Lock,
    Unlock,
    /// `while cond { cv_wait(cv, mutex) }`
    WaitWhile(Cond, u8),
    Signal(u8),
    Put(u8),
    Take,
    Send(u8, u8),
    Recv(u8),
    /// Receive the reply to the last message sent, and check it.
    RecvReply(u8),
    /// Answer the last message received (`msg + 10`), on its sender's channel.
    Reply,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Wait {
    Mutex { relock: bool },
    Cv,
    Send,
    Recv { reply: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    /// About to run `program[pc]`.
    Run,
    /// About to try the mutex (`relock`: inside `cv_wait`, after the
    /// signal; `retry`: after a wake-up without hand-off).
    Lock { relock: bool, retry: bool },
    /// In a queue, asleep unless `Conc::asleep` says it was woken.
    Sleeping(Wait),
    /// A mutant's second half: queue itself now.
    GapCv(u8),
    GapRecv(u8, bool),
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Th {
    pc: u8,
    phase: Phase,
    /// Between acquiring the mutex and releasing it.
    in_cs: bool,
    /// Last message received: (sender thread, message).
    last: Option<(u8, u8)>,
    /// Last message sent.
    sent: u8,
}

/// What the implementation keeps.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Conc {
    owner: Option<u8>,
    mq: VecDeque<u8>,
    cvq: [VecDeque<u8>; 2],
    senders: Vec<VecDeque<u8>>,
    receiving: Vec<VecDeque<u8>>,
    waiting_receiver: Vec<Option<u8>>,
    /// What each blocked sender offers.
    requests: Vec<Option<u8>>,
    /// `wait::Results`: None is PENDING.
    results: Vec<Option<(Result<u64, Error>, u64)>>,
    asleep: Vec<bool>,
    /// Each thread's receive buffer: (sender thread, message).
    inbox: Vec<Option<(u8, u8)>>,
    /// The data the mutex guards: a ring.
    buf: VecDeque<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    th: Vec<Th>,
    c: Conc,
    objs: ObjectsSpec,
    chans: ChannelsSpec,
    /// Asleep according to the spec, and the wake-up it delivered.
    spec_asleep: Vec<bool>,
    spec_res: Vec<Option<Wake>>,
    // Ghosts.
    m_arrivals: Vec<u8>,
    m_acquired: Vec<u8>,
    c_arrivals: Vec<Vec<u8>>,
    c_served: Vec<Vec<u8>>,
    taken: Vec<u8>,
    /// The first disagreement with the spec.
    disagree: Option<String>,
    exclusion_broken: bool,
    bad_reply: bool,
    seen_handoff: bool,
    seen_signal: bool,
    seen_two_senders: bool,
    seen_waiting_receiver: bool,
}

struct Sync {
    programs: Vec<Vec<Instr>>,
    /// Items the consumer must get, in order (prodcons).
    items: Vec<u8>,
    cap: usize,
    mutant: Mutant,
}

fn pid(t: u8) -> u32 {
    t as u32 + 1
}

/// A call's outcome for its caller, as the spec's `Step` says it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Done(Result<(u64, u64), Error>),
    Blocked,
}

fn out1(s: Step<u64>) -> Out {
    match s {
        Step::Done(r) => Out::Done(r.map(|v| (v, 0))),
        Step::Blocked => Out::Blocked,
    }
}

fn out2(s: Step<(u64, u64)>) -> Out {
    match s {
        Step::Done(r) => Out::Done(r),
        Step::Blocked => Out::Blocked,
    }
}

impl State {
    fn note(&mut self, what: String) {
        self.disagree.get_or_insert(what);
    }

    /// Compare a step's outcome and wake-ups with the spec's and book the spec's.
    fn agree(&mut self, i: u8, what: &str, conc: (Out, Vec<Wake>), spec: (Out, Vec<Wake>)) {
        if conc != spec {
            self.note(format!("thread {i} {what}: implementation {conc:?}, spec {spec:?}"));
        }
        let (out, wakes) = spec;
        if out == Out::Blocked {
            self.spec_asleep[i as usize] = true;
        }
        for w in wakes {
            self.spec_asleep[w.tid as usize] = false;
            self.spec_res[w.tid as usize] = Some(w);
        }
    }

    /// The implementation wakes `t` with `r` (`Results::set` then `Sched::wake`).
    fn wake(&mut self, t: u8, r: Result<u64, Error>, second: u64) -> Wake {
        self.c.results[t as usize] = Some((r, second));
        self.c.asleep[t as usize] = false;
        Wake { tid: t as Tid, result: r, second }
    }

    /// `Sched::block`: arm the result slot, queue (done by the caller), sleep.
    fn sleep(&mut self, i: u8, w: Wait) {
        self.c.results[i as usize] = None;
        self.c.asleep[i as usize] = true;
        self.th[i as usize].phase = Phase::Sleeping(w);
    }

    /// `Objects::hand_on`.
    fn hand_on(&mut self, mutant: Mutant) -> Vec<Wake> {
        match self.c.mq.pop_front() {
            Some(t) => {
                self.seen_handoff = true;
                if mutant == Mutant::NoHandOff {
                    self.c.owner = None;
                } else {
                    self.c.owner = Some(t);
                    self.m_acquired.push(t);
                }
                vec![self.wake(t, Ok(0), 0)]
            }
            None => {
                self.c.owner = None;
                vec![]
            }
        }
    }

    fn advance(&mut self, i: u8, len: usize) {
        let th = &mut self.th[i as usize];
        th.pc += 1;
        th.phase = if th.pc as usize == len { Phase::Done } else { Phase::Run };
    }
}

impl Sync {
    /// Producer (items 1..=`items`), consumer, and a third thread that takes
    /// and releases the mutex `rounds` times; a ring of one slot.
    fn prodcons(mutant: Mutant, items: u8, rounds: usize) -> Sync {
        use Instr::*;
        let (nf, ne) = (0, 1);
        let produce = |v| [Lock, WaitWhile(Cond::Full, nf), Put(v), Signal(ne), Unlock];
        let consume = [Lock, WaitWhile(Cond::Empty, ne), Take, Signal(nf), Unlock];
        Sync {
            programs: vec![
                (1..=items).flat_map(produce).collect(),
                (0..items).flat_map(|_| consume).collect(),
                (0..rounds).flat_map(|_| [Lock, Unlock]).collect(),
            ],
            items: (1..=items).collect(),
            cap: 1,
            mutant,
        }
    }

    /// A server answering `calls[0]` calls of client 1 and `calls[1]` of
    /// client 2 (each on its own reply channel).
    fn request_reply(mutant: Mutant, calls: [u8; 2]) -> Sync {
        use Instr::*;
        let total = (calls[0] + calls[1]) as usize;
        let client = |c: u8, n: u8| (0..n).flat_map(|k| [Send(0, c + 2 * k), RecvReply(c)]).collect();
        Sync {
            programs: vec![(0..total).flat_map(|_| [Recv(0), Reply]).collect(), client(1, calls[0]), client(2, calls[1])],
            items: vec![],
            cap: 1,
            mutant,
        }
    }

    fn n(&self) -> usize {
        self.programs.len()
    }

    fn can_step(s: &State, i: usize) -> bool {
        match s.th[i].phase {
            Phase::Done => false,
            Phase::Sleeping(_) => !s.c.asleep[i],
            _ => true,
        }
    }

    /// The mutex lock attempt (`Objects::mutex_lock` up to its `block`).
    fn lock(&self, s: &mut State, i: u8, relock: bool, retry: bool) {
        let iu = i as usize;
        let spec = if retry {
            None // the spec finished this call already (it handed the mutex over)
        } else {
            s.m_arrivals.push(i);
            Some(out1(s.objs.mutex_lock(i as Tid, 0)))
        };
        let conc = match s.c.owner {
            None => {
                s.c.owner = Some(i);
                s.m_acquired.push(i);
                s.th[iu].in_cs = true;
                if relock {
                    s.th[iu].phase = Phase::Run;
                } else {
                    s.advance(i, self.programs[iu].len());
                }
                Out::Done(Ok((0, 0)))
            }
            Some(o) if o == i => Out::Done(Err(Error::WouldDeadlock)),
            Some(_) => {
                s.c.mq.push_back(i);
                s.sleep(i, Wait::Mutex { relock });
                Out::Blocked
            }
        };
        if let Some(spec) = spec {
            s.agree(i, "mutex_lock", (conc, vec![]), (spec, vec![]));
        }
    }

    /// `Channels::send` up to its `block`.
    fn send(&self, s: &mut State, i: u8, ch: u8, msg: u8) {
        let (c, iu) = (ch as usize, i as usize);
        s.th[iu].sent = msg;
        s.c_arrivals[c].push(i);
        let (st, sw) = s.chans.send(i as Tid, pid(i), ch as u64, &[msg], false);
        let spec = (out1(st), sw.into_iter().collect());
        let conc = match s.c.waiting_receiver[c] {
            Some(r) => {
                s.c.inbox[r as usize] = Some((i, msg));
                s.c.waiting_receiver[c] = None;
                s.c_served[c].push(i);
                let mut ws = vec![];
                // The receiver is the only thread in its queue.
                if s.c.receiving[c].pop_front() == Some(r) {
                    ws.push(s.wake(r, Ok(1), pid(i) as u64));
                }
                s.advance(i, self.programs[iu].len());
                (Out::Done(Ok((0, 0))), ws)
            }
            None => {
                s.c.requests[iu] = Some(msg);
                s.c.senders[c].push_back(i);
                s.seen_two_senders |= s.c.senders[c].len() >= 2;
                s.sleep(i, Wait::Send);
                (Out::Blocked, vec![])
            }
        };
        s.agree(i, "send", conc, spec);
    }

    /// `Channels::recv` up to its `block`.
    fn recv(&self, s: &mut State, i: u8, ch: u8, reply: bool) {
        let (c, iu) = (ch as usize, i as usize);
        let (st, sw) = s.chans.recv(i as Tid, pid(i), ch as u64, 1, false);
        let spec = (out2(st), sw);
        let sender = if self.mutant == Mutant::NewestSender { s.c.senders[c].pop_back() } else { s.c.senders[c].pop_front() };
        let conc = match sender {
            Some(t) => {
                let msg = s.c.requests[t as usize].expect("a sender records its request before queueing");
                s.c.inbox[iu] = Some((t, msg));
                s.c_served[c].push(t);
                let w = s.wake(t, Ok(0), 0);
                self.received(s, i, reply);
                (Out::Done(Ok((1, pid(t) as u64))), vec![w])
            }
            None => {
                s.c.waiting_receiver[c] = Some(i);
                s.seen_waiting_receiver = true;
                if self.mutant == Mutant::RecvGap {
                    s.c.results[iu] = None;
                    s.th[iu].phase = Phase::GapRecv(ch, reply);
                } else {
                    s.c.receiving[c].push_back(i);
                    s.sleep(i, Wait::Recv { reply });
                }
                (Out::Blocked, vec![])
            }
        };
        s.agree(i, "recv", conc, spec);
    }

    /// A receive completed: the message is in our buffer.
    fn received(&self, s: &mut State, i: u8, reply: bool) {
        let iu = i as usize;
        let got = s.c.inbox[iu];
        s.th[iu].last = got;
        if reply && got != Some((0, s.th[iu].sent + 10)) {
            s.bad_reply = true;
        }
        s.advance(i, self.programs[iu].len());
    }

    fn step(&self, s: &mut State, i: u8) {
        let iu = i as usize;
        match s.th[iu].phase {
            Phase::Done => {}
            Phase::Sleeping(w) => {
                // Woken: read the result slot, check it is what the spec delivered.
                let r = s.c.results[iu];
                let want = s.spec_res[iu].take().map(|w| (w.result, w.second));
                if r != want {
                    s.note(format!("thread {i} woke with {r:?}, spec {want:?}"));
                }
                match w {
                    Wait::Mutex { relock } => {
                        if self.mutant == Mutant::NoHandOff {
                            s.th[iu].phase = Phase::Lock { relock, retry: true };
                        } else {
                            s.th[iu].in_cs = true;
                            if relock {
                                s.th[iu].phase = Phase::Run;
                            } else {
                                s.advance(i, self.programs[iu].len());
                            }
                        }
                    }
                    Wait::Cv => {
                        s.seen_signal = true;
                        s.th[iu].phase = Phase::Lock { relock: true, retry: false };
                    }
                    Wait::Send => {
                        s.c.requests[iu] = None;
                        s.advance(i, self.programs[iu].len());
                    }
                    Wait::Recv { reply } => self.received(s, i, reply),
                }
            }
            Phase::GapCv(cv) => {
                s.c.cvq[cv as usize].push_back(i);
                s.sleep(i, Wait::Cv);
            }
            Phase::GapRecv(ch, reply) => {
                // Published but not queued: a sender found nobody to wake.
                s.c.receiving[ch as usize].push_back(i);
                s.c.asleep[iu] = true;
                s.th[iu].phase = Phase::Sleeping(Wait::Recv { reply });
            }
            Phase::Lock { relock, retry } => self.lock(s, i, relock, retry),
            Phase::Run => match self.programs[iu][s.th[iu].pc as usize] {
                Instr::Lock => self.lock(s, i, false, false),
                Instr::Unlock => {
                    s.th[iu].in_cs = false;
                    let (r, sw) = s.objs.mutex_unlock(i as Tid, 0);
                    let conc = if s.c.owner == Some(i) { (Out::Done(Ok((0, 0))), s.hand_on(self.mutant)) } else { (Out::Done(Err(Error::NotOwner)), vec![]) };
                    s.agree(i, "mutex_unlock", conc, (Out::Done(r.map(|v| (v, 0))), sw.into_iter().collect()));
                    s.advance(i, self.programs[iu].len());
                }
                Instr::WaitWhile(cond, cv) => {
                    let holds = match cond {
                        Cond::Full => s.c.buf.len() == self.cap,
                        Cond::Empty => s.c.buf.is_empty(),
                    };
                    if s.c.owner != Some(i) {
                        s.exclusion_broken = true;
                    }
                    if !holds {
                        s.advance(i, self.programs[iu].len());
                        return;
                    }
                    // cv_wait: under the CV's lock, hand the mutex on, then queue.
                    let (st, sw) = s.objs.cv_wait(i as Tid, cv as u64, 0);
                    s.th[iu].in_cs = false;
                    let ws = s.hand_on(self.mutant);
                    if self.mutant == Mutant::CvWaitGap {
                        s.c.results[iu] = None;
                        s.th[iu].phase = Phase::GapCv(cv);
                    } else {
                        s.c.cvq[cv as usize].push_back(i);
                        s.sleep(i, Wait::Cv);
                    }
                    s.agree(i, "cv_wait", (Out::Blocked, ws), (out1(st), sw.into_iter().collect()));
                }
                Instr::Signal(cv) => {
                    let (r, sw) = s.objs.cv_signal(cv as u64);
                    let ws: Vec<Wake> = match s.c.cvq[cv as usize].pop_front() {
                        Some(t) => vec![s.wake(t, Ok(0), 0)],
                        None => vec![],
                    };
                    let n = ws.len() as u64;
                    s.agree(i, "cv_signal", (Out::Done(Ok((n, 0))), ws), (Out::Done(r.map(|v| (v, 0))), sw.into_iter().collect()));
                    s.advance(i, self.programs[iu].len());
                }
                Instr::Put(v) => {
                    s.exclusion_broken |= s.c.owner != Some(i) || !s.th[iu].in_cs;
                    s.c.buf.push_back(v);
                    s.advance(i, self.programs[iu].len());
                }
                Instr::Take => {
                    s.exclusion_broken |= s.c.owner != Some(i) || !s.th[iu].in_cs;
                    match s.c.buf.pop_front() {
                        Some(v) => s.taken.push(v),
                        None => s.exclusion_broken = true,
                    }
                    s.advance(i, self.programs[iu].len());
                }
                Instr::Send(ch, msg) => self.send(s, i, ch, msg),
                Instr::Recv(ch) => self.recv(s, i, ch, false),
                Instr::RecvReply(ch) => self.recv(s, i, ch, true),
                Instr::Reply => {
                    let (from, msg) = s.th[iu].last.expect("a request was received");
                    self.send(s, i, from, msg + 10);
                }
            },
        }
    }
}

impl Model for Sync {
    type State = State;
    type Action = u8;

    fn init_states(&self) -> Vec<State> {
        let n = self.n();
        let mut objs = ObjectsSpec::new(4);
        objs.mutex_create(100).unwrap();
        objs.cv_create(100).unwrap();
        objs.cv_create(100).unwrap();
        let mut chans = ChannelsSpec::new(n);
        for t in 0..n as u8 {
            assert_eq!(chans.create(pid(t), t as u64), Ok(t as u64));
        }
        vec![State {
            th: (0..n).map(|_| Th { pc: 0, phase: Phase::Run, in_cs: false, last: None, sent: 0 }).collect(),
            c: Conc {
                owner: None,
                mq: VecDeque::new(),
                cvq: [VecDeque::new(), VecDeque::new()],
                senders: vec![VecDeque::new(); n],
                receiving: vec![VecDeque::new(); n],
                waiting_receiver: vec![None; n],
                requests: vec![None; n],
                results: vec![None; n],
                asleep: vec![false; n],
                inbox: vec![None; n],
                buf: VecDeque::new(),
            },
            objs,
            chans,
            spec_asleep: vec![false; n],
            spec_res: vec![None; n],
            m_arrivals: vec![],
            m_acquired: vec![],
            c_arrivals: vec![vec![]; n],
            c_served: vec![vec![]; n],
            taken: vec![],
            disagree: None,
            exclusion_broken: false,
            bad_reply: false,
            seen_handoff: false,
            seen_signal: false,
            seen_two_senders: false,
            seen_waiting_receiver: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<u8>) {
        actions.extend((0..self.n() as u8).filter(|&i| Self::can_step(s, i as usize)));
    }

    fn next_state(&self, s: &State, i: u8) -> Option<State> {
        let mut n = s.clone();
        self.step(&mut n, i);
        Some(n)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::<Self>::always("no deadlock", |m, s| {
                s.th.iter().all(|t| t.phase == Phase::Done) || (0..m.n()).any(|i| Self::can_step(s, i))
            }),
            Property::<Self>::always("no lost wake-up", |_, s| {
                (0..s.th.len()).all(|i| !(matches!(s.th[i].phase, Phase::Sleeping(_)) && s.c.asleep[i]) || s.spec_asleep[i])
            }),
            Property::<Self>::always("agrees with the spec", |_, s| s.disagree.is_none()),
            Property::<Self>::always("mutex acquired in arrival order", |_, s| s.m_arrivals.starts_with(&s.m_acquired)),
            Property::<Self>::always("senders served in arrival order", |_, s| {
                s.c_arrivals.iter().zip(&s.c_served).all(|(a, b)| a.starts_with(b))
            }),
            Property::<Self>::always("mutual exclusion", |_, s| {
                !s.exclusion_broken && s.th.iter().enumerate().all(|(i, t)| !t.in_cs || s.c.owner == Some(i as u8))
            }),
            Property::<Self>::always("items taken once, in order; replies right", |m, s| {
                let done = s.th.iter().all(|t| t.phase == Phase::Done);
                m.items.starts_with(&s.taken) && (!done || s.taken == m.items) && !s.bad_reply
            }),
            Property::<Self>::sometimes("all finish", |_, s| s.th.iter().all(|t| t.phase == Phase::Done)),
            Property::<Self>::sometimes("something waited", |_, s| {
                s.seen_handoff || s.seen_waiting_receiver
            }),
            Property::<Self>::sometimes("the scenario's hard case", |_, s| {
                // prodcons: a hand-off and a signalled waiter; IPC: two
                // senders waiting at once and a waiting receiver.
                (s.seen_handoff && s.seen_signal) || (s.seen_two_senders && s.seen_waiting_receiver)
            }),
        ]
    }
}

/// Exhaustive check of a correct scenario.
fn check_all(model: Sync, name: &str) {
    let t0 = std::time::Instant::now();
    let checker = model.checker().target_state_count(2_000_000).spawn_bfs().join();
    checker.assert_properties();
    let n = checker.unique_state_count();
    println!("{name}: {n} states, {:?}", t0.elapsed());
    assert!(n > 100, "suspiciously few states: {n}");
    assert!(checker.state_count() < 2_000_000, "state cap reached: not exhaustive");
}

#[test]
fn prodcons_model_check() {
    check_all(Sync::prodcons(Mutant::None, 3, 2), "prodcons");
}

#[test]
fn request_reply_model_check() {
    check_all(Sync::request_reply(Mutant::None, [3, 3]), "request/reply");
}

/// Check `model` until all of `wanted` are discovered; return those found.
fn catches(model: Sync, wanted: &[&'static str]) -> Vec<&'static str> {
    let checker = model.checker().finish_when(HasDiscoveries::AllOf(wanted.iter().copied().collect())).spawn_bfs().join();
    wanted.iter().copied().filter(|w| checker.discovery(w).is_some()).collect()
}

#[test]
fn catches_cv_wait_releasing_before_queueing() {
    let wanted = ["no lost wake-up", "no deadlock", "agrees with the spec"];
    assert_eq!(catches(Sync::prodcons(Mutant::CvWaitGap, 2, 2), &wanted), wanted);
}

#[test]
fn catches_unlock_without_hand_off() {
    let wanted = ["mutex acquired in arrival order", "agrees with the spec"];
    assert_eq!(catches(Sync::prodcons(Mutant::NoHandOff, 2, 2), &wanted), wanted);
}

#[test]
fn catches_recv_releasing_before_queueing() {
    let wanted = ["no lost wake-up", "no deadlock", "agrees with the spec"];
    assert_eq!(catches(Sync::request_reply(Mutant::RecvGap, [2, 1]), &wanted), wanted);
}

#[test]
fn catches_newest_sender_first() {
    let wanted = ["senders served in arrival order", "agrees with the spec"];
    assert_eq!(catches(Sync::request_reply(Mutant::NewestSender, [2, 1]), &wanted), wanted);
}

