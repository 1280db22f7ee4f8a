//! The driver: `conform` with no arguments. Started from the shell by
//! `cargo xtask test`/`check`, it runs conformance traces that the host
//! types on the console, one system call at a time, and prints what
//! happened; the host compares that with the spec (`spec` crate).
//!
//! Start-up: claim channel 127, start the watchdog (`conform tick 127`,
//! a tick every 100 ms), then print
//! `@ENV <pid> <spare quota> <cpus> <pid>:<parent>,...` (hex): the
//! processes that are not part of any trace.
//!
//! Input comes in grants: the driver prints `@? N` and the host then sends
//! exactly N bytes (lines, padded with newlines), never more, so that the
//! kernel's 1 KiB console ring cannot overflow. A trace is
//! `T <seed> <steps>` followed by that many step lines (grammar in
//! `spec::trace`); `Q` ends the run.
//!
//! For each step the driver issues the call itself (`d`) or sends it to
//! the worker's command channel, collects exactly the answers the step
//! line lists, polls `ps` until every trace process is blocked or a zombie
//! as the line says, and prints `@k answers |ps rows`. An answer nobody
//! expected, no answer within 3 s of watchdog ticks, or no settling within
//! 3 s is printed as `@k DIVERGED why`, then `@A`, and the driver exits
//! with status 3 (the host reboots mc2 for the next trace).

use crate::proto::*;
use crate::worker::{apply_fill, resolve};
use abi::ProcInfo;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;
use rt::{println, proc, sys};

/// Bytes per input grant (the console ring holds 1024).
const GRANT: usize = 768;
/// Ticks (100 ms each) to wait for an answer.
const ANSWER_TICKS: u32 = 30;
/// Milliseconds to wait for the system to settle.
const SETTLE_MS: u64 = 3000;
/// The watchdog's quota.
const TICK_QUOTA: u64 = 96;
const DRIVER: i64 = -1;

struct Input {
    left: usize,
    pending: Vec<u8>,
}

impl Input {
    /// The next non-empty line (without its terminator).
    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n' || b == b'\r') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                let s = String::from_utf8_lossy(&line[..i]).trim().into();
                if s != "" {
                    return s;
                }
                continue;
            }
            if self.left == 0 {
                println!("@? {GRANT}");
                self.left = GRANT;
            }
            let mut tmp = [0u8; 256];
            let want = self.left.min(tmp.len());
            if let Ok(n) = sys::console_read(&mut tmp[..want]) {
                let n = (n as usize).min(want);
                self.left -= n;
                self.pending.extend_from_slice(&tmp[..n]);
            }
        }
    }
}

