//! The monitor against a scripted fake guest: a tiny "CPU" that executes
//! a list of operations, exits where a real vCPU would, takes injected
//! interrupts only with IF set, and keeps a TSC.

use super::*;
use crate::board::Config;
use std::collections::BTreeSet;
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

const TPMS: u64 = crate::pit::PIT_HZ; // 1000 TSC ticks per PIT clock
const RAM: u64 = 8 << 20;

#[derive(Clone, Debug)]
enum Op {
    Out(u16, u8, u32),
    In(u16, u8),
    Hlt,
    Sti,
    Cli,
    /// Burn TSC ticks without exiting.
    Spin(u64),
    /// Touch guest-physical memory (write?).
    Touch(u64, bool),
    Wrmsr(u32, u64),
    Rdmsr(u32),
    Vmcall(u64, u64),
    /// REP OUTSB from DS:SI (real mode) of `len` bytes at `gpa`.
    RepOutsb(u16, u64, u64),
    /// REP INSB to ES:RDI = `linear` (ES base 0), `count` bytes.
    RepInsb(u16, u64, u64),
    /// Interrupt handler pieces: count a tick, return.
    Tick,
    Iret,
    /// Jump to `to` while fewer than `n` ticks were counted.
    LoopTicks(u64, usize),
    /// Report a raw exit (malformed ones included).
    Raw(Exit),
}

struct Fake {
    ops: Vec<Op>,
    pc: usize,
    handler: usize,
    stack: Vec<usize>,
    if_flag: bool,
    time: u64,
    ticks: u64,
    step_pending: bool,
    pending: Option<u8>,
    delivered: Vec<(u8, u64)>,
    mapped: BTreeSet<u64>,
    maps: Vec<(u64, u64)>,
    mem: Vec<u8>,
    regs: Regs,
    inputs: Vec<u64>,
    console: Vec<String>,
    notes: Vec<String>,
    halted_runs: u64,
    window_exits: u64,
    exception: Option<(u8, Option<u32>)>,
    exceptions: Vec<(u8, Option<u32>, u64)>,
    /// Posted ports as mc2 keeps them (`vm_post`): (port, mode, read
    /// answer, answer valid); None: the host does not support posting.
    posting: Option<Vec<(u16, u64, u8, bool)>>,
    /// Writes queued for the next exit.
    queued: Vec<u32>,
    /// I/O exits the monitor saw, by port.
    io_exits: Vec<u16>,
    /// This run has `RUN_NO_POST`.
    no_post: bool,
    /// The kernel's local APIC (`RUN_LAPIC`) ends a halt at this time (its
    /// timer's interrupt, taken by the guest without the VMM).
    lapic_wake: Option<u64>,
    /// Woken so, the guest runs: a halted wait now would be the VMM's error.
    awake: bool,
    /// Halted waits that ended at their deadline, still halted.
    halted_deadlines: u64,
}

impl Fake {
    fn new(ops: Vec<Op>, handler: usize) -> Fake {
        Fake {
            ops,
            pc: 0,
            handler,
            stack: Vec::new(),
            if_flag: false,
            time: 1_000_000,
            ticks: 0,
            step_pending: false,
            pending: None,
            delivered: Vec::new(),
            mapped: BTreeSet::new(),
            maps: Vec::new(),
            mem: vec![0; RAM as usize],
            regs: Regs::default(),
            inputs: Vec::new(),
            console: Vec::new(),
            notes: Vec::new(),
            halted_runs: 0,
            window_exits: 0,
            exception: None,
            exceptions: Vec::new(),
            posting: None,
            queued: Vec::new(),
            io_exits: Vec::new(),
            no_post: false,
            lapic_wake: None,
            awake: false,
            halted_deadlines: 0,
        }
    }

    /// A byte IN/OUT the "kernel" handles itself (posted), if it does.
    fn posted(&mut self, port: u16, size: u8, input: bool, v: u32) -> bool {
        let Some(ports) = self.posting.as_mut() else { return false };
        let Some(i) = ports.iter().position(|p| p.0 == port) else { return false };
        if size != 1 {
            return false;
        }
        if input {
            if ports[i].1 & vm::POST_READ == 0 || !ports[i].3 {
                return false;
            }
            self.inputs.push(ports[i].2 as u64);
            return true;
        }
        if ports[i].1 & vm::POST_WRITES == 0 || self.no_post || self.queued.len() == vm::POST_MAX {
            return false;
        }
        self.queued.push((port as u32) << 8 | (v & 0xff));
        for p in ports.iter_mut() {
            p.3 = false;
        }
        true
    }

    /// Where op `pc` "is": 16 bytes each from 0x1000 (CS base 0).
    fn rip_of(pc: usize) -> u64 {
        0x1000 + pc as u64 * 16
    }

    /// An exit here; `INTERRUPTIBLE` as the kernel reports it (the fake
    /// has no interrupt shadow: IF set and nothing queued).
    fn exit(&self, kind: ExitKind) -> Exit {
        let flags = if self.if_flag && self.pending.is_none() { vm::INTERRUPTIBLE } else { 0 };
        Exit { kind: kind as u32, rip: Self::rip_of(self.pc), flags, ..Exit::default() }
    }

    /// Put instruction bytes where op `pc` is, for the VMM to decode.
    fn code(&mut self, bytes: &[u8]) {
        let at = Self::rip_of(self.pc) as usize;
        self.mem[at..at + bytes.len()].copy_from_slice(bytes);
    }
}

