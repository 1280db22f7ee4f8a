//! A hostile process: `fuzz hostile SEED MASTER-CHAN INDEX MASK [PIDS...]`
//! (the call numbers whose bit is set in MASK, and unknown ones).
//!
//! Issues random system calls with random arguments for ever, reporting
//! its count to the master every 32 calls. Buffers are its static scratch
//! area (atomics: the kernel writes it, this process only reads it), or
//! addresses that are never its memory: below the first user page, in the
//! kernel half (direct map, kernel image), non-canonical, across the end
//! of user space. A call that succeeds after reading or writing through
//! such an address is a violation, as is any received byte sequence
//! carrying the canaries' magic, or a usage above the quota.
//!
//! It does not start programs that live long (only `fuzz nap`, `hello`
//! and names that do not exist), does not read valid console input, and
//! creates at most 16 objects of each kind, so that the run keeps moving.

use crate::*;
use abi::nr;
use core::sync::atomic::{AtomicU8, Ordering};
use rt::sys;

const SCRATCH_LEN: usize = 16384;
static SCRATCH: [AtomicU8; SCRATCH_LEN] = [const { AtomicU8::new(0) }; SCRATCH_LEN];

fn scratch() -> u64 {
    SCRATCH.as_ptr() as u64
}

/// Addresses outside this process's memory (USER_END - 8: any range longer
/// than 8 bytes from it runs past the end of user space).
const FORBIDDEN: [u64; 12] = [
    0,
    8,
    0xff8,
    0xffff_8000_0000_0000,
    0xffff_8000_0010_0000,
    0xffff_ffff_8000_0000,
    0xffff_ffff_8010_0000,
    0x0000_8000_0000_0000,
    0xffff_ffff_ffff_f000,
    abi::USER_END - 8,
    u64::MAX - 7,
    0x8000_0000_0000_0000,
];

/// Whether `[p, p+len)` (len > 0) is never this process's memory: below
/// the first user page, or not entirely below the end of user space.
fn forbidden(p: u64, len: u64) -> bool {
    p < abi::USER_BASE || p.checked_add(len).is_none_or(|e| e > abi::USER_END)
}

/// The kernel read from or wrote to `ptr` (length `len` > 0) and said Ok:
/// a violation if `ptr` is forbidden.
struct Verdict {
    violation: Option<u64>,
}

impl Verdict {
    fn touched(&mut self, ptr: u64, len: u64, ok: bool) {
        if ok && len > 0 && forbidden(ptr, len) {
            self.violation.get_or_insert(V_POINTER);
        }
    }
}

struct State {
    dice: Dice,
    /// Bit n set: call number n may be issued (unknown numbers always may).
    mask: u64,
    created: [u32; 4],
    pids: [u64; 8],
}

impl State {
    fn len(&mut self) -> u64 {
        match self.dice.below(10) {
            0 => 0,
            1 => 1,
            2 => 4096,
            3 => 4097,
            4 => u64::MAX,
            5 => 1 << 32,
            _ => self.dice.below(300),
        }
    }

    /// A buffer: in the scratch area (sometimes running off its end) or forbidden.
    fn ptr(&mut self, len: u64) -> u64 {
        match self.dice.below(10) {
            0..=5 => {
                let room = (SCRATCH_LEN as u64).saturating_sub(len.min(SCRATCH_LEN as u64));
                scratch() + self.dice.below(room + 1)
            }
            6 => scratch() + SCRATCH_LEN as u64 - self.dice.below(64),
            _ => FORBIDDEN[self.dice.below(FORBIDDEN.len() as u64) as usize],
        }
    }

    fn small(&mut self) -> u64 {
        match self.dice.below(8) {
            0 => u64::MAX,
            1 => 128 + self.dice.below(1000),
            2 => self.dice.next(),
            _ => self.dice.below(24),
        }
    }

    fn pid(&mut self) -> u64 {
        match self.dice.below(6) {
            0 => self.pids[self.dice.below(8) as usize],
            1 => *[0u64, 63, 64, u64::MAX].get(self.dice.below(4) as usize).unwrap_or(&0),
            _ => self.dice.below(70),
        }
    }

    fn page(&mut self) -> u64 {
        match self.dice.below(8) {
            0 => FORBIDDEN[self.dice.below(FORBIDDEN.len() as u64) as usize],
            1 => CANARY_VA + self.dice.below(16) * 4096,
            2 => 0x7000_0000 + self.dice.below(32) * 4096 + self.dice.below(2),
            _ => 0x7000_0000 + self.dice.below(32) * 4096,
        }
    }

