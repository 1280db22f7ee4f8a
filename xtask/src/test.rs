//! `cargo xtask test`: every check mc2 has, ending with `N passed, N failed`.
//!
//! 1. host: unit and property tests of the layer crates (both lock kinds);
//! 2. lock checks: loom (every interleaving, C11 model) and shuttle
//!    (randomized and PCT schedules);
//! 3. kernel images: both lock variants build and pass the Multiboot layout check;
//! 4. boot: the in-kernel suite under QEMU TCG (4 CPUs interleaved, and as
//!    many CPUs as the host has cores in parallel, each lock kind), a boot with
//!    a CPU that never answers, interrupt-driven serial input, and the
//!    harness's own teeth (a fault, a panic and a hang must be reported as
//!    failures);
//! 5. user space: `utest` on every kernel variant, the demos, a shell session;
//! 6. Linux guests (`linuxtest`): one to its marker, three at once, `vm stop`
//!    mid-boot, `vm attach`;
//! 7. hypervisor (`vmtest`): the test and chaos guests under SVM (QEMU)
//!    and VT-x (Bochs), the shell's `vm` commands;
//! 8. assurance (`assure`): conformance traces against the spec, fuzzing,
//!    exhaustion;
//! 9. Bochs: the GRUB ISO on a VT-x capable CPU model, 1 and 4 CPUs.

use crate::emu::{self, QemuOpts, Tcg, QEMU_FAILURE, QEMU_SUCCESS};
use crate::kbuild::{self, LockKind};
use crate::util::{cargo, host_cpus, target_dir, Captured, Result, Typed};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    failures: Vec<String>,
}

impl Tally {
    fn ok(&mut self, name: &str) {
        println!("ok      {name}");
        self.passed += 1;
    }
    fn fail(&mut self, name: &str, detail: &str) {
        println!("FAILED  {name}");
        for line in detail.lines() {
            println!("        | {line}");
        }
        self.failed += 1;
        self.failures.push(name.to_string());
    }
    fn check(&mut self, name: &str, r: Result<()>) {
        match r {
            Ok(()) => self.ok(name),
            Err(e) => self.fail(name, &e),
        }
    }
    /// Count an external tally (cargo test's) without listing each test.
    fn add_counts(&mut self, what: &str, passed: usize, failed: usize, failed_names: &[String]) {
        println!("{:<7} {what}: {passed} passed, {failed} failed", if failed == 0 { "ok" } else { "FAILED" });
        self.passed += passed;
        self.failed += failed;
        self.failures.extend(failed_names.iter().map(|n| format!("{what}: {n}")));
    }
}

fn section(name: &str) {
    println!("\n== {name}");
}

/// Options of `cargo xtask test`.
pub struct TestOpts {
    /// Skip the slow parts (Bochs, loom/shuttle) for quick iterations; CI runs everything.
    pub quick: bool,
}

