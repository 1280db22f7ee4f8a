//! The allocation table refines `spec::Frames`.
//!
//! The reference state machine is the model itself (making its own choices:
//! lowest free frame). The system under test is the real table together with
//! a second copy of the model that follows the table's choices (the frames it
//! handed out, read from the allocation trace, are the model's witnesses).
//! After every operation, hostile ones included, the results must be equal
//! (same `Ok` value or same error) and so must every frame's owner and share
//! count, the free count, and the table's internal integrity.

use super::{mutant, with_mutant, Mutant, EXCLUSIONS, REGIONS};
use crate::container::ContainerId;
use crate::frames::{AllocTable, Frame, Owner};
use crate::spec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use std::boxed::Box;
use std::format;
use std::string::String;
use std::vec::Vec;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Who {
    Kernel,
    C(u16),
    Free,
    Reserved,
}

impl Who {
    fn owner(self) -> Owner {
        match self {
            Who::Kernel => Owner::Kernel,
            Who::C(c) => Owner::Container(ContainerId::new(c)),
            Who::Free => Owner::Free,
            Who::Reserved => Owner::Reserved,
        }
    }
}

/// A frame: the i-th held frame (mod their number), or any frame number.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pick {
    Held(usize),
    Raw(u64),
}

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Alloc(Who),
    /// Free; `None`: as the frame's real owner.
    Free(Pick, Option<Who>),
    GetRef(Pick),
    PutRef(Pick, Option<Who>),
    AllocRun { n: usize, align: usize, who: Who },
    FreeRun { at: Pick, n: usize, who: Option<Who> },
    Drain,
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![4 => Just(Who::Kernel), 6 => (0u16..3).prop_map(Who::C), 1 => Just(Who::Free), 1 => Just(Who::Reserved)]
}

fn whose() -> impl Strategy<Value = Option<Who>> {
    prop_oneof![6 => Just(None), 2 => who().prop_map(Some)]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![8 => (0usize..64).prop_map(Pick::Held), 2 => (0u64..600).prop_map(Pick::Raw)]
}

fn op() -> BoxedStrategy<Op> {
    let run_len = prop_oneof![8 => 1usize..=8, 1 => 0usize..=70];
    let align = prop_oneof![Just(1usize), Just(2), Just(4), Just(16), Just(64), Just(0), Just(3), Just(1 << 40)];
    prop_oneof![
        8 => who().prop_map(Op::Alloc),
        6 => (pick(), whose()).prop_map(|(p, w)| Op::Free(p, w)),
        2 => pick().prop_map(Op::GetRef),
        3 => (pick(), whose()).prop_map(|(p, w)| Op::PutRef(p, w)),
        2 => (run_len.clone(), align, who()).prop_map(|(n, align, who)| Op::AllocRun { n, align, who }),
        2 => (pick(), run_len, whose()).prop_map(|(at, n, who)| Op::FreeRun { at, n, who }),
        1 => Just(Op::Drain),
    ]
    .boxed()
}

fn frame_of(s: &spec::Frames, p: Pick) -> Frame {
    let held: Vec<u64> = s
        .frames
        .iter()
        .filter(|(_, (o, _))| matches!(o, Owner::Kernel | Owner::Container(_)))
        .map(|(&p, _)| p)
        .collect();
    match p {
        Pick::Held(_) if held.is_empty() => Frame::from_pfn(0),
        Pick::Held(i) => Frame::from_pfn(held[i % held.len()]),
        Pick::Raw(pfn) => Frame::from_pfn(pfn),
    }
}

fn owner_for(s: &spec::Frames, f: Frame, w: Option<Who>) -> Owner {
    match (w, s.owner(f)) {
        (Some(w), _) => w.owner(),
        (None, Ok(o @ (Owner::Kernel | Owner::Container(_)))) => o,
        (None, _) => Owner::Kernel,
    }
}

/// Apply `op` to the model alone; the result as text.
fn apply_model(s: &mut spec::Frames, op: &Op) -> String {
    match *op {
        Op::Alloc(w) => format!("{:?}", s.alloc(w.owner())),
        Op::Free(p, w) => {
            let f = frame_of(s, p);
            let o = owner_for(s, f, w);
            format!("{:?}", s.free(f, o))
        }
        Op::GetRef(p) => {
            let f = frame_of(s, p);
            format!("{:?}", s.get_ref(f))
        }
        Op::PutRef(p, w) => {
            let f = frame_of(s, p);
            let o = owner_for(s, f, w);
            format!("{:?}", s.put_ref(f, o))
        }
        Op::AllocRun { n, align, who } => format!("{:?}", s.alloc_contiguous(n, align, who.owner())),
        Op::FreeRun { at, n, who } => {
            let f = frame_of(s, at);
            let o = owner_for(s, f, who);
            format!("{:?}", s.free_contiguous(f, n, o))
        }
        Op::Drain => String::from("()"),
    }
}

pub(crate) struct Ref;

impl ReferenceStateMachine for Ref {
    type State = spec::Frames;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<spec::Frames> {
        Just(spec::Frames::new(&REGIONS, &EXCLUSIONS, 128).unwrap()).boxed()
    }

    fn transitions(_: &spec::Frames) -> BoxedStrategy<Op> {
        op()
    }

    fn apply(mut state: spec::Frames, op: &Op) -> spec::Frames {
        apply_model(&mut state, op);
        state
    }
}

pub(crate) struct Sut {
    table: &'static AllocTable<'static>,
    /// The model, following the table's choices.
    model: spec::Frames,
}

impl Sut {
    fn new(init: &spec::Frames) -> Sut {
        let mut t = AllocTable::new(super::storage(&REGIONS), &REGIONS, &EXCLUSIONS).unwrap();
        t.mutant = mutant();
        let table = Box::leak(Box::new(t));
        Sut { table, model: init.clone() }
    }

