//! The VMM's exit-handling loop, over an abstract [`Host`] (in `vmm`, the
//! `vm_*` system calls; in the tests, a scripted fake guest).
//!
//! Each turn: bring the board's interrupt lines up to date, then enter the
//! guest with `vm_run` and handle the exit it reports:
//!
//! | exit | action |
//! |---|---|
//! | `Io` | the board's port; an IN completes with `RUN_COMPLETE_IN`; string forms (INS/OUTS, REP) are emulated through the guest's segments and page tables (a page they do not map: #PF injected, as the CPU would) |
//! | `MemFault` | inside the RAM limit: back the 64 KiB chunk with fresh RAM and retry; outside: stop |
//! | `Hlt` | IF set: wait (`RUN_HALTED`) for the next timer deadline, or inject what is pending; IF clear: stop (nothing can wake it) |
//! | `InterruptWindow` | inject the PIC's vector (`pending_vector`, then `acknowledge`) |
//! | `Deadline` | nothing: the next turn's update raises IRQ 0 |
//! | `Msr` | EFER through the registers (the kernel normally handles it), the TSC read; other MSRs are remembered and read back (0 if never written), with a note the first time |
//! | `Hypercall` | RAX = 0: exit with status RBX; otherwise RAX = -1 |
//! | `Shutdown`, `Exception`, `Error`, `Other` | stop with a report |
//!
//! Interrupts: a vector the PIC has pending is injected straight away when
//! the last exit carried `INTERRUPTIBLE` (the kernel saw IF set, no STI or
//! MOV SS shadow and no event in delivery: the CPU would accept it at this
//! instruction boundary) or the guest is halted with IF set (the kernel has
//! just stepped over its HLT); otherwise the guest runs with `RUN_WINDOW`
//! and the vector is injected at the `InterruptWindow` exit. The registers
//! do not show the interrupt shadow, and an injection inside one would be
//! refused at entry. Every entry
//! passes the PIT's next IRQ 0 time as the deadline, so timer interrupts
//! arrive on time even when the guest never exits by itself.
//!
//! Nothing the guest does ends this loop other than through [`End`]: every
//! exit field is checked before use.

use crate::board::{Board, Event};
use crate::{insn, paging};
use abi::vm::{self, Exit, ExitKind, Regs};
use abi::Error;
use core::fmt;

/// Guest RAM is backed in chunks of this many bytes on first touch.
pub const CHUNK: u64 = 64 * 1024;
/// Largest guest RAM the monitor manages.
pub const MAX_RAM: u64 = 1 << 30;
const CHUNKS: usize = (MAX_RAM / CHUNK) as usize;
const PAGE: u64 = 4096;
/// Longest REP INS/OUTS emulated in one exit (elements).
pub const MAX_STRING: u64 = 1 << 16;
/// The guest runs at least this long (microseconds) between deadlines: a
/// timer programmed faster than the VMM can turn around would otherwise
/// expire before every entry and the guest would never run. Faster ticks
/// merge into one edge, as they would on a real edge-triggered IRQ line.
pub const MIN_SLICE_US: u64 = 50;
/// A guest halted with a local APIC and no timer of the VMM's: how often
/// the VMM looks at its console input meanwhile.
pub const IDLE_POLL_MS: u64 = 50;
/// Unknown ports and MSRs noted (once each) before the notes stop.
pub const NOTES: usize = 8;

const RFLAGS_IF: u64 = 1 << 9;
const RFLAGS_DF: u64 = 1 << 10;

const MSR_TSC: u32 = 0x10;
const MSR_EFER: u32 = 0xc000_0080;
/// EFER bits a guest may set through WRMSR: SCE, LME, NXE (LMA is the
/// CPU's; SVME and the rest are not offered).
const EFER_WRITABLE: u64 = 1 | 1 << 8 | 1 << 11;
const EFER_LMA: u64 = 1 << 10;

/// #PF (SDM Vol. 3A §6.15, interrupt 14) and its error-code bits.
const PF_VECTOR: u8 = 14;
const PF_WRITE: u32 = 1 << 1;
const PF_USER: u32 = 1 << 2;

