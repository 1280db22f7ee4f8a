//! Hypervisor checks (issue 5): the test guest and the chaos guest under the
//! user-level VMM, on AMD SVM (QEMU TCG, `-cpu qemu64,+svm,+npt`) and on
//! Intel VT-x (Bochs, Skylake-X model), and the shell's `vm` commands.
//!
//! Each check is judged on what the guest and the VMM print (`[vmN] ...`
//! lines), the VMM's and init's exit statuses, and the memory the shell
//! reports before and after: a run that loses pages fails.

use crate::emu::{self, QemuOpts, Tcg, QEMU_SUCCESS};
use crate::util::{target_dir, Captured, Result, Typed};
use std::path::Path;
use std::time::Duration;

/// What `testguest` prints, in order, when every step of it worked.
const TESTGUEST_STEPS: &[&str] = &[
    "guest: real mode",
    "guest: cpuid vendor ",
    "guest: hypervisor \"mc2 mc2 mc2 \"",
    "guest: protected mode",
    "guest: long mode",
    "guest: idt, pic (0x20/0x28) and pit (100 Hz) ready",
    "guest: 20 timer interrupts",
    "guest: memory at 0x300000 ok",
    "guest: user-mode hypervisor leaf \"mc2 mc2 mc2 \" then \"",
    "guest: success",
    "[vm0] guest exited with status 0",
];

/// What `testguest` prints with a local APIC (`vmm --lapic`), in order,
/// between its PIT phase and its end.
const TESTGUEST_LAPIC_STEPS: &[&str] = &[
    "guest: 20 timer interrupts",
    "guest: local APIC timer: 20 deadlines passed with interrupts masked, each taken once at STI",
    "guest: local APIC self-NMI: a second one sent inside the first's handler came after its IRET",
    "guest: local APIC deadlines met late by",
    "guest: success",
];

/// The test guest's two user-mode CPUIDs of the hypervisor leaf both
/// exited to mc2 (`trapped`), or only the first did (`RUN_USER_CPUID`: the
/// second is the processor's own, QEMU's `TCGTCGTCGTCG`).
fn user_cpuid(out: &str, trapped: bool) -> Result<()> {
    let both = "guest: user-mode hypervisor leaf \"mc2 mc2 mc2 \" then \"mc2 mc2 mc2 \"";
    let first = "guest: user-mode hypervisor leaf \"mc2 mc2 mc2 \" then \"";
    match (out.contains(both), out.contains(first), trapped) {
        (true, _, true) | (false, true, false) => Ok(()),
        (false, true, true) => Err("a user-mode CPUID got through to the processor: it must exit to mc2 here".into()),
        (true, _, false) => Err("with RUN_USER_CPUID the second user-mode CPUID still exited to mc2".into()),
        (false, false, _) => Err("no user-mode CPUID line from the test guest".into()),
    }
}

/// The lines of `out` that contain `want`, in order, must all be there.
fn in_order(out: &str, want: &[&str]) -> Result<()> {
    let mut rest = out;
    for w in want {
        match rest.find(w) {
            Some(i) => rest = &rest[i + w.len()..],
            None => return Err(format!("missing (or out of order) `{w}`")),
        }
    }
    Ok(())
}

fn no_kernel_trouble(cap: &Captured) -> Result<()> {
    if cap.timed_out {
        return Err(format!("timed out after {:.0} s", cap.elapsed.as_secs_f64()));
    }
    for bad in ["!!! mc2:", "PANIC", "exception #"] {
        if cap.output.contains(bad) {
            return Err(format!("the kernel reported `{bad}`"));
        }
    }
    Ok(())
}

fn with_log(r: Result<()>, cap: &Captured) -> Result<()> {
    r.map_err(|e| format!("{e}\n--- console ---\n{}", cap.output))
}

