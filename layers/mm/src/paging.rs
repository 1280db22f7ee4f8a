//! Virtual memory: x86-64 4-level page tables (Intel SDM Vol. 3A §4.5).
//!
//! An [`AddressSpace`] owns the user half (PML4 entries 0..256) of one page
//! table tree; entries 256..512 are copied from the kernel's root when the
//! space is made, so the kernel half is shared by every space (the kernel
//! must create all its PML4 entries before the first space and never add
//! more). All mappings are 4 KiB pages. Page-table pages are allocated through
//! [`Containers::alloc_page`], i.e. owned by and charged to the space's
//! container, kept until [`AddressSpace::destroy`] (unmapping does not free
//! emptied tables: a space's table count only grows, bounded by its quota).
//!
//! Table pages are read and written through [`PhysAccess`] (the kernel: its
//! direct map; tests: fake frames). This module never touches hardware:
//! `unmap` and `protect` return a [`Flush`] naming the page whose TLB entries
//! must go (INVLPG here, shootdown IPIs to the other CPUs in the space's
//! [`CpuSet`]); `map` needs none, since a non-present entry is never cached
//! (SDM Vol. 3A §4.10.2.3).
//!
//! Rights: leaf entries carry P, R/W, U/S and XD (bit 63, which requires
//! IA32_EFER.NXE = 1, SDM Vol. 3A §4.1.3); intermediate entries are P|R/W|U/S
//! without XD, so the leaf alone decides (the rights of a walk are the
//! intersection of all levels, SDM Vol. 3A §4.6).

use crate::container::{ContainerId, Containers};
use crate::frames::{AllocTable, Frame};
use crate::{MmError, PAGE_SIZE};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

// Page-table entry bits (Intel SDM Vol. 3A §4.5, Tables 4-15..4-20).
/// Present.
pub const PTE_P: u64 = 1 << 0;
/// Read/write (writes allowed if 1).
pub const PTE_RW: u64 = 1 << 1;
/// User/supervisor (user-mode accesses allowed if 1).
pub const PTE_US: u64 = 1 << 2;
/// Page size (in a PDPTE/PDE: maps a 1 GiB/2 MiB page). Never set here.
pub const PTE_PS: u64 = 1 << 7;
/// Execute-disable (needs IA32_EFER.NXE).
pub const PTE_XD: u64 = 1 << 63;
/// Physical-address bits 51:12 of an entry (MAXPHYADDR ≤ 52, SDM Vol. 3A §4.1.4).
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
/// Rights of intermediate entries: permissive, the leaf decides.
const TABLE_RIGHTS: u64 = PTE_P | PTE_RW | PTE_US;

/// Entries per table.
pub const ENTRIES: usize = 512;
/// First PML4 index of the kernel half.
pub const KERNEL_PML4_FIRST: usize = 256;
/// First address past the user half (canonical lower half, 47 bits).
pub const USER_END: u64 = 1 << 47;
/// Frames above this cannot appear in an entry (52-bit physical addresses).
pub const MAX_PFN: u64 = 1 << 40;

/// How page-table pages are read and written.
pub trait PhysAccess {
    /// Entry `index` (0..512) of the table in frame `table`.
    fn read_entry(&self, table: Frame, index: usize) -> u64;
    /// Set entry `index` (0..512) of the table in frame `table`.
    fn write_entry(&self, table: Frame, index: usize, value: u64);
    /// Clear a whole table (a new table page's contents are arbitrary).
    fn zero_table(&self, table: Frame) {
        for i in 0..ENTRIES {
            self.write_entry(table, i, 0);
        }
    }
}

/// What address spaces need from the rest of memory management: the
/// allocation table, the containers, and access to table pages. A copyable
/// handle.
pub struct Mm<'a, P> {
    pub frames: &'a AllocTable<'a>,
    pub containers: &'a Containers,
    pub phys: &'a P,
}

impl<P> Clone for Mm<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P> Copy for Mm<'_, P> {}

/// Access rights of a 4 KiB page (reading is always allowed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rights {
    pub write: bool,
    pub exec: bool,
    pub user: bool,
}

impl Rights {
    /// User data: read/write, not executable.
    pub const USER_RW: Rights = Rights { write: true, exec: false, user: true };

    /// Leaf entry bits for these rights (without the address).
    pub const fn pte_bits(self) -> u64 {
        let mut bits = PTE_P;
        if self.write {
            bits |= PTE_RW;
        }
        if self.user {
            bits |= PTE_US;
        }
        if !self.exec {
            bits |= PTE_XD;
        }
        bits
    }