pub fn run(opts: TestOpts) -> ExitCode {
    let start = Instant::now();
    let mut t = Tally::default();

    section("host: layer crates (unit, property, model tests)");
    cargo_tests(&mut t, "host tests (ticket lock default)", &["test", "--no-fail-fast"], None, None);
    cargo_tests(&mut t, "host tests (MCS lock default)", &["test", "--no-fail-fast", "-p", "lock", "-p", "dev", "--features", "lock/mcs"], None, None);

    if !opts.quick {
        section("lock: loom (exhaustive interleavings) and shuttle (random + PCT schedules)");
        let loom = target_dir().join("loom");
        cargo_tests(&mut t, "loom", &["test", "--release", "-p", "lock", "--test", "loom"], Some("--cfg loom"), Some(&loom));
        let shuttle = target_dir().join("shuttle");
        cargo_tests(&mut t, "shuttle", &["test", "--release", "-p", "lock", "--test", "shuttle"], Some("--cfg shuttle"), Some(&shuttle));
    }

    section("kernel images");
    let mut kernels: Vec<(LockKind, PathBuf)> = Vec::new();
    for kind in [LockKind::Ticket, LockKind::Mcs] {
        match kbuild::build(kind, true) {
            Ok(elf) => {
                t.ok(&format!("kernel builds ({} lock) and its image passes the Multiboot layout check", kind.name()));
                kernels.push((kind, elf));
            }
            Err(e) => t.fail(&format!("kernel builds ({} lock)", kind.name()), &e),
        }
    }

    let bundle = match crate::user::build_bundle() {
        Ok(b) => {
            t.ok("user programs build into the boot bundle");
            Some(b)
        }
        Err(e) => {
            t.fail("user programs build", &e);
            None
        }
    };
    let bkl = match kbuild::build_variant(LockKind::Ticket, true, true) {
        Ok(elf) => {
            t.ok("big-kernel-lock kernel (mC2-bl) builds and passes the layout check");
            Some(elf)
        }
        Err(e) => {
            t.fail("big-kernel-lock kernel builds", &e);
            None
        }
    };

    if !kernels.is_empty() {
        section("boot under QEMU TCG");
        boot_tests(&mut t, &kernels);
        if let Some(b) = &bundle {
            section("user space under QEMU TCG (init, shell, programs, utest)");
            user_tests(&mut t, &kernels, bkl.as_deref(), b);
            section("Linux guests under mc2's VMM (QEMU TCG, SVM; --long: also VT-x in Bochs)");
            for (name, r) in crate::linuxtest::run(&kernels[0].1, b, std::env::args().any(|a| a == "--long"), None) {
                t.check(&name, r);
            }
        }
        if let Some(b) = &bundle {
            section("hypervisor: guests under the user-level VMM (SVM in QEMU; VT-x in Bochs unless --quick)");
            for (name, r) in crate::vmtest::tests(&kernels[0].1, b, !opts.quick) {
                t.check(&name, r);
            }
        }
        if let Some(b) = &bundle {
            section("assurance: conformance with the spec, fuzzing, exhaustion (docs/assurance.md)");
            for (name, r) in crate::assure::tests(&kernels[0].1, b) {
                t.check(&name, r);
            }
        }
        if !opts.quick {
            section("boot under Bochs (GRUB ISO, VT-x capable CPU model)");
            bochs_tests(&mut t, &kernels[0].1);
        }
    }

    println!("\n(took {:.0} s)", start.elapsed().as_secs_f64());
    if !t.failures.is_empty() {
        println!("failures:");
        for f in &t.failures {
            println!("  {f}");
        }
    }
    println!("{} passed, {} failed", t.passed, t.failed);
    if t.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Run a cargo test command and add up its `test result:` lines.
fn cargo_tests(t: &mut Tally, what: &str, args: &[&str], rustflags: Option<&str>, target: Option<&Path>) {
    let mut c = cargo();
    c.args(args).arg("--color").arg("never");
    if let Some(f) = rustflags {
        c.env("RUSTFLAGS", f);
    }
    if let Some(d) = target {
        c.arg("--target-dir").arg(d);
    }
    let started = Instant::now();
    let out = match c.output() {
        Ok(o) => o,
        Err(e) => return t.fail(what, &format!("cannot run cargo: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (mut passed, mut failed) = (0, 0);
    let mut names = Vec::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split([';', '.']) {
                let part = part.trim();
                if let Some(n) = part.strip_suffix(" passed") {
                    passed += n.trim().parse::<usize>().unwrap_or(0);
                } else if let Some(n) = part.strip_suffix(" failed") {
                    failed += n.trim().parse::<usize>().unwrap_or(0);
                }
            }
        } else if let Some(name) = line.strip_prefix("test ").and_then(|l| l.strip_suffix(" ... FAILED")) {
            names.push(name.to_string());
        }
    }
    if !out.status.success() && failed == 0 {
        // Did not compile, or a test binary crashed: one failure, with the log.
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        return t.fail(what, &format!("cargo {} exited with {}:\n{}", args.join(" "), out.status, tail.join("\n")));
    }
    t.add_counts(&format!("{what} ({:.0} s)", started.elapsed().as_secs_f64()), passed, failed, &names);
    if failed > 0 {
        // Show the failing tests' output.
        let mut show = false;
        for line in stdout.lines() {
            if line.starts_with("---- ") {
                show = true;
            }
            if line == "failures:" && show {
                break;
            }
            if show {
                println!("        | {line}");
            }
        }
    }
}

/// The verdict on an in-kernel suite run: each `TEST` line, and whether the
/// run as a whole ended properly.
struct Suite {
    tests: Vec<(String, Option<String>)>,
    problem: Option<String>,
}

fn read_suite(cap: &Captured, qemu: bool) -> Suite {
    let mut tests = Vec::new();
    let mut done = None;
    for line in cap.output.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("TEST ") {
            if let Some(name) = rest.strip_suffix(" ... ok") {
                tests.push((name.to_string(), None));
            } else if let Some((name, why)) = rest.split_once(" ... FAILED: ") {
                tests.push((name.to_string(), Some(why.to_string())));
            }
        } else if line.starts_with("TESTS DONE") {
            done = Some(line.to_string());
        }
    }
    let fatal = cap.output.lines().find(|l| l.starts_with("!!! mc2:")).map(str::to_string);
    let problem = if cap.timed_out {
        Some(format!("timed out after {:.0} s", cap.elapsed.as_secs_f64()))
    } else if let Some(f) = fatal {
        Some(format!("the kernel reported a fatal error: {f}"))
    } else if done.is_none() {
        Some(format!("the run ended without `TESTS DONE` (emulator status {:?}: triple fault or crash?)", cap.code()))
    } else if qemu && cap.code() != Some(QEMU_SUCCESS) {
        Some(format!("QEMU exit status {:?}, expected {QEMU_SUCCESS} (isa-debug-exit success)", cap.code()))
    } else if tests.is_empty() {
        Some("no TEST lines".into())
    } else {
        None
    };
    Suite { tests, problem }
}

/// Tally a suite run: one entry per in-kernel test plus one for the run.
fn tally_suite(t: &mut Tally, scenario: &str, cap: &Captured, qemu: bool, extra: impl FnOnce(&Captured) -> Result<()>) {
    let s = read_suite(cap, qemu);
    for (name, failure) in &s.tests {
        match failure {
            None => t.ok(&format!("{scenario}: {name}")),
            Some(why) => t.fail(&format!("{scenario}: {name}"), why),
        }
    }
    let whole = match s.problem {
        Some(p) => Err(p),
        None => extra(cap),
    };
    match whole {
        Ok(()) => t.ok(&format!("{scenario}: boots, runs the suite, exits cleanly ({:.1} s)", cap.elapsed.as_secs_f64())),
        Err(e) => t.fail(&format!("{scenario}: run"), &format!("{e}\n--- console ---\n{}", cap.output)),
    }
}

/// Exactly one `mc2: X/Y cpus online` line, with the expected counts.
fn summary_line(cap: &Captured, online: usize, listed: usize) -> Result<()> {
    let lines: Vec<&str> = cap.output.lines().map(|l| l.trim_end_matches('\r')).filter(|l| l.starts_with("mc2: ") && l.ends_with(" cpus online")).collect();
    let want = format!("mc2: {online}/{listed} cpus online");
    match lines.as_slice() {
        [one] if *one == want => Ok(()),
        [one] => Err(format!("summary line is `{one}`, expected `{want}`")),
        [] => Err("no `mc2: N/M cpus online` summary line".into()),
        many => Err(format!("{} summary lines, expected exactly one", many.len())),
    }
}

fn boot_tests(t: &mut Tally, kernels: &[(LockKind, PathBuf)]) {
    let timeout = Duration::from_secs(120);
    let par = host_cpus().clamp(2, 4);
    for (kind, elf) in kernels {
        // 4 CPUs interleaved on one host thread, then real parallelism.
        for (smp, tcg, label) in [(4, Tcg::SingleThreaded, "tcg-1thread"), (par, Tcg::MultiThreaded, "tcg-mthread")] {
            let cmdline = format!("test expect_cpus={smp}");
            let scenario = format!("qemu {label} smp{smp} {}", kind.name());
            let o = QemuOpts { smp, cmdline: &cmdline, tcg, ..Default::default() };
            match emu::qemu_capture(elf, &o, timeout, None) {
                Ok(cap) => {
                    t.check(&format!("{scenario}: the local APIC timer calibrated against the PIT runs at QEMU's rate"), apic_timer_rate(&cap.output));
                    tally_suite(t, &scenario, &cap, true, |c| summary_line(c, smp, smp))
                }
                Err(e) => t.fail(&scenario, &e),
            }
        }
    }
    let elf = &kernels[0].1;

    // A listed CPU that never answers: reported, boot goes on.
    {
        let o = QemuOpts { smp: 4, cmdline: "test expect_cpus=4 extra_apic=0x7e", tcg: Tcg::SingleThreaded, ..Default::default() };
        match emu::qemu_capture(elf, &o, timeout, None) {
            Ok(cap) => tally_suite(t, "qemu smp4 + a CPU that never answers", &cap, true, |c| {
                summary_line(c, 4, 5)?;
                if !c.output.contains("did not start within") {
                    return Err("no report naming the CPU that did not start".into());
                }
                Ok(())
            }),
            Err(e) => t.fail("qemu missing CPU", &e),
        }
    }

    // APs given up on at once (1 us): a CPU that comes up after the BSP has
    // moved on must park, never run on the next CPU's stack and index.
    {
        let o = QemuOpts { smp: 4, cmdline: "test ap_timeout_us=1", tcg: Tcg::MultiThreaded, ..Default::default() };
        match emu::qemu_capture(elf, &o, timeout, None) {
            Ok(cap) => tally_suite(t, "qemu smp4, APs given up on after 1 us (late CPUs park)", &cap, true, |c| late_aps_park(&c.output)),
            Err(e) => t.fail("qemu late APs", &e),
        }
    }

    // Serial input by interrupt: type a probe line once the kernel is ready.
    {
        let o = QemuOpts { smp: 2, cmdline: "test=rx", ..Default::default() };
        let typed = Typed { after: "rx-test: ready for input", input: "mc2-rx-probe\r" };
        match emu::qemu_capture(elf, &o, Duration::from_secs(60), Some(typed)) {
            Ok(cap) => tally_suite(t, "qemu serial input", &cap, true, |_| Ok(())),
            Err(e) => t.fail("qemu serial input", &e),
        }
    }

    // The harness must see failures: each of these runs has to be judged failed.
    let teeth: [(&str, &str, u64, &[&str]); 5] = [
        ("fault", "test=fault", 60, &["exception #PF page fault (vector 14)", "cpu 1:", "cr2 0x00007fff00000000", "error code 0x2", "rip 0x", "system halted"]),
        ("panic", "test=panic", 60, &["PANIC: panicked at", "deliberate panic", "system halted"]),
        ("hang", "test=hang", 8, &[]),
        ("write to its own text", "test=wxorx", 60, &["exception #PF page fault (vector 14)", "protection violation, write, kernel mode", "system halted"]),
        ("stack overflow", "test=kstack", 60, &["exception #DF double fault (vector 8)", "is in the guard pages below kernel stack slot 0", "KERNEL STACK OVERFLOW", "system halted"]),
    ];
    for (what, cmdline, secs, must_show) in teeth {
        let name = format!("harness catches a kernel {what} (report, then failure)");
        let o = QemuOpts { smp: 4, cmdline, tcg: Tcg::SingleThreaded, ..Default::default() };
        let r = emu::qemu_capture(elf, &o, Duration::from_secs(secs), None).and_then(|cap| {
            let s = read_suite(&cap, true);
            if s.problem.is_none() {
                return Err(format!("the harness judged the {what} run a success:\n{}", cap.output));
            }
            if what != "hang" && cap.code() != Some(QEMU_FAILURE) {
                return Err(format!("QEMU status {:?}, expected {QEMU_FAILURE}:\n{}", cap.code(), cap.output));
            }
            if what == "hang" && !cap.timed_out {
                return Err(format!("the hang run ended by itself:\n{}", cap.output));
            }
            for m in must_show {
                if !cap.output.contains(m) {
                    return Err(format!("the report lacks `{m}`:\n{}", cap.output));
                }
            }
            Ok(())
        });
        t.check(&name, r);
    }
}

/// QEMU's local APIC timer counts its 1 GHz bus clock (hw/intc/apic.c),
/// divided by 16 as the kernel sets it: 62,500 ticks a millisecond, on
/// the same virtual clock as its PIT. The boot line `clocks: TSC ... MHz,
/// APIC timer N ticks/ms` must say so within 0.1%: the TSC's rate comes
/// from the same two samples, and the calibration before this check read
/// 0.6-1.3% high under TCG (every sleep, tick and guest clock that much
/// slow).
fn apic_timer_rate(out: &str) -> Result<()> {
    const QEMU_TICKS_PER_MS: u64 = 62_500;
    let (_, n) = boot_clocks(out).ok_or("no `clocks: TSC ... MHz, APIC timer N ticks/ms` line at boot")?;
    if n.abs_diff(QEMU_TICKS_PER_MS) * 1000 > QEMU_TICKS_PER_MS {
        return Err(format!("APIC timer calibrated at {n} ticks/ms, QEMU's is {QEMU_TICKS_PER_MS} (more than 0.1% off)"));
    }
    Ok(())
}

/// The kernel's boot line `clocks: TSC X MHz, APIC timer N ticks/ms ...`:
/// (TSC MHz, APIC timer ticks per ms).
pub fn boot_clocks(out: &str) -> Option<(f64, u64)> {
    let rest = out.lines().find_map(|l| l.split("clocks: TSC ").nth(1))?;
    let mhz = rest.split_whitespace().next()?.parse().ok()?;
    let apic = rest.split("APIC timer ").nth(1)?.split_whitespace().next()?.parse().ok()?;
    Some((mhz, apic))
}

/// After a boot whose APs were given up on early: no CPU reported as not
/// started came online anyway, every CPU index came up once, and the
/// summary counts exactly the CPUs that came up.
fn late_aps_park(out: &str) -> Result<()> {
    let mut given_up = Vec::new();
    let mut online: Vec<(String, String)> = Vec::new();
    for l in out.lines() {
        if let Some(rest) = l.split("CPU with APIC id ").nth(1) {
            if l.contains("did not start within") {
                given_up.push(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
        if let Some(i) = l.find(" online (APIC id ") {
            let idx = l[..i].rsplit(' ').next().unwrap_or("").to_string();
            let apic = l[i + " online (APIC id ".len()..].trim_end_matches(['\r', ')']).to_string();
            online.push((idx, apic));
        }
    }
    for (idx, apic) in &online {
        if given_up.contains(apic) {
            return Err(format!("the CPU with APIC id {apic} was given up on, then came online anyway as {idx}"));
        }
    }
    let mut idxs: Vec<&String> = online.iter().map(|(i, _)| i).collect();
    idxs.sort();
    idxs.dedup();
    if idxs.len() != online.len() {
        return Err(format!("a CPU index came up twice: {online:?}"));
    }
    let want = format!("mc2: {}/4 cpus online", online.len() + 1);
    if !out.contains(&want) {
        return Err(format!("expected `{want}` ({} APs came up)", online.len()));
    }
    Ok(())
}

fn bochs_tests(t: &mut Tally, elf: &Path) {
    for cpus in [1, 4] {
        let scenario = format!("bochs smp{cpus}");
        let iso = target_dir().join("bochs").join(format!("test-smp{cpus}.iso"));
        let r = std::fs::create_dir_all(iso.parent().unwrap())
            .map_err(|e| e.to_string())
            .and_then(|_| emu::make_iso(elf, None, &format!("test expect_cpus={cpus}"), &iso))
            .and_then(|_| emu::bochs_capture(&iso, cpus, &format!("smp{cpus}"), Duration::from_secs(240)));
        match r {
            Ok(cap) => tally_suite(t, &scenario, &cap, false, |c| summary_line(c, cpus, cpus)),
            Err(e) => t.fail(&scenario, &e),
        }
    }
}

/// User space: the `utest` suite through init and the shell on each kernel
/// variant, the demo programs, and an interactive shell session.
fn user_tests(t: &mut Tally, kernels: &[(LockKind, PathBuf)], bkl: Option<&Path>, bundle: &Path) {
    let timeout = Duration::from_secs(300);
    let par = host_cpus().clamp(2, 4);
    let mut runs: Vec<(String, &Path, usize, Tcg)> = Vec::new();
    for (kind, elf) in kernels {
        runs.push((format!("user {} smp4 tcg-1thread", kind.name()), elf.as_path(), 4, Tcg::SingleThreaded));
    }
    if let Some((_, elf)) = kernels.first() {
        runs.push((format!("user ticket smp{par} tcg-mthread"), elf.as_path(), par, Tcg::MultiThreaded));
    }
    if let Some(elf) = bkl {
        runs.push(("user big-kernel-lock smp4 tcg-1thread".to_string(), elf, 4, Tcg::SingleThreaded));
    }
    for (scenario, elf, smp, tcg) in &runs {
        let o = QemuOpts { smp: *smp, cmdline: "-- utest", tcg: *tcg, bundle: Some(bundle), ..Default::default() };
        match emu::qemu_capture(elf, &o, timeout, None) {
            Ok(cap) => tally_suite(t, scenario, &cap, true, |c| {
                if c.output.contains("mc2: init powered off with status 0") {
                    Ok(())
                } else {
                    Err("init did not power off with status 0".into())
                }
            }),
            Err(e) => t.fail(scenario, &e),
        }
    }
    let Some((_, elf)) = kernels.first() else { return };
    // The demos, each through the shell's one-command mode.
    let demos: [(&str, &[&str]); 4] = [
        ("pingpong 100", &["pingpong:", " ok"]),
        ("prodcons 2000", &["prodcons:", "sum 2001000 ok"]),
        ("shmdemo", &["shmdemo: ok"]),
        ("hello from the shell", &["hello from pid"]),
    ];
    for (cmd, want) in demos {
        let cmdline = format!("-- {cmd}");
        let o = QemuOpts { smp: 4, cmdline: &cmdline, tcg: Tcg::SingleThreaded, bundle: Some(bundle), ..Default::default() };
        let name = format!("user demo `{cmd}` prints its result and init powers off cleanly");
        let r = emu::qemu_capture(elf, &o, timeout, None).and_then(|cap| {
            if cap.timed_out || cap.code() != Some(QEMU_SUCCESS) {
                return Err(format!("status {:?}, timed out {}:\n{}", cap.code(), cap.timed_out, cap.output));
            }
            for w in want {
                if !cap.output.contains(w) {
                    return Err(format!("output lacks `{w}`:\n{}", cap.output));
                }
            }
            Ok(())
        });
        t.check(&name, r);
    }
    // An interactive session: commands typed at the shell's prompt.
    let o = QemuOpts { smp: 2, cmdline: "", tcg: Tcg::MultiThreaded, bundle: Some(bundle), ..Default::default() };
    let typed = Typed { after: "mc2$ ", input: "programs\rps\rrun -c 1 hello typed\rnosuchprog\rexit 0\r" };
    let r = emu::qemu_capture(elf, &o, Duration::from_secs(60), Some(typed)).and_then(|cap| {
        for w in ["utest", "PID", "shell", "hello from pid", "no such program: nosuchprog", "mc2: init powered off with status 0"] {
            if !cap.output.contains(w) {
                return Err(format!("the session lacks `{w}`:\n{}", cap.output));
            }
        }
        Ok(())
    });
    t.check("interactive shell: programs, ps, run on cpu 1, a bad command, exit", r);
}

#[cfg(test)]
mod tests {
    #[test]
    fn apic_timer_rate_is_read_and_judged() {
        let line = |n: u64| format!("[   0.000 cpu0 INFO ] clocks: TSC 2445.431 MHz, APIC timer {n} ticks/ms (PIT-calibrated)");
        assert!(super::apic_timer_rate(&line(62_500)).is_ok());
        assert!(super::apic_timer_rate(&line(62_555)).is_ok());
        // What the old calibration read.
        assert!(super::apic_timer_rate(&line(62_903)).is_err());
        assert!(super::apic_timer_rate("no such line").is_err());
    }

    use super::late_aps_park;

    #[test]
    fn a_cpu_given_up_on_that_comes_online_anyway_is_caught() {
        // Seen before the trampoline claim: APIC id 3 given up on, then up as cpu2.
        let bad = "[   0.013 cpu1 INFO ] cpu1 online (APIC id 1)\n\
                   [   0.025 cpu0 WARN ] CPU with APIC id 2 did not start within 1 us; continuing without it\n\
                   [   0.036 cpu0 WARN ] CPU with APIC id 3 did not start within 1 us; continuing without it\n\
                   [   0.036 cpu2 INFO ] cpu2 online (APIC id 3)\nmc2: 3/4 cpus online\n";
        assert!(late_aps_park(bad).is_err());
        let good = "[   0.013 cpu1 INFO ] cpu1 online (APIC id 1)\n\
                    [   0.025 cpu0 WARN ] CPU with APIC id 2 did not start within 1 us; continuing without it\n\
                    [   0.036 cpu0 WARN ] CPU with APIC id 3 did not start within 1 us; continuing without it\n\
                    mc2: 2/4 cpus online\n";
        assert_eq!(late_aps_park(good), Ok(()));
        let twice = "cpu1 online (APIC id 1)\ncpu1 online (APIC id 2)\nmc2: 3/4 cpus online\n";
        assert!(late_aps_park(twice).is_err());
    }
}