/// For each `mem` in the session: free pages plus the shell's own usage
/// (`memory: X of Y pages free`, `shell: quota Q pages, usage U pages`).
/// The shell's heap may grow while it runs; every other page must be free
/// again once the VMs are gone.
fn free_pages(out: &str) -> Vec<u64> {
    let mut v = Vec::new();
    let mut free = None;
    for l in out.lines().map(str::trim_start) {
        if let Some(rest) = l.strip_prefix("memory:") {
            free = rest.split_whitespace().next().and_then(|n| n.parse::<u64>().ok());
        } else if let (Some(rest), Some(f)) = (l.strip_prefix("shell:"), free) {
            if let Some(u) = rest.split("usage").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse::<u64>().ok()) {
                v.push(f + u);
                free = None;
            }
        }
    }
    v
}

/// The session's two `mem` reports (before and after `what` ran) show the
/// same pages: nothing leaked.
fn pages_back(out: &str, what: &str) -> Result<()> {
    match free_pages(out).as_slice() {
        [before, after] if before == after => Ok(()),
        [before, after] => Err(format!("free pages {before} before {what}, {after} after: pages leaked")),
        other => Err(format!("expected two `mem` reports, found {}", other.len())),
    }
}

/// `[vmN] stopped:` lines: VMs the VMM stopped with a report.
fn stops(out: &str) -> usize {
    out.lines().filter(|l| l.starts_with("[vm") && l.contains("] stopped: ")).count()
}