impl Fake {
    fn run_inner(&mut self, flags: u64, deadline: u64, in_value: u64) -> Result<Exit, Error> {
        self.time += 50; // the cost of an exit
        if self.step_pending {
            if flags & vm::RUN_COMPLETE_IN != 0 {
                self.inputs.push(in_value);
            }
            self.pc += 1;
            self.step_pending = false;
        }
        if flags & vm::RUN_HALTED != 0 && self.pending.is_none() && flags & vm::RUN_LAPIC != 0 {
            assert!(!self.awake, "a halted wait for a guest its local APIC already woke");
            assert_ne!(deadline, 0, "halted without a deadline: the VMM would not see its console");
            match self.lapic_wake.filter(|&t| t <= deadline) {
                Some(t) => {
                    // The kernel injects the local APIC's interrupt and runs on.
                    self.time = self.time.max(t);
                    self.lapic_wake = None;
                    self.awake = true;
                }
                None => {
                    self.halted_runs += 1;
                    self.halted_deadlines += 1;
                    self.time = self.time.max(deadline);
                    let mut e = self.exit(ExitKind::Deadline);
                    e.flags |= vm::HALTED;
                    return Ok(e);
                }
            }
        } else if flags & vm::RUN_HALTED != 0 && self.pending.is_none() {
            assert_ne!(deadline, 0, "halted without a deadline would sleep forever");
            self.halted_runs += 1;
            self.time = self.time.max(deadline);
            return Ok(self.exit(ExitKind::Deadline));
        }
        if let Some((v, e)) = self.exception.take() {
            // "The handler" notes it and skips the instruction.
            self.exceptions.push((v, e, self.regs.cr2));
            self.pc += 1;
        }
        if let Some(v) = self.pending.take() {
            assert!(self.if_flag, "vector {v:#x} injected while the guest has IF clear");
            self.delivered.push((v, self.time));
            self.stack.push(self.pc);
            self.if_flag = false;
            self.pc = self.handler;
        }
        loop {
            if flags & vm::RUN_WINDOW != 0 && self.if_flag {
                self.window_exits += 1;
                return Ok(self.exit(ExitKind::InterruptWindow));
            }
            if deadline != 0 && self.time >= deadline {
                return Ok(self.exit(ExitKind::Deadline));
            }
            let Some(op) = self.ops.get(self.pc).cloned() else {
                return Ok(self.exit(ExitKind::Shutdown));
            };
            self.time += 1;
            let mut e = self.exit(ExitKind::Io);
            match op {
                Op::Out(port, size, v) if self.posted(port, size, false, v) => self.pc += 1,
                Op::In(port, size) if self.posted(port, size, true, 0) => self.pc += 1,
                Op::Out(port, size, v) => {
                    self.step_pending = true;
                    (e.port, e.size, e.value) = (port as u32, size as u32, v as u64);
                    return Ok(e);
                }
                Op::In(port, size) => {
                    self.step_pending = true;
                    (e.port, e.size, e.flags) = (port as u32, size as u32, vm::IN);
                    return Ok(e);
                }
                Op::Hlt => {
                    self.pc += 1;
                    return Ok(self.exit(ExitKind::Hlt));
                }
                Op::Sti => {
                    self.if_flag = true;
                    self.pc += 1;
                }
                Op::Cli => {
                    self.if_flag = false;
                    self.pc += 1;
                }
                Op::Spin(n) => {
                    let end = self.time + n;
                    if deadline != 0 && end > deadline {
                        self.ops[self.pc] = Op::Spin(end - deadline);
                        self.time = deadline;
                        return Ok(self.exit(ExitKind::Deadline));
                    }
                    self.time = end;
                    self.pc += 1;
                }
                Op::Touch(gpa, write) => {
                    if !self.mapped.contains(&(gpa >> 12)) {
                        let mut e = self.exit(ExitKind::MemFault);
                        (e.value, e.flags) = (gpa, if write { vm::WRITE } else { 0 });
                        return Ok(e);
                    }
                    self.mem[gpa as usize] = 0xaa;
                    self.pc += 1;
                }
                Op::Wrmsr(m, v) => {
                    self.step_pending = true;
                    self.code(&[0x0f, 0x30]);
                    let mut e = self.exit(ExitKind::Msr);
                    (e.extra, e.value) = (m as u64, v);
                    return Ok(e);
                }
                Op::Rdmsr(m) => {
                    self.step_pending = true;
                    let mut e = self.exit(ExitKind::Msr);
                    (e.extra, e.flags) = (m as u64, vm::IN);
                    return Ok(e);
                }
                Op::Vmcall(a, b) => {
                    self.regs.gpr[vm::RAX] = a;
                    self.regs.gpr[vm::RBX] = b;
                    self.pc += 1;
                    let mut e = self.exit(ExitKind::Hypercall);
                    e.value = a;
                    return Ok(e);
                }
                Op::RepOutsb(port, gpa, len) => {
                    self.step_pending = true;
                    self.code(&[0xf3, 0x6e]);
                    self.regs.seg[vm::DS].base = gpa & !0xf;
                    self.regs.gpr[vm::RSI] = gpa & 0xf;
                    self.regs.gpr[vm::RCX] = len;
                    (e.port, e.size, e.flags) = (port as u32, 1, vm::STRING | vm::REP);
                    return Ok(e);
                }
                Op::RepInsb(port, linear, count) => {
                    self.step_pending = true;
                    self.code(&[0xf3, 0x6c]);
                    self.regs.seg[vm::ES].base = 0;
                    self.regs.gpr[vm::RDI] = linear;
                    self.regs.gpr[vm::RCX] = count;
                    (e.port, e.size, e.flags) = (port as u32, 1, vm::IN | vm::STRING | vm::REP);
                    return Ok(e);
                }
                Op::Tick => {
                    self.ticks += 1;
                    self.pc += 1;
                }
                Op::Iret => {
                    self.pc = self.stack.pop().expect("iret without interrupt");
                    self.if_flag = true;
                }
                Op::LoopTicks(n, to) => self.pc = if self.ticks < n { to } else { self.pc + 1 },
                Op::Raw(x) => {
                    self.pc += 1;
                    return Ok(x);
                }
            }
        }
    }

}

