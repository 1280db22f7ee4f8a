//! shell: the interactive shell on the serial console (prompt `mc2$ `).
//!
//! Started by init. With a non-empty argument line it runs that one command
//! and exits with its status, printing no prompt; otherwise it reads
//! commands until `exit`/`poweroff` (init then powers the machine off with
//! the shell's exit status). `help` lists the commands.
//!
//! Programs run in the foreground (the shell waits and reports a non-zero
//! status as `[pid N exited with status S]`) or, with a trailing `&`, in the
//! background: the shell prints `[pid N running in the background]`, and
//! before each prompt reaps the background children `ps` shows as exited
//! (a zombie is reaped without blocking), printing the same status line.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use abi::Error;
use alloc::vec::Vec;
use rt::text::parse_u64;
use rt::shm::SharedPage;
use rt::{print, println, proc, sys};

const PROMPT: &str = "mc2$ ";

/// Where and with what a command runs (`run`'s options).
#[derive(Clone, Copy)]
struct Limits {
    cpu: u64,
    quota: Option<u64>,
    procs: Option<u32>,
    default_quota: u64,
}
/// Quota of a program started without `-q`, in pages (less if the shell
/// has less to spare).
const DEFAULT_QUOTA: u64 = 256;
/// Default quota for `bench` (at least; ipcbench's throughput benchmark
/// spawns two processes per CPU, so [`bench_quota`] gives more on machines
/// with many CPUs).
const BENCH_QUOTA: u64 = 1024;
/// Pages the shell keeps for itself when giving quota away.
const RESERVE: u64 = 32;
/// Process-table slots the shell keeps for the commands after this one:
/// a program started without `-p` may hold all the free slots but these in
/// its subtree, so that a spawn bomb leaves the shell able to start programs.
const PROC_RESERVE: u64 = 4;

/// Quota of a VMM started by `vm start` without `-q`, in pages: 8 MiB of
/// guest RAM (the VMM's default) with room for its own needs.
const VM_QUOTA: u64 = 4096;

/// Exit status of a command whose program is not in the boot image.
const NOT_FOUND: u64 = 127;
/// Exit status of a command used the wrong way.
const USAGE: u64 = 2;

const HELP: &str = "\
commands:
  help                         this list
  programs                     the programs in the boot image
  ps                           processes: pid, parent, cpu, state, quota, usage, processes
                               in its subtree and their limit, name
  mem, sysinfo                 free memory, root container, CPUs online, TSC rate
  run [-c CPU] [-q PAGES] [-p PROCS] PROGRAM [ARGS...] [&]
                               start PROGRAM on CPU (default 0) with PAGES pages of quota
                               (default 256, less if the shell has less to spare), and at
                               most PROCS processes in its subtree, itself included (default:
                               all free process slots but 4); wait for it, or with a final
                               `&` leave it in the background
  PROGRAM [ARGS...] [&]        the same as `run PROGRAM [ARGS...] [&]`
  bench [-c CPU] [-q PAGES] [-p PROCS] [ARGS...]
                               run ipcbench (default quota 1024 pages, 128 per CPU
                               with more than 7 CPUs); `bench` alone
                               runs every benchmark, see `ipcbench help`
  kill PID                     end a process (its status becomes 137)
  vm list                      virtual machines: id, owner pid, cpu, state, guest pages,
                               exits, and by kind those the kernel handled
  vm start [-c CPU] [-q PAGES] IMAGE [ARGS...]
                               run `vmm IMAGE ARGS...` in the background on CPU (default:
                               the first CPU from 1 up without a VM) with PAGES pages of
                               quota (default 4096, less if the shell has less to spare);
                               see `vmm` for ARGS
  vm stop ID                   end VM ID's VMM (the kernel destroys the VM with it)
  vm attach ID                 type into VM ID's console (COM1) until Ctrl-]
  wait [PID]                   wait for a background process (default: all of them)
  sleep MS                     pause for MS milliseconds
  echo [TEXT...]               print TEXT
  exit [CODE], poweroff [CODE] leave the shell; init powers off with CODE (default 0)
  COMMAND; COMMAND...          run commands one after the other
";

/// What a command asks the shell to do next.
enum Flow {
    /// Carry on; the command's status.
    Continue(u64),
    /// Leave the shell with this status.
    Exit(u64),
}

