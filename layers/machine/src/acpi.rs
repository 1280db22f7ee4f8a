//! Discovering the processors and interrupt controllers: the ACPI MADT
//! (ACPI 6.5 §5.2.12), with the Intel MultiProcessor tables (MP spec 1.4 §4)
//! as a fallback for firmware without ACPI.
//!
//! Only reads physical memory through [`PhysRead`]; every length and checksum
//! is verified, so a corrupt table yields an error, not a wild read.

use crate::cpu::MAX_CPUS;
use crate::physmem::PhysRead;
use arrayvec::ArrayVec;

/// A processor's local APIC as the firmware lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuEntry {
    pub apic_id: u32,
}

/// An I/O APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApicEntry {
    pub id: u8,
    pub phys: u64,
    /// First global system interrupt this I/O APIC serves.
    pub gsi_base: u32,
}

/// Polarity / trigger mode of an interrupt source override (MPS INTI flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqOverride {
    /// ISA IRQ number.
    pub irq: u8,
    pub gsi: u32,
    pub active_low: bool,
    pub level_triggered: bool,
}

/// What the platform tables say about CPUs and interrupt routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub source: TableSource,
    pub lapic_phys: u64,
    /// Enabled processors, in table order (the first `MAX_CPUS` of them).
    pub cpus: ArrayVec<CpuEntry, MAX_CPUS>,
    /// Enabled processors beyond `MAX_CPUS`, not used.
    pub cpus_over_limit: usize,
    pub ioapics: ArrayVec<IoApicEntry, 8>,
    pub overrides: ArrayVec<IrqOverride, 24>,
    /// Dual 8259 PICs present (they must be masked when the I/O APIC is used).
    pub legacy_pics: bool,
    /// ACPI FADT fields used to power off (PM1a control block port), if found.
    pub pm1a_control: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableSource {
    Acpi,
    MpSpec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscoveryError {
    /// No RSDP (ACPI) and no MP floating pointer were found.
    NoTables,
    /// A table's checksum did not add up to zero.
    BadChecksum([u8; 4]),
    /// A table was unreadable or shorter than its header says.
    Truncated([u8; 4]),
    /// ACPI is present but has no MADT ("APIC") table, and no MP tables exist.
    NoMadt,
}

impl core::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let sig = |s: &[u8; 4]| arrayvec::ArrayString::<4>::from(core::str::from_utf8(s).unwrap_or("????")).unwrap_or_default();
        match self {
            Self::NoTables => write!(f, "no ACPI RSDP and no MP floating pointer in the BIOS areas"),
            Self::BadChecksum(s) => write!(f, "ACPI/MP table {} has a bad checksum", sig(s)),
            Self::Truncated(s) => write!(f, "ACPI/MP table {} is truncated or unreadable", sig(s)),
            Self::NoMadt => write!(f, "ACPI tables have no MADT (APIC) and there are no MP tables"),
        }
    }
}

/// Default local APIC address (SDM Vol. 3A §11.4.1).
pub const DEFAULT_LAPIC_PHYS: u64 = 0xfee0_0000;

/// Find the platform tables: ACPI first, the MP tables if ACPI has none.
pub fn discover(mem: &impl PhysRead) -> Result<Platform, DiscoveryError> {
    match find_rsdp(mem) {
        Some(rsdp) => match parse_acpi(mem, rsdp) {
            Err(DiscoveryError::NoMadt) => parse_mp(mem).ok_or(DiscoveryError::NoMadt),
            other => other,
        },
        None => parse_mp(mem).ok_or(DiscoveryError::NoTables),
    }
}

fn checksum_ok(mem: &impl PhysRead, pa: u64, len: u64) -> Option<bool> {
    let mut sum = 0u8;
    let mut buf = [0u8; 64];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(64) as usize;
        if !mem.read(pa + off, &mut buf[..n]) {
            return None;
        }
        sum = buf[..n].iter().fold(sum, |s, b| s.wrapping_add(*b));
        off += n as u64;
    }
    Some(sum == 0)
}

/// BIOS areas searched for signatures (ACPI §5.2.5.1, MP spec §4): first KiB of
/// the EBDA, then 0xE0000..0x100000, on 16-byte boundaries.
fn scan_bios(mem: &impl PhysRead, sig: &[u8], check_len: u64) -> Option<u64> {
    let ebda = mem.read_u16(0x40e).map(|seg| (seg as u64) << 4).filter(|a| (0x80000..0xa0000).contains(a));
    let areas = [ebda.map(|a| (a, a + 1024)), Some((0xe0000, 0x100000)), Some((0x9fc00, 0xa0000))];
    for (start, end) in areas.into_iter().flatten() {
        let mut pa = start;
        let mut probe = [0u8; 8];
        while pa + check_len <= end {
            if mem.read(pa, &mut probe[..sig.len()]) && &probe[..sig.len()] == sig && checksum_ok(mem, pa, check_len) == Some(true) {
                return Some(pa);
            }
            pa += 16;
        }
    }
    None
}

