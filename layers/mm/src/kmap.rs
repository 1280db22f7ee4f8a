//! The kernel half of every address space, built once at boot: a direct map
//! of physical memory and the kernel image with per-section rights.
//!
//! - Direct map: `[0, size)` at `base` with 2 MiB pages (SDM Vol. 3A §4.5,
//!   PDE with PS=1), global, never executable; a 2 MiB page that overlaps no
//!   RAM is mapped uncached (PCD|PWT: local APIC, I/O APIC and other MMIO).
//! - Kernel image: 4 KiB pages, global, text read+execute, read-only data
//!   read-only, data and bss read+write, never both writable and executable.
//!
//! All of it lives in PML4 entries 256..512, created here before any user
//! address space exists, so [`AddressSpace::new`](crate::AddressSpace::new)
//! can share the kernel half by copying those entries.

use crate::frames::Frame;
use crate::paging::{table_index, PhysAccess, ENTRIES, KERNEL_PML4_FIRST, PTE_ADDR, PTE_P, PTE_PS, PTE_RW, PTE_XD};
use crate::{MmError, PAGE_SIZE};

/// Global page (SDM Vol. 3A §4.10.2.4): kept across CR3 loads when CR4.PGE = 1.
pub const PTE_G: u64 = 1 << 8;
/// Page-level write-through and cache-disable: with the default PAT, PCD|PWT
/// selects UC (SDM Vol. 3A §11.12.3, Table 11-11).
pub const PTE_PWT: u64 = 1 << 3;
pub const PTE_PCD: u64 = 1 << 4;
const LARGE: u64 = 2 << 20;

/// One section of the kernel image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageSection {
    pub va: u64,
    pub pa: u64,
    pub len: u64,
    pub write: bool,
    pub exec: bool,
}

/// What the kernel half contains.
#[derive(Clone, Copy, Debug)]
pub struct KernelLayout<'a> {
    /// Virtual base of the direct map (2 MiB aligned, in the upper half).
    pub direct_base: u64,
    /// Bytes of physical memory to map directly (rounded up to 2 MiB).
    pub direct_size: u64,
    /// Physical ranges that hold RAM (mapped write-back; the rest uncached).
    pub ram: &'a [(u64, u64)],
    pub image: &'a [ImageSection],
}

/// Result of [`build`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelRoot {
    pub root: Frame,
    /// Table pages used (all from `alloc`).
    pub tables: usize,
}

struct Builder<'p, P: PhysAccess, A: FnMut() -> Option<Frame>> {
    phys: &'p P,
    alloc: A,
    tables: usize,
}

impl<P: PhysAccess, A: FnMut() -> Option<Frame>> Builder<'_, P, A> {
    fn table(&mut self) -> Result<Frame, MmError> {
        let f = (self.alloc)().ok_or(MmError::OutOfMemory)?;
        self.phys.zero_table(f);
        self.tables += 1;
        Ok(f)
    }

    /// The table one level below entry `index` of `table`, created if absent.
    fn next(&mut self, table: Frame, index: usize) -> Result<Frame, MmError> {
        let e = self.phys.read_entry(table, index);
        if e & PTE_P != 0 {
            if e & PTE_PS != 0 {
                return Err(MmError::AlreadyMapped);
            }
            return Ok(Frame::from_pfn((e & PTE_ADDR) >> 12));
        }
        let t = self.table()?;
        self.phys.write_entry(table, index, t.addr() | PTE_P | PTE_RW);
        Ok(t)
    }
}

fn overlaps_ram(ram: &[(u64, u64)], start: u64, end: u64) -> bool {
    ram.iter().any(|&(b, l)| b < end && b.saturating_add(l) > start)
}

