//! fuzz: hostile processes against the kernel.
//!
//! `fuzz CALLS [SEED] [HOSTILES] [MASK] [PLANT] [COLD]` (the master; MASK: only the call
//! numbers whose bit is set, besides unknown ones; default all; PLANT 1:
//! a canary breaks its own memory once, which the run must report; COLD 1:
//! no per-CPU guest set-up before the baseline, see [`master`]) records the machine's free
//! pages, root-container usage and process count, starts two canaries and
//! HOSTILES (default 6) hostile processes spread over the CPUs, and keeps
//! them running (replacing those that exit, fault or stay blocked) until
//! they have issued CALLS system calls in all. Then it stops everyone,
//! asks the canaries to check their memory, and compares the machine with
//! the start. Output: `FUZZ progress ...` lines, then
//! `FUZZ DONE calls=N ... ok` (status 0) or `FUZZ VIOLATION ...` lines and
//! `FUZZ DONE ... FAILED` (status 1).
//!
//! - [`hostile`]: random calls (every number up to past the last, random
//!   and hostile arguments: null, unmapped, kernel-half, non-canonical,
//!   misaligned, overlapping and end-of-user-space pointers, huge lengths,
//!   stale and forged ids); after each call it checks what it can see:
//!   a call that reads or writes through a pointer that is not its own
//!   memory must fail, no bytes it receives may carry the canary mark,
//!   its usage never exceeds its quota.
//! - [`canary`]: fills memory of every kind it has (static data, stack,
//!   pages from `mem_map`, a page offered for sharing) with a secret
//!   pattern marked by a 64-bit magic, and verifies all of it whenever the
//!   master asks (and once more at the end).
//! - [`bomb`]: `fuzz bomb spawn|alloc|ipc`, the exhaustion bombs.
//! - `fuzz nap MS`, `fuzz tick CHAN`, `fuzz vmwarm`: the short-lived
//!   children hostiles may start, the master's clock, and a process that
//!   sets its CPU up for guests before the master records the machine.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod bomb;
mod canary;
mod hostile;
mod master;

use rt::text::parse_u64;

/// Marks every canary word (hostiles look for it in all they receive).
pub const MAGIC: u64 = 0x4341_4e41_5259_2a21;
/// Where canaries map their pages (the same in every process of this program).
pub const CANARY_VA: u64 = 0x6000_0000;
pub const CANARY_PAGES: u64 = 8;

/// Messages to the master (little-endian u64 words).
pub const MSG_PROGRESS: u64 = 0x5052_4f47;
pub const MSG_CANARY: u64 = 0x4341_4e59;
pub const MSG_TICK: u64 = 0x5449_434b;
/// Canary commands.
pub const CMD_CHECK: u64 = 0x4348_4b00;
pub const CMD_STOP: u64 = 0x5354_4f50;

/// Violation codes a hostile reports.
pub const V_POINTER: u64 = 1;
pub const V_MAGIC: u64 = 2;
pub const V_QUOTA: u64 = 3;

pub fn word(m: &[u8], i: usize) -> u64 {
    m.get(i * 8..i * 8 + 8).map_or(0, |b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
}

pub fn words<const N: usize>(v: [u64; N]) -> [u8; 64] {
    let mut m = [0u8; 64];
    for (i, w) in v.iter().enumerate().take(8) {
        m[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    m
}

/// xorshift64*: the hostiles' dice.
pub struct Dice(pub u64);

impl Dice {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

fn main() -> i32 {
    let args = rt::args();
    let mut w = args.split_whitespace();
    let first = w.next();
    let w2 = args.split_whitespace().nth(1);
    let nums: alloc::vec::Vec<u64> = w.filter_map(parse_u64).collect();
    let n = |i: usize| nums.get(i).copied();
    // A hostile may spawn `fuzz` with arguments read from any of its memory,
    // which could make a copy of a hostile, canary or clock that nobody
    // ends (a suspect for the process left at the end of seed 4245). Those
    // three run only as children of the master, whose pid their arguments
    // carry.
    let master = match first {
        Some("hostile") => Some(nums.last().copied()),
        Some("canary") | Some("tick") => Some(n(1)),
        _ => None,
    };
    if let Some(m) = master {
        let parent = rt::sys::getppid().ok();
        if m.is_none() || parent != m {
            rt::println!("fuzz: {} started by pid {parent:?}, not by the master ({m:?}): not run", first.unwrap_or(""));
            return 2;
        }
    }
    match first {
        Some("hostile") => match (n(0), n(1), n(2), n(3)) {
            (Some(seed), Some(chan), Some(index), Some(mask)) => hostile::run(seed, chan, index, mask, &nums[4..]),
            _ => 2,
        },
        Some("canary") => match (n(0), n(1), n(2), n(3)) {
            (Some(secret), Some(master), Some(mchan), Some(chan)) => canary::run(secret, master, mchan, chan, n(4) == Some(1)),
            _ => 2,
        },
        Some("bomb") => bomb::run(w2.unwrap_or(""), n(0)),
        Some("vmwarm") => {
            // Set this CPU up for guests once (the kernel keeps its per-CPU
            // virtualization pages for ever) before the master's baseline.
            if let Ok(id) = rt::sys::vm_create() {
                let _ = rt::sys::vm_destroy(id);
            }
            0
        }
        Some("nap") => {
            rt::sys::sleep_ms(n(0).unwrap_or(0).min(50));
            0
        }
        Some("tick") => match n(0) {
            Some(chan) => loop {
                rt::sys::sleep_ms(10);
                if rt::sys::send(chan, &words([MSG_TICK])).is_err() {
                    return 0;
                }
            },
            None => 2,
        },
        Some(c) => match parse_u64(c) {
            Some(calls) => master::run(calls, n(0), n(1).unwrap_or(6), n(2).unwrap_or((1 << abi::nr::COUNT) - 1), n(3) == Some(1), n(4) == Some(1)),
            None => {
                rt::println!("usage: fuzz CALLS [SEED] [HOSTILES] [MASK] [PLANT] [COLD]");
                2
            }
        },
        None => {
            rt::println!("usage: fuzz CALLS [SEED] [HOSTILES] [MASK] [PLANT] [COLD]");
            2
        }
    }
}

rt::entry!(main);
