//! `cargo xtask bench guests`: workloads inside a Linux guest under mc2's
//! hypervisor, against the same Linux kernel and initramfs booted directly
//! by the same emulator (QEMU TCG, the same CPU model): 100% = bare speed.
//!
//! The guest's `/init` (`linuxguest.rs`, `mc2bench` on its command line)
//! times two workloads with its own clock (the TSC, `tsc=reliable`) and
//! prints `mc2-bench untar MS` and `mc2-bench compile MS`. Each round runs
//! bare Linux on one emulated CPU, then (`--same-machine`) bare on a
//! machine like mc2's (`--smp N` CPUs, default 4, Linux told `nr_cpus=1`:
//! figures `*_over_bare_smp`), then the guest. Each workload's best time
//! per side counts.
//! A last run boots three guests at once (cores 1-3) running the same
//! workloads: all three must reach their shells.
//!
//! Output: `target/bench/guests.json` (raw times, every run, and `figures`:
//! `untar_over_bare`, `compile_over_bare` = bare time / guest time, so 1.0
//! means the guest is as fast as bare Linux) and `target/bench/guests.svg`.

use crate::emu::{self, QemuOpts, Tcg};
use crate::linuxguest::{self as lg, INITRD, KERNEL, QUOTA_PAGES};
use crate::svg::{self, Series};
use crate::util::{run_captured, target_dir, Result, Typed};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const WORKLOADS: [&str; 2] = ["untar", "compile"];
/// Rounds (bare + guest) unless `--rounds N` says otherwise.
const ROUNDS: usize = 2;

/// `mc2-bench NAME MS` lines of the console whose lines start with `prefix`.
fn times(out: &str, prefix: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for l in out.lines() {
        let Some(rest) = l.trim_end_matches('\r').strip_prefix(prefix).and_then(|r| r.strip_prefix("mc2-bench ")) else { continue };
        let w: Vec<&str> = rest.split_whitespace().collect();
        if let [name, ms] = w[..] {
            if let Ok(v) = ms.parse::<f64>() {
                m.insert(name.to_string(), v);
            }
        }
    }
    m
}

/// The rest of the VMM's console line that starts `prefix` `head` (the
/// VMM's closing report for the guest `prefix` names).
fn vmm_line<'a>(out: &'a str, prefix: &str, head: &str) -> Option<&'a str> {
    out.lines().find_map(|l| l.trim_end_matches('\r').strip_prefix(prefix)?.strip_prefix(head))
}

/// The VMM's `kernel-handled:` line for the guest `prefix` names: the exits
/// the kernel handled, by kind.
pub fn kernel_kinds(out: &str, prefix: &str) -> Option<BTreeMap<String, u64>> {
    parse_kinds(vmm_line(out, prefix, "kernel-handled: ")?)
}

/// `host interrupts N cpuid N msr N posted io N other N` by kind.
fn parse_kinds(words: &str) -> Option<BTreeMap<String, u64>> {
    let line = words.replace("host interrupts", "interrupts").replace("posted io", "posted_io");
    let w: Vec<&str> = line.split_whitespace().collect();
    w.chunks(2).map(|p| Some((p.first()?.to_string(), p.get(1)?.parse().ok()?))).collect()
}

/// The exits during each workload, from the VMM's notes at the lines the
/// workloads print as they start (`mc2-bench start NAME`) and end
/// (`mc2-bench NAME MS`): `all`, `to_vmm` and the kernel's by kind, each
/// the difference between the two notes.
fn workload_exits(out: &str, prefix: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut start: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut during = BTreeMap::new();
    for l in out.lines() {
        let Some(rest) = l.trim_end_matches('\r').strip_prefix(prefix).and_then(|r| r.strip_prefix("exits at mc2-bench ")) else { continue };
        let Some((head, counts)) = rest.split_once(": all ") else { continue };
        let Some((all, kinds)) = counts.split_once("; kernel-handled: ") else { continue };
        let (Some(all), Some(mut note)) = (all.trim().parse::<u64>().ok(), parse_kinds(kinds)) else { continue };
        let handled: u64 = note.values().sum();
        note.insert("to_vmm".into(), all.saturating_sub(handled));
        note.insert("all".into(), all);
        match head.split_whitespace().collect::<Vec<_>>()[..] {
            ["start", name] => {
                start.insert(name.to_string(), note);
            }
            [name, _ms] => {
                if let Some(s) = start.get(name) {
                    during.insert(name.to_string(), note.iter().map(|(k, v)| (k.clone(), v.saturating_sub(s.get(k).copied().unwrap_or(0)))).collect());
                }
            }
            _ => {}
        }
    }
    during
}

