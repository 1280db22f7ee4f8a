//! Guest address translation, for the instructions the VMM emulates itself
//! (INS/OUTS): segment base plus offset to a linear address, and the
//! guest's own page tables from linear to guest-physical (Intel SDM Vol. 3A
//! chapter 4: 32-bit paging with 4 MiB pages under CR4.PSE, PAE paging,
//! 4-level paging with 2 MiB and 1 GiB pages).
//!
//! Only the present bits are checked: the access rights a real CPU would
//! also check (R/W, U/S, NX) are not, so the VMM never does more than the
//! guest's page tables map. 5-level paging (CR4.LA57) is refused.

use abi::vm::Regs;

const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;
/// Segment attribute bits (AMD VMCB layout, as `abi::vm::Segment`).
const ATTR_L: u16 = 1 << 9;
const ATTR_DB: u16 = 1 << 10;

const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;
/// Physical-address bits of an entry (bits 51-12).
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A paging-structure entry on the way is not present (or could not be
    /// read: it lies outside guest RAM).
    NotMapped,
    /// A paging mode this translator does not handle (5-level paging).
    Unsupported,
}

/// The CPU's address size for the instruction (2, 4 or 8 bytes), from
/// the mode and CS: 64-bit code, else CS.D/B, else 16-bit (an address-size
/// prefix is not visible to the VMM: the exit does not report it).
pub fn address_size(r: &Regs) -> u8 {
    let cs = &r.seg[abi::vm::CS];
    if r.efer & EFER_LMA != 0 && cs.attrib & ATTR_L != 0 {
        8
    } else if r.cr0 & CR0_PE != 0 && cs.attrib & ATTR_DB != 0 {
        4
    } else {
        2
    }
}

/// Linear address of `offset` in segment register `seg` (an index into
/// `Regs::seg`). In 64-bit mode only FS and GS have bases; the offset is
/// truncated to the address size.
pub fn linear(r: &Regs, seg: usize, offset: u64, addr_size: u8) -> u64 {
    let base = r.seg.get(seg).map(|s| s.base).unwrap_or(0);
    match addr_size {
        2 => base.wrapping_add(offset & 0xffff) & 0xffff_ffff,
        4 => base.wrapping_add(offset & 0xffff_ffff) & 0xffff_ffff,
        _ if seg == abi::vm::FS || seg == abi::vm::GS => base.wrapping_add(offset),
        _ => offset,
    }
}

