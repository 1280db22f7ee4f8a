//! Refinement of [`crate::spec::GuestMemory`] by the EPT builder
//! ([`crate::ept::Ept`]): random `map`/`translate` sequences (aligned and
//! misaligned addresses, addresses beyond the tables' reach, remaps of a
//! mapped page, a container that runs out half-way through a walk) give the
//! same results as the model; the container is charged exactly the model's
//! table pages; tearing down hands back exactly the mapped frames and every
//! table page. A deliberate bug (`map` overwriting a mapping) must be caught.

use crate::ept::{Ept, GPA_LIMIT};
use crate::spec::{GuestMemory, GuestRights};
use core::cell::RefCell;
use mm::paging::{PhysAccess, ENTRIES};
use mm::{AllocTable, ContainerId, Containers, Frame, FrameEntry};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};
use std::boxed::Box;
use std::collections::{BTreeMap, HashMap};
use std::format;
use std::string::String;
use std::vec::Vec;

/// Table pages as a map from frame number to entries (absent: zero).
#[derive(Default)]
struct FakePhys(RefCell<HashMap<u64, Box<[u64; ENTRIES]>>>);

impl PhysAccess for FakePhys {
    fn read_entry(&self, table: Frame, index: usize) -> u64 {
        self.0.borrow().get(&table.pfn()).map_or(0, |t| t[index])
    }
    fn write_entry(&self, table: Frame, index: usize, value: u64) {
        self.0.borrow_mut().entry(table.pfn()).or_insert_with(|| Box::new([0; ENTRIES]))[index] = value;
    }
}

/// Guest addresses worth trying: pages sharing and splitting every level of
/// the walk, the last page in reach, the first out of it, misaligned ones.
fn gpa() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (0u64..6, 0u64..3, 0u64..3, 0u64..4).prop_map(|(a, b, c, d)| {
            // Spread over 512 GiB, 1 GiB and 2 MiB regions.
            (a % 2) << 39 | (b << 30) | (c << 21) | (d + a / 2) << 12
        }),
        1 => Just(GPA_LIMIT - 4096),
        1 => Just(GPA_LIMIT),
        1 => Just(u64::MAX & !0xfff),
        1 => (1u64..4096).prop_map(|o| 0x20_0000 + o),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Map(u64, u64, bool, bool),
    Translate(u64),
}

fn op() -> BoxedStrategy<Op> {
    prop_oneof![
        4 => (gpa(), 1000u64..1010, any::<bool>(), any::<bool>()).prop_map(|(g, f, w, x)| Op::Map(g, f, w, x)),
        1 => (gpa(), 0u64..4096).prop_map(|(g, o)| Op::Translate(g.wrapping_add(o))),
    ]
    .boxed()
}

/// The container's room in pages: small enough that some runs exhaust it.
fn room() -> impl Strategy<Value = u64> {
    prop_oneof![1 => 1u64..4, 3 => 4u64..40]
}

#[derive(Clone, Debug)]
struct Model(GuestMemory);

struct Ref;

impl ReferenceStateMachine for Ref {
    type State = Model;
    type Transition = Op;
    fn init_state() -> BoxedStrategy<Model> {
        room().prop_map(|r| Model(GuestMemory::new(r, GPA_LIMIT).unwrap())).boxed()
    }
    fn transitions(_: &Model) -> BoxedStrategy<Op> {
        op()
    }
    fn apply(mut s: Model, op: &Op) -> Model {
        if let Op::Map(g, f, w, x) = *op {
            let _ = s.0.map(g, f, GuestRights { write: w, exec: x });
        }
        s
    }
}