/// The VMM's closing counts for the guest `prefix` names: exits to the
/// VMM, exits the kernel handled, and of the VMM's the deadline exits
/// (whole run, boot included). Counts do not move with the host's speed
/// the way times do.
fn exit_counts(out: &str, prefix: &str) -> Option<(u64, u64, u64)> {
    let num = |s: &str| s.trim().parse::<u64>().ok();
    let ran = vmm_line(out, prefix, "ran ")?;
    let (_, after) = ran.split_once(" ms, ")?;
    let (vmm, rest) = after.split_once(" exits (and ")?;
    let (kernel, _) = rest.split_once(" the kernel handled")?;
    let kinds = vmm_line(out, prefix, "exits: ")?;
    let kinds = kinds.split(';').next()?;
    let w: Vec<&str> = kinds.split_whitespace().collect();
    let deadline = w.iter().position(|&k| k == "deadline").and_then(|i| w.get(i + 1)).and_then(|v| num(v))?;
    Some((num(vmm)?, num(kernel)?, deadline))
}

fn complete(m: &BTreeMap<String, f64>, what: &str, out: &str) -> Result<()> {
    for w in WORKLOADS {
        if !m.contains_key(w) {
            let tail: Vec<&str> = out.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(format!("{what}: no `mc2-bench {w}` line:\n{}", tail.join("\n")));
        }
    }
    Ok(())
}

/// The host's 1-minute load average: emulated time is only comparable
/// between runs while nothing else competes for the host's cores.
fn host_load() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok())).unwrap_or(f64::NAN)
}

/// The host's CPU time counters (`/proc/stat` "cpu" line, in ticks):
/// (steal, total). Steal is time the host's own hypervisor gave to others.
fn host_cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_times(stat.lines().next()?)
}

fn parse_cpu_times(line: &str) -> Option<(u64, u64)> {
    let mut w = line.split_whitespace();
    (w.next()? == "cpu").then_some(())?;
    let v: Vec<u64> = w.map(|x| x.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]:
    // guest time is already counted in user and nice.
    Some((*v.get(7)?, v.iter().take(8).sum()))
}

/// Percent of the host's CPU time stolen between two readings.
fn steal_pct(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((s0, t0), (s1, t1)) = (before?, after?);
    (t1 > t0).then(|| (s1.saturating_sub(s0)) as f64 * 100.0 / (t1 - t0) as f64)
}

/// The bare runs of each round, (name, emulated CPUs): on one CPU
/// (`bare`, the figures' baseline) and, with `--same-machine`, also on a
/// machine like mc2's (`bare_smp`: `smp` CPUs, Linux told `nr_cpus=1`).
/// Linux uses one CPU in all of them, as the guest does.
fn baselines(smp: usize, same_machine: bool) -> Vec<(&'static str, usize)> {
    let mut b = vec![("bare", 1)];
    if same_machine && smp > 1 {
        b.push(("bare_smp", smp));
    }
    b
}

fn baseline_words(cpus: usize) -> String {
    if cpus > 1 {
        format!("{cpus} CPUs as mc2's machine, Linux on one: nr_cpus=1")
    } else {
        "1 CPU".into()
    }
}

