//! # abi: the system-call interface between mc2 and its user programs
//!
//! Shared by the kernel (`trap` layer) and the user runtime, so both sides
//! agree on numbers, argument order, error codes and record layouts. The
//! abstract effect of each call is documented in `docs/syscalls.md`.
//!
//! Calling convention (x86-64 `syscall`): number in `rax`, arguments in
//! `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9`; result in `rax` (a second result in
//! `rdx` where a call has one). A result `r` with `(r as i64) < 0` is an error:
//! `-r` is an [`Error`] code. The call clobbers what a C function call may
//! clobber (all caller-saved registers, SSE included), plus `rcx` and `r11`.
#![no_std]
#![forbid(unsafe_code)]

/// System-call numbers.
pub mod nr {
    pub const EXIT: u64 = 0;
    pub const SPAWN: u64 = 1;
    pub const WAIT: u64 = 2;
    pub const YIELD: u64 = 3;
    pub const SLEEP: u64 = 4;
    pub const GETPID: u64 = 5;
    pub const GETPPID: u64 = 6;
    pub const QUOTA: u64 = 7;
    pub const CONSOLE_WRITE: u64 = 8;
    pub const CONSOLE_READ: u64 = 9;
    pub const SEND: u64 = 10;
    pub const RECV: u64 = 11;
    pub const CALL: u64 = 12;
    pub const SHM_OFFER: u64 = 13;
    pub const SHM_STATUS: u64 = 14;
    pub const MUTEX_CREATE: u64 = 15;
    pub const MUTEX_LOCK: u64 = 16;
    pub const MUTEX_UNLOCK: u64 = 17;
    pub const CV_CREATE: u64 = 18;
    pub const CV_WAIT: u64 = 19;
    pub const CV_SIGNAL: u64 = 20;
    pub const CV_BROADCAST: u64 = 21;
    pub const CLOCK: u64 = 22;
    pub const MEM_MAP: u64 = 23;
    pub const MEM_UNMAP: u64 = 24;
    pub const PS: u64 = 25;
    pub const PROGRAMS: u64 = 26;
    pub const KILL: u64 = 27;
    pub const CHAN_CREATE: u64 = 28;
    pub const SYSINFO: u64 = 29;
    pub const POWEROFF: u64 = 30;
    pub const FILE_SIZE: u64 = 31;
    pub const FILE_READ: u64 = 32;
    pub const VM_CREATE: u64 = 33;
    pub const VM_MAP: u64 = 34;
    pub const VM_RUN: u64 = 35;
    pub const VM_GET_REGS: u64 = 36;
    pub const VM_SET_REGS: u64 = 37;
    pub const VM_INJECT: u64 = 38;
    pub const VM_LIST: u64 = 39;
    pub const VM_DESTROY: u64 = 40;
    /// Send and/or receive a short message carried in registers
    /// ([`SHORT_MESSAGE`](super::SHORT_MESSAGE)): rdi = channel to send on,
    /// rsi = channel to receive on (either [`NO_CHANNEL`](super::NO_CHANNEL)),
    /// rdx = length, r10, r8, r9 = the message; returns the received length
    /// in rax, the sender in rdx and the received message in r10, r8, r9.
    pub const CALL_SHORT: u64 = 41;
    /// Name a port whose byte OUTs the kernel queues for the VMM and/or
    /// whose byte INs it answers (see [`vm::POST_WRITES`](super::vm::POST_WRITES)).
    pub const VM_POST: u64 = 42;
    /// One past the highest number.
    pub const COUNT: u64 = 43;
}

