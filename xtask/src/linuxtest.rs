//! Linux guests in `cargo xtask test`: Debian's kernel and the busybox
//! initramfs (`linuxguest.rs`) under mc2's VMM, on QEMU TCG with AMD SVM.
//!
//! 1. one guest boots to its marker line and powers itself off (`[vm0]`
//!    lines, status 0, init powers off cleanly);
//! 2. three guests at once on cores 1-3, started from the shell: each
//!    reaches its marker and powers off; the shell's memory (free pages,
//!    its container's usage) is the same before and after;
//! 3. stopping a guest (`vm stop`) while it boots returns all its memory;
//! 4. `vm attach` sends typed lines to a guest's shell (`mc2shell`).
//!
//! `--long` adds Intel VT-x in Bochs: the single guest, then three at once
//! (cores 1-3 of a 4-CPU Bochs; Bochs runs every CPU on one host thread, so
//! three guests take about three times one).

use crate::emu::{self, QemuOpts, Tcg, QEMU_SUCCESS};
use crate::linuxguest::{self as lg, KERNEL, INITRD, MARKER, POWER_OFF, QUOTA_PAGES};
use crate::util::{Captured, Result, Typed};
use std::path::Path;
use std::time::Duration;

/// Each check as (name, result): the caller tallies them. `word`: only the
/// checks whose name holds it.
pub fn run(elf: &Path, bundle: &Path, long: bool, word: Option<&str>) -> Vec<(String, Result<()>)> {
    type Check<'a> = (&'static str, Box<dyn FnOnce() -> Result<()> + 'a>);
    let mut checks: Vec<Check<'_>> = vec![
        ("linux guest: Debian's kernel boots under mc2's VMM (SVM, QEMU TCG) to its marker line and powers itself off; its timer is the local APIC's TSC deadline, kept by the kernel", Box::new(|| single(elf, bundle, true))),
        ("linux guest without a local APIC (vmm --no-lapic): boots on the 8254 and 8259s alone and powers itself off", Box::new(|| single(elf, bundle, false))),
        ("linux guests: three at once on cores 1-3 reach their markers and power off; the shell's memory is the same before and after", Box::new(|| three(elf, bundle))),
        ("linux guest: `vm stop` while it boots ends it and returns all its memory to the shell's container", Box::new(|| stop(elf, bundle))),
        ("linux guest: `vm attach` types into its console: the guest's shell runs the command and powers off on `exit`", Box::new(|| attach(elf, bundle))),
    ];
    if long {
        checks.push(("linux guest under Intel VT-x (Bochs): boots to its marker and powers off", Box::new(|| bochs(elf, bundle))));
        checks.push(("linux guests under Intel VT-x (Bochs): three at once on cores 1-3 reach their markers and power off; the shell's memory is the same before and after", Box::new(|| bochs_three(elf, bundle))));
    }
    checks.into_iter().filter(|(name, _)| word.is_none_or(|w| name.contains(w))).map(|(name, check)| (name.to_string(), check())).collect()
}