fn find_rsdp(mem: &impl PhysRead) -> Option<u64> {
    scan_bios(mem, b"RSD PTR ", 20)
}

/// Read an SDT header: (signature, length). Checks checksum.
fn sdt(mem: &impl PhysRead, pa: u64) -> Result<([u8; 4], u32), DiscoveryError> {
    let mut sig = [0u8; 4];
    if !mem.read(pa, &mut sig) {
        return Err(DiscoveryError::Truncated(*b"????"));
    }
    let len = mem.read_u32(pa + 4).ok_or(DiscoveryError::Truncated(sig))?;
    if !(36..=1 << 20).contains(&len) {
        return Err(DiscoveryError::Truncated(sig));
    }
    match checksum_ok(mem, pa, len as u64) {
        None => Err(DiscoveryError::Truncated(sig)),
        Some(false) => Err(DiscoveryError::BadChecksum(sig)),
        Some(true) => Ok((sig, len)),
    }
}

fn parse_acpi(mem: &impl PhysRead, rsdp: u64) -> Result<Platform, DiscoveryError> {
    let revision = mem.read_u8(rsdp + 15).ok_or(DiscoveryError::Truncated(*b"RSDP"))?;
    // ACPI 2.0+: prefer the XSDT (64-bit entries) when its extended checksum holds.
    let (root, entry_size) = if revision >= 2 && checksum_ok(mem, rsdp, 36) == Some(true) {
        (mem.read_u64(rsdp + 24).ok_or(DiscoveryError::Truncated(*b"RSDP"))?, 8)
    } else {
        (mem.read_u32(rsdp + 16).ok_or(DiscoveryError::Truncated(*b"RSDP"))? as u64, 4)
    };
    let (_, root_len) = sdt(mem, root)?;
    let mut madt = None;
    let mut fadt = None;
    let entries = (root_len as u64 - 36) / entry_size;
    for i in 0..entries {
        let at = root + 36 + i * entry_size;
        let table = if entry_size == 8 { mem.read_u64(at) } else { mem.read_u32(at).map(u64::from) };
        let Some(table) = table else { return Err(DiscoveryError::Truncated(*b"RSDT")) };
        let mut sig = [0u8; 4];
        if !mem.read(table, &mut sig) {
            continue;
        }
        match &sig {
            b"APIC" => madt = Some(table),
            b"FACP" => fadt = Some(table),
            _ => {}
        }
    }
    let madt = madt.ok_or(DiscoveryError::NoMadt)?;
    let mut p = parse_madt(mem, madt)?;
    if let Some(fadt) = fadt {
        // FADT PM1a_CNT_BLK at offset 64 (ACPI §5.2.9), a 32-bit I/O port.
        if sdt(mem, fadt).is_ok() {
            p.pm1a_control = mem.read_u32(fadt + 64).filter(|&v| v != 0 && v <= 0xffff).map(|v| v as u16);
        }
    }
    Ok(p)
}

fn parse_madt(mem: &impl PhysRead, madt: u64) -> Result<Platform, DiscoveryError> {
    let (_, len) = sdt(mem, madt)?;
    let trunc = DiscoveryError::Truncated(*b"APIC");
    let mut p = Platform {
        source: TableSource::Acpi,
        lapic_phys: mem.read_u32(madt + 36).ok_or(trunc)? as u64,
        cpus: ArrayVec::new(),
        cpus_over_limit: 0,
        ioapics: ArrayVec::new(),
        overrides: ArrayVec::new(),
        legacy_pics: mem.read_u32(madt + 40).ok_or(trunc)? & 1 != 0,
        pm1a_control: None,
    };
    let end = madt + len as u64;
    let mut at = madt + 44;
    while at + 2 <= end {
        let ty = mem.read_u8(at).ok_or(trunc)?;
        let elen = mem.read_u8(at + 1).ok_or(trunc)? as u64;
        if elen < 2 || at + elen > end {
            return Err(trunc);
        }
        match (ty, elen) {
            // Processor Local APIC: flags bit 0 enabled, bit 1 online-capable.
            (0, 8..) => {
                let apic_id = mem.read_u8(at + 3).ok_or(trunc)? as u32;
                let flags = mem.read_u32(at + 4).ok_or(trunc)?;
                if flags & 1 != 0 {
                    add_cpu(&mut p, apic_id);
                }
            }
            (1, 12..) => {
                let io = IoApicEntry {
                    id: mem.read_u8(at + 2).ok_or(trunc)?,
                    phys: mem.read_u32(at + 4).ok_or(trunc)? as u64,
                    gsi_base: mem.read_u32(at + 8).ok_or(trunc)?,
                };
                let _ = p.ioapics.try_push(io);
            }
            (2, 10..) => {
                let flags = mem.read_u16(at + 8).ok_or(trunc)?;
                let o = IrqOverride {
                    irq: mem.read_u8(at + 3).ok_or(trunc)?,
                    gsi: mem.read_u32(at + 4).ok_or(trunc)?,
                    active_low: flags & 3 == 3,
                    level_triggered: (flags >> 2) & 3 == 3,
                };
                let _ = p.overrides.try_push(o);
            }
            (5, 12..) => p.lapic_phys = mem.read_u64(at + 4).ok_or(trunc)?,
            // Processor Local x2APIC.
            (9, 16..) => {
                let apic_id = mem.read_u32(at + 4).ok_or(trunc)?;
                let flags = mem.read_u32(at + 8).ok_or(trunc)?;
                if flags & 1 != 0 && apic_id < 0xff {
                    add_cpu(&mut p, apic_id);
                }
            }
            _ => {}
        }
        at += elen;
    }
    Ok(p)
}