/// Guest-physical address of `linear` under the guest's paging mode.
/// `read(gpa, buf)` reads guest-physical memory, false if it is not RAM.
pub fn translate(r: &Regs, linear: u64, read: &mut dyn FnMut(u64, &mut [u8]) -> bool) -> Result<u64, Fault> {
    let mut entry64 = |gpa: u64| -> Result<u64, Fault> {
        let mut b = [0u8; 8];
        if read(gpa, &mut b) {
            Ok(u64::from_le_bytes(b))
        } else {
            Err(Fault::NotMapped)
        }
    };
    if r.cr0 & CR0_PG == 0 {
        return Ok(linear & 0xffff_ffff);
    }
    if r.efer & EFER_LMA != 0 {
        if r.cr4 & CR4_LA57 != 0 {
            return Err(Fault::Unsupported);
        }
        let mut table = r.cr3 & ADDR;
        for (level, shift) in [(4, 39u32), (3, 30), (2, 21), (1, 12)] {
            let e = entry64(table + ((linear >> shift) & 0x1ff) * 8)?;
            if e & PRESENT == 0 {
                return Err(Fault::NotMapped);
            }
            if (level == 3 || level == 2) && e & PAGE_SIZE_BIT != 0 {
                let size = 1u64 << shift;
                return Ok((e & ADDR & !(size - 1)) | (linear & (size - 1)));
            }
            table = e & ADDR;
        }
        return Ok(table | (linear & 0xfff));
    }
    let linear = linear & 0xffff_ffff;
    if r.cr4 & CR4_PAE != 0 {
        // PAE: CR3 points at a 32-byte-aligned table of 4 PDPTEs.
        let pdpte = entry64((r.cr3 & 0xffff_ffe0) + (linear >> 30) * 8)?;
        if pdpte & PRESENT == 0 {
            return Err(Fault::NotMapped);
        }
        let pde = entry64((pdpte & ADDR) + ((linear >> 21) & 0x1ff) * 8)?;
        if pde & PRESENT == 0 {
            return Err(Fault::NotMapped);
        }
        if pde & PAGE_SIZE_BIT != 0 {
            return Ok((pde & ADDR & !0x1f_ffff) | (linear & 0x1f_ffff));
        }
        let pte = entry64((pde & ADDR) + ((linear >> 12) & 0x1ff) * 8)?;
        if pte & PRESENT == 0 {
            return Err(Fault::NotMapped);
        }
        return Ok((pte & ADDR) | (linear & 0xfff));
    }
    // 32-bit paging: 4-byte entries.
    let mut entry32 = |gpa: u64| -> Result<u64, Fault> {
        let mut b = [0u8; 4];
        if read(gpa, &mut b) {
            Ok(u32::from_le_bytes(b) as u64)
        } else {
            Err(Fault::NotMapped)
        }
    };
    let pde = entry32((r.cr3 & 0xffff_f000) + (linear >> 22) * 4)?;
    if pde & PRESENT == 0 {
        return Err(Fault::NotMapped);
    }
    if pde & PAGE_SIZE_BIT != 0 && r.cr4 & CR4_PSE != 0 {
        // 4 MiB page; PSE-36 puts physical bits 39-32 in PDE bits 20-13.
        let high = ((pde >> 13) & 0xff) << 32;
        return Ok(high | (pde & 0xffc0_0000) | (linear & 0x3f_ffff));
    }
    let pte = entry32((pde & 0xffff_f000) + ((linear >> 12) & 0x3ff) * 4)?;
    if pte & PRESENT == 0 {
        return Err(Fault::NotMapped);
    }
    Ok((pte & 0xffff_f000) | (linear & 0xfff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    struct Mem(Vec<u8>);

    impl Mem {
        fn put64(&mut self, at: u64, v: u64) {
            self.0[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
        }
        fn put32(&mut self, at: u64, v: u32) {
            self.0[at as usize..at as usize + 4].copy_from_slice(&v.to_le_bytes());
        }
        fn reader(&self) -> impl FnMut(u64, &mut [u8]) -> bool + '_ {
            move |gpa, buf| match self.0.get(gpa as usize..gpa as usize + buf.len()) {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }
    }

    #[test]
    fn real_and_protected_mode_without_paging() {
        let mut r = Regs::default();
        r.seg[abi::vm::DS].base = 0x10000;
        assert_eq!(address_size(&r), 2);
        assert_eq!(linear(&r, abi::vm::DS, 0x1_2345, 2), 0x12345, "offset wraps at 64 KiB");
        assert_eq!(linear(&r, abi::vm::DS, 0x5, 8), 0x5, "no DS base in 64-bit mode");
        r.seg[abi::vm::FS].base = 0x7000;
        assert_eq!(linear(&r, abi::vm::FS, 0x5, 8), 0x7005);
        let m = Mem(vec![0; 16]);
        assert_eq!(translate(&r, 0x12345, &mut m.reader()), Ok(0x12345));
        r.cr0 = CR0_PE;
        r.seg[abi::vm::CS].attrib = 0xc9b; // 32-bit code
        assert_eq!(address_size(&r), 4);
    }

    #[test]
    fn long_mode_4k_2m_1g() {
        let mut m = Mem(vec![0; 0x10000]);
        let mut r = Regs { cr0: CR0_PE | CR0_PG, cr4: CR4_PAE, efer: EFER_LMA | (1 << 8), cr3: 0x1000, ..Regs::default() };
        r.seg[abi::vm::CS].attrib = ATTR_L | 0x9b;
        assert_eq!(address_size(&r), 8);
        m.put64(0x1000, 0x2000 | 3); // PML4[0]
        m.put64(0x2000, 0x3000 | 3); // PDPT[0] -> PD
        m.put64(0x2008, 0x4000_0000 | 0x83); // PDPT[1]: 1 GiB page
        m.put64(0x3000, 0x4000 | 3); // PD[0] -> PT
        m.put64(0x3008, 0x60_0000 | 0x83); // PD[1]: 2 MiB page at 6 MiB
        m.put64(0x4000 + 5 * 8, 0xabc000 | 1); // PT[5]
        assert_eq!(translate(&r, 0x5123, &mut m.reader()), Ok(0xabc123));
        assert_eq!(translate(&r, 0x20_0042, &mut m.reader()), Ok(0x60_0042));
        assert_eq!(translate(&r, 0x4000_1234, &mut m.reader()), Ok(0x4000_1234));
        assert_eq!(translate(&r, 0x6000, &mut m.reader()), Err(Fault::NotMapped));
        assert_eq!(translate(&r, 1 << 39, &mut m.reader()), Err(Fault::NotMapped));
        // Tables outside guest RAM.
        m.put64(0x3010, 0x7fff_0000 | 3);
        assert_eq!(translate(&r, 0x40_0000, &mut m.reader()), Err(Fault::NotMapped));
        r.cr4 |= CR4_LA57;
        assert_eq!(translate(&r, 0, &mut m.reader()), Err(Fault::Unsupported));
    }

    #[test]
    fn pae_and_32bit_paging() {
        let mut m = Mem(vec![0; 0x10000]);
        let mut r = Regs { cr0: CR0_PE | CR0_PG, cr4: CR4_PAE, cr3: 0x1020, ..Regs::default() };
        m.put64(0x1020 + 8 * 3, 0x2000 | 1); // PDPTE[3]
        m.put64(0x2000 + 8 * 0x1ff, 0x20_0000 | 0x81); // 2 MiB page
        assert_eq!(translate(&r, 0xffe0_0010, &mut m.reader()), Ok(0x20_0010));
        r.cr4 = CR4_PSE;
        r.cr3 = 0x3000;
        m.put32(0x3000 + 4 * 0x3ff, 0x0040_0083); // 4 MiB page at 4 MiB
        m.put32(0x3000, 0x4000 | 1);
        m.put32(0x4000 + 4 * 2, 0x9000 | 1);
        assert_eq!(translate(&r, 0xffc0_0001, &mut m.reader()), Ok(0x40_0001));
        assert_eq!(translate(&r, 0x2fff, &mut m.reader()), Ok(0x9fff));
        assert_eq!(translate(&r, 0x3000, &mut m.reader()), Err(Fault::NotMapped));
    }
}