    /// Put a short string into the scratch area; its address.
    fn text(&mut self, at: usize, s: &[u8]) -> u64 {
        for (i, &b) in s.iter().enumerate() {
            SCRATCH[at + i].store(b, Ordering::Relaxed);
        }
        scratch() + at as u64
    }

    fn may_create(&mut self, kind: usize) -> bool {
        self.created[kind] += 1;
        self.created[kind] <= 16
    }
}

/// Whether `[ptr, ptr+len)`, where it overlaps the scratch area, holds the
/// canaries' magic at any byte offset.
fn has_magic(ptr: u64, len: u64) -> bool {
    let (base, end) = (scratch(), scratch() + SCRATCH_LEN as u64);
    let lo = ptr.max(base);
    let hi = ptr.saturating_add(len).min(end);
    if lo >= hi {
        return false;
    }
    let bytes = MAGIC.to_le_bytes();
    let (lo, hi) = ((lo - base) as usize, (hi - base) as usize);
    (lo..hi.saturating_sub(7)).any(|i| SCRATCH[i].load(Ordering::Relaxed) == bytes[0] && (1..8).all(|k| SCRATCH[i + k].load(Ordering::Relaxed) == bytes[k]))
}

/// Where a successful call wrote into this process's memory.
fn written(n: u64, a: [u64; 6], rax: u64) -> Option<(u64, u64)> {
    match n {
        nr::RECV => Some((a[1], rax)),
        nr::CALL => Some((a[4], rax)),
        nr::PS => Some((a[0], rax.min(a[1] / abi::ProcInfo::SIZE as u64) * abi::ProcInfo::SIZE as u64)),
        nr::SYSINFO => Some((a[0], 64)),
        nr::PROGRAMS => Some((a[0], rax)),
        nr::FILE_READ => Some((a[3], rax)),
        nr::VM_GET_REGS => Some((a[1], a[2].min(4096))),
        nr::VM_RUN => Some((a[1], 256)),
        nr::VM_LIST => Some((a[0], rax.saturating_mul(abi::vm::Info::SIZE as u64).min(a[1]))),
        _ => None,
    }
}

pub fn run(seed: u64, master: u64, index: u64, mask: u64, pids: &[u64]) -> i32 {
    let mut st = State { dice: Dice(seed | 1), created: [0; 4], pids: [0; 8], mask };
    for (i, p) in pids.iter().take(8).enumerate() {
        st.pids[i] = *p;
    }
    st.pids[7] = sys::getpid().unwrap_or(0);
    let (mut calls, mut reported, mut violations, mut first) = (0u64, 0u64, 0u64, (0u64, 0u64));
    for (i, b) in SCRATCH.iter().enumerate() {
        b.store(i as u8, Ordering::Relaxed);
    }
    loop {
        let (n, a, mut v) = pick(&mut st);
        let (rax, rdx) = sys::raw(n, a);
        calls += 1;
        let ok = abi::decode(rax).is_ok();
        judge(n, a, rax, rdx, ok, &mut v);
        if let Some((p, len)) = written(n, a, rax).filter(|_| ok) {
            if has_magic(p, len) {
                v.violation.get_or_insert(V_MAGIC);
            }
        }
        if calls % 16 == 0 {
            if let Ok((q, u)) = sys::quota() {
                if u > q {
                    v.violation.get_or_insert(V_QUOTA);
                }
            }
        }
        if let Some(code) = v.violation {
            violations += 1;
            if first.0 == 0 {
                first = (code, n);
                rt::println!("FUZZ VIOLATION hostile {index}: code {code} after call {n} args {a:x?} -> rax {rax:#x} rdx {rdx:#x}");
            }
        }
        if calls % 32 == 0 {
            let m = words([MSG_PROGRESS, index, calls - reported, violations, first.0, first.1]);
            reported = calls;
            let _ = sys::send(master, &m);
        }
    }
}