/// One step line, parsed.
struct DStep {
    who: i64,
    nr: u64,
    args: [u64; 6],
    tags: u64,
    fills: Vec<u64>,
    nfills: u64,
    answers: Vec<i64>,
    /// (pid, state letter: b blocked, i idle, z zombie).
    shape: Vec<(u32, u8)>,
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

fn parse_who(s: &str) -> Option<i64> {
    if s == "d" {
        Some(DRIVER)
    } else {
        hex(s).map(|v| v as i64)
    }
}

fn parse_step(line: &str) -> Result<DStep, String> {
    let mut it = line.split_whitespace();
    if it.next() != Some("S") {
        return Err(format!("not a step line: `{line}`"));
    }
    let bad = || format!("bad step line `{line}`");
    let who = it.next().and_then(parse_who).ok_or_else(bad)?;
    let nr = it.next().and_then(hex).ok_or_else(bad)?;
    let mut args = [0u64; 6];
    let mut tags = 0u64;
    for (i, a) in args.iter_mut().enumerate() {
        let w = it.next().ok_or_else(bad)?;
        let (tag, v) = if let Some(o) = w.strip_prefix('m') {
            (ARG_BUF, hex(o))
        } else if let Some(o) = w.strip_prefix('r') {
            (ARG_RO, hex(o))
        } else {
            (ARG_VAL, hex(w))
        };
        *a = v.ok_or_else(bad)?;
        tags |= tag << (2 * i);
    }
    let mut st = DStep { who, nr, args, tags, fills: Vec::new(), nfills: 0, answers: Vec::new(), shape: Vec::new() };
    for w in it {
        if let Some(f) = w.strip_prefix("Fp") {
            let v: Vec<u64> = f.split(',').filter_map(hex).collect();
            if v.len() != 3 {
                return Err(bad());
            }
            st.fills.extend_from_slice(&[FILL_PATTERN, v[0], v[1], v[2]]);
            st.nfills += 1;
        } else if let Some(f) = w.strip_prefix("Fs") {
            let (off, data) = f.split_once(',').ok_or_else(bad)?;
            let bytes: Vec<u8> = (0..data.len() / 2).filter_map(|i| u8::from_str_radix(&data[2 * i..2 * i + 2], 16).ok()).collect();
            st.fills.extend_from_slice(&[FILL_BYTES, hex(off).ok_or_else(bad)?, bytes.len() as u64]);
            for chunk in bytes.chunks(8) {
                let mut w8 = [0u8; 8];
                w8[..chunk.len()].copy_from_slice(chunk);
                st.fills.push(u64::from_le_bytes(w8));
            }
            st.nfills += 1;
        } else if w == "B" {
        } else if let Some(r) = w.strip_prefix('R') {
            if r != "-" {
                st.answers = r.split(',').map(parse_who).collect::<Option<Vec<i64>>>().ok_or_else(bad)?;
            }
        } else if let Some(x) = w.strip_prefix('X') {
            if x != "-" {
                for p in x.split(',') {
                    let (pid, state) = p.split_at(p.len().saturating_sub(1));
                    let state = state.bytes().next().filter(|c| b"biz".contains(c)).ok_or_else(bad)?;
                    st.shape.push((hex(pid).ok_or_else(bad)? as u32, state));
                }
            }
        } else {
            return Err(bad());
        }
    }
    Ok(st)
}

struct Driver {
    env: Vec<u32>,
    dbuf: Vec<u8>,
    input: Input,
    hello: [u64; MAX_WORKERS as usize],
    tsc_per_ms: u64,
}

fn who_text(w: i64) -> String {
    if w == DRIVER {
        "d".into()
    } else {
        format!("{w:x}")
    }
}

fn rows_text(rows: &[ProcInfo]) -> String {
    let mut s = String::new();
    for r in rows {
        let _ = write!(s, " {:x},{:x},{:x},{:x},{:x}", r.pid, r.parent, r.state, r.quota, r.usage);
    }
    s
}

impl Driver {
    fn trace_rows(&self) -> Result<Vec<ProcInfo>, String> {
        let list = proc::list().map_err(|e| format!("ps: {e}"))?;
        Ok(list.into_iter().filter(|p| !self.env.contains(&p.pid)).collect())
    }

    /// Poll `ps` until the trace processes are exactly `shape`.
    fn settle(&self, shape: &[(u32, u8)]) -> Result<Vec<ProcInfo>, String> {
        let start = rt::time::rdtsc();
        let fits = |r: &ProcInfo, state: u8| match state {
            b'z' => r.state == proc::ZOMBIE,
            b'b' => r.state == proc::BLOCKED,
            _ => r.state != proc::ZOMBIE,
        };
        loop {
            let rows = self.trace_rows()?;
            let ok = rows.len() == shape.len() && shape.iter().all(|&(pid, s)| rows.iter().any(|r| r.pid == pid && fits(r, s)));
            if ok {
                return Ok(rows);
            }
            if rt::time::rdtsc().wrapping_sub(start) > SETTLE_MS * self.tsc_per_ms {
                let want: Vec<String> = shape.iter().map(|&(p, s)| format!("{p}{}", s as char)).collect();
                let got: Vec<String> = rows.iter().map(|r| format!("{}{}", r.pid, proc::state_name(r.state))).collect();
                return Err(format!("did not settle in {SETTLE_MS} ms: expected [{}], ps shows [{}]", want.join(" "), got.join(" ")));
            }
            // Let the other CPUs run: with QEMU's single-threaded TCG a
            // spinning CPU keeps them waiting.
            sys::sleep_ms(1);
        }
    }