    /// The rights a leaf entry grants.
    pub const fn from_pte(pte: u64) -> Rights {
        Rights { write: pte & PTE_RW != 0, exec: pte & PTE_XD == 0, user: pte & PTE_US != 0 }
    }
}

/// A page whose TLB entries the caller must invalidate (INVLPG on this CPU,
/// shootdown on every other CPU where the space is live) before the old frame
/// or rights can be relied on to be gone.
#[must_use = "the page's TLB entries must be invalidated"]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flush {
    va: u64,
}

impl Flush {
    /// The virtual address of the page to invalidate.
    pub const fn va(self) -> u64 {
        self.va
    }
}

/// Check that `va` is a canonical, page-aligned user-half address.
/// Errors in this order: `NonCanonical`, `KernelAddress`, `Misaligned`.
pub const fn check_user_va(va: u64) -> Result<(), MmError> {
    // Canonical: bits 63..47 all equal (SDM Vol. 1 §3.3.7.1).
    let top = va >> 47;
    if top != 0 && top != (1 << 17) - 1 {
        return Err(MmError::NonCanonical);
    }
    if va >= USER_END {
        return Err(MmError::KernelAddress);
    }
    if !va.is_multiple_of(PAGE_SIZE) {
        return Err(MmError::Misaligned);
    }
    Ok(())
}

/// Index of `va` in the table of level `level` (4 = PML4 .. 1 = PT).
#[inline]
pub const fn table_index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 511) as usize
}

fn entry_frame(e: u64) -> Frame {
    Frame::from_pfn((e & PTE_ADDR) >> 12)
}

/// Where a walk for `va` stopped.
enum Walk {
    /// The page table (level 1) exists; here it is.
    Leaf(Frame),
    /// The entry at `level` (4..2) in `table` is not present: `level - 1`
    /// tables are missing.
    Missing { table: Frame, level: u32 },
    /// A large page (PS) covers `va`: this crate never makes one.
    Large,
}

/// One user address space: a PML4 and the tables below its user half.
pub struct AddressSpace<'a, P: PhysAccess> {
    mm: Mm<'a, P>,
    root: Frame,
    container: ContainerId,
    /// Page-table pages in use, root included.
    tables: usize,
}

impl<'a, P: PhysAccess> AddressSpace<'a, P> {
    /// A new space for `container`: allocates its PML4 (charged to the
    /// container), clears the user half and copies entries 256..512 from
    /// `kernel_root` (none: kernel half empty, for tests).
    /// Errors: `NoSuchContainer`, `QuotaExceeded`, `OutOfMemory`.
    pub fn new(mm: Mm<'a, P>, container: ContainerId, kernel_root: Option<Frame>) -> Result<Self, MmError> {
        let root = mm.containers.alloc_page(mm.frames, container)?;
        mm.phys.zero_table(root);
        if let Some(k) = kernel_root {
            for i in KERNEL_PML4_FIRST..ENTRIES {
                mm.phys.write_entry(root, i, mm.phys.read_entry(k, i));
            }
        }
        Ok(AddressSpace { mm, root, container, tables: 1 })
    }

    /// The PML4 frame (what CR3 gets).
    pub fn root(&self) -> Frame {
        self.root
    }

    /// The container the space's tables (and usually its pages) are charged to.
    pub fn container(&self) -> ContainerId {
        self.container
    }

    /// Page-table pages the space holds, root included.
    pub fn tables(&self) -> usize {
        self.tables
    }