std::thread_local! {
    static MUTANT: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

struct Sut {
    frames: &'static AllocTable<'static>,
    containers: &'static Containers,
    phys: &'static FakePhys,
    c: ContainerId,
    ept: Option<Ept>,
    model: GuestMemory,
    free_before: usize,
}

impl Sut {
    fn mm(&self) -> mm::Mm<'static, FakePhys> {
        mm::Mm { frames: self.frames, containers: self.containers, phys: self.phys }
    }
    fn usage(&self) -> u64 {
        self.containers.info(self.c).unwrap().usage
    }
    fn step(&mut self, op: &Op) -> Result<(), String> {
        let m = self.mm();
        let ept = self.ept.as_mut().unwrap();
        match *op {
            Op::Map(g, f, w, x) => {
                let got = ept.map(m, g, Frame::from_pfn(f), w, x);
                let want = self.model.map(g, f, GuestRights { write: w, exec: x });
                if got != want {
                    return Err(format!("map({g:#x}, {f}): EPT {got:?}, spec {want:?}"));
                }
            }
            Op::Translate(g) => {
                let got = ept.lookup(m, g).map(|(f, w, x)| (f.pfn(), w, x));
                let want = self.model.translate(g).map(|f| {
                    let r = self.model.pages[&(g & !0xfff)].1;
                    (f, r.write, r.exec)
                });
                if got != want {
                    return Err(format!("translate({g:#x}): EPT {got:?}, spec {want:?}"));
                }
            }
        }
        // Every page the walk charged, and no other, is a table page of the model.
        let ept = self.ept.as_ref().unwrap();
        if self.usage() != self.model.table_pages() || ept.tables() as u64 != self.model.table_pages() {
            return Err(format!("charged {} pages, {} tables; spec {}", self.usage(), ept.tables(), self.model.table_pages()));
        }
        Ok(())
    }
    fn teardown(mut self) -> Result<(), String> {
        let ept = self.ept.take().unwrap();
        let m = self.mm();
        let mut leaves = BTreeMap::new();
        ept.destroy(m, |g, f| {
            leaves.insert(g, f.pfn());
        });
        let (want, _) = self.model.clone().destroy();
        if leaves != want {
            return Err(format!("destroy handed back {leaves:?}, spec {want:?}"));
        }
        if self.usage() != 0 || self.frames.free_frames() != self.free_before {
            return Err(format!("after destroy: usage {}, free frames {} (before {})", self.usage(), self.frames.free_frames(), self.free_before));
        }
        Ok(())
    }
}

struct Test;

impl StateMachineTest for Test {
    type SystemUnderTest = Sut;
    type Reference = Ref;
    fn init_test(r: &Model) -> Sut {
        let regions = [(0x10_0000u64, 0x10_0000u64)];
        let n = AllocTable::entries_needed(&regions).unwrap();
        let storage: &'static mut [FrameEntry] = Box::leak((0..n).map(|_| FrameEntry::new()).collect::<Vec<_>>().into_boxed_slice());
        let frames: &'static AllocTable<'static> = Box::leak(Box::new(AllocTable::new(storage, &regions, &[]).unwrap()));
        let containers: &'static Containers = Box::leak(Box::new(Containers::new()));
        let root = containers.root(1000).unwrap();
        // The model's room plus the root table it already took.
        let c = containers.split(root, r.0.room + 1).unwrap();
        let phys: &'static FakePhys = Box::leak(Box::default());
        let free_before = frames.free_frames();
        let mut ept = Ept::new(mm::Mm { frames, containers, phys }, c).unwrap();
        ept.mutant_overwrite = MUTANT.with(|m| m.get());
        Sut { frames, containers, phys, c, ept: Some(ept), model: r.0.clone(), free_before }
    }
    fn apply(mut s: Sut, _: &Model, op: Op) -> Sut {
        if let Err(e) = s.step(&op) {
            panic!("{e}");
        }
        s
    }
    fn teardown(s: Sut, _: Model) {
        if let Err(e) = s.teardown() {
            panic!("{e}");
        }
    }
}

fn run(cases: u32) -> Result<(), String> {
    let cfg = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(cfg);
    runner
        .run(&Ref::sequential_strategy(1..40), |(init, transitions, seen)| {
            Test::test_sequential(Config::default(), init, transitions, seen);
            Ok(())
        })
        .map_err(|e| format!("{e}"))
}

#[test]
fn ept_refines_the_guest_memory_spec() {
    run(256).unwrap();
}

#[test]
fn the_check_catches_a_map_that_overwrites() {
    MUTANT.with(|m| m.set(true));
    let r = std::panic::catch_unwind(|| run(256));
    MUTANT.with(|m| m.set(false));
    match r {
        Ok(Ok(())) => panic!("the refinement check passed an EPT whose map overwrites mappings"),
        // Caught as a divergence from the spec (not some other failure).
        Ok(Err(e)) => assert!(e.contains("spec"), "failed for another reason: {e}"),
        Err(_) => panic!("the check crashed instead of reporting"),
    }
}
