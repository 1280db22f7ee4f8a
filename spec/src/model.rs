//! The top-level specification: every system call of docs/syscalls.md as
//! one atomic step on an abstract state made of the layers' own models.
//!
//! | state | model |
//! |---|---|
//! | frames, quota tree, address spaces (pages and page tables), shared-memory links | `mm::spec::System` |
//! | process table (parents, zombies, exit codes, kill marks) | `proc::spec::ProcSpec` |
//! | mutexes and condition variables (owners, FIFO waiters) | `proc::spec::ObjectsSpec` |
//! | channels (receivers, FIFO senders, delivered messages) | `proc::spec::ChannelsSpec` |
//! | wait queues (each process, channel, mutex and condition variable holds some; 512 in all) | `thread::spec::SchedSpec` |
//! | bytes of user memory that messages are made of | here (per frame, per scratch buffer) |
//!
//! Each call checks its arguments in the order `trap::syscall` does (which
//! error wins when several apply is part of the interface), and user
//! buffers are resolved against the modelled page tables: a buffer is good
//! iff every page it touches is mapped for the user (and writable, where the
//! kernel writes). A call that blocks leaves its process in [`Run::Blocked`]
//! with what it waits for; the step that wakes it runs its continuation
//! (the receive half of `call`, a condition-variable waiter re-taking its
//! mutex, a `wait` looking again) and records its answer.
//!
//! The driver's own process and the rest of the environment (init, the
//! shell, the driver's watchdog) are modelled as live processes that never
//! act on their own; the driver's container is the model's root container,
//! with the quota the driver had free when the trace started.

use crate::rng::{fnv1a, pattern_byte};
use crate::trace::{Answer, Arg, Call, Expect, Fill, PsRow, Step, Who, BLOCKED, IDLE, ZOMBIE};
use abi::{nr, Error};
use mm::spec::{Frames, System};
use mm::{ContainerId, Frame, MmError, Owner, Rights, ShmStatus};
use proc::elf::Program;
use proc::spec::{ChannelsSpec, ObjectsSpec, ProcSpec, Step as PStep, WaitSpec, Wake};
use proc::table::{PState, INIT};
use proc::Pid;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use thread::spec::SchedSpec;
use thread::Tid;

// The kernel's constants (trap::process, trap::syscall, proc, thread), as
// the interface exposes them.
pub const STACK_TOP: u64 = 0x7fff_0000_0000;
pub const STACK_PAGES: u64 = 16;
pub const KSTACK_PAGES: u64 = 4;
pub const MAX_ARGS: u64 = abi::MAX_ARGS as u64;
pub const MAX_MAP_PAGES: u64 = 1 << 16;
pub const MAX_NAME: u64 = abi::MAX_NAME as u64;
pub const MAX_PROCS: u64 = proc::MAX_PROCS as u64;
pub use proc::ipc::MAX_CHANNELS;
pub use proc::objects::MAX_OBJECTS;
pub use thread::MAX_THREADS;
pub const WAIT_QUEUES: usize = thread::MAX_WAIT_QUEUES;
pub const PAGE: u64 = abi::PAGE_SIZE;
pub const USER_END: u64 = abi::USER_END;

// The conformance harness's conventions (shared with user/conform).
/// The driver receives answers on this channel.
pub const DRIVER_CHAN: u64 = 127;
/// Channels at or above this number belong to the harness: traces neither
/// send to them nor receive on them (they only name them to get `Busy`,
/// `NotPermitted` or `NoSuchObject`).
pub const FIRST_HARNESS_CHAN: u64 = 100;
/// Most workers in one trace.
pub const MAX_WORKERS: usize = 26;
/// Worker `i` takes its commands on this channel.
pub fn cmd_chan(i: usize) -> u64 {
    DRIVER_CHAN - 1 - i as u64
}
/// Size of each process's scratch buffer (`Arg::Buf`) and read-only array (`Arg::Ro`).
pub const BUF_LEN: u64 = 12288;
pub const RO_LEN: u64 = 8192;
/// The worker program.
pub const WORKER: &str = "conform";
/// Where traces map memory (`mem_map`, shared pages): 1024 pages nothing else uses.
pub const ARENA: u64 = 0x4000_0000;
pub const ARENA_END: u64 = ARENA + 1024 * PAGE;
/// Frames the model manages (the workers' quotas must fit).
const POOL: u64 = 4096;
/// Longest `sleep` a trace may ask for, in ms.
pub const MAX_SLEEP_MS: u64 = 20;

/// Deliberately wrong variants of the spec, for showing that conformance
/// testing catches a spec that disagrees with the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutant {
    None,
    /// `chan_create(u64::MAX)` takes the highest free channel (below the harness's).
    ChanHighest,
    /// `spawn` does not charge the child's kernel stack to its container.
    KstackFree,
    /// `spawn` ignores the process limit in the high half of its cpu word.
    NoProcessLimit,
    /// `kill` is permitted along parent links only (orphans unkillable).
    KillByParents,
}

impl Mutant {
    pub fn parse(s: &str) -> Option<Mutant> {
        match s {
            "none" => Some(Mutant::None),
            "chan-highest" => Some(Mutant::ChanHighest),
            "kstack-free" => Some(Mutant::KstackFree),
            "no-process-limit" => Some(Mutant::NoProcessLimit),
            "kill-by-parents" => Some(Mutant::KillByParents),
            _ => None,
        }
    }
}

/// What reaping a process whose container still has child containers
/// (the containers of its children that outlived it, now init's) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReapSemantics {
    /// As documented ("its quota goes back to the parent"): the container
    /// goes once its last child container has gone, and its quota returns
    /// then.
    Deferred,
    /// As mc2 did until the conformance checks found it: the container is
    /// never destroyed; its quota stays charged to the parent's container
    /// for good (a leak). Kept as a wrong spec the kernel must now disagree
    /// with.
    Leak,
}

/// Why the model will not take a step (the generator then picks another;
/// a shrink candidate with such a step is skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    /// The issuer does not exist, is blocked or has exited.
    NotIdle,
    /// Outside what the harness can run deterministically.
    Forbidden(&'static str),
    /// Two woken processes would race for the same mutex: the outcome
    /// depends on the CPUs' schedules, not on the sequential spec.
    Race,
    /// The model itself is inconsistent (a bug in this crate).
    Model(String),
}

/// The machine and boot image a trace runs on.
pub struct Config {
    pub cpus: u64,
    /// The boot bundle's programs, in order, with their ELF files.
    pub programs: Vec<(String, Vec<u8>)>,
    parsed: BTreeMap<String, Option<Program>>,
}

impl Config {
    pub fn new(cpus: u64, programs: Vec<(String, Vec<u8>)>) -> Config {
        let parsed = programs.iter().map(|(n, f)| (n.clone(), proc::elf::parse(f, USER_END).ok())).collect();
        Config { cpus, programs, parsed }
    }

    /// Pages a worker uses once started (image, stack, page tables, kernel
    /// stack): a spawn with less quota fails.
    pub fn worker_pages(&self) -> Option<u64> {
        let mut m = Model::new(
            Arc::new(Config::new(self.cpus, self.programs.clone())),
            &Env { driver: 3, procs: vec![(1, 0), (2, 1), (3, 2)], driver_spare: 1000 },
            Mutant::None,
        )
        .ok()?;
        let c = m.mm.containers.split(ContainerId::ROOT, 1000).ok()?;
        m.build(9, c, WORKER, 0).ok()?;
        m.mm.containers.info(c).ok().map(|i| i.usage)
    }
}

/// The processes present when a trace starts (all outside the trace).
#[derive(Clone, Debug)]
pub struct Env {
    /// The driver's pid.
    pub driver: Pid,
    /// (pid, parent) of every process, the driver included.
    pub procs: Vec<(Pid, Pid)>,
    /// Quota the driver's container has free.
    pub driver_spare: u64,
}

/// Where a sender's message is: user memory, or registers (`call_short`,
/// the bytes themselves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Src {
    Mem(Arg),
    Regs(Vec<u8>),
}

/// Where a receiver wants its message: user memory, or registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dst {
    Mem(Arg),
    Regs,
}