/// Why a guest linear address has no guest-physical one.
enum Xlate {
    /// The guest's page tables do not map this linear address.
    PageFault(u64),
    /// Something the VMM will not do (the VM stops).
    Stop(&'static str),
}

/// What the monitor needs from the hypervisor and the VMM.
pub trait Host {
    /// `vm_run`: enter the guest until an exit.
    fn run(&mut self, flags: u64, deadline: u64, in_value: u64) -> Result<Exit, Error>;
    fn get_regs(&mut self) -> Result<Regs, Error>;
    fn set_regs(&mut self, r: &Regs) -> Result<(), Error>;
    /// Queue external interrupt `vector` for the next entry (`Busy` if
    /// one is queued already).
    fn inject(&mut self, vector: u8) -> Result<(), Error>;
    /// Queue exception `vector` (with `error_code`, if it has one) for the
    /// next entry.
    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) -> Result<(), Error>;
    /// Back guest-physical `[gpa, gpa + pages * 4096)` with zeroed RAM.
    fn map(&mut self, gpa: u64, pages: u64) -> Result<(), Error>;
    /// Copy guest RAM that [`Host::map`] backed; false if any of it is not.
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool;
    fn write(&mut self, gpa: u64, buf: &[u8]) -> bool;
    /// The TSC now.
    fn now(&mut self) -> u64;
    /// A line the guest wrote to COM1.
    fn console(&mut self, line: &[u8]);
    /// A remark of the VMM's own (unknown port, unknown MSR, ...).
    fn note(&mut self, msg: fmt::Arguments<'_>);
    /// Console input for the guest's COM1: offer waiting bytes in order to
    /// `accept` until it returns false (the UART is full); only accepted
    /// bytes are consumed. None by default.
    fn input(&mut self, accept: &mut dyn FnMut(u8) -> bool) {
        let _ = accept;
    }
    /// `vm_post`: have the kernel queue byte OUTs to `port` and/or answer
    /// its byte INs with `value` (abi::vm::POST_WRITES, POST_READ). Not
    /// supported by default: every access then exits.
    fn post(&mut self, port: u16, mode: u64, value: u8) -> Result<(), Error> {
        let _ = (port, mode, value);
        Err(Error::NotSupported)
    }
}

/// The 8259s' ports, posted when [`Monitor::post_pic`] is set: the kernel
/// queues their writes (mask, EOI, the initialization words) and answers
/// reads of the mask registers, which need no immediate answer from the
/// VMM. A Linux guest touches them four times per interrupt (read the mask,
/// mask, EOI, unmask), each otherwise a round trip through the VMM.
pub const POSTED_PIC_PORTS: [u16; 4] = [crate::pic::MASTER_CMD, crate::pic::MASTER_DATA, crate::pic::SLAVE_CMD, crate::pic::SLAVE_DATA];

/// A system call that failed (the VMM cannot go on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostError {
    pub call: &'static str,
    pub error: Error,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.call, self.error)
    }
}

fn hcall<T>(call: &'static str, r: Result<T, Error>) -> Result<T, HostError> {
    r.map_err(|error| HostError { call, error })
}

/// The kind of a guest memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Execute,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Execute => "execute",
        })
    }
}

/// Why the VMM stopped the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// An access outside guest RAM.
    Unmapped { gpa: u64, access: Access, rip: u64 },
    /// An access to RAM that is backed faulted anyway (rights).
    Denied { gpa: u64, access: Access, rip: u64 },
    /// Backing guest RAM failed (quota).
    NoMemory { gpa: u64, error: Error },
    Shutdown { rip: u64 },
    Exception { vector: u64, rip: u64 },
    Refused { code: u64, rip: u64 },
    Unhandled { code: u64, rip: u64 },
    UnknownExit { kind: u32, rip: u64 },
    /// An exit whose fields make no sense (a kernel bug).
    BadExit { what: &'static str, value: u64, rip: u64 },
    /// HLT with interrupts disabled.
    Halted { rip: u64 },
    /// HLT with interrupts enabled but nothing that could ever wake it.
    Idle { rip: u64 },
    Reset { port: u16 },
    TimeLimit,
    /// REP INS/OUTS the VMM will not emulate.
    StringIo { why: &'static str, at: u64, rip: u64 },
}

fn exception_name(v: u64) -> &'static str {
    const NAMES: [&str; 21] = [
        "divide error",
        "debug",
        "NMI",
        "breakpoint",
        "overflow",
        "bound range",
        "invalid opcode",
        "device not available",
        "double fault",
        "coprocessor segment overrun",
        "invalid TSS",
        "segment not present",
        "stack fault",
        "general protection",
        "page fault",
        "reserved",
        "x87 floating point",
        "alignment check",
        "machine check",
        "SIMD floating point",
        "virtualization",
    ];
    NAMES.get(v as usize).copied().unwrap_or("?")
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Stop::Unmapped { gpa, access, rip } => write!(f, "guest touched unmapped guest-physical {gpa:#x} ({access}) at rip {rip:#x}"),
            Stop::Denied { gpa, access, rip } => write!(f, "guest access to guest-physical {gpa:#x} ({access}) faulted although it is RAM, at rip {rip:#x}"),
            Stop::NoMemory { gpa, error } => write!(f, "cannot back guest-physical {gpa:#x} with RAM: {error} (give the VMM more quota with -q)"),
            Stop::Shutdown { rip } => write!(f, "triple fault (shutdown) at rip {rip:#x}"),
            Stop::Exception { vector, rip } => write!(f, "exception {vector} ({}) could not be delivered, at rip {rip:#x}", exception_name(vector)),
            Stop::Refused { code, rip } => write!(f, "the hardware refused the guest state (exit code {code:#x}) at rip {rip:#x}"),
            Stop::Unhandled { code, rip } => write!(f, "unhandled exit (raw code {code:#x}) at rip {rip:#x}"),
            Stop::UnknownExit { kind, rip } => write!(f, "unknown exit kind {kind} at rip {rip:#x}"),
            Stop::BadExit { what, value, rip } => write!(f, "malformed exit from the kernel: {what} {value:#x}, at rip {rip:#x}"),
            Stop::Halted { rip } => write!(f, "guest halted with interrupts disabled at rip {rip:#x}"),
            Stop::Idle { rip } => write!(f, "guest halted with interrupts enabled, but no timer is programmed and no interrupt is pending, at rip {rip:#x}"),
            Stop::Reset { port } => write!(f, "guest requested a reset (port {port:#x})"),
            Stop::TimeLimit => write!(f, "time limit reached"),
            Stop::StringIo { why, at, rip } => write!(f, "string I/O: {why} ({at:#x}), at rip {rip:#x}"),
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The guest exited with this status (debug-exit port or hypercall).
    Exited(u32),
    /// The VMM stopped the VM.
    Stopped(Stop),
}

