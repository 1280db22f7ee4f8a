//! Containers + address spaces + shared memory refine `spec::System`.
//!
//! As in `frames_sm`, the reference state machine is the model making its own
//! choices, and the system under test is the real stack (allocation table,
//! container tree, three address spaces over fake page-table memory, the
//! shared-memory table) with a model copy that follows the table's choices.
//! After every operation: same result; same owner and share count of every
//! frame; same container infos; same address-space roots, table counts and
//! translations of every probed address; same shared-memory status and frame
//! for every pair; and the invariants (quota, conservation, page tables
//! charged to the space's container, kernel half shared). At the end
//! everything is torn down and the free count must be back where it started.

use super::frames_sm::{compare, Pick};
use super::{mutant, with_mutant, FakePhys, Mutant, EXCLUSIONS, REGIONS};
use crate::container::{ContainerId, Containers};
use crate::frames::{AllocTable, Frame, Owner};
use crate::paging::{AddressSpace, Mm, PhysAccess, Rights, ENTRIES, KERNEL_PML4_FIRST, MAX_PFN};
use crate::shm::{ShmTable, SpaceTable};
use crate::{spec, MmError};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use std::boxed::Box;
use std::format;
use std::string::String;
use std::vec::Vec;
use std::vec;

/// Processes (address-space slots); ids up to P are generated (P: unknown).
const P: usize = 3;

/// Probed virtual addresses: user pages in different tables, then hostile ones.
const VAS: [u64; 11] = [
    0x1000,
    0x2000,
    0x20_0000,          // another page table
    0x4000_0000,        // another page directory
    0x80_0000_0000,     // another PML4 slot
    0x7fff_ffff_f000,   // the last user page
    0x1800,             // misaligned
    0xffff_8000_0000_0000, // kernel half
    0x0000_8000_0000_0000, // non-canonical
    0xffff_ffff_ffff_f000, // kernel half
    0x7fff_0000_1000,
];

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Split { parent: u16, quota: u64 },
    DestroyC(u16),
    AllocPage(u16),
    /// Free a data page; `None`: as its real owner.
    FreePage { c: Option<u16>, f: Pick },
    NewSpace { pid: usize, c: u16 },
    Map { pid: usize, va: usize, f: Pick, rights: Rights },
    Unmap { pid: usize, va: usize },
    Protect { pid: usize, va: usize, rights: Rights },
    Offer { me: usize, peer: usize, va: usize },
    Revoke { me: usize, peer: usize },
    Exit(usize),
}

/// Mostly live containers (from the reference state), sometimes a dead or absent one.
fn cid(m: &spec::System) -> BoxedStrategy<u16> {
    let live: Vec<u16> = m.containers.nodes.keys().copied().collect();
    prop_oneof![10 => proptest::sample::select(live), 1 => 0u16..8, 1 => Just(900u16)].boxed()
}

/// Mostly processes with a space, sometimes any id, sometimes an unknown one.
fn pid(m: &spec::System) -> BoxedStrategy<usize> {
    let live: Vec<usize> = m.spaces.keys().copied().collect();
    if live.is_empty() {
        return prop_oneof![10 => 0..P, 1 => Just(P)].boxed();
    }
    prop_oneof![10 => proptest::sample::select(live), 3 => 0..P, 1 => Just(P)].boxed()
}

fn va() -> impl Strategy<Value = usize> {
    prop_oneof![10 => 0usize..6, 2 => 6..VAS.len()]
}

fn rights() -> impl Strategy<Value = Rights> {
    any::<(bool, bool, bool)>().prop_map(|(write, exec, user)| Rights { write, exec, user })
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![8 => (0usize..64).prop_map(Pick::Held), 2 => (0u64..600).prop_map(Pick::Raw),
                1 => Just(Pick::Raw(MAX_PFN))]
}

/// Mostly a process without a space, sometimes any id.
fn empty_slot(m: &spec::System) -> BoxedStrategy<usize> {
    let empty: Vec<usize> = (0..P).filter(|p| !m.spaces.contains_key(p)).collect();
    if empty.is_empty() {
        return (0..=P).boxed();
    }
    prop_oneof![4 => proptest::sample::select(empty), 1 => 0..=P].boxed()
}