/// Check a result against what the arguments allow.
fn judge(n: u64, a: [u64; 6], rax: u64, rdx: u64, ok: bool, v: &mut Verdict) {
    match n {
        nr::CONSOLE_WRITE => v.touched(a[0], a[1], ok),
        nr::CONSOLE_READ => v.touched(a[0], a[1].min(256), ok),
        nr::SEND => v.touched(a[1], a[2], ok),
        nr::RECV => v.touched(a[1], if ok { rax } else { 0 }, ok),
        nr::CALL => {
            v.touched(a[1], a[2], ok);
            v.touched(a[4], if ok { rax } else { 0 }, ok);
        }
        nr::PS => {
            let rec = abi::ProcInfo::SIZE as u64;
            v.touched(a[0], if a[1] >= rec && rax > 0 { rec } else { 0 }, ok)
        }
        nr::SYSINFO => v.touched(a[0], 1, ok),
        // (The length only has to be large enough: a record is copied.)
        nr::VM_GET_REGS | nr::VM_SET_REGS => v.touched(a[1], a[2].min(abi::vm::Regs::SIZE as u64), ok),
        nr::PROGRAMS => v.touched(a[0], rax, ok),
        nr::SPAWN => {
            v.touched(a[0], a[1], ok);
            v.touched(a[4], a[5], ok);
        }
        nr::SHM_OFFER => v.touched(a[1], 1, ok),
        nr::MEM_MAP | nr::MEM_UNMAP => v.touched(a[0], 1, ok),
        nr::FILE_SIZE => v.touched(a[0], a[1], ok),
        nr::FILE_READ => {
            v.touched(a[0], a[1], ok);
            v.touched(a[3], if ok { rax } else { 0 }, ok);
        }
        nr::VM_MAP => v.touched(a[2], 1, ok),
        nr::VM_RUN => v.touched(a[1], 1, ok),
        nr::VM_LIST => v.touched(a[0], if a[1] >= abi::vm::Info::SIZE as u64 && rax > 0 { abi::vm::Info::SIZE as u64 } else { 0 }, ok),
        _ => {}
    }
    let _ = rdx;
}

