//! Conformance testing: random system-call traces run inside mc2 and
//! compared, step by step, with the host-side spec (`spec` crate).
//!
//! A [`Session`] is one boot of mc2 under QEMU (4 CPUs) running
//! `run -q 2000 conform` from the shell: the driver prints its
//! environment (`@ENV`), then asks for input in grants (`@? N`: exactly N
//! bytes, padded with newlines, so the kernel's 1 KiB console ring never
//! overflows). For each trace the host generates the steps with the model
//! (which also says who must answer and how the processes must look after
//! each step), types them, collects the driver's `@k` lines and compares.
//! A divergence ends the session (the next trace gets a fresh boot) and is
//! shrunk: shorter prefixes first, then delta debugging of the random
//! steps, each candidate run in mc2 again.
//!
//! Assumes a kernel image and a boot bundle built by the caller.

use crate::emu::{self, QemuOpts, Tcg};
use crate::util::Result;
use spec::check::{self, Divergence, Observed};
use spec::gen::{self, GenOpts, Generated};
use spec::model::{Config, Env, Mutant};
use spec::trace::{step_line, trace_text, Part};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shell command that starts the driver (2000 pages: room for a dozen
/// workers with their children).
pub const DRIVER_COMMAND: &str = "-- run -q 2000 conform";
/// Longest a single trace may take before the run counts as hung.
const TRACE_TIMEOUT: Duration = Duration::from_secs(90);

/// The kernel and boot image conformance runs on.
pub struct Machine {
    pub elf: PathBuf,
    pub bundle: PathBuf,
    pub cfg: Arc<Config>,
    pub tcg: Tcg,
}

impl Machine {
    /// `elf` and `bundle` as built; the spec learns the boot image's files
    /// (names in order, ELF contents) from the bundle itself.
    pub fn new(elf: &Path, bundle: &Path) -> Result<Machine> {
        let img = std::fs::read(bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
        let n = abi::bundle::count(&img).map_err(|e| format!("{}: {e:?}", bundle.display()))?;
        let mut files = Vec::new();
        for i in 0..n {
            let f = abi::bundle::file(&img, i).map_err(|e| format!("{}: {e:?}", bundle.display()))?;
            files.push((f.name.to_string(), f.data.to_vec()));
        }
        Ok(Machine { elf: elf.to_path_buf(), bundle: bundle.to_path_buf(), cfg: Arc::new(Config::new(4, files)), tcg: Tcg::SingleThreaded })
    }
}

/// One boot of mc2 with the driver running.
pub struct Session {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    input: VecDeque<u8>,
    /// Bytes the driver asked for that have not been sent yet.
    owed: usize,
    pub env: Env,
    /// The last lines of console output (for reports).
    tail: VecDeque<String>,
}

/// How a trace run ended.
pub enum Outcome {
    Agree { steps: usize },
    Diverge(Divergence),
    /// The kernel crashed, hung or QEMU died: always a failure.
    Crash(String),
}

impl Session {
    pub fn start(m: &Machine) -> Result<Session> {
        let o = QemuOpts { smp: 4, cmdline: DRIVER_COMMAND, tcg: m.tcg, bundle: Some(&m.bundle), ..Default::default() };
        let emu::Piped { child, stdin, lines: rx } = emu::qemu_piped(&m.elf, &o, str::to_string)?;
        let mut s = Session { child, stdin, lines: rx, input: VecDeque::new(), owed: 0, env: Env { driver: 0, procs: Vec::new(), driver_spare: 0 }, tail: VecDeque::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = s.next_line(deadline)?.ok_or_else(|| format!("mc2 ended before the driver started:\n{}", s.tail_text()))?;
            if let Some(rest) = line.strip_prefix("@ENV ") {
                s.env = parse_env(rest).ok_or_else(|| format!("bad @ENV line `{line}`"))?;
                return Ok(s);
            }
            if line.contains("!!! mc2:") {
                return Err(format!("the kernel failed while starting:\n{}", s.tail_text()));
            }
        }
    }

    fn tail_text(&self) -> String {
        self.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn send_owed(&mut self) -> Result<()> {
        if self.owed == 0 || self.input.is_empty() {
            return Ok(());
        }
        let n = self.owed.min(self.input.len());
        let mut chunk: Vec<u8> = self.input.drain(..n).collect();
        // A grant is always paid in full: pad with empty lines.
        chunk.resize(self.owed, b'\n');
        self.owed = 0;
        self.stdin.write_all(&chunk).and_then(|_| self.stdin.flush()).map_err(|e| format!("writing to QEMU: {e}"))
    }

    pub fn queue(&mut self, text: &str) -> Result<()> {
        self.input.extend(text.as_bytes());
        self.send_owed()
    }

    /// The next console line (grant requests are served here); None when
    /// QEMU has exited.
    fn next_line(&mut self, deadline: Instant) -> Result<Option<String>> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("no output for too long (hang?); last console lines:\n{}", self.tail_text()));
            }
            match self.lines.recv_timeout(deadline - now) {
                Ok(line) => {
                    self.tail.push_back(line.clone());
                    if self.tail.len() > 40 {
                        self.tail.pop_front();
                    }
                    if let Some(at) = line.rfind("@? ") {
                        self.owed = line[at + 3..].trim().parse().unwrap_or(0);
                        self.send_owed()?;
                        continue;
                    }
                    return Ok(Some(line));
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
    }

    /// Run one generated trace and compare it with its expectations.
    pub fn run(&mut self, g: &Generated) -> Outcome {
        let mut text = format!("T {:x} {:x}\n", g.trace.seed, g.trace.steps.len());
        for (st, e) in g.trace.steps.iter().zip(&g.expects) {
            text.push_str(&step_line(st, e));
            text.push('\n');
        }
        if let Err(e) = self.queue(&text) {
            return Outcome::Crash(e);
        }
        let deadline = Instant::now() + TRACE_TIMEOUT;
        let mut observed: Vec<Observed> = Vec::new();
        loop {
            let line = match self.next_line(deadline) {
                Ok(Some(l)) => l,
                Ok(None) => return Outcome::Crash(format!("mc2 stopped in the middle of trace {}:\n{}", g.trace.seed, self.tail_text())),
                Err(e) => return Outcome::Crash(format!("trace {}: {e}", g.trace.seed)),
            };
            if line.contains("!!! mc2:") || line.contains("PANIC") {
                // Collect the rest of the report.
                let until = Instant::now() + Duration::from_secs(2);
                while let Ok(Some(_)) = self.next_line(until) {}
                return Outcome::Crash(format!("the kernel failed during trace {}:\n{}", g.trace.seed, self.tail_text()));
            }
            if let Some(o) = check::parse_line(&line) {
                observed.push(o);
                continue;
            }
            let rest = line.rfind('@').map(|i| &line[i..]).unwrap_or("");
            if rest.starts_with("@E ") || rest == "@A" {
                break;
            }
        }
        match check::compare(&g.trace.steps, &g.expects, &observed) {
            Ok(()) => Outcome::Agree { steps: g.trace.steps.len() },
            Err(d) => Outcome::Diverge(d),
        }
    }

    /// End the run (the driver exits, init powers off).
    pub fn finish(mut self) -> Result<()> {
        self.queue("Q\n")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Ok(Some(_)) = self.next_line(deadline) {}
        match self.child.wait() {
            Ok(s) if s.code() == Some(emu::QEMU_SUCCESS) => Ok(()),
            Ok(s) => Err(format!("mc2 ended with QEMU status {:?} after the driver quit:\n{}", s.code(), self.tail_text())),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_env(rest: &str) -> Option<Env> {
    let mut w = rest.split_whitespace();
    let driver = u32::from_str_radix(w.next()?, 16).ok()?;
    let spare = u64::from_str_radix(w.next()?, 16).ok()?;
    let _cpus = u64::from_str_radix(w.next()?, 16).ok()?;
    let mut procs = Vec::new();
    for p in w.next()?.split(',') {
        let (a, b) = p.split_once(':')?;
        procs.push((u32::from_str_radix(a, 16).ok()?, u32::from_str_radix(b, 16).ok()?));
    }
    Some(Env { driver, procs, driver_spare: spare })
}

/// A trace on which mc2 and the spec disagree, shrunk.
pub struct Failure {
    pub seed: u64,
    pub first: String,
    pub minimal: String,
    pub random_steps: (usize, usize),
}

impl Failure {
    pub fn report(&self) -> String {
        format!(
            "seed {}: {}\nshrunk from {} to {} random steps; the shortest trace that shows it:\n{}",
            self.seed, self.first, self.random_steps.0, self.random_steps.1, self.minimal
        )
    }
}

/// What a batch of traces did.
#[derive(Default)]
pub struct Batch {
    pub traces: usize,
    pub steps: usize,
    pub failures: Vec<Failure>,
    pub crashes: Vec<String>,
    pub boots: usize,
}

pub struct BatchOpts {
    pub seeds: std::ops::Range<u64>,
    pub steps: usize,
    pub mutant: Mutant,
    /// Stop after this many failures.
    pub max_failures: usize,
    /// Runs allowed for shrinking each failure.
    pub shrink_budget: usize,
    pub time_limit: Option<Duration>,
    pub progress: bool,
}

/// Run the traces of `opts.seeds`; shrink each divergence.
pub fn batch(m: &Machine, opts: &BatchOpts) -> Result<Batch> {
    let start = Instant::now();
    let mut out = Batch::default();
    let mut session: Option<Session> = None;
    for seed in opts.seeds.clone() {
        if opts.time_limit.is_some_and(|t| start.elapsed() > t) || out.failures.len() + out.crashes.len() >= opts.max_failures {
            break;
        }
        if session.is_none() {
            session = Some(Session::start(m)?);
            out.boots += 1;
        }
        let s = session.as_mut().expect("started");
        let g = gen::generate(&m.cfg, &s.env, seed, GenOpts { steps: opts.steps }, opts.mutant)?;
        let env = s.env.clone();
        match s.run(&g) {
            Outcome::Agree { steps } => {
                out.traces += 1;
                out.steps += steps;
            }
            Outcome::Crash(why) => {
                out.traces += 1;
                out.crashes.push(format!("seed {seed}: {why}"));
                session = None;
            }
            Outcome::Diverge(d) => {
                out.traces += 1;
                session = None;
                let f = shrink(m, &env, &g, d, opts.mutant, opts.shrink_budget, &mut out.boots);
                out.failures.push(f);
            }
        }
        if opts.progress && out.traces % 500 == 0 {
            println!("        ... {} traces, {} steps, {} failures ({:.0} s)", out.traces, out.steps, out.failures.len(), start.elapsed().as_secs_f64());
        }
    }
    if let Some(s) = session {
        s.finish()?;
    }
    Ok(out)
}

/// Shrink a diverging trace: cut after the diverging step, then delta-debug
/// the random steps; every candidate gets a fresh cleanup and runs in mc2.
fn shrink(m: &Machine, env: &spec::model::Env, g: &Generated, d: Divergence, mutant: Mutant, budget: usize, boots: &mut usize) -> Failure {
    let setup = g.trace.setup_steps();
    let random = g.trace.random_steps();
    let first_random = g.trace.parts.iter().position(|p| *p == Part::Random).unwrap_or(g.trace.steps.len());
    // Random steps up to and including the diverging one.
    let cut = d.step.saturating_sub(first_random) + 1;
    let mut session: Option<Session> = None;
    let mut last_fail: Option<(Generated, Divergence)> = None;
    let mut oracle = |cand: &[spec::trace::Step]| -> Option<bool> {
        let env = session.as_ref().map(|s| s.env.clone()).unwrap_or_else(|| env.clone());
        let cg = gen::assemble(&m.cfg, &env, g.trace.seed, &setup, cand, mutant)?;
        if session.is_none() {
            session = Session::start(m).ok();
            *boots += 1;
        }
        let s = session.as_mut()?;
        match s.run(&cg) {
            Outcome::Agree { .. } => Some(false),
            Outcome::Diverge(d) => {
                session = None;
                last_fail = Some((cg, d));
                Some(true)
            }
            Outcome::Crash(why) => {
                session = None;
                last_fail = Some((cg, Divergence { step: 0, what: format!("crash: {why}") }));
                Some(true)
            }
        }
    };
    let start: Vec<spec::trace::Step> = if cut < random.len() && oracle(&random[..cut]) == Some(true) { random[..cut].to_vec() } else { random.clone() };
    let (min, _) = spec::shrink::ddmin(start, budget, &mut oracle);
    // Make sure the report shows a run of exactly the minimal trace.
    let _ = oracle(&min);
    drop(oracle);
    let (text, what) = match &last_fail {
        Some((cg, d)) if cg.trace.random_steps() == min => (trace_text(&cg.trace, &cg.expects), d.what.clone()),
        _ => (trace_text(&g.trace, &g.expects), d.what.clone()),
    };
    Failure { seed: g.trace.seed, first: d.what.clone(), minimal: format!("{what}\n{text}"), random_steps: (random.len(), min.len()) }
}