impl Host for Fake {
    fn run(&mut self, flags: u64, deadline: u64, in_value: u64) -> Result<Exit, Error> {
        self.no_post = flags & vm::RUN_NO_POST != 0;
        let mut e = self.run_inner(flags, deadline, in_value)?;
        if e.kind == ExitKind::Io as u32 {
            self.io_exits.push(e.port as u16);
        }
        for (i, w) in self.queued.drain(..).enumerate() {
            e.posted[i] = w;
            e.posted_n += 1;
        }
        Ok(e)
    }

    fn post(&mut self, port: u16, mode: u64, value: u8) -> Result<(), Error> {
        let ports = self.posting.as_mut().ok_or(Error::NotSupported)?;
        ports.retain(|p| p.0 != port);
        if mode != 0 {
            ports.push((port, mode, value, mode & vm::POST_READ != 0));
        }
        Ok(())
    }

    fn get_regs(&mut self) -> Result<Regs, Error> {
        let mut r = self.regs;
        r.rflags = 2 | if self.if_flag { RFLAGS_IF } else { 0 };
        r.rip = Self::rip_of(self.pc);
        Ok(r)
    }

    /// As mc2 does: new registers cancel the pending completion of the
    /// last IO/MSR exit; a RIP moved on means the VMM stepped over it.
    fn set_regs(&mut self, r: &Regs) -> Result<(), Error> {
        self.regs = *r;
        self.step_pending = false;
        if r.rip != Self::rip_of(self.pc) {
            assert!(r.rip > Self::rip_of(self.pc) && r.rip < Self::rip_of(self.pc + 1), "rip {:#x} set beyond the instruction", r.rip);
            self.pc += 1;
        }
        Ok(())
    }

    fn inject(&mut self, vector: u8) -> Result<(), Error> {
        if self.pending.is_some() {
            return Err(Error::Busy);
        }
        self.pending = Some(vector);
        Ok(())
    }

    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) -> Result<(), Error> {
        assert!(self.exception.is_none());
        self.exception = Some((vector, error_code));
        Ok(())
    }

    fn map(&mut self, gpa: u64, pages: u64) -> Result<(), Error> {
        assert_eq!(gpa % CHUNK, 0);
        for p in 0..pages {
            assert!(self.mapped.insert((gpa >> 12) + p), "page {:#x} mapped twice", gpa + p * 4096);
        }
        self.maps.push((gpa, pages));
        Ok(())
    }

    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        let n = buf.len() as u64;
        if (gpa..gpa + n).step_by(1).any(|a| !self.mapped.contains(&(a >> 12))) {
            return false;
        }
        buf.copy_from_slice(&self.mem[gpa as usize..(gpa + n) as usize]);
        true
    }

    fn write(&mut self, gpa: u64, buf: &[u8]) -> bool {
        let n = buf.len() as u64;
        if (gpa..gpa + n).any(|a| !self.mapped.contains(&(a >> 12))) {
            return false;
        }
        self.mem[gpa as usize..(gpa + n) as usize].copy_from_slice(buf);
        true
    }

    fn now(&mut self) -> u64 {
        self.time
    }

    fn console(&mut self, line: &[u8]) {
        self.console.push(String::from_utf8_lossy(line).into_owned());
    }

    fn note(&mut self, msg: fmt::Arguments<'_>) {
        self.notes.push(format!("{msg}"));
    }
}

fn monitor(fake: &mut Fake, limit: Option<u64>) -> Monitor {
    let b = Board::new(&Config { tsc_per_ms: TPMS, ram_bytes: RAM, epoch_unix: 0 }, fake.time);
    let mut m = Monitor::new(b, RAM, limit, TPMS);
    m.back_range(fake, 2 << 20).unwrap();
    m
}

/// The test guest's timer phase: remap the PICs, unmask IRQ 0, PIT channel
/// 0 at 100 Hz in mode 2, `sti; hlt` until 20 ticks, then status 0.
fn timer_guest() -> (Vec<Op>, usize) {
    let div = (crate::pit::PIT_HZ / 100) as u32;
    let mut ops: Vec<Op> = [(0x20, 0x11), (0xa0, 0x11), (0x21, 0x20), (0xa1, 0x28), (0x21, 4), (0xa1, 2), (0x21, 1), (0xa1, 1), (0x21, 0xfe), (0xa1, 0xff), (0x43, 0x34), (0x40, div & 0xff), (0x40, div >> 8)]
        .iter()
        .map(|&(p, v)| Op::Out(p, 1, v))
        .collect();
    let hlt = ops.len() + 1;
    ops.extend([Op::Sti, Op::Hlt, Op::LoopTicks(20, hlt), Op::Out(0x501, 1, 0)]);
    let handler = ops.len();
    ops.extend([Op::Tick, Op::Out(0x20, 1, 0x20), Op::Iret]);
    (ops, handler)
}