/// Error codes (returned negated in `rax`). Each misuse has its own code so
/// that a caller (and the conformance checker) can tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u64)]
pub enum Error {
    /// No such system call.
    NoSys = 1,
    /// An argument is out of range or malformed.
    Invalid = 2,
    /// A user pointer/length is unmapped, not writable where it must be, or
    /// reaches into the kernel half.
    BadAddress = 3,
    /// Not page-aligned where a page address is required.
    Misaligned = 4,
    /// Physical memory is exhausted.
    NoMemory = 5,
    /// The caller's container has no quota left for this.
    QuotaExceeded = 6,
    /// No process with that id (or it has exited).
    NoSuchProcess = 7,
    /// No program of that name in the boot image.
    NoSuchProgram = 8,
    /// No channel, mutex or condition variable with that id.
    NoSuchObject = 9,
    /// A fixed-size kernel table (processes, channels, ...) is full.
    TableFull = 10,
    /// The process is not the caller's child.
    NotChild = 11,
    /// The caller has no children to wait for.
    NoChildren = 12,
    /// No such CPU, or it is not online, or it is reserved (guests).
    BadCpu = 13,
    /// The virtual range is already mapped.
    AlreadyMapped = 14,
    /// The virtual range is not mapped.
    NotMapped = 15,
    /// Sharing memory with oneself.
    SelfShare = 16,
    /// The message is longer than the receiver's buffer or the maximum.
    TooLarge = 17,
    /// The operation needs the caller to hold the mutex.
    NotOwner = 18,
    /// The caller already holds it (would deadlock).
    WouldDeadlock = 19,
    /// The peer exited while the caller waited for it.
    PeerGone = 20,
    /// The caller may not do this (e.g. kill a process that is not its descendant).
    NotPermitted = 21,
    /// The channel is the caller's own (send to self would never rendezvous).
    SelfChannel = 22,
    /// Not supported on this machine (e.g. no VT-x/SVM).
    NotSupported = 23,
    /// Object or resource busy.
    Busy = 24,
    /// The caller already holds as many channels, mutexes or condition
    /// variables as one process may ([`MAX_CHANNELS_PER_PROCESS`] and the
    /// like), or a container above the new process has as many processes
    /// below it as its process limit allows (see [`spawn_cpu`]).
    TooMany = 25,
}

impl Error {
    pub const ALL: [Error; 25] = [
        Error::NoSys,
        Error::Invalid,
        Error::BadAddress,
        Error::Misaligned,
        Error::NoMemory,
        Error::QuotaExceeded,
        Error::NoSuchProcess,
        Error::NoSuchProgram,
        Error::NoSuchObject,
        Error::TableFull,
        Error::NotChild,
        Error::NoChildren,
        Error::BadCpu,
        Error::AlreadyMapped,
        Error::NotMapped,
        Error::SelfShare,
        Error::TooLarge,
        Error::NotOwner,
        Error::WouldDeadlock,
        Error::PeerGone,
        Error::NotPermitted,
        Error::SelfChannel,
        Error::NotSupported,
        Error::Busy,
        Error::TooMany,
    ];

    pub fn code(self) -> u64 {
        self as u64
    }