/// `cargo xtask test-guests [--long] [WORD]`: only these checks (with a
/// WORD, only those whose name holds it, e.g. `Bochs`).
pub fn standalone(args: &[String]) -> Result<()> {
    let elf = crate::kbuild::build(crate::kbuild::LockKind::Ticket, true)?;
    let bundle = crate::user::build_bundle()?;
    let word = args.iter().find(|a| !a.starts_with("--"));
    let mut failed = 0;
    for (name, r) in run(&elf, &bundle, args.iter().any(|a| a == "--long"), word.map(String::as_str)) {
        match r {
            Ok(()) => println!("ok      {name}"),
            Err(e) => {
                failed += 1;
                println!("FAILED  {name}");
                for l in e.lines() {
                    println!("        | {l}");
                }
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} Linux guest check(s) failed"))
    }
}

fn need(cap: &Captured, lines: &[String]) -> Result<()> {
    for l in lines {
        if !cap.output.contains(l.as_str()) {
            return Err(format!("the console lacks `{l}` (status {:?}, timed out {}, {:.1} s):\n{}", cap.code(), cap.timed_out, cap.elapsed.as_secs_f64(), tail(&cap.output)));
        }
    }
    Ok(())
}

/// The console from the first Linux guest's start on.
fn linux_part(out: &str) -> &str {
    out.find("starting Linux").map(|i| &out[i..]).unwrap_or("")
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The lines one guest `vmN` prints when all goes well.
fn guest_ok(id: usize) -> Vec<String> {
    vec![format!("[vm{id}] starting Linux {KERNEL}"), format!("[vm{id}] {MARKER}: Linux "), format!("[vm{id}] {POWER_OFF}"), format!("[vm{id}] guest exited with status 0")]
}

/// One guest; `lapic`: with the kernel's local APIC (the default), whose
/// TSC-deadline timer Linux then uses, else with `--no-lapic` (the PIT).
fn single(elf: &Path, bundle: &Path, lapic: bool) -> Result<()> {
    let cmdline = format!("-- run -c 1 -q {QUOTA_PAGES} vmm {KERNEL} --initrd {INITRD}{}", if lapic { "" } else { " --no-lapic" });
    let o = QemuOpts { smp: 2, memory_mib: lg::qemu_memory_mib(1), cmdline: &cmdline, tcg: Tcg::MultiThreaded, bundle: Some(bundle), ..Default::default() };
    let cap = emu::qemu_capture(elf, &o, Duration::from_secs(240), None)?;
    let mut want = guest_ok(0);
    want.push(format!("; timer {}", if lapic { "lapic-deadline" } else { "pit" }));
    want.push("mc2: init powered off with status 0".into());
    need(&cap, &want)?;
    if cap.code() != Some(QEMU_SUCCESS) {
        return Err(format!("QEMU status {:?}", cap.code()));
    }
    println!("        single Linux guest{}: {:.1} s from QEMU start to power-off", if lapic { "" } else { " (no local APIC)" }, cap.elapsed.as_secs_f64());
    Ok(())
}

/// The shell's `mem` figures: (free pages, shell's usage), each time `mem` ran.
fn mem_figures(out: &str) -> Vec<(u64, u64)> {
    let mut free = Vec::new();
    let mut usage = Vec::new();
    for l in out.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.first() == Some(&"memory:") {
            free.extend(w.get(1).and_then(|v| v.parse::<u64>().ok()));
        }
        if w.first() == Some(&"shell:") {
            usage.extend(w.get(5).and_then(|v| v.parse::<u64>().ok()));
        }
    }
    free.into_iter().zip(usage).collect()
}

/// Every page is back: free pages plus the shell's own usage (its heap may
/// grow by a page while it keeps track of the children) are the same at
/// the last `mem` as at the first.
fn same_memory(cap: &Captured) -> Result<()> {
    let m = mem_figures(&cap.output);
    match (m.first(), m.last()) {
        (Some(a), Some(b)) if m.len() >= 2 && a.0 + a.1 == b.0 + b.1 => Ok(()),
        _ => Err(format!("free pages + shell usage before and after differ or are missing: {m:?}\n{}", tail(&cap.output))),
    }
}

fn typed_run(elf: &Path, bundle: &Path, guests: usize, lines: &[String], timeout: u64) -> Result<Captured> {
    let input: String = lines.iter().map(|l| format!("{l}\r")).collect();
    let o = QemuOpts { smp: lg::qemu_cpus(guests), memory_mib: lg::qemu_memory_mib(guests), cmdline: "", tcg: Tcg::MultiThreaded, bundle: Some(bundle), ..Default::default() };
    emu::qemu_capture(elf, &o, Duration::from_secs(timeout), Some(Typed { after: "mc2$ ", input: &input }))
}

/// Lines that run a small flat guest on cores 1..=cpus first: the kernel
/// sets each core's SVM state up (a few pages, kept) and the shell's heap
/// reaches its size, so that `mem` before and after the Linux guests
/// compares the guests' memory alone.
fn warm_up(cpus: usize) -> Vec<String> {
    let mut l: Vec<String> = (1..=cpus).map(|c| format!("vm start -c {c} testguest.bin")).collect();
    l.extend(["wait".to_string(), "vm list".to_string()]);
    l
}

/// The lines three guests on cores 1-3 print when all goes well, and the
/// machine's clean power-off.
fn three_ok() -> Vec<String> {
    let mut want: Vec<String> = (0..3).flat_map(guest_ok).collect();
    want.extend((1..=3).map(|c| format!("MiB of RAM on cpu {c}:")));
    want.push("mc2: init powered off with status 0".into());
    want
}

/// Each VMM's closing line (how long its guest ran, its exits), for a look.
fn print_runs(out: &str) {
    for l in linux_part(out).lines().filter(|l| l.contains("] ran ")) {
        println!("        {}", l.trim_end());
    }
}

/// The three-guest flake of issue 7 (the guest started first, vm0 on CPU 1,
/// booting 2-2.5x slower than the other two, with about twice their
/// kernel-handled exits) is found: it was the bug behind the IPC
/// benchmark's slow mode. Kernel stacks were not cleared when mapped, and
/// vm0's VMM, started right after the warm-up's VMMs exited, got their
/// freed program frames as its kernel stack; QEMU still held translated
/// code for those frames, so every push on that stack (each exit the kernel
/// handles runs on it) took TCG's self-modifying-code slow path. That is
/// why it never showed without the warm-up. Measured on a quiet host with
/// `cargo xtask test-guests`: the kernel before the fix, vm0 42.9 s and
/// 46.1 s against 19.5-20.9 s for vm1/vm2 (2 of 2 runs); with kernel
/// stacks zeroed (`mm::kernel::map_kernel_stack`), 19.4 / 18.9 / 19.0 s and
/// 15.9 / 15.9 / 16.3 s. The kernel self-test `mm_kernel_stack_zeroed`
/// guards the cause; the per-guest times are printed below for a look.
/// The whole console is kept so that a slow or failed run can be read.
fn three(elf: &Path, bundle: &Path) -> Result<()> {
    let mut lines = warm_up(3);
    lines.extend(lg::session(3, ""));
    lines.push("exit 0".into());
    let cap = typed_run(elf, bundle, 3, &lines, 420)?;
    // The whole console stays behind for a look at a slow or failed run.
    let log = crate::util::target_dir().join("linux-three-guests.log");
    let _ = std::fs::write(&log, &cap.output);
    print_runs(&cap.output);
    need(&cap, &three_ok()).map_err(|e| format!("{e}\n(the whole console: {})", log.display()))?;
    // The warm-up's flat guests end the same way: count only what follows.
    let linux = Captured { status: cap.status, output: linux_part(&cap.output).to_string(), timed_out: cap.timed_out, elapsed: cap.elapsed };
    need(&linux, &(0..3).map(|id| format!("[vm{id}] guest exited with status 0")).collect::<Vec<_>>())?;
    same_memory(&cap)?;
    println!("        three Linux guests: {:.1} s from QEMU start to power-off", cap.elapsed.as_secs_f64());
    Ok(())
}

fn stop(elf: &Path, bundle: &Path) -> Result<()> {
    let mut lines = warm_up(1);
    lines.extend(["mem".to_string(), lg::vm_start(1, ""), "sleep 2000".into(), "vm list".into(), "vm stop 0".into(), "wait".into(), "vm list".into(), "mem".into(), "exit 0".into()]);
    let cap = typed_run(elf, bundle, 1, &lines, 180)?;
    need(&cap, &["[vm0] starting Linux".to_string(), "vm 0: its VMM (pid ".to_string(), "mc2: init powered off with status 0".to_string()])?;
    if linux_part(&cap.output).contains("[vm0] guest exited") {
        return Err(format!("the guest ended by itself before `vm stop`:\n{}", tail(&cap.output)));
    }
    if cap.output.matches("(no virtual machines)").count() != 2 {
        return Err(format!("`vm list` should show the VM running, then none:\n{}", tail(&cap.output)));
    }
    same_memory(&cap)
}

fn attach(elf: &Path, bundle: &Path) -> Result<()> {
    let lines: Vec<String> = vec![
        lg::vm_start(1, "mc2shell"),
        "sleep 20000".into(),
        "vm attach 0".into(),
        "echo attached-$((6*7))".into(),
        "exit".into(),
        "\x1dwait".into(),
        "exit 0".into(),
    ];
    let cap = typed_run(elf, bundle, 1, &lines, 240)?;
    need(&cap, &["[attached to vm0".to_string(), "[vm0] attached-42".to_string(), "[detached from vm0]".to_string(), "[vm0] guest exited with status 0".to_string(), "mc2: init powered off with status 0".to_string()])
}

fn bochs(elf: &Path, bundle: &Path) -> Result<()> {
    let cmdline = format!("-- run -c 0 -q {QUOTA_PAGES} vmm {KERNEL} --initrd {INITRD}");
    let iso = emu::iso_path("mc2-linux-bochs");
    emu::make_iso(elf, Some(bundle), &cmdline, &iso)?;
    let cap = emu::bochs_capture(&iso, 1, "linux-guest", Duration::from_secs(1500))?;
    let mut want = guest_ok(0);
    want.push("; timer lapic-deadline".into());
    want.push("mc2: init powered off with status 0".into());
    need(&cap, &want)?;
    println!("        Linux guest under VT-x in Bochs: {:.1} s", cap.elapsed.as_secs_f64());
    Ok(())
}

/// Three guests at once under VT-x: a 4-CPU Bochs with room for three
/// guests' RAM, the shell running the same warm-up and session as
/// [`three`] from the command line (one line, commands separated by `;`,
/// which `emu::make_iso` escapes for GRUB's script).
fn bochs_three(elf: &Path, bundle: &Path) -> Result<()> {
    let mut lines = warm_up(3);
    lines.extend(lg::session(3, ""));
    let cmdline = format!("-- {}", lines.join("; "));
    let iso = emu::iso_path("mc2-linux-bochs-three");
    emu::make_iso(elf, Some(bundle), &cmdline, &iso)?;
    let megs = lg::qemu_memory_mib(3);
    let cap = emu::bochs_capture_megs(&iso, lg::qemu_cpus(3), megs, "linux-guests-three", Duration::from_secs(2400))?;
    let log = crate::util::target_dir().join("bochs/linux-guests-three/serial.log");
    print_runs(&cap.output);
    let mut want = three_ok();
    want.push("; timer lapic-deadline".into());
    need(&cap, &want).map_err(|e| format!("{e}\n(the whole console: {})", log.display()))?;
    same_memory(&cap)?;
    println!("        three Linux guests under VT-x in Bochs: {:.1} s", cap.elapsed.as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_figures_are_read() {
        let out = "memory:    192051 of 192139 pages free (750 of 750 MiB)\nroot:      quota 1 pages, usage 1 pages\nshell:     quota 192034 pages, usage 44 pages\n";
        assert_eq!(mem_figures(out), vec![(192051, 44)]);
    }
}