struct Shell {
    me: u64,
    /// Background children not reaped yet.
    bg: Vec<u64>,
    /// Pages shared with VMMs for `vm attach`.
    attached: Vec<SharedPage>,
}

/// Where the shell maps the page it shares with VMM pid P (plus P * 4096),
/// and the ring in it (as the VMM reads it: word 0 written, word 1 taken).
const ATTACH_VA: u64 = 0x7200_0000_0000;
const ATTACH_RING_AT: usize = 64;
const ATTACH_RING: u64 = 2048;

fn main() -> i32 {
    let me = sys::getpid().unwrap_or(0);
    let mut sh = Shell { me, bg: Vec::new(), attached: Vec::new() };
    let command = rt::args().trim();
    if !command.is_empty() {
        let (Flow::Continue(s) | Flow::Exit(s)) = sh.exec(command);
        sys::exit(s);
    }
    println!("mc2 shell (pid {me}); `help` lists the commands");
    let mut buf = [0u8; 512];
    loop {
        sh.reap_finished();
        print!("{PROMPT}");
        let line = rt::io::read_line(&mut buf);
        if let Flow::Exit(s) = sh.exec(line) {
            sys::exit(s);
        }
    }
}

impl Shell {
    /// Run a command line: commands separated by `;` run one after the
    /// other (the last one's status counts; `exit` ends the sequence).
    fn exec(&mut self, line: &str) -> Flow {
        let mut flow = Flow::Continue(0);
        for command in line.split(';') {
            flow = self.exec_one(command);
            if let Flow::Exit(_) = flow {
                break;
            }
        }
        flow
    }

    /// Run one command.
    fn exec_one(&mut self, line: &str) -> Flow {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Flow::Continue(0);
        }
        let (line, background) = match line.strip_suffix('&') {
            Some(l) => (l.trim_end(), true),
            None => (line, false),
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(&cmd) = words.first() else {
            println!("`&` needs a program to run in the background");
            return Flow::Continue(USAGE);
        };
        let args = &words[1..];
        let builtin = matches!(cmd, "help" | "programs" | "ps" | "mem" | "sysinfo" | "kill" | "wait" | "sleep" | "echo" | "exit" | "poweroff" | "vm");
        if builtin && background {
            println!("{cmd}: only programs run in the background");
            return Flow::Continue(USAGE);
        }
        let status = match cmd {
            "help" => {
                print!("{HELP}");
                0
            }
            "programs" => programs(),
            "ps" => ps(),
            "mem" | "sysinfo" => mem(),
            "run" => self.run(args, None, DEFAULT_QUOTA, background),
            "bench" => self.run(args, Some("ipcbench"), bench_quota(), background),
            "kill" => kill(args),
            "vm" => self.vm(args),
            "wait" => self.wait(args),
            "sleep" => sleep(args),
            "echo" => {
                // Print the text as typed, spacing included.
                println!("{}", line["echo".len()..].trim_start());
                0
            }
            "exit" | "poweroff" => {
                return match args {
                    [] => Flow::Exit(0),
                    [c] => match parse_u64(c) {
                        Some(code) => Flow::Exit(code),
                        None => {
                            println!("{cmd}: CODE must be a number, not `{c}`");
                            Flow::Continue(USAGE)
                        }
                    },
                    _ => {
                        println!("usage: {cmd} [CODE]");
                        Flow::Continue(USAGE)
                    }
                };
            }
            _ => self.start(cmd, &args.join(" "), Limits { cpu: 0, quota: None, procs: None, default_quota: DEFAULT_QUOTA }, background),
        };
        Flow::Continue(status)
    }