    fn step(&mut self, k: usize, st: &DStep) -> Result<String, String> {
        let mut out = format!("@{k}");
        let mut remaining = st.answers.clone();
        if st.who == DRIVER {
            let mut cmd = vec![0u8; 8 * (10 + st.fills.len())];
            for (i, f) in st.fills.iter().enumerate() {
                put(&mut cmd, 10 + i, *f);
            }
            let mut at = 10;
            for _ in 0..st.nfills {
                at = apply_fill(&cmd, at, &mut self.dbuf).ok_or("a fill outside the driver's buffer")?;
            }
            for (i, a) in st.args.iter().enumerate() {
                put(&mut cmd, 2 + i, *a);
            }
            put(&mut cmd, 8, st.tags);
            let args = resolve(&cmd, &self.dbuf);
            let (rax, rdx) = sys::raw(st.nr, args);
            match remaining.iter().position(|&w| w == DRIVER) {
                Some(i) => {
                    remaining.remove(i);
                }
                None => return Err("the step line does not list the driver's own answer".into()),
            }
            let _ = write!(out, " d={rax:x},{rdx:x},-");
        } else {
            let idx = st.who as usize;
            if idx >= MAX_WORKERS as usize || self.hello[idx] == 0 {
                return Err(format!("w{idx} has not said hello"));
            }
            let mut cmd = vec![0u8; 8 * (10 + st.fills.len())];
            put(&mut cmd, 0, CMD);
            put(&mut cmd, 1, st.nr);
            for (i, a) in st.args.iter().enumerate() {
                put(&mut cmd, 2 + i, *a);
            }
            put(&mut cmd, 8, st.tags);
            put(&mut cmd, 9, st.nfills);
            for (i, f) in st.fills.iter().enumerate() {
                put(&mut cmd, 10 + i, *f);
            }
            sys::send(cmd_chan(idx as u64), &cmd).map_err(|e| format!("sending the command to w{idx}: {e}"))?;
        }
        let mut ticks = 0;
        let mut m = [0u8; 64];
        while !remaining.is_empty() {
            let (n, from) = sys::recv(DRIVER_CHAN, &mut m).map_err(|e| format!("recv: {e}"))?;
            let msg = &m[..n as usize];
            match word(msg, 0) {
                TICK => {
                    ticks += 1;
                    if ticks > ANSWER_TICKS {
                        let who: Vec<String> = remaining.iter().map(|&w| who_text(w)).collect();
                        let rows = self.trace_rows().map(|r| rows_text(&r)).unwrap_or_default();
                        return Err(format!("no answer from [{}] within {} ms; ps:{rows}", who.join(","), ANSWER_TICKS * 100));
                    }
                }
                HELLO => {
                    let i = word(msg, 1) as i64;
                    match remaining.iter().position(|&w| w == i) {
                        Some(p) if (i as u64) < MAX_WORKERS => {
                            remaining.remove(p);
                            self.hello[i as usize] = from;
                            let _ = write!(out, " {i:x}=h");
                        }
                        _ => return Err(format!("unexpected hello from w{i} (pid {from})")),
                    }
                }
                REPORT => {
                    let i = word(msg, 1) as i64;
                    let (rax, rdx, hk, h) = (word(msg, 2), word(msg, 3), word(msg, 4), word(msg, 5));
                    match remaining.iter().position(|&w| w == i) {
                        Some(p) => {
                            remaining.remove(p);
                            if hk != 0 {
                                let _ = write!(out, " {i:x}={rax:x},{rdx:x},{h:x}");
                            } else {
                                let _ = write!(out, " {i:x}={rax:x},{rdx:x},-");
                            }
                        }
                        None => return Err(format!("unexpected answer from w{i} (pid {from}): rax {rax:#x} rdx {rdx:#x}")),
                    }
                }
                other => return Err(format!("unknown message {other:#x} from pid {from}")),
            }
        }
        let rows = self.settle(&st.shape)?;
        out.push_str(" |");
        out.push_str(&rows_text(&rows));
        Ok(out)
    }

