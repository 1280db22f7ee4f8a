//! `cargo xtask bench ...`: benchmarks that print ratios measured in one run,
//! write `target/bench/NAME.json` (raw figures plus a `figures` object) and
//! `target/bench/NAME.svg`. See docs/benchmarks.md for how to read them.

use crate::emu::{self, QemuOpts, Tcg};
use crate::kbuild::{self, LockKind};
use crate::svg::{self, Series};
use crate::util::{cargo, host_cpus, target_dir, Result};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("locks") => locks(&args[1..]),
        Some("mm") => mm(),
        Some("ipc") => ipc(&args[1..]),
        Some("vm") => crate::bench_vm::run(&args[1..]),
        Some("guests") => crate::bench_guests::run(&args[1..]),
        Some(other) => Err(format!("unknown benchmark `{other}` (available: locks, mm, ipc, vm, guests)")),
        None => Err("which benchmark? (available: locks, mm, ipc, vm, guests)".into()),
    }
}

pub(crate) fn out_dir() -> Result<PathBuf> {
    let d = target_dir().join("bench");
    std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    Ok(d)
}

/// The middle value (the mean of the two middle ones for an even count).
/// Sorts `v`.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Mean transactions per ms of the `(cpus, payload, per_ms)` runs at
/// `cpus` CPUs (NaN if there are none).
fn mean_at<'a>(runs: impl Iterator<Item = &'a (usize, u64, f64)>, cpus: usize) -> f64 {
    let x: Vec<f64> = runs.filter(|r| r.0 == cpus).map(|r| r.2).collect();
    if x.is_empty() {
        f64::NAN
    } else {
        x.iter().sum::<f64>() / x.len() as f64
    }
}

