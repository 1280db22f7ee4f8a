//! The boot information a Multiboot (v0.6.96) loader hands over: memory map,
//! command line, modules, loader name. Parsed once on the boot CPU into a
//! self-contained [`BootInfo`] (strings copied), so the loader's structures
//! may be overwritten afterwards.

use crate::physmem::PhysRead;
use arrayvec::{ArrayString, ArrayVec};

/// EAX value a Multiboot loader passes (Multiboot spec §3.2).
pub const LOADER_MAGIC: u32 = 0x2BAD_B002;

const FLAG_MEM: u32 = 1 << 0;
const FLAG_CMDLINE: u32 = 1 << 2;
const FLAG_MODS: u32 = 1 << 3;
const FLAG_MMAP: u32 = 1 << 6;
const FLAG_LOADER_NAME: u32 = 1 << 9;

pub const MAX_REGIONS: usize = 128;
pub const MAX_MODULES: usize = 16;

/// What a physical memory range holds (Multiboot mmap types, as ACPI E820).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RegionKind {
    Usable,
    AcpiReclaimable,
    AcpiNvs,
    Defective,
    Reserved,
}

impl RegionKind {
    fn from_type(t: u32) -> Self {
        match t {
            1 => Self::Usable,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::Defective,
            _ => Self::Reserved,
        }
    }
}

/// One range of the physical memory map, `[base, base + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub base: u64,
    pub len: u64,
    pub kind: RegionKind,
}

impl MemoryRegion {
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.len)
    }
}

/// A boot module (a file the loader placed in memory), `[start, end)` physical.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub start: u64,
    pub end: u64,
    pub name: ArrayString<64>,
}

/// Everything mc2 keeps from the loader.
#[derive(Clone, Debug)]
pub struct BootInfo {
    /// Sorted, non-overlapping (where ranges overlapped, the most restrictive kind won).
    pub memory: ArrayVec<MemoryRegion, MAX_REGIONS>,
    pub cmdline: ArrayString<1024>,
    pub modules: ArrayVec<Module, MAX_MODULES>,
    pub loader: ArrayString<64>,
    /// Regions or modules that did not fit the fixed tables and were dropped.
    pub dropped: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// The loader did not identify itself as Multiboot.
    BadMagic(u32),
    /// The information structure could not be read at the given address.
    Unreadable(u64),
    /// Neither a memory map nor the basic memory fields were given.
    NoMemoryInfo,
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "not started by a Multiboot loader (magic {m:#x})"),
            Self::Unreadable(a) => write!(f, "Multiboot information at {a:#x} is unreadable"),
            Self::NoMemoryInfo => write!(f, "the loader gave no memory map"),
        }
    }
}

fn read_cstr<const N: usize>(mem: &impl PhysRead, pa: u64) -> ArrayString<N> {
    let mut s = ArrayString::new();
    for i in 0..N as u64 {
        match mem.read_u8(pa + i) {
            Some(0) | None => break,
            Some(b) if b.is_ascii() && !b.is_ascii_control() => {
                if s.try_push(b as char).is_err() {
                    break;
                }
            }
            Some(_) => {
                let _ = s.try_push('?');
            }
        }
    }
    s
}

