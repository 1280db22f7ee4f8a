//! ipcbench: IPC micro-benchmarks and the seed's client/server throughput
//! benchmark. Every result is one line `BENCH ipc NAME key=value ...`
//! (parsed by the xtask); progress and errors go on other lines.
//!
//! ```text
//! ipcbench                        all three, with their defaults (tput on every CPU, payload 0, 100 ms)
//! ipcbench null [N]               N getpid calls (default 10000)
//!   BENCH ipc null_syscall cycles_per_call=X calls=N
//! ipcbench rtt [N] [CPU]          N round trips of 8-byte messages (default 2000) with a server on
//!                                 CPU (default: the caller's own CPU); client and server use
//!                                 `call_short` (messages in registers)
//!   BENCH ipc roundtrip cycles_per_roundtrip=X bytes=8 rounds=N client_cpu=A server_cpu=B
//! ipcbench rttmem [N] [CPU]       the same with `call` and messages in memory buffers
//!   BENCH ipc roundtrip_memory cycles_per_roundtrip=X bytes=8 rounds=N client_cpu=A server_cpu=B
//! ipcbench tput CPUS PAYLOAD MS   a server and a client on each CPU k < CPUS for MS milliseconds
//!   BENCH ipc tput cpus=C payload=P transactions=T ms=M per_ms=X
//! ipcbench sweep CPUS MS [ROUNDS] `tput` for every CPU count 1..=CPUS and payload 0, 500, 1000,
//!                                 2000: per payload ROUNDS times up the CPU counts and back down,
//!                                 MS/(2 ROUNDS) ms a run (the xtask's speedups are ratios
//!                                 taken within one boot)
//! ```
//!
//! Cycles are TSC ticks (under QEMU `-icount` the TSC counts instructions).
//! `per_ms` has two decimals.
//!
//! Throughput, as in the seed: server k receives on channel `16+2k`, spins
//! PAYLOAD cycles on the TSC and replies on `17+2k`; client k spins 500
//! cycles, then `call`s (sends on `16+2k`, receives the reply on `17+2k`).
//! The driver claims a result channel, spawns `ipcbench server RECV SEND
//! PAYLOAD RESULT K` and `ipcbench client SEND RECV MS RESULT K` on CPU k,
//! waits until all have claimed their channels (each reports on RESULT),
//! sends every client a start time (a TSC value 5 ms ahead), collects each
//! client's count of transactions completed within MS ms of the start,
//! stops the servers with a 4-byte `STOP` message and reaps everyone.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use core::sync::atomic::{AtomicU64, Ordering};
use abi::Error;
use alloc::format;
use alloc::string::String;
use rt::text::Words;
use rt::{println, proc, sys, time};

const USAGE: &str = "usage: ipcbench [null [N] | rtt [N] [CPU] | rttmem [N] [CPU] | tput CPUS PAYLOAD MS | sweep CPUS MS [ROUNDS]]";
const NULL_CALLS: u64 = 10_000;
const RTT_ROUNDS: u64 = 2_000;
const TPUT_MS: u64 = 100;
/// First channel of the throughput benchmark's pairs.
const CHAN_BASE: u64 = 16;
/// Channels are numbered below this.
const CHANNELS: u64 = abi::CHANNELS as u64;
/// A client's own work between transactions, in TSC cycles.
const CLIENT_PAYLOAD: u64 = 500;
/// Most pages given to each helper process (less if the driver has less).
const CHILD_QUOTA: u64 = 64;
const RESERVE: u64 = 16;
/// Ends a server.
const STOP: &[u8] = b"STOP";

/// Kinds of the 24-byte reports helpers send on the result channel:
/// (kind, k, value) as three little-endian u64.
mod report {
    pub const SERVER_READY: u64 = 1;
    pub const CLIENT_READY: u64 = 2;
    /// value: transactions completed.
    pub const RESULT: u64 = 3;
    /// value: an `abi::Error` code.
    pub const ERROR: u64 = 4;
}