/// The monitor: the board, guest RAM bookkeeping, and the loop's state.
pub struct Monitor {
    pub board: Board,
    ram_bytes: u64,
    /// Chunks of guest RAM backed so far.
    backed: [u64; CHUNKS / 64],
    /// Absolute TSC at which to give up, if any.
    time_limit: Option<u64>,
    /// MSRs the guest wrote that the VMM does not otherwise handle.
    msrs: [(u32, u64); 16],
    /// Distinct unknown ports and MSRs already noted.
    noted: [u32; NOTES],
    noted_len: usize,
    /// Shortest stretch a guest gets between deadlines (TSC ticks).
    min_slice: u64,
    /// [`IDLE_POLL_MS`] in TSC ticks.
    idle_poll: u64,
    /// A measuring aid (`vmm --exit-every-us`): a running guest exits to
    /// the VMM at least this often (TSC ticks; 0: only when it must), so
    /// that what one more world switch costs a real workload can be timed.
    pub exit_every: u64,
    /// Exits handled by the monitor.
    pub exits: u64,
    /// Exits the kernel handled itself meanwhile (host interrupts, CPUID,
    /// ...), as `Exit::handled` reports them.
    pub kernel_exits: u64,
    /// Of those, by kind (`abi::vm::ExitKind` as index; 0: unknown kinds).
    pub by_kind: [u64; 16],
    /// The port of the most I/O exits so far and their count (a profile's
    /// first line: which device the guest talks to most).
    pub io_ports: [(u16, u64); 8],
    /// `vm_run` flags given at every entry (`abi::vm::RUN_USER_CPUID`).
    pub standing_flags: u64,
    /// Post the 8259s' ports ([`POSTED_PIC_PORTS`]) if the kernel can.
    pub post_pic: bool,
    /// The answers the kernel holds for reads of the mask registers
    /// (master, slave), as last set with `vm_post` (None: none, reads exit).
    pic_reads: [Option<u8>; 2],
    /// Writes the kernel queued and this monitor applied.
    pub posted_writes: u64,
}

/// An exit handler's verdict.
enum Next {
    /// Enter again with these completion flags and IN value.
    Go(u64, u64),
    Halt,
    End(End),
}

impl Monitor {
    /// A monitor for `ram_bytes` of guest RAM (at most [`MAX_RAM`]; a
    /// multiple of 4 KiB), giving up at TSC `time_limit` if given, on a TSC
    /// of `tsc_per_ms` ticks per millisecond.
    pub fn new(board: Board, ram_bytes: u64, time_limit: Option<u64>, tsc_per_ms: u64) -> Monitor {
        Monitor {
            board,
            ram_bytes: (ram_bytes.min(MAX_RAM)) & !(PAGE - 1),
            backed: [0; CHUNKS / 64],
            time_limit,
            msrs: [(0, 0); 16],
            noted: [0; NOTES],
            noted_len: 0,
            min_slice: tsc_per_ms / 1000 * MIN_SLICE_US,
            idle_poll: tsc_per_ms * IDLE_POLL_MS,
            exit_every: 0,
            exits: 0,
            kernel_exits: 0,
            by_kind: [0; 16],
            io_ports: [(0, 0); 8],
            standing_flags: 0,
            post_pic: false,
            pic_reads: [None; 2],
            posted_writes: 0,
        }
    }

    /// Name the 8259s' ports for posting; false if the kernel refused.
    fn start_posting(&mut self, host: &mut dyn Host) -> bool {
        for port in POSTED_PIC_PORTS {
            if host.post(port, vm::POST_WRITES, 0).is_err() {
                for p in POSTED_PIC_PORTS {
                    let _ = host.post(p, 0, 0);
                }
                return false;
            }
        }
        self.pic_reads = [None; 2];
        true
    }