    /// `run [-c CPU] [-q PAGES] [-p PROCS] PROGRAM [ARGS...]`, or `bench [-c
    /// CPU] [-q PAGES] [-p PROCS] [ARGS...]` when `program` is given.
    fn run(&mut self, args: &[&str], program: Option<&str>, default_quota: u64, background: bool) -> u64 {
        let what = if program.is_some() { "bench" } else { "run" };
        let mut cpu = 0;
        let mut quota = None;
        let mut procs = None;
        let mut i = 0;
        while let Some(&opt) = args.get(i) {
            let slot = match opt {
                "-c" => "CPU",
                "-q" => "PAGES",
                "-p" => "PROCS",
                _ => break,
            };
            let Some(v) = args.get(i + 1) else {
                println!("{what}: {opt} needs a number ({slot})");
                return USAGE;
            };
            let Some(n) = parse_u64(v) else {
                println!("{what}: {slot} after {opt} must be a number, not `{v}`");
                return USAGE;
            };
            match opt {
                "-c" => cpu = n,
                "-q" => quota = Some(n),
                _ => match u32::try_from(n) {
                    Ok(p) if p > 0 => procs = Some(p),
                    _ => {
                        println!("{what}: PROCS after -p must be from 1 to {}, not {n}", u32::MAX);
                        return USAGE;
                    }
                },
            }
            i += 2;
        }
        if cpu > u64::from(u32::MAX) {
            println!("cpu {cpu}: bad CPU");
            return 1;
        }
        let rest = &args[i..];
        let limits = Limits { cpu, quota, procs, default_quota };
        match program {
            Some(p) => self.start(p, &rest.join(" "), limits, background),
            None => match rest.split_first() {
                Some((p, a)) => self.start(p, &a.join(" "), limits, background),
                None => {
                    println!("usage: run [-c CPU] [-q PAGES] [-p PROCS] PROGRAM [ARGS...] [&]");
                    USAGE
                }
            },
        }
    }

    /// Spawn `program` and wait for it (or leave it in the background).
    fn start(&mut self, program: &str, args: &str, limits: Limits, background: bool) -> u64 {
        let Limits { cpu, quota, procs, default_quota } = limits;
        if args.len() > abi::MAX_ARGS {
            println!("{program}: the arguments are {} bytes long, at most {} fit", args.len(), abi::MAX_ARGS);
            return USAGE;
        }
        let spare = match proc::spare_pages(RESERVE) {
            Ok(s) => s,
            Err(e) => {
                println!("{program}: cannot read the shell's quota: {e}");
                return 1;
            }
        };
        let pages = match quota {
            Some(q) => q,
            None if spare == 0 => {
                println!("{program}: the shell has no quota left to give (it keeps {RESERVE} pages)");
                return 1;
            }
            None => default_quota.min(spare),
        };
        let procs = match procs {
            Some(p) => p,
            None => match proc::spare_processes(PROC_RESERVE) {
                Ok(n) => u32::try_from(n.max(1)).unwrap_or(u32::MAX),
                Err(e) => {
                    println!("{program}: cannot read the process count: {e}");
                    return 1;
                }
            },
        };
        // Keep room in the list first, so that a spawned child is always recorded.
        self.bg.reserve(1);
        let pid = match sys::spawn(program, pages, abi::spawn_cpu(cpu as u32, procs), args) {
            Ok(pid) => pid,
            Err(Error::NoSuchProgram) => {
                println!("no such program: {program}");
                return NOT_FOUND;
            }
            Err(Error::BadCpu) => {
                println!("cpu {cpu}: bad CPU");
                return 1;
            }
            Err(Error::QuotaExceeded) => {
                println!("{program}: quota exceeded: asked for {pages} pages, the shell has {spare} to spare");
                return 1;
            }
            Err(Error::TooMany) => {
                println!("{program}: too many processes: the shell's own process limit is reached");
                return 1;
            }
            Err(Error::TableFull) => {
                println!("{program}: the process table is full ({} processes)", abi::MAX_PROCESSES);
                return 1;
            }
            Err(e) => {
                println!("{program}: cannot start it: {e}");
                return 1;
            }
        };
        if background {
            self.bg.push(pid);
            println!("[pid {pid} running in the background]");
            return 0;
        }
        match sys::wait(pid) {
            Ok((_, status)) => {
                if status != 0 {
                    println!("[pid {pid} exited with status {status}]");
                }
                status
            }
            Err(e) => {
                println!("wait for pid {pid}: {e}");
                1
            }
        }
    }

    /// `wait [PID]`.
    fn wait(&mut self, args: &[&str]) -> u64 {
        let pids: Vec<u64> = match args {
            [] if self.bg.is_empty() => {
                println!("wait: no background processes");
                return 0;
            }
            [] => self.bg.clone(),
            [p] => match parse_u64(p) {
                Some(pid) => alloc::vec![pid],
                None => {
                    println!("wait: PID must be a number, not `{p}`");
                    return USAGE;
                }
            },
            _ => {
                println!("usage: wait [PID]");
                return USAGE;
            }
        };
        let mut last = 0;
        for pid in pids {
            match sys::wait(pid) {
                Ok((_, status)) => {
                    println!("[pid {pid} exited with status {status}]");
                    last = status;
                }
                Err(e) => {
                    println!("wait {pid}: {e}");
                    last = 1;
                }
            }
            // Reaped, or not ours to reap: either way no longer a job.
            self.bg.retain(|&b| b != pid);
        }
        last
    }