pub fn tests(elf: &Path, bundle: &Path, bochs: bool) -> Vec<(String, Result<()>)> {
    let mut v = Vec::new();
    let timeout = Duration::from_secs(120);

    // 1. The test guest under AMD SVM, on CPU 1 while the shell waits on 0.
    let o = QemuOpts { smp: 2, cmdline: "-- run -c 1 -q 4096 vmm testguest.bin --user-cpuid", tcg: Tcg::MultiThreaded, bundle: Some(bundle), ..Default::default() };
    let r = emu::qemu_capture(elf, &o, timeout, None).and_then(|cap| {
        with_log(
            no_kernel_trouble(&cap)
                .and_then(|_| in_order(&cap.output, TESTGUEST_STEPS))
                .and_then(|_| user_cpuid(&cap.output, false))
                .and_then(|_| if cap.output.contains("guest: cpuid vendor AuthenticAMD") { Ok(()) } else { Err("the guest did not see an AMD CPU".into()) })
                .and_then(|_| if cap.output.contains("mc2: init powered off with status 0") && cap.code() == Some(QEMU_SUCCESS) { Ok(()) } else { Err("init did not power off with status 0".into()) }),
            &cap,
        )
    });
    v.push(("vm svm (QEMU): testguest: real, protected and long mode, CPUID in the kernel, user-mode CPUID let through after the first (RUN_USER_CPUID), serial, 20 PIT interrupts, on-demand memory, success".to_string(), r));

    // 1b. The test guest with the kernel's local APIC: its timer expiring
    // while the guest has interrupts masked, 20 times. Each must be taken
    // once at the guest's STI (the guest checks); and under SVM without a
    // window exit each (V_IRQ offers): the kernel's "other" exits stay
    // those of the PIT phase (about 20), where windows would add 20 more.
    let o = QemuOpts { smp: 2, cmdline: "-- run -c 1 -q 4096 vmm testguest.bin --lapic", tcg: Tcg::MultiThreaded, bundle: Some(bundle), ..Default::default() };
    let r = emu::qemu_capture(elf, &o, timeout, None).and_then(|cap| {
        with_log(
            no_kernel_trouble(&cap)
                .and_then(|_| in_order(&cap.output, &[TESTGUEST_LAPIC_STEPS, &["[vm0] guest exited with status 0"]].concat()))
                .and_then(|_| match crate::bench_guests::kernel_kinds(&cap.output, "[vm0] ").and_then(|k| k.get("other").copied()) {
                    Some(n) if n < 30 => Ok(()),
                    Some(n) => Err(format!("{n} \"other\" kernel-handled exits: the masked deadlines took window exits, not V_IRQ offers")),
                    None => Err("no `[vm0] kernel-handled:` line from the VMM".into()),
                }),
            &cap,
        )
        .map(|_| cap.output)
    });
    if let Some(l) = r.as_ref().ok().and_then(|out| lateness(out)) {
        println!("        local APIC deadlines under SVM (QEMU TCG), late by {l}");
    }
    v.push(("vm svm (QEMU): testguest with the kernel's local APIC: 20 TSC deadlines passed with interrupts masked, each taken once at STI, in service until its EOI, offered as a virtual interrupt (no window exit); a self-NMI sent inside an NMI handler waits for its IRET; 96 deadlines, running, exiting and halted, none met early".to_string(), r.map(|_| ())));

    // 2. Chaos under SVM, each phase in its own VM one after another in one
    // session; then the shell must still run programs, and every page must
    // have come back. A first testguest run warms up per-CPU virt state so
    // the two `mem` counts compare like with like.
    let mut input = String::from("run -c 1 -q 4096 vmm testguest.bin\rmem\r");
    for phase in 0..=7 {
        input.push_str(&format!("run -c 1 -q 4096 vmm chaos.bin --arg {phase} --time-limit 5\r"));
    }
    input.push_str("mem\rrun -c 2 hello after-chaos\rexit 0\r");
    let o = QemuOpts { smp: 4, cmdline: "", tcg: Tcg::MultiThreaded, bundle: Some(bundle), ..Default::default() };
    let r = emu::qemu_capture(elf, &o, Duration::from_secs(240), Some(Typed { after: "mc2$ ", input: &input })).and_then(|cap| {
        let check = || -> Result<()> {
            no_kernel_trouble(&cap)?;
            // The warm-up test guest runs without RUN_USER_CPUID.
            user_cpuid(&cap.output, true)?;
            let n = stops(&cap.output);
            if n != 8 {
                return Err(format!("{n} of the 8 chaos VMs were stopped with a report, expected all 8"));
            }
            if cap.output.contains("chaos: survived everything") {
                return Err("a chaos guest survived its far writes: guest memory is not contained".into());
            }
            // Phase 3 under SVM: the reserved CR4 bit (QEMU's VMEXIT_INVALID) must be a #GP.
            in_order(&cap.output, &["chaos: phase 3", "chaos: cr4 with reserved bit 15 -> exception 13"])?;
            in_order(&cap.output, &["hello from pid", "mc2: init powered off with status 0"])?;
            pages_back(&cap.output, "the chaos VMs")
        };
        with_log(check(), &cap)
    });
    v.push(("vm svm (QEMU): chaos guests (random ports, code, MSRs, CR writes, string I/O, far writes) are stopped with a report, no page lost, the shell goes on".to_string(), r));

    // 3. The shell's vm commands: (after a warm-up run on CPUs 1 and 2:
    // each CPU's virtualization areas are set up once and kept) start two
    // long-running guests in the background, list them, stop them, see them
    // gone and their pages back.
    // Meanwhile a process runs on CPU 1 beside its guest (mostly halted:
    // the kernel used to keep the CPU in the halted guest's wait until the
    // guest ended).
    let input = "run -c 1 -q 4096 vmm testguest.bin\rrun -c 2 -q 4096 vmm testguest.bin\rmem\rvm start testguest.bin --arg 60\rvm start testguest.bin --arg 60\rrun -c 1 hello\rsleep 3000\rvm list\rvm stop 0\rvm stop 1\rwait\rvm list\rmem\rvm stop 0\rexit 0\r";
    let o = QemuOpts { smp: 3, cmdline: "", tcg: Tcg::MultiThreaded, bundle: Some(bundle), ..Default::default() };
    let r = emu::qemu_capture(elf, &o, timeout, Some(Typed { after: "mc2$ ", input })).and_then(|cap| {
        let check = || -> Result<()> {
            no_kernel_trouble(&cap)?;
            in_order(&cap.output, &["guest: success", "guest: long mode", "guest: 20 timer interrupts"])?;
            let hello = cap.output.find("hello from pid").ok_or("`run -c 1 hello` printed nothing")?;
            if cap.output.find("[vm0] guest: 10 s").is_some_and(|g| g < hello) {
                return Err("`run -c 1 hello` waited for the guest on CPU 1 (10 s of it passed first): a guest keeps its CPU from the processes there".into());
            }
            // `vm list` while they run: VMs 0 and 1 running, one on cpu 1
            // and one on cpu 2 (each VM gets a CPU of its own by default).
            let mut cpus: Vec<&str> = cap
                .output
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() >= 4 && (f[0] == "0" || f[0] == "1") && f[3] == "running").then(|| f[2])
                })
                .collect();
            cpus.sort();
            if cpus != ["1", "2"] {
                return Err(format!("`vm list` showed running VMs on cpus {cpus:?}, expected one on 1 and one on 2"));
            }
            // Right of `|`, the exits the kernel handled by kind: some for a
            // guest that ran for seconds (its 8259 writes are posted), and
            // all of them among its exits.
            let rows: Vec<(u64, Vec<u64>)> = cap
                .output
                .lines()
                .filter_map(|l| {
                    let (row, kinds) = l.split_once(" | ")?;
                    let f: Vec<&str> = row.split_whitespace().collect();
                    (f.len() == 6 && f[3] == "running").then(|| (f[5].parse().unwrap_or(0), kinds.split_whitespace().filter_map(|k| k.parse().ok()).collect()))
                })
                .collect();
            let fits = |(exits, kinds): &(u64, Vec<u64>)| kinds.len() == abi::vm::HANDLED_KINDS && (1..=*exits).contains(&kinds.iter().sum());
            if rows.len() != 2 || !rows.iter().all(fits) {
                return Err(format!("`vm list` should show each running VM's exits and, by kind, the kernel-handled ones among them; read (exits, by kind) {rows:?}"));
            }
            if cap.output.matches("guest: success").count() != 2 {
                return Err("a background guest ran to its end: `vm stop` did not stop it".into());
            }
            in_order(&cap.output, &["vm 0: its VMM (pid ", "(no virtual machines)"])?;
            pages_back(&cap.output, "the VMs")?;
            in_order(&cap.output, &["(no virtual machines)", "vm stop: no VM 0", "mc2: init powered off with status 0"])
        };
        with_log(check(), &cap)
    });
    v.push(("vm shell: two vm starts get CPUs 1 and 2, a process on CPU 1 runs beside its guest, vm list, vm stop, pages returned, stopping a gone VM is an error".to_string(), r));

    if !bochs {
        return v;
    }
    // 4. Intel VT-x under Bochs: the test guest (with the kernel's local
    // APIC), then every chaos phase in one VM.
    for (name, cmd, secs) in [
        // With the kernel's local APIC: its masked deadlines take the
        // window exit path under VT-x (no V_IRQ there).
        ("testguest", "-- run -c 0 -q 4096 vmm testguest.bin --user-cpuid --lapic", 240u64),
        ("chaos", "-- run -c 0 -q 4096 vmm chaos.bin --arg 0 --time-limit 60", 300),
    ] {
        let iso = target_dir().join("bochs").join(format!("vm-{name}.iso"));
        let r = std::fs::create_dir_all(iso.parent().unwrap())
            .map_err(|e| e.to_string())
            .and_then(|_| emu::make_iso(elf, Some(bundle), cmd, &iso))
            .and_then(|_| emu::bochs_capture(&iso, 1, &format!("vm-{name}"), Duration::from_secs(secs)))
            .and_then(|cap| {
                let check = || -> Result<()> {
                    no_kernel_trouble(&cap)?;
                    if name == "testguest" {
                        in_order(&cap.output, TESTGUEST_STEPS)?;
                        in_order(&cap.output, TESTGUEST_LAPIC_STEPS)?;
                        if let Some(l) = lateness(&cap.output) {
                            println!("        local APIC deadlines under VT-x (Bochs), late by {l}");
                        }
                        // VT-x always exits on CPUID, RUN_USER_CPUID or not.
                        user_cpuid(&cap.output, true)?;
                        if !cap.output.contains("guest: cpuid vendor GenuineIntel") {
                            return Err("the guest did not see an Intel CPU".into());
                        }
                        in_order(&cap.output, &["mc2: init powered off with status 0"])
                    } else {
                        // Under VT-x every invalid CR write is a #GP or #UD the guest recovers from.
                        in_order(
                            &cap.output,
                            &[
                                "chaos: 500 random port accesses done",
                                "chaos: cr4 with reserved bit 15 -> exception 13",
                                "chaos: cr4 without PAE -> exception 13",
                                "chaos: mov to cr1 -> exception 6",
                                "chaos: cr0 with NW but not CD -> exception 13",
                                "chaos: cr0 without PG in 64-bit code -> exception 13",
                                "chaos: phase 5",
                                "chaos: phase 6",
                                "[vm0] stopped: ",
                                "mc2: init powered off with status 3",
                            ],
                        )
                    }
                };
                with_log(check(), &cap)
            });
        let what = if name == "testguest" {
            "vm vmx (Bochs): testguest from real mode to long mode with PIT interrupts, local APIC deadlines passed while masked taken once each at STI (window exits), a self-NMI inside an NMI handler waits for its IRET (blocking by NMI), 96 deadlines none met early, success"
        } else {
            "vm vmx (Bochs): chaos phases 0-6 in one VM: invalid CR writes become #GP/#UD, far writes stop the VM with a report"
        };
        v.push((what.to_string(), r));
    }
    v
}