    /// Keep the kernel's answers for the mask registers equal to what the
    /// PICs would answer now (reads with a side effect, as after a poll
    /// command, exit instead).
    fn refresh_pic_reads(&mut self, host: &mut dyn Host) -> Result<(), HostError> {
        for (i, port) in [crate::pic::MASTER_DATA, crate::pic::SLAVE_DATA].into_iter().enumerate() {
            let want = self.board.pic.plain_read(port);
            if want != self.pic_reads[i] {
                let mode = vm::POST_WRITES | if want.is_some() { vm::POST_READ } else { 0 };
                hcall("vm_post", host.post(port, mode, want.unwrap_or(0)))?;
                self.pic_reads[i] = want;
            }
        }
        Ok(())
    }

    /// Apply the writes the kernel queued, in order, before the exit that
    /// carries them. Any of them made the kernel's read answers void.
    fn apply_posted(&mut self, host: &mut dyn Host, exit: &Exit) -> Result<Option<End>, HostError> {
        let n = exit.posted_n as usize;
        if n == 0 {
            return Ok(None);
        }
        if n > vm::POST_MAX {
            return Ok(Some(End::Stopped(Stop::BadExit { what: "posted write count", value: n as u64, rip: exit.rip })));
        }
        self.pic_reads = [None; 2];
        let now = host.now();
        for &w in &exit.posted[..n] {
            let (port, value) = ((w >> 8) as u16, w & 0xff);
            if !POSTED_PIC_PORTS.contains(&port) {
                return Ok(Some(End::Stopped(Stop::BadExit { what: "posted write to port", value: port as u64, rip: exit.rip })));
            }
            self.posted_writes += 1;
            if let Some(ev) = self.board.io_out(port, 1, value, now) {
                return Ok(Some(event_end(ev)));
            }
        }
        Ok(None)
    }

    pub fn ram_bytes(&self) -> u64 {
        self.ram_bytes
    }

    /// Count an I/O exit at `port` in the small port profile (the least
    /// used entry makes room for a new port).
    fn count_port(&mut self, port: u16) {
        if let Some(e) = self.io_ports.iter_mut().find(|e| e.0 == port && e.1 > 0) {
            e.1 += 1;
            return;
        }
        if let Some(e) = self.io_ports.iter_mut().min_by_key(|e| e.1) {
            *e = (port, 1);
        }
    }

    /// Guest RAM backed so far (bytes; the last chunk may be short).
    pub fn backed_bytes(&self) -> u64 {
        let chunks: u64 = self.backed.iter().map(|w| u64::from(w.count_ones())).sum();
        (chunks * CHUNK).min(self.ram_bytes)
    }

    fn is_backed(&self, chunk: usize) -> bool {
        chunk < CHUNKS && self.backed[chunk / 64] & (1 << (chunk % 64)) != 0
    }

    /// Back the chunk holding `gpa` (inside the RAM limit) with RAM.
    fn back(&mut self, host: &mut dyn Host, gpa: u64) -> Result<(), Stop> {
        let chunk = (gpa / CHUNK) as usize;
        if gpa >= self.ram_bytes || chunk >= CHUNKS {
            return Err(Stop::Unmapped { gpa, access: Access::Read, rip: 0 });
        }
        if self.is_backed(chunk) {
            return Ok(());
        }
        let start = chunk as u64 * CHUNK;
        let pages = (self.ram_bytes.min(start + CHUNK) - start) / PAGE;
        host.map(start, pages).map_err(|error| Stop::NoMemory { gpa, error })?;
        self.backed[chunk / 64] |= 1 << (chunk % 64);
        Ok(())
    }

    /// The kernel keeps a local APIC for the vCPU (`RUN_LAPIC` is among
    /// the standing flags): a halted guest may have its own timer, so a
    /// halt with no deadline of the VMM's is a wait, not the end.
    pub fn lapic(&self) -> bool {
        self.standing_flags & vm::RUN_LAPIC != 0
    }

    /// Back guest RAM `[0, bytes)` (the part mapped at start).
    pub fn back_range(&mut self, host: &mut dyn Host, bytes: u64) -> Result<(), Stop> {
        let mut gpa = 0;
        while gpa < bytes.min(self.ram_bytes) {
            self.back(host, gpa)?;
            gpa += CHUNK;
        }
        Ok(())
    }