fn add_cpu(p: &mut Platform, apic_id: u32) {
    if p.cpus.iter().any(|c| c.apic_id == apic_id) {
        return;
    }
    if p.cpus.try_push(CpuEntry { apic_id }).is_err() {
        p.cpus_over_limit += 1;
    }
}

/// Intel MP tables (MP spec 1.4 §4.1, §4.2): floating pointer "_MP_", then the
/// configuration table "PCMP" with processor (type 0), bus (1), I/O APIC (2),
/// I/O interrupt (3) and local interrupt (4) entries.
fn parse_mp(mem: &impl PhysRead) -> Option<Platform> {
    let fp = scan_bios(mem, b"_MP_", 16)?;
    let cfg = mem.read_u32(fp + 4)? as u64;
    if cfg == 0 {
        return None; // a "default configuration": not supported, treat as absent
    }
    let mut sig = [0u8; 4];
    if !mem.read(cfg, &mut sig) || &sig != b"PCMP" {
        return None;
    }
    let base_len = mem.read_u16(cfg + 4)? as u64;
    if !checksum_ok(mem, cfg, base_len)? {
        return None;
    }
    let count = mem.read_u16(cfg + 34)?;
    let mut p = Platform {
        source: TableSource::MpSpec,
        lapic_phys: mem.read_u32(cfg + 36)? as u64,
        cpus: ArrayVec::new(),
        cpus_over_limit: 0,
        ioapics: ArrayVec::new(),
        overrides: ArrayVec::new(),
        legacy_pics: true,
        pm1a_control: None,
    };
    let mut at = cfg + 44;
    for _ in 0..count {
        match mem.read_u8(at)? {
            0 => {
                let flags = mem.read_u8(at + 3)?;
                if flags & 1 != 0 {
                    let id = mem.read_u8(at + 1)? as u32;
                    // The BSP (flags bit 1) goes first, as in the MADT convention.
                    if flags & 2 != 0 && !p.cpus.is_full() {
                        p.cpus.insert(0, CpuEntry { apic_id: id });
                    } else {
                        add_cpu(&mut p, id);
                    }
                }
                at += 20;
            }
            2 => {
                if mem.read_u8(at + 3)? & 1 != 0 {
                    let io = IoApicEntry {
                        id: mem.read_u8(at + 1)?,
                        phys: mem.read_u32(at + 4)? as u64,
                        gsi_base: 0,
                    };
                    let _ = p.ioapics.try_push(io);
                }
                at += 8;
            }
            1 | 3 | 4 => at += 8,
            _ => return None,
        }
    }
    Some(p)
}

impl Platform {
    /// The global system interrupt an ISA IRQ arrives on, with its polarity
    /// and trigger mode (ISA default: identity, active high, edge).
    pub fn isa_irq(&self, irq: u8) -> IrqOverride {
        self.overrides.iter().copied().find(|o| o.irq == irq).unwrap_or(IrqOverride {
            irq,
            gsi: irq as u32,
            active_low: false,
            level_triggered: false,
        })
    }

    /// The I/O APIC serving `gsi` and the pin on it.
    pub fn ioapic_for(&self, gsi: u32) -> Option<(&IoApicEntry, u32)> {
        // Each I/O APIC serves at most 240 inputs; pick the closest base at or below gsi.
        self.ioapics
            .iter()
            .filter(|io| io.gsi_base <= gsi && gsi - io.gsi_base < 240)
            .max_by_key(|io| io.gsi_base)
            .map(|io| (io, gsi - io.gsi_base))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::physmem::TestMem;
    use std::vec::Vec;

    fn fix_checksum(t: &mut [u8], at: usize) {
        t[at] = 0;
        let s = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        t[at] = 0u8.wrapping_sub(s);
    }

    fn sdt_bytes(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = std::vec![0u8; 36];
        t[..4].copy_from_slice(sig);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t, 9);
        t
    }