#[test]
fn twenty_timer_interrupts_then_exit_status_0() {
    let (ops, handler) = timer_guest();
    let mut g = Fake::new(ops, handler);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.run(&mut g), Ok(End::Exited(0)));
    assert_eq!(g.ticks, 20);
    assert!(g.delivered.iter().all(|&(v, _)| v == 0x20), "{:?}", g.delivered);
    // Ticks arrive every 10 ms (a few exits' worth of slack).
    for w in g.delivered.windows(2) {
        let gap = w[1].1 - w[0].1;
        assert!(gap.abs_diff(10 * TPMS) < TPMS / 10, "gap {gap}");
    }
    assert!(g.halted_runs >= 19, "the halted guest waited in the kernel, {} times", g.halted_runs);
}

/// The master 8259 programmed (vectors 0x20.., only IRQ 0 unmasked) and the
/// 8254's channel 0 ticking at 1 kHz.
fn master_pic_and_1khz_pit() -> Vec<Op> {
    let div = (crate::pit::PIT_HZ / 1000) as u32;
    [(0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1), (0x21, 0xfe), (0x43, 0x34), (0x40, div & 0xff), (0x40, div >> 8)]
        .iter()
        .map(|&(p, v)| Op::Out(p, 1, v))
        .collect()
}

#[test]
fn timer_interrupts_wait_for_the_guest_to_enable_them() {
    let mut ops = master_pic_and_1khz_pit();
    // 5 ms with IF clear: the tick waits (and does not pile up).
    ops.extend([Op::Spin(5 * TPMS), Op::Sti, Op::Spin(TPMS / 10), Op::Cli, Op::Out(0x501, 1, 3)]);
    let handler = ops.len();
    ops.extend([Op::Tick, Op::Out(0x20, 1, 0x20), Op::Iret]);
    let mut g = Fake::new(ops, handler);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.run(&mut g), Ok(End::Exited(3)));
    assert_eq!(g.ticks, 1, "one edge-triggered request while masked by IF");
    assert!(g.window_exits >= 1, "delivered at an interrupt window");
}

/// A Linux-like timer handler: read the mask, mask IRQ 0, specific EOI,
/// count, unmask, return (arch/x86/kernel/i8259.c, mask_and_ack_8259A and
/// enable_8259A_irq).
fn linux_like_handler() -> [Op; 6] {
    [Op::In(0x21, 1), Op::Out(0x21, 1, 0xff), Op::Out(0x20, 1, 0x60), Op::Tick, Op::Out(0x21, 1, 0xfe), Op::Iret]
}

#[test]
fn posted_pic_writes_reach_the_pic_and_the_mask_reads_stay_right() {
    let run = |post: bool| {
        let mut ops = master_pic_and_1khz_pit();
        ops.extend([Op::Sti, Op::Spin(20 * TPMS), Op::Cli, Op::Out(0x501, 1, 0)]);
        let handler = ops.len();
        ops.extend(linux_like_handler());
        let mut g = Fake::new(ops, handler);
        g.posting = post.then(Vec::new);
        let mut m = monitor(&mut g, None);
        m.post_pic = true;
        assert_eq!(m.run(&mut g), Ok(End::Exited(0)));
        (g, m)
    };
    let (exiting, _) = run(false);
    let (posted, m) = run(true);
    // The same guest sees the same: its ticks keep coming (every EOI and
    // unmask took effect) and each mask read answered 0xfe.
    for g in [&exiting, &posted] {
        assert!(g.ticks >= 18, "{} ticks in 20 ms at 1 kHz", g.ticks);
        assert!(g.inputs.iter().all(|&v| v == 0xfe), "mask reads {:?}", g.inputs);
        assert_eq!(g.inputs.len() as u64, g.ticks);
    }
    assert_eq!(m.board.pic.plain_read(0x21), Some(0xfe));
    // Without posting each handler's four PIC accesses exit; with it none
    // does (the set-up's writes were posted too).
    let pic = |g: &Fake| g.io_exits.iter().filter(|p| matches!(p, 0x20 | 0x21)).count() as u64;
    assert!(pic(&exiting) >= 4 * exiting.ticks, "{} PIC exits", pic(&exiting));
    assert_eq!(pic(&posted), 0, "PIC exits with posting: {:?}", posted.io_exits);
    assert!(m.posted_writes >= 3 * posted.ticks, "{} writes applied", m.posted_writes);
}