impl BootInfo {
    /// Parse the Multiboot information at physical `mbi`.
    pub fn parse(mem: &impl PhysRead, magic: u32, mbi: u64) -> Result<BootInfo, BootInfoError> {
        if magic != LOADER_MAGIC {
            return Err(BootInfoError::BadMagic(magic));
        }
        let rd = |off: u64| mem.read_u32(mbi + off).ok_or(BootInfoError::Unreadable(mbi + off));
        let flags = rd(0)?;
        let mut info = BootInfo {
            memory: ArrayVec::new(),
            cmdline: ArrayString::new(),
            modules: ArrayVec::new(),
            loader: ArrayString::new(),
            dropped: 0,
        };
        let mut raw: ArrayVec<MemoryRegion, MAX_REGIONS> = ArrayVec::new();
        if flags & FLAG_MMAP != 0 {
            let len = rd(44)? as u64;
            let addr = rd(48)? as u64;
            let mut off = 0u64;
            while off + 24 <= len {
                let e = addr + off;
                let size = mem.read_u32(e).ok_or(BootInfoError::Unreadable(e))? as u64;
                let base = mem.read_u64(e + 4).ok_or(BootInfoError::Unreadable(e))?;
                let length = mem.read_u64(e + 12).ok_or(BootInfoError::Unreadable(e))?;
                let ty = mem.read_u32(e + 20).ok_or(BootInfoError::Unreadable(e))?;
                if length != 0 {
                    let r = MemoryRegion { base, len: length, kind: RegionKind::from_type(ty) };
                    if raw.try_push(r).is_err() {
                        info.dropped += 1;
                    }
                }
                if size < 20 {
                    break; // malformed entry: stop rather than loop forever
                }
                off += size + 4;
            }
        } else if flags & FLAG_MEM != 0 {
            let lower = rd(4)? as u64;
            let upper = rd(8)? as u64;
            raw.push(MemoryRegion { base: 0, len: lower * 1024, kind: RegionKind::Usable });
            raw.push(MemoryRegion { base: 1 << 20, len: upper * 1024, kind: RegionKind::Usable });
        } else {
            return Err(BootInfoError::NoMemoryInfo);
        }
        info.memory = normalize(&raw);

        if flags & FLAG_CMDLINE != 0 {
            info.cmdline = read_cstr(mem, rd(16)? as u64);
        }
        if flags & FLAG_LOADER_NAME != 0 {
            info.loader = read_cstr(mem, rd(64)? as u64);
        }
        if flags & FLAG_MODS != 0 {
            let count = rd(20)? as u64;
            let addr = rd(24)? as u64;
            for i in 0..count {
                let m = addr + i * 16;
                let start = mem.read_u32(m).ok_or(BootInfoError::Unreadable(m))? as u64;
                let end = mem.read_u32(m + 4).ok_or(BootInfoError::Unreadable(m))? as u64;
                let name = mem.read_u32(m + 8).ok_or(BootInfoError::Unreadable(m))? as u64;
                let module = Module { start, end: end.max(start), name: read_cstr(mem, name) };
                if info.modules.try_push(module).is_err() {
                    info.dropped += 1;
                }
            }
        }
        Ok(info)
    }

    /// Total bytes of usable RAM in the map.
    pub fn usable_bytes(&self) -> u64 {
        self.memory.iter().filter(|r| r.kind == RegionKind::Usable).map(|r| r.len).sum()
    }

    /// The kernel's own part of the command line: everything before a
    /// ` -- ` separator (what follows belongs to user space).
    pub fn kernel_cmdline(&self) -> &str {
        let c = self.cmdline.as_str();
        if c.starts_with("-- ") || c == "--" {
            return "";
        }
        c.split_once(" -- ").map(|(k, _)| k).unwrap_or(c)
    }

    /// What follows ` -- ` on the command line (for user space), if anything.
    pub fn user_cmdline(&self) -> Option<&str> {
        let c = self.cmdline.as_str();
        c.strip_prefix("-- ").or_else(|| c.split_once(" -- ").map(|(_, u)| u))
    }

    /// The value of `key=value` in the kernel's part of the command line, or
    /// `Some("")` for a bare `key`.
    pub fn cmdline_value(&self, key: &str) -> Option<&str> {
        self.kernel_cmdline().split_ascii_whitespace().find_map(|word| match word.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if word == key => Some(""),
            _ => None,
        })
    }
}