/// What a blocked process waits for (and what it does once woken).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cont {
    /// In `send` (or the send half of `call`: `then` is its receive).
    Send { chan: u64, buf: Src, len: u64, then: Option<(u64, Dst, u64)> },
    Recv { chan: u64, buf: Dst, cap: u64 },
    Mutex { m: u64 },
    /// In `cv_wait`; once signalled it takes `m` again.
    Cv { cv: u64, m: u64 },
    Wait { which: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Run {
    /// Waiting for its next command (workers), or never acting (the rest).
    Idle,
    Blocked(Cont),
    Zombie,
}

#[derive(Clone, Debug)]
pub struct PInfo {
    pub who: Option<Who>,
    pub name: String,
    pub cpu: u64,
    pub container: ContainerId,
    pub tid: Tid,
    pub run: Run,
    /// Its wait queue for children (process table).
    pub queue: usize,
    pub kstack: Option<Frame>,
}

/// Result of a call as the caller sees it.
enum Done {
    Ret(Result<(u64, u64), Error>, Option<u64>),
    /// Returned with an unpredictable value (the TSC).
    Any,
    Blocked(Cont),
    Exited,
}

#[derive(Clone)]
enum Ev {
    Wake(Wake),
    /// A child of this process exited: a `wait` looks again.
    Child(Pid),
}

type Bytes = Vec<Option<u8>>;

/// The whole system as the interface defines it.
#[derive(Clone)]
pub struct Model {
    pub cfg: Arc<Config>,
    pub mm: System,
    pub procs: ProcSpec,
    pub objs: ObjectsSpec,
    pub chans: ChannelsSpec,
    pub sched: SchedSpec,
    pub info: BTreeMap<Pid, PInfo>,
    pub workers: BTreeMap<usize, Pid>,
    pub mutant: Mutant,
    pub reap: ReapSemantics,
    pub driver: Pid,
    tids: BTreeMap<Tid, Pid>,
    queues: BTreeMap<(u8, u64), Vec<usize>>,
    /// Contents of frames user programs can read through the kernel
    /// (absent: zero; None bytes: not known to the model).
    mem: HashMap<u64, Bytes>,
    /// Each process's scratch buffer.
    bufs: HashMap<Pid, Bytes>,
    /// Buffers of blocked senders and receivers.
    sends: BTreeMap<Tid, (Src, u64)>,
    recvs: BTreeMap<Tid, (Dst, u64)>,
    /// What each woken receiver got (hash), by thread.
    got: BTreeMap<Tid, Option<u64>>,
    /// Containers reaped while they still had child containers.
    pub deferred: BTreeSet<u16>,
    events: VecDeque<Ev>,
    answers: Vec<(Who, Answer)>,
    reacquired: Vec<u64>,
    race: bool,
}

const K_CHAN: u8 = 0;
const K_MUTEX: u8 = 1;
const K_CV: u8 = 2;

/// The kernel's mapping of memory-management errors (trap::process::mm_error).
pub fn mm_error(e: MmError) -> Error {
    match e {
        MmError::OutOfMemory => Error::NoMemory,
        MmError::QuotaExceeded => Error::QuotaExceeded,
        MmError::Misaligned => Error::Misaligned,
        MmError::NonCanonical | MmError::KernelAddress | MmError::BadFrame => Error::BadAddress,
        MmError::AlreadyMapped => Error::AlreadyMapped,
        MmError::NotMapped => Error::NotMapped,
        MmError::SelfShare => Error::SelfShare,
        MmError::UnknownId => Error::NoSuchProcess,
        MmError::AlreadyOffered | MmError::AlreadyShared | MmError::StillShared => Error::Busy,
        MmError::TooManyContainers => Error::TableFull,
        MmError::LimitReached => Error::TooMany,
        MmError::NoSuchContainer => Error::NoSuchProcess,
        _ => Error::Invalid,
    }
}

/// A page address user space may map (trap::syscall::user_page).
pub fn user_page(va: u64) -> Result<(), Error> {
    mm::paging::check_user_va(va).map_err(mm_error)?;
    if va < abi::USER_BASE {
        return Err(Error::BadAddress);
    }
    Ok(())
}

fn model_err(what: impl std::fmt::Debug) -> Reject {
    Reject::Model(format!("{what:?}"))
}

fn ret(v: u64) -> Result<Done, Reject> {
    Ok(Done::Ret(Ok((v, 0)), None))
}

fn fail(e: Error) -> Result<Done, Reject> {
    Ok(Done::Ret(Err(e), None))
}

impl Model {
    /// The model of a fresh trace: `env` running, nothing else.
    pub fn new(cfg: Arc<Config>, env: &Env, mutant: Mutant) -> Result<Model, String> {
        let frames = Frames::new(&[(PAGE, POOL * PAGE)], &[], 512).map_err(|e| format!("{e:?}"))?;
        let mut mm = System::new(frames, MAX_PROCS as usize);
        let n_env = env.procs.len() as u64;
        mm.containers.root(env.driver_spare + n_env).map_err(|e| format!("{e:?}"))?;
        let cpus = cfg.cpus as usize;
        let mut m = Model {
            cfg,
            mm,
            procs: ProcSpec::new(),
            objs: ObjectsSpec::new(MAX_OBJECTS),
            chans: ChannelsSpec::new(MAX_CHANNELS),
            sched: SchedSpec::new(cpus, MAX_THREADS, 0..WAIT_QUEUES),
            info: BTreeMap::new(),
            workers: BTreeMap::new(),
            mutant,
            reap: ReapSemantics::Deferred,
            driver: env.driver,
            tids: BTreeMap::new(),
            queues: BTreeMap::new(),
            mem: HashMap::new(),
            bufs: HashMap::new(),
            sends: BTreeMap::new(),
            recvs: BTreeMap::new(),
            got: BTreeMap::new(),
            deferred: BTreeSet::new(),
            events: VecDeque::new(),
            answers: Vec::new(),
            reacquired: Vec::new(),
            race: false,
        };
        // The console's reader queue.
        m.sched.alloc_queue().map_err(|e| format!("{e:?}"))?;
        let mut procs = env.procs.clone();
        procs.sort_unstable();
        for &(pid, parent) in &procs {
            let tid = m.sched.alloc_thread().map_err(|e| format!("{e:?}"))?;
            let queue = m.sched.alloc_queue().map_err(|e| format!("{e:?}"))?;
            m.procs.procs.insert(pid, proc::spec::PSpec { state: PState::Alive, parent, tid, exit_code: 0, killed: false });
            // A placeholder space, so that env processes can be offered pages.
            m.mm.new_space(pid as usize, ContainerId::ROOT).map_err(|e| format!("{e:?}"))?;
            let who = (pid == env.driver).then_some(Who::Driver);
            m.info.insert(
                pid,
                PInfo { who, name: String::new(), cpu: 0, container: ContainerId::ROOT, tid, run: Run::Idle, queue, kstack: None },
            );
            m.tids.insert(tid, pid);
        }
        if !m.info.contains_key(&env.driver) {
            return Err(format!("the driver (pid {}) is not among the processes", env.driver));
        }
        m.chans.create(env.driver, DRIVER_CHAN).map_err(|e| format!("driver channel: {e:?}"))?;
        m.alloc_queues(K_CHAN, DRIVER_CHAN, 2).map_err(|e| format!("{e:?}"))?;
        m.bufs.insert(env.driver, vec![Some(0); BUF_LEN as usize]);
        Ok(m)
    }

    fn alloc_queues(&mut self, kind: u8, id: u64, n: usize) -> Result<(), Error> {
        let mut got = Vec::new();
        for _ in 0..n {
            match self.sched.alloc_queue() {
                Ok(q) => got.push(q),
                Err(_) => {
                    for q in got {
                        let _ = self.sched.free_queue(q);
                    }
                    return Err(Error::TableFull);
                }
            }
        }
        self.queues.insert((kind, id), got);
        Ok(())
    }

    fn free_queues(&mut self, kind: u8, id: u64) {
        for q in self.queues.remove(&(kind, id)).unwrap_or_default() {
            let _ = self.sched.free_queue(q);
        }
    }

    // ---- stepping ----

    /// Run one step; what it must produce, or why the model will not run it.
    pub fn step(&mut self, st: &Step) -> Result<Expect, Reject> {
        self.answers.clear();
        self.reacquired.clear();
        self.race = false;
        let pid = match st.who {
            Who::Driver => self.driver,
            Who::Worker(i) => *self.workers.get(&i).ok_or(Reject::NotIdle)?,
        };
        if self.info.get(&pid).map(|p| &p.run) != Some(&Run::Idle) {
            return Err(Reject::NotIdle);
        }
        for f in &st.call.fills {
            self.apply_fill(pid, f)?;
        }
        let done = self.syscall(pid, &st.call)?;
        let mut blocks = false;
        match done {
            Done::Ret(r, hash) => self.answer(pid, r, hash),
            Done::Any => self.answers.push((st.who, Answer::Ret { rax: None, rdx: None, hash: None })),
            Done::Blocked(c) => {
                if st.who == Who::Driver {
                    return Err(Reject::Forbidden("the driver would block"));
                }
                blocks = true;
                self.set_run(pid, Run::Blocked(c));
            }
            Done::Exited => {}
        }
        self.drain()?;
        self.init_reaps()?;
        if self.race {
            return Err(Reject::Race);
        }
        Ok(Expect { blocks, answers: std::mem::take(&mut self.answers), ps: self.ps_rows() })
    }

    /// The settled `ps` rows of trace processes (workers), by pid.
    pub fn ps_rows(&self) -> Vec<PsRow> {
        let mut rows = Vec::new();
        for (&pid, p) in &self.info {
            if !matches!(p.who, Some(Who::Worker(_))) {
                continue;
            }
            let parent = self.procs.procs.get(&pid).map_or(0, |s| s.parent);
            let (quota, usage) = self.usage(p.container);
            let state = match p.run {
                Run::Zombie => ZOMBIE,
                Run::Blocked(_) => BLOCKED,
                Run::Idle => IDLE,
            };
            rows.push(PsRow { pid, parent, state, quota, usage });
        }
        rows
    }

    /// Trace processes still present (alive or zombie).
    pub fn trace_pids(&self) -> Vec<Pid> {
        self.info.iter().filter(|(_, p)| matches!(p.who, Some(Who::Worker(_)))).map(|(&pid, _)| pid).collect()
    }

    /// (quota, usage) of a container.
    pub fn usage(&self, c: ContainerId) -> (u64, u64) {
        self.mm.containers.nodes.get(&(c.index() as u16)).map_or((0, 0), |i| (i.quota, i.usage))
    }

    pub fn pid_of_worker(&self, i: usize) -> Option<Pid> {
        self.workers.get(&i).copied()
    }

    fn set_run(&mut self, pid: Pid, r: Run) {
        if let Some(p) = self.info.get_mut(&pid) {
            p.run = r;
        }
    }

    fn answer(&mut self, pid: Pid, r: Result<(u64, u64), Error>, hash: Option<u64>) {
        let Some(p) = self.info.get_mut(&pid) else { return };
        p.run = Run::Idle;
        let Some(who) = p.who else { return };
        let rax = abi::encode(r.map(|v| v.0));
        let rdx = r.map(|v| v.1).unwrap_or(0);
        self.answers.push((who, Answer::Ret { rax: Some(rax), rdx: Some(rdx), hash }));
    }

    fn apply_fill(&mut self, pid: Pid, f: &Fill) -> Result<(), Reject> {
        let buf = self.bufs.get_mut(&pid).ok_or_else(|| model_err("no scratch buffer"))?;
        let (off, data): (u64, Bytes) = match f {
            Fill::Pattern { off, len, seed } => (*off, (0..*len).map(|i| Some(pattern_byte(*seed, i))).collect()),
            Fill::Bytes { off, data } => (*off, data.iter().map(|&b| Some(b)).collect()),
        };
        let end = off.checked_add(data.len() as u64).filter(|&e| e <= BUF_LEN).ok_or(Reject::Forbidden("fill outside the buffer"))?;
        buf[off as usize..end as usize].copy_from_slice(&data);
        Ok(())
    }

    fn tid(&self, pid: Pid) -> Tid {
        self.info.get(&pid).map_or(0, |p| p.tid)
    }

    fn container(&self, pid: Pid) -> ContainerId {
        self.info.get(&pid).map_or(ContainerId::ROOT, |p| p.container)
    }

    fn is_env(&self, pid: Pid) -> bool {
        !matches!(self.info.get(&pid).and_then(|p| p.who), Some(Who::Worker(_)))
    }

    // ---- user memory ----

    /// Whether `[a, a+len)` in `pid`'s memory is mapped for the user (and
    /// writable, with `write`): `mm::kernel::check_user_range`.
    fn good(&self, pid: Pid, a: Arg, len: u64, write: bool) -> Result<bool, Reject> {
        if len == 0 {
            return Ok(true);
        }
        match a {
            Arg::Buf(off) => {
                if off.checked_add(len).is_none_or(|e| e > BUF_LEN) {
                    return Err(Reject::Forbidden("a buffer beyond the scratch buffer"));
                }
                Ok(true)
            }
            Arg::Ro(off) => {
                if write {
                    return Ok(false);
                }
                if off.checked_add(len).is_none_or(|e| e > RO_LEN) {
                    return Err(Reject::Forbidden("a buffer beyond the read-only array"));
                }
                Ok(true)
            }
            Arg::Val(va) => {
                if self.is_env(pid) {
                    return Err(Reject::Forbidden("a raw address in the driver"));
                }
                let Some(end) = va.checked_add(len) else { return Ok(false) };
                if end > USER_END {
                    return Ok(false);
                }
                let Some(space) = self.mm.spaces.get(&(pid as usize)) else { return Ok(false) };
                let mut page = va & !(PAGE - 1);
                while page < end {
                    match space.pages.get(&page) {
                        Some((_, r)) if r.user && (r.write || !write) => {}
                        _ => return Ok(false),
                    }
                    page += PAGE;
                }
                Ok(true)
            }
        }
    }

    /// The bytes at a good buffer.
    fn read(&self, pid: Pid, a: Arg, len: u64) -> Bytes {
        match a {
            Arg::Buf(off) => self.bufs.get(&pid).map(|b| b[off as usize..(off + len) as usize].to_vec()).unwrap_or_default(),
            Arg::Ro(_) => vec![Some(b'.'); len as usize],
            Arg::Val(va) => (0..len)
                .map(|i| {
                    let at = va + i;
                    let (f, _) = self.mm.translate(pid as usize, at)?;
                    match self.mem.get(&f.pfn()) {
                        Some(p) => p[(at % PAGE) as usize],
                        None => Some(0),
                    }
                })
                .collect(),
        }
    }

    /// Write a good buffer.
    fn write(&mut self, pid: Pid, a: Arg, data: &[Option<u8>]) {
        match a {
            Arg::Buf(off) => {
                if let Some(b) = self.bufs.get_mut(&pid) {
                    b[off as usize..off as usize + data.len()].copy_from_slice(data);
                }
            }
            Arg::Ro(_) => {}
            Arg::Val(va) => {
                for (i, &d) in data.iter().enumerate() {
                    let at = va + i as u64;
                    let Some((f, _)) = self.mm.translate(pid as usize, at) else { continue };
                    let page = self.mem.entry(f.pfn()).or_insert_with(|| vec![Some(0); PAGE as usize]);
                    page[(at % PAGE) as usize] = d;
                }
            }
        }
    }

    fn offset(a: Arg, by: u64) -> Arg {
        match a {
            Arg::Val(v) => Arg::Val(v.wrapping_add(by)),
            Arg::Buf(o) => Arg::Buf(o.wrapping_add(by)),
            Arg::Ro(o) => Arg::Ro(o.wrapping_add(by)),
        }
    }

    fn val(a: Arg) -> Result<u64, Reject> {
        match a {
            Arg::Val(v) => Ok(v),
            _ => Err(Reject::Forbidden("a buffer address used as a number")),
        }
    }

    /// Is a sender's message readable (registers always are)?
    fn src_good(&self, pid: Pid, src: &Src, len: u64) -> Result<bool, Reject> {
        match src {
            Src::Mem(a) => self.good(pid, *a, len, false),
            Src::Regs(_) => Ok(true),
        }
    }

    fn src_read(&self, pid: Pid, src: &Src, len: u64) -> Bytes {
        match src {
            Src::Mem(a) => self.read(pid, *a, len),
            Src::Regs(b) => b.iter().take(len as usize).map(|&x| Some(x)).collect(),
        }
    }

    fn dst_good(&self, pid: Pid, dst: Dst, len: u64) -> Result<bool, Reject> {
        match dst {
            Dst::Mem(a) => self.good(pid, a, len, true),
            Dst::Regs => Ok(true),
        }
    }

    /// Deliver `data` to a receiver's place; the hash the receiver reports.
    fn deliver_to(&mut self, pid: Pid, dst: Dst, data: &[Option<u8>]) -> Option<u64> {
        match dst {
            Dst::Mem(a) => {
                self.write(pid, a, data);
                self.hash_for(a, data)
            }
            // Workers report the hash of the bytes in their registers.
            Dst::Regs => data.iter().copied().collect::<Option<Vec<u8>>>().map(|b| fnv1a(&b)),
        }
    }

    fn hash_for(&self, a: Arg, data: &[Option<u8>]) -> Option<u64> {
        // Workers report the hash of what they received into their scratch buffer only.
        if !matches!(a, Arg::Buf(_)) {
            return None;
        }
        let bytes: Option<Vec<u8>> = data.iter().copied().collect();
        bytes.map(|b| fnv1a(&b))
    }

    // ---- the calls ----

    fn syscall(&mut self, pid: Pid, call: &Call) -> Result<Done, Reject> {
        let a = call.args;
        match call.nr {
            nr::EXIT => {
                let code = Self::val(a[0])?;
                if self.is_env(pid) {
                    return Err(Reject::Forbidden("the driver exits"));
                }
                self.exit(pid, code)?;
                Ok(Done::Exited)
            }
            nr::SPAWN => self.sys_spawn(pid, a),
            nr::WAIT => self.sys_wait(pid, Self::val(a[0])?),
            nr::YIELD => ret(0),
            nr::SLEEP => {
                if Self::val(a[0])? > MAX_SLEEP_MS {
                    return Err(Reject::Forbidden("a long sleep"));
                }
                ret(0)
            }
            nr::GETPID => ret(pid as u64),
            nr::GETPPID => ret(self.procs.get(pid as u64).map_err(model_err)?.parent as u64),
            nr::QUOTA => {
                let i = self.mm.containers.info(self.container(pid)).map_err(model_err)?;
                Ok(Done::Ret(Ok((i.quota, i.usage)), None))
            }
            nr::CONSOLE_WRITE => {
                let len = Self::val(a[1])?;
                if len > abi::MAX_CONSOLE_WRITE as u64 {
                    return fail(Error::TooLarge);
                }
                if !self.good(pid, a[0], len, false)? {
                    return fail(Error::BadAddress);
                }
                ret(len)
            }
            nr::CONSOLE_READ => {
                let len = Self::val(a[1])?.min(256);
                if len == 0 {
                    return fail(Error::Invalid);
                }
                if !self.good(pid, a[0], len, true)? {
                    return fail(Error::BadAddress);
                }
                Err(Reject::Forbidden("console_read would wait for input"))
            }
            nr::SEND => {
                let (chan, len) = (Self::val(a[0])?, Self::val(a[2])?);
                self.sys_send(pid, chan, Src::Mem(a[1]), len, None)
            }
            nr::RECV => {
                let (chan, cap) = (Self::val(a[0])?, Self::val(a[2])?);
                self.sys_recv(pid, chan, Dst::Mem(a[1]), cap)
            }
            nr::CALL => {
                let (chan, len, reply, cap) = (Self::val(a[0])?, Self::val(a[2])?, Self::val(a[3])?, Self::val(a[5])?);
                self.sys_send(pid, chan, Src::Mem(a[1]), len, Some((reply, Dst::Mem(a[4]), cap)))
            }
            nr::CALL_SHORT => {
                let (chan, reply, len) = (Self::val(a[0])?, Self::val(a[1])?, Self::val(a[2])?);
                let short = abi::SHORT_MESSAGE as u64;
                let recv = (reply != abi::NO_CHANNEL).then_some((reply, Dst::Regs, short));
                if chan == abi::NO_CHANNEL {
                    return match recv {
                        Some(_) => self.sys_recv(pid, reply, Dst::Regs, short),
                        None => fail(Error::Invalid),
                    };
                }
                if len > short {
                    return fail(Error::TooLarge);
                }
                let words = [Self::val(a[3])?, Self::val(a[4])?, Self::val(a[5])?];
                let bytes = abi::short_bytes(&words)[..len as usize].to_vec();
                self.sys_send(pid, chan, Src::Regs(bytes), len, recv)
            }
            nr::SHM_OFFER => self.sys_shm_offer(pid, Self::val(a[0])?, Self::val(a[1])?),
            nr::SHM_STATUS => {
                let peer = Self::val(a[0])?;
                if peer == pid as u64 {
                    return fail(Error::SelfShare);
                }
                if peer == 0 || peer >= MAX_PROCS || self.procs.get(peer).is_err() {
                    return fail(Error::NoSuchProcess);
                }
                let s = self.mm.shm.status(pid as usize, peer as usize).map_err(model_err)?;
                ret(shm_state(s))
            }
            nr::MUTEX_CREATE => {
                let id = match self.objs.mutex_create(pid) {
                    Ok(id) => id,
                    Err(e) => return fail(e),
                };
                if let Err(e) = self.alloc_queues(K_MUTEX, id, 1) {
                    self.objs.mutexes.remove(&id);
                    return fail(e);
                }
                ret(id)
            }
            nr::MUTEX_LOCK => {
                let m = Self::val(a[0])?;
                match self.objs.mutex_lock(self.tid(pid), m) {
                    PStep::Done(r) => Ok(Done::Ret(r.map(|v| (v, 0)), None)),
                    PStep::Blocked => Ok(Done::Blocked(Cont::Mutex { m })),
                }
            }
            nr::MUTEX_UNLOCK => {
                let (r, w) = self.objs.mutex_unlock(self.tid(pid), Self::val(a[0])?);
                self.events.extend(w.map(Ev::Wake));
                Ok(Done::Ret(r.map(|v| (v, 0)), None))
            }
            nr::CV_CREATE => {
                let id = match self.objs.cv_create(pid) {
                    Ok(id) => id,
                    Err(e) => return fail(e),
                };
                if let Err(e) = self.alloc_queues(K_CV, id, 1) {
                    self.objs.cvs.remove(&id);
                    return fail(e);
                }
                ret(id)
            }
            nr::CV_WAIT => {
                let (cv, m) = (Self::val(a[0])?, Self::val(a[1])?);
                let (s, w) = self.objs.cv_wait(self.tid(pid), cv, m);
                self.events.extend(w.map(Ev::Wake));
                match s {
                    PStep::Done(r) => Ok(Done::Ret(r.map(|v| (v, 0)), None)),
                    PStep::Blocked => Ok(Done::Blocked(Cont::Cv { cv, m })),
                }
            }
            nr::CV_SIGNAL => {
                let (r, w) = self.objs.cv_signal(Self::val(a[0])?);
                self.events.extend(w.map(Ev::Wake));
                Ok(Done::Ret(r.map(|v| (v, 0)), None))
            }
            nr::CV_BROADCAST => {
                let (r, ws) = self.objs.cv_broadcast(Self::val(a[0])?);
                self.events.extend(ws.into_iter().map(Ev::Wake));
                Ok(Done::Ret(r.map(|v| (v, 0)), None))
            }
            nr::CLOCK => Ok(Done::Any),
            nr::MEM_MAP => self.sys_mem_map(pid, Self::val(a[0])?, Self::val(a[1])?, Self::val(a[2])?),
            nr::MEM_UNMAP => self.sys_mem_unmap(pid, Self::val(a[0])?, Self::val(a[1])?),
            nr::PS => {
                let len = Self::val(a[1])?;
                let n = self.procs.count() as u64;
                let rec = abi::ProcInfo::SIZE as u64;
                for i in 0..n.min(len / rec) {
                    let at = Self::offset(a[0], i * rec);
                    if !self.good(pid, at, rec, true)? {
                        return fail(Error::BadAddress);
                    }
                    // Records hold other processes' scheduling states: not modelled.
                    self.write(pid, at, &vec![None; rec as usize]);
                }
                ret(n)
            }
            nr::PROGRAMS => {
                let len = Self::val(a[1])?;
                let mut at = 0u64;
                let names: Vec<String> = self.cfg.programs.iter().map(|(n, _)| n.clone()).collect();
                for name in names {
                    let need = name.len() as u64 + 1;
                    if at + need > len {
                        return fail(Error::TooLarge);
                    }
                    let p = Self::offset(a[0], at);
                    if !self.good(pid, p, name.len() as u64, true)? {
                        return fail(Error::BadAddress);
                    }
                    let bytes: Bytes = name.bytes().map(Some).collect();
                    self.write(pid, p, &bytes);
                    let z = Self::offset(a[0], at + name.len() as u64);
                    if !self.good(pid, z, 1, true)? {
                        return fail(Error::BadAddress);
                    }
                    self.write(pid, z, &[Some(0)]);
                    at += need;
                }
                ret(at)
            }
            nr::KILL => {
                let target = Self::val(a[0])?;
                // trap::process::kill: permitted when the target's container
                // lies below the killer's (orphans included). The model does
                // not know the containers of the processes outside the trace
                // (all ROOT here); for those the parent links say the same.
                let (info, containers, by_parents) = (&self.info, &self.mm.containers, self.mutant == Mutant::KillByParents);
                let killer_c = self.container(pid);
                let r = self.procs.kill_if(target, |procs, t| match info.get(&t) {
                    Some(PInfo { who: Some(Who::Worker(_)), container, .. }) if !by_parents => containers.is_below(*container, killer_c),
                    _ => procs.ancestors(t).contains(&pid),
                });
                if let Err(e) = r {
                    return fail(e);
                }
                let t = target as Pid;
                if self.is_env(t) {
                    return Err(Reject::Forbidden("kills a process outside the trace"));
                }
                self.interrupt(t);
                self.exit(t, 137)?;
                ret(0)
            }
            nr::CHAN_CREATE => {
                let want = Self::val(a[0])?;
                if (FIRST_HARNESS_CHAN..MAX_CHANNELS as u64).contains(&want) && !self.chans.chans.contains_key(&want) {
                    return Err(Reject::Forbidden("claims a harness channel"));
                }
                let r = if want == u64::MAX && self.mutant == Mutant::ChanHighest {
                    match (0..FIRST_HARNESS_CHAN).rev().find(|c| !self.chans.chans.contains_key(c)) {
                        Some(c) => self.chans.create(pid, c),
                        None => Err(Error::TableFull),
                    }
                } else {
                    self.chans.create(pid, want)
                };
                let id = match r {
                    Ok(id) => id,
                    Err(e) => return fail(e),
                };
                if id >= FIRST_HARNESS_CHAN {
                    return Err(Reject::Forbidden("claims a harness channel"));
                }
                if let Err(e) = self.alloc_queues(K_CHAN, id, 2) {
                    self.chans.chans.remove(&id);
                    return fail(e);
                }
                ret(id)
            }
            nr::SYSINFO => {
                let len = Self::val(a[1])?;
                if len < abi::SysInfo::SIZE as u64 {
                    return fail(Error::Invalid);
                }
                if !self.good(pid, a[0], abi::SysInfo::SIZE as u64, true)? {
                    return fail(Error::BadAddress);
                }
                self.write(pid, a[0], &[None; abi::SysInfo::SIZE]);
                ret(0)
            }
            nr::POWEROFF => {
                if pid != INIT {
                    return fail(Error::NotPermitted);
                }
                Err(Reject::Forbidden("powers off"))
            }
            nr::FILE_SIZE => {
                let name = match self.file_name(pid, a[0], Self::val(a[1])?)? {
                    Ok(n) => n,
                    Err(e) => return fail(e),
                };
                match self.cfg.programs.iter().find(|(n, _)| *n == name) {
                    Some((_, data)) => ret(data.len() as u64),
                    None => fail(Error::NoSuchProgram),
                }
            }
            nr::FILE_READ => {
                let name = match self.file_name(pid, a[0], Self::val(a[1])?)? {
                    Ok(n) => n,
                    Err(e) => return fail(e),
                };
                let (offset, cap) = (Self::val(a[2])?, Self::val(a[4])?);
                let Some(data) = self.cfg.programs.iter().find(|(n, _)| *n == name).map(|(_, d)| d.clone()) else {
                    return fail(Error::NoSuchProgram);
                };
                // trap::vmcalls::file_read: the file from OFFSET (clamped to
                // its end), at most CAP bytes, copied out in 64 KiB pieces,
                // each whole or not at all (so a bad piece leaves the
                // pieces before it written).
                let start = offset.min(data.len() as u64) as usize;
                let n = cap.min((data.len() - start) as u64) as usize;
                let mut done = 0;
                while done < n {
                    let chunk = (n - done).min(1 << 16);
                    let at = Self::offset(a[3], done as u64);
                    if !self.good(pid, at, chunk as u64, true)? {
                        return fail(Error::BadAddress);
                    }
                    let bytes: Bytes = data[start + done..start + done + chunk].iter().map(|&b| Some(b)).collect();
                    self.write(pid, at, &bytes);
                    done += chunk;
                }
                let bytes: Bytes = data[start..start + n].iter().map(|&b| Some(b)).collect();
                Ok(Done::Ret(Ok((n as u64, 0)), self.hash_for(a[3], &bytes)))
            }
            // Virtual machines: the model has none (a trace never creates
            // one), so every call on a VM id ends at the lookup with
            // NoSuchObject, after the argument checks trap::vmcalls makes
            // first, in its order.
            nr::VM_CREATE => Err(Reject::Forbidden("creates a virtual machine (the model has none)")),
            nr::VM_MAP => {
                let (gpa, va, pages, rights) = (Self::val(a[1])?, Self::val(a[2])?, Self::val(a[3])?, Self::val(a[4])?);
                if pages == 0 || pages > 1 << 20 || rights & !(abi::vm::MAP_WRITE | abi::vm::MAP_EXEC) != 0 {
                    return fail(Error::Invalid);
                }
                if gpa % PAGE != 0 || va % PAGE != 0 {
                    return fail(Error::Misaligned);
                }
                // The first page must be the caller's own, mapped for it.
                let c = self.container(pid);
                match self.mm.translate(pid as usize, va) {
                    Some((f, r)) if r.user && self.mm.frames.owner(f) == Ok(mm::Owner::Container(c)) => fail(Error::NoSuchObject),
                    _ => fail(Error::BadAddress),
                }
            }
            nr::VM_RUN => {
                let flags = Self::val(a[2])?;
                if !self.good(pid, a[1], abi::vm::Exit::SIZE as u64, true)? {
                    return fail(Error::BadAddress);
                }
                if flags & !abi::vm::RUN_FLAGS != 0 {
                    return fail(Error::Invalid);
                }
                fail(Error::NoSuchObject)
            }
            nr::VM_GET_REGS => {
                if Self::val(a[2])? < abi::vm::Regs::SIZE as u64 {
                    return fail(Error::Invalid);
                }
                fail(Error::NoSuchObject)
            }
            nr::VM_SET_REGS => {
                if Self::val(a[2])? < abi::vm::Regs::SIZE as u64 {
                    return fail(Error::Invalid);
                }
                if !self.good(pid, a[1], abi::vm::Regs::SIZE as u64, false)? {
                    return fail(Error::BadAddress);
                }
                fail(Error::NoSuchObject)
            }
            nr::VM_INJECT => {
                let (vector, kind, code) = (Self::val(a[1])?, Self::val(a[2])?, Self::val(a[3])?);
                if vector > 255 || kind > 7 || (code != abi::vm::NO_ERROR_CODE && u32::try_from(code).is_err()) {
                    return fail(Error::Invalid);
                }
                // virt::inject: only external interrupts, NMIs and exceptions (below 32).
                if (kind != 0 && kind != 2 && kind != 3) || (kind == 3 && vector >= 32) {
                    return fail(Error::Invalid);
                }
                fail(Error::NoSuchObject)
            }
            // No virtual machines: nothing written, none counted.
            nr::VM_LIST => {
                let _ = Self::val(a[1])?;
                ret(0)
            }
            nr::VM_DESTROY => fail(Error::NoSuchObject),
            nr::VM_POST => {
                let (port, mode, value) = (Self::val(a[1])?, Self::val(a[2])?, Self::val(a[3])?);
                let (w, r) = (abi::vm::POST_WRITES, abi::vm::POST_READ);
                if port > 0xffff || mode & !(w | r) != 0 || (mode & r != 0 && value > 0xff) {
                    return fail(Error::Invalid);
                }
                fail(Error::NoSuchObject)
            }
            n if n < nr::COUNT => Err(Reject::Forbidden("a call the spec does not model")),
            _ => fail(Error::NoSys),
        }
    }

    /// The file name of a boot-file call (trap::vmcalls::file_name): longer
    /// than 64 bytes or not UTF-8 reads as no such file.
    fn file_name(&self, pid: Pid, at: Arg, len: u64) -> Result<Result<String, Error>, Reject> {
        if len > 64 {
            return Ok(Err(Error::NoSuchProgram));
        }
        if !self.good(pid, at, len, false)? {
            return Ok(Err(Error::BadAddress));
        }
        let name: Option<Vec<u8>> = self.read(pid, at, len).into_iter().collect();
        let name = name.ok_or(Reject::Forbidden("a file name the model does not know"))?;
        Ok(String::from_utf8(name).map_err(|_| Error::NoSuchProgram))
    }

    fn sys_spawn(&mut self, parent: Pid, a: [Arg; 6]) -> Result<Done, Reject> {
        let name_len = Self::val(a[1])?;
        let (quota, cpu, args_len) = (Self::val(a[2])?, Self::val(a[3])?, Self::val(a[5])?);
        // trap::syscall: the name (too long reads as no such program), then the arguments.
        if name_len > MAX_NAME {
            return fail(Error::NoSuchProgram);
        }
        if !self.good(parent, a[0], name_len, false)? {
            return fail(Error::BadAddress);
        }
        let name: Option<Vec<u8>> = self.read(parent, a[0], name_len).into_iter().collect();
        let name = name.ok_or(Reject::Forbidden("a program name the model does not know"))?;
        let Ok(name) = String::from_utf8(name) else { return fail(Error::Invalid) };
        if args_len > MAX_ARGS {
            return fail(Error::Invalid);
        }
        if !self.good(parent, a[4], args_len, false)? {
            return fail(Error::BadAddress);
        }
        let args: Option<Vec<u8>> = self.read(parent, a[4], args_len).into_iter().collect();
        let args = args.ok_or(Reject::Forbidden("arguments the model does not know"))?;
        // trap::process::spawn.
        let (cpu, max_procs) = abi::spawn_cpu_parts(cpu);
        if cpu >= self.cfg.cpus {
            return fail(Error::BadCpu);
        }
        let Ok(args) = String::from_utf8(args) else { return fail(Error::Invalid) };
        match self.cfg.parsed.get(&name) {
            None => return fail(Error::NoSuchProgram),
            Some(None) => return fail(Error::Invalid),
            Some(Some(_)) => {}
        }
        let c = match self.mm.containers.split(self.container(parent), quota) {
            Ok(c) => c,
            Err(e) => return fail(mm_error(e)),
        };
        if max_procs != 0 && self.mutant != Mutant::NoProcessLimit {
            self.mm.containers.set_limit(c, max_procs - 1).map_err(model_err)?;
        }
        // proc::table::reserve: a wait queue, then the lowest free pid.
        let queue = match self.sched.alloc_queue() {
            Ok(q) => q,
            Err(_) => {
                let _ = self.mm.containers.destroy(c);
                return fail(Error::TableFull);
            }
        };
        let pid = match self.procs.reserve(parent) {
            Ok(p) => p,
            Err(e) => {
                let _ = self.sched.free_queue(queue);
                let _ = self.mm.containers.destroy(c);
                return fail(e);
            }
        };
        match self.build(pid, c, &name, cpu) {
            Ok((tid, kstack)) => {
                self.procs.start(pid, tid);
                self.tids.insert(tid, pid);
                let who = if name == WORKER {
                    let mut w = args.split_whitespace();
                    match (w.next(), w.next().and_then(|i| i.parse::<usize>().ok()), w.next()) {
                        (Some("w"), Some(i), None) if i < MAX_WORKERS && !self.workers.contains_key(&i) => Some(Who::Worker(i)),
                        _ => return Err(Reject::Forbidden("starts a worker with arguments it cannot use")),
                    }
                } else {
                    return Err(Reject::Forbidden("starts a program other than the worker"));
                };
                self.info.insert(pid, PInfo { who, name, cpu, container: c, tid, run: Run::Idle, queue, kstack });
                self.bufs.insert(pid, vec![Some(0); BUF_LEN as usize]);
                if let Some(Who::Worker(i)) = who {
                    // The worker's start-up: claim its command channel, say hello.
                    self.workers.insert(i, pid);
                    if self.chans.create(pid, cmd_chan(i)).is_err() || self.alloc_queues(K_CHAN, cmd_chan(i), 2).is_err() {
                        return Err(Reject::Forbidden("the new worker cannot claim its command channel"));
                    }
                    self.answers.push((Who::Worker(i), Answer::Hello));
                }
                ret(pid as u64)
            }
            Err(e) => {
                if self.mm.spaces.contains_key(&(pid as usize)) {
                    let (_, leaves) = self.mm.destroy_space(pid as usize).map_err(model_err)?;
                    for (_, f, _) in leaves {
                        self.mm.free_page(c, f).map_err(model_err)?;
                    }
                }
                self.procs.unreserve(pid);
                let _ = self.sched.free_queue(queue);
                self.mm.containers.destroy(c).map_err(model_err)?;
                fail(e)
            }
        }
    }

    /// Load program `name` into a new space for `pid` in container `c`, as
    /// trap::process::build does: the page-table root, every segment page
    /// (in order, each charged then mapped), the 16-page stack, the
    /// 4-page kernel stack, a thread. On an error the caller cleans up.
    fn build(&mut self, pid: Pid, c: ContainerId, name: &str, _cpu: u64) -> Result<(Tid, Option<Frame>), Error> {
        let prog = self.cfg.parsed.get(name).cloned().flatten().ok_or(Error::Invalid)?;
        self.mm.new_space(pid as usize, c).map_err(mm_error)?;
        let mut pages: Vec<(u64, Rights)> = Vec::new();
        for seg in &prog.segments {
            let rights = Rights { write: seg.write, exec: seg.exec, user: true };
            let mut page = seg.vaddr & !(PAGE - 1);
            let end = (seg.vaddr + seg.memsz).div_ceil(PAGE) * PAGE;
            while page < end {
                pages.push((page, rights));
                page += PAGE;
            }
        }
        for i in 1..=STACK_PAGES {
            pages.push((STACK_TOP - i * PAGE, Rights::USER_RW));
        }
        for (va, rights) in pages {
            let f = self.mm.alloc_page(c).map_err(mm_error)?;
            // Program text and data, the stack: the model does not know these bytes.
            self.mem.insert(f.pfn(), vec![None; PAGE as usize]);
            if let Err(e) = self.mm.map(pid as usize, va, f, rights) {
                let _ = self.mm.free_page(c, f);
                return Err(mm_error(e));
            }
        }
        let kstack = if self.mutant == Mutant::KstackFree {
            None
        } else {
            self.mm.containers.charge(c, KSTACK_PAGES).map_err(mm_error)?;
            match self.mm.frames.alloc_contiguous(KSTACK_PAGES as usize, 1, Owner::Container(c)) {
                Ok(f) => Some(f),
                Err(e) => {
                    let _ = self.mm.containers.uncharge(c, KSTACK_PAGES);
                    return Err(mm_error(e));
                }
            }
        };
        let tid = match self.sched.alloc_thread() {
            Ok(t) => t,
            Err(_) => {
                if let Some(k) = kstack {
                    let _ = self.mm.frames.free_contiguous(k, KSTACK_PAGES as usize, Owner::Container(c));
                    let _ = self.mm.containers.uncharge(c, KSTACK_PAGES);
                }
                return Err(Error::TableFull);
            }
        };
        Ok((tid, kstack))
    }

    fn sys_wait(&mut self, pid: Pid, which: u64) -> Result<Done, Reject> {
        match self.procs.wait(pid, which) {
            WaitSpec::Reap(list) => {
                let child = list[0];
                let code = self.reap(child)?;
                Ok(Done::Ret(Ok((child as u64, code)), None))
            }
            WaitSpec::Err(e) => fail(e),
            WaitSpec::Blocks => Ok(Done::Blocked(Cont::Wait { which })),
        }
    }

    /// Reap zombie `child`: its kernel stack, pid and container go; its
    /// quota returns to the parent's container. Returns its exit code.
    fn reap(&mut self, child: Pid) -> Result<u64, Reject> {
        let p = self.procs.take_zombie(child).ok_or_else(|| model_err("reaping a non-zombie"))?;
        let info = self.info.remove(&child).ok_or_else(|| model_err("no info"))?;
        let c = info.container;
        if let Some(k) = info.kstack {
            self.mm.frames.free_contiguous(k, KSTACK_PAGES as usize, Owner::Container(c)).map_err(model_err)?;
            self.mm.containers.uncharge(c, KSTACK_PAGES).map_err(model_err)?;
        }
        self.destroy_container(c)?;
        self.procs.release(child);
        let _ = self.sched.free_queue(info.queue);
        // The thread slot is free again (the model uses SchedSpec for slots
        // and queues; a slot it never started is given back with release_slot).
        self.sched.release_slot(info.tid);
        self.tids.remove(&info.tid);
        self.bufs.remove(&child);
        if let Some(Who::Worker(i)) = info.who {
            self.workers.remove(&i);
        }
        Ok(p.exit_code)
    }

    fn destroy_container(&mut self, c: ContainerId) -> Result<(), Reject> {
        match self.mm.containers.destroy(c) {
            Ok(()) => {}
            Err(MmError::HasChildren) => {
                if self.reap == ReapSemantics::Deferred {
                    self.deferred.insert(c.index() as u16);
                }
                return Ok(());
            }
            Err(e) => return Err(model_err(e)),
        }
        // A deferred parent with no children left goes too.
        let parents: Vec<u16> = self.deferred.iter().copied().collect();
        for d in parents {
            let id = ContainerId::new(d);
            if let Ok(i) = self.mm.containers.info(id) {
                if i.children == 0 && i.own == 0 {
                    self.deferred.remove(&d);
                    self.destroy_container(id)?;
                }
            }
        }
        Ok(())
    }

    /// `pid` exits with `code` (trap::process::exit_current): its channels,
    /// then its objects, then its shared pages, then its address space; then
    /// it is a zombie and its parent is woken.
    fn exit(&mut self, pid: Pid, code: u64) -> Result<(), Reject> {
        let (tid, c) = (self.tid(pid), self.container(pid));
        let gone: Vec<u64> = self.chans.chans.iter().filter(|(_, ch)| ch.receiver == pid).map(|(&id, _)| id).collect();
        let ws = self.chans.process_exit(pid);
        self.events.extend(ws.into_iter().map(Ev::Wake));
        for id in gone {
            self.free_queues(K_CHAN, id);
        }
        let gone_m: Vec<u64> = self.objs.mutexes.iter().filter(|(_, m)| m.creator == pid).map(|(&id, _)| id).collect();
        let gone_c: Vec<u64> = self.objs.cvs.iter().filter(|(_, m)| m.creator == pid).map(|(&id, _)| id).collect();
        let ws = self.objs.process_exit(pid, tid);
        self.events.extend(ws.into_iter().map(Ev::Wake));
        for id in gone_m {
            self.free_queues(K_MUTEX, id);
        }
        for id in gone_c {
            self.free_queues(K_CV, id);
        }
        self.mm.revoke_all(pid as usize).map_err(model_err)?;
        if self.mm.spaces.contains_key(&(pid as usize)) {
            let (_, leaves) = self.mm.destroy_space(pid as usize).map_err(model_err)?;
            for (_, f, _) in leaves {
                self.mm.free_page(c, f).map_err(model_err)?;
            }
        }
        let woken = self.procs.exit(pid, code);
        self.set_run(pid, Run::Zombie);
        for p in woken {
            if p != INIT {
                self.events.push_back(Ev::Child(p));
            }
        }
        Ok(())
    }

    /// Take `pid`'s thread out of whatever it waits in (it was killed).
    fn interrupt(&mut self, pid: Pid) {
        let tid = self.tid(pid);
        if !self.chans.interrupt(tid) {
            self.objs.interrupt(tid);
        }
        self.sends.remove(&tid);
        self.recvs.remove(&tid);
    }

    fn sys_send(&mut self, pid: Pid, chan: u64, buf: Src, len: u64, then: Option<(u64, Dst, u64)>) -> Result<Done, Reject> {
        if (FIRST_HARNESS_CHAN..MAX_CHANNELS as u64).contains(&chan) && self.chans.chans.contains_key(&chan) {
            // Only the driver's own sends to a waiting receiver may touch these... and it never does.
            if len <= abi::MAX_MESSAGE as u64 && self.chans.chans.get(&chan).is_some_and(|c| c.receiver != pid) {
                return Err(Reject::Forbidden("sends to a harness channel"));
            }
        }
        if let Some((reply, _, _)) = then {
            if (FIRST_HARNESS_CHAN..MAX_CHANNELS as u64).contains(&reply) && self.chans.chans.get(&reply).is_some_and(|c| c.receiver == pid) {
                return Err(Reject::Forbidden("receives on its own command channel"));
            }
        }
        let me = self.tid(pid);
        let (bad, data) = if len > abi::MAX_MESSAGE as u64 {
            (false, Vec::new())
        } else if self.src_good(pid, &buf, len)? {
            (false, self.src_read(pid, &buf, len))
        } else {
            (true, vec![Some(0); len as usize])
        };
        // The waiting receiver's buffer is judged for this message's length.
        let mut receiver = None;
        if let Some(w) = self.chans.chans.get(&chan).and_then(|ch| ch.waiting.clone()).filter(|w| len <= w.cap as u64 && len <= abi::MAX_MESSAGE as u64) {
            let (rbuf, _) = self.recvs.get(&w.tid).copied().ok_or_else(|| model_err("receiver without a buffer"))?;
            let rbad = !self.dst_good(w.pid, rbuf, len)?;
            if let Some(want) = self.chans.chans.get_mut(&chan).and_then(|ch| ch.waiting.as_mut()) {
                want.bad = rbad;
            }
            receiver = Some((w.tid, w.pid, rbuf));
        }
        let msg: Vec<u8> = data.iter().map(|b| b.unwrap_or(0)).collect();
        let msg = if len > abi::MAX_MESSAGE as u64 { vec![0; len.min(abi::MAX_MESSAGE as u64 + 1) as usize] } else { msg };
        let (step, woken) = self.chans.send(me, pid, chan, &msg, bad);
        if let Some(w) = woken {
            if w.result.is_ok() {
                // Delivered into the waiting receiver's buffer.
                let (rtid, rpid, rbuf) = receiver.ok_or_else(|| model_err("delivery without a receiver"))?;
                let h = self.deliver_to(rpid, rbuf, &data);
                self.got.insert(rtid, h);
            }
            self.events.push_back(Ev::Wake(w));
        }
        match step {
            PStep::Done(Ok(_)) => match then {
                Some((reply, rbuf, cap)) => self.sys_recv(pid, reply, rbuf, cap),
                None => ret(0),
            },
            PStep::Done(Err(e)) => fail(e),
            PStep::Blocked => {
                self.sends.insert(me, (buf.clone(), len));
                Ok(Done::Blocked(Cont::Send { chan, buf, len, then }))
            }
        }
    }

    fn sys_recv(&mut self, pid: Pid, chan: u64, buf: Dst, cap: u64) -> Result<Done, Reject> {
        if (FIRST_HARNESS_CHAN..MAX_CHANNELS as u64).contains(&chan) && self.chans.chans.get(&chan).is_some_and(|c| c.receiver == pid) {
            return Err(Reject::Forbidden("receives on its own command channel"));
        }
        let me = self.tid(pid);
        // Refresh the waiting senders' messages from memory (the kernel
        // copies at the rendezvous, not when the sender queued).
        let mut pre: BTreeMap<Tid, Bytes> = BTreeMap::new();
        let mut bad_for_first = false;
        let mut first_found = false;
        let senders: Vec<(Tid, Pid, usize)> =
            self.chans.chans.get(&chan).map(|ch| ch.senders.iter().map(|s| (s.tid, s.pid, s.msg.len())).collect()).unwrap_or_default();
        let mut refreshed = Vec::new();
        for (stid, spid, _) in &senders {
            let (sbuf, slen) = self.sends.get(stid).cloned().ok_or_else(|| model_err("sender without a buffer"))?;
            let sbad = !self.src_good(*spid, &sbuf, slen)?;
            let data = if sbad { vec![Some(0); slen as usize] } else { self.src_read(*spid, &sbuf, slen) };
            if !first_found && slen <= cap && !sbad {
                first_found = true;
                bad_for_first = !self.dst_good(pid, buf, slen)?;
            }
            refreshed.push((sbad, data.iter().map(|b| b.unwrap_or(0)).collect::<Vec<u8>>()));
            pre.insert(*stid, data);
        }
        if let Some(ch) = self.chans.chans.get_mut(&chan) {
            for (o, (sbad, msg)) in ch.senders.iter_mut().zip(refreshed) {
                o.bad = sbad;
                o.msg = msg;
            }
        }
        let (step, ws) = self.chans.recv(me, pid, chan, cap as usize, bad_for_first);
        let mut delivered = None;
        for w in ws {
            if w.result == Ok(0) {
                delivered = Some(w.tid);
            }
            self.sends.remove(&w.tid);
            self.events.push_back(Ev::Wake(w));
        }
        match step {
            PStep::Done(Ok((n, from))) => {
                let stid = delivered.ok_or_else(|| model_err("a receive without its sender"))?;
                let data = pre.remove(&stid).unwrap_or_default();
                if data.len() as u64 != n {
                    return Err(model_err("delivered length"));
                }
                let h = self.deliver_to(pid, buf, &data);
                Ok(Done::Ret(Ok((n, from)), h))
            }
            PStep::Done(Err(e)) => fail(e),
            PStep::Blocked => {
                self.recvs.insert(me, (buf, cap));
                Ok(Done::Blocked(Cont::Recv { chan, buf, cap }))
            }
        }
    }

    fn sys_shm_offer(&mut self, pid: Pid, peer: u64, va: u64) -> Result<Done, Reject> {
        if peer == pid as u64 {
            return fail(Error::SelfShare);
        }
        let live = peer > 0
            && peer < MAX_PROCS
            && self.procs.procs.get(&(peer as Pid)).is_some_and(|p| matches!(p.state, PState::Alive | PState::Starting));
        if !live {
            return fail(Error::NoSuchProcess);
        }
        if let Err(e) = user_page(va) {
            return fail(e);
        }
        if !(ARENA..ARENA_END).contains(&va) && self.mm.translate(pid as usize, va).is_none() {
            return Err(Reject::Forbidden("shares a page outside the arena"));
        }
        match self.mm.offer(pid as usize, peer as usize, va) {
            Ok(s) => {
                if let ShmStatus::Offered { .. } = s {
                    if let Some((f, _)) = self.mm.translate(pid as usize, va) {
                        self.mem.remove(&f.pfn());
                    }
                }
                ret(shm_state(s))
            }
            Err(e) => fail(mm_error(e)),
        }
    }

    fn sys_mem_map(&mut self, pid: Pid, va: u64, pages: u64, prot: u64) -> Result<Done, Reject> {
        if pages == 0 || pages > MAX_MAP_PAGES || prot & !(abi::prot::WRITE | abi::prot::EXEC) != 0 {
            return fail(Error::Invalid);
        }
        let rights = Rights { write: prot & abi::prot::WRITE != 0, exec: prot & abi::prot::EXEC != 0, user: true };
        if rights.write && rights.exec {
            return fail(Error::Invalid);
        }
        if let Err(e) = user_page(va) {
            return fail(e);
        }
        let Some(end) = va.checked_add(pages * PAGE).filter(|&e| e <= USER_END) else { return fail(Error::BadAddress) };
        let c = self.container(pid);
        let mut p = va;
        while p < end {
            if self.mm.translate(pid as usize, p).is_some() {
                return fail(Error::AlreadyMapped);
            }
            p += PAGE;
        }
        let mut p = va;
        while p < end {
            let r = self.mm.alloc_page(c).and_then(|f| {
                self.mem.remove(&f.pfn());
                self.mm.map(pid as usize, p, f, rights).inspect_err(|_| {
                    let _ = self.mm.free_page(c, f);
                })
            });
            if let Err(e) = r {
                let mut q = va;
                while q < p {
                    if let Ok(f) = self.mm.unmap(pid as usize, q) {
                        let _ = self.mm.free_page(c, f);
                    }
                    q += PAGE;
                }
                return fail(mm_error(e));
            }
            p += PAGE;
        }
        ret(0)
    }

    fn sys_mem_unmap(&mut self, pid: Pid, va: u64, pages: u64) -> Result<Done, Reject> {
        if pages == 0 || pages > MAX_MAP_PAGES {
            return fail(Error::Invalid);
        }
        if let Err(e) = user_page(va) {
            return fail(e);
        }
        let Some(end) = va.checked_add(pages * PAGE).filter(|&e| e <= USER_END) else { return fail(Error::BadAddress) };
        let c = self.container(pid);
        let mut p = va;
        while p < end {
            if self.is_shared(pid, p) {
                return fail(Error::NotPermitted);
            }
            p += PAGE;
        }
        let mut p = va;
        while p < end {
            if self.mm.translate(pid as usize, p).is_none() {
                return fail(Error::NotMapped);
            }
            p += PAGE;
        }
        if va < ARENA || end > ARENA_END {
            return Err(Reject::Forbidden("unmaps the worker's own program or stack"));
        }
        let mut p = va;
        while p < end {
            let f = self.mm.unmap(pid as usize, p).map_err(model_err)?;
            self.mm.free_page(c, f).map_err(model_err)?;
            p += PAGE;
        }
        ret(0)
    }

    fn is_shared(&self, pid: Pid, va: u64) -> bool {
        (1..MAX_PROCS as usize).any(|peer| {
            matches!(self.mm.shm.status(pid as usize, peer), Ok(ShmStatus::Offered { va: v }) | Ok(ShmStatus::Ready { va: v }) if v == va)
        })
    }

    // ---- wake-ups and continuations ----

    fn drain(&mut self) -> Result<(), Reject> {
        while let Some(ev) = self.events.pop_front() {
            match ev {
                Ev::Wake(w) => {
                    let pid = *self.tids.get(&w.tid).ok_or_else(|| model_err("wake of an unknown thread"))?;
                    let Some(Run::Blocked(c)) = self.info.get(&pid).map(|p| p.run.clone()) else {
                        return Err(model_err(format!("wake of pid {pid}, which is not blocked")));
                    };
                    self.resume(pid, c, w)?;
                }
                Ev::Child(p) => {
                    if let Some(Run::Blocked(Cont::Wait { which })) = self.info.get(&p).map(|i| i.run.clone()) {
                        match self.procs.wait(p, which) {
                            WaitSpec::Reap(list) => {
                                let code = self.reap(list[0])?;
                                self.answer(p, Ok((list[0] as u64, code)), None);
                            }
                            WaitSpec::Err(e) => self.answer(p, Err(e), None),
                            WaitSpec::Blocks => {}
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn resume(&mut self, pid: Pid, c: Cont, w: Wake) -> Result<(), Reject> {
        let tid = w.tid;
        match c {
            Cont::Send { then, .. } => {
                self.sends.remove(&tid);
                match (w.result, then) {
                    (Ok(_), Some((reply, rbuf, cap))) => {
                        self.set_run(pid, Run::Idle);
                        match self.sys_recv(pid, reply, rbuf, cap)? {
                            Done::Ret(r, h) => self.answer(pid, r, h),
                            Done::Blocked(c) => self.set_run(pid, Run::Blocked(c)),
                            _ => return Err(model_err("call continuation")),
                        }
                    }
                    (r, _) => self.answer(pid, r.map(|_| (0, 0)), None),
                }
            }
            Cont::Recv { .. } => {
                self.recvs.remove(&tid);
                let h = self.got.remove(&tid).flatten();
                self.answer(pid, w.result.map(|n| (n, w.second)), if w.result.is_ok() { h } else { None });
            }
            Cont::Mutex { .. } => self.answer(pid, w.result.map(|v| (v, 0)), None),
            Cont::Cv { m, .. } => match w.result {
                Ok(_) => {
                    if self.reacquired.contains(&m) {
                        self.race = true;
                    }
                    self.reacquired.push(m);
                    match self.objs.mutex_lock(tid, m) {
                        PStep::Done(r) => self.answer(pid, r.map(|v| (v, 0)), None),
                        PStep::Blocked => self.set_run(pid, Run::Blocked(Cont::Mutex { m })),
                    }
                }
                Err(e) => self.answer(pid, Err(e), None),
            },
            Cont::Wait { .. } => return Err(model_err("a wait woken through a queue")),
        }
        Ok(())
    }

    /// init reaps every zombie child it has (it waits for any child in a loop).
    fn init_reaps(&mut self) -> Result<(), Reject> {
        loop {
            let zombies: Vec<Pid> =
                self.procs.procs.iter().filter(|(_, p)| p.parent == INIT && p.state == PState::Zombie).map(|(&pid, _)| pid).collect();
            let Some(&z) = zombies.first() else { return Ok(()) };
            self.reap(z)?;
            self.drain()?;
        }
    }

    /// The model's own invariants (the layers' plus the cross-layer ones).
    pub fn check(&self) -> Result<(), String> {
        if self.mutant == Mutant::None {
            self.mm.check().map_err(|e| e.to_string())?;
        }
        self.procs.check()?;
        for (&pid, p) in &self.info {
            if p.run != Run::Zombie && !self.mm.spaces.contains_key(&(pid as usize)) {
                return Err(format!("live pid {pid} has no space"));
            }
            let (q, u) = self.usage(p.container);
            if u > q {
                return Err(format!("pid {pid}: usage {u} above quota {q}"));
            }
        }
        Ok(())
    }
}

fn shm_state(s: ShmStatus) -> u64 {
    match s {
        ShmStatus::Dead => abi::ShmState::Dead as u64,
        ShmStatus::Offered { .. } | ShmStatus::Incoming => abi::ShmState::Pending as u64,
        ShmStatus::Ready { .. } => abi::ShmState::Ready as u64,
    }
}