/// Build the kernel root table. `alloc` hands out zeroable frames (the
/// kernel's own, not charged to any container).
pub fn build<P: PhysAccess>(phys: &P, alloc: impl FnMut() -> Option<Frame>, layout: &KernelLayout<'_>) -> Result<KernelRoot, MmError> {
    let mut b = Builder { phys, alloc, tables: 0 };
    let root = b.table()?;
    let check = |va: u64| {
        if (va >> 47) != (1 << 17) - 1 || table_index(va, 4) < KERNEL_PML4_FIRST {
            Err(MmError::NonCanonical)
        } else {
            Ok(())
        }
    };
    if !layout.direct_base.is_multiple_of(LARGE) {
        return Err(MmError::Misaligned);
    }
    let size = layout.direct_size.div_ceil(LARGE) * LARGE;
    let mut pa = 0;
    while pa < size {
        let va = layout.direct_base + pa;
        check(va)?;
        let pdpt = b.next(root, table_index(va, 4))?;
        let pd = b.next(pdpt, table_index(va, 3))?;
        let mut e = pa | PTE_P | PTE_RW | PTE_PS | PTE_G | PTE_XD;
        if !overlaps_ram(layout.ram, pa, pa + LARGE) {
            e |= PTE_PCD | PTE_PWT;
        }
        let i = table_index(va, 2);
        if phys.read_entry(pd, i) & PTE_P != 0 {
            return Err(MmError::AlreadyMapped);
        }
        phys.write_entry(pd, i, e);
        pa += LARGE;
    }
    for s in layout.image {
        if s.va % PAGE_SIZE != 0 || s.pa % PAGE_SIZE != 0 {
            return Err(MmError::Misaligned);
        }
        let mut off = 0;
        while off < s.len {
            let va = s.va + off;
            check(va)?;
            let pdpt = b.next(root, table_index(va, 4))?;
            let pd = b.next(pdpt, table_index(va, 3))?;
            let pt = b.next(pd, table_index(va, 2))?;
            let i = table_index(va, 1);
            if phys.read_entry(pt, i) & PTE_P != 0 {
                return Err(MmError::AlreadyMapped);
            }
            let mut e = (s.pa + off) | PTE_P | PTE_G;
            if s.write {
                e |= PTE_RW;
            }
            if !s.exec {
                e |= PTE_XD;
            }
            phys.write_entry(pt, i, e);
            off += PAGE_SIZE;
        }
    }
    Ok(KernelRoot { root, tables: b.tables })
}

/// Pages of one slot of a [`StackArea`]: a stack takes the top of its slot,
/// the pages below it are its guard.
pub const STACK_SLOT_PAGES: usize = 8;
/// Slots in a stack area (one page table: 2 MiB).
pub const STACK_SLOTS: usize = ENTRIES / STACK_SLOT_PAGES;

/// Kernel stacks with guard pages: a 2 MiB area of the kernel half mapped
/// with 4 KiB pages through one page table, cut into [`STACK_SLOTS`] slots
/// of [`STACK_SLOT_PAGES`] pages. A stack of `pages` pages is mapped at the
/// top of its slot and the pages below it stay unmapped, so a stack that
/// overflows page-faults instead of writing over whatever lies below it (in
/// the direct map, another process's memory). The table hangs below the
/// kernel's root before any address space copies the kernel half, so every
/// address space sees the same stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackArea {
    pub base: u64,
    pub table: Frame,
}

/// What an address in a [`StackArea`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackPart {
    /// A mapped page of slot `slot`'s stack.
    Stack { slot: usize },
    /// An unmapped page of slot `slot`: below its stack (its guard), or a
    /// slot with no stack.
    Guard { slot: usize },
}

