//! The Linux guest in the boot bundle: Debian's kernel (`linux.rs` fetches
//! it, unmodified) as `vmlinuz`, and a busybox initramfs as `initrd.cpio`
//! whose `/init` prints [`MARKER`], runs a few commands (and, when the
//! command line holds `mc2bench`, the guest workloads of `bench guests`;
//! with `mc2shell`, an interactive shell on the console for `vm attach`),
//! then powers the machine off.
//!
//! Power-off: the PC the VMM emulates has no ACPI, so Linux's own
//! `poweroff` has nothing to press. The init writes the exit status to the
//! board's power-off/debug-exit port 0x501 through `/dev/port` (Linux's
//! port device), the way guests leave QEMU through `isa-debug-exit`; the
//! VMM reports `guest exited with status 0`. The same initramfs booted
//! directly by QEMU (`bench guests`' bare run, with `-device
//! isa-debug-exit,iobase=0x501`) leaves the same way.

use crate::linux;
use crate::util::Result;

/// Bundle names of the kernel and the initramfs.
pub const KERNEL: &str = "vmlinuz";
pub const INITRD: &str = "initrd.cpio";
/// The line the guest's init prints once Linux has reached user space.
pub const MARKER: &str = "mc2-linux-guest: user space reached";
/// The line the guest's init prints last, before powering off.
pub const POWER_OFF: &str = "mc2-linux-guest: powering off";
/// The guest's RAM (MiB) in the runs and tests: Debian's kernel wants
/// about 80 MiB to decompress itself, the initramfs goes above.
pub const RAM_MB: u64 = 128;
/// Quota (pages) for one Linux guest's VMM: its RAM plus nested page
/// tables, the VMM's heap and load buffer.
pub const QUOTA_PAGES: u64 = RAM_MB * 256 + 512;
/// The command line the runs and tests give the guest.
pub const CMDLINE: &str = "console=ttyS0 quiet panic=-1 tsc=reliable";

/// Bench workloads, each timed by the guest in milliseconds and printed as
/// `mc2-bench NAME MS`, after a line `mc2-bench start NAME` (under mc2 the
/// VMM notes its exit counts at both). Both make their input first
/// (untimed).
///
/// - `untar`: unpack a gzip'd tarball of 400 files (about 4 MiB) into tmpfs.
/// - `compile`: a make-like job: for each of 150 "source files", a pipeline
///   of `sed`, `sort` and `md5sum` producing an "object", then all objects
///   concatenated and checksummed (many short processes, as a build).
const BENCH: &str = r#"
ms() { read up idle < /proc/uptime; echo "${up%.*}${up#*.}0"; }
mkdir -p /tmp/src && cd /tmp/src
i=0; while [ $i -lt 400 ]; do dd if=/dev/urandom bs=1024 count=4 2>/dev/null | base64 > f$i.txt; i=$((i+1)); done
cd /tmp && tar -czf src.tgz src && rm -rf src
sync
echo "mc2-bench start untar"
t0=$(ms); mkdir -p /tmp/x && tar -xzf /tmp/src.tgz -C /tmp/x; t1=$(ms)
echo "mc2-bench untar $((t1-t0))"
mkdir -p /tmp/c && cd /tmp/c
i=0; while [ $i -lt 150 ]; do head -c 2000 /tmp/x/src/f$i.txt > s$i.c; i=$((i+1)); done
echo "mc2-bench start compile"
t0=$(ms)
for f in s*.c; do sed -e 's/[aeiou]/X/g' -e 's/[0-9]/N/g' "$f" | sort | md5sum > "${f%.c}.o"; done
cat *.o | md5sum > prog; t1=$(ms)
echo "mc2-bench compile $((t1-t0))"
cd /
"#;

/// The guest's `/init` (busybox sh).
pub fn init_script() -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
echo "{MARKER}: Linux $(uname -r), $(grep -c ^processor /proc/cpuinfo) cpu, $(grep MemTotal /proc/meminfo | tr -s ' ')"
echo "mc2-linux-guest: uptime $(cut -d' ' -f1 /proc/uptime) s; clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource); timer $(cat /sys/devices/system/clockevents/clockevent0/current_device)"
ls /bin | wc -l | sed 's/^/mc2-linux-guest: busybox applets: /'
case "$(cat /proc/cmdline)" in *mc2info*)
  grep -m1 ^flags /proc/cpuinfo | sed 's/^/mc2-info /'
  for f in /sys/devices/system/cpu/vulnerabilities/*; do echo "mc2-info ${{f##*/}}: $(cat $f)"; done
  dmesg | grep -i -E 'clocksource|tsc|hypervisor|paravirt|spectre|pti|fpu|apic|hz' | sed 's/^/mc2-info /' ;;
esac
case "$(cat /proc/cmdline)" in *mc2bench*) {BENCH} ;; esac
case "$(cat /proc/cmdline)" in *mc2shell*)
  echo "mc2-linux-guest: a shell on the console (\`exit\` powers off)"
  PS1='guest# ' sh -i ;;
esac
echo "{POWER_OFF}"
printf '\000' | dd of=/dev/port bs=1 seek=1281 count=1 2>/dev/null
poweroff -f
"#
    )
}

