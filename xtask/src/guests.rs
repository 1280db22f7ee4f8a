//! Building the test guests (`guests/`): bare-metal images for mc2's
//! hypervisor. Each is linked at 0x10000 with `guests/guest.ld`, then its
//! loadable segments are laid out by address into a flat binary (the VMM
//! loads it at guest-physical 0x10000 and enters it in real mode at
//! 0x1000:0000; `.bss` is left out, the VMM's RAM starts zeroed). The flat
//! images go into the boot bundle as `NAME.bin`.

use crate::kbuild::HOST_TARGET;
use crate::util::{cargo, root, target_dir, Result};

/// The guests, as `guests` binaries.
pub const GUESTS: &[&str] = &["testguest", "chaos", "vmbench"];
/// Where the VMM loads a flat image (guest-physical), and its entry.
pub const LOAD: u64 = 0x10000;
/// Largest flat image: it must fit in the 2 MiB the VMM maps at start.
pub const MAX_IMAGE: u64 = 2 * 1024 * 1024 - LOAD;

/// Code generation and link flags: static, non-PIE, no red zone (the
/// guests' interrupt handlers share the stack), no libc, the memory
/// intrinsics from `libs/freestanding` (`--cfg mc2_bare`).
fn rustflags() -> Vec<String> {
    let ld = root().join("guests/guest.ld");
    [
        "-Crelocation-model=static",
        "-Ccode-model=small",
        "-Cno-redzone=yes",
        "-Cpanic=abort",
        "-Copt-level=s",
        "-Cstrip=debuginfo",
        "--cfg",
        "mc2_bare",
        "-Clink-arg=-nostartfiles",
        "-Clink-arg=-nostdlib",
        "-Clink-arg=-static",
        "-Clink-arg=-no-pie",
        "-Clink-arg=-Wl,--build-id=none",
        "-Clink-arg=-Wl,--gc-sections",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("-Clink-arg=-Wl,-T,{}", ld.display())])
    .collect()
}

/// Build every guest; returns (bundle name, flat image) pairs.
pub fn build() -> Result<Vec<(String, Vec<u8>)>> {
    let dir = target_dir().join("guests");
    let mut c = cargo();
    c.args(["build", "--release", "--quiet", "-p", "guests", "--bins", "--target", HOST_TARGET, "--target-dir"]).arg(&dir);
    c.env("CARGO_ENCODED_RUSTFLAGS", rustflags().join("\x1f"));
    let out = c.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("test guests failed to build:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    let mut images = Vec::new();
    for g in GUESTS {
        let path = dir.join(HOST_TARGET).join("release").join(g);
        let elf = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let flat = flatten(&elf, LOAD).map_err(|e| format!("guest {g}: {e}"))?;
        std::fs::write(path.with_extension("bin"), &flat).map_err(|e| e.to_string())?;
        images.push((format!("{g}.bin"), flat));
    }
    Ok(images)
}

fn u16_at(b: &[u8], o: usize) -> Result<u16> {
    b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or_else(|| format!("ELF truncated at {o:#x}"))
}
fn u32_at(b: &[u8], o: usize) -> Result<u32> {
    b.get(o..o + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap())).ok_or_else(|| format!("ELF truncated at {o:#x}"))
}
fn u64_at(b: &[u8], o: usize) -> Result<u64> {
    b.get(o..o + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap())).ok_or_else(|| format!("ELF truncated at {o:#x}"))
}

/// Lay the file contents of an ELF64's PT_LOAD segments out by virtual
/// address from `load` (gaps zero-filled, zero-initialized tails dropped).
/// The entry point must be `load` and nothing may lie below it.
pub fn flatten(elf: &[u8], load: u64) -> Result<Vec<u8>> {
    const PT_LOAD: u32 = 1;
    if elf.get(..4) != Some(b"\x7fELF".as_slice()) || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a little-endian ELF64 file".into());
    }
    let entry = u64_at(elf, 24)?;
    if entry != load {
        return Err(format!("entry point {entry:#x}, expected {load:#x} (is _start first in .boot?)"));
    }
    let (phoff, phentsize, phnum) = (u64_at(elf, 32)? as usize, u16_at(elf, 54)? as usize, u16_at(elf, 56)? as usize);
    let mut out: Vec<u8> = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(elf, ph)? != PT_LOAD {
            continue;
        }
        let (offset, vaddr, filesz) = (u64_at(elf, ph + 8)? as usize, u64_at(elf, ph + 16)?, u64_at(elf, ph + 32)? as usize);
        if filesz == 0 {
            continue;
        }
        if vaddr < load {
            return Err(format!("segment at {vaddr:#x} lies below the load address {load:#x}"));
        }
        let at = (vaddr - load) as usize;
        let data = elf.get(offset..offset + filesz).ok_or_else(|| format!("segment at {vaddr:#x} runs past the end of the file"))?;
        if out.len() < at + filesz {
            out.resize(at + filesz, 0);
        }
        out[at..at + filesz].copy_from_slice(data);
    }
    if out.is_empty() {
        return Err("no loadable contents".into());
    }
    if out.len() as u64 > MAX_IMAGE {
        return Err(format!("{} bytes: more than the {MAX_IMAGE} that fit below 2 MiB", out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with the given (vaddr, bytes, memsz) segments.
    fn elf(entry: u64, segs: &[(u64, &[u8], u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        let data_start = 64 + 56 * segs.len();
        let mut data = Vec::new();
        for &(vaddr, bytes, memsz) in segs {
            let mut ph = [0u8; 56];
            ph[0..4].copy_from_slice(&1u32.to_le_bytes());
            ph[8..16].copy_from_slice(&((data_start + data.len()) as u64).to_le_bytes());
            ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
            ph[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
            b.extend_from_slice(&ph);
            data.extend_from_slice(bytes);
        }
        b.extend_from_slice(&data);
        b
    }

    #[test]
    fn segments_are_laid_out_by_address() {
        let e = elf(0x10000, &[(0x10000, b"\xfa\xfc", 2), (0x10010, b"abc", 3), (0x20000, b"", 0x1000)]);
        let flat = flatten(&e, 0x10000).unwrap();
        assert_eq!(flat.len(), 0x13);
        assert_eq!(&flat[..2], b"\xfa\xfc");
        assert_eq!(&flat[0x10..], b"abc");
        assert!(flat[2..0x10].iter().all(|&b| b == 0));
    }

    #[test]
    fn bad_images_are_refused() {
        assert!(flatten(b"nope", 0x10000).is_err());
        assert!(flatten(&elf(0x10004, &[(0x10000, b"x", 1)]), 0x10000).unwrap_err().contains("entry"));
        assert!(flatten(&elf(0x10000, &[(0x8000, b"x", 1)]), 0x10000).unwrap_err().contains("below"));
        let mut cut = elf(0x10000, &[(0x10000, b"xyz", 3)]);
        cut.truncate(cut.len() - 1);
        assert!(flatten(&cut, 0x10000).is_err());
        assert!(flatten(&elf(0x10000, &[(0x10000 + MAX_IMAGE, b"x", 1)]), 0x10000).unwrap_err().contains("2 MiB"));
    }
}