#[test]
fn an_unmask_of_a_latched_request_is_not_left_queued() {
    // The PIT's one-shot fires while IRQ 0 is masked; the guest unmasks it
    // and runs on with interrupts enabled. The request is latched (IRR) and
    // no PIT deadline is left to end the run: were the unmask queued in the
    // kernel, the interrupt would wait for whatever exit came next (here
    // none before the guest's end). It must enter right after the unmask.
    let mut ops: Vec<Op> = [(0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1), (0x21, 0xff), (0x43, 0x30), (0x40, 1000 & 0xff), (0x40, 1000 >> 8)]
        .iter()
        .map(|&(p, v)| Op::Out(p, 1, v))
        .collect();
    ops.extend([Op::Sti, Op::Spin(3 * TPMS), Op::Out(0x21, 1, 0xfe), Op::Spin(5 * TPMS), Op::Cli, Op::Out(0x501, 1, 0)]);
    let handler = ops.len();
    ops.extend([Op::Tick, Op::Out(0x20, 1, 0x20), Op::Iret]);
    let mut g = Fake::new(ops, handler);
    g.posting = Some(Vec::new());
    let mut m = monitor(&mut g, None);
    m.post_pic = true;
    assert_eq!(m.run(&mut g), Ok(End::Exited(0)));
    assert_eq!(g.ticks, 1, "the one-shot's interrupt, once unmasked");
    let unmasked_at = g.delivered.first().map(|d| d.1).unwrap_or(u64::MAX);
    assert!(unmasked_at < 1_000_000 + 4 * TPMS, "delivered at {unmasked_at}, not right after the unmask");
}

#[test]
fn an_interruptible_guest_gets_its_ticks_without_window_exits() {
    let mut ops = master_pic_and_1khz_pit();
    // 10 ms of work with IF set: each tick's deadline exit says the guest
    // is interruptible, so the vector goes in at that entry.
    ops.extend([Op::Sti, Op::Spin(10 * TPMS), Op::Cli, Op::Out(0x501, 1, 0)]);
    let handler = ops.len();
    ops.extend([Op::Tick, Op::Out(0x20, 1, 0x20), Op::Iret]);
    let mut g = Fake::new(ops, handler);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.run(&mut g), Ok(End::Exited(0)));
    assert!(g.ticks >= 9, "{} ticks in 10 ms at 1 kHz", g.ticks);
    assert_eq!(g.window_exits, 0, "no interrupt-window round trips");
}

#[test]
fn console_lines_and_a_last_partial_line() {
    let mut ops: Vec<Op> = "guest: real mode\r\nbye".bytes().map(|b| Op::Out(0x3f8, 1, b as u32)).collect();
    ops.push(Op::In(0x3fd, 1));
    ops.push(Op::Out(0x501, 2, 0x100));
    let mut g = Fake::new(ops, 0);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.run(&mut g), Ok(End::Exited(0x100)));
    assert_eq!(g.console, ["guest: real mode", "bye"]);
    assert_eq!(g.inputs, [0x60], "LSR: THRE | TEMT");
}

#[test]
fn memory_above_the_initial_map_comes_on_demand_and_the_limit_stops() {
    let ops = vec![Op::Touch(0x30_0000, true), Op::Touch(0x30_1000, false), Op::Touch(RAM + 0x1000, true)];
    let mut g = Fake::new(ops, 0);
    let mut m = monitor(&mut g, None);
    assert_eq!(g.maps.len(), 32, "2 MiB in 64 KiB chunks at start");
    let end = m.run(&mut g).unwrap();
    assert_eq!(g.maps.last(), Some(&(0x30_0000, 16)));
    assert_eq!(g.mem[0x30_0000], 0xaa);
    assert_eq!(end, End::Stopped(Stop::Unmapped { gpa: RAM + 0x1000, access: Access::Write, rip: 0x1020 }));
    assert_eq!(format!("{}", Stop::Unmapped { gpa: 0x7fff_f000_0000, access: Access::Write, rip: 0x1234 }), "guest touched unmapped guest-physical 0x7ffff0000000 (write) at rip 0x1234");
}

#[test]
fn a_fault_on_backed_ram_stops_instead_of_looping() {
    let mut e = Exit { kind: ExitKind::MemFault as u32, value: 0x1000, flags: vm::EXEC, ..Exit::default() };
    e.rip = 0x1000;
    let mut g = Fake::new(vec![Op::Raw(e)], 0);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.run(&mut g), Ok(End::Stopped(Stop::Denied { gpa: 0x1000, access: Access::Execute, rip: 0x1000 })));
}

#[test]
fn halts_that_nothing_can_end() {
    let mut g = Fake::new(vec![Op::Cli, Op::Hlt], 0);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.run(&mut g), Ok(End::Stopped(Stop::Halted { rip: 0x1020 })));
    let mut g = Fake::new(vec![Op::Sti, Op::Hlt], 0);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.run(&mut g), Ok(End::Stopped(Stop::Idle { rip: 0x1020 })));
    // With a time limit the idle guest waits for it instead.
    let mut g = Fake::new(vec![Op::Sti, Op::Hlt], 0);
    let limit = g.time + 3 * TPMS;
    let mut m = monitor(&mut g, Some(limit));
    assert_eq!(m.run(&mut g), Ok(End::Stopped(Stop::TimeLimit)));
    assert!(g.time >= limit);
}

