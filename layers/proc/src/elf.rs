//! ELF64 program files (System V ABI, AMD64 supplement): just enough to
//! load a static executable. Everything is bounds-checked; a malformed file
//! is an error, never a fault.

use arrayvec::ArrayVec;

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;

/// One loadable segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub write: bool,
    pub exec: bool,
}

/// What loading a program means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    pub entry: u64,
    pub segments: ArrayVec<Segment, 8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    NotElf,
    /// Not a little-endian x86-64 static executable.
    WrongKind,
    /// A header or segment reaches past the end of the file.
    Truncated,
    /// A segment lies outside the user half, overlaps another, or is misaligned.
    BadSegment,
    /// A segment is both writable and executable.
    WritableCode,
    /// No loadable segment, or more than 8.
    BadSegmentCount,
    /// The entry point is not inside an executable segment.
    BadEntry,
}

fn u16_at(b: &[u8], o: usize) -> Result<u16, ElfError> {
    Ok(u16::from_le_bytes(b.get(o..o + 2).ok_or(ElfError::Truncated)?.try_into().unwrap_or([0; 2])))
}
fn u32_at(b: &[u8], o: usize) -> Result<u32, ElfError> {
    Ok(u32::from_le_bytes(b.get(o..o + 4).ok_or(ElfError::Truncated)?.try_into().unwrap_or([0; 4])))
}
fn u64_at(b: &[u8], o: usize) -> Result<u64, ElfError> {
    Ok(u64::from_le_bytes(b.get(o..o + 8).ok_or(ElfError::Truncated)?.try_into().unwrap_or([0; 8])))
}

/// Parse and check `file`; `user_end` is the first address past user space.
pub fn parse(file: &[u8], user_end: u64) -> Result<Program, ElfError> {
    if file.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ElfError::NotElf);
    }
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little endian.
    if file.get(4) != Some(&2) || file.get(5) != Some(&1) || u16_at(file, 18)? != EM_X86_64 || u16_at(file, 16)? != ET_EXEC {
        return Err(ElfError::WrongKind);
    }
    let entry = u64_at(file, 24)?;
    let phoff = u64_at(file, 32)? as usize;
    let phentsize = u16_at(file, 54)? as usize;
    let phnum = u16_at(file, 56)? as usize;
    if phentsize < 56 {
        return Err(ElfError::Truncated);
    }
    let mut segments: ArrayVec<Segment, 8> = ArrayVec::new();
    for i in 0..phnum {
        let p = phoff.checked_add(i * phentsize).ok_or(ElfError::Truncated)?;
        if u32_at(file, p)? != PT_LOAD {
            continue;
        }
        let flags = u32_at(file, p + 4)?;
        let s = Segment {
            offset: u64_at(file, p + 8)?,
            vaddr: u64_at(file, p + 16)?,
            filesz: u64_at(file, p + 32)?,
            memsz: u64_at(file, p + 40)?,
            write: flags & PF_W != 0,
            exec: flags & PF_X != 0,
        };
        if s.memsz == 0 {
            continue;
        }
        if s.write && s.exec {
            return Err(ElfError::WritableCode);
        }
        let end = s.vaddr.checked_add(s.memsz).ok_or(ElfError::BadSegment)?;
        if s.vaddr < 0x1000 || end > user_end || s.filesz > s.memsz || s.vaddr % 4096 != s.offset % 4096 {
            return Err(ElfError::BadSegment);
        }
        let fend = s.offset.checked_add(s.filesz).ok_or(ElfError::Truncated)?;
        if fend > file.len() as u64 {
            return Err(ElfError::Truncated);
        }
        // Segments may not share a page (each page gets one set of rights).
        let (lo, hi) = (s.vaddr & !4095, end.div_ceil(4096) * 4096);
        if segments.iter().any(|o| lo < o.vaddr.saturating_add(o.memsz).div_ceil(4096) * 4096 && (o.vaddr & !4095) < hi) {
            return Err(ElfError::BadSegment);
        }
        segments.try_push(s).map_err(|_| ElfError::BadSegmentCount)?;
    }
    if segments.is_empty() {
        return Err(ElfError::BadSegmentCount);
    }
    if !segments.iter().any(|s| s.exec && entry >= s.vaddr && entry < s.vaddr + s.memsz) {
        return Err(ElfError::BadEntry);
    }
    Ok(Program { entry, segments })
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    fn elf(segs: &[(u64, u64, u32)], entry: u64) -> Vec<u8> {
        let mut f = std::vec![0u8; 0x3000];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, &(va, size, flags)) in segs.iter().enumerate() {
            let p = 64 + i * 56;
            f[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            f[p + 4..p + 8].copy_from_slice(&flags.to_le_bytes());
            f[p + 8..p + 16].copy_from_slice(&(0x1000 * (i as u64 + 1)).to_le_bytes());
            f[p + 16..p + 24].copy_from_slice(&va.to_le_bytes());
            f[p + 32..p + 40].copy_from_slice(&size.min(0x1000).to_le_bytes());
            f[p + 40..p + 48].copy_from_slice(&size.to_le_bytes());
        }
        f
    }

    #[test]
    fn a_static_executable_parses() {
        let p = parse(&elf(&[(0x40_0000, 0x800, 5), (0x40_1000, 0x2000, 6)], 0x40_0010), 1 << 47).unwrap();
        assert_eq!(p.entry, 0x40_0010);
        assert_eq!(p.segments.len(), 2);
        assert!(p.segments[1].write && !p.segments[1].exec);
    }

    #[test]
    fn malformed_files_are_errors() {
        let end = 1 << 47;
        assert_eq!(parse(b"nope", end), Err(ElfError::NotElf));
        assert_eq!(parse(&elf(&[(0x40_0000, 0x800, 7)], 0x40_0000), end), Err(ElfError::WritableCode));
        assert_eq!(parse(&elf(&[(0xffff_8000_0000_0000, 0x800, 5)], 0x40_0000), end), Err(ElfError::BadSegment));
        assert_eq!(parse(&elf(&[(0x40_0000, 0x800, 5), (0x40_0000, 0x800, 6)], 0x40_0000), end), Err(ElfError::BadSegment));
        assert_eq!(parse(&elf(&[(0x40_0000, 0x800, 4)], 0x40_0000), end), Err(ElfError::BadEntry));
        assert_eq!(parse(&elf(&[], 0x40_0000), end), Err(ElfError::BadSegmentCount));
        let mut f = elf(&[(0x40_0000, 0x800, 5)], 0x40_0000);
        f.truncate(0x1800);
        f[64 + 32..64 + 40].copy_from_slice(&0x1000u64.to_le_bytes());
        f[64 + 40..64 + 48].copy_from_slice(&0x1000u64.to_le_bytes());
        assert_eq!(parse(&f, end), Err(ElfError::Truncated));
        let mut f = elf(&[(0x40_0000, 0x800, 5)], 0x40_0000);
        f[18] = 3;
        assert_eq!(parse(&f, end), Err(ElfError::WrongKind));
    }
}