    pub fn from_code(code: u64) -> Option<Error> {
        Self::ALL.iter().copied().find(|e| e.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Error::NoSys => "no such system call",
            Error::Invalid => "invalid argument",
            Error::BadAddress => "bad address",
            Error::Misaligned => "misaligned address",
            Error::NoMemory => "out of memory",
            Error::QuotaExceeded => "quota exceeded",
            Error::NoSuchProcess => "no such process",
            Error::NoSuchProgram => "no such program",
            Error::NoSuchObject => "no such object",
            Error::TableFull => "kernel table full",
            Error::NotChild => "not a child of the caller",
            Error::NoChildren => "no children",
            Error::BadCpu => "bad CPU",
            Error::AlreadyMapped => "already mapped",
            Error::NotMapped => "not mapped",
            Error::SelfShare => "sharing with oneself",
            Error::TooLarge => "too large",
            Error::NotOwner => "not the owner",
            Error::WouldDeadlock => "would deadlock",
            Error::PeerGone => "peer gone",
            Error::NotPermitted => "not permitted",
            Error::SelfChannel => "own channel",
            Error::NotSupported => "not supported",
            Error::Busy => "busy",
            Error::TooMany => "too many",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Encode a result for `rax`.
pub fn encode(r: Result<u64, Error>) -> u64 {
    match r {
        Ok(v) => v,
        Err(e) => (e.code() as i64).wrapping_neg() as u64,
    }
}

/// Decode `rax`. Values in `[-4095, -1]` (as i64) are errors, like Linux; any
/// unknown code in that range decodes as [`Error::NoSys`].
pub fn decode(rax: u64) -> Result<u64, Error> {
    let v = rax as i64;
    if (-4095..0).contains(&v) {
        Err(Error::from_code(v.unsigned_abs()).unwrap_or(Error::NoSys))
    } else {
        Ok(rax)
    }
}

/// Largest IPC message, bytes.
pub const MAX_MESSAGE: usize = 4096;
/// Largest message `CALL_SHORT` carries in registers (r10, r8, r9), bytes.
pub const SHORT_MESSAGE: usize = 8 * SHORT_WORDS;
/// Registers of a short message.
pub const SHORT_WORDS: usize = 3;
/// `CALL_SHORT`'s "no channel" (only receive, or only send).
pub const NO_CHANNEL: u64 = u64::MAX;

/// The registers of a short message of `bytes` (little-endian, zero past
/// the end; bytes past `SHORT_MESSAGE` are not carried).
pub fn short_words(bytes: &[u8]) -> [u64; SHORT_WORDS] {
    let mut w = [0u64; SHORT_WORDS];
    for (w, c) in w.iter_mut().zip(bytes.chunks(8)) {
        let mut x = [0u8; 8];
        x[..c.len()].copy_from_slice(c);
        *w = u64::from_le_bytes(x);
    }
    w
}

/// The bytes the registers of a short message hold (the message is the
/// first `length` of them).
pub fn short_bytes(words: &[u64; SHORT_WORDS]) -> [u8; SHORT_MESSAGE] {
    let mut b = [0u8; SHORT_MESSAGE];
    for (c, w) in b.chunks_exact_mut(8).zip(words) {
        c.copy_from_slice(&w.to_le_bytes());
    }
    b
}
/// Largest console write in one call, bytes.
pub const MAX_CONSOLE_WRITE: usize = 4096;
/// Program names in the boot image are at most this long.
pub const MAX_NAME: usize = 32;
/// Longest argument string `spawn` accepts (and so the longest command
/// init can be started with: a boot line that starts three Linux guests
/// after a warm-up, as `cargo xtask test-guests --long` does in Bochs,
/// needs about 300 bytes).
pub const MAX_ARGS: usize = 512;
/// Processes the kernel holds at once (pids `1..=MAX_PROCESSES`; zombies
/// not yet reaped count).
pub const MAX_PROCESSES: usize = 63;

/// Channels one process may hold at once (`chan_create` answers
/// [`Error::TooMany`] beyond it). With the mutex and CV limits below this
/// bounds what a single process can take of the kernel's tables: they are
/// sized so that they cannot fill while the process table is not full.
pub const MAX_CHANNELS_PER_PROCESS: usize = 8;
/// Channel numbers are `0..CHANNELS`: room for every process at its limit.
pub const CHANNELS: usize = (MAX_PROCESSES + 1) * MAX_CHANNELS_PER_PROCESS;
/// Mutex and condition-variable ids are `0..OBJECTS` (each kind).
pub const OBJECTS: usize = (MAX_PROCESSES + 1) * MAX_MUTEXES_PER_PROCESS;

/// Mutexes one process may hold at once.
pub const MAX_MUTEXES_PER_PROCESS: usize = 8;
/// Condition variables one process may hold at once.
pub const MAX_CVS_PER_PROCESS: usize = 8;

/// The `cpu` word of `spawn`: the CPU in the low 32 bits and, in the high
/// 32, `max_procs`, the most processes the child's subtree (the child
/// itself, its children, theirs, ...) may hold at once; 0 sets no limit of
/// its own (the limits of the containers above still apply). A spawn that
/// would take any container above the new process past its limit fails with
/// [`Error::TooMany`]. So a process can hand a program a share of the
/// process table, as it hands it a share of its pages with `quota`.
pub const fn spawn_cpu(cpu: u32, max_procs: u32) -> u64 {
    (max_procs as u64) << 32 | cpu as u64
}

/// The two halves of a `spawn` cpu word: (CPU, process limit or 0).
pub const fn spawn_cpu_parts(word: u64) -> (u64, u32) {
    (word & 0xffff_ffff, (word >> 32) as u32)
}

/// `wait` argument meaning "any child".
pub const ANY_CHILD: u64 = u64::MAX;
/// Page size.
pub const PAGE_SIZE: u64 = 4096;
/// Lowest and one-past-highest user virtual address.
pub const USER_BASE: u64 = 0x1000;
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Rights for `mem_map` (bit flags).
pub mod prot {
    pub const WRITE: u64 = 1;
    pub const EXEC: u64 = 2;
}

/// Shared-memory pair states (`shm_offer`, `shm_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ShmState {
    /// Nothing offered (or revoked).
    Dead = 0,
    /// One side offered; waiting for the peer.
    Pending = 1,
    /// Both offered: the page is mapped in both.
    Ready = 2,
}

impl ShmState {
    pub fn from_u64(v: u64) -> Option<ShmState> {
        match v {
            0 => Some(ShmState::Dead),
            1 => Some(ShmState::Pending),
            2 => Some(ShmState::Ready),
            _ => None,
        }
    }
}

/// One row of `ps` (fixed layout, little endian, 72 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub parent: u32,
    pub cpu: u32,
    /// 0 running, 1 ready, 2 blocked, 3 exited (zombie).
    pub state: u32,
    pub quota: u64,
    pub usage: u64,
    pub name: [u8; 32],
    /// Processes in its subtree now, itself included.
    pub subtree: u32,
    /// The process limit `spawn` gave its subtree (itself included), or
    /// [`NO_PROCESS_LIMIT`]: none of its own (a limit above it may apply).
    pub limit: u32,
}

/// [`ProcInfo::limit`] of a process spawned without a process limit.
pub const NO_PROCESS_LIMIT: u32 = 0;

impl ProcInfo {
    pub const SIZE: usize = 72;

    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&self.pid.to_le_bytes());
        b[4..8].copy_from_slice(&self.parent.to_le_bytes());
        b[8..12].copy_from_slice(&self.cpu.to_le_bytes());
        b[12..16].copy_from_slice(&self.state.to_le_bytes());
        b[16..24].copy_from_slice(&self.quota.to_le_bytes());
        b[24..32].copy_from_slice(&self.usage.to_le_bytes());
        b[32..64].copy_from_slice(&self.name);
        b[64..68].copy_from_slice(&self.subtree.to_le_bytes());
        b[68..72].copy_from_slice(&self.limit.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        let mut name = [0u8; 32];
        name.copy_from_slice(&b[32..64]);
        ProcInfo { pid: u32_at(0), parent: u32_at(4), cpu: u32_at(8), state: u32_at(12), quota: u64_at(16), usage: u64_at(24), name, subtree: u32_at(64), limit: u32_at(68) }
    }