    /// Copy `data` into guest RAM at `gpa` (backing it as needed).
    pub fn load(&mut self, host: &mut dyn Host, gpa: u64, data: &[u8]) -> Result<(), Stop> {
        let end = gpa.checked_add(data.len() as u64).filter(|&e| e <= self.ram_bytes);
        let Some(end) = end else {
            return Err(Stop::Unmapped { gpa: gpa.saturating_add(data.len() as u64), access: Access::Write, rip: 0 });
        };
        let mut at = gpa & !(CHUNK - 1);
        while at < end {
            self.back(host, at)?;
            at += CHUNK;
        }
        if !host.write(gpa, data) {
            return Err(Stop::Unmapped { gpa, access: Access::Write, rip: 0 });
        }
        Ok(())
    }

    fn flush_console(&mut self, host: &mut dyn Host) {
        self.board.uart.drain_lines(&mut |l| host.console(l));
    }

    /// Note something once per distinct `key`, for the first [`NOTES`]
    /// keys; then say once that the rest go unreported.
    fn note_once(&mut self, host: &mut dyn Host, key: u32, msg: fmt::Arguments<'_>) {
        if self.noted_len > NOTES || self.noted[..self.noted_len].contains(&key) {
            return;
        }
        if self.noted_len == NOTES {
            host.note(format_args!("more ports without devices and unknown MSRs follow; not reported"));
        } else {
            self.noted[self.noted_len] = key;
            host.note(msg);
        }
        self.noted_len += 1;
    }

    /// Run the guest until it exits or is stopped. `Err` when a system call
    /// failed (the VM is then unusable).
    pub fn run(&mut self, host: &mut dyn Host) -> Result<End, HostError> {
        let r = self.run_loop(host);
        self.flush_console(host);
        self.board.uart.flush(&mut |l| host.console(l));
        r
    }

    fn run_loop(&mut self, host: &mut dyn Host) -> Result<End, HostError> {
        let (mut flags, mut in_value) = (0u64, 0u64);
        let mut halted = false;
        // The last exit said an interrupt injected now enters at once.
        let mut interruptible = false;
        let posting = self.post_pic && self.start_posting(host);
        loop {
            let now = host.now();
            let uart = &mut self.board.uart;
            host.input(&mut |b| uart.has_room() && uart.receive(b));
            self.board.update_irqs(now);
            self.flush_console(host);
            if self.time_limit.is_some_and(|t| now >= t) {
                return Ok(End::Stopped(Stop::TimeLimit));
            }
            if posting {
                self.refresh_pic_reads(host)?;
            }
            let mut run_flags = flags | self.standing_flags;
            if let Some(v) = self.board.pending_vector() {
                if halted || interruptible {
                    // Just past its HLT (no interrupt shadow, IF was set), or
                    // the kernel said the guest can take it at this entry.
                    match host.inject(v) {
                        Ok(()) => {
                            self.board.acknowledge();
                        }
                        // One is still queued: this one waits for a window.
                        Err(Error::Busy) => run_flags |= vm::RUN_WINDOW,
                        Err(e) => return Err(HostError { call: "vm_inject", error: e }),
                    }
                    halted = false;
                } else {
                    run_flags |= vm::RUN_WINDOW;
                }
            }
            let deadline = match (self.board.next_deadline(), self.time_limit) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
            .map(|d| d.max(now.saturating_add(self.min_slice)));
            // A latched request that a PIC write could make deliverable:
            // such writes must reach the VMM at once this time.
            if posting && self.board.pic.any_request() {
                run_flags |= vm::RUN_NO_POST;
            }
            // With a local APIC the halted guest's own timer may wake it:
            // the VMM looks at its console every IDLE_POLL_MS meanwhile.
            let deadline = if halted && self.lapic() { deadline.or(Some(now.saturating_add(self.idle_poll))) } else { deadline };
            let deadline = match self.exit_every {
                0 => deadline,
                _ if halted => deadline,
                every => Some(deadline.unwrap_or(u64::MAX).min(now.saturating_add(every))),
            };
            if halted {
                let Some(_) = deadline else {
                    let rip = host.get_regs().map(|r| r.rip).unwrap_or(0);
                    return Ok(End::Stopped(Stop::Idle { rip }));
                };
                run_flags |= vm::RUN_HALTED;
            }
            let exit = hcall("vm_run", host.run(run_flags, deadline.unwrap_or(0), in_value))?;
            self.exits += 1;
            self.kernel_exits = self.kernel_exits.saturating_add(exit.handled);
            self.by_kind[if (exit.kind as usize) < 16 { exit.kind as usize } else { 0 }] += 1;
            if exit.kind == ExitKind::Io as u32 {
                self.count_port(exit.port as u16);
            }
            (flags, in_value) = (0, 0);
            if let Some(e) = self.apply_posted(host, &exit)? {
                return Ok(e);
            }
            interruptible = exit.flags & vm::INTERRUPTIBLE != 0;
            match self.handle(host, &exit)? {
                Next::Go(f, v) => (flags, in_value) = (f, v),
                Next::Halt => halted = true,
                Next::End(e) => return Ok(e),
            }
            // An exit other than Deadline means the guest ran: not halted;
            // so does a Deadline without HALTED when the local APIC may
            // have woken it (the kernel then ran it on).
            if (exit.kind != ExitKind::Deadline as u32 && exit.kind != ExitKind::Hlt as u32) || (self.lapic() && exit.kind == ExitKind::Deadline as u32 && exit.flags & vm::HALTED == 0) {
                halted = false;
            }
        }
    }