/// Sort regions and remove overlaps: where two ranges overlap, the more
/// restrictive kind (`Reserved` > `Defective` > `AcpiNvs` > `AcpiReclaimable` >
/// `Usable`) owns the overlap. Adjacent ranges of the same kind are merged.
pub fn normalize(raw: &[MemoryRegion]) -> ArrayVec<MemoryRegion, MAX_REGIONS> {
    // Boundaries of all ranges; between two consecutive boundaries the kind is
    // the most restrictive of the ranges covering it.
    let mut bounds: ArrayVec<u64, { MAX_REGIONS * 2 }> = ArrayVec::new();
    for r in raw {
        bounds.push(r.base);
        bounds.push(r.end());
    }
    bounds.sort_unstable();
    let mut out: ArrayVec<MemoryRegion, MAX_REGIONS> = ArrayVec::new();
    for w in bounds.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a == b {
            continue;
        }
        let kind = raw.iter().filter(|r| r.base <= a && r.end() >= b).map(|r| r.kind).max();
        let Some(kind) = kind else { continue };
        match out.last_mut() {
            Some(last) if last.end() == a && last.kind == kind => last.len += b - a,
            _ => {
                if out.try_push(MemoryRegion { base: a, len: b - a, kind }).is_err() {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::physmem::TestMem;
    use std::vec::Vec;

    fn put32(v: &mut Vec<u8>, off: usize, x: u32) {
        v[off..off + 4].copy_from_slice(&x.to_le_bytes());
    }

    fn image(entries: &[(u64, u64, u32)], cmdline: &str) -> TestMem {
        let mbi = 0x9000u64;
        let mut info = std::vec![0u8; 0x100];
        put32(&mut info, 0, FLAG_MMAP | FLAG_CMDLINE | FLAG_MEM);
        put32(&mut info, 16, 0xa000);
        put32(&mut info, 44, (entries.len() * 24) as u32);
        put32(&mut info, 48, 0xb000);
        let mut mmap = Vec::new();
        for &(base, len, ty) in entries {
            mmap.extend_from_slice(&20u32.to_le_bytes());
            mmap.extend_from_slice(&base.to_le_bytes());
            mmap.extend_from_slice(&len.to_le_bytes());
            mmap.extend_from_slice(&ty.to_le_bytes());
        }
        let mut cl = cmdline.as_bytes().to_vec();
        cl.push(0);
        TestMem(std::vec![(mbi, info), (0xa000, cl), (0xb000, mmap)])
    }

    #[test]
    fn parses_map_and_cmdline() {
        let mem = image(&[(0, 0x9fc00, 1), (0x100000, 0x7ee0000, 1), (0xfffc0000, 0x40000, 2)], "test expect_cpus=4");
        let info = BootInfo::parse(&mem, LOADER_MAGIC, 0x9000).unwrap();
        assert_eq!(info.memory.len(), 3);
        assert_eq!(info.usable_bytes(), 0x9fc00 + 0x7ee0000);
        assert_eq!(info.cmdline_value("test"), Some(""));
        assert_eq!(info.cmdline_value("expect_cpus"), Some("4"));
        assert_eq!(info.cmdline_value("nope"), None);
        let mem = image(&[(0, 0x9fc00, 1)], "test=rx -- bench ipc test");
        let info = BootInfo::parse(&mem, LOADER_MAGIC, 0x9000).unwrap();
        assert_eq!(info.cmdline_value("bench"), None, "words after -- are user space's");
        assert_eq!(info.cmdline_value("test"), Some("rx"));
        assert_eq!(info.user_cmdline(), Some("bench ipc test"));
        let mem = image(&[(0, 0x9fc00, 1)], "-- bench");
        let info = BootInfo::parse(&mem, LOADER_MAGIC, 0x9000).unwrap();
        assert_eq!(info.cmdline_value("bench"), None);
        assert_eq!(info.user_cmdline(), Some("bench"));
    }

    #[test]
    fn rejects_bad_magic_and_unreadable_info() {
        let mem = image(&[], "");
        assert_eq!(BootInfo::parse(&mem, 0x1234, 0x9000).unwrap_err(), BootInfoError::BadMagic(0x1234));
        assert_eq!(BootInfo::parse(&mem, LOADER_MAGIC, 0x5000).unwrap_err(), BootInfoError::Unreadable(0x5000));
    }

    #[test]
    fn overlaps_resolve_to_the_restrictive_kind() {
        let raw = [
            MemoryRegion { base: 0, len: 0x10000, kind: RegionKind::Usable },
            MemoryRegion { base: 0x8000, len: 0x10000, kind: RegionKind::Reserved },
            MemoryRegion { base: 0x18000, len: 0x8000, kind: RegionKind::Usable },
        ];
        let out = normalize(&raw);
        assert_eq!(
            out.as_slice(),
            &[
                MemoryRegion { base: 0, len: 0x8000, kind: RegionKind::Usable },
                MemoryRegion { base: 0x8000, len: 0x10000, kind: RegionKind::Reserved },
                MemoryRegion { base: 0x18000, len: 0x8000, kind: RegionKind::Usable },
            ]
        );
    }

    #[test]
    fn adjacent_same_kind_merges() {
        let raw = [
            MemoryRegion { base: 0x1000, len: 0x1000, kind: RegionKind::Usable },
            MemoryRegion { base: 0, len: 0x1000, kind: RegionKind::Usable },
        ];
        let out = normalize(&raw);
        assert_eq!(out.as_slice(), &[MemoryRegion { base: 0, len: 0x2000, kind: RegionKind::Usable }]);
    }
}