/// The `q` quantile of sorted `v` (nearest rank).
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// The seed's lock experiment: on the host (the very crate the kernel uses,
/// natively, against a lone `lock xadd` and peer locks) and inside mc2 under
/// QEMU on all its CPUs (emulated time).
fn locks(args: &[String]) -> Result<()> {
    let dir = out_dir()?;
    let host_json = dir.join("locks-host.json");
    println!("== host: lock crate vs lone lock xadd and peers (native)");
    let status = cargo()
        .args(["run", "--release", "--quiet", "-p", "bench", "--", "locks", "--out"])
        .arg(&host_json)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err("host lock benchmark failed".into());
    }
    let host: Value = serde_json::from_slice(&std::fs::read(&host_json).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;

    let smp: usize = match crate::flag_value(args, "--smp") {
        Some(v) => v.parse().map_err(|_| format!("--smp takes a number, not `{v}`"))?,
        None => host_cpus().clamp(2, 16),
    };
    println!("\n== mc2 under QEMU TCG, {smp} vCPUs on {} host cores (emulated time)", host_cpus());
    let elf = kbuild::build(LockKind::Ticket, true)?;
    let o = QemuOpts { smp, cmdline: "bench=locks", tcg: Tcg::MultiThreaded, ..Default::default() };
    let cap = emu::qemu_capture(&elf, &o, Duration::from_secs(600), None)?;
    if cap.timed_out || !cap.output.contains("BENCH DONE") {
        return Err(format!("in-kernel lock benchmark did not finish:\n{}", cap.output));
    }
    // BENCH locks lock=ticket cpus=2 cycles_per_op=123.4
    let mut emulated: Vec<(String, usize, f64)> = Vec::new();
    for line in cap.output.lines().filter_map(|l| l.trim_end_matches('\r').strip_prefix("BENCH locks ")) {
        let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).unwrap_or("");
        if let (lock, Ok(cpus), Ok(c)) = (field("lock="), field("cpus=").parse::<usize>(), field("cycles_per_op=").parse::<f64>()) {
            emulated.push((lock.to_string(), cpus, c));
        }
    }
    let single = |lock: &str| emulated.iter().find(|(l, n, _)| l == lock && *n == 1).map(|e| e.2).unwrap_or(f64::NAN);
    let mut rows = Vec::new();
    println!("  cpus       ticket   norm          mcs   norm");
    for cpus in 1..=smp {
        let get = |lock: &str| emulated.iter().find(|(l, n, _)| l == lock && *n == cpus).map(|e| e.2);
        if let (Some(t), Some(m)) = (get("ticket"), get("mcs")) {
            let (tn, mn) = (t / (single("ticket") * cpus as f64), m / (single("mcs") * cpus as f64));
            println!("  {cpus:>4} {t:>12.1} {tn:>6.2} {m:>12.1} {mn:>6.2}");
            rows.push(json!({"cpus": cpus, "ticket": t, "mcs": m, "ticket_norm": tn, "mcs_norm": mn}));
        }
    }

    let unc = host.get("uncontended").cloned().unwrap_or(Value::Null);
    let mut figures = host.get("figures").cloned().unwrap_or(json!({}));
    if let Some(f) = figures.as_object_mut() {
        f.insert("host_cores".into(), json!(host_cpus()));
        f.insert("emulated_cpus".into(), json!(smp));
    }
    let result = json!({
        "benchmark": "locks",
        "unit": "cycles per acquire+release",
        "uncontended": unc,
        "figures": figures,
        "host": host,
        "emulated": {
            "environment": format!("mc2 kernel under QEMU TCG multi-threaded, {smp} vCPUs on {} host cores; rdtsc under TCG reads the host TSC, so these are emulated-instruction costs, not hardware lock costs", host_cpus()),
            "rows": rows,
        },
    });
    let json_path = dir.join("locks.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&result).unwrap()).map_err(|e| e.to_string())?;

    // Charts: the seed's line chart (latency per core count) and bar chart
    // (latency / (single-core latency x cores)), plus the uncontended costs.
    let contended = host.get("contended").and_then(Value::as_array).cloned().unwrap_or_default();
    let host_series = |key: &str, label: &str| {
        Series::new(label, contended.iter().map(|r| (num(r, "threads"), num(r, key))).filter(|p| p.1.is_finite()).collect())
    };
    let emu_series = |key: &str, label: &str| {
        Series::new(label, rows.iter().map(|r| (num(r, "cpus"), num(r, key))).filter(|p| p.1.is_finite()).collect())
    };
    let latency = svg::line_chart(
        "Contended latency: one lock, empty critical section",
        "cores",
        "cycles per acquire+release",
        &[
            host_series("ticket", "ticket (host)"),
            host_series("mcs", "MCS (host)"),
            host_series("spin_ticket", "spin::TicketMutex (host)"),
            host_series("parking_lot", "parking_lot (host, unfair)"),
            emu_series("ticket", "ticket (mc2, emulated)"),
            emu_series("mcs", "MCS (mc2, emulated)"),
        ],
    );
    let max_n = contended.len().max(rows.len());
    let cats: Vec<String> = (1..=max_n).map(|n| n.to_string()).collect();
    let bars = |s: Series| Series::new(s.name, s.points.iter().map(|&(x, y)| (x - 1.0, y)).collect());
    let normalized = svg::bar_chart(
        "Normalized latency = latency / (1-core latency x cores)",
        "cores",
        "normalized latency",
        &cats,
        &[
            bars(host_series("ticket_norm", "ticket (host)")),
            bars(host_series("mcs_norm", "MCS (host)")),
            bars(emu_series("ticket_norm", "ticket (mc2, emulated)")),
            bars(emu_series("mcs_norm", "MCS (mc2, emulated)")),
        ],
    );
    let names = ["xadd", "ticket", "mcs", "spin_ticket", "parking_lot"];
    let unc_chart = svg::bar_chart(
        "Uncontended acquire+release (host, median)",
        "lock",
        "cycles",
        &names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        &[Series::new("cycles", names.iter().enumerate().map(|(i, n)| (i as f64, num(&unc, n))).collect())],
    );
    let svg_path = dir.join("locks.svg");
    std::fs::write(&svg_path, svg::page(&[latency, normalized, unc_chart])).map_err(|e| e.to_string())?;

    let f = &result["figures"];
    println!("\n== figures (same run)");
    for k in ["ticket_over_xadd", "mcs_over_xadd", "ticket_over_spin_ticket", "mcs_over_parking_lot"] {
        println!("  {k:<26} {:.2}", num(f, k));
    }
    println!("\nwrote {} and {}", json_path.display(), svg_path.display());
    Ok(())
}

