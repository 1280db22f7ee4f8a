//! In-crate checks (in-crate because they switch on the test-only mutants and
//! read the allocation trace).
//!
//! - `errors`: every misuse gives its own error; examples of each layer.
//! - `frames_sm`, `containers_sm`, `system_sm`: proptest-state-machine
//!   refinement of the allocation table, the container tree, and containers +
//!   address spaces + shared memory together, against `crate::spec`, with
//!   hostile operations, and the mutants they must catch.
//! - `shm_model`: stateright, every reachable state of the shared-memory
//!   protocol for 3 processes.
//! - `storm`: std threads as CPUs hammering one table.
//! - `heap`: the slab heap over host pages.

mod errors;
mod frames_sm;
mod containers_sm;
#[allow(unsafe_code)] // host pages and raw blocks for the heap under test
mod heap;
mod shm_model;
mod storm;
mod system_sm;

use crate::frames::{AllocTable, Frame, FrameEntry};
use crate::paging::{PhysAccess, ENTRIES};
use core::cell::{Cell, RefCell};
use std::boxed::Box;
use std::collections::HashMap;
use std::vec::Vec;

/// Deliberate bugs, switched on per table at run time, that the checks must
/// catch (the "teeth" of the refinement tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Mutant {
    None,
    /// `AllocTable::free` frees any allocated frame, whoever owns it.
    FreeIgnoresOwner,
    /// `alloc_contiguous` leaves the run's last frame on the free list.
    RunSkipsUnlink,
    /// `Containers::split` does not check the parent's quota.
    SplitIgnoresQuota,
    /// `Containers::split` checks only the parent's descendant limit, not
    /// those of the containers above it.
    LimitParentOnly,
    /// `AddressSpace::map` overwrites an existing mapping.
    MapOverwrites,
    /// Tearing down a Ready shared-memory link drops only one of the frame's
    /// two references.
    RevokeDropsOneRef,
}

std::thread_local! {
    /// The mutant the next state-machine SUT built on this thread gets.
    static MUTANT: Cell<Mutant> = const { Cell::new(Mutant::None) };
}

pub(crate) fn mutant() -> Mutant {
    MUTANT.with(|m| m.get())
}

/// Run `f` with `m` switched on for the SUTs it builds.
pub(crate) fn with_mutant<R>(m: Mutant, f: impl FnOnce() -> R) -> R {
    MUTANT.with(|c| c.set(m));
    let r = f();
    MUTANT.with(|c| c.set(Mutant::None));
    r
}

/// Proptest cases: `default`, or `PROPTEST_CASES` when set (for long runs:
/// `PROPTEST_CASES=20000 cargo test -p mm --release`).
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Table pages as a map from frame to 512 entries (absent: all zero).
#[derive(Default)]
pub(crate) struct FakePhys {
    pub tables: RefCell<HashMap<u64, Box<[u64; ENTRIES]>>>,
    pub writes: Cell<usize>,
}

impl PhysAccess for FakePhys {
    fn read_entry(&self, table: Frame, index: usize) -> u64 {
        self.tables.borrow().get(&table.pfn()).map_or(0, |t| t[index])
    }

    fn write_entry(&self, table: Frame, index: usize, value: u64) {
        self.writes.set(self.writes.get() + 1);
        self.tables.borrow_mut().entry(table.pfn()).or_insert_with(|| Box::new([0; ENTRIES]))[index] = value;
    }
}

/// Storage for a table over `regions`, leaked (tests build many small ones).
pub(crate) fn storage(regions: &[(u64, u64)]) -> &'static mut [FrameEntry] {
    let n = AllocTable::entries_needed(regions).unwrap();
    Box::leak((0..n).map(|_| FrameEntry::new()).collect::<Vec<_>>().into_boxed_slice())
}

/// A table over `regions` minus `exclusions`, leaked.
pub(crate) fn table(regions: &[(u64, u64)], exclusions: &[(u64, u64)]) -> &'static AllocTable<'static> {
    Box::leak(Box::new(AllocTable::new(storage(regions), regions, exclusions).unwrap()))
}

/// The memory map the state-machine tests use: low memory (excluded), three
/// regions (one unaligned), three exclusions; 140 managed frames in frames
/// 256..560, over five stripes of 128 frames.
pub(crate) const REGIONS: [(u64, u64); 4] =
    [(0, 0x9f000), (0x100000, 0x40000), (0x180800, 0x20000), (0x200000, 0x30000)];
pub(crate) const EXCLUSIONS: [(u64, u64); 3] = [(0, 0x100000), (0x110000, 0x1800), (0x205000, 0x1000)];

#[test]
fn fixture_shape() {
    let t = table(&REGIONS, &EXCLUSIONS);
    assert_eq!(t.len(), 560);
    assert_eq!(t.total_frames(), 140);
    assert_eq!(t.stripe_span(), 128);
    t.check_integrity().unwrap();
}
