//! Linux as a peer (benchmarks) and as a guest: Debian's own kernel package,
//! fetched with apt and unpacked (never built, never patched), and initramfs
//! images written here as "newc" cpio archives.

use crate::util::{target_dir, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian kernel: fetch `linux-image-amd64`'s current image package once
/// (into `target/linux/`), unpack it, return the path of its `vmlinuz`.
pub fn kernel() -> Result<PathBuf> {
    let root = target_dir().join("linux").join("root");
    if let Some(v) = find_vmlinuz(&root) {
        return Ok(v);
    }
    let pkg = resolve("linux-image-amd64", "linux-image-")?;
    fetch_and_unpack(&pkg, &root)?;
    find_vmlinuz(&root).ok_or(format!("no vmlinuz in package {pkg}"))
}

/// Debian's statically linked busybox (package `busybox-static`), fetched
/// and unpacked once; returns the path of the binary.
pub fn busybox() -> Result<PathBuf> {
    let root = target_dir().join("linux").join("busybox");
    let bin = root.join("bin").join("busybox");
    if bin.exists() {
        return Ok(bin);
    }
    fetch_and_unpack("busybox-static", &root)?;
    if bin.exists() {
        Ok(bin)
    } else {
        Err("busybox-static has no /bin/busybox".into())
    }
}

/// The concrete package a meta-package depends on (e.g. the current
/// `linux-image-6.1.0-N-amd64` of `linux-image-amd64`).
fn resolve(meta: &str, prefix: &str) -> Result<String> {
    let query = || -> Result<Option<String>> {
        let deps = Command::new("apt-cache")
            .args(["depends", meta])
            .output()
            .map_err(|e| format!("apt-cache: {e} (mc2 needs Debian/Ubuntu's apt to fetch Linux packages)"))?;
        Ok(String::from_utf8_lossy(&deps.stdout).lines().filter_map(|l| l.trim().strip_prefix("Depends: ")).find(|p| p.starts_with(prefix)).map(str::to_string))
    };
    if let Some(p) = query()? {
        return Ok(p);
    }
    // Empty package lists (a fresh machine): refresh them when we may.
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    query()?.ok_or(format!("apt knows no {meta} package: run `apt-get update`"))
}

/// `apt-get download PKG` into target/linux, then `dpkg-deb -x` into `into`.
fn fetch_and_unpack(pkg: &str, into: &Path) -> Result<()> {
    let dir = target_dir().join("linux");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let has_deb = |dir: &Path| -> Option<PathBuf> {
        std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok().map(|e| e.path())).find(|p| p.extension().is_some_and(|x| x == "deb") && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_"))))
    };
    if has_deb(&dir).is_none() {
        let out = Command::new("apt-get").args(["download", "-qq", pkg]).current_dir(&dir).output().map_err(|e| e.to_string())?;
        if has_deb(&dir).is_none() {
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
            let again = Command::new("apt-get").args(["download", "-qq", pkg]).current_dir(&dir).output().map_err(|e| e.to_string())?;
            if has_deb(&dir).is_none() {
                return Err(format!("apt-get download {pkg} failed: {}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&again.stderr)));
            }
        }
    }
    let deb = has_deb(&dir).ok_or(format!("{pkg}: downloaded package not found"))?;
    let st = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(into).status().map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("dpkg-deb -x {} failed", deb.display()));
    }
    Ok(())
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

/// The guests' initramfs: Debian's static busybox and an `/init` shell
/// script (run by busybox's sh), with the device nodes a console needs.
pub fn busybox_initramfs(init_script: &str) -> Result<Vec<u8>> {
    let busybox = std::fs::read(busybox()?).map_err(|e| e.to_string())?;
    Ok(cpio(&[
        Entry::Dir("bin"),
        Entry::Dir("dev"),
        Entry::Dir("proc"),
        Entry::Dir("sys"),
        Entry::Dir("tmp"),
        Entry::CharDev { path: "dev/console", major: 5, minor: 1 },
        Entry::CharDev { path: "dev/null", major: 1, minor: 3 },
        Entry::CharDev { path: "dev/ttyS0", major: 4, minor: 64 },
        Entry::CharDev { path: "dev/port", major: 1, minor: 4 },
        Entry::CharDev { path: "dev/urandom", major: 1, minor: 9 },
        Entry::File { path: "bin/busybox", mode: 0o755, data: busybox },
        Entry::File { path: "init", mode: 0o755, data: init_script.as_bytes().to_vec() },
    ]))
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