    pub fn name(&self) -> &str {
        let n = self.name.iter().position(|&c| c == 0).unwrap_or(32);
        core::str::from_utf8(&self.name[..n]).unwrap_or("?")
    }
}

/// `sysinfo` record: machine-wide counters (fixed layout, 64 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SysInfo {
    pub cpus_online: u64,
    pub free_pages: u64,
    pub total_pages: u64,
    pub processes: u64,
    pub tsc_per_ms: u64,
    pub root_quota: u64,
    pub root_usage: u64,
    pub ticks: u64,
}

impl SysInfo {
    pub const SIZE: usize = 64;

    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        for (i, v) in [self.cpus_online, self.free_pages, self.total_pages, self.processes, self.tsc_per_ms, self.root_quota, self.root_usage, self.ticks]
            .iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        SysInfo { cpus_online: w(0), free_pages: w(1), total_pages: w(2), processes: w(3), tsc_per_ms: w(4), root_quota: w(5), root_usage: w(6), ticks: w(7) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_cpu_word_round_trips() {
        assert_eq!(spawn_cpu(3, 0), 3, "no limit: the plain CPU number");
        assert_eq!(spawn_cpu_parts(spawn_cpu(3, 7)), (3, 7));
        assert_eq!(spawn_cpu_parts(spawn_cpu(u32::MAX, u32::MAX)), (u64::from(u32::MAX), u32::MAX));
        // A huge CPU number keeps its low half as the CPU (a bad one).
        assert_eq!(spawn_cpu_parts(u64::MAX), (u64::from(u32::MAX), u32::MAX));
        assert!(CHANNELS >= (MAX_PROCESSES + 1) * MAX_CHANNELS_PER_PROCESS);
        assert!(OBJECTS >= (MAX_PROCESSES + 1) * MAX_MUTEXES_PER_PROCESS.max(MAX_CVS_PER_PROCESS));
    }

    #[test]
    fn error_codes_round_trip_and_are_distinct() {
        for e in Error::ALL {
            assert_eq!(decode(encode(Err(e))), Err(e));
        }
        let mut codes: [u64; 25] = Error::ALL.map(|e| e.code());
        codes.sort_unstable();
        assert!(codes.windows(2).all(|w| w[0] != w[1]));
        assert_eq!(decode(encode(Ok(12345))), Ok(12345));
        assert_eq!(decode((-999i64) as u64), Err(Error::NoSys));
    }

    #[test]
    fn records_round_trip() {
        let mut p = ProcInfo { pid: 3, parent: 1, cpu: 2, state: 1, quota: 100, usage: 7, name: [0; 32], subtree: 4, limit: 9 };
        p.name[..4].copy_from_slice(b"init");
        assert_eq!(ProcInfo::from_bytes(&p.to_bytes()), p);
        assert_eq!(p.name(), "init");
        let s = SysInfo { cpus_online: 4, free_pages: 5, total_pages: 6, processes: 7, tsc_per_ms: 8, root_quota: 9, root_usage: 10, ticks: 11 };
        assert_eq!(SysInfo::from_bytes(&s.to_bytes()), s);
    }
}

/// The boot-image program bundle: one Multiboot module holding every user
/// program (and, later, guest images) as named files.
///
/// ```text
/// 0   magic "MC2BNDL1"
/// 8   count: u32, reserved: u32
/// 16  count entries of 48 bytes: name [u8; 32] (NUL-padded), offset u64, size u64
///     (offset from the start of the bundle; file data 4 KiB aligned)
/// ```
pub mod bundle {
    pub const MAGIC: &[u8; 8] = b"MC2BNDL1";
    pub const HEADER: usize = 16;
    pub const ENTRY: usize = 48;
    pub const NAME: usize = 32;
    pub const ALIGN: usize = 4096;