fn main() -> i32 {
    let args = rt::args();
    let mut w = Words::new(args);
    let r = match w.next() {
        None => all(),
        Some("null") => null(&mut w),
        Some("rtt") => rtt(&mut w, true),
        Some("rttmem") => rtt(&mut w, false),
        Some("tput") => tput(&mut w),
        Some("sweep") => sweep(&mut w),
        Some("rttserver") => rtt_server(&mut w),
        Some("server") => server(&mut w),
        Some("client") => client(&mut w),
        Some("help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown benchmark `{other}`\n{USAGE}")),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            println!("ipcbench: {e}");
            1
        }
    }
}

fn all() -> Result<(), String> {
    let cpus = proc::cpus().map_err(|e| format!("sysinfo: {e}"))?;
    null(&mut Words::new(""))?;
    rtt(&mut Words::new(""), true)?;
    rtt(&mut Words::new(""), false)?;
    tput(&mut Words::new(&format!("{cpus} 0 {TPUT_MS}")))
}

fn clock() -> Result<u64, String> {
    sys::clock().map(|(t, _)| t).map_err(|e| format!("clock: {e}"))
}

fn null(w: &mut Words) -> Result<(), String> {
    let n = w.next_u64("N")?.unwrap_or(NULL_CALLS).max(1);
    w.end()?;
    for _ in 0..100 {
        sys::getpid().map_err(|e| format!("getpid: {e}"))?;
    }
    let t0 = clock()?;
    for _ in 0..n {
        sys::getpid().map_err(|e| format!("getpid: {e}"))?;
    }
    let t1 = clock()?;
    println!("BENCH ipc null_syscall cycles_per_call={} calls={n}", t1.wrapping_sub(t0) / n);
    Ok(())
}

fn rtt(w: &mut Words, short: bool) -> Result<(), String> {
    let n = w.next_u64("N")?.unwrap_or(RTT_ROUNDS).max(1);
    let my_cpu = proc::my_cpu().map_err(|e| format!("ps: {e}"))?;
    let cpu = w.next_u64("CPU")?.unwrap_or(my_cpu);
    w.end()?;
    let mine = sys::chan_create(u64::MAX).map_err(|e| format!("cannot claim a channel: {e}"))?;
    let quota = proc::spare_pages(RESERVE).map_err(|e| format!("quota: {e}"))?.min(CHILD_QUOTA);
    let mut kids = proc::Children::new();
    let mode = if short { "short" } else { "memory" };
    let server = kids.spawn("ipcbench", quota, cpu, &format!("rttserver {mine} {mode}")).map_err(|e| spawn_error("the server", cpu, quota, e))?;
    let mut buf = [0u8; 8];
    let (len, from) = sys::recv(mine, &mut buf).map_err(|e| format!("waiting for the server's channel: {e}"))?;
    if len != 8 || from != server {
        return Err(format!("expected the server's channel (8 bytes from pid {server}), got {len} bytes from pid {from}"));
    }
    let srv = u64::from_le_bytes(buf);
    let mut round = |i: u64| -> Result<(), String> {
        let got = if short {
            let (m, _) = sys::call_short(srv, &sys::Short::word(i), mine).map_err(|e| format!("round {i}: call_short: {e}"))?;
            (m.len == 8).then_some(m.words[0])
        } else {
            let (len, _) = sys::call_chan(srv, &i.to_le_bytes(), mine, &mut buf).map_err(|e| format!("round {i}: call: {e}"))?;
            (len == 8).then_some(u64::from_le_bytes(buf))
        };
        if got != Some(i + 1) {
            return Err(format!("round {i}: wrong reply {got:?}"));
        }
        Ok(())
    };
    for i in 0..100 {
        round(i)?;
    }
    let t0 = time::rdtsc();
    for i in 0..n {
        round(i)?;
    }
    let t1 = time::rdtsc();
    sys::send(srv, STOP).map_err(|e| format!("stopping the server: {e}"))?;
    kids.wait_all_ok("the server")?;
    let name = if short { "roundtrip" } else { "roundtrip_memory" };
    println!("BENCH ipc {name} cycles_per_roundtrip={} bytes=8 rounds={n} client_cpu={my_cpu} server_cpu={cpu}", t1.wrapping_sub(t0) / n);
    Ok(())
}

