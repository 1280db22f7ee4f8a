//! Conformance traces: what each step asks, what it must produce, and the
//! one-line text forms exchanged with mc2's `conform` driver.
//!
//! A step is one system call issued by the driver itself (`d`) or by worker
//! number `i` (a `conform w i` process the trace started). Arguments are
//! plain values (hex) or symbolic buffers the issuer resolves in its own
//! memory: `m<off>` is byte `off` of its 12 KiB scratch buffer (on its stack,
//! read/write), `r<off>` byte `off` of an 8 KiB read-only array of `.`
//! (rodata). Before the call the issuer writes its fills into the scratch
//! buffer (message patterns, program names, argument strings).
//!
//! Driver input, one line per step (numbers in hex):
//!
//! ```text
//! S <who> <nr> <a0> .. <a5> [F...] [B] R<who,...|-> X<pid state,...|->
//! ```
//!
//! `B`: the issuer blocks (no answer from it now). `R`: who must answer in
//! this step (the issuer unless it blocks, blocked workers the step wakes,
//! new workers saying hello). `X`: every trace process that must exist once
//! the step has settled, with `b` (alive, blocked) or `z` (zombie).
//!
//! Driver output, one line per step:
//!
//! ```text
//! @<k> <who>=<rax>,<rdx>,<hash|-> ... |<pid>,<ppid>,<state>,<quota>,<usage> ...
//! ```
//!
//! (`<who>=h` for a hello), or `@<k> DIVERGED <why>` when the blocking
//! structure itself differs (an answer nobody expected, or the system did
//! not settle in time).

use std::fmt::Write;

/// Who issues a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Who {
    Driver,
    Worker(usize),
}

impl Who {
    pub fn text(self) -> String {
        match self {
            Who::Driver => "d".into(),
            Who::Worker(i) => format!("{i:x}"),
        }
    }

    pub fn parse(s: &str) -> Option<Who> {
        if s == "d" {
            Some(Who::Driver)
        } else {
            usize::from_str_radix(s, 16).ok().map(Who::Worker)
        }
    }
}

/// A system-call argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arg {
    /// This value, as is (numbers, ids, raw addresses).
    Val(u64),
    /// The address of byte `off` of the issuer's scratch buffer.
    Buf(u64),
    /// The address of byte `off` of the issuer's read-only array.
    Ro(u64),
}

impl Arg {
    fn text(self) -> String {
        match self {
            Arg::Val(v) => format!("{v:x}"),
            Arg::Buf(o) => format!("m{o:x}"),
            Arg::Ro(o) => format!("r{o:x}"),
        }
    }

    fn parse(s: &str) -> Option<Arg> {
        if let Some(o) = s.strip_prefix('m') {
            u64::from_str_radix(o, 16).ok().map(Arg::Buf)
        } else if let Some(o) = s.strip_prefix('r') {
            u64::from_str_radix(o, 16).ok().map(Arg::Ro)
        } else {
            u64::from_str_radix(s, 16).ok().map(Arg::Val)
        }
    }
}

/// What the issuer writes into its scratch buffer before the call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fill {
    /// `len` bytes of `rng::pattern_byte(seed, i)` at `off`.
    Pattern { off: u64, len: u64, seed: u64 },
    /// These bytes at `off`.
    Bytes { off: u64, data: Vec<u8> },
}

impl Fill {
    fn text(&self) -> String {
        match self {
            Fill::Pattern { off, len, seed } => format!("Fp{off:x},{len:x},{seed:x}"),
            Fill::Bytes { off, data } => {
                let mut s = format!("Fs{off:x},");
                for b in data {
                    let _ = write!(s, "{b:02x}");
                }
                s
            }
        }
    }

    fn parse(s: &str) -> Option<Fill> {
        if let Some(r) = s.strip_prefix("Fp") {
            let mut it = r.split(',').map(|x| u64::from_str_radix(x, 16).ok());
            let (off, len, seed) = (it.next()??, it.next()??, it.next()??);
            Some(Fill::Pattern { off, len, seed })
        } else if let Some(r) = s.strip_prefix("Fs") {
            let (off, hex) = r.split_once(',')?;
            let off = u64::from_str_radix(off, 16).ok()?;
            if hex.len() % 2 != 0 {
                return None;
            }
            let data = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect::<Option<Vec<u8>>>()?;
            Some(Fill::Bytes { off, data })
        } else {
            None
        }
    }
}