/// `cargo xtask test-vm`: build, then only these checks, with the same
/// closing line as `cargo xtask test`.
pub fn run_alone(quick: bool) -> std::process::ExitCode {
    let built = crate::kbuild::build(crate::kbuild::LockKind::Ticket, true).and_then(|elf| Ok((elf, crate::user::build_bundle()?)));
    let (elf, bundle) = match built {
        Ok(b) => b,
        Err(e) => {
            eprintln!("build failed: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for (name, r) in tests(&elf, &bundle, !quick) {
        match r {
            Ok(()) => {
                passed += 1;
                println!("  ok    {name}");
            }
            Err(e) => {
                failed += 1;
                println!("  FAIL  {name}\n{e}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
/// The test guest's lateness line in microseconds, by the TSC rate the
/// kernel's boot line gives: "running median A µs (max B), exiting ...,
/// halted ...".
fn lateness(out: &str) -> Option<String> {
    let (mhz, _) = crate::test::boot_clocks(out)?;
    let line = out.lines().find(|l| l.contains("guest: local APIC deadlines met late by"))?;
    let num = |key: &str, nth: usize| -> Option<f64> { line.split(key).nth(nth)?.split(|c: char| !c.is_ascii_digit()).next()?.parse::<f64>().ok().map(|t| t / mhz) };
    Some(format!(
        "running median {:.1} µs (max {:.1}), exiting median {:.1} µs (max {:.1}), halted median {:.1} µs (max {:.1})",
        num("median ", 1)?,
        num("max ", 1)?,
        num("median ", 2)?,
        num("max ", 2)?,
        num("median ", 3)?,
        num("max ", 3)?
    ))
}


#[cfg(test)]
mod tests {
    #[test]
    fn lateness_is_read_in_microseconds() {
        let out = "[   0.000 cpu0 INFO ] clocks: TSC 2000.000 MHz, APIC timer 62500 ticks/ms (PIT-calibrated)\n\
                   [vm0] guest: local APIC deadlines met late by (TSC ticks, 32 each) running min 100 median 4000 max 20000, exiting min 1 median 2000 max 3000, halted min 10 median 6000 max 8000; none early\n";
        assert_eq!(super::lateness(out).as_deref(), Some("running median 2.0 µs (max 10.0), exiting median 1.0 µs (max 1.5), halted median 3.0 µs (max 4.0)"));
        assert_eq!(super::lateness("no clocks"), None);
    }
}