/// Mostly two distinct processes with spaces (when there are), else anything.
fn pair(m: &spec::System) -> BoxedStrategy<(usize, usize)> {
    let live: Vec<usize> = m.spaces.keys().copied().collect();
    let any = (pid(m), pid(m)).boxed();
    if live.len() < 2 {
        return any;
    }
    let two = proptest::sample::subsequence(live, 2).prop_shuffle().prop_map(|v| (v[0], v[1]));
    prop_oneof![4 => two, 1 => any].boxed()
}

/// Mostly a (process, va index) that is mapped, else anything.
fn mapped(m: &spec::System) -> BoxedStrategy<(usize, usize)> {
    let pages: Vec<(usize, usize)> = m
        .spaces
        .iter()
        .flat_map(|(&p, s)| s.pages.keys().filter_map(move |va| VAS.iter().position(|v| v == va).map(|i| (p, i))))
        .collect();
    let any = (pid(m), va()).boxed();
    if pages.is_empty() {
        return any;
    }
    prop_oneof![2 => proptest::sample::select(pages), 1 => any].boxed()
}

fn op(m: &spec::System) -> BoxedStrategy<Op> {
    let (cid, pid, pair, mapped) = (cid(m), pid(m), pair(m), mapped(m));
    prop_oneof![
        3 => (cid.clone(), prop_oneof![0u64..30, Just(200)]).prop_map(|(parent, quota)| Op::Split { parent, quota }),
        2 => cid.clone().prop_map(Op::DestroyC),
        4 => cid.clone().prop_map(Op::AllocPage),
        3 => (prop_oneof![3 => Just(None), 1 => cid.clone().prop_map(Some)], pick()).prop_map(|(c, f)| Op::FreePage { c, f }),
        3 => (empty_slot(m), cid).prop_map(|(pid, c)| Op::NewSpace { pid, c }),
        6 => (pid.clone(), va(), pick(), rights()).prop_map(|(pid, va, f, rights)| Op::Map { pid, va, f, rights }),
        3 => mapped.clone().prop_map(|(pid, va)| Op::Unmap { pid, va }),
        2 => (mapped, rights()).prop_map(|((pid, va), rights)| Op::Protect { pid, va, rights }),
        8 => (pair.clone(), va()).prop_map(|((me, peer), va)| Op::Offer { me, peer, va }),
        1 => pair.prop_map(|(me, peer)| Op::Revoke { me, peer }),
        1 => pid.prop_map(Op::Exit),
    ]
    .boxed()
}

/// Frames a space or a link uses: the mm would not stop a kernel from
/// freeing them (they are the container's), but that is a kernel bug, so
/// the test never does.
fn in_use(m: &spec::System) -> Vec<Frame> {
    let mut v = Vec::new();
    for s in m.spaces.values() {
        v.push(s.root);
        v.extend(s.tables.values().copied());
    }
    for l in m.shm.links.values() {
        match *l {
            spec::Link::Pending { frame, .. } | spec::Link::Ready { frame, .. } => v.push(frame),
        }
    }
    v
}

/// The frame a pick names: the i-th container-owned data page, or any frame.
fn frame_of(m: &spec::System, p: Pick) -> Frame {
    let busy = in_use(m);
    let data: Vec<u64> = m
        .frames
        .frames
        .iter()
        .filter(|(&pfn, (o, _))| matches!(o, Owner::Container(_)) && !busy.contains(&Frame::from_pfn(pfn)))
        .map(|(&pfn, _)| pfn)
        .collect();
    match p {
        Pick::Held(_) if data.is_empty() => Frame::from_pfn(300),
        Pick::Held(i) => Frame::from_pfn(data[i % data.len()]),
        Pick::Raw(pfn) => Frame::from_pfn(pfn),
    }
}