    fn acpi_image(madt_body: &[u8]) -> TestMem {
        let mut rsdp = std::vec![0u8; 20];
        rsdp[..8].copy_from_slice(b"RSD PTR ");
        rsdp[16..20].copy_from_slice(&0x10_0000u32.to_le_bytes());
        fix_checksum(&mut rsdp, 8);
        let rsdt = sdt_bytes(b"RSDT", &0x10_1000u32.to_le_bytes());
        let madt = sdt_bytes(b"APIC", madt_body);
        TestMem(std::vec![(0xf0000, rsdp), (0x10_0000, rsdt), (0x10_1000, madt)])
    }

    fn madt_body(cpus: &[(u8, u32)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
        for &(id, flags) in cpus {
            b.extend_from_slice(&[0, 8, id, id]);
            b.extend_from_slice(&flags.to_le_bytes());
        }
        b.extend_from_slice(&[1, 12, 0, 0]);
        b.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        // ISO: IRQ0 -> GSI2, default flags
        b.extend_from_slice(&[2, 10, 0, 0]);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b
    }

    #[test]
    fn madt_lists_enabled_cpus_ioapic_and_overrides() {
        let mem = acpi_image(&madt_body(&[(0, 1), (1, 1), (2, 0), (3, 1)]));
        let p = discover(&mem).unwrap();
        assert_eq!(p.source, TableSource::Acpi);
        assert_eq!(p.cpus.iter().map(|c| c.apic_id).collect::<Vec<_>>(), [0, 1, 3]);
        assert_eq!(p.ioapics[0].phys, 0xfec0_0000);
        assert_eq!(p.isa_irq(0).gsi, 2);
        assert_eq!(p.isa_irq(4).gsi, 4);
        assert_eq!(p.ioapic_for(4).map(|(_, pin)| pin), Some(4));
        assert!(p.legacy_pics);
    }

    #[test]
    fn cpus_beyond_the_limit_are_counted_not_used() {
        let cpus: Vec<(u8, u32)> = (0..20).map(|i| (i as u8, 1)).collect();
        let p = discover(&acpi_image(&madt_body(&cpus))).unwrap();
        assert_eq!(p.cpus.len(), MAX_CPUS);
        assert_eq!(p.cpus_over_limit, 20 - MAX_CPUS);
    }

    #[test]
    fn corrupt_tables_are_errors() {
        let mut mem = acpi_image(&madt_body(&[(0, 1)]));
        mem.0[2].1[50] ^= 0xff; // flip a byte inside the MADT
        assert_eq!(discover(&mem), Err(DiscoveryError::BadChecksum(*b"APIC")));
        // An entry whose length runs past the table end.
        let mut body = madt_body(&[(0, 1)]);
        body.extend_from_slice(&[0, 40]);
        assert_eq!(discover(&acpi_image(&body)), Err(DiscoveryError::Truncated(*b"APIC")));
        assert_eq!(discover(&TestMem(Vec::new())), Err(DiscoveryError::NoTables));
    }

    #[test]
    fn mp_tables_are_the_fallback() {
        let mut fp = std::vec![0u8; 16];
        fp[..4].copy_from_slice(b"_MP_");
        fp[4..8].copy_from_slice(&0xf1000u32.to_le_bytes());
        fp[8] = 1;
        fix_checksum(&mut fp, 10);
        let mut cfg = std::vec![0u8; 44];
        cfg[..4].copy_from_slice(b"PCMP");
        cfg[36..40].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
        let mut entries = Vec::new();
        for (id, flags) in [(1u8, 1u8), (0, 3)] {
            let mut e = std::vec![0u8; 20];
            e[1] = id;
            e[3] = flags;
            entries.extend(e);
        }
        entries.extend_from_slice(&[2, 2, 0x11, 1]);
        entries.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
        cfg.extend(entries);
        let len = cfg.len() as u16;
        cfg[4..6].copy_from_slice(&len.to_le_bytes());
        cfg[34..36].copy_from_slice(&3u16.to_le_bytes());
        fix_checksum(&mut cfg, 7);
        let mem = TestMem(std::vec![(0xf0000, fp), (0xf1000, cfg)]);
        let p = discover(&mem).unwrap();
        assert_eq!(p.source, TableSource::MpSpec);
        assert_eq!(p.cpus.iter().map(|c| c.apic_id).collect::<Vec<_>>(), [0, 1], "BSP first");
        assert_eq!(p.ioapics.len(), 1);
    }
}
