//! The container tree refines `spec::Containers` (no choices to witness: the
//! reference state machine is the model, compared with the tree directly).

use super::{mutant, with_mutant, Mutant};
use crate::container::{ContainerId, Containers};
use crate::spec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use std::boxed::Box;
use std::format;
use std::string::String;
use std::vec::Vec;

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Root(u64),
    Split(u16, u64),
    Destroy(u16),
    Charge(u16, u64),
    Uncharge(u16, u64),
    Remaining(u16),
    SetLimit(u16, u32),
    IsBelow(u16, u16),
}

fn id() -> impl Strategy<Value = u16> {
    prop_oneof![10 => 0u16..8, 1 => Just(1000u16), 1 => Just(5000u16)]
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![10 => 0u64..40, 1 => Just(u64::MAX)]
}

fn op() -> BoxedStrategy<Op> {
    prop_oneof![
        1 => (0u64..200).prop_map(Op::Root),
        6 => (id(), amount()).prop_map(|(p, q)| Op::Split(p, q)),
        4 => id().prop_map(Op::Destroy),
        4 => (id(), amount()).prop_map(|(c, n)| Op::Charge(c, n)),
        4 => (id(), amount()).prop_map(|(c, n)| Op::Uncharge(c, n)),
        1 => id().prop_map(Op::Remaining),
        2 => (id(), prop_oneof![4 => 0u32..4, 1 => Just(crate::container::NO_LIMIT)]).prop_map(|(c, l)| Op::SetLimit(c, l)),
        2 => (id(), id()).prop_map(|(c, a)| Op::IsBelow(c, a)),
    ]
    .boxed()
}

fn apply_model(m: &mut spec::Containers, op: &Op) -> String {
    let c = ContainerId::new;
    match *op {
        Op::Root(q) => format!("{:?}", m.root(q)),
        Op::Split(p, q) => format!("{:?}", m.split(c(p), q)),
        Op::Destroy(x) => format!("{:?}", m.destroy(c(x))),
        Op::Charge(x, n) => format!("{:?}", m.charge(c(x), n)),
        Op::Uncharge(x, n) => format!("{:?}", m.uncharge(c(x), n)),
        Op::Remaining(x) => format!("{:?}", m.remaining(c(x))),
        Op::SetLimit(x, l) => format!("{:?}", m.set_limit(c(x), l)),
        Op::IsBelow(x, a) => format!("{:?}", m.is_below(c(x), c(a))),
    }
}

fn apply_tree(t: &Containers, op: &Op) -> String {
    let c = ContainerId::new;
    match *op {
        Op::Root(q) => format!("{:?}", t.root(q)),
        Op::Split(p, q) => format!("{:?}", t.split(c(p), q)),
        Op::Destroy(x) => format!("{:?}", t.destroy(c(x))),
        Op::Charge(x, n) => format!("{:?}", t.charge(c(x), n)),
        Op::Uncharge(x, n) => format!("{:?}", t.uncharge(c(x), n)),
        Op::Remaining(x) => format!("{:?}", t.remaining(c(x))),
        Op::SetLimit(x, l) => format!("{:?}", t.set_limit(c(x), l)),
        Op::IsBelow(x, a) => format!("{:?}", t.is_below(c(x), c(a))),
    }
}

pub(crate) struct Ref;

impl ReferenceStateMachine for Ref {
    type State = spec::Containers;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<spec::Containers> {
        Just(spec::Containers::default()).boxed()
    }

    fn transitions(_: &spec::Containers) -> BoxedStrategy<Op> {
        op()
    }

    fn apply(mut state: spec::Containers, op: &Op) -> spec::Containers {
        apply_model(&mut state, op);
        state
    }
}

/// The tree's invariants: usage = own + Σ children's quotas ≤ quota, and the
/// children and descendant counts are right.
pub(crate) fn check_tree(t: &Containers) -> Result<(), String> {
    let mut all = Vec::new();
    t.for_each(|id, info| all.push((id, *info)));
    for &(id, info) in &all {
        let kids: Vec<_> = all.iter().filter(|(_, i)| i.parent == Some(id)).collect();
        let carved: u64 = kids.iter().map(|(_, i)| i.quota).sum();
        if info.usage != info.own + carved || info.usage > info.quota || kids.len() != info.children as usize {
            return Err(format!("{id:?} {info:?}: children quotas {carved}, {} children", kids.len()));
        }
        let below = all.iter().filter(|(d, _)| *d != id && above(&all, *d).contains(&id)).count();
        if below != info.descendants as usize {
            return Err(format!("{id:?} {info:?}: {below} containers below it"));
        }
    }
    Ok(())
}

/// The containers above `c`, its parent first.
fn above(all: &[(ContainerId, crate::ContainerInfo)], c: ContainerId) -> Vec<ContainerId> {
    let mut out = Vec::new();
    let mut at = all.iter().find(|(i, _)| *i == c).and_then(|(_, info)| info.parent);
    while let Some(p) = at {
        out.push(p);
        at = all.iter().find(|(i, _)| *i == p).and_then(|(_, info)| info.parent);
    }
    out
}

pub(crate) struct Sut {
    tree: &'static Containers,
    /// The model, stepped alongside (deterministic: it must stay equal to
    /// the reference state).
    model: spec::Containers,
}

impl Sut {
    fn new() -> Sut {
        let mut t = Box::new(Containers::new());
        t.mutant = mutant();
        Sut { tree: Box::leak(t), model: spec::Containers::default() }
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        let got = apply_tree(self.tree, op);
        let want = apply_model(&mut self.model, op);
        if got != want {
            return Err(format!("{op:?}: tree gave {got}, model {want}"));
        }
        for i in (0..10).chain([1023, 1024]) {
            let (a, b) = (self.tree.info(ContainerId::new(i)), self.model.info(ContainerId::new(i)));
            if a != b {
                return Err(format!("after {op:?}: C{i} is {a:?}, model {b:?}"));
            }
        }
        check_tree(self.tree).map_err(|e| format!("after {op:?}: {e}"))
    }
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = Ref;

    fn init_test(_: &spec::Containers) -> Sut {
        Sut::new()
    }

    fn apply(mut sut: Sut, after: &spec::Containers, op: Op) -> Sut {
        if let Err(e) = sut.step(&op) {
            panic!("{e}");
        }
        assert_eq!(&sut.model, after, "model copies diverged after {op:?}");
        sut
    }
}

prop_state_machine! {
    #![proptest_config(Config { cases: super::cases(512), ..Config::default() })]
    #[test]
    fn tree_refines_model(sequential 1..60 => Sut);
}

#[allow(clippy::result_large_err)] // proptest's error type
pub(crate) fn run(m: Mutant, cases: u32) -> Result<(), String> {
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    with_mutant(m, || {
        runner.run(&Ref::sequential_strategy(1..60), |(_, ops, _)| {
            let mut sut = Sut::new();
            for op in &ops {
                sut.step(op).map_err(TestCaseError::fail)?;
            }
            Ok(())
        })
    })
    .map_err(|e| format!("{e}"))
}

#[test]
fn catches_split_ignoring_quota() {
    let e = run(Mutant::SplitIgnoresQuota, 200).expect_err("mutant not caught");
    assert!(e.contains("QuotaExceeded"), "{e}");
}

#[test]
fn catches_limit_checked_at_the_parent_only() {
    let e = run(Mutant::LimitParentOnly, 4000).expect_err("mutant not caught");
    assert!(e.contains("LimitReached"), "{e}");
}