/// Whether `va` in `pid` is where a shared-memory link mapped its page:
/// unmapping it behind the protocol's back is a kernel bug (the link would
/// then not be mapped in both spaces), so the test never does.
fn shm_page(m: &spec::System, pid: usize, va: u64) -> bool {
    m.shm.links.values().any(|l| match *l {
        spec::Link::Pending { by, va: v, .. } => (by, v) == (pid, va),
        spec::Link::Ready { first, first_va, second, second_va, .. } => {
            (first, first_va) == (pid, va) || (second, second_va) == (pid, va)
        }
    })
}

fn c(i: u16) -> ContainerId {
    ContainerId::new(i)
}

/// What a FreePage op frees, as whom; None if it would free a frame in use.
fn free_args(m: &spec::System, who: Option<u16>, p: Pick) -> Option<(ContainerId, Frame)> {
    let f = frame_of(m, p);
    let owner = match (who, m.frames.owner(f)) {
        (Some(x), _) => c(x),
        (None, Ok(Owner::Container(x))) => x,
        (None, _) => ContainerId::ROOT,
    };
    let freeable = m.frames.owner(f) != Ok(Owner::Container(owner)) || !in_use(m).contains(&f);
    freeable.then_some((owner, f))
}

/// Apply `op` to the model alone; the result as text.
fn apply_model(m: &mut spec::System, op: &Op) -> String {
    match *op {
        Op::Split { parent, quota } => format!("{:?}", m.containers.split(c(parent), quota)),
        Op::DestroyC(x) => format!("{:?}", m.containers.destroy(c(x))),
        Op::AllocPage(x) => format!("{:?}", m.alloc_page(c(x))),
        Op::FreePage { c: who, f } => match free_args(m, who, f) {
            Some((owner, f)) => format!("{:?}", m.free_page(owner, f)),
            None => String::from("skipped"),
        },
        Op::NewSpace { pid, c: x } => {
            if pid >= P {
                format!("{:?}", Err::<(), _>(MmError::UnknownId))
            } else if m.spaces.contains_key(&pid) {
                String::from("occupied")
            } else {
                format!("{:?}", m.new_space(pid, c(x)))
            }
        }
        Op::Map { pid, va, f, rights } => {
            let f = frame_of(m, f);
            format!("{:?}", m.map(pid, VAS[va], f, rights))
        }
        Op::Unmap { pid, va } if shm_page(m, pid, VAS[va]) => String::from("skipped"),
        Op::Unmap { pid, va } => format!("{:?}", m.unmap(pid, VAS[va])),
        Op::Protect { pid, va, rights } => format!("{:?}", m.protect(pid, VAS[va], rights)),
        Op::Offer { me, peer, va } => format!("{:?}", m.offer(me, peer, VAS[va])),
        Op::Revoke { me, peer } => format!("{:?}", m.revoke(me, peer)),
        Op::Exit(pid) => {
            let r = m.revoke_all(pid);
            format!("{:?} {:?}", r, m.destroy_space(pid))
        }
    }
}

pub(crate) struct Ref;

/// Every case starts with three processes, each in its own container.
const PROLOGUE: [Op; 6] = [
    Op::Split { parent: 0, quota: 10 },
    Op::Split { parent: 0, quota: 14 },
    Op::Split { parent: 0, quota: 24 },
    Op::NewSpace { pid: 0, c: 1 },
    Op::NewSpace { pid: 1, c: 2 },
    Op::NewSpace { pid: 2, c: 3 },
];

/// The model before the prologue: the kernel's root allocated, the root
/// container holding every other frame.
fn bare_model(kernel_root: Option<Frame>) -> spec::System {
    let frames = spec::Frames::new(&REGIONS, &EXCLUSIONS, 128).unwrap();
    let mut m = spec::System::new(frames, P);
    m.frames.picks.extend(kernel_root);
    m.frames.alloc(Owner::Kernel).unwrap();
    let free = m.frames.free_count() as u64;
    m.containers.root(free).unwrap();
    m
}

fn initial_model() -> spec::System {
    let mut m = bare_model(None);
    for op in &PROLOGUE {
        apply_model(&mut m, op);
    }
    m
}