    fn handle(&mut self, host: &mut dyn Host, exit: &Exit) -> Result<Next, HostError> {
        let rip = exit.rip;
        let stop = |s: Stop| Ok(Next::End(End::Stopped(s)));
        let Some(kind) = ExitKind::from_u32(exit.kind) else {
            return stop(Stop::UnknownExit { kind: exit.kind, rip });
        };
        match kind {
            ExitKind::Io => self.io(host, exit),
            ExitKind::MemFault => {
                let gpa = exit.value;
                let access = if exit.flags & vm::WRITE != 0 {
                    Access::Write
                } else if exit.flags & vm::EXEC != 0 {
                    Access::Execute
                } else {
                    Access::Read
                };
                if gpa >= self.ram_bytes {
                    return stop(Stop::Unmapped { gpa, access, rip });
                }
                if self.is_backed((gpa / CHUNK) as usize) {
                    return stop(Stop::Denied { gpa, access, rip });
                }
                match self.back(host, gpa) {
                    Ok(()) => Ok(Next::Go(0, 0)),
                    Err(s) => stop(s),
                }
            }
            ExitKind::Hlt => {
                let r = hcall("vm_get_regs", host.get_regs())?;
                if r.rflags & RFLAGS_IF != 0 {
                    Ok(Next::Halt)
                } else {
                    stop(Stop::Halted { rip })
                }
            }
            ExitKind::Msr => self.msr(host, exit),
            ExitKind::InterruptWindow => {
                if let Some(v) = self.board.pending_vector() {
                    match host.inject(v) {
                        Ok(()) => {
                            self.board.acknowledge();
                        }
                        Err(Error::Busy) => {}
                        Err(e) => return Err(HostError { call: "vm_inject", error: e }),
                    }
                }
                Ok(Next::Go(0, 0))
            }
            ExitKind::Deadline => Ok(Next::Go(0, 0)),
            ExitKind::Shutdown => stop(Stop::Shutdown { rip }),
            ExitKind::Exception => stop(Stop::Exception { vector: exit.extra, rip }),
            ExitKind::Error => stop(Stop::Refused { code: exit.value, rip }),
            ExitKind::Other => stop(Stop::Unhandled { code: exit.value, rip }),
            ExitKind::Hypercall => {
                let mut r = hcall("vm_get_regs", host.get_regs())?;
                if exit.value == 0 {
                    return Ok(Next::End(End::Exited(r.gpr[vm::RBX] as u32)));
                }
                r.gpr[vm::RAX] = u64::MAX;
                hcall("vm_set_regs", host.set_regs(&r))?;
                Ok(Next::Go(0, 0))
            }
        }
    }

    fn io(&mut self, host: &mut dyn Host, exit: &Exit) -> Result<Next, HostError> {
        let rip = exit.rip;
        if exit.port > 0xffff {
            return Ok(Next::End(End::Stopped(Stop::BadExit { what: "I/O port", value: exit.port as u64, rip })));
        }
        if !matches!(exit.size, 1 | 2 | 4) {
            return Ok(Next::End(End::Stopped(Stop::BadExit { what: "I/O size", value: exit.size as u64, rip })));
        }
        let (port, size) = (exit.port as u16, exit.size as u8);
        let input = exit.flags & vm::IN != 0;
        if !crate::board::Board::claims(port) {
            let dir = if input { "in" } else { "out" };
            self.note_once(host, port as u32, format_args!("port {port:#x} ({dir}, {size} bytes) has no device: reads as all ones, writes ignored"));
        }
        if exit.flags & vm::STRING != 0 {
            return self.string_io(host, exit, port, size);
        }
        let now = host.now();
        if input {
            let v = self.board.io_in(port, size, now);
            return Ok(Next::Go(vm::RUN_COMPLETE_IN, v as u64));
        }
        Ok(match self.board.io_out(port, size, exit.value as u32, now) {
            Some(ev) => Next::End(event_end(ev)),
            None => Next::Go(0, 0),
        })
    }

