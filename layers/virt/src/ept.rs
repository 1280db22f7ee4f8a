//! Intel extended page tables (SDM Vol. 3C §29.3): guest-physical to host
//! physical, 4 levels, 4 KiB leaves. The entry format differs from ordinary
//! paging (bits 0-2 read/write/execute, bits 3-5 memory type on leaves), so
//! EPT has its own small builder; AMD's nested page tables are ordinary page
//! tables and use `mm::AddressSpace` directly.
//!
//! Table pages are allocated through the VM owner's container, like every
//! page a process causes.

use mm::paging::PhysAccess;
use mm::{ContainerId, Frame, MmError};

const EPT_R: u64 = 1;
const EPT_W: u64 = 2;
const EPT_X: u64 = 4;
/// Leaf memory type write-back (SDM Vol. 3C §29.3.7).
const EPT_WB: u64 = 6 << 3;
const ADDR: u64 = 0x000f_ffff_ffff_f000;
/// Guest-physical addresses EPT covers here (48 bits: 4 levels).
pub const GPA_LIMIT: u64 = 1 << 48;

/// One VM's EPT.
pub struct Ept {
    pub root: Frame,
    container: ContainerId,
    tables: usize,
    /// Test-only deliberate bug the refinement check must catch: `map`
    /// overwrites an existing leaf instead of refusing.
    #[cfg(test)]
    pub(crate) mutant_overwrite: bool,
}

fn index(gpa: u64, level: u32) -> usize {
    ((gpa >> (12 + 9 * (level - 1))) & 511) as usize
}

impl Ept {
    pub fn new(m: mm::Mm<'_, impl PhysAccess>, container: ContainerId) -> Result<Ept, MmError> {
        let root = m.containers.alloc_page(m.frames, container)?;
        m.phys.zero_table(root);
        Ok(Ept {
            root,
            container,
            tables: 1,
            #[cfg(test)]
            mutant_overwrite: false,
        })
    }

    /// The EPT pointer for the VMCS: root, write-back, 4-level walk (SDM Vol. 3C §24.6.11).
    pub fn eptp(&self) -> u64 {
        self.root.addr() | 6 | (3 << 3)
    }

    pub fn tables(&self) -> usize {
        self.tables
    }

    /// Map guest page `gpa` to `frame` (readable; `write`, `exec` as given).
    pub fn map(&mut self, m: mm::Mm<'_, impl PhysAccess>, gpa: u64, frame: Frame, write: bool, exec: bool) -> Result<(), MmError> {
        if !gpa.is_multiple_of(4096) {
            return Err(MmError::Misaligned);
        }
        if gpa >= GPA_LIMIT {
            return Err(MmError::NonCanonical);
        }
        let mut table = self.root;
        for level in [4u32, 3, 2] {
            let i = index(gpa, level);
            let e = m.phys.read_entry(table, i);
            table = if e & (EPT_R | EPT_W | EPT_X) != 0 {
                Frame::from_pfn((e & ADDR) >> 12)
            } else {
                let t = m.containers.alloc_page(m.frames, self.container)?;
                m.phys.zero_table(t);
                self.tables += 1;
                // Intermediate entries grant everything: the leaf decides.
                m.phys.write_entry(table, i, t.addr() | EPT_R | EPT_W | EPT_X);
                t
            };
        }
        let i = index(gpa, 1);
        #[cfg(test)]
        let check = !self.mutant_overwrite;
        #[cfg(not(test))]
        let check = true;
        if check && m.phys.read_entry(table, i) & (EPT_R | EPT_W | EPT_X) != 0 {
            return Err(MmError::AlreadyMapped);
        }
        let mut e = frame.addr() | EPT_R | EPT_WB;
        if write {
            e |= EPT_W;
        }
        if exec {
            e |= EPT_X;
        }
        m.phys.write_entry(table, i, e);
        Ok(())
    }

    /// The frame at `gpa`, if mapped.
    pub fn translate(&self, m: mm::Mm<'_, impl PhysAccess>, gpa: u64) -> Option<Frame> {
        self.lookup(m, gpa).map(|(f, _, _)| f)
    }

    /// The frame at `gpa` with its write and execute rights, if mapped.
    pub fn lookup(&self, m: mm::Mm<'_, impl PhysAccess>, gpa: u64) -> Option<(Frame, bool, bool)> {
        if gpa >= GPA_LIMIT {
            return None;
        }
        let mut table = self.root;
        let mut e = 0;
        for level in [4u32, 3, 2, 1] {
            e = m.phys.read_entry(table, index(gpa, level));
            if e & (EPT_R | EPT_W | EPT_X) == 0 {
                return None;
            }
            table = Frame::from_pfn((e & ADDR) >> 12);
        }
        Some((table, e & EPT_W != 0, e & EPT_X != 0))
    }

    /// Free every table page; `leaf` is told of every mapped guest page.
    pub fn destroy(self, m: mm::Mm<'_, impl PhysAccess>, mut leaf: impl FnMut(u64, Frame)) {
        fn walk(m: &mm::Mm<'_, impl PhysAccess>, c: ContainerId, table: Frame, level: u32, base: u64, leaf: &mut dyn FnMut(u64, Frame)) {
            for i in 0..512 {
                let e = m.phys.read_entry(table, i);
                if e & (EPT_R | EPT_W | EPT_X) == 0 {
                    continue;
                }
                let f = Frame::from_pfn((e & ADDR) >> 12);
                let gpa = base | (i as u64) << (12 + 9 * (level - 1));
                if level == 1 {
                    leaf(gpa, f);
                } else {
                    walk(m, c, f, level - 1, gpa, leaf);
                    let _ = m.containers.free_page(m.frames, c, f);
                }
            }
        }
        walk(&m, self.container, self.root, 4, 0, &mut leaf);
        let _ = m.containers.free_page(m.frames, self.container, self.root);
    }
}