/// One system call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Call {
    pub nr: u64,
    pub args: [Arg; 6],
    pub fills: Vec<Fill>,
}

impl Call {
    pub fn new(nr: u64, args: &[Arg]) -> Call {
        let mut a = [Arg::Val(0); 6];
        a[..args.len()].copy_from_slice(args);
        Call { nr, args: a, fills: Vec::new() }
    }

    pub fn vals(nr: u64, vals: &[u64]) -> Call {
        let args: Vec<Arg> = vals.iter().map(|&v| Arg::Val(v)).collect();
        Call::new(nr, &args)
    }

    pub fn fill(mut self, f: Fill) -> Call {
        self.fills.push(f);
        self
    }
}

/// One step of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Step {
    pub who: Who,
    pub call: Call,
}

/// Which part of a trace a step belongs to (the shrinker only removes
/// random steps; setup and cleanup are regenerated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Setup,
    Random,
    Cleanup,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub seed: u64,
    pub steps: Vec<Step>,
    pub parts: Vec<Part>,
}

impl Trace {
    pub fn random_steps(&self) -> Vec<Step> {
        self.steps.iter().zip(&self.parts).filter(|(_, p)| **p == Part::Random).map(|(s, _)| s.clone()).collect()
    }
    pub fn setup_steps(&self) -> Vec<Step> {
        self.steps.iter().zip(&self.parts).filter(|(_, p)| **p == Part::Setup).map(|(s, _)| s.clone()).collect()
    }
}

/// Process states of trace processes once a step has settled: `ps`'s
/// blocked and zombie, and (model only) idle: alive and between commands
/// (any of running, ready or blocked in `ps`: a worker that has just
/// answered is on its way back to its command channel).
pub const BLOCKED: u32 = 2;
pub const ZOMBIE: u32 = 3;
pub const IDLE: u32 = 4;

/// What one answer must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Hello,
    /// `rax`, `rdx` (None: any value is right, e.g. the TSC), the FNV-1a of
    /// the bytes received (None: not observed or not known to the model).
    Ret { rax: Option<u64>, rdx: Option<u64>, hash: Option<u64> },
}

/// One row of the settled `ps` of trace processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsRow {
    pub pid: u32,
    pub parent: u32,
    pub state: u32,
    pub quota: u64,
    pub usage: u64,
}

/// What a step must produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    pub blocks: bool,
    pub answers: Vec<(Who, Answer)>,
    pub ps: Vec<PsRow>,
}

/// The driver's input line for step `step` with expectation `e`.
pub fn step_line(step: &Step, e: &Expect) -> String {
    let mut s = format!("S {} {:x}", step.who.text(), step.call.nr);
    for a in &step.call.args {
        s.push(' ');
        s.push_str(&a.text());
    }
    for f in &step.call.fills {
        s.push(' ');
        s.push_str(&f.text());
    }
    if e.blocks {
        s.push_str(" B");
    }
    let who: Vec<String> = e.answers.iter().map(|(w, _)| w.text()).collect();
    let _ = write!(s, " R{}", if who.is_empty() { "-".to_string() } else { who.join(",") });
    let letter = |s: u32| match s {
        ZOMBIE => 'z',
        BLOCKED => 'b',
        _ => 'i',
    };
    let shape: Vec<String> = e.ps.iter().map(|r| format!("{:x}{}", r.pid, letter(r.state))).collect();
    let _ = write!(s, " X{}", if shape.is_empty() { "-".to_string() } else { shape.join(",") });
    s
}

