//! Exhaustion bombs: `fuzz bomb spawn|alloc|ipc`. Each runs until it is
//! killed, pressing on its container's quota (and on the kernel's tables)
//! for ever; the harness checks that it stays inside the quota and that the
//! shell still answers meanwhile. Each bomb prints one `BOMB <kind>` line
//! when the kernel first refuses it, so the harness knows the limit was
//! reached. Children of a bomb end themselves once orphaned (the harness
//! kills the bomb's first process only).
//!
//! - spawn: every process spawns children (`fuzz bomb spawn-child`, random
//!   quotas of 48..=111 pages, on every CPU) as fast as it can, retrying
//!   after each refusal.
//! - alloc: maps pages one at a time until refused, then keeps trying, and
//!   keeps unmapping and remapping a few.
//! - ipc: three senders on other CPUs flood the bomb's channel with 64-byte
//!   messages (blocking when it is full); the bomb takes one message in 16
//!   ticks' worth of yields, so the senders stay blocked most of the time.

use crate::*;
use alloc::format;
use rt::{println, proc, sys};

const ALLOC_VA: u64 = 0x4000_0000;

fn orphaned() -> bool {
    sys::getppid().is_ok_and(|p| p == 1)
}

pub fn run(kind: &str, arg: Option<u64>) -> i32 {
    match kind {
        "spawn" => spawn(true),
        "spawn-child" => spawn(false),
        "alloc" => alloc(),
        "ipc" => ipc(),
        "ipc-send" => ipc_send(arg.unwrap_or(u64::MAX)),
        _ => {
            println!("usage: fuzz bomb spawn|alloc|ipc");
            2
        }
    }
}

fn spawn(root: bool) -> i32 {
    let cpus = proc::cpus().unwrap_or(1);
    let mut dice = Dice(rt::time::rdtsc() | 1);
    let mut made = 0u64;
    // Error codes seen so far (bit per code).
    let mut seen = 0u64;
    loop {
        if !root && orphaned() {
            return 0;
        }
        match sys::spawn("fuzz", 48 + dice.below(64), dice.below(cpus), "bomb spawn-child") {
            Ok(_) => made += 1,
            Err(e) => {
                // Each kind of refusal once: a child's quota too small for
                // the program, the bomb's quota, its process limit, ...
                let bit = 1u64 << (e.code() & 63);
                if root && seen & bit == 0 {
                    let first = if seen == 0 { "first refusal" } else { "new refusal" };
                    println!("BOMB spawn: {first} after {made} children: {e}");
                }
                seen |= bit;
                sys::sleep_ms(1);
            }
        }
    }
}

fn alloc() -> i32 {
    let mut pages = 0u64;
    let mut refused = false;
    loop {
        match sys::mem_map(ALLOC_VA + pages * abi::PAGE_SIZE, 1, abi::prot::WRITE) {
            Ok(_) => pages += 1,
            Err(e) => {
                if !refused {
                    refused = true;
                    println!("BOMB alloc: first refusal after {pages} pages: {e}");
                }
                // Churn: give a page back and take it again.
                if pages > 0 {
                    let va = ALLOC_VA + (pages - 1) * abi::PAGE_SIZE;
                    let _ = sys::mem_unmap(va, 1);
                    if sys::mem_map(va, 1, abi::prot::WRITE).is_err() {
                        pages -= 1;
                    }
                }
                sys::yield_now();
            }
        }
    }
}

fn ipc() -> i32 {
    let chan = match sys::chan_create(u64::MAX) {
        Ok(c) => c,
        Err(e) => {
            println!("BOMB ipc: chan_create: {e}");
            return 1;
        }
    };
    let cpus = proc::cpus().unwrap_or(1);
    for i in 0..3 {
        if let Err(e) = sys::spawn("fuzz", 64, (i + 1) % cpus, &format!("bomb ipc-send {chan}")) {
            println!("BOMB ipc: cannot start sender {i}: {e}");
        }
    }
    let mut buf = [0u8; 64];
    let mut got = 0u64;
    loop {
        if let Ok((_, _)) = sys::recv(chan, &mut buf) {
            got += 1;
            if got == 1000 {
                println!("BOMB ipc: {got} messages taken, senders flooding");
            }
        }
        for _ in 0..16 {
            sys::yield_now();
        }
    }
}

fn ipc_send(chan: u64) -> i32 {
    let m = words([0x464c_4f4f_44, 0, 0, 0, 0, 0, 0, 0]);
    loop {
        if sys::send(chan, &m).is_err() || orphaned() {
            return 0;
        }
    }
}
