//! The virt layer's executable specification: what a VM's nested page
//! tables (guest-physical memory) are, abstractly.
//!
//! A VM's guest-physical memory is a partial map from 4 KiB guest pages to
//! host frames with rights (read always; write and execute as given), plus
//! the table pages that hold it, charged to the VM owner's container. The
//! table pages are determined by which guest regions were ever reached: one
//! root, one table per 512 GiB, per 1 GiB and per 2 MiB region a `map`
//! walked into. That is the whole observable state: `map` adds a page or
//! fails with a distinct error, `translate` reads the map, `destroy` hands
//! back exactly the mapped frames and uncharges every table page.
//!
//! The implementation ([`crate::ept::Ept`] for VT-x) is checked against
//! this model by a proptest-state-machine refinement test (`tests.rs`),
//! including quota exhaustion half-way through a walk. AMD's nested tables
//! are `mm::AddressSpace`, refined against `mm::spec` in the mm layer.
//!
//! The other rules the run loop applies itself are pure functions with
//! their own checks: [`crate::guest_cpuid`], [`crate::cr0_write_faults`],
//! [`crate::cr4_write_faults`].

use alloc::collections::{BTreeMap, BTreeSet};
use mm::MmError;

/// Rights of a guest page (read is implied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRights {
    pub write: bool,
    pub exec: bool,
}

/// The abstract guest-physical memory of one VM.
#[derive(Clone, Debug)]
pub struct GuestMemory {
    /// Guest page address -> (host frame number, rights).
    pub pages: BTreeMap<u64, (u64, GuestRights)>,
    /// Regions that have a table: (level, gpa >> shift) for the tables under
    /// the root (level 3: 512 GiB regions, 2: 1 GiB, 1: 2 MiB).
    pub tables: BTreeSet<(u8, u64)>,
    /// Pages the container may still be charged.
    pub room: u64,
    /// Guest-physical addresses at or above this are outside the tables.
    pub limit: u64,
}

impl GuestMemory {
    /// A fresh VM: the root table charged out of `room` pages.
    pub fn new(room: u64, limit: u64) -> Result<GuestMemory, MmError> {
        if room == 0 {
            return Err(MmError::QuotaExceeded);
        }
        Ok(GuestMemory { pages: BTreeMap::new(), tables: BTreeSet::new(), room: room - 1, limit })
    }

    /// Table pages charged now (the root included).
    pub fn table_pages(&self) -> u64 {
        1 + self.tables.len() as u64
    }

    /// Map guest page `gpa` to `frame`. Errors, in the order they are
    /// decided: `Misaligned`, `NonCanonical` (beyond the tables' reach),
    /// `QuotaExceeded` (a table on the way could not be charged; the
    /// tables charged before it stay), `AlreadyMapped` (nothing changes).
    pub fn map(&mut self, gpa: u64, frame: u64, rights: GuestRights) -> Result<(), MmError> {
        if !gpa.is_multiple_of(4096) {
            return Err(MmError::Misaligned);
        }
        if gpa >= self.limit {
            return Err(MmError::NonCanonical);
        }
        for (level, shift) in [(3u8, 39u32), (2, 30), (1, 21)] {
            let region = (level, gpa >> shift);
            if !self.tables.contains(&region) {
                if self.room == 0 {
                    return Err(MmError::QuotaExceeded);
                }
                self.room -= 1;
                self.tables.insert(region);
            }
        }
        if self.pages.contains_key(&gpa) {
            return Err(MmError::AlreadyMapped);
        }
        self.pages.insert(gpa, (frame, rights));
        Ok(())
    }

    /// The frame behind `gpa`'s page, if mapped (any address; the page
    /// offset is ignored).
    pub fn translate(&self, gpa: u64) -> Option<u64> {
        if gpa >= self.limit {
            return None;
        }
        self.pages.get(&(gpa & !0xfff)).map(|&(f, _)| f)
    }

    /// Tear the VM's memory down: every mapped (gpa, frame), and the table
    /// pages given back to the container.
    pub fn destroy(self) -> (BTreeMap<u64, u64>, u64) {
        let tables = self.table_pages();
        (self.pages.into_iter().map(|(g, (f, _))| (g, f)).collect(), tables)
    }
}