    /// A file in the bundle: its name and its bytes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct File<'a> {
        pub name: &'a str,
        pub data: &'a [u8],
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum BundleError {
        BadMagic,
        /// An entry points outside the bundle, or the table is cut short.
        Truncated,
        /// A name is not UTF-8.
        BadName,
    }

    fn u32_at(b: &[u8], o: usize) -> Option<u32> {
        Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
    }
    fn u64_at(b: &[u8], o: usize) -> Option<u64> {
        Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
    }

    /// Number of files, after checking the header.
    pub fn count(b: &[u8]) -> Result<usize, BundleError> {
        if b.get(..8) != Some(MAGIC.as_slice()) {
            return Err(BundleError::BadMagic);
        }
        let n = u32_at(b, 8).ok_or(BundleError::Truncated)? as usize;
        if HEADER + n * ENTRY > b.len() {
            return Err(BundleError::Truncated);
        }
        Ok(n)
    }

    /// File `i` of the bundle.
    pub fn file(b: &[u8], i: usize) -> Result<File<'_>, BundleError> {
        if i >= count(b)? {
            return Err(BundleError::Truncated);
        }
        let e = HEADER + i * ENTRY;
        let raw = &b[e..e + NAME];
        let len = raw.iter().position(|&c| c == 0).unwrap_or(NAME);
        let name = core::str::from_utf8(&raw[..len]).map_err(|_| BundleError::BadName)?;
        let off = u64_at(b, e + NAME).ok_or(BundleError::Truncated)? as usize;
        let size = u64_at(b, e + NAME + 8).ok_or(BundleError::Truncated)? as usize;
        let end = off.checked_add(size).ok_or(BundleError::Truncated)?;
        let data = b.get(off..end).ok_or(BundleError::Truncated)?;
        Ok(File { name, data })
    }

    /// Find a file by name.
    pub fn find<'a>(b: &'a [u8], name: &str) -> Result<Option<File<'a>>, BundleError> {
        for i in 0..count(b)? {
            let f = file(b, i)?;
            if f.name == name {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }
}