/// The round-trip server: reply `v + 1` to every 8-byte `v`; stop on `STOP`.
/// Replying and waiting for the next request is one call (send on the
/// client's channel, then receive on ours), as servers do on mc2: `call_short`
/// (`short`) or `call` with memory buffers (`memory`).
fn rtt_server(w: &mut Words) -> Result<(), String> {
    let reply = w.need_u64("the reply channel")?;
    let short = match w.next() {
        Some("short") => true,
        Some("memory") => false,
        other => return Err(format!("server: expected `short` or `memory`, got {other:?}")),
    };
    let mine = sys::chan_create(u64::MAX).map_err(|e| format!("server: cannot claim a channel: {e}"))?;
    sys::send(reply, &mine.to_le_bytes()).map_err(|e| format!("server: sending my channel: {e}"))?;
    let mut buf = [0u8; 8];
    if short {
        // The first request, and STOP, arrive in registers too.
        let (mut m, _) = sys::call_short(abi::NO_CHANNEL, &sys::Short::default(), mine).map_err(|e| format!("server: recv: {e}"))?;
        let stop = sys::Short::new(STOP).map_err(|e| format!("server: {e}"))?;
        loop {
            if m == stop {
                return Ok(());
            }
            (m, _) = sys::call_short(reply, &sys::Short::word(m.words[0].wrapping_add(1)), mine).map_err(|e| format!("server: reply and receive: {e}"))?;
        }
    }
    let (mut len, _) = sys::recv(mine, &mut buf).map_err(|e| format!("server: recv: {e}"))?;
    loop {
        if &buf[..len as usize] == STOP {
            return Ok(());
        }
        let v = u64::from_le_bytes(buf).wrapping_add(1);
        (len, _) = sys::call_chan(reply, &v.to_le_bytes(), mine, &mut buf).map_err(|e| format!("server: reply and receive: {e}"))?;
    }
}

/// Payloads of the seed's sweep, in TSC cycles.
const PAYLOADS: [u64; 4] = [0, 500, 1000, 2000];

fn sweep(w: &mut Words) -> Result<(), String> {
    let cpus = w.need_u64("CPUS")?;
    let ms = w.need_u64("MS")?;
    let rounds = w.next_u64("ROUNDS")?.unwrap_or(1).max(1);
    w.end()?;
    // Per payload, ROUNDS times up through the CPU counts and back down,
    // MS / (2 ROUNDS) each run: a host that speeds up or slows down over the
    // seconds of a sweep (other tenants, clock boost) then shifts every CPU
    // count alike instead of skewing their ratio.
    let slice = (ms / (2 * rounds)).max(1);
    for p in PAYLOADS {
        for _ in 0..rounds {
            for c in (1..=cpus).chain((1..=cpus).rev()) {
                tput(&mut Words::new(&format!("{c} {p} {slice}")))?;
            }
        }
    }
    Ok(())
}

fn spawn_error(what: &str, cpu: u64, quota: u64, e: Error) -> String {
    match e {
        Error::BadCpu => format!("cpu {cpu}: bad CPU"),
        e => format!("cannot start {what} on CPU {cpu} with {quota} pages: {e}"),
    }
}

/// Quota ipcbench would need for `helpers` helper processes: each is this
/// same program, so it needs about what this process uses now (program,
/// stack, page tables, kernel stack), plus a little heap.
fn quota_hint(helpers: u64) -> String {
    match sys::quota() {
        Ok((_, own)) => {
            let need = ((helpers + 1) * (own + 8) + RESERVE).next_multiple_of(64);
            format!(" (ipcbench shares its quota out among {helpers} helpers of about {} pages each: give it about {need} pages, e.g. `run -q {need} ipcbench ...`; the shell's `bench` gives 1024)", own + 8)
        }
        Err(_) => String::new(),
    }
}