/// Create the page table of a stack area at `base` (2 MiB aligned, in the
/// kernel half) below `root`; returns the area and the table pages added.
pub fn add_stack_area<P: PhysAccess>(phys: &P, root: Frame, base: u64, alloc: impl FnMut() -> Option<Frame>) -> Result<(StackArea, usize), MmError> {
    if !base.is_multiple_of(LARGE) {
        return Err(MmError::Misaligned);
    }
    if (base >> 47) != (1 << 17) - 1 || table_index(base, 4) < KERNEL_PML4_FIRST {
        return Err(MmError::NonCanonical);
    }
    let mut b = Builder { phys, alloc, tables: 0 };
    let pdpt = b.next(root, table_index(base, 4))?;
    let pd = b.next(pdpt, table_index(base, 3))?;
    if phys.read_entry(pd, table_index(base, 2)) & PTE_P != 0 {
        return Err(MmError::AlreadyMapped);
    }
    let table = b.next(pd, table_index(base, 2))?;
    Ok((StackArea { base, table }, b.tables))
}

impl StackArea {
    /// Lowest address of slot `slot`.
    pub fn slot_base(&self, slot: usize) -> u64 {
        self.base + (slot * STACK_SLOT_PAGES) as u64 * PAGE_SIZE
    }

    /// Top (end) of slot `slot`'s stack.
    pub fn top(&self, slot: usize) -> u64 {
        self.slot_base(slot + 1)
    }

    /// Map `pages` frames from `first` (contiguous) as slot `slot`'s stack,
    /// read-write and never executable, at the top of the slot; returns the
    /// stack's lowest address. At least one page of the slot stays a guard.
    pub fn map<P: PhysAccess>(&self, phys: &P, slot: usize, first: Frame, pages: usize) -> Result<u64, MmError> {
        if slot >= STACK_SLOTS || pages == 0 || pages >= STACK_SLOT_PAGES {
            return Err(MmError::BadFrame);
        }
        let lowest = STACK_SLOT_PAGES - pages;
        let at = slot * STACK_SLOT_PAGES;
        if (at..at + STACK_SLOT_PAGES).any(|i| phys.read_entry(self.table, i) & PTE_P != 0) {
            return Err(MmError::AlreadyMapped);
        }
        for i in 0..pages {
            let pa = first.addr() + (i as u64) * PAGE_SIZE;
            phys.write_entry(self.table, at + lowest + i, pa | PTE_P | PTE_RW | PTE_XD);
        }
        Ok(self.slot_base(slot) + lowest as u64 * PAGE_SIZE)
    }

    /// Unmap slot `slot`'s stack (the caller then invalidates the TLBs that
    /// may hold it, before the frames are reused).
    pub fn unmap<P: PhysAccess>(&self, phys: &P, slot: usize) {
        if slot >= STACK_SLOTS {
            return;
        }
        for i in slot * STACK_SLOT_PAGES..(slot + 1) * STACK_SLOT_PAGES {
            phys.write_entry(self.table, i, 0);
        }
    }

    /// The page of the area `va` lies in and its page-table entry, if in the area.
    fn entry<P: PhysAccess>(&self, phys: &P, va: u64) -> Option<(usize, u64)> {
        let off = va.checked_sub(self.base).filter(|&o| o < (ENTRIES as u64) * PAGE_SIZE)?;
        let page = (off / PAGE_SIZE) as usize;
        Some((page, phys.read_entry(self.table, page)))
    }

    /// Which slot `va` lies in, and whether on a mapped stack page.
    pub fn locate<P: PhysAccess>(&self, phys: &P, va: u64) -> Option<StackPart> {
        let (page, e) = self.entry(phys, va)?;
        let slot = page / STACK_SLOT_PAGES;
        Some(if e & PTE_P != 0 { StackPart::Stack { slot } } else { StackPart::Guard { slot } })
    }

    /// The frame behind stack address `va`, if mapped.
    pub fn frame<P: PhysAccess>(&self, phys: &P, va: u64) -> Option<Frame> {
        let (_, e) = self.entry(phys, va)?;
        (e & PTE_P != 0).then(|| Frame::from_pfn((e & PTE_ADDR) >> 12))
    }
}