    /// Apply `op` to the table and the model and compare everything.
    fn step(&mut self, op: &Op) -> Result<(), String> {
        let (t, m) = (self.table, &mut self.model);
        t.start_trace();
        // Resolve picks on the model's state before the step (both agree on it).
        let got = match *op {
            Op::Alloc(w) => format!("{:?}", t.alloc(w.owner())),
            Op::Free(p, w) => {
                let f = frame_of(m, p);
                format!("{:?}", t.free(f, owner_for(m, f, w)))
            }
            Op::GetRef(p) => format!("{:?}", t.get_ref(frame_of(m, p))),
            Op::PutRef(p, w) => {
                let f = frame_of(m, p);
                format!("{:?}", t.put_ref(f, owner_for(m, f, w)))
            }
            Op::AllocRun { n, align, who } => format!("{:?}", t.alloc_contiguous(n, align, who.owner())),
            Op::FreeRun { at, n, who } => {
                let f = frame_of(m, at);
                format!("{:?}", t.free_contiguous(f, n, owner_for(m, f, who)))
            }
            Op::Drain => {
                t.drain_caches();
                String::from("()")
            }
        };
        m.picks = t.take_trace();
        let want = apply_model(m, op);
        if got != want {
            return Err(format!("{op:?}: table gave {got}, model {want}"));
        }
        if !m.picks.is_empty() {
            return Err(format!("{op:?}: table allocated {:?} more than the model", m.picks));
        }
        compare(t, m).map_err(|e| format!("after {op:?}: {e}"))
    }

    /// Give everything back; the table must be as it started.
    fn finish(&mut self) -> Result<(), String> {
        let held: Vec<_> = self.model.frames.iter().filter(|(_, (o, _))| *o != Owner::Free).map(|(&p, &s)| (p, s)).collect();
        for (pfn, (owner, refs)) in held {
            for _ in 0..refs {
                self.table.put_ref(Frame::from_pfn(pfn), owner).map_err(|e| format!("cleanup: {e}"))?;
            }
        }
        self.table.check_integrity()?;
        if self.table.free_frames() != self.table.total_frames() {
            return Err(format!("{} of {} frames free after cleanup", self.table.free_frames(), self.table.total_frames()));
        }
        Ok(())
    }
}

/// Every observable of the table against the model.
pub(crate) fn compare(t: &AllocTable<'_>, m: &spec::Frames) -> Result<(), String> {
    for pfn in 0..t.len() as u64 + 2 {
        let f = Frame::from_pfn(pfn);
        let (a, b) = (t.owner(f), m.owner(f));
        if a != b {
            return Err(format!("frame {pfn}: owner {a:?}, model {b:?}"));
        }
        let (a, b) = (t.refs(f), m.state(f).map(|s| s.1));
        if a != b {
            return Err(format!("frame {pfn}: refs {a:?}, model {b:?}"));
        }
    }
    if t.free_frames() != m.free_count() || t.total_frames() != m.total() {
        return Err(format!("free/total {}/{}, model {}/{}", t.free_frames(), t.total_frames(), m.free_count(), m.total()));
    }
    t.check_integrity().map_err(String::from)
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = Ref;

    fn init_test(init: &spec::Frames) -> Sut {
        Sut::new(init)
    }

    fn apply(mut sut: Sut, _: &spec::Frames, op: Op) -> Sut {
        if let Err(e) = sut.step(&op) {
            panic!("{e}");
        }
        sut
    }

    fn teardown(mut sut: Sut, _: spec::Frames) {
        if let Err(e) = sut.finish() {
            panic!("{e}");
        }
    }
}

prop_state_machine! {
    #![proptest_config(Config { cases: super::cases(512), ..Config::default() })]
    #[test]
    fn table_refines_model(sequential 1..100 => Sut);
}

/// Run the refinement as a plain function (no panics): Err(counterexample).
#[allow(clippy::result_large_err)] // proptest's error type
pub(crate) fn run(m: Mutant, cases: u32) -> Result<(), String> {
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    with_mutant(m, || {
        runner.run(&Ref::sequential_strategy(1..100), |(init, ops, _)| {
            let mut sut = Sut::new(&init);
            for op in &ops {
                sut.step(op).map_err(TestCaseError::fail)?;
            }
            sut.finish().map_err(TestCaseError::fail)
        })
    })
    .map_err(|e| format!("{e}"))
}

#[test]
fn catches_free_ignoring_owner() {
    let e = run(Mutant::FreeIgnoresOwner, 200).expect_err("mutant not caught");
    assert!(e.contains("table gave Ok(())"), "{e}");
}

#[test]
fn catches_run_left_on_free_list() {
    run(Mutant::RunSkipsUnlink, 200).expect_err("mutant not caught");
}

/// `AllocTable::new` against `spec::Frames::new` on random memory maps.
mod construction {
    use super::*;

    fn range() -> impl Strategy<Value = (u64, u64)> {
        (0u64..0x60_0000, prop_oneof![Just(0u64), 1u64..0x4_0000, 0x1000u64..0x20_0000])
    }

    proptest! {
        #![proptest_config(Config { cases: 64, ..Config::default() })]
        #[test]
        fn new_matches_model(regions in proptest::collection::vec(range(), 0..5),
                             exclusions in proptest::collection::vec(range(), 0..5)) {
            let t = AllocTable::new(super::super::storage(&regions), &regions, &exclusions).unwrap();
            let m = spec::Frames::new(&regions, &exclusions, t.stripe_span()).unwrap();
            prop_assert_eq!(t.len() as u64, m.len);
            compare(&t, &m).map_err(TestCaseError::fail)?;
        }
    }
}
