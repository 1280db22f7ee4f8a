//! Making sure the emulators and image tools are installed.
//!
//! Each tool maps to the Debian/Ubuntu packages that provide it. When one is
//! missing and we run as root on Debian or Ubuntu, we install the packages
//! with apt-get; otherwise we print the exact command to run and stop.

use crate::util::Result;
use std::path::Path;
use std::process::Command;

/// Something on this machine mc2's commands need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Qemu,
    Bochs,
    GrubIso,
}

impl Tool {
    /// Files whose presence shows the tool is installed.
    fn probes(self) -> &'static [&'static str] {
        match self {
            Tool::Qemu => &["qemu-system-x86_64"],
            Tool::Bochs => &["bochs", "/usr/share/bochs/BIOS-bochs-latest", "/usr/share/bochs/VGABIOS-lgpl-latest"],
            Tool::GrubIso => &["grub-mkrescue", "xorriso", "mformat", "/usr/lib/grub/i386-pc/multiboot.mod"],
        }
    }

    /// Debian packages providing it.
    fn packages(self) -> &'static [&'static str] {
        match self {
            Tool::Qemu => &["qemu-system-x86"],
            Tool::Bochs => &["bochs", "bochsbios", "vgabios"],
            Tool::GrubIso => &["grub-pc-bin", "grub-common", "xorriso", "mtools"],
        }
    }
}

fn present(probe: &str) -> bool {
    if probe.starts_with('/') {
        return Path::new(probe).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(probe).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn is_debian_like() -> bool {
    Path::new("/etc/debian_version").exists() && present("apt-get")
}

/// Install whatever of `tools` is missing, or explain how.
pub fn ensure(tools: &[Tool]) -> Result<()> {
    let mut missing: Vec<&str> = Vec::new();
    for t in tools {
        if !t.probes().iter().all(|p| present(p)) {
            for p in t.packages() {
                if !missing.contains(p) {
                    missing.push(p);
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = format!("apt-get install -y --no-install-recommends {}", missing.join(" "));
    if !(is_root() && is_debian_like()) {
        return Err(format!(
            "missing packages: {}. Install them with:\n    sudo apt-get update && sudo {cmd}\n(or your distribution's equivalents)",
            missing.join(", ")
        ));
    }
    eprintln!("xtask: installing {} (apt-get)", missing.join(" "));
    let ok = Command::new("apt-get").args(["update", "-qq"]).env("DEBIAN_FRONTEND", "noninteractive").status().map(|s| s.success()).unwrap_or(false)
        && Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !ok {
        return Err(format!("installing packages failed; try by hand: {cmd}"));
    }
    for t in tools {
        if let Some(p) = t.probes().iter().find(|p| !present(p)) {
            return Err(format!("{p} still missing after installing {:?}", t.packages()));
        }
    }
    Ok(())
}