    /// `vm list | start [-c CPU] [-q PAGES] IMAGE [ARGS...] | stop ID`.
    fn vm(&mut self, args: &[&str]) -> u64 {
        const USAGE_VM: &str = "usage: vm list | vm start [-c CPU] [-q PAGES] IMAGE [ARGS...] | vm stop ID | vm attach ID";
        match args.split_first() {
            Some((&"list", [])) => vm_list(),
            Some((&"start", rest)) => self.vm_start(rest),
            Some((&"stop", [id])) => vm_stop(id),
            Some((&"attach", [id])) => self.vm_attach(id),
            _ => {
                println!("{USAGE_VM}");
                USAGE
            }
        }
    }

    /// `vm attach ID`: what is typed goes to VM ID's COM1 (through a page
    /// shared with its VMM, which offered it at start) until Ctrl-] or the
    /// VMM ends; the guest's lines keep coming as `[vmN] ...`.
    fn vm_attach(&mut self, id: &str) -> u64 {
        let Some(id) = parse_u64(id) else {
            println!("vm attach: ID must be a number, not `{id}`");
            return USAGE;
        };
        let Some(owner) = vms().unwrap_or_default().iter().find(|i| i.id as u64 == id).map(|i| i.owner as u64) else {
            println!("vm attach: no VM {id} (`vm list` shows them)");
            return 1;
        };
        // One page per VMM, at an address of its own: it stays mapped
        // until either side exits, and a later attach reuses it.
        let va = ATTACH_VA + owner * 4096;
        let page = match self.attached.iter().position(|p| p.peer() == owner) {
            Some(i) => &self.attached[i],
            None => match SharedPage::offer(owner, va) {
                Ok((p, _)) => {
                    self.attached.push(p);
                    &self.attached[self.attached.len() - 1]
                }
                Err(e) => {
                    println!("vm attach: sharing a page with pid {owner}: {e}");
                    return 1;
                }
            },
        };
        if let Err(e) = page.wait_ready(2000) {
            println!("vm attach: VMM pid {owner} does not take console input: {e}");
            return 1;
        }
        println!("[attached to vm{id}: typing goes to its console; Ctrl-] detaches]");
        // One byte at a time: what follows Ctrl-] is the shell's again.
        let mut buf = [0u8; 1];
        'typing: loop {
            let got = match sys::console_read(&mut buf) {
                Ok(n) => n as usize,
                Err(_) => break,
            };
            for &b in &buf[..got.min(buf.len())] {
                if b == 0x1d {
                    break 'typing;
                }
                // Wait for room in the ring while the VMM lives.
                loop {
                    if !matches!(sys::shm_status(owner), Ok(abi::ShmState::Ready)) {
                        println!("[vm{id}'s VMM has ended]");
                        break 'typing;
                    }
                    let (written, taken) = (page.load(0), page.load(1));
                    if written - taken < ATTACH_RING {
                        page.write_bytes(ATTACH_RING_AT + (written % ATTACH_RING) as usize, &[b]);
                        page.store(0, written + 1);
                        break;
                    }
                    sys::sleep_ms(1);
                }
            }
        }
        println!("[detached from vm{id}]");
        0
    }

    /// `vm start`: `vmm IMAGE ARGS...` in the background.
    fn vm_start(&mut self, args: &[&str]) -> u64 {
        let mut cpu = None;
        let mut quota = None;
        let mut i = 0;
        while let Some(&opt) = args.get(i) {
            let slot = match opt {
                "-c" => "CPU",
                "-q" => "PAGES",
                _ => break,
            };
            let Some(n) = args.get(i + 1).and_then(|v| parse_u64(v)) else {
                println!("vm start: {opt} needs a number ({slot})");
                return USAGE;
            };
            if opt == "-c" {
                cpu = Some(n);
            } else {
                quota = Some(n);
            }
            i += 2;
        }
        let rest = &args[i..];
        if rest.is_empty() {
            println!("usage: vm start [-c CPU] [-q PAGES] IMAGE [ARGS...]");
            return USAGE;
        }
        let cpu = match cpu {
            Some(c) => c,
            None => match free_vm_cpu() {
                Some(c) => c,
                None => {
                    println!("vm start: every CPU but the shell's already runs a VM; name one with -c");
                    return 1;
                }
            },
        };
        self.start("vmm", &rest.join(" "), Limits { cpu, quota, procs: None, default_quota: VM_QUOTA }, true)
    }

    /// Reap background children that have exited, without blocking: only
    /// those `ps` shows as zombies are waited for.
    fn reap_finished(&mut self) {
        if self.bg.is_empty() {
            return;
        }
        let list = match proc::list() {
            Ok(l) => l,
            Err(e) => {
                println!("shell: ps: {e}");
                return;
            }
        };
        let mut i = 0;
        while i < self.bg.len() {
            let pid = self.bg[i];
            match list.iter().find(|p| p.pid as u64 == pid) {
                Some(p) if p.state == proc::ZOMBIE && p.parent as u64 == self.me => {
                    match sys::wait(pid) {
                        Ok((_, status)) => println!("[pid {pid} exited with status {status}]"),
                        Err(e) => println!("wait {pid}: {e}"),
                    }
                    self.bg.remove(i);
                }
                Some(_) => i += 1,
                // Gone without us: nothing left to reap.
                None => {
                    self.bg.remove(i);
                }
            }
        }
    }
}

