//! Building the kernel image: the host target with the prebuilt `core`, as a
//! static, non-PIC, red-zone-free, higher-half (`code-model=kernel`) binary
//! (see the platform notes). Each lock variant gets its own target directory
//! so switching between them does not rebuild.

use crate::image;
use crate::util::{cargo, target_dir, Result};
use std::path::PathBuf;

/// Which lock every `SpinLock` in the kernel uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Ticket,
    Mcs,
}

impl LockKind {
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Ticket => "ticket",
            LockKind::Mcs => "mcs",
        }
    }
}

pub const HOST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Code-generation flags every crate of the kernel is compiled with.
pub const KERNEL_RUSTFLAGS: &[&str] = &[
    "-Crelocation-model=static",
    "-Ccode-model=kernel",
    "-Cno-redzone=yes",
    "-Cpanic=abort",
    "-Cforce-frame-pointers=yes",
    "--cfg",
    "mc2_bare",
];

/// Build the kernel and check its image layout; returns the ELF path.
pub fn build(lock: LockKind, quiet: bool) -> Result<PathBuf> {
    build_variant(lock, false, quiet)
}

/// Build a kernel variant: lock kind, and the big kernel lock (mC2-bl) or not.
pub fn build_variant(lock: LockKind, bkl: bool, quiet: bool) -> Result<PathBuf> {
    let dir = target_dir().join(format!("kernel-{}{}", lock.name(), if bkl { "-bkl" } else { "" }));
    let mut c = cargo();
    c.args(["build", "--profile", "bare", "-p", "kernel", "--target", HOST_TARGET, "--target-dir"]).arg(&dir);
    let mut features = Vec::new();
    if lock == LockKind::Mcs {
        features.push("mcs");
    }
    if bkl {
        features.push("bkl");
    }
    if !features.is_empty() {
        c.args(["--features", &features.join(",")]);
    }
    if quiet {
        c.arg("--quiet");
    }
    c.env("CARGO_ENCODED_RUSTFLAGS", KERNEL_RUSTFLAGS.join("\x1f"));
    let out = c.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("kernel build ({}) failed:\n{}", lock.name(), String::from_utf8_lossy(&out.stderr)));
    }
    if !quiet {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let elf = dir.join(HOST_TARGET).join("bare").join("mc2");
    let bytes = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let l = image::check(&bytes).map_err(|e| format!("{}: bad image layout: {e}", elf.display()))?;
    if !quiet {
        eprintln!(
            "xtask: {} ({} lock): multiboot header at file offset {:#x}, load {:#x}..{:#x}, bss to {:#x}, entry {:#x}",
            elf.display(),
            lock.name(),
            l.header_offset,
            l.load_addr,
            l.load_end,
            l.bss_end,
            l.entry
        );
    }
    Ok(elf)
}