fn encode(kind: u64, k: u64, value: u64) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&kind.to_le_bytes());
    b[8..16].copy_from_slice(&k.to_le_bytes());
    b[16..].copy_from_slice(&value.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<(u64, u64, u64)> {
    if b.len() != 24 {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    Some((word(0), word(1), word(2)))
}

fn error_name(code: u64) -> String {
    match Error::from_code(code) {
        Some(e) => format!("{e}"),
        None => format!("error {code}"),
    }
}

/// The channel the helpers report on: claimed once per process and kept (a
/// channel is only given up when its owner exits, so a `sweep` that claimed
/// one per run would fill the channel numbers the pairs use).
fn result_channel() -> Result<u64, String> {
    static RESULT: AtomicU64 = AtomicU64::new(u64::MAX);
    match RESULT.load(Ordering::Relaxed) {
        u64::MAX => {
            let c = sys::chan_create(u64::MAX).map_err(|e| format!("cannot claim a result channel: {e}"))?;
            RESULT.store(c, Ordering::Relaxed);
            Ok(c)
        }
        c => Ok(c),
    }
}

fn tput(w: &mut Words) -> Result<(), String> {
    let cpus = w.need_u64("CPUS").map_err(|e| format!("{e}\n{USAGE}"))?;
    let payload = w.need_u64("PAYLOAD").map_err(|e| format!("{e}\n{USAGE}"))?;
    let ms = w.need_u64("MS").map_err(|e| format!("{e}\n{USAGE}"))?;
    w.end()?;
    let online = proc::cpus().map_err(|e| format!("sysinfo: {e}"))?;
    if cpus == 0 || cpus > online {
        return Err(format!("CPUS must be 1..={online} (the CPUs online), not {cpus}"));
    }
    if ms == 0 {
        return Err("MS must be at least 1".into());
    }
    let result = result_channel()?;
    // Keep the pairs' channels clear of the result channel.
    let base = if (CHAN_BASE..CHAN_BASE + 2 * cpus).contains(&result) { result + 1 } else { CHAN_BASE };
    if base + 2 * cpus > CHANNELS {
        return Err(format!("no room for {} channels from {base}", 2 * cpus));
    }
    let spare = proc::spare_pages(RESERVE).map_err(|e| format!("quota: {e}"))?;
    let quota = (spare / (2 * cpus)).min(CHILD_QUOTA);
    if quota == 0 {
        return Err(format!("no quota for {} processes ({spare} pages to spare); give ipcbench more (run -q PAGES)", 2 * cpus));
    }

    let mut kids = proc::Children::new();
    for k in 0..cpus {
        let (req, rep) = (base + 2 * k, base + 2 * k + 1);
        kids.spawn("ipcbench", quota, k, &format!("server {req} {rep} {payload} {result} {k}"))
            .map_err(|e| spawn_error(&format!("server {k}"), k, quota, e) + &if e == Error::QuotaExceeded { quota_hint(2 * cpus) } else { String::new() })?;
        kids.spawn("ipcbench", quota, k, &format!("client {req} {rep} {ms} {result} {k}"))
            .map_err(|e| spawn_error(&format!("client {k}"), k, quota, e) + &if e == Error::QuotaExceeded { quota_hint(2 * cpus) } else { String::new() })?;
    }

    let mut buf = [0u8; 24];
    let mut recv_report = |what: &str| -> Result<(u64, u64, u64), String> {
        let (len, from) = sys::recv(result, &mut buf).map_err(|e| format!("waiting for {what}: {e}"))?;
        let r = decode(&buf[..len as usize]).ok_or_else(|| format!("a {len}-byte report from pid {from}"))?;
        if r.0 == report::ERROR {
            return Err(format!("pid {from} (pair {}) failed: {}", r.1, error_name(r.2)));
        }
        Ok(r)
    };
    for _ in 0..2 * cpus {
        let (kind, k, _) = recv_report("the helpers to start")?;
        if kind != report::SERVER_READY && kind != report::CLIENT_READY {
            return Err(format!("unexpected report {kind} from pair {k}"));
        }
    }

    // Start together, a little ahead so that every client has its start time.
    let per_ms = time::ticks_per_ms();
    let start = time::rdtsc() + 5 * per_ms;
    for k in 0..cpus {
        sys::send(base + 2 * k + 1, &start.to_le_bytes()).map_err(|e| format!("starting client {k}: {e}"))?;
    }
    let mut transactions = 0;
    for _ in 0..cpus {
        let (kind, k, count) = recv_report("the clients' counts")?;
        if kind != report::RESULT {
            return Err(format!("unexpected report {kind} from pair {k}"));
        }
        transactions += count;
    }
    for k in 0..cpus {
        sys::send(base + 2 * k, STOP).map_err(|e| format!("stopping server {k}: {e}"))?;
    }
    kids.wait_all_ok("a helper")?;
    let rate_x100 = transactions * 100 / ms;
    println!(
        "BENCH ipc tput cpus={cpus} payload={payload} transactions={transactions} ms={ms} per_ms={}.{:02}",
        rate_x100 / 100,
        rate_x100 % 100
    );
    Ok(())
}

/// Report to the driver: errors are reported too, so that it never waits forever.
fn report_to(result: u64, kind: u64, k: u64, value: u64) -> Result<(), String> {
    sys::send(result, &encode(kind, k, value)).map(|_| ()).map_err(|e| format!("report to channel {result}: {e}"))
}

fn fail(result: u64, k: u64, what: &str, e: Error) -> String {
    let _ = report_to(result, report::ERROR, k, e.code());
    format!("{what}: {e}")
}

/// A throughput server: receive, spin PAYLOAD cycles, reply; until `STOP`.
fn server(w: &mut Words) -> Result<(), String> {
    let (req, rep, payload, result, k) = (w.need_u64("RECV")?, w.need_u64("SEND")?, w.need_u64("PAYLOAD")?, w.need_u64("RESULT")?, w.need_u64("K")?);
    sys::chan_create(req).map_err(|e| fail(result, k, &format!("server {k}: claiming channel {req}"), e))?;
    report_to(result, report::SERVER_READY, k, 0)?;
    let mut buf = [0u8; 8];
    let reply = [0u8; 8];
    // Reply and wait for the next request in one `call`.
    let (mut len, _) = sys::recv(req, &mut buf).map_err(|e| format!("server {k}: recv: {e}"))?;
    loop {
        if &buf[..len as usize] == STOP {
            return Ok(());
        }
        time::spin(payload);
        (len, _) = sys::call_chan(rep, &reply, req, &mut buf).map_err(|e| format!("server {k}: reply on {rep} and receive: {e}"))?;
    }
}

/// A throughput client: wait for the start time, then spin 500 cycles and
/// `call` the server, counting the transactions that complete within MS ms.
fn client(w: &mut Words) -> Result<(), String> {
    let (req, rep, ms, result, k) = (w.need_u64("SEND")?, w.need_u64("RECV")?, w.need_u64("MS")?, w.need_u64("RESULT")?, w.need_u64("K")?);
    sys::chan_create(rep).map_err(|e| fail(result, k, &format!("client {k}: claiming channel {rep}"), e))?;
    report_to(result, report::CLIENT_READY, k, 0)?;
    let mut buf = [0u8; 8];
    let (len, _) = sys::recv(rep, &mut buf).map_err(|e| fail(result, k, &format!("client {k}: waiting for the start"), e))?;
    if len != 8 {
        return Err(fail(result, k, &format!("client {k}: a {len}-byte start message"), Error::Invalid));
    }
    let per_ms = time::ticks_per_ms();
    // Do not trust a start time far ahead (another CPU's TSC may differ).
    let start = u64::from_le_bytes(buf).min(time::rdtsc() + 100 * per_ms);
    time::spin_until(start);
    let end = start + ms * per_ms;
    let request = [0u8; 8];
    let mut count = 0;
    loop {
        time::spin(CLIENT_PAYLOAD);
        if let Err(e) = sys::call_chan(req, &request, rep, &mut buf) {
            return Err(fail(result, k, &format!("client {k}: call on {req}"), e));
        }
        if time::rdtsc() > end {
            break;
        }
        count += 1;
    }
    report_to(result, report::RESULT, k, count)
}

rt::entry!(main);
