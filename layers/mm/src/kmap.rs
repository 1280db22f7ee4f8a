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
    if layout.direct_base % LARGE != 0 {
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