impl ReferenceStateMachine for Ref {
    type State = spec::System;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<spec::System> {
        Just(initial_model()).boxed()
    }

    fn transitions(m: &spec::System) -> BoxedStrategy<Op> {
        op(m)
    }

    fn apply(mut state: spec::System, op: &Op) -> spec::System {
        apply_model(&mut state, op);
        state
    }
}

pub(crate) struct Sut {
    t: &'static AllocTable<'static>,
    cs: &'static Containers,
    phys: &'static FakePhys,
    spaces: [Option<AddressSpace<'static, FakePhys>>; P],
    shm: ShmTable<P>,
    kernel_root: Frame,
    /// The model, following the table's choices.
    model: spec::System,
}

impl Sut {
    fn new() -> Sut {
        let mut t = AllocTable::new(super::storage(&REGIONS), &REGIONS, &EXCLUSIONS).unwrap();
        let mut cs = Box::new(Containers::new());
        (t.mutant, cs.mutant) = (mutant(), mutant());
        let (t, cs) = (&*Box::leak(Box::new(t)), &*Box::leak(cs));
        let phys: &'static FakePhys = Box::leak(Box::default());
        // The kernel's root, with a few kernel-half entries every space must share.
        let kernel_root = t.alloc(Owner::Kernel).unwrap();
        for (i, e) in [(256, 0x0010_0003), (300, 0x0020_0003), (511, 0x0030_0003)] {
            phys.write_entry(kernel_root, i, e);
        }
        cs.root(t.free_frames() as u64).unwrap();
        let model = bare_model(Some(kernel_root));
        let mut sut = Sut { t, cs, phys, spaces: Default::default(), shm: ShmTable::new(), kernel_root, model };
        for op in &PROLOGUE {
            if let Err(e) = sut.step(op) {
                panic!("prologue: {e}");
            }
        }
        sut
    }

    fn mm(&self) -> Mm<'static, FakePhys> {
        Mm { frames: self.t, containers: self.cs, phys: self.phys }
    }