/// The default quota for `bench`: [`BENCH_QUOTA`], or 64 pages for each of
/// ipcbench's two helpers per CPU and itself where that is more.
fn bench_quota() -> u64 {
    let cpus = proc::cpus().unwrap_or(1);
    BENCH_QUOTA.max(64 * (2 * cpus + 2))
}

/// `programs`: one name a line.
fn programs() -> u64 {
    let mut buf = alloc::vec![0u8; 4096];
    match sys::programs(&mut buf) {
        Ok(n) => {
            for name in buf[..n.min(buf.len())].split(|&b| b == 0).filter(|s| !s.is_empty()) {
                println!("{}", core::str::from_utf8(name).unwrap_or("?"));
            }
            0
        }
        Err(e) => {
            println!("programs: {e}");
            1
        }
    }
}

/// `ps`: a table of every process.
fn ps() -> u64 {
    match proc::list() {
        Ok(list) => {
            println!("  PID  PPID  CPU  STATE      QUOTA   USAGE  TREE  LIMIT  NAME");
            for p in &list {
                let limit = if p.limit == abi::NO_PROCESS_LIMIT { alloc::string::String::from("-") } else { alloc::format!("{}", p.limit) };
                println!(
                    "{:>5} {:>5} {:>4}  {:<8} {:>7} {:>7} {:>5} {:>6}  {}",
                    p.pid,
                    p.parent,
                    p.cpu,
                    proc::state_name(p.state),
                    p.quota,
                    p.usage,
                    p.subtree,
                    limit,
                    p.name()
                );
            }
            println!("(TREE: processes in its subtree, itself included; LIMIT: the most its subtree may hold, `-`: none of its own)");
            0
        }
        Err(e) => {
            println!("ps: {e}");
            1
        }
    }
}

/// `mem` / `sysinfo`.
fn mem() -> u64 {
    let si = match sys::sysinfo() {
        Ok(s) => s,
        Err(e) => {
            println!("sysinfo: {e}");
            return 1;
        }
    };
    let (quota, usage) = match sys::quota() {
        Ok(q) => q,
        Err(e) => {
            println!("quota: {e}");
            return 1;
        }
    };
    let mib = |pages: u64| pages * abi::PAGE_SIZE / (1024 * 1024);
    println!("memory:    {} of {} pages free ({} of {} MiB)", si.free_pages, si.total_pages, mib(si.free_pages), mib(si.total_pages));
    println!("root:      quota {} pages, usage {} pages", si.root_quota, si.root_usage);
    println!("shell:     quota {quota} pages, usage {usage} pages");
    println!("cpus:      {} online", si.cpus_online);
    println!("tsc:       {} ticks/ms ({} MHz)", si.tsc_per_ms, si.tsc_per_ms / 1000);
    println!("processes: {}, timer ticks: {}", si.processes, si.ticks);
    0
}