    /// Guest-physical address of linear `lin` under `r`, backing RAM on
    /// first touch. Page-table reads see never-touched RAM as zeros.
    fn gpa_of(&mut self, host: &mut dyn Host, r: &Regs, lin: u64) -> Result<u64, Xlate> {
        let ram = self.ram_bytes;
        let gpa = {
            let backed = &self.backed;
            let mut read = |gpa: u64, buf: &mut [u8]| -> bool {
                let chunk = (gpa / CHUNK) as usize;
                if gpa.saturating_add(buf.len() as u64) > ram {
                    return false;
                }
                if chunk < CHUNKS && backed[chunk / 64] & (1 << (chunk % 64)) != 0 {
                    host.read(gpa, buf)
                } else {
                    buf.fill(0);
                    true
                }
            };
            paging::translate(r, lin, &mut read).map_err(|e| match e {
                paging::Fault::NotMapped => Xlate::PageFault(lin),
                paging::Fault::Unsupported => Xlate::Stop("5-level paging is not supported"),
            })?
        };
        if gpa >= ram {
            return Err(Xlate::Stop("a guest-physical address outside RAM"));
        }
        self.back(host, gpa).map_err(|_| Xlate::Stop("guest RAM that cannot be backed"))?;
        Ok(gpa)
    }

    /// Guest-physical addresses of the `size` bytes at linear `lin`.
    fn element_gpas(&mut self, host: &mut dyn Host, r: &Regs, lin: u64, size: u8) -> Result<[u64; 4], Xlate> {
        let mut g = [0u64; 4];
        let first = self.gpa_of(host, r, lin)?;
        let same_page = (lin & (PAGE - 1)) + size as u64 <= PAGE;
        for (i, slot) in g.iter_mut().enumerate().take(size as usize) {
            *slot = if same_page || i == 0 { first + i as u64 } else { self.gpa_of(host, r, lin.wrapping_add(i as u64))? };
        }
        Ok(g)
    }