    fn trace(&mut self, seed: &str, steps: &[DStep]) -> bool {
        self.dbuf.iter_mut().for_each(|b| *b = 0);
        self.hello = [0; MAX_WORKERS as usize];
        for (k, st) in steps.iter().enumerate() {
            match self.step(k, st) {
                Ok(line) => println!("{line}"),
                Err(why) => {
                    println!("@{k} DIVERGED {why}");
                    println!("@A");
                    return false;
                }
            }
        }
        let free = sys::sysinfo().map(|s| s.free_pages).unwrap_or(0);
        let usage = sys::quota().map(|q| q.1).unwrap_or(0);
        println!("@E {seed} {free:x} {usage:x}");
        true
    }
}

pub fn run() -> i32 {
    let me = sys::getpid().unwrap_or(0);
    if let Err(e) = sys::chan_create(DRIVER_CHAN) {
        println!("conform: cannot claim channel {DRIVER_CHAN}: {e}");
        return 1;
    }
    let cpus = proc::cpus().unwrap_or(1);
    let tick = match sys::spawn("conform", TICK_QUOTA, cpus - 1, "tick 127") {
        Ok(p) => p,
        Err(e) => {
            println!("conform: cannot start the watchdog with {TICK_QUOTA} pages: {e}");
            return 1;
        }
    };
    let mut m = [0u8; 64];
    loop {
        match sys::recv(DRIVER_CHAN, &mut m) {
            Ok((_, from)) if from == tick => break,
            Ok(_) => {}
            Err(e) => {
                println!("conform: recv: {e}");
                return 1;
            }
        }
    }
    let list = proc::list().unwrap_or_default();
    let tsc_per_ms = sys::clock().map(|c| c.1).unwrap_or(1).max(1);
    let mut d = Driver {
        env: list.iter().map(|p| p.pid).collect(),
        dbuf: vec![0u8; BUF_LEN],
        input: Input { left: 0, pending: Vec::with_capacity(4096) },
        hello: [0; MAX_WORKERS as usize],
        tsc_per_ms,
    };
    // Everything the driver keeps is allocated before it measures its spare quota.
    let mut steps: Vec<DStep> = Vec::with_capacity(512);
    let (quota, usage) = sys::quota().unwrap_or((0, 0));
    let procs: Vec<String> = list.iter().map(|p| format!("{:x}:{:x}", p.pid, p.parent)).collect();
    println!("@ENV {me:x} {:x} {cpus:x} {}", quota - usage, procs.join(","));
    let mut status = 0;
    loop {
        let line = d.input.line();
        let mut w = line.split_whitespace();
        match w.next() {
            Some("T") => {
                let seed = String::from(w.next().unwrap_or("0"));
                let n = w.next().and_then(hex).unwrap_or(0) as usize;
                steps.clear();
                let mut bad = None;
                for _ in 0..n {
                    let l = d.input.line();
                    match parse_step(&l) {
                        Ok(s) => steps.push(s),
                        Err(e) => bad = Some(e),
                    }
                }
                if let Some(e) = bad {
                    println!("@0 DIVERGED input: {e}");
                    println!("@A");
                    status = 3;
                    break;
                }
                if !d.trace(&seed, &steps) {
                    status = 3;
                    break;
                }
            }
            Some("Q") => break,
            _ => println!("@! unknown input line `{line}`"),
        }
    }
    let _ = sys::kill(tick);
    let _ = sys::wait(tick);
    println!("@Q {status}");
    status
}