    /// The memory-management handle the space was made with.
    pub fn mm(&self) -> Mm<'a, P> {
        self.mm
    }

    fn walk(&self, va: u64) -> Walk {
        let phys = self.mm.phys;
        let mut table = self.root;
        for level in [4, 3, 2] {
            let e = phys.read_entry(table, table_index(va, level));
            if e & PTE_P == 0 {
                return Walk::Missing { table, level };
            }
            if e & PTE_PS != 0 {
                return Walk::Large;
            }
            table = entry_frame(e);
        }
        Walk::Leaf(table)
    }

    /// The frame and rights `va` (any address inside the page) maps to, if any.
    pub fn translate(&self, va: u64) -> Option<(Frame, Rights)> {
        check_user_va(va & !(PAGE_SIZE - 1)).ok()?;
        let Walk::Leaf(pt) = self.walk(va) else { return None };
        let pte = self.mm.phys.read_entry(pt, table_index(va, 1));
        (pte & PTE_P != 0).then(|| (entry_frame(pte), Rights::from_pte(pte)))
    }

    /// Map the page at `va` to `frame` with `rights`. Missing tables are
    /// charged to the container all at once first, so on any error the space
    /// is unchanged. Errors: `NonCanonical`, `KernelAddress`, `Misaligned`,
    /// `BadFrame`, `AlreadyMapped`, `QuotaExceeded`, `OutOfMemory`.
    pub fn map(&mut self, va: u64, frame: Frame, rights: Rights) -> Result<(), MmError> {
        check_user_va(va)?;
        if frame.pfn() >= MAX_PFN {
            return Err(MmError::BadFrame);
        }
        let phys = self.mm.phys;
        let leaf_pte = frame.addr() | rights.pte_bits();
        let (table, level) = match self.walk(va) {
            Walk::Large => return Err(MmError::AlreadyMapped),
            Walk::Leaf(pt) => {
                let i = table_index(va, 1);
                #[cfg(test)]
                let overwrite = self.mm.containers.mutant == crate::tests::Mutant::MapOverwrites;
                #[cfg(not(test))]
                let overwrite = false;
                if phys.read_entry(pt, i) & PTE_P != 0 && !overwrite {
                    return Err(MmError::AlreadyMapped);
                }
                phys.write_entry(pt, i, leaf_pte);
                return Ok(());
            }
            Walk::Missing { table, level } => (table, level),
        };
        // Tables for levels level-1 .. 1 are missing.
        let missing = (level - 1) as usize;
        let (frames, containers) = (self.mm.frames, self.mm.containers);
        containers.charge(self.container, missing as u64)?;
        let mut new = [Frame::from_pfn(0); 3];
        for i in 0..missing {
            match frames.alloc(crate::frames::Owner::Container(self.container)) {
                Ok(f) => new[i] = f,
                Err(e) => {
                    for &f in &new[..i] {
                        let _ = frames.free(f, crate::frames::Owner::Container(self.container));
                    }
                    let _ = containers.uncharge(self.container, missing as u64);
                    return Err(e);
                }
            }
        }
        // Build the new subtree bottom-up, then hang it in with one store, so
        // a concurrent hardware walk sees either nothing or the whole path.
        for &t in &new[..missing] {
            phys.zero_table(t);
        }
        phys.write_entry(new[missing - 1], table_index(va, 1), leaf_pte);
        for i in (0..missing - 1).rev() {
            // new[i] is the table at level (level - 1 - i); its entry points at new[i + 1].
            let lvl = level - 1 - i as u32;
            phys.write_entry(new[i], table_index(va, lvl), new[i + 1].addr() | TABLE_RIGHTS);
        }
        phys.write_entry(table, table_index(va, level), new[0].addr() | TABLE_RIGHTS);
        self.tables += missing;
        Ok(())
    }

    fn leaf_of(&self, va: u64) -> Result<(Frame, usize, u64), MmError> {
        check_user_va(va)?;
        let Walk::Leaf(pt) = self.walk(va) else { return Err(MmError::NotMapped) };
        let i = table_index(va, 1);
        let pte = self.mm.phys.read_entry(pt, i);
        if pte & PTE_P == 0 {
            return Err(MmError::NotMapped);
        }
        Ok((pt, i, pte))
    }

    /// Remove the mapping of the page at `va`; returns the frame it mapped
    /// (not freed: the caller owns it) and the TLB work. Errors:
    /// `NonCanonical`, `KernelAddress`, `Misaligned`, `NotMapped`.
    pub fn unmap(&mut self, va: u64) -> Result<(Frame, Flush), MmError> {
        let (pt, i, pte) = self.leaf_of(va)?;
        self.mm.phys.write_entry(pt, i, 0);
        Ok((entry_frame(pte), Flush { va }))
    }

    /// Change the rights of the page at `va`. Errors as [`unmap`](Self::unmap).
    pub fn protect(&mut self, va: u64, rights: Rights) -> Result<Flush, MmError> {
        let (pt, i, pte) = self.leaf_of(va)?;
        self.mm.phys.write_entry(pt, i, (pte & PTE_ADDR) | rights.pte_bits());
        Ok(Flush { va })
    }

    /// Tear the space down: free every page-table page of the user half and
    /// the root (uncharging the container). Leaf frames are *not* freed:
    /// `leaf(va, frame, rights)` is called for each page still mapped, and
    /// the caller decides (free it, drop a share reference...). Shared-memory
    /// pages must be revoked first ([`crate::shm::ShmTable::revoke_all`]).
    /// The space must not be live on any CPU, and its TLB entries must be
    /// flushed (a CR3 reload does it when the PCID is not reused).
    /// Returns the number of table pages freed; if freeing one fails (only if
    /// the table was corrupted), the rest are still freed and the first
    /// error is returned.
    pub fn destroy(self, mut leaf: impl FnMut(u64, Frame, Rights)) -> Result<usize, MmError> {
        let Mm { frames, containers, phys } = self.mm;
        let c = self.container;
        let mut freed = 0;
        let mut first_err = None;
        let mut free = |f: Frame| match containers.free_page(frames, c, f) {
            Ok(()) => freed += 1,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        };
        for i4 in 0..KERNEL_PML4_FIRST {
            let e4 = phys.read_entry(self.root, i4);
            if e4 & PTE_P == 0 {
                continue;
            }
            let pdpt = entry_frame(e4);
            for i3 in 0..ENTRIES {
                let e3 = phys.read_entry(pdpt, i3);
                if e3 & PTE_P == 0 || e3 & PTE_PS != 0 {
                    continue;
                }
                let pd = entry_frame(e3);
                for i2 in 0..ENTRIES {
                    let e2 = phys.read_entry(pd, i2);
                    if e2 & PTE_P == 0 || e2 & PTE_PS != 0 {
                        continue;
                    }
                    let pt = entry_frame(e2);
                    for i1 in 0..ENTRIES {
                        let e1 = phys.read_entry(pt, i1);
                        if e1 & PTE_P != 0 {
                            let va = (i4 as u64) << 39 | (i3 as u64) << 30 | (i2 as u64) << 21 | (i1 as u64) << 12;
                            leaf(va, entry_frame(e1), Rights::from_pte(e1));
                        }
                    }
                    free(pt);
                }
                free(pd);
            }
            free(pdpt);
        }
        free(self.root);
        match first_err {
            None => Ok(freed),
            Some(e) => Err(e),
        }
    }
}