/// Parse a step line back (the driver's grammar; used by the tests and by
/// anyone replaying a saved trace).
pub fn parse_step_line(line: &str) -> Option<Step> {
    let mut it = line.split_whitespace();
    if it.next()? != "S" {
        return None;
    }
    let who = Who::parse(it.next()?)?;
    let nr = u64::from_str_radix(it.next()?, 16).ok()?;
    let mut args = [Arg::Val(0); 6];
    for a in &mut args {
        *a = Arg::parse(it.next()?)?;
    }
    let mut fills = Vec::new();
    for w in it {
        if w.starts_with('F') {
            fills.push(Fill::parse(w)?);
        }
    }
    Some(Step { who, call: Call { nr, args, fills } })
}

/// The text of a whole trace as saved in failure reports: one step line per
/// step (with the model's expectations).
pub fn trace_text(t: &Trace, expects: &[Expect]) -> String {
    let mut s = String::new();
    for (i, (st, e)) in t.steps.iter().zip(expects).enumerate() {
        let _ = writeln!(s, "{:>3} {:?}: {}  # {}", i, t.parts[i], step_line(st, e), describe(st));
    }
    s
}

/// A human description of a step (`3: send(chan 2, b0, 17 bytes)`).
pub fn describe(st: &Step) -> String {
    let who = match st.who {
        Who::Driver => "driver".to_string(),
        Who::Worker(i) => format!("w{i}"),
    };
    let a = |i: usize| match st.call.args[i] {
        Arg::Val(v) if v > 0xffff => format!("{v:#x}"),
        Arg::Val(v) => format!("{v}"),
        Arg::Buf(o) => format!("buf+{o}"),
        Arg::Ro(o) => format!("ro+{o}"),
    };
    let name = call_name(st.call.nr);
    let n = match st.call.nr {
        abi::nr::YIELD | abi::nr::GETPID | abi::nr::GETPPID | abi::nr::QUOTA | abi::nr::MUTEX_CREATE | abi::nr::CV_CREATE | abi::nr::CLOCK => 0,
        abi::nr::EXIT | abi::nr::WAIT | abi::nr::SLEEP | abi::nr::SHM_STATUS | abi::nr::MUTEX_LOCK | abi::nr::MUTEX_UNLOCK | abi::nr::CV_SIGNAL
        | abi::nr::CV_BROADCAST | abi::nr::KILL | abi::nr::CHAN_CREATE | abi::nr::POWEROFF => 1,
        abi::nr::CONSOLE_WRITE | abi::nr::CONSOLE_READ | abi::nr::SHM_OFFER | abi::nr::CV_WAIT | abi::nr::MEM_UNMAP | abi::nr::PS | abi::nr::PROGRAMS
        | abi::nr::SYSINFO => 2,
        abi::nr::SEND | abi::nr::RECV | abi::nr::MEM_MAP => 3,
        _ => 6,
    };
    let args: Vec<String> = (0..n).map(a).collect();
    let mut s = format!("{who}: {name}({})", args.join(", "));
    for f in &st.call.fills {
        match f {
            Fill::Pattern { off, len, seed } => {
                let _ = write!(s, " [buf+{off}: {len} pattern bytes, seed {seed}]");
            }
            Fill::Bytes { off, data } => {
                let _ = write!(s, " [buf+{off}: {:?}]", String::from_utf8_lossy(data));
            }
        }
    }
    s
}

pub fn call_name(nr: u64) -> &'static str {
    const NAMES: [&str; abi::nr::COUNT as usize] = [
        "exit", "spawn", "wait", "yield", "sleep", "getpid", "getppid", "quota", "console_write", "console_read", "send", "recv", "call",
        "shm_offer", "shm_status", "mutex_create", "mutex_lock", "mutex_unlock", "cv_create", "cv_wait", "cv_signal", "cv_broadcast", "clock",
        "mem_map", "mem_unmap", "ps", "programs", "kill", "chan_create", "sysinfo", "poweroff", "file_size", "file_read", "vm_create", "vm_map",
        "vm_run", "vm_get_regs", "vm_set_regs", "vm_inject", "vm_list", "vm_destroy", "call_short", "vm_post",
    ];
    NAMES.get(nr as usize).copied().unwrap_or("nosys")
}