/// Virtual machines: the records of the `vm_*` system calls (see
/// docs/syscalls.md). All little endian, fixed size.
pub mod vm {
    /// A segment register as the VMM sees it. `attrib` packs the
    /// descriptor's access rights as AMD's VMCB does (AMD APM Vol. 2
    /// §15.5.1): bits 0-3 type, 4 S, 5-6 DPL, 7 P, 8 AVL, 9 L, 10 D/B, 11 G.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Segment {
        pub selector: u16,
        pub attrib: u16,
        pub limit: u32,
        pub base: u64,
    }

    /// Segment order in [`Regs::seg`].
    pub const ES: usize = 0;
    pub const CS: usize = 1;
    pub const SS: usize = 2;
    pub const DS: usize = 3;
    pub const FS: usize = 4;
    pub const GS: usize = 5;
    pub const LDTR: usize = 6;
    pub const TR: usize = 7;

    /// General registers in instruction-encoding order (SDM Vol. 2 §2.1.5).
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;

    /// A vCPU's architectural state.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Regs {
        pub gpr: [u64; 16],
        pub rip: u64,
        pub rflags: u64,
        pub cr0: u64,
        pub cr2: u64,
        pub cr3: u64,
        pub cr4: u64,
        pub efer: u64,
        pub seg: [Segment; 8],
        pub gdt_base: u64,
        pub gdt_limit: u32,
        pub idt_base: u64,
        pub idt_limit: u32,
    }

    impl Regs {
        pub const SIZE: usize = 16 * 8 + 7 * 8 + 8 * 16 + 4 * 8;

        pub fn to_bytes(&self) -> [u8; Self::SIZE] {
            let mut b = [0u8; Self::SIZE];
            let mut at = 0;
            let mut put = |bytes: &[u8]| {
                b[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            };
            for r in self.gpr {
                put(&r.to_le_bytes());
            }
            for r in [self.rip, self.rflags, self.cr0, self.cr2, self.cr3, self.cr4, self.efer] {
                put(&r.to_le_bytes());
            }
            for s in self.seg {
                put(&s.selector.to_le_bytes());
                put(&s.attrib.to_le_bytes());
                put(&s.limit.to_le_bytes());
                put(&s.base.to_le_bytes());
            }
            put(&self.gdt_base.to_le_bytes());
            put(&(self.gdt_limit as u64).to_le_bytes());
            put(&self.idt_base.to_le_bytes());
            put(&(self.idt_limit as u64).to_le_bytes());
            b
        }

        pub fn from_bytes(b: &[u8; Self::SIZE]) -> Regs {
            let mut at = 0;
            let mut take = |n: usize| {
                let s = &b[at..at + n];
                at += n;
                s
            };
            let u64_ = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
            let mut r = Regs::default();
            for g in r.gpr.iter_mut() {
                *g = u64_(take(8));
            }
            r.rip = u64_(take(8));
            r.rflags = u64_(take(8));
            r.cr0 = u64_(take(8));
            r.cr2 = u64_(take(8));
            r.cr3 = u64_(take(8));
            r.cr4 = u64_(take(8));
            r.efer = u64_(take(8));
            for s in r.seg.iter_mut() {
                s.selector = u16::from_le_bytes(take(2).try_into().unwrap_or([0; 2]));
                s.attrib = u16::from_le_bytes(take(2).try_into().unwrap_or([0; 2]));
                s.limit = u32::from_le_bytes(take(4).try_into().unwrap_or([0; 4]));
                s.base = u64_(take(8));
            }
            r.gdt_base = u64_(take(8));
            r.gdt_limit = u64_(take(8)) as u32;
            r.idt_base = u64_(take(8));
            r.idt_limit = u64_(take(8)) as u32;
            r
        }
    }

    /// Why `vm_run` returned (an exit the kernel did not handle itself).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(u32)]
    pub enum ExitKind {
        /// `in`/`out` (and `ins`/`outs` with `flags & STRING`): `port`, `size`,
        /// `flags & IN`, `value` (what an OUT wrote). RIP still points at the
        /// instruction: complete an IN with `RUN_COMPLETE_IN`, an OUT with 0;
        /// the kernel then steps over it. String forms: emulate via regs.
        Io = 1,
        /// Guest-physical `value` is not mapped (or not with the access in
        /// `flags`: `WRITE`, `EXEC`). Map it and run again, or stop the VM.
        MemFault = 2,
        /// HLT (RIP already past it).
        Hlt = 3,
        /// RDMSR (`flags & IN`) or WRMSR of MSR `extra`, `value` = what was
        /// written. RIP still points at it: complete like Io (RDMSR's value in
        /// `in_value`, placed in EDX:EAX).
        Msr = 4,
        /// The guest can take an external interrupt now (requested with `RUN_WINDOW`).
        InterruptWindow = 5,
        /// `deadline` passed.
        Deadline = 6,
        /// Triple fault or shutdown: the VM cannot go on.
        Shutdown = 7,
        /// An exception the guest raised that cannot be delivered (`extra` = vector).
        Exception = 8,
        /// The hardware refused the guest state or another fatal condition
        /// (`value` = the raw VMX exit reason / SVM exit code).
        Error = 9,
        /// VMCALL/VMMCALL (`value` = RAX). RIP already past it.
        Hypercall = 10,
        /// Any other exit the kernel does not handle (`value` = raw code).
        Other = 11,
    }

    impl ExitKind {
        pub fn from_u32(v: u32) -> Option<ExitKind> {
            Some(match v {
                1 => ExitKind::Io,
                2 => ExitKind::MemFault,
                3 => ExitKind::Hlt,
                4 => ExitKind::Msr,
                5 => ExitKind::InterruptWindow,
                6 => ExitKind::Deadline,
                7 => ExitKind::Shutdown,
                8 => ExitKind::Exception,
                9 => ExitKind::Error,
                10 => ExitKind::Hypercall,
                11 => ExitKind::Other,
                _ => return None,
            })
        }
    }

    /// `Exit::flags` bits.
    pub const IN: u32 = 1;
    pub const STRING: u32 = 2;
    pub const REP: u32 = 4;
    pub const WRITE: u32 = 8;
    pub const EXEC: u32 = 16;
    /// Set on any exit after which the guest can take an external
    /// interrupt at the next entry (RFLAGS.IF set, no STI/MOV SS interrupt
    /// shadow, no event being delivered, none queued): an interrupt
    /// `vm_inject`ed now enters right away, as the CPU would accept it at
    /// this instruction boundary, with no `RUN_WINDOW` round trip.
    pub const INTERRUPTIBLE: u32 = 32;
    /// On a `Deadline` exit: the guest is still halted (the deadline ended
    /// a `RUN_HALTED` wait, not a run).
    pub const HALTED: u32 = 64;

    /// What `vm_run` reports.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Exit {
        pub kind: u32,
        pub port: u32,
        pub size: u32,
        pub flags: u32,
        pub value: u64,
        pub extra: u64,
        pub rip: u64,
        /// Exits the kernel handled itself since the last return (CPUID,
        /// external interrupts, posted I/O, ...).
        pub handled: u64,
        /// Writes to posted ports since the last return, oldest first, each
        /// `port << 8 | byte` (see [`POST_WRITES`]): apply them before
        /// this exit.
        pub posted: [u32; POST_MAX],
        pub posted_n: u32,
    }

    /// Posted writes an exit can carry; one more exits to the VMM.
    pub const POST_MAX: usize = 8;
    /// Ports a VM can have posted.
    pub const POST_PORTS: usize = 8;
    /// `vm_post` mode bits. POST_WRITES: byte OUTs to the port do not exit;
    /// the kernel queues them and hands them over with the next exit
    /// (`Exit::posted`), as long as there is room. POST_READ: byte INs of the
    /// port read `value` without an exit, until a write to any posted port
    /// is queued (then they exit until `vm_post` sets a value again). Mode 0
    /// removes the port. For device registers whose writes need no
    /// immediate answer (an 8259's mask and EOI) and whose reads are plain;
    /// a run with [`RUN_NO_POST`] lets the writes exit while they would need one.
    pub const POST_WRITES: u64 = 1;
    pub const POST_READ: u64 = 2;

    impl Exit {
        pub const SIZE: usize = 48 + 8 + 4 * POST_MAX;

        pub fn to_bytes(&self) -> [u8; Self::SIZE] {
            let mut b = [0u8; Self::SIZE];
            b[0..4].copy_from_slice(&self.kind.to_le_bytes());
            b[4..8].copy_from_slice(&self.port.to_le_bytes());
            b[8..12].copy_from_slice(&self.size.to_le_bytes());
            b[12..16].copy_from_slice(&self.flags.to_le_bytes());
            b[16..24].copy_from_slice(&self.value.to_le_bytes());
            b[24..32].copy_from_slice(&self.extra.to_le_bytes());
            b[32..40].copy_from_slice(&self.rip.to_le_bytes());
            b[40..48].copy_from_slice(&self.handled.to_le_bytes());
            b[48..52].copy_from_slice(&self.posted_n.to_le_bytes());
            for (i, w) in self.posted.iter().enumerate() {
                b[56 + 4 * i..60 + 4 * i].copy_from_slice(&w.to_le_bytes());
            }
            b
        }

        pub fn from_bytes(b: &[u8; Self::SIZE]) -> Exit {
            let u32_ = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
            let u64_ = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
            let mut posted = [0u32; POST_MAX];
            for (i, w) in posted.iter_mut().enumerate() {
                *w = u32_(56 + 4 * i);
            }
            Exit { kind: u32_(0), port: u32_(4), size: u32_(8), flags: u32_(12), value: u64_(16), extra: u64_(24), rip: u64_(32), handled: u64_(40), posted, posted_n: u32_(48) }
        }
    }

    /// `vm_run` flags.
    /// Complete the IN (or RDMSR) the last exit reported with `in_value`.
    pub const RUN_COMPLETE_IN: u64 = 1;
    /// Return with `InterruptWindow` as soon as the guest can take an interrupt.
    pub const RUN_WINDOW: u64 = 2;
    /// The guest is halted: do not enter it before `deadline` (or an
    /// injected event), then return `Deadline`.
    pub const RUN_HALTED: u64 = 4;
    /// Once the guest runs CPUID in user mode (CPL 3), let its CPUIDs
    /// through from then on instead of exiting on each (AMD SVM only; VT-x
    /// always exits on CPUID, SDM Vol. 3C §25.1.2). For a Linux guest: its
    /// kernel has read the filtered leaves while it booted, and its programs
    /// (static glibc runs some 40 CPUIDs at every start) see the processor's
    /// own, as on bare metal, each no longer a world switch.
    pub const RUN_USER_CPUID: u64 = 8;
    /// Writes to posted ports exit during this run, as if not posted: the
    /// VMM has an interrupt request waiting that such a write (an unmask,
    /// an EOI) could make deliverable at once, and must see it then.
    pub const RUN_NO_POST: u64 = 16;
    /// The vCPU has a local APIC, kept by the kernel (from the first run
    /// with this flag on, for the VM's life): x2APIC mode, enabled, with a
    /// TSC-deadline timer and KVM's paravirtual EOI, in CPUID; its MSRs and
    /// interrupts never reach the VMM. The VMM's own interrupts (an 8259's) reach the vCPU as in
    /// virtual-wire mode. A halted guest's wait (`RUN_HALTED`) also ends
    /// when the local APIC has an interrupt for it: the guest runs on,
    /// and a `Deadline` exit without [`HALTED`] says it is no longer halted.
    pub const RUN_LAPIC: u64 = 32;
    /// Every `vm_run` flag.
    pub const RUN_FLAGS: u64 = RUN_COMPLETE_IN | RUN_WINDOW | RUN_HALTED | RUN_USER_CPUID | RUN_NO_POST | RUN_LAPIC;

    /// `vm_map` rights.
    pub const MAP_WRITE: u64 = 1;
    pub const MAP_EXEC: u64 = 2;

    /// `vm_inject` kinds (VMX interruption types, SDM Vol. 3C §24.8.3).
    pub const EXTERNAL: u64 = 0;
    pub const NMI: u64 = 2;
    pub const EXCEPTION: u64 = 3;
    /// `vm_inject` error code meaning "none".
    pub const NO_ERROR_CODE: u64 = u64::MAX;

    /// One row of `vm_list`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Info {
        pub id: u32,
        pub owner: u32,
        pub cpu: u32,
        /// 0 created, 1 running (inside vm_run), 2 stopped (between runs)
        pub state: u32,
        pub guest_pages: u64,
        /// Every exit so far: those the VMM saw and those the kernel handled.
        pub exits: u64,
        /// Of those, the kernel handled, by kind (index [`HANDLED_INTERRUPT`]
        /// and on): a profile of the world switches the VMM never sees.
        pub handled: [u64; HANDLED_KINDS],
    }

    /// `Info::handled` indices: host interrupts and NMIs that ended a run
    /// of the guest;
    pub const HANDLED_INTERRUPT: usize = 0;
    /// CPUID;
    pub const HANDLED_CPUID: usize = 1;
    /// MSR accesses the kernel answers (local APIC, EFER, paravirtual EOI);
    pub const HANDLED_MSR: usize = 2;
    /// posted port accesses (`vm_post`);
    pub const HANDLED_IO: usize = 3;
    /// the rest: the kernel's own interrupt windows, control-register
    /// accesses the vendor code completes, the IRET ending a guest's NMI
    /// handler (SVM), a refused entry turned into #GP.
    pub const HANDLED_OTHER: usize = 4;
    pub const HANDLED_KINDS: usize = 5;

    impl Info {
        pub const SIZE: usize = 32 + 8 * HANDLED_KINDS;

        pub fn to_bytes(&self) -> [u8; Self::SIZE] {
            let mut b = [0u8; Self::SIZE];
            b[0..4].copy_from_slice(&self.id.to_le_bytes());
            b[4..8].copy_from_slice(&self.owner.to_le_bytes());
            b[8..12].copy_from_slice(&self.cpu.to_le_bytes());
            b[12..16].copy_from_slice(&self.state.to_le_bytes());
            b[16..24].copy_from_slice(&self.guest_pages.to_le_bytes());
            b[24..32].copy_from_slice(&self.exits.to_le_bytes());
            for (i, h) in self.handled.iter().enumerate() {
                b[32 + 8 * i..40 + 8 * i].copy_from_slice(&h.to_le_bytes());
            }
            b
        }

        pub fn from_bytes(b: &[u8; Self::SIZE]) -> Info {
            let u32_ = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
            let u64_ = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
            Info { id: u32_(0), owner: u32_(4), cpu: u32_(8), state: u32_(12), guest_pages: u64_(16), exits: u64_(24), handled: core::array::from_fn(|i| u64_(32 + 8 * i)) }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn records_round_trip() {
            let mut r = Regs { rip: 0x1234, cr0: 0x11, efer: 0x500, gdt_limit: 0x27, ..Regs::default() };
            r.gpr[RSP] = 0x7000;
            r.seg[CS] = Segment { selector: 0x1000, attrib: 0x9b, limit: 0xffff, base: 0x10000 };
            assert_eq!(Regs::from_bytes(&r.to_bytes()), r);
            let posted = [0x21ff, 0x2060, 0xa1fe, 0, 0, 0, 0, 0x4d0_01];
            let e = Exit { kind: 1, port: 0x3f8, size: 1, flags: IN, value: 7, extra: 9, rip: 0x8000, handled: 3, posted, posted_n: 3 };
            assert_eq!(Exit::from_bytes(&e.to_bytes()), e);
            let i = Info { id: 1, owner: 4, cpu: 2, state: 1, guest_pages: 512, exits: 10, handled: [1, 2, 3, 4, 5] };
            assert_eq!(Info::from_bytes(&i.to_bytes()), i);
        }
    }
}
