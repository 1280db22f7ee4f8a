//! pingpong: IPC ping-pong between two processes.
//!
//! `pingpong [ROUNDS] [CPU]` (default 1000 rounds; the partner runs on CPU 1
//! when there is one, else on CPU 0). The parent claims a channel, spawns
//! itself as `pingpong child <parent-chan> <rounds>` on CPU; the child
//! claims its own channel and sends its number to the parent. Then each
//! round the parent `call`s the child with request `2k` and the child
//! replies with message `2k+1` (`rt::check`: 1..4096 bytes, every byte
//! verified, FNV-1a checksum inside). Both sides verify every message.
//!
//! Output, one line: `pingpong: R round trips of 1..4096-byte messages
//! between pid A (cpu X) and pid B (cpu Y) in T ms: N round trips/s, C
//! cycles each ok`, or `pingpong: FAILED: <why>` (status 1).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use abi::Error;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use rt::text::Words;
use rt::{check, println, proc, sys, time};

const DEFAULT_ROUNDS: u64 = 1000;
/// The partner's quota, in pages (less if the parent has less to spare).
const CHILD_QUOTA: u64 = 64;
/// Pages the parent keeps for itself.
const RESERVE: u64 = 16;

fn main() -> i32 {
    let args = rt::args();
    let mut w = Words::new(args);
    let r = if args.split_whitespace().next() == Some("child") {
        w.next();
        child(&mut w).map_err(|e| format!("child: {e}"))
    } else {
        parent(&mut w)
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            println!("pingpong: FAILED: {e}");
            1
        }
    }
}

fn parent(w: &mut Words) -> Result<(), String> {
    let rounds = w.next_u64("ROUNDS")?.unwrap_or(DEFAULT_ROUNDS);
    let cpus = proc::cpus().map_err(|e| format!("sysinfo: {e}"))?;
    let cpu = w.next_u64("CPU")?.unwrap_or(if cpus > 1 { 1 } else { 0 });
    w.end().map_err(|e| format!("{e} (usage: pingpong [ROUNDS] [CPU])"))?;
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    let me = sys::getpid().map_err(|e| format!("getpid: {e}"))?;
    let my_cpu = proc::my_cpu().map_err(|e| format!("ps: {e}"))?;
    let my_chan = sys::chan_create(u64::MAX).map_err(|e| format!("cannot claim a channel: {e}"))?;
    let quota = proc::spare_pages(RESERVE).map_err(|e| format!("quota: {e}"))?.min(CHILD_QUOTA);
    let mut kids = proc::Children::new();
    let child = kids.spawn("pingpong", quota, cpu, &format!("child {my_chan} {rounds}")).map_err(|e| match e {
        Error::BadCpu => format!("cpu {cpu}: bad CPU"),
        e => format!("cannot start the partner on CPU {cpu} with {quota} pages: {e}"),
    })?;

    // The child's first message is its channel number.
    let mut inbuf = vec![0u8; abi::MAX_MESSAGE];
    let (n, from) = sys::recv(my_chan, &mut inbuf[..8]).map_err(|e| format!("receiving the partner's channel: {e}"))?;
    if n != 8 || from != child {
        return Err(format!("expected the partner's 8-byte channel number from pid {child}, got {n} bytes from pid {from}"));
    }
    let child_chan = u64::from_le_bytes(inbuf[..8].try_into().unwrap_or([0; 8]));

    let mut out = vec![0u8; abi::MAX_MESSAGE];
    let t0 = time::rdtsc();
    for k in 0..rounds {
        let req = 2 * k;
        let len = check::message_len(req);
        check::fill(req, &mut out[..len]);
        let (n, from) = sys::call_chan(child_chan, &out[..len], my_chan, &mut inbuf)
            .map_err(|e| format!("round {k}: call to channel {child_chan}: {e}"))?;
        if from != child {
            return Err(format!("round {k}: the reply came from pid {from}, not the partner (pid {child})"));
        }
        check::verify_len(req + 1, &inbuf[..n as usize]).map_err(|m| format!("round {k}: the reply ({n} bytes): {m}"))?;
    }
    let ticks = time::rdtsc().wrapping_sub(t0).max(1);

    let status = kids.wait(child).map_err(|e| format!("wait for the partner: {e}"))?;
    if status != 0 {
        return Err(format!("the partner (pid {child}) exited with status {status}"));
    }
    let per_ms = time::ticks_per_ms();
    println!(
        "pingpong: {rounds} round trips of 1..4096-byte messages between pid {me} (cpu {my_cpu}) and pid {child} (cpu {cpu}) in {} ms: {} round trips/s, {} cycles each ok",
        ticks / per_ms,
        rounds as u128 * 1000 * per_ms as u128 / ticks as u128,
        ticks / rounds
    );
    Ok(())
}

/// The partner: echo every request with the matching reply; a request that
/// does not verify is answered with a wrong reply (so the parent stops at
/// the same round instead of waiting forever) and makes the exit status 1.
fn child(w: &mut Words) -> Result<(), String> {
    let parent_chan = w.need_u64("the parent's channel")?;
    let rounds = w.need_u64("ROUNDS")?;
    let parent = sys::getppid().map_err(|e| format!("getppid: {e}"))?;
    let mine = sys::chan_create(u64::MAX).map_err(|e| format!("cannot claim a channel: {e}"))?;
    proc::send_retry(parent_chan, &mine.to_le_bytes(), 1000).map_err(|e| format!("sending my channel to {parent_chan}: {e}"))?;
    let mut buf = vec![0u8; abi::MAX_MESSAGE];
    let mut out = vec![0u8; abi::MAX_MESSAGE];
    let mut failure = None;
    for k in 0..rounds {
        let (n, from) = sys::recv(mine, &mut buf).map_err(|e| format!("round {k}: recv: {e}"))?;
        let req = 2 * k;
        let verdict = if from != parent {
            Err(format!("round {k}: request from pid {from}, not the parent (pid {parent})"))
        } else {
            check::verify_len(req, &buf[..n as usize]).map_err(|m| format!("round {k}: the request ({n} bytes): {m}"))
        };
        let len = check::message_len(req + 1);
        match verdict {
            Ok(()) => check::fill(req + 1, &mut out[..len]),
            Err(e) => {
                println!("pingpong: child: {e}");
                failure.get_or_insert(e);
                check::fill(u64::MAX, &mut out[..len]);
            }
        }
        sys::send(parent_chan, &out[..len]).map_err(|e| format!("round {k}: reply: {e}"))?;
    }
    match failure {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

rt::entry!(main);