/// Run `cargo run -p bench -- NAME --out FILE` and read its JSON.
fn host_bench(name: &str) -> Result<Value> {
    let path = out_dir()?.join(format!("{name}-host.json"));
    let status = cargo()
        .args(["run", "--release", "--quiet", "-p", "bench", "--", name, "--out"])
        .arg(&path)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("host {name} benchmark failed"));
    }
    serde_json::from_slice(&std::fs::read(&path).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

/// Boot mc2 with `bench=NAME` under QEMU with `-icount shift=0` (the TSC then
/// counts retired instructions) and return its `BENCH NAME ...` lines.
fn icount_bench(name: &str, smp: usize) -> Result<Vec<String>> {
    let elf = kbuild::build(LockKind::Ticket, true)?;
    let cmdline = format!("bench={name}");
    let o = QemuOpts { smp, cmdline: &cmdline, tcg: Tcg::SingleThreaded, extra: &["-icount", "shift=0"], ..Default::default() };
    let cap = emu::qemu_capture(&elf, &o, Duration::from_secs(600), None)?;
    if cap.timed_out || !cap.output.contains("BENCH DONE") {
        return Err(format!("in-kernel {name} benchmark did not finish:\n{}", cap.output));
    }
    let prefix = format!("BENCH {name} ");
    Ok(cap.output.lines().filter_map(|l| l.trim_end_matches('\r').strip_prefix(prefix.as_str()).map(str::to_string)).collect())
}

/// `key=value` field of a BENCH line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// The memory-management costs: frame allocate+free natively on the host
/// against a peer allocator, and allocate/map/unmap inside mc2 in retired
/// instructions.
fn mm() -> Result<()> {
    println!("== host: allocation table vs buddy_system_allocator (native)");
    let host = host_bench("mm")?;
    println!("\n== mc2 under QEMU TCG -icount shift=0 (retired instructions)");
    let lines = icount_bench("mm", 1)?;
    let mut kernel = serde_json::Map::new();
    for l in &lines {
        if let (Some(op), Some(n)) = (field(l, "op"), field(l, "instructions").and_then(|v| v.parse::<f64>().ok())) {
            println!("  {op:<24} {n:>9.1} instructions");
            kernel.insert(op.to_string(), json!(n));
        }
    }
    let get = |k: &str| kernel.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let mut figures = host.get("figures").cloned().unwrap_or(json!({}));
    if let Some(f) = figures.as_object_mut() {
        f.insert("map_page_instructions".into(), json!(get("map_page")));
        f.insert("unmap_page_instructions".into(), json!(get("unmap_page")));
        f.insert("alloc_free_instructions".into(), json!(get("frame_alloc_free")));
        f.insert("container_alloc_free_instructions".into(), json!(get("container_alloc_free")));
    }
    let result = json!({
        "benchmark": "mm",
        "figures": figures,
        "host": host,
        "kernel_instructions": kernel,
        "kernel_environment": "mc2 under QEMU TCG, 1 CPU, -icount shift=0: the TSC advances once per retired instruction (checked by timing a loop of known length)",
    });
    let dir = out_dir()?;
    let json_path = dir.join("mm.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&result).unwrap()).map_err(|e| e.to_string())?;
    let h = &result["host"];
    let host_chart = svg::bar_chart(
        "Host: cycles per allocate+free of a 4 KiB frame",
        "pattern",
        "cycles",
        &["one at a time".to_string(), "batches of 1000".to_string()],
        &[
            Series::new("mc2 allocation table", vec![(0.0, num(&h["pair"], "mc2")), (1.0, num(&h["batch"], "mc2"))]),
            Series::new("buddy_system_allocator", vec![(0.0, num(&h["pair"], "peer")), (1.0, num(&h["batch"], "peer"))]),
        ],
    );
    let ops = ["frame_alloc_free", "container_alloc_free", "map_page", "unmap_page", "translate"];
    let kernel_chart = svg::bar_chart(
        "mc2 kernel: retired instructions per operation",
        "operation",
        "instructions",
        &ops.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        &[Series::new("instructions", ops.iter().enumerate().map(|(i, o)| (i as f64, get(o))).collect())],
    );
    let svg_path = dir.join("mm.svg");
    std::fs::write(&svg_path, svg::page(&[host_chart, kernel_chart])).map_err(|e| e.to_string())?;
    let f = &result["figures"];
    println!("\n== figures (same run)");
    for k in ["alloc_free_over_peer", "pair_over_peer", "batch_over_peer", "map_page_instructions", "unmap_page_instructions"] {
        println!("  {k:<26} {:.2}", num(f, k));
    }
    println!("\nwrote {} and {}", json_path.display(), svg_path.display());
    Ok(())
}

/// Boot mc2 user space with one shell command and return the `BENCH ipc`
/// lines it printed.
fn mc2_command(elf: &std::path::Path, bundle: &std::path::Path, smp: usize, tcg: Tcg, icount: bool, command: &str) -> Result<Vec<String>> {
    let cmdline = format!("-- {command}");
    let extra: &[&str] = if icount { &["-icount", "shift=0"] } else { &[] };
    let o = QemuOpts { smp, cmdline: &cmdline, tcg, bundle: Some(bundle), extra, ..Default::default() };
    let cap = emu::qemu_capture(elf, &o, Duration::from_secs(600), None)?;
    if cap.timed_out || !cap.output.contains("init powered off with status 0") {
        return Err(format!("`{command}` on mc2 did not finish cleanly:\n{}", cap.output));
    }
    Ok(cap.output.lines().filter_map(|l| l.trim_end_matches('\r').strip_prefix("BENCH ipc ").map(str::to_string)).collect())
}

fn value(lines: &[String], name: &str, key: &str) -> Option<f64> {
    lines.iter().filter(|l| l.split_whitespace().next() == Some(name)).find_map(|l| field(l, key)).and_then(|v| v.parse().ok())
}

/// The seed's client/server experiment (throughput and speedup, fine-grained
/// kernel against the big-kernel-lock build) plus the null system call and
/// the IPC round trip in retired instructions next to Linux's pipe round trip
/// in the same QEMU configuration.
fn ipc(args: &[String]) -> Result<()> {
    let ms: u64 = crate::flag_value(args, "--ms").map(|v| v.parse().map_err(|_| format!("--ms takes a number, not `{v}`"))).transpose()?.unwrap_or(1000);
    let repeats: usize = crate::flag_value(args, "--repeats").map(|v| v.parse().map_err(|_| format!("--repeats takes a number, not `{v}`"))).transpose()?.unwrap_or(3);
    // Runs per point: each boot goes this many times up the CPU counts and back down.
    let rounds: u64 = crate::flag_value(args, "--rounds").map(|v| v.parse().map_err(|_| format!("--rounds takes a number, not `{v}`"))).transpose()?.unwrap_or(4).max(1);
    let max_cpus: usize = crate::flag_value(args, "--cpus").map(|v| v.parse().map_err(|_| format!("--cpus takes a number, not `{v}`"))).transpose()?.unwrap_or_else(|| host_cpus().clamp(1, 16));
    let payloads = [0u64, 500, 1000, 2000];
    let fine = kbuild::build(LockKind::Ticket, true)?;
    let bkl = kbuild::build_variant(LockKind::Ticket, true, true)?;
    let bundle = crate::user::build_bundle()?;

    println!("== instructions (QEMU TCG -icount shift=0, 1 CPU: the TSC counts retired instructions)");
    let null = mc2_command(&fine, &bundle, 1, Tcg::SingleThreaded, true, "ipcbench null 10000")?;
    let rtt = mc2_command(&fine, &bundle, 1, Tcg::SingleThreaded, true, "ipcbench rtt 2000 0")?;
    let rtt_mem = mc2_command(&fine, &bundle, 1, Tcg::SingleThreaded, true, "ipcbench rttmem 2000 0")?;
    let null_i = value(&null, "null_syscall", "cycles_per_call").ok_or("no null_syscall result")?;
    let rtt_i = value(&rtt, "roundtrip", "cycles_per_roundtrip").ok_or("no roundtrip result")?;
    let rtt_mem_i = value(&rtt_mem, "roundtrip_memory", "cycles_per_roundtrip").ok_or("no roundtrip_memory result")?;
    println!("  mc2   null system call  {null_i:>9.0}   IPC round trip (8 bytes in registers, call_short x2) {rtt_i:>9.0}");
    println!("                                      IPC round trip (8 bytes in memory, call x2)          {rtt_mem_i:>9.0}");
    let (linux_null, linux_rtt) = linux_ipc()?;
    println!("  Linux null system call  {linux_null:>9.0}   pipe round trip (8 bytes, write/read x2)             {linux_rtt:>9.0}");
    println!(
        "  ratio mc2/Linux         {:>9.2}   registers {:.3}, memory {:.3}",
        null_i / linux_null,
        rtt_i / linux_rtt,
        rtt_mem_i / linux_rtt
    );

    println!("\n== throughput: transactions per ms over {ms} ms, QEMU TCG multi-threaded with {max_cpus} vCPUs (one per host core)");
    println!("   every CPU count and payload measured in each boot (per payload {rounds} times up the CPU counts and back down, {} ms a run), each speedup is the median of the per-round ratios over {repeats} boots", ms / (2 * rounds));
    let mut rows = Vec::new();
    // (kernel, cpus, payload) -> per-ms samples, and the in-boot speedups.
    let mut table: Vec<(String, usize, u64, f64)> = Vec::new();
    let mut speedups: Vec<(String, usize, u64, f64)> = Vec::new();
    for (label, elf) in [("fine", &fine), ("bkl", &bkl)] {
        // A server and a client per CPU: give each run room for all of them.
        let quota = 256 + 128 * max_cpus;
        let command = format!("run -q {quota} ipcbench sweep {max_cpus} {ms} {rounds}");
        // 2 ROUNDS runs per point (`sweep` goes up the CPU counts and back down ROUNDS times).
        let expected = 2 * rounds as usize * max_cpus * payloads.len();
        let mut boots: Vec<Vec<(usize, u64, f64)>> = Vec::new();
        for _ in 0..repeats.max(1) {
            let lines = mc2_command(elf, &bundle, max_cpus, Tcg::MultiThreaded, false, &command)?;
            let mut got = Vec::new();
            for l in lines.iter().filter(|l| l.split_whitespace().next() == Some("tput")) {
                let f = |k: &str| field(l, k).and_then(|v| v.parse::<f64>().ok());
                if let (Some(c), Some(p), Some(x)) = (f("cpus"), f("payload"), f("per_ms")) {
                    got.push((c as usize, p as u64, x));
                }
            }
            if got.len() != expected {
                return Err(format!("{label}: {} of {expected} tput results in one boot:\n{}", got.len(), lines.join("\n")));
            }
            boots.push(got);
        }
        for cpus in 1..=max_cpus {
            for &p in &payloads {
                let mut samples: Vec<f64> = boots.iter().map(|b| mean_at(b.iter().filter(|r| r.1 == p), cpus)).collect();
                // One ratio per round (up the CPU counts and back down: each
                // count's two runs against the 1-CPU runs around them), so a
                // burst of host noise spoils one round, not a boot's figure.
                let mut ratios: Vec<f64> = Vec::new();
                for b in &boots {
                    let runs: Vec<&(usize, u64, f64)> = b.iter().filter(|r| r.1 == p).collect();
                    for round in runs.chunks(2 * max_cpus) {
                        ratios.push(mean_at(round.iter().copied(), cpus) / mean_at(round.iter().copied(), 1));
                    }
                }
                let per_ms = median(&mut samples);
                let s = median(&mut ratios);
                let (lo, hi) = (quantile(&ratios, 0.25), quantile(&ratios, 0.75));
                println!("  {label:<5} cpus={cpus} payload={p:<5} {per_ms:>10.2} /ms  (boots {samples:.2?})  speedup {s:.2} (middle half of {} rounds {lo:.2}-{hi:.2})", ratios.len());
                table.push((label.to_string(), cpus, p, per_ms));
                speedups.push((label.to_string(), cpus, p, s));
            }
        }
    }
    let tput = |l: &str, c: usize, p: u64| table.iter().find(|r| r.0 == l && r.1 == c && r.2 == p).map(|r| r.3).unwrap_or(f64::NAN);
    let speedup = |l: &str, c: usize, p: u64| speedups.iter().find(|r| r.0 == l && r.1 == c && r.2 == p).map(|r| r.3).unwrap_or(f64::NAN);
    let mut figures = serde_json::Map::new();
    figures.insert("null_syscall_instructions".into(), json!(null_i));
    figures.insert("ipc_roundtrip_instructions".into(), json!(rtt_i));
    figures.insert("linux_null_syscall_instructions".into(), json!(linux_null));
    figures.insert("linux_pipe_roundtrip_instructions".into(), json!(linux_rtt));
    figures.insert("ipc_roundtrip_over_linux_pipe".into(), json!(rtt_i / linux_rtt));
    figures.insert("ipc_roundtrip_memory_instructions".into(), json!(rtt_mem_i));
    figures.insert("ipc_roundtrip_memory_over_linux_pipe".into(), json!(rtt_mem_i / linux_rtt));
    println!("\n== speedup over 1 CPU (each kernel against its own 1-CPU throughput)");
    for (label, _) in [("fine", ()), ("bkl", ())] {
        for cpus in 1..=max_cpus {
            for &p in &payloads {
                let s = speedup(label, cpus, p);
                rows.push(json!({"kernel": label, "cpus": cpus, "payload": p, "per_ms": tput(label, cpus, p), "speedup": s}));
                if cpus > 1 {
                    println!("  {label:<5} cpus={cpus} payload={p:<5} speedup {s:.2}");
                    figures.insert(format!("speedup_{cpus}cpu_payload{p}_{label}"), json!(s));
                }
            }
        }
    }
    let result = json!({
        "benchmark": "ipc",
        "figures": figures,
        "instructions": {"environment": "QEMU TCG, 1 vCPU, -icount shift=0; mc2: ipcbench; Linux: Debian's kernel package with a static test program as /init", "mc2": {"null_syscall": null_i, "ipc_roundtrip": rtt_i, "ipc_roundtrip_memory": rtt_mem_i}, "linux": {"null_syscall": linux_null, "pipe_roundtrip": linux_rtt}},
        "throughput": {"environment": format!("QEMU TCG multi-threaded, one vCPU per host core ({} cores), every CPU count and payload in each boot, per payload {rounds} times up the CPU counts and back down ({} ms a run, {ms} ms per point), speedup = median over {repeats} boots of the per-round ratios", host_cpus(), ms / (2 * rounds)), "rows": rows},
    });
    let dir = out_dir()?;
    let json_path = dir.join("ipc.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&result).unwrap()).map_err(|e| e.to_string())?;
    let speed_series = |label: &str| -> Vec<Series> {
        payloads
            .iter()
            .map(|&p| Series::new(format!("{label} payload {p}"), (1..=max_cpus).map(|c| (c as f64, speedup(label, c, p))).collect()))
            .collect()
    };
    let mut series = speed_series("fine");
    series.extend(speed_series("bkl"));
    let speedup = svg::line_chart("Client/server throughput speedup over 1 CPU (mc2 vs mc2-bl)", "CPUs", "speedup", &series);
    let instr = svg::bar_chart(
        "Retired instructions (QEMU -icount): mc2 vs Linux",
        "operation",
        "instructions",
        &["null system call".to_string(), "round trip (registers)".to_string(), "round trip (memory)".to_string()],
        &[
            Series::new("mc2", vec![(0.0, null_i), (1.0, rtt_i), (2.0, rtt_mem_i)]),
            Series::new("Linux 6.1 (pipe)", vec![(0.0, linux_null), (1.0, linux_rtt), (2.0, linux_rtt)]),
        ],
    );
    let svg_path = dir.join("ipc.svg");
    std::fs::write(&svg_path, svg::page(&[speedup, instr])).map_err(|e| e.to_string())?;
    println!("\nwrote {} and {}", json_path.display(), svg_path.display());
    Ok(())
}

/// Boot Debian's Linux with the static `linux-ipc` program as /init under
/// the same QEMU configuration; returns (null syscall, pipe round trip) in
/// retired instructions.
fn linux_ipc() -> Result<(f64, f64)> {
    let vmlinuz = crate::linux::kernel()?;
    let dir = target_dir().join("linux-bench");
    let mut c = cargo();
    c.args(["build", "--release", "--quiet", "-p", "bench", "--bin", "linux-ipc", "--target", crate::kbuild::HOST_TARGET, "--target-dir"]).arg(&dir);
    c.env("RUSTFLAGS", "-C target-feature=+crt-static");
    if !c.status().map_err(|e| e.to_string())?.success() {
        return Err("building the Linux test program failed".into());
    }
    let init = dir.join(crate::kbuild::HOST_TARGET).join("release").join("linux-ipc");
    let cpio = dir.join("linux-ipc.cpio");
    crate::linux::initramfs_with_init(&init, &cpio)?;
    crate::provision::ensure(&[crate::provision::Tool::Qemu])?;
    let mut q = std::process::Command::new("qemu-system-x86_64");
    q.args(["-machine", "pc", "-cpu", "qemu64", "-smp", "1", "-m", "256", "-icount", "shift=0", "-display", "none", "-no-reboot", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&cpio)
        .args(["-append", "console=ttyS0 quiet panic=-1"]);
    let cap = crate::util::run_captured(&mut q, Duration::from_secs(300), None, None)?;
    if !cap.output.contains("BENCH linux DONE") {
        return Err(format!("the Linux run did not finish:\n{}", cap.output));
    }
    let lines: Vec<String> = cap.output.lines().filter_map(|l| l.trim_end_matches('\r').strip_prefix("BENCH linux ").map(str::to_string)).collect();
    let null = value(&lines, "null_syscall", "cycles_per_call").ok_or("no Linux null_syscall result")?;
    let rtt = value(&lines, "pipe_roundtrip", "cycles_per_roundtrip").ok_or("no Linux pipe_roundtrip result")?;
    Ok((null, rtt))
}