/// `kill PID`.
fn kill(args: &[&str]) -> u64 {
    let [p] = args else {
        println!("usage: kill PID");
        return USAGE;
    };
    let Some(pid) = parse_u64(p) else {
        println!("kill: PID must be a number, not `{p}`");
        return USAGE;
    };
    match sys::kill(pid) {
        Ok(_) => 0,
        Err(e) => {
            println!("kill {pid}: {e}");
            1
        }
    }
}

/// The VMs, as the kernel lists them (at most 16).
fn vms() -> Result<Vec<abi::vm::Info>, Error> {
    let mut v = [abi::vm::Info::default(); 16];
    let n = sys::vm_list(&mut v)?;
    Ok(v[..n.min(v.len())].to_vec())
}

/// `vm list`: a table of the VMs.
fn vm_list() -> u64 {
    match vms() {
        Ok(v) => {
            println!("   ID  OWNER  CPU  STATE        PAGES      EXITS |     INTR  CPUID      MSR       IO  OTHER");
            for i in &v {
                let state = match i.state {
                    0 => "created",
                    1 => "running",
                    2 => "stopped",
                    _ => "?",
                };
                let h = &i.handled;
                use abi::vm::{HANDLED_CPUID, HANDLED_INTERRUPT, HANDLED_IO, HANDLED_MSR, HANDLED_OTHER};
                println!(
                    "{:>5} {:>6} {:>4}  {:<8} {:>9} {:>10} | {:>8} {:>6} {:>8} {:>8} {:>6}",
                    i.id, i.owner, i.cpu, state, i.guest_pages, i.exits, h[HANDLED_INTERRUPT], h[HANDLED_CPUID], h[HANDLED_MSR], h[HANDLED_IO], h[HANDLED_OTHER]
                );
            }
            if v.is_empty() {
                println!("(no virtual machines)");
            } else {
                println!("(EXITS: all of them; right of |: those the kernel handled without the VMM: host interrupts, CPUID, MSRs, posted port I/O, other)");
            }
            0
        }
        Err(e) => {
            println!("vm list: {e}");
            1
        }
    }
}

/// The CPU a new VM gets by default: the lowest one from 1 up that neither
/// runs a VM nor has a live `vmm` about to create one (a VM has its CPU to
/// itself, and CPU 0 keeps the shell), or CPU 0 on a single-CPU machine.
fn free_vm_cpu() -> Option<u64> {
    let cpus = proc::cpus().unwrap_or(1) as u64;
    if cpus <= 1 {
        return Some(0);
    }
    let v = vms().unwrap_or_default();
    let vmms = proc::list().unwrap_or_default();
    (1..cpus).find(|&c| {
        !v.iter().any(|i| i.cpu as u64 == c) && !vmms.iter().any(|p| p.name() == "vmm" && p.cpu as u64 == c && proc::state_name(p.state) != "zombie")
    })
}

/// `vm stop ID`: kill the VM's owner (its VMM); the kernel destroys the VM
/// when the owner exits.
fn vm_stop(id: &str) -> u64 {
    let Some(id) = parse_u64(id) else {
        println!("vm stop: ID must be a number, not `{id}`");
        return USAGE;
    };
    let v = match vms() {
        Ok(v) => v,
        Err(e) => {
            println!("vm stop: vm list: {e}");
            return 1;
        }
    };
    let Some(info) = v.iter().find(|i| i.id as u64 == id) else {
        println!("vm stop: no VM {id} (`vm list` shows them)");
        return 1;
    };
    let owner = info.owner as u64;
    match sys::kill(owner) {
        Ok(_) => {
            println!("vm {id}: its VMM (pid {owner}) was told to stop");
            0
        }
        Err(Error::NotPermitted) => {
            println!("vm stop: VM {id} belongs to pid {owner}, which the shell did not start");
            1
        }
        Err(e) => {
            println!("vm stop: kill {owner}: {e}");
            1
        }
    }
}

/// `sleep MS`.
fn sleep(args: &[&str]) -> u64 {
    match args {
        [ms] => match parse_u64(ms) {
            Some(ms) => {
                sys::sleep_ms(ms);
                0
            }
            None => {
                println!("sleep: MS must be a number, not `{ms}`");
                USAGE
            }
        },
        _ => {
            println!("usage: sleep MS");
            USAGE
        }
    }
}

rt::entry!(main);
