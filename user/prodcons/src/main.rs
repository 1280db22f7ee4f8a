//! prodcons: producer/consumer through a bounded ring buffer in a page
//! shared between two processes, guarded by a kernel mutex with two
//! condition variables (not-empty, not-full).
//!
//! `prodcons [ITEMS]` (default 1000). The parent (producer) creates the
//! mutex and the condition variables and spawns itself as the consumer,
//! `prodcons consumer MUTEX NOTEMPTY NOTFULL PARENT-PID ITEMS`, on CPU 1 when
//! there is one. Both offer a page at [`SHARED`] to each other and poll
//! `shm_status` until the pair is Ready. The producer puts 1..=ITEMS into the
//! ring, then marks the end; the consumer takes items until the ring is
//! empty and the end is marked, checking that they come in order, sums them,
//! and reports count, sum and errors in the page. The producer checks
//! count = ITEMS and sum = ITEMS(ITEMS+1)/2, then acknowledges, and only then
//! does the consumer exit (the page is unmapped from both when either exits).
//!
//! Output, one line: `prodcons: ITEMS items through a 16-slot ring from pid
//! A (cpu X) to pid B (cpu Y): sum S ok`, or `prodcons: FAILED: <why>`
//! (status 1). The consumer's exit status is 0 only if its own checks passed.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use abi::{Error, ShmState};
use alloc::format;
use alloc::string::String;
use rt::shm::SharedPage;
use rt::text::Words;
use rt::{println, proc, sys};

const DEFAULT_ITEMS: u64 = 1000;
/// Where both processes map the shared page.
const SHARED: u64 = 0x7000_0000_0000;
/// Ring slots (small, so the producer also waits for room).
const SLOTS: u64 = 16;
/// The consumer's quota, in pages (less if the parent has less to spare).
const CHILD_QUOTA: u64 = 64;
const RESERVE: u64 = 16;
/// How long each side waits for the pair to become Ready.
const READY_TIMEOUT_MS: u64 = 10_000;

/// Words of the shared page.
mod w {
    /// Items put into the ring so far.
    pub const HEAD: usize = 0;
    /// Items taken out so far.
    pub const TAIL: usize = 1;
    /// The producer has put its last item.
    pub const END: usize = 2;
    /// The consumer's results are in COUNT, SUM, ERRORS.
    pub const DONE: usize = 3;
    pub const COUNT: usize = 4;
    pub const SUM: usize = 5;
    /// Items that came out of order.
    pub const ERRORS: usize = 6;
    /// The producer has read the results; the consumer may exit.
    pub const ACK: usize = 7;
    pub const RING: usize = 8;
}

fn main() -> i32 {
    let args = rt::args();
    let mut words = Words::new(args);
    let r = if args.split_whitespace().next() == Some("consumer") {
        words.next();
        consumer(&mut words).map_err(|e| format!("consumer: {e}"))
    } else {
        producer(&mut words)
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            println!("prodcons: FAILED: {e}");
            1
        }
    }
}

/// Offer the page to `peer` and wait until the pair is Ready.
fn share_with(peer: u64) -> Result<SharedPage, String> {
    let (page, state) = SharedPage::offer(peer, SHARED).map_err(|e| format!("shm_offer to pid {peer} at {SHARED:#x}: {e}"))?;
    if state != ShmState::Ready {
        page.wait_ready(READY_TIMEOUT_MS).map_err(|e| match e {
            Error::PeerGone => format!("pid {peer} exited before the page was shared"),
            Error::Busy => format!("pid {peer} did not offer the page within {READY_TIMEOUT_MS} ms"),
            e => format!("shm_status with pid {peer}: {e}"),
        })?;
    }
    Ok(page)
}

fn lock(m: u64) -> Result<(), String> {
    sys::mutex_lock(m).map(|_| ()).map_err(|e| format!("mutex_lock({m}): {e}"))
}

fn unlock(m: u64) -> Result<(), String> {
    sys::mutex_unlock(m).map(|_| ()).map_err(|e| format!("mutex_unlock({m}): {e}"))
}

fn wait(cv: u64, m: u64) -> Result<(), String> {
    sys::cv_wait(cv, m).map(|_| ()).map_err(|e| format!("cv_wait({cv}, {m}): {e}"))
}

fn signal(cv: u64) -> Result<(), String> {
    sys::cv_signal(cv).map(|_| ()).map_err(|e| format!("cv_signal({cv}): {e}"))
}

