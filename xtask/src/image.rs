//! Checks on the linked kernel image that the Multiboot loaders rely on.
//!
//! With the "a.out kludge" (header flag bit 16) GRUB and QEMU ignore the ELF
//! program headers and copy the file verbatim from the header's file offset to
//! `load_addr`. That only works if every loadable segment's file offset
//! relative to the header equals its physical address relative to the header
//! address, and the header lies in the first 8 KiB (Multiboot spec §3.1).

use crate::util::Result;

const MB_MAGIC: u32 = 0x1BAD_B002;
const MB_FLAG_AOUT_KLUDGE: u32 = 1 << 16;
const PT_LOAD: u32 = 1;

fn u16_at(b: &[u8], o: usize) -> Result<u16> {
    b.get(o..o + 2).map(|s| u16::from_le_bytes(s.try_into().unwrap())).ok_or_else(|| format!("truncated at {o:#x}"))
}
fn u32_at(b: &[u8], o: usize) -> Result<u32> {
    b.get(o..o + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap())).ok_or_else(|| format!("truncated at {o:#x}"))
}
fn u64_at(b: &[u8], o: usize) -> Result<u64> {
    b.get(o..o + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap())).ok_or_else(|| format!("truncated at {o:#x}"))
}

/// What the check found, for the build log.
#[derive(Debug)]
pub struct Layout {
    pub header_offset: usize,
    pub load_addr: u32,
    pub load_end: u32,
    pub bss_end: u32,
    pub entry: u32,
}

pub fn check(image: &[u8]) -> Result<Layout> {
    if image.get(..4) != Some(b"\x7fELF".as_slice()) || image.get(4) != Some(&2) {
        return Err("not an ELF64 file".into());
    }
    // Multiboot header: 4-byte aligned, within the first 8 KiB.
    let mut found = None;
    for off in (0..8192.min(image.len().saturating_sub(32))).step_by(4) {
        let magic = u32_at(image, off)?;
        let flags = u32_at(image, off + 4)?;
        let sum = u32_at(image, off + 8)?;
        if magic == MB_MAGIC && magic.wrapping_add(flags).wrapping_add(sum) == 0 {
            found = Some((off, flags));
            break;
        }
    }
    let (hoff, flags) = found.ok_or("no Multiboot header with a valid checksum in the first 8 KiB")?;
    if flags & MB_FLAG_AOUT_KLUDGE == 0 {
        return Err("Multiboot header lacks the address fields (flag bit 16); QEMU cannot load an ELF64 kernel without them".into());
    }
    let header_addr = u32_at(image, hoff + 12)?;
    let l = Layout {
        header_offset: hoff,
        load_addr: u32_at(image, hoff + 16)?,
        load_end: u32_at(image, hoff + 20)?,
        bss_end: u32_at(image, hoff + 24)?,
        entry: u32_at(image, hoff + 28)?,
    };
    if l.load_addr > header_addr || !(l.load_addr < l.load_end && l.load_end <= l.bss_end) {
        return Err(format!("inconsistent Multiboot addresses: load {:#x}..{:#x} bss end {:#x}", l.load_addr, l.load_end, l.bss_end));
    }
    if l.entry < l.load_addr || l.entry >= l.load_end {
        return Err(format!("entry {:#x} outside the loaded range", l.entry));
    }
    // The file offset the loader starts copying from.
    let file_start = hoff as u64 - (header_addr - l.load_addr) as u64;
    if file_start as usize + (l.load_end - l.load_addr) as usize > image.len() {
        return Err("loaded range runs past the end of the file".into());
    }
    // Every PT_LOAD segment must sit where the verbatim copy puts it.
    let phoff = u64_at(image, 32)? as usize;
    let phentsize = u16_at(image, 54)? as usize;
    let phnum = u16_at(image, 56)? as usize;
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        if u32_at(image, p)? != PT_LOAD {
            continue;
        }
        let offset = u64_at(image, p + 8)?;
        let paddr = u64_at(image, p + 24)?;
        let filesz = u64_at(image, p + 32)?;
        let memsz = u64_at(image, p + 40)?;
        if memsz == 0 {
            continue;
        }
        if filesz > 0 && offset.wrapping_sub(file_start) != paddr.wrapping_sub(l.load_addr as u64) {
            return Err(format!(
                "segment {i} at file offset {offset:#x} would be loaded at {:#x} but is linked for {paddr:#x}",
                l.load_addr as u64 + offset.wrapping_sub(file_start)
            ));
        }
        if paddr + memsz > l.bss_end as u64 || paddr < l.load_addr as u64 {
            return Err(format!("segment {i} ({paddr:#x}+{memsz:#x}) lies outside load..bss_end"));
        }
        if paddr + filesz > l.load_end as u64 {
            return Err(format!("segment {i} has file data past load_end_addr"));
        }
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(shift_segment: u64) -> Vec<u8> {
        let mut f = vec![0u8; 0x3000];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let p = 64;
        f[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        f[p + 8..p + 16].copy_from_slice(&(0x2000 + shift_segment).to_le_bytes()); // offset
        f[p + 24..p + 32].copy_from_slice(&0x101000u64.to_le_bytes()); // paddr
        f[p + 32..p + 40].copy_from_slice(&0x800u64.to_le_bytes());
        f[p + 40..p + 48].copy_from_slice(&0x1000u64.to_le_bytes());
        let h = 0x1000;
        let flags = 0x0001_0002u32;
        for (i, v) in [MB_MAGIC, flags, 0u32.wrapping_sub(MB_MAGIC.wrapping_add(flags)), 0x100000, 0x100000, 0x101800, 0x102000, 0x100020]
            .iter()
            .enumerate()
        {
            f[h + 4 * i..h + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        f
    }

    #[test]
    fn consistent_layout_passes() {
        let l = check(&image(0)).unwrap();
        assert_eq!(l.header_offset, 0x1000);
    }

    #[test]
    fn misplaced_segment_is_caught() {
        assert!(check(&image(0x10)).unwrap_err().contains("would be loaded"));
    }

    #[test]
    fn missing_header_is_caught() {
        let mut f = image(0);
        f[0x1000] = 0;
        assert!(check(&f).is_err());
    }
}