/// The kernel and the initramfs, as bundle files.
pub fn bundle_files() -> Result<Vec<(String, Vec<u8>)>> {
    let kernel = linux::kernel()?;
    let data = std::fs::read(&kernel).map_err(|e| format!("{}: {e}", kernel.display()))?;
    let initrd = linux::busybox_initramfs(&init_script())?;
    Ok(vec![(KERNEL.to_string(), data), (INITRD.to_string(), initrd)])
}

/// The shell command that runs one Linux guest on `cpu` in the background
/// (`extra`: more words for the guest's command line; none: the VMM's
/// default command line, which is [`CMDLINE`]).
pub fn vm_start(cpu: usize, extra: &str) -> String {
    let cmdline = if extra.is_empty() { String::new() } else { format!(" -- {CMDLINE} {extra}") };
    format!("vm start -c {cpu} -q {QUOTA_PAGES} {KERNEL} --initrd {INITRD}{cmdline}")
}

/// QEMU memory (MiB) for mc2 with `guests` Linux guests.
pub fn qemu_memory_mib(guests: usize) -> usize {
    256 + guests * (RAM_MB as usize + 16)
}

/// QEMU CPUs for `guests` guests: one each, cores 1.., and core 0 for mc2's
/// own processes (at least 4, as the other runs).
pub fn qemu_cpus(guests: usize) -> usize {
    (guests + 1).max(4)
}

/// The shell session that starts `guests` Linux guests on cores 1..=guests,
/// lists them, waits for all of them and shows memory before and after
/// (one command per line, as typed at the prompt).
pub fn session(guests: usize, extra: &str) -> Vec<String> {
    let mut lines = vec!["mem".to_string()];
    lines.extend((1..=guests).map(|cpu| vm_start(cpu, extra)));
    lines.extend(["vm list", "wait", "vm list", "mem"].map(String::from));
    lines
}

/// `cargo xtask run --guests N [--stay]`: boot mc2 under QEMU (SVM), start N
/// Linux guests from its shell, show their consoles as they run (each line
/// `[vmK] ...`), then power off, or with `--stay` leave the shell to the
/// terminal (line by line: `vm list`, `vm stop ID`, `mem`, `exit`).
pub fn run_guests(guests: usize, stay: bool) -> Result<()> {
    use std::io::{Read, Write};
    use std::process::Stdio;
    if guests == 0 || guests > 15 {
        return Err("--guests must be between 1 and 15 (one CPU each, and CPU 0 for mc2)".into());
    }
    let elf = crate::kbuild::build_variant(crate::kbuild::LockKind::Ticket, false, false)?;
    let bundle = crate::user::build_bundle()?;
    let o = crate::emu::QemuOpts { smp: qemu_cpus(guests), memory_mib: qemu_memory_mib(guests), bundle: Some(&bundle), ..Default::default() };
    let mut c = crate::emu::qemu_command(&elf, &o)?;
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    eprintln!("xtask: QEMU TCG (SVM) with {} CPUs, {} MiB; {guests} Linux guest(s) on CPUs 1..={guests}", o.smp, o.memory_mib);
    let mut child = c.spawn().map_err(|e| format!("cannot start QEMU: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut script: Vec<String> = session(guests, "");
    if !stay {
        script.push("exit 0".into());
    }
    let typer = std::thread::spawn(move || {
        // Type the session once the shell prompts, then hand over the terminal.
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut typed = false;
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let _ = std::io::stdout().write_all(&chunk[..n]);
            let _ = std::io::stdout().flush();
            if !typed {
                seen.extend_from_slice(&chunk[..n]);
                if String::from_utf8_lossy(&seen).contains("mc2$ ") {
                    let text: String = script.iter().map(|l| format!("{l}\r")).collect();
                    let _ = stdin.write_all(text.as_bytes());
                    let _ = stdin.flush();
                    typed = true;
                    if stay {
                        let mut stdin = stdin;
                        std::thread::spawn(move || {
                            let mut line = String::new();
                            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                                let _ = stdin.write_all(format!("{}\r", line.trim_end()).as_bytes());
                                let _ = stdin.flush();
                                line.clear();
                            }
                        });
                        return_stdout(stdout);
                        return;
                    }
                }
            }
        }
    });
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = typer.join();
    match status.code() {
        Some(crate::emu::QEMU_SUCCESS) | Some(0) => Ok(()),
        Some(crate::emu::QEMU_FAILURE) => Err("mc2 reported a failure".into()),
        other => Err(format!("QEMU exited with {other:?}")),
    }
}

/// Copy the rest of QEMU's output to the terminal.
fn return_stdout(mut from: std::process::ChildStdout) {
    let _ = std::io::copy(&mut from, &mut std::io::stdout());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_script_marks_and_powers_off() {
        let s = init_script();
        assert!(s.starts_with("#!/bin/busybox sh\n"));
        assert!(s.contains(MARKER) && s.contains(POWER_OFF));
        // Port 0x501 is byte 1281 of /dev/port.
        assert_eq!(0x501, 1281);
        assert!(s.contains("seek=1281"));
    }
}