/// Walk the kernel tables: the physical address and (write, exec, uncached)
/// of virtual address `va`, for checks and diagnostics.
pub fn lookup<P: PhysAccess>(phys: &P, root: Frame, va: u64) -> Option<(u64, bool, bool, bool)> {
    let mut table = root;
    for level in [4u32, 3, 2, 1] {
        let e = phys.read_entry(table, table_index(va, level));
        if e & PTE_P == 0 {
            return None;
        }
        let leaf = level == 1 || e & PTE_PS != 0;
        if leaf {
            let page = if level == 1 { PAGE_SIZE } else { 1 << (12 + 9 * (level - 1)) };
            let pa = (e & PTE_ADDR & !(page - 1)) + (va & (page - 1));
            return Some((pa, e & PTE_RW != 0, e & PTE_XD == 0, e & PTE_PCD != 0));
        }
        table = Frame::from_pfn((e & PTE_ADDR) >> 12);
    }
    let _ = ENTRIES;
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Fake(RefCell<HashMap<u64, [u64; 512]>>);
    impl PhysAccess for Fake {
        fn read_entry(&self, t: Frame, i: usize) -> u64 {
            self.0.borrow().get(&t.pfn()).map(|p| p[i]).unwrap_or(0)
        }
        fn write_entry(&self, t: Frame, i: usize, v: u64) {
            self.0.borrow_mut().entry(t.pfn()).or_insert([0; 512])[i] = v;
        }
    }

    #[test]
    fn direct_map_and_image_rights() {
        let phys = Fake::default();
        let mut next = 0x1000u64;
        let alloc = || {
            next += 1;
            Some(Frame::from_pfn(next))
        };
        let image = [
            ImageSection { va: 0xffff_ffff_8010_1000, pa: 0x10_1000, len: 0x2000, write: false, exec: true },
            ImageSection { va: 0xffff_ffff_8010_3000, pa: 0x10_3000, len: 0x1000, write: true, exec: false },
        ];
        let layout = KernelLayout {
            direct_base: 0xffff_8000_0000_0000,
            direct_size: 4 << 30,
            ram: &[(0, 0x9f000), (0x10_0000, 0x0ff0_0000)],
            image: &image,
        };
        let k = build(&phys, alloc, &layout).unwrap();
        // 1 root + 1 PDPT + 4 PDs for the direct map, PDPT + PD + PT for the image.
        assert_eq!(k.tables, 9);
        let l = |va| lookup(&phys, k.root, va).unwrap();
        assert_eq!(l(0xffff_8000_0012_3456), (0x12_3456, true, false, false));
        assert!(l(0xffff_8000_fee0_0000).3, "MMIO above RAM is uncached");
        assert_eq!(l(0xffff_ffff_8010_1234), (0x10_1234, false, true, false), "text: RX");
        assert_eq!(l(0xffff_ffff_8010_3008), (0x10_3008, true, false, false), "data: RW, NX");
        assert!(lookup(&phys, k.root, 0xffff_ffff_8010_4000).is_none());
        assert!(lookup(&phys, k.root, 0x1000).is_none(), "no user or identity mapping");
    }

    #[test]
    fn stack_area_maps_stacks_above_unmapped_guards() {
        let phys = Fake::default();
        let mut next = 0x1000u64;
        let mut alloc = || {
            next += 1;
            Some(Frame::from_pfn(next))
        };
        let layout = KernelLayout { direct_base: 0xffff_8000_0000_0000, direct_size: 1 << 21, ram: &[], image: &[] };
        let k = build(&phys, &mut alloc, &layout).unwrap();
        let base = 0xffff_fe00_0000_0000;
        let (area, added) = add_stack_area(&phys, k.root, base, &mut alloc).unwrap();
        assert_eq!(added, 3, "a PDPT, a PD and the page table");
        assert_eq!(add_stack_area(&phys, k.root, base, &mut alloc), Err(MmError::AlreadyMapped));
        // Slot 1: 4 pages from frame 0x200 at the top of the slot.
        let low = area.map(&phys, 1, Frame::from_pfn(0x200), 4).unwrap();
        let top = area.top(1);
        assert_eq!((top - low, top), (4 * PAGE_SIZE, base + 2 * 8 * PAGE_SIZE));
        assert_eq!(lookup(&phys, k.root, low), Some((0x20_0000, true, false, false)), "stack: RW, NX");
        assert_eq!(lookup(&phys, k.root, top - 8), Some((0x20_3ff8, true, false, false)));
        // Every page below the stack down to the previous slot's top is a guard.
        for va in (area.top(0)..low).step_by(PAGE_SIZE as usize) {
            assert!(lookup(&phys, k.root, va).is_none(), "guard page {va:#x} mapped");
            assert_eq!(area.locate(&phys, va), Some(StackPart::Guard { slot: 1 }));
        }
        assert_eq!(area.locate(&phys, low - 8), Some(StackPart::Guard { slot: 1 }), "just below the stack");
        assert_eq!(area.locate(&phys, low), Some(StackPart::Stack { slot: 1 }));
        assert_eq!(area.frame(&phys, top - 1), Some(Frame::from_pfn(0x203)));
        assert_eq!(area.locate(&phys, base - 8), None);
        assert_eq!(area.locate(&phys, base + (2 << 20)), None);
        // A neighbour does not overlap; a mapped slot cannot be mapped twice.
        let low2 = area.map(&phys, 2, Frame::from_pfn(0x300), 4).unwrap();
        assert!(low2 >= top + 4 * PAGE_SIZE, "slot 2's stack starts above its own guard");
        assert_eq!(area.map(&phys, 1, Frame::from_pfn(0x400), 4), Err(MmError::AlreadyMapped));
        // At least one guard page; slots in range.
        assert_eq!(area.map(&phys, 3, Frame::from_pfn(0x400), STACK_SLOT_PAGES), Err(MmError::BadFrame));
        assert_eq!(area.map(&phys, STACK_SLOTS, Frame::from_pfn(0x400), 4), Err(MmError::BadFrame));
        // Unmapped, the slot is all guard and can take a stack again.
        area.unmap(&phys, 1);
        assert!(lookup(&phys, k.root, low).is_none());
        assert_eq!(area.frame(&phys, low), None);
        assert_eq!(area.locate(&phys, top - 8), Some(StackPart::Guard { slot: 1 }));
        assert_eq!(lookup(&phys, k.root, low2), Some((0x30_0000, true, false, false)), "the neighbour stays");
        assert!(area.map(&phys, 1, Frame::from_pfn(0x500), 4).is_ok());
        // Misplaced areas.
        assert_eq!(add_stack_area(&phys, k.root, base + 4096, &mut alloc).map(|_| ()), Err(MmError::Misaligned));
        assert_eq!(add_stack_area(&phys, k.root, 0x4000_0000, &mut alloc).map(|_| ()), Err(MmError::NonCanonical));
    }

    #[test]
    fn bad_layouts_are_errors() {
        let phys = Fake::default();
        let mut n = 0;
        let alloc = || {
            n += 1;
            Some(Frame::from_pfn(n))
        };
        let user = [ImageSection { va: 0x40_0000, pa: 0, len: 0x1000, write: false, exec: true }];
        let l = KernelLayout { direct_base: 0xffff_8000_0000_0000, direct_size: 0, ram: &[], image: &user };
        assert_eq!(build(&phys, alloc, &l), Err(MmError::NonCanonical));
        let l = KernelLayout { direct_base: 0xffff_8000_0000_1000, direct_size: 1 << 21, ram: &[], image: &[] };
        assert_eq!(build(&phys, || Some(Frame::from_pfn(9)), &l), Err(MmError::Misaligned));
        let l = KernelLayout { direct_base: 0xffff_8000_0000_0000, direct_size: 1 << 21, ram: &[], image: &[] };
        assert_eq!(build(&phys, || None, &l), Err(MmError::OutOfMemory));
    }
}
