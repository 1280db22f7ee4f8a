//! Linux as a peer (benchmarks) and as a guest: Debian's own kernel package,
//! fetched with apt and unpacked (never built, never patched), and initramfs
//! images written here as "newc" cpio archives.

use crate::util::{target_dir, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian kernel: fetch `linux-image-amd64`'s current image package once
/// (into `target/linux/`), unpack it, return the path of its `vmlinuz`.
pub fn kernel() -> Result<PathBuf> {
    let dir = target_dir().join("linux");
    let unpacked = dir.join("root");
    if let Some(v) = find_vmlinuz(&unpacked) {
        return Ok(v);
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let deps = Command::new("apt-cache").args(["depends", "linux-image-amd64"]).output().map_err(|e| format!("apt-cache: {e} (mc2 needs Debian/Ubuntu's apt to fetch the Linux kernel package)"))?;
    let pkg = String::from_utf8_lossy(&deps.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string);
    let pkg = match pkg {
        Some(p) => p,
        None => {
            // Empty package lists (a fresh machine): refresh them when we may.
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
            let deps = Command::new("apt-cache").args(["depends", "linux-image-amd64"]).output().map_err(|e| e.to_string())?;
            String::from_utf8_lossy(&deps.stdout)
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Depends: "))
                .find(|p| p.starts_with("linux-image-"))
                .map(str::to_string)
                .ok_or("apt knows no linux-image-amd64 package: run `apt-get update`")?
        }
    };
    let st = Command::new("apt-get").args(["download", "-qq", &pkg]).current_dir(&dir).status().map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("apt-get download {pkg} failed"));
    }
    let deb = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb") && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&pkg)))
        .ok_or(format!("{pkg}: downloaded package not found"))?;
    let st = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked).status().map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("dpkg-deb -x {} failed", deb.display()));
    }
    find_vmlinuz(&unpacked).ok_or(format!("no vmlinuz in {}", deb.display()))
}

fn find_vmlinuz(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root.join("boot")).ok()?.filter_map(|e| e.ok().map(|e| e.path())).find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
}

/// One file in an initramfs.
pub enum Entry<'a> {
    Dir(&'a str),
    File { path: &'a str, mode: u32, data: Vec<u8> },
    CharDev { path: &'a str, major: u32, minor: u32 },
}

/// A "newc" cpio archive (the format Linux unpacks as its initramfs; no
/// compression needed).
pub fn cpio(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ino = 1;
    let mut put = |name: &str, mode: u32, data: &[u8], rdev: (u32, u32)| {
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        ino += 1;
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for e in entries {
        match e {
            Entry::Dir(p) => put(p, 0o040755, &[], (0, 0)),
            Entry::File { path, mode, data } => put(path, 0o100000 | mode, data, (0, 0)),
            Entry::CharDev { path, major, minor } => put(path, 0o020600, &[], (*major, *minor)),
        }
    }
    put("TRAILER!!!", 0, &[], (0, 0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_newc_layout() {
        let a = cpio(&[Entry::Dir("dev"), Entry::File { path: "init", mode: 0o755, data: b"#!x".to_vec() }]);
        assert!(a.starts_with(b"070701"));
        assert_eq!(a.len() % 4, 0);
        let s = String::from_utf8_lossy(&a);
        assert!(s.contains("dev"));
        assert!(s.contains("TRAILER!!!"));
        // Header of the file: mode 100755 and size 3.
        assert!(s.contains("000081ed"));
    }
}

/// An initramfs whose `/init` is `init` (a static executable), with
/// `/dev/console` so that init has a console.
pub fn initramfs_with_init(init: &Path, out: &Path) -> Result<()> {
    let data = std::fs::read(init).map_err(|e| format!("{}: {e}", init.display()))?;
    let img = cpio(&[Entry::Dir("dev"), Entry::CharDev { path: "dev/console", major: 5, minor: 1 }, Entry::File { path: "init", mode: 0o755, data }]);
    std::fs::write(out, img).map_err(|e| e.to_string())
}