impl<P: PhysAccess> fmt::Debug for AddressSpace<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddressSpace")
            .field("root", &self.root)
            .field("container", &self.container)
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

/// A set of CPUs (bit i = CPU i), e.g. where an address space is live, for
/// TLB shootdowns. `machine::cpu::MAX_CPUS` ≤ 64.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CpuSet(u64);

const _: () = assert!(machine::cpu::MAX_CPUS <= 64);

impl CpuSet {
    /// No CPU.
    pub const EMPTY: CpuSet = CpuSet(0);

    /// Every CPU index below `machine::cpu::MAX_CPUS`.
    pub const fn all() -> CpuSet {
        CpuSet(if machine::cpu::MAX_CPUS == 64 { u64::MAX } else { (1 << machine::cpu::MAX_CPUS) - 1 })
    }

    /// The set with these bits.
    pub const fn from_bits(bits: u64) -> CpuSet {
        CpuSet(bits)
    }

    /// The bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Add `cpu` (indices ≥ 64 are ignored).
    pub const fn with(self, cpu: usize) -> CpuSet {
        CpuSet(self.0 | bit(cpu))
    }

    /// Remove `cpu`.
    pub const fn without(self, cpu: usize) -> CpuSet {
        CpuSet(self.0 & !bit(cpu))
    }

    /// Add `cpu` in place.
    pub fn insert(&mut self, cpu: usize) {
        self.0 |= bit(cpu);
    }

    /// Remove `cpu` in place.
    pub fn remove(&mut self, cpu: usize) {
        self.0 &= !bit(cpu);
    }

    /// Whether `cpu` is in the set.
    pub const fn contains(self, cpu: usize) -> bool {
        self.0 & bit(cpu) != 0
    }

    /// Number of CPUs in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The CPUs in ascending order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let cpu = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(cpu)
        })
    }
}

const fn bit(cpu: usize) -> u64 {
    if cpu < 64 {
        1 << cpu
    } else {
        0
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A [`CpuSet`] that CPUs update concurrently (each sets its own bit when it
/// switches to the space and clears it when it leaves; a CPU unmapping reads
/// it to know whom to shoot down).
#[derive(Default)]
pub struct AtomicCpuSet(AtomicU64);

impl AtomicCpuSet {
    /// No CPU.
    pub const fn new() -> AtomicCpuSet {
        AtomicCpuSet(AtomicU64::new(0))
    }

    /// Add `cpu`. SeqCst: the set must be published before this CPU can load
    /// translations (ordered against the page-table reads of a later unmap).
    pub fn insert(&self, cpu: usize) {
        self.0.fetch_or(bit(cpu), Ordering::SeqCst);
    }

    /// Remove `cpu`.
    pub fn remove(&self, cpu: usize) {
        self.0.fetch_and(!bit(cpu), Ordering::SeqCst);
    }

    /// A snapshot.
    pub fn load(&self) -> CpuSet {
        CpuSet(self.0.load(Ordering::SeqCst))
    }
}

impl fmt::Debug for AtomicCpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.load(), f)
    }
}