/// With the kernel's local APIC a halt with no timer of the VMM's is a
/// wait (the guest's own timer may end it), looked at every
/// `IDLE_POLL_MS`; once the kernel woke the guest, a `Deadline` exit
/// without `HALTED` means it runs (no halted wait is asked for again).
#[test]
fn a_local_apic_wakes_a_halt_the_vmm_has_no_timer_for() {
    let ops = vec![Op::Sti, Op::Hlt, Op::Spin(200 * TPMS), Op::Vmcall(0, 7)];
    let mut g = Fake::new(ops, 0);
    g.lapic_wake = Some(g.time + 120 * TPMS);
    let mut m = monitor(&mut g, None);
    m.standing_flags |= vm::RUN_LAPIC;
    assert_eq!(m.run(&mut g), Ok(End::Exited(7)));
    assert_eq!(g.halted_deadlines, 120 / IDLE_POLL_MS, "a look every {IDLE_POLL_MS} ms until the wake");
    // Without it the same halt is the end.
    let mut g = Fake::new(vec![Op::Sti, Op::Hlt, Op::Vmcall(0, 7)], 0);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.run(&mut g), Ok(End::Stopped(Stop::Idle { rip: 0x1020 })));
}

#[test]
fn a_guest_spinning_forever_meets_the_time_limit() {
    let mut g = Fake::new(vec![Op::Spin(u64::MAX / 4)], 0);
    let limit = g.time + 50 * TPMS;
    let mut m = monitor(&mut g, Some(limit));
    assert_eq!(m.run(&mut g), Ok(End::Stopped(Stop::TimeLimit)));
}

#[test]
fn msrs() {
    let ops = vec![
        Op::Wrmsr(MSR_EFER, 0x100 | 1 << 12 | 1 << 63),
        Op::Rdmsr(MSR_EFER),
        Op::Rdmsr(0x1234),
        Op::Wrmsr(0x1234, 77),
        Op::Rdmsr(0x1234),
        Op::Rdmsr(MSR_TSC),
        Op::Out(0x501, 1, 0),
    ];
    let mut g = Fake::new(ops, 0);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.run(&mut g), Ok(End::Exited(0)));
    assert_eq!(g.regs.efer, 0x100, "only LME of the bits written is writable; the VMM stepped over the WRMSR");
    assert_eq!(g.inputs[..3], [0x100, 0, 77]);
    assert!(g.inputs[3] > 1_000_000, "TSC");
    assert_eq!(g.notes.len(), 1, "one note for MSR 0x1234: {:?}", g.notes);
}

#[test]
fn hypercalls() {
    let mut g = Fake::new(vec![Op::Vmcall(5, 0), Op::Vmcall(0, 42)], 0);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.run(&mut g), Ok(End::Exited(42)));
    assert_eq!(g.regs.gpr[vm::RAX], 0, "the unknown call got -1, then the exit call set RAX 0");
}

#[test]
fn rep_outsb_in_real_mode() {
    let mut g = Fake::new(vec![Op::RepOutsb(0x3f8, 0x1_0003, 4), Op::Out(0x501, 1, 9)], 0);
    g.mapped.clear();
    let mut m = monitor(&mut g, None);
    g.mem[0x1_0003..0x1_0007].copy_from_slice(b"ok!\n");
    assert_eq!(m.run(&mut g), Ok(End::Exited(9)));
    assert_eq!(g.console, ["ok!"]);
    assert_eq!(g.regs.gpr[vm::RSI], 3 + 4);
    assert_eq!(g.regs.gpr[vm::RCX], 0);
}

