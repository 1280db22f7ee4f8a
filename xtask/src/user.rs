//! Building the user programs (`user/*`) and packing them into the boot-image
//! bundle (format in `abi::bundle`), loaded as a Multiboot module.

use crate::kbuild::HOST_TARGET;
use crate::util::{cargo, root, target_dir, Result};
use std::path::PathBuf;

/// The user programs, in the order the bundle lists them.
pub const PROGRAMS: &[&str] = &["init", "shell", "hello", "pingpong", "prodcons", "shmdemo", "ipcbench", "utest", "utest-helper", "conform", "fuzz", "vmm"];

/// Code generation and link flags for user programs: static, non-PIE ELF64
/// at 0x400000 (user/rt/user.ld), no libc.
fn rustflags() -> Vec<String> {
    let ld = root().join("user/rt/user.ld");
    [
        "-Crelocation-model=static",
        "-Cpanic=abort",
        "-Cforce-frame-pointers=yes",
        "-Cstrip=debuginfo",
        "--cfg",
        "mc2_user",
        "-Clink-arg=-nostartfiles",
        "-Clink-arg=-nostdlib",
        "-Clink-arg=-static",
        "-Clink-arg=-no-pie",
        "-Clink-arg=-Wl,--build-id=none",
        "-Clink-arg=-Wl,-z,max-page-size=4096",
        "-Clink-arg=-Wl,--gc-sections",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("-Clink-arg=-Wl,-T,{}", ld.display())])
    .collect()
}

/// Build every user program; returns (name, ELF path) pairs.
pub fn build_programs() -> Result<Vec<(String, PathBuf)>> {
    let dir = target_dir().join("user");
    let mut c = cargo();
    c.args(["build", "--profile", "bare", "--quiet", "--target", HOST_TARGET, "--target-dir"]).arg(&dir);
    for p in PROGRAMS {
        c.args(["-p", p]);
    }
    c.env("CARGO_ENCODED_RUSTFLAGS", rustflags().join("\x1f"));
    let out = c.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("user programs failed to build:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(PROGRAMS.iter().map(|p| (p.to_string(), dir.join(HOST_TARGET).join("bare").join(p))).collect())
}

/// Pack files into a bundle image.
pub fn pack(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    use abi::bundle::{ALIGN, ENTRY, HEADER, MAGIC, NAME};
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(files.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut offset = (HEADER + files.len() * ENTRY).next_multiple_of(ALIGN);
    for (name, data) in files {
        if name.len() > NAME || name.is_empty() {
            return Err(format!("bundle name `{name}` must be 1..={NAME} bytes"));
        }
        let mut n = [0u8; NAME];
        n[..name.len()].copy_from_slice(name.as_bytes());
        out.extend_from_slice(&n);
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        offset = (offset + data.len()).next_multiple_of(ALIGN);
    }
    for (_, data) in files {
        out.resize(out.len().next_multiple_of(ALIGN), 0);
        out.extend_from_slice(data);
    }
    Ok(out)
}

/// Build the programs and write `target/user/bundle.img`.
pub fn build_bundle() -> Result<PathBuf> {
    let mut files = Vec::new();
    for (name, path) in build_programs()? {
        files.push((name, std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?));
    }
    // The test guests' flat images (guest images for `vmm`), after the programs.
    files.extend(crate::guests::build()?);
    // Debian's Linux kernel and a busybox initramfs (Linux guests); without
    // apt and a network the rest still builds (the Linux checks then fail).
    match crate::linuxguest::bundle_files() {
        Ok(f) => files.extend(f),
        Err(e) => eprintln!("xtask: no Linux guest in the boot bundle: {e}"),
    }
    let img = pack(&files)?;
    let path = target_dir().join("user").join("bundle.img");
    std::fs::write(&path, img).map_err(|e| e.to_string())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_round_trips_through_the_kernel_parser() {
        let files = vec![("init".to_string(), vec![1u8, 2, 3]), ("shell".to_string(), vec![9u8; 5000])];
        let img = pack(&files).unwrap();
        assert_eq!(abi::bundle::count(&img), Ok(2));
        let f = abi::bundle::find(&img, "shell").unwrap().unwrap();
        assert_eq!(f.data, &[9u8; 5000][..]);
        assert_eq!(abi::bundle::file(&img, 0).unwrap().data, &[1, 2, 3]);
        assert!(abi::bundle::find(&img, "nope").unwrap().is_none());
    }

    #[test]
    fn corrupt_bundles_are_errors() {
        let mut img = pack(&[("a".to_string(), vec![0u8; 10])]).unwrap();
        img[16 + 32] = 0xff; // offset points far away
        assert!(abi::bundle::file(&img, 0).is_err());
        assert_eq!(abi::bundle::count(b"nonsense"), Err(abi::bundle::BundleError::BadMagic));
    }
}