/// The guest's Linux booted directly by QEMU on `cpus` emulated CPUs
/// (Linux told to use one of them).
fn run_bare(vmlinuz: &std::path::Path, cpio: &std::path::Path, cmdline: &str, cpus: usize) -> Result<crate::util::Captured> {
    crate::provision::ensure(&[crate::provision::Tool::Qemu])?;
    let cmdline = if cpus > 1 { format!("{cmdline} nr_cpus=1") } else { cmdline.to_string() };
    let mut q = std::process::Command::new("qemu-system-x86_64");
    q.args(["-machine", "pc", "-cpu", "qemu64,+svm,+npt", "-accel", "tcg,thread=multi", "-smp"])
        .arg(cpus.to_string())
        .arg("-m")
        .arg(lg::RAM_MB.to_string())
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(cpio)
        .arg("-append")
        .arg(&cmdline)
        // The guest's power-off writes port 0x501, as under mc2's VMM.
        .args(["-device", "isa-debug-exit,iobase=0x501,iosize=1", "-display", "none", "-no-reboot", "-serial", "stdio"]);
    run_captured(&mut q, Duration::from_secs(600), None, None)
}

pub fn run(args: &[String]) -> Result<()> {
    let rounds: usize = crate::flag_value(args, "--rounds").map(|v| v.parse().map_err(|_| format!("--rounds takes a number, not `{v}`"))).transpose()?.unwrap_or(ROUNDS).max(1);
    // `--one`: skip the three-guest run (a quicker measurement).
    let three_guests = !args.iter().any(|a| a == "--one");
    // `--trap-cpuid`: the VMM keeps every CPUID exiting (no `RUN_USER_CPUID`), for comparison.
    // `--no-post`: the VMM does not post the 8259s' ports (every access exits to it), for comparison.
    // `--no-lapic`: the guest has no local APIC (the 8259s and 8254 only), for comparison.
    let mut vmm_opts = String::new();
    for flag in ["--trap-cpuid", "--no-post", "--no-lapic"] {
        if args.iter().any(|a| a == flag) {
            vmm_opts.push(' ');
            vmm_opts.push_str(flag);
        }
    }
    // `--exit-every-us N`: the running guest exits to the VMM at least
    // every N µs (a measuring aid: what one more world switch costs).
    if let Some(us) = crate::flag_value(args, "--exit-every-us") {
        let us: u64 = us.parse().map_err(|_| format!("--exit-every-us takes a number, not `{us}`"))?;
        vmm_opts.push_str(&format!(" --exit-every-us {us}"));
    }
    // `--smp N`: CPUs of the emulated machine, mc2's and the first bare
    // run's (default 4: the shell on 0, the guest on 1; with 1 the guest
    // shares CPU 0 with the shell).
    let smp: usize = crate::flag_value(args, "--smp").map(|v| v.parse().map_err(|_| format!("--smp takes a number, not `{v}`"))).transpose()?.unwrap_or(4);
    if smp == 0 {
        return Err("--smp must be at least 1".into());
    }
    let guest_cpu = usize::from(smp > 1);
    // `--same-machine`: also run bare Linux on mc2's emulated machine (its
    // CPU count, Linux on one): whether QEMU's multi-CPU mode alone costs.
    let same_machine = args.iter().any(|a| a == "--same-machine");
    let load_before = host_load();
    let elf = crate::kbuild::build(crate::kbuild::LockKind::Ticket, true)?;
    let bundle = crate::user::build_bundle()?;
    let vmlinuz = crate::linux::kernel()?;
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // The very initramfs the bundle holds.
    let cpio = dir.join("guests-initrd.cpio");
    std::fs::write(&cpio, crate::linux::busybox_initramfs(&lg::init_script())?).map_err(|e| e.to_string())?;
    // `--append WORDS`: more words for the guest's command line, bare and
    // under mc2 alike (e.g. `mc2info`: the guest prints what CPU it sees).
    let append = crate::flag_value(args, "--append").map(|w| format!(" {w}")).unwrap_or_default();
    let cmdline = format!("{} mc2bench{append}", lg::CMDLINE);

    let mut bare_runs: BTreeMap<&str, Vec<BTreeMap<String, f64>>> = BTreeMap::new();
    let mut guest_runs = Vec::new();
    let mut guest_exits = Vec::new();
    // Per run: the share of the host's CPU time its hypervisor gave to others.
    let mut steals: Vec<(&str, usize, Option<f64>)> = Vec::new();
    for round in 1..=rounds {
        for (label, cpus) in baselines(smp, same_machine) {
            println!("== round {round}/{rounds}: bare Linux on QEMU TCG ({}, {} MiB)", baseline_words(cpus), lg::RAM_MB);
            let cpu0 = host_cpu_times();
            let cap = run_bare(&vmlinuz, &cpio, &cmdline, cpus)?;
            let steal = steal_pct(cpu0, host_cpu_times());
            let _ = std::fs::write(dir.join(format!("guests-{label}-round{round}.log")), &cap.output);
            let t = times(&cap.output, "");
            complete(&t, "bare run", &cap.output)?;
            println!("   {t:?} ({:.1} s wall, host steal {:.1}%)", cap.elapsed.as_secs_f64(), steal.unwrap_or(f64::NAN));
            bare_runs.entry(label).or_default().push(t);
            steals.push((label, round, steal));
        }

        println!("== round {round}/{rounds}: the same Linux as a guest of mc2 (QEMU TCG, SVM, {smp} CPU(s), guest on CPU {guest_cpu})");
        // `--exit-notes`: the VMM notes the exits at the workloads' lines.
        let mc2_cmdline = format!("-- run -c {guest_cpu} -q {QUOTA_PAGES} vmm {KERNEL} --initrd {INITRD}{vmm_opts} --exit-notes -- {cmdline}");
        let o = QemuOpts { smp, memory_mib: lg::qemu_memory_mib(1), cmdline: &mc2_cmdline, tcg: Tcg::MultiThreaded, bundle: Some(&bundle), ..Default::default() };
        let cpu0 = host_cpu_times();
        let cap = emu::qemu_capture(&elf, &o, Duration::from_secs(600), None)?;
        let steal = steal_pct(cpu0, host_cpu_times());
        steals.push(("guest", round, steal));
        // The whole console, for a look at the VMM's exit profile.
        let _ = std::fs::write(dir.join(format!("guests-round{round}.log")), &cap.output);
        let t = times(&cap.output, "[vm0] ");
        complete(&t, "guest run", &cap.output)?;
        println!("   {t:?} ({:.1} s wall, host steal {:.1}%)", cap.elapsed.as_secs_f64(), steal.unwrap_or(f64::NAN));
        for l in cap.output.lines().filter(|l| l.starts_with("[vm0] exits:") || l.starts_with("[vm0] ran ") || l.starts_with("[vm0] kernel-handled:")) {
            println!("   {}", l.trim_end());
        }
        let during = workload_exits(&cap.output, "[vm0] ");
        for (w, n) in &during {
            let ms = t.get(w).copied().unwrap_or(f64::NAN);
            let all = n.get("all").copied().unwrap_or(0);
            let kinds: Vec<String> = n.iter().filter(|(k, _)| *k != "all").map(|(k, v)| format!("{k} {v}")).collect();
            println!("   during {w}: {all} exits in {ms} ms ({:.0} a second): {}", all as f64 * 1000.0 / ms, kinds.join(", "));
        }
        if let Some((vmm, kernel, deadline)) = exit_counts(&cap.output, "[vm0] ") {
            guest_exits.push(json!({ "round": round, "to_vmm": vmm, "kernel_handled": kernel, "deadline": deadline, "kernel_by_kind": kernel_kinds(&cap.output, "[vm0] "), "during": during }));
        }
        guest_runs.push(t);
    }

    let mut three = Vec::new();
    let mut reached = 0;
    if three_guests {
        println!("== three guests at once (cores 1-3), each running the workloads");
        let mut lines = lg::session(3, "mc2bench");
        lines.push("exit 0".into());
        let input: String = lines.iter().map(|l| format!("{l}\r")).collect();
        let o = QemuOpts { smp: lg::qemu_cpus(3), memory_mib: lg::qemu_memory_mib(3), cmdline: "", tcg: Tcg::MultiThreaded, bundle: Some(&bundle), ..Default::default() };
        let cap = emu::qemu_capture(&elf, &o, Duration::from_secs(900), Some(Typed { after: "mc2$ ", input: &input }))?;
        for id in 0..3 {
            let prefix = format!("[vm{id}] ");
            if cap.output.contains(&format!("{prefix}{}", lg::MARKER)) {
                reached += 1;
            }
            three.push(times(&cap.output, &prefix));
        }
        println!("   {reached} of 3 reached their shells; {three:?} ({:.1} s wall)", cap.elapsed.as_secs_f64());
    }

    let best = |runs: &[BTreeMap<String, f64>], w: &str| runs.iter().filter_map(|m| m.get(w)).cloned().fold(f64::INFINITY, f64::min);
    let mut figures = serde_json::Map::new();
    // Guest speed in % of each baseline's, per workload.
    let mut pct: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    println!("\n{:<10} {:<10} {:>10} {:>10} {:>8}", "workload", "baseline", "bare ms", "guest ms", "guest %");
    for w in WORKLOADS {
        for (label, runs) in &bare_runs {
            let (b, g) = (best(runs, w), best(&guest_runs, w));
            let ratio = b / g;
            figures.insert(format!("{w}_over_{label}"), json!(ratio));
            pct.entry(label).or_default().push(ratio * 100.0);
            println!("{w:<10} {label:<10} {b:>10.0} {g:>10.0} {:>7.1}%", ratio * 100.0);
        }
    }
    if three_guests {
        figures.insert("three_guests_reached_shell".into(), json!(reached));
    }
    let load_after = host_load();
    let cores = crate::util::host_cpus() as f64;
    if load_before.max(load_after) > cores * 0.75 {
        println!("warning: host load {load_before:.1} before, {load_after:.1} after, on {cores} cores: other work competed with the emulator, the ratios are noisy");
    }
    let result = json!({
        "emulator": format!("QEMU TCG, -cpu qemu64,+svm,+npt; mc2: {smp} CPU(s), the guest pinned to CPU {guest_cpu}{}; bare: {}", if vmm_opts.is_empty() { String::new() } else { format!("; vmm{vmm_opts}") }, baselines(smp, same_machine).iter().map(|(l, c)| format!("{l} {}", baseline_words(*c))).collect::<Vec<_>>().join(", ")),
        "kernel": vmlinuz.file_name().map(|n| n.to_string_lossy().into_owned()),
        "guest_ram_mib": lg::RAM_MB,
        "command_line": cmdline,
        "unit": "milliseconds, timed by the guest's own clock",
        "bare": bare_runs.get("bare"),
        "bare_smp": bare_runs.get("bare_smp"),
        "guest": guest_runs,
        "guest_exits": guest_exits,
        "three_guests": three,
        "host_load_average": { "before": load_before, "after": load_after, "cores": cores },
        "host_steal_percent": steals.iter().map(|(side, round, p)| json!({ "run": side, "round": round, "percent": p })).collect::<Vec<_>>(),
        "figures": figures,
    });
    let json_path = dir.join("guests.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&result).unwrap()).map_err(|e| e.to_string())?;
    let cats: Vec<String> = WORKLOADS.iter().map(|s| s.to_string()).collect();
    let mut rel_series = vec![Series::new("bare Linux", WORKLOADS.iter().enumerate().map(|(i, _)| (i as f64, 100.0)).collect())];
    for (label, cpus) in baselines(smp, same_machine) {
        let name = if label == "bare" { "guest of mc2".to_string() } else { format!("guest of mc2 vs bare on {cpus} CPUs") };
        rel_series.push(Series::new(name, pct[label].iter().enumerate().map(|(i, p)| (i as f64, *p)).collect()));
    }
    let rel = svg::bar_chart("Linux guest under mc2 vs the same Linux bare (QEMU TCG): speed, bare = 100%", "workload", "% of bare speed", &cats, &rel_series);
    let mut series = vec![];
    for (label, runs) in &bare_runs {
        series.push(Series::new(format!("{label} Linux"), WORKLOADS.iter().enumerate().map(|(i, w)| (i as f64, best(runs, w))).collect()));
    }
    series.push(Series::new("guest of mc2", WORKLOADS.iter().enumerate().map(|(i, w)| (i as f64, best(&guest_runs, w))).collect()));
    if three_guests {
        series.push(Series::new("3 guests at once (mean)", WORKLOADS.iter().enumerate().map(|(i, w)| (i as f64, three.iter().filter_map(|m| m.get(*w)).sum::<f64>() / 3.0)).collect()));
    }
    let raw = svg::bar_chart("Best times (ms, guest clock)", "workload", "ms", &cats, &series);
    let svg_path = dir.join("guests.svg");
    std::fs::write(&svg_path, svg::page(&[rel, raw])).map_err(|e| e.to_string())?;
    println!("\nwrote {} and {}", json_path.display(), svg_path.display());
    if three_guests && reached != 3 {
        return Err(format!("only {reached} of 3 guests reached their shells"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_exits_are_read_by_kind() {
        let out = "[vm0] ran 5 ms\r\n[vm0] kernel-handled: host interrupts 7 cpuid 2 msr 9 posted io 1 other 0\r\n";
        let k = kernel_kinds(out, "[vm0] ").unwrap();
        assert_eq!((k["interrupts"], k["cpuid"], k["msr"], k["posted_io"], k["other"]), (7, 2, 9, 1, 0));
        assert_eq!(kernel_kinds(out, "[vm1] "), None);
    }

    #[test]
    fn the_exits_during_each_workload_are_the_notes_differences() {
        let note = |at: &str, all: u64, i: u64, m: u64| format!("[vm0] exits at mc2-bench {at}: all {all}; kernel-handled: host interrupts {i} cpuid 416 msr {m} posted io 5 other 1\r\n");
        let out = [note("start untar", 1000, 100, 90), "[vm0] mc2-bench untar 980\n".into(), note("untar 980", 1600, 350, 330), note("start compile", 1700, 360, 340), note("compile 3000", 3500, 1100, 1050)].concat();
        let d = workload_exits(&out, "[vm0] ");
        assert_eq!((d["untar"]["all"], d["untar"]["interrupts"], d["untar"]["msr"], d["untar"]["cpuid"], d["untar"]["to_vmm"]), (600, 250, 240, 0, 110));
        assert_eq!((d["compile"]["all"], d["compile"]["interrupts"], d["compile"]["msr"]), (1800, 740, 710));
        assert!(workload_exits(&out, "[vm1] ").is_empty());
    }

    #[test]
    fn the_figures_baseline_is_one_cpu_and_mc2s_machine_is_asked_for() {
        assert_eq!(baselines(4, false), vec![("bare", 1)]);
        assert_eq!(baselines(4, true), vec![("bare", 1), ("bare_smp", 4)]);
        assert_eq!(baselines(1, true), vec![("bare", 1)]);
    }

    #[test]
    fn steal_is_read_from_proc_stat() {
        let a = parse_cpu_times("cpu  100 10 50 800 5 0 5 30 20 0").unwrap();
        assert_eq!(a, (30, 1000));
        let b = parse_cpu_times("cpu  200 10 50 1400 5 0 5 130 20 0").unwrap();
        assert_eq!(steal_pct(Some(a), Some(b)), Some(12.5));
        assert_eq!(parse_cpu_times("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(parse_cpu_times("cpu 1 2 3"), None);
    }

    #[test]
    fn bench_lines_are_read_per_guest() {
        let out = "[vm0] mc2-bench untar 120\r\n[vm1] mc2-bench untar 130\n[vm0] mc2-bench compile 400\nmc2-bench untar 99\n";
        let m = times(out, "[vm0] ");
        assert_eq!(m.get("untar"), Some(&120.0));
        assert_eq!(m.get("compile"), Some(&400.0));
        assert_eq!(times(out, "").get("untar"), Some(&99.0));
        assert!(complete(&times(out, "[vm1] "), "x", out).is_err());
    }

    #[test]
    fn exit_counts_are_read_from_the_vmm_report() {
        let out = "[vm0] ran 20428 ms, 36075 exits (and 12079 the kernel handled, 448 of them posted 8259 writes), 98240 KiB of guest RAM backed\r\n[vm0] exits: io 34469 memfault 1362 hlt 0 msr 17 window 106 deadline 121; busiest ports 0xcf8 (16706)\n";
        assert_eq!(exit_counts(out, "[vm0] "), Some((36075, 12079, 121)));
        assert_eq!(exit_counts(out, "[vm1] "), None);
    }
}