    /// The instruction at CS:RIP (prefixes and opcode), read through the
    /// guest's segments and page tables.
    fn fetch(&mut self, host: &mut dyn Host, r: &Regs) -> Result<insn::Insn, &'static str> {
        let code = paging::address_size(r);
        let lin = paging::linear(r, vm::CS, r.rip, code);
        let mut bytes = [0u8; 15];
        let mut got = 0;
        while got < bytes.len() {
            let at = lin.wrapping_add(got as u64);
            let Ok(gpa) = self.gpa_of(host, r, at) else { break };
            let n = ((PAGE - (at & (PAGE - 1))) as usize).min(bytes.len() - got);
            if !host.read(gpa, &mut bytes[got..got + n]) {
                break;
            }
            got += n;
        }
        insn::decode(&bytes[..got], code == 8).ok_or("cannot read the instruction")
    }

    /// RIP past `insn` (wrapping like IP/EIP in 16/32-bit code).
    fn next_rip(r: &Regs, insn: &insn::Insn) -> u64 {
        let next = r.rip.wrapping_add(insn.len as u64);
        match paging::address_size(r) {
            2 => next & 0xffff,
            4 => next & 0xffff_ffff,
            _ => next,
        }
    }

    /// INS/OUTS (with or without REP): move the elements between the port
    /// and guest memory, update RSI/RDI/RCX and step RIP over the
    /// instruction (the kernel leaves string I/O entirely to the VMM). The
    /// address size and segment come from decoding the instruction: the
    /// exit does not report them.
    fn string_io(&mut self, host: &mut dyn Host, exit: &Exit, port: u16, size: u8) -> Result<Next, HostError> {
        let rip = exit.rip;
        let stop = |why: &'static str, at: u64| Ok(Next::End(End::Stopped(Stop::StringIo { why, at, rip })));
        let mut r = hcall("vm_get_regs", host.get_regs())?;
        let input = exit.flags & vm::IN != 0;
        let insn = match self.fetch(host, &r) {
            Ok(i) => i,
            Err(why) => return stop(why, r.rip),
        };
        let want = if input { [insn::INSB, insn::INSW] } else { [insn::OUTSB, insn::OUTSW] };
        if !want.contains(&insn.opcode) {
            return stop("the instruction at rip is not the INS/OUTS the exit reports, opcode", insn.opcode as u64);
        }
        let asz = match (paging::address_size(&r), insn.addr_override) {
            (2, true) => 4,
            (4, true) | (8, true) => 4,
            (a, false) => a,
            (_, true) => 2,
        };
        let mask = match asz {
            2 => 0xffff,
            4 => 0xffff_ffff,
            _ => u64::MAX,
        };
        let rep = exit.flags & vm::REP != 0 || insn.rep;
        let count = if rep { r.gpr[vm::RCX] & mask } else { 1 };
        if count > MAX_STRING {
            return stop("REP count larger than the VMM emulates", count);
        }
        let (seg, reg) = if input { (vm::ES, vm::RDI) } else { (insn.segment.unwrap_or(vm::DS), vm::RSI) };
        let mut off = r.gpr[reg];
        let step = if r.rflags & RFLAGS_DF != 0 { (size as u64).wrapping_neg() } else { size as u64 };
        for done in 0..count {
            let lin = paging::linear(&r, seg, off, asz);
            let gpas = match self.element_gpas(host, &r, lin, size) {
                Ok(g) => g,
                Err(Xlate::Stop(why)) => return stop(why, lin),
                Err(Xlate::PageFault(at)) => {
                    // As the CPU would: the elements done stay done, the
                    // registers say how far it got, RIP stays on the
                    // instruction, and the guest takes a #PF for `at`.
                    r.gpr[reg] = (r.gpr[reg] & !mask) | (off & mask);
                    if rep {
                        r.gpr[vm::RCX] = (r.gpr[vm::RCX] & !mask) | ((count - done) & mask);
                    }
                    r.cr2 = at;
                    hcall("vm_set_regs", host.set_regs(&r))?;
                    let user = (r.seg[vm::SS].attrib >> 5) & 3 == 3;
                    let error = (PF_WRITE * input as u32) | (PF_USER * user as u32);
                    hcall("vm_inject", host.inject_exception(PF_VECTOR, Some(error)))?;
                    return Ok(Next::Go(0, 0));
                }
            };
            let now = host.now();
            if input {
                let v = self.board.io_in(port, size, now);
                for (i, &g) in gpas.iter().enumerate().take(size as usize) {
                    if !host.write(g, &[(v >> (8 * i)) as u8]) {
                        return stop("guest RAM not writable", g);
                    }
                }
            } else {
                let mut v = 0u32;
                for (i, &g) in gpas.iter().enumerate().take(size as usize) {
                    let mut b = [0u8];
                    if !host.read(g, &mut b) {
                        return stop("guest RAM not readable", g);
                    }
                    v |= (b[0] as u32) << (8 * i);
                }
                if let Some(ev) = self.board.io_out(port, size, v, now) {
                    return Ok(Next::End(event_end(ev)));
                }
            }
            off = off.wrapping_add(step);
            if count > 1 {
                self.flush_console(host);
            }
        }
        r.gpr[reg] = (r.gpr[reg] & !mask) | (off & mask);
        if rep {
            r.gpr[vm::RCX] &= !mask;
        }
        r.rip = Self::next_rip(&r, &insn);
        hcall("vm_set_regs", host.set_regs(&r))?;
        Ok(Next::Go(0, 0))
    }

    fn msr(&mut self, host: &mut dyn Host, exit: &Exit) -> Result<Next, HostError> {
        let Ok(msr) = u32::try_from(exit.extra) else {
            return Ok(Next::End(End::Stopped(Stop::BadExit { what: "MSR number", value: exit.extra, rip: exit.rip })));
        };
        let read = exit.flags & vm::IN != 0;
        match msr {
            // mc2 handles EFER in the kernel; should an exit come anyway,
            // it goes through the registers (and the VMM steps over the
            // WRMSR: setting registers cancels the kernel's completion).
            MSR_EFER if read => {
                let r = hcall("vm_get_regs", host.get_regs())?;
                Ok(Next::Go(vm::RUN_COMPLETE_IN, r.efer))
            }
            MSR_EFER => {
                let mut r = hcall("vm_get_regs", host.get_regs())?;
                let insn = match self.fetch(host, &r) {
                    Ok(i) if i.opcode == insn::WRMSR => i,
                    _ => return Ok(Next::End(End::Stopped(Stop::BadExit { what: "WRMSR exit, but no WRMSR at rip", value: r.rip, rip: exit.rip }))),
                };
                r.efer = (exit.value & EFER_WRITABLE) | (r.efer & EFER_LMA);
                r.rip = Self::next_rip(&r, &insn);
                hcall("vm_set_regs", host.set_regs(&r))?;
                Ok(Next::Go(0, 0))
            }
            MSR_TSC if read => Ok(Next::Go(vm::RUN_COMPLETE_IN, host.now())),
            _ => {
                let known = self.msrs.iter().position(|&(m, _)| m == msr && m != 0);
                if read {
                    let v = known.map(|i| self.msrs[i].1).unwrap_or(0);
                    if known.is_none() {
                        self.note_once(host, 0x8000_0000 ^ msr, format_args!("rdmsr {msr:#x}: unknown MSR, reads as 0"));
                    }
                    return Ok(Next::Go(vm::RUN_COMPLETE_IN, v));
                }
                // Remembered while there is room (16 MSRs); beyond, ignored.
                if let Some(i) = known.or_else(|| self.msrs.iter().position(|&(m, _)| m == 0)) {
                    self.msrs[i] = (msr, exit.value);
                }
                if known.is_none() {
                    self.note_once(host, 0x8000_0000 ^ msr, format_args!("wrmsr {msr:#x} = {:#x}: unknown MSR, remembered without effect", exit.value));
                }
                Ok(Next::Go(0, 0))
            }
        }
    }
}

fn event_end(ev: Event) -> End {
    match ev {
        Event::Exit(s) => End::Exited(s),
        Event::Reset(port) => End::Stopped(Stop::Reset { port }),
    }
}

#[cfg(test)]
mod tests;