fn producer(words: &mut Words) -> Result<(), String> {
    let items = words.next_u64("ITEMS")?.unwrap_or(DEFAULT_ITEMS);
    words.end().map_err(|e| format!("{e} (usage: prodcons [ITEMS])"))?;
    let me = sys::getpid().map_err(|e| format!("getpid: {e}"))?;
    let my_cpu = proc::my_cpu().map_err(|e| format!("ps: {e}"))?;
    let cpu = if proc::cpus().map_err(|e| format!("sysinfo: {e}"))? > 1 { 1 } else { 0 };
    let m = sys::mutex_create().map_err(|e| format!("mutex_create: {e}"))?;
    let not_empty = sys::cv_create().map_err(|e| format!("cv_create: {e}"))?;
    let not_full = sys::cv_create().map_err(|e| format!("cv_create: {e}"))?;
    let quota = proc::spare_pages(RESERVE).map_err(|e| format!("quota: {e}"))?.min(CHILD_QUOTA);
    let mut kids = proc::Children::new();
    let child = kids
        .spawn("prodcons", quota, cpu, &format!("consumer {m} {not_empty} {not_full} {me} {items}"))
        .map_err(|e| format!("cannot start the consumer on CPU {cpu} with {quota} pages: {e}"))?;
    let page = match share_with(child) {
        Ok(p) => p,
        Err(e) => {
            // If the consumer has already exited, its status says why.
            if let Ok(Some(p)) = proc::info(child) {
                if p.state == proc::ZOMBIE {
                    if let Ok(status) = kids.wait(child) {
                        return Err(format!("{e} (the consumer exited with status {status})"));
                    }
                }
            }
            return Err(e);
        }
    };

    for i in 1..=items {
        lock(m)?;
        while page.load(w::HEAD) - page.load(w::TAIL) == SLOTS {
            wait(not_full, m)?;
        }
        let head = page.load(w::HEAD);
        page.store(w::RING + (head % SLOTS) as usize, i);
        page.store(w::HEAD, head + 1);
        signal(not_empty)?;
        unlock(m)?;
    }

    // Mark the end, wait for the consumer's results, acknowledge them.
    lock(m)?;
    page.store(w::END, 1);
    signal(not_empty)?;
    while page.load(w::DONE) == 0 {
        wait(not_full, m)?;
    }
    let (count, sum, errors) = (page.load(w::COUNT), page.load(w::SUM), page.load(w::ERRORS));
    page.store(w::ACK, 1);
    signal(not_empty)?;
    unlock(m)?;
    // From here on the page may vanish at any moment (the consumer exits).
    page.release();

    let status = kids.wait(child).map_err(|e| format!("wait for the consumer: {e}"))?;
    let want = items * (items + 1) / 2;
    if count != items || sum != want || errors != 0 {
        return Err(format!("the consumer got {count} items summing to {sum} ({errors} out of order); expected {items} items summing to {want}"));
    }
    if status != 0 {
        return Err(format!("the consumer (pid {child}) exited with status {status}"));
    }
    println!("prodcons: {items} items through a {SLOTS}-slot ring from pid {me} (cpu {my_cpu}) to pid {child} (cpu {cpu}): sum {sum} ok");
    Ok(())
}

fn consumer(words: &mut Words) -> Result<(), String> {
    let m = words.need_u64("MUTEX")?;
    let not_empty = words.need_u64("NOTEMPTY")?;
    let not_full = words.need_u64("NOTFULL")?;
    let parent = words.need_u64("PARENT-PID")?;
    let items = words.need_u64("ITEMS")?;
    let page = share_with(parent)?;

    let (mut count, mut sum, mut errors) = (0u64, 0u64, 0u64);
    loop {
        lock(m)?;
        while page.load(w::HEAD) == page.load(w::TAIL) && page.load(w::END) == 0 {
            wait(not_empty, m)?;
        }
        let tail = page.load(w::TAIL);
        if page.load(w::HEAD) == tail {
            // Empty and ended: report, wait for the acknowledgement, go.
            page.store(w::COUNT, count);
            page.store(w::SUM, sum);
            page.store(w::ERRORS, errors);
            page.store(w::DONE, 1);
            signal(not_full)?;
            while page.load(w::ACK) == 0 {
                wait(not_empty, m)?;
            }
            unlock(m)?;
            break;
        }
        let v = page.load(w::RING + (tail % SLOTS) as usize);
        page.store(w::TAIL, tail + 1);
        signal(not_full)?;
        unlock(m)?;
        if v != count + 1 {
            errors += 1;
        }
        count += 1;
        sum = sum.wrapping_add(v);
    }
    let want = items * (items + 1) / 2;
    if count != items || sum != want || errors != 0 {
        return Err(format!("got {count} items summing to {sum} ({errors} out of order); expected {items} summing to {want}"));
    }
    Ok(())
}

rt::entry!(main);