/// A random call: (number, arguments, verdict so far).
fn pick(st: &mut State) -> (u64, [u64; 6], Verdict) {
    let v = Verdict { violation: None };
    let n = match st.dice.below(20) {
        0 => nr::COUNT + st.dice.below(4),
        1 => *[999u64, 1 << 63, u64::MAX, 0x1_0000_0001].get(st.dice.below(4) as usize).unwrap_or(&999),
        _ => loop {
            let n = st.dice.below(nr::COUNT);
            if st.mask & (1 << n) != 0 || st.mask & ((1 << nr::COUNT) - 1) == 0 {
                break n;
            }
        },
    };
    let mut a = [st.dice.next(), st.dice.next(), st.dice.next(), st.dice.next(), st.dice.next(), st.dice.next()];
    match n {
        nr::EXIT => {
            // Rarely: leave (the master starts another).
            if !st.dice.chance(1, 3000) {
                return (nr::YIELD, a, v);
            }
            a[0] = st.dice.below(256);
        }
        nr::SPAWN => {
            let (name, args): (&[u8], &[u8]) = match st.dice.below(6) {
                0 => (b"fuzz", b"nap 3"),
                1 => (b"hello", b""),
                2 => (b"no-such-program", b""),
                3 => (b"fuzz", b"nap 0"),
                4 => (b"\xff\xfe", b""),
                _ => (b"fuzz", b"nap 1"),
            };
            a[0] = st.text(0, name);
            a[1] = name.len() as u64;
            a[4] = st.text(64, args);
            a[5] = args.len() as u64;
            if st.dice.chance(1, 4) {
                a[0] = st.ptr(8);
            }
            if st.dice.chance(1, 4) {
                a[1] = st.len();
            }
            if st.dice.chance(1, 4) {
                a[4] = st.ptr(8);
                a[5] = st.len();
            }
            a[2] = if st.dice.chance(1, 2) { 40 + st.dice.below(30) } else { st.small() };
            a[3] = st.dice.below(6);
        }
        nr::WAIT | nr::KILL | nr::SHM_STATUS => a[0] = if st.dice.chance(1, 4) { abi::ANY_CHILD } else { st.pid() },
        nr::SLEEP => a[0] = st.dice.below(3),
        nr::CONSOLE_WRITE => {
            // Good buffers hold printable text only (the console is also the
            // harness's channel), or are too long to print.
            a[1] = match st.dice.below(8) {
                0 => 4097 + st.dice.below(1 << 20),
                1 => u64::MAX,
                _ => st.dice.below(48),
            };
            a[0] = if st.dice.chance(1, 2) {
                FORBIDDEN[st.dice.below(FORBIDDEN.len() as u64) as usize]
            } else {
                st.text(1024, &[b'~'; 48])
            };
        }
        nr::CONSOLE_READ => {
            // Never a good buffer with a length: that would wait for input.
            a[0] = FORBIDDEN[st.dice.below(FORBIDDEN.len() as u64) as usize];
            a[1] = if st.dice.chance(1, 3) { 0 } else { 1 + st.dice.below(300) };
        }
        nr::SEND | nr::RECV | nr::CALL => {
            a[0] = st.small();
            a[2] = st.len();
            a[1] = st.ptr(a[2]);
            a[3] = st.small();
            a[5] = st.len();
            a[4] = if st.dice.chance(1, 4) { a[1] } else { st.ptr(a[5]) };
        }
        nr::CALL_SHORT => {
            // Channels (or none), a length around the 24-byte limit; the
            // message words stay random.
            a[0] = if st.dice.chance(1, 4) { abi::NO_CHANNEL } else { st.small() };
            a[1] = if st.dice.chance(1, 4) { abi::NO_CHANNEL } else { st.small() };
            a[2] = if st.dice.chance(1, 8) { st.dice.next() } else { st.dice.below(30) };
        }
        nr::SHM_OFFER => {
            a[0] = st.pid();
            a[1] = st.page();
        }
        nr::MUTEX_CREATE | nr::CV_CREATE | nr::CHAN_CREATE => {
            let kind = (n % 3) as usize;
            if !st.may_create(kind) {
                return (nr::GETPID, a, v);
            }
            a[0] = if st.dice.chance(1, 2) { u64::MAX } else { st.small() };
        }
        nr::MUTEX_LOCK | nr::MUTEX_UNLOCK | nr::CV_SIGNAL | nr::CV_BROADCAST => a[0] = st.small(),
        nr::CV_WAIT => {
            a[0] = st.small();
            a[1] = st.small();
        }
        nr::MEM_MAP => {
            a[0] = st.page();
            a[1] = match st.dice.below(6) {
                0 => 0,
                1 => 1 << 16,
                2 => u64::MAX,
                _ => 1 + st.dice.below(4),
            };
            a[2] = st.dice.below(5);
        }
        nr::MEM_UNMAP => {
            a[0] = st.page();
            a[1] = if st.dice.chance(1, 8) { u64::MAX } else { 1 + st.dice.below(3) };
        }
        nr::PS | nr::PROGRAMS | nr::SYSINFO => {
            let rec = if n == nr::PS { abi::ProcInfo::SIZE as u64 } else { 64 };
            a[1] = match st.dice.below(4) {
                0 => st.len(),
                1 => rec,
                _ => rec * (1 + st.dice.below(40)),
            };
            a[0] = st.ptr(a[1]);
        }
        nr::POWEROFF => a[0] = 0,
        nr::FILE_SIZE | nr::FILE_READ => {
            let name: &[u8] = if st.dice.chance(1, 2) { b"testguest.bin" } else { b"init" };
            a[0] = if st.dice.chance(3, 4) { st.text(128, name) } else { st.ptr(16) };
            a[1] = if st.dice.chance(3, 4) { name.len() as u64 } else { st.len() };
            a[2] = if st.dice.chance(1, 2) { st.dice.below(8192) } else { st.dice.next() };
            a[4] = st.len();
            a[3] = st.ptr(a[4]);
        }
        nr::VM_CREATE => {
            if !st.may_create(3) {
                return (nr::GETPPID, a, v);
            }
        }
        nr::VM_MAP => {
            a[0] = st.small();
            a[1] = st.dice.below(64) * 4096;
            a[2] = if st.dice.chance(1, 2) { scratch() & !4095 } else { st.page() };
            a[3] = 1 + st.dice.below(4);
            a[4] = st.dice.below(4);
        }
        nr::VM_RUN => {
            a[0] = st.small();
            a[1] = st.ptr(256);
            // Every flag (RUN_USER_CPUID, RUN_NO_POST, RUN_LAPIC among
            // them) and one bit beyond them.
            a[2] = st.dice.below((abi::vm::RUN_FLAGS + 1) * 2);
            // A deadline soon, so that a guest that loops still returns.
            a[3] = rt::time::rdtsc().wrapping_add(1_000_000);
        }
        nr::VM_GET_REGS | nr::VM_SET_REGS | nr::VM_LIST | nr::VM_INJECT | nr::VM_DESTROY | nr::VM_POST => {
            a[0] = st.small();
            a[2] = st.len();
            a[1] = st.ptr(a[2]);
            if n == nr::VM_LIST {
                a[1] = st.len();
                a[0] = st.ptr(a[1]);
            }
        }
        _ => {}
    }
    (n, a, v)
}