#[test]
fn hostile_string_io_is_refused() {
    let mut g = Fake::new(vec![Op::RepOutsb(0x80, 0x10, 0x7fff_ffff)], 0);
    let mut m = monitor(&mut g, None);
    // 16-bit address size: RCX is masked to CX, 0xffff elements: allowed.
    assert_eq!(m.run(&mut g), Ok(End::Stopped(Stop::Shutdown { rip: 0x1010 })));
    // 64-bit mode with a huge count is refused, and so is memory outside RAM.
    let mut g = Fake::new(vec![Op::RepOutsb(0x80, 0x10, 1 << 40)], 0);
    g.regs.efer = EFER_LMA;
    g.regs.cr0 = 1;
    g.regs.seg[vm::CS].attrib = 1 << 9;
    let mut m = monitor(&mut g, None);
    assert!(matches!(m.run(&mut g), Ok(End::Stopped(Stop::StringIo { .. }))));
    let mut g = Fake::new(vec![Op::RepOutsb(0x80, RAM - 2, 4)], 0);
    g.regs.cr0 = 1;
    g.regs.seg[vm::CS].attrib = 1 << 10;
    let mut m = monitor(&mut g, None);
    match m.run(&mut g) {
        Ok(End::Stopped(Stop::StringIo { at, .. })) => assert_eq!(at, RAM),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fatal_and_malformed_exits_stop_with_a_report() {
    let x = |kind: u32, f: fn(&mut Exit)| {
        let mut e = Exit { kind, rip: 0x77, ..Exit::default() };
        f(&mut e);
        let mut g = Fake::new(vec![Op::Raw(e)], 0);
        let mut m = monitor(&mut g, None);
        match m.run(&mut g) {
            Ok(End::Stopped(s)) => s,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(x(ExitKind::Shutdown as u32, |_| {}), Stop::Shutdown { rip: 0x77 });
    assert_eq!(x(ExitKind::Exception as u32, |e| e.extra = 13), Stop::Exception { vector: 13, rip: 0x77 });
    assert_eq!(format!("{}", Stop::Exception { vector: 13, rip: 0x77 }), "exception 13 (general protection) could not be delivered, at rip 0x77");
    assert_eq!(x(ExitKind::Error as u32, |e| e.value = 33), Stop::Refused { code: 33, rip: 0x77 });
    assert_eq!(x(ExitKind::Other as u32, |e| e.value = 99), Stop::Unhandled { code: 99, rip: 0x77 });
    assert_eq!(x(1234, |_| {}), Stop::UnknownExit { kind: 1234, rip: 0x77 });
    assert!(matches!(x(ExitKind::Io as u32, |e| e.size = 3), Stop::BadExit { what: "I/O size", .. }));
    assert!(matches!(x(ExitKind::Io as u32, |e| (e.size, e.port) = (1, 0x10000)), Stop::BadExit { what: "I/O port", .. }));
    assert!(matches!(x(ExitKind::Msr as u32, |e| e.extra = 1 << 40), Stop::BadExit { what: "MSR number", .. }));
    assert_eq!(x(ExitKind::Io as u32, |e| (e.size, e.port, e.value) = (1, 0x64, 0xfe)), Stop::Reset { port: 0x64 });
    assert_eq!(x(ExitKind::MemFault as u32, |e| e.value = u64::MAX), Stop::Unmapped { gpa: u64::MAX, access: Access::Read, rip: 0x77 });
}

#[test]
fn unknown_ports_are_noted_once_each() {
    let ops = vec![Op::In(0x2f8, 1), Op::In(0x2f8, 1), Op::Out(0x2fc, 1, 0), Op::Out(0x501, 1, 0)];
    let mut g = Fake::new(ops, 0);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.run(&mut g), Ok(End::Exited(0)));
    assert_eq!(g.inputs, [0xff, 0xff]);
    assert_eq!(g.notes.len(), 2, "{:?}", g.notes);
}

#[test]
fn load_checks_bounds() {
    let mut g = Fake::new(vec![], 0);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.load(&mut g, 0x10000, b"abc"), Ok(()));
    assert_eq!(&g.mem[0x10000..0x10003], b"abc");
    assert!(m.load(&mut g, RAM - 1, b"ab").is_err());
    assert!(m.load(&mut g, u64::MAX, b"ab").is_err());
    assert_eq!(m.load(&mut g, 0x50_0000, b"x"), Ok(()), "backs RAM above the initial map");
}

#[test]
fn a_timer_faster_than_the_vmm_still_lets_the_guest_run() {
    // PIT channel 0 at its fastest (count 2: about 600 kHz) with IF clear.
    let mut ops: Vec<Op> = [(0x43, 0x34), (0x40, 2), (0x40, 0)].iter().map(|&(p, v)| Op::Out(p, 1, v)).collect();
    ops.extend([Op::Spin(20 * TPMS), Op::Out(0x501, 1, 4)]);
    let mut g = Fake::new(ops, 0);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.run(&mut g), Ok(End::Exited(4)));
    assert!(m.exits < 20 * 1000 / MIN_SLICE_US + 10, "{} exits for 20 ms", m.exits);
}

#[test]
fn notes_stop_after_a_few() {
    let mut ops: Vec<Op> = (0..20u16).map(|i| Op::In(0x1000 + i, 1)).collect();
    ops.push(Op::Out(0x501, 1, 0));
    let mut g = Fake::new(ops, 0);
    let mut m = monitor(&mut g, None);
    assert_eq!(m.run(&mut g), Ok(End::Exited(0)));
    assert_eq!(g.notes.len(), NOTES + 1, "{:?}", g.notes);
    assert!(g.notes[NOTES].contains("not reported"));
}

/// A hypervisor that reports random exits with random registers: the
/// monitor must end each run with an `End`, never panic.
struct Chaos {
    x: u64,
    steps: u64,
    mem: Vec<u8>,
    backed: BTreeSet<u64>,
}

impl Chaos {
    fn next(&mut self) -> u64 {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        self.x
    }
    fn pick(&mut self) -> u64 {
        // Mostly small or edge values, sometimes anything.
        match self.next() % 6 {
            0 => 0,
            1 => u64::MAX,
            2 => self.next() % 16,
            3 => self.next() % 0x10000,
            4 => self.next() % RAM,
            _ => self.next(),
        }
    }
}

impl Host for Chaos {
    fn run(&mut self, _flags: u64, _deadline: u64, _in_value: u64) -> Result<Exit, Error> {
        self.steps += 1;
        if self.steps > 2000 {
            return Ok(Exit { kind: ExitKind::Shutdown as u32, ..Exit::default() });
        }
        // Mostly exits the monitor survives, so that runs go deep.
        let kind = if self.next().is_multiple_of(20) { (self.next() % 13) as u32 } else { [1, 1, 1, 1, 2, 3, 4, 4, 5, 6, 10][(self.next() % 11) as usize] };
        let sane = !self.next().is_multiple_of(10);
        let size = if sane { [1, 2, 4][(self.next() % 3) as usize] } else { [0, 3, 8, u32::MAX][(self.next() % 4) as usize] };
        // Ports: mostly the devices' (and never the debug-exit port, which
        // would end the run); sometimes anything.
        let port = if sane { [0x20, 0x21, 0xa0, 0xa1, 0x40, 0x43, 0x61, 0x70, 0x71, 0x3f8, 0x3f9, 0x3fd, 0xcf8, 0xcfc, 0x80, 0x1234][(self.next() % 16) as usize] } else { self.pick() as u32 };
        let value = if kind == ExitKind::MemFault as u32 && sane { self.next() % (RAM + 0x1000) } else { self.pick() };
        // String I/O only now and then (it usually stops on junk addresses).
        let flags = self.next() as u32 & if self.next().is_multiple_of(10) { 0x1f } else { 0x19 };
        let extra = if sane { self.next() & 0xffff_ffff } else { self.pick() };
        Ok(Exit { kind, port, size, flags, value, extra, rip: self.pick(), ..Exit::default() })
    }
    fn get_regs(&mut self) -> Result<Regs, Error> {
        let mut r = Regs::default();
        for g in r.gpr.iter_mut() {
            *g = self.pick();
        }
        r.rip = self.pick();
        r.rflags = self.pick() | if !self.next().is_multiple_of(8) { RFLAGS_IF } else { 0 };
        r.cr0 = self.pick();
        r.cr3 = self.pick();
        r.cr4 = self.pick();
        r.efer = self.pick();
        for s in r.seg.iter_mut() {
            s.base = self.pick();
            s.attrib = self.next() as u16;
        }
        Ok(r)
    }
    fn set_regs(&mut self, _r: &Regs) -> Result<(), Error> {
        Ok(())
    }
    fn inject_exception(&mut self, _vector: u8, _error_code: Option<u32>) -> Result<(), Error> {
        Ok(())
    }
    fn inject(&mut self, _vector: u8) -> Result<(), Error> {
        if self.next().is_multiple_of(4) {
            Err(Error::Busy)
        } else {
            Ok(())
        }
    }
    fn map(&mut self, gpa: u64, pages: u64) -> Result<(), Error> {
        if self.next().is_multiple_of(8) {
            return Err(Error::QuotaExceeded);
        }
        for p in 0..pages {
            self.backed.insert((gpa >> 12) + p);
        }
        Ok(())
    }
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        let end = gpa.saturating_add(buf.len() as u64);
        if end > self.mem.len() as u64 || (gpa..end).any(|a| !self.backed.contains(&(a >> 12))) {
            return false;
        }
        buf.copy_from_slice(&self.mem[gpa as usize..end as usize]);
        true
    }
    fn write(&mut self, gpa: u64, buf: &[u8]) -> bool {
        let end = gpa.saturating_add(buf.len() as u64);
        if end > self.mem.len() as u64 || (gpa..end).any(|a| !self.backed.contains(&(a >> 12))) {
            return false;
        }
        self.mem[gpa as usize..end as usize].copy_from_slice(buf);
        true
    }
    fn now(&mut self) -> u64 {
        self.steps * 1000 + self.next() % 1000
    }
    fn console(&mut self, _line: &[u8]) {}
    fn note(&mut self, _msg: fmt::Arguments<'_>) {}
}

#[test]
fn random_exits_and_registers_never_crash_the_monitor() {
    let mut deep = 0;
    for seed in 1..300u64 {
        let mut h = Chaos { x: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1, steps: 0, mem: vec![0; RAM as usize], backed: BTreeSet::new() };
        // Random bytes in guest RAM, so decoding and page walks see junk.
        for i in 0..RAM as usize / 8 {
            let v = h.next();
            h.mem[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        let b = Board::new(&Config { tsc_per_ms: 1 + seed % 3, ram_bytes: RAM, epoch_unix: 0 }, 0);
        let mut m = Monitor::new(b, RAM, if seed % 2 == 0 { Some(1 << 40) } else { None }, 1 + seed % 3);
        let _ = m.back_range(&mut h, 2 << 20);
        // Start again after each stop: the board's state carries over.
        while h.steps < 2000 {
            let _ = m.run(&mut h);
        }
        if m.exits > 1000 {
            deep += 1;
        }
    }
    assert!(deep > 250, "only {deep} runs got past 1000 exits");
}

#[test]
fn string_io_into_unmapped_pages_is_a_page_fault_for_the_guest() {
    let mut g = Fake::new(vec![Op::RepInsb(0x71, 0x1f_fffe, 5), Op::Out(0x501, 1, 6)], 0);
    // Long mode: 0-2 MiB identity-mapped by one 2 MiB page, nothing else.
    g.regs.cr0 = 1 | 1 << 31;
    g.regs.cr4 = 1 << 5;
    g.regs.efer = EFER_LMA | 1 << 8;
    g.regs.cr3 = 0x8000;
    g.regs.seg[vm::CS].attrib = 1 << 9 | 0x9b;
    let mut m = monitor(&mut g, None);
    g.mem[0x8000..0x8008].copy_from_slice(&(0x9000u64 | 3).to_le_bytes());
    g.mem[0x9000..0x9008].copy_from_slice(&(0xa000u64 | 3).to_le_bytes());
    g.mem[0xa000..0xa008].copy_from_slice(&(0x83u64).to_le_bytes());
    // Bytes at 0x1ffffe and 0x1fffff go in; 0x200000 is not mapped.
    assert_eq!(m.run(&mut g), Ok(End::Exited(6)));
    assert_eq!(g.exceptions, [(14, Some(2), 0x20_0000)], "#PF, write, at the first unmapped byte");
    assert_eq!(g.regs.gpr[vm::RDI], 0x20_0000, "RDI past the two bytes done");
    assert_eq!(g.regs.gpr[vm::RCX], 3, "three to go");
}