    /// Apply `op` to the real stack; the result as text.
    fn apply_real(&mut self, op: &Op) -> String {
        let m = &self.model;
        let mm = self.mm();
        let no_space = || format!("{:?}", Err::<(), _>(MmError::UnknownId));
        match *op {
            Op::Split { parent, quota } => format!("{:?}", self.cs.split(c(parent), quota)),
            Op::DestroyC(x) => format!("{:?}", self.cs.destroy(c(x))),
            Op::AllocPage(x) => format!("{:?}", self.cs.alloc_page(self.t, c(x))),
            Op::FreePage { c: who, f } => match free_args(m, who, f) {
                Some((owner, f)) => format!("{:?}", self.cs.free_page(self.t, owner, f)),
                None => String::from("skipped"),
            },
            Op::NewSpace { pid, c: x } => match self.spaces.get_mut(pid) {
                None => no_space(),
                Some(Some(_)) => String::from("occupied"),
                Some(slot) => match AddressSpace::new(mm, c(x), Some(self.kernel_root)) {
                    Ok(s) => {
                        *slot = Some(s);
                        format!("{:?}", Ok::<(), MmError>(()))
                    }
                    Err(e) => format!("{:?}", Err::<(), _>(e)),
                },
            },
            Op::Map { pid, va, f, rights } => {
                let f = frame_of(m, f);
                match self.spaces.get_mut(pid) {
                    Some(Some(s)) => format!("{:?}", s.map(VAS[va], f, rights)),
                    _ => no_space(),
                }
            }
            Op::Unmap { pid, va } if shm_page(m, pid, VAS[va]) => String::from("skipped"),
            Op::Unmap { pid, va } => match self.spaces.get_mut(pid) {
                Some(Some(s)) => format!(
                    "{:?}",
                    s.unmap(VAS[va]).map(|(f, flush)| {
                        assert_eq!(flush.va(), VAS[va]);
                        f
                    })
                ),
                _ => no_space(),
            },
            Op::Protect { pid, va, rights } => match self.spaces.get_mut(pid) {
                Some(Some(s)) => format!("{:?}", s.protect(VAS[va], rights).map(|flush| assert_eq!(flush.va(), VAS[va]))),
                _ => no_space(),
            },
            Op::Offer { me, peer, va } => {
                let mut host = SpaceTable { mm, spaces: &mut self.spaces, on_flush: |_, _| {} };
                format!("{:?}", self.shm.offer(&mut host, me, peer, VAS[va]))
            }
            Op::Revoke { me, peer } => {
                let mut host = SpaceTable { mm, spaces: &mut self.spaces, on_flush: |_, _| {} };
                format!("{:?}", self.shm.revoke(&mut host, me, peer))
            }
            Op::Exit(pid) => {
                let mut host = SpaceTable { mm, spaces: &mut self.spaces, on_flush: |_, _| {} };
                let r = self.shm.revoke_all(&mut host, pid);
                let d = match self.spaces.get_mut(pid).and_then(Option::take) {
                    Some(s) => {
                        let mut leaves = Vec::new();
                        s.destroy(|va, f, r| leaves.push((va, f, r))).map(|n| {
                            leaves.sort();
                            (n, leaves)
                        })
                    }
                    None => Err(MmError::UnknownId),
                };
                format!("{r:?} {d:?}")
            }
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        self.t.start_trace();
        let got = self.apply_real(op);
        self.model.frames.picks = self.t.take_trace();
        let want = apply_model(&mut self.model, op);
        if got != want {
            return Err(format!("{op:?}: implementation gave {got}, model {want}"));
        }
        if !self.model.frames.picks.is_empty() {
            return Err(format!("{op:?}: the table allocated {:?} more than the model", self.model.frames.picks));
        }
        self.observe().map_err(|e| format!("after {op:?}: {e}"))
    }

    /// Every observable against the model, and the invariants.
    fn observe(&self) -> Result<(), String> {
        let m = &self.model;
        compare(self.t, &m.frames)?;
        for i in (0..8).chain([900]) {
            let (a, b) = (self.cs.info(c(i)), m.containers.clone().info(c(i)));
            if a != b {
                return Err(format!("C{i} is {a:?}, model {b:?}"));
            }
        }
        super::containers_sm::check_tree(self.cs)?;
        // Conservation: frames the table gives each container = its own pages.
        let mut live = Vec::new();
        self.cs.for_each(|id, info| live.push((id, info.own)));
        for (id, own) in live {
            let n = (0..self.t.len() as u64)
                .filter(|&p| self.t.owner(Frame::from_pfn(p)) == Ok(Owner::Container(id)))
                .count() as u64;
            if n != own {
                return Err(format!("{id:?} owns {n} frames but has {own} own pages"));
            }
        }
        m.check().map_err(String::from)?;
        for pid in 0..P {
            match (&self.spaces[pid], m.spaces.get(&pid)) {
                (None, None) => {}
                (Some(s), Some(ms)) => {
                    if s.root() != ms.root || s.container() != ms.container || s.tables() != ms.tables.len() + 1 {
                        return Err(format!("space {pid}: {s:?}, model {ms:?}"));
                    }
                    // Its tables are its container's (compare() checked all owners,
                    // this names which frames the model says are tables).
                    for &f in ms.tables.values() {
                        if self.t.owner(f) != Ok(Owner::Container(s.container())) {
                            return Err(format!("space {pid}: table {f:?} not charged to {:?}", s.container()));
                        }
                    }
                    for i in KERNEL_PML4_FIRST..ENTRIES {
                        if self.phys.read_entry(s.root(), i) != self.phys.read_entry(self.kernel_root, i) {
                            return Err(format!("space {pid}: kernel-half entry {i} differs"));
                        }
                    }
                    for &va in &VAS {
                        for probe in [va, va + 0x123] {
                            let (a, b) = (s.translate(probe), m.translate(pid, probe));
                            if a != b {
                                return Err(format!("space {pid}: {probe:#x} -> {a:?}, model {b:?}"));
                            }
                        }
                    }
                }
                (a, b) => return Err(format!("space {pid}: {a:?}, model {b:?}")),
            }
        }
        for me in 0..=P {
            for peer in 0..=P {
                let (a, b) = (self.shm.status(me, peer), m.shm.status(me, peer));
                if a != b {
                    return Err(format!("status({me}, {peer}) = {a:?}, model {b:?}"));
                }
                let key = (me.min(peer), me.max(peer));
                let mf = m.shm.status(me, peer).map(|_| {
                    m.shm.links.get(&key).map(|l| match *l {
                        spec::Link::Pending { frame, .. } | spec::Link::Ready { frame, .. } => frame,
                    })
                });
                if self.shm.frame(me, peer) != mf {
                    return Err(format!("frame({me}, {peer}) = {:?}, model {mf:?}", self.shm.frame(me, peer)));
                }
            }
        }
        Ok(())
    }

    /// Exit every process, free every page, destroy every container: the
    /// table must be back to its initial state.
    fn finish(&mut self) -> Result<(), String> {
        for pid in 0..P {
            self.step(&Op::Exit(pid))?;
        }
        let held: Vec<_> = self
            .model
            .frames
            .frames
            .iter()
            .filter_map(|(&p, (o, _))| match o {
                Owner::Container(x) => Some((*x, Frame::from_pfn(p))),
                _ => None,
            })
            .collect();
        for (x, f) in held {
            self.step(&Op::FreePage { c: Some(x.index() as u16), f: Pick::Raw(f.pfn()) })?;
        }
        loop {
            let mut leaves = Vec::new();
            self.cs.for_each(|id, info| {
                if info.parent.is_some() && info.children == 0 {
                    leaves.push(id)
                }
            });
            if leaves.is_empty() {
                break;
            }
            for id in leaves {
                self.step(&Op::DestroyC(id.index() as u16))?;
            }
        }
        let root = self.cs.info(ContainerId::ROOT).map_err(|e| format!("{e}"))?;
        if root.usage != 0 || root.children != 0 {
            return Err(format!("root not back to empty: {root:?}"));
        }
        self.t.free(self.kernel_root, Owner::Kernel).map_err(|e| format!("{e}"))?;
        self.t.check_integrity()?;
        if self.t.free_frames() != self.t.total_frames() {
            return Err(format!("{} of {} frames free at the end", self.t.free_frames(), self.t.total_frames()));
        }
        Ok(())
    }
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = Ref;

    fn init_test(_: &spec::System) -> Sut {
        Sut::new()
    }

    fn apply(mut sut: Sut, _: &spec::System, op: Op) -> Sut {
        if let Err(e) = sut.step(&op) {
            panic!("{e}");
        }
        sut
    }

    fn teardown(mut sut: Sut, _: spec::System) {
        if let Err(e) = sut.finish() {
            panic!("{e}");
        }
    }
}

prop_state_machine! {
    #![proptest_config(Config { cases: super::cases(384), ..Config::default() })]
    #[test]
    fn stack_refines_model(sequential 1..120 => Sut);
}

#[allow(clippy::result_large_err)] // proptest's error type
pub(crate) fn run(m: Mutant, cases: u32) -> Result<(), String> {
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    with_mutant(m, || {
        runner.run(&Ref::sequential_strategy(1..120), |(_, ops, _)| {
            let mut sut = Sut::new();
            for op in &ops {
                sut.step(op).map_err(TestCaseError::fail)?;
            }
            sut.finish().map_err(TestCaseError::fail)
        })
    })
    .map_err(|e| format!("{e}"))
}

#[test]
fn catches_map_over_a_mapping() {
    let e = run(Mutant::MapOverwrites, 160).expect_err("mutant not caught");
    assert!(e.contains("AlreadyMapped"), "{e}");
}

#[test]
fn catches_free_ignoring_owner_in_the_stack() {
    run(Mutant::FreeIgnoresOwner, 160).expect_err("mutant not caught");
}
