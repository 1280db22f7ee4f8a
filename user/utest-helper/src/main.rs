//! utest-helper: the processes utest's tests start, one mode each:
//! `utest-helper MODE ARGS...`. A separate, small program so that a test can
//! start one per CPU within utest's default quota.
//!
//! A helper that fails tells the test where the test is listening (a
//! [`FAIL`] message, or a wrong message on a ring), so that the test stops
//! with a reason instead of waiting forever, then exits with status 1.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use abi::Error;
use alloc::format;
use alloc::string::String;
use rt::shm::SharedPage;
use rt::text::Words;
use rt::{check, println, sys};
use utest_proto::*;

fn main() -> i32 {
    let args = rt::args();
    let mut words = Words::new(args);
    let w = &mut words;
    let mode = w.next().unwrap_or("");
    let r = match mode {
        "exit" => return w.need_u64("CODE").map(|c| c as i32).unwrap_or(1),
        "ring" => ring(w),
        "helper" => helper(w),
        "quota" => quota(w),
        "mutex" => waiter(w, false),
        "cv" => waiter(w, true),
        "shm" => shm(w),
        _ => Err(format!("unknown helper mode `{mode}`")),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            println!("utest-helper {mode} (pid {}): {e}", sys::getpid().unwrap_or(0));
            1
        }
    }
}

/// Tell the test a helper failed (best effort).
fn fail(chan: u64, index: u64, e: Error) {
    let _ = sys::send(chan, &encode(FAIL, index, e.code(), 0));
}

/// A ring member: `ring I DATA REPORTS ROUNDS`. Claims a channel and sends
/// (HELLO, I, channel) to REPORTS; receives the next hop's channel; then
/// forwards ROUNDS messages, verifying each (a bad one is counted and
/// forwarded all the same, so the ring never stalls); finally sends
/// (REPORT, I, forwarded, bad) to REPORTS.
fn ring(w: &mut Words) -> Result<(), String> {
    let index = w.need_u64("I")?;
    let data = w.need_u64("DATA")?;
    let reports = w.need_u64("REPORTS")?;
    let rounds = w.need_u64("ROUNDS")?;
    let mine = sys::chan_create(u64::MAX).map_err(|e| {
        fail(reports, index, e);
        format!("chan_create: {e}")
    })?;
    send_msg(reports, HELLO, index, mine, 0)?;
    let mut small = [0u8; 8];
    let (len, _) = sys::recv(mine, &mut small).map_err(|e| format!("waiting for the next hop: {e}"))?;
    if len != 8 {
        return Err(format!("a {len}-byte next-hop message"));
    }
    let next = u64::from_le_bytes(small);
    // An odd offset in a buffer spanning pages: messages cross page
    // boundaries. On the stack, whose pages are paid for already.
    let mut buf = [0u8; 3 * 4096];
    let off = 4095 - 2 * (index as usize % 16);
    let (mut forwarded, mut bad) = (0u64, 0u64);
    let mut first_bad = None;
    for k in 0..rounds {
        let slot = &mut buf[off..off + abi::MAX_MESSAGE];
        let r = sys::recv(mine, slot).and_then(|(len, _)| {
            let m = &slot[..len as usize];
            if let Err(e) = check::verify_len(k, m) {
                bad += 1;
                first_bad.get_or_insert(format!("message {k}: {e}"));
            }
            sys::send(next, m)
        });
        if let Err(e) = r {
            // Break the driver's wait on its data channel with a wrong message.
            let _ = sys::send(data, &encode(FAIL, index, e.code(), k));
            return Err(format!("message {k}: {e}"));
        }
        forwarded += 1;
    }
    send_msg(reports, REPORT, index, forwarded, bad)?;
    match first_bad {
        None => Ok(()),
        Some(e) => Err(format!("{bad} bad messages, the first: {e}")),
    }
}

/// The bad_pointers test's peer: `helper DRIVER`. Sends (HELLO, 0, channel)
/// to DRIVER, then serves commands on its channel (64-byte buffer): `send`
/// sends `data` to DRIVER (retrying on errors, which a bad receive buffer
/// may cause), `stop` exits. Receive errors are counted, not fatal.
fn helper(w: &mut Words) -> Result<(), String> {
    let driver = w.need_u64("DRIVER")?;
    let mine = sys::chan_create(u64::MAX).map_err(|e| {
        fail(driver, 0, e);
        format!("chan_create: {e}")
    })?;
    send_msg(driver, HELLO, 0, mine, 0)?;
    let mut buf = [0u8; 64];
    let mut errors = 0;
    loop {
        let len = match sys::recv(mine, &mut buf) {
            Ok((len, _)) => len as usize,
            Err(e) => {
                errors += 1;
                if errors > 100 {
                    return Err(format!("recv keeps failing: {e}"));
                }
                continue;
            }
        };
        match &buf[..len] {
            b"stop" => return Ok(()),
            b"send" => {
                let mut sent = false;
                for _ in 0..1000 {
                    if sys::send(driver, b"data").is_ok() {
                        sent = true;
                        break;
                    }
                    sys::sleep_ms(1);
                }
                if !sent {
                    return Err("could not send `data` to the driver in 1000 tries".into());
                }
            }
            _ => {}
        }
    }
}

/// The quota_limits test's child: `quota DRIVER`. Maps pages one at a time
/// at [`QUOTA_VA`] until mem_map fails, unmaps them, and reports
/// (QUOTA_A, pages mapped, error code, quota) and (QUOTA_B, usage before,
/// usage when it failed, usage after unmapping). Allocates nothing once
/// the quota is full.
fn quota(w: &mut Words) -> Result<(), String> {
    let driver = w.need_u64("DRIVER")?;
    let (quota, before) = sys::quota().map_err(|e| format!("quota: {e}"))?;
    let mut mapped = 0u64;
    let err = loop {
        match sys::mem_map(QUOTA_VA + mapped * abi::PAGE_SIZE, 1, abi::prot::WRITE) {
            Ok(_) => mapped += 1,
            Err(e) => break e,
        }
        if mapped > quota {
            break Error::Invalid;
        }
    };
    let (_, at_fail) = sys::quota().map_err(|e| format!("quota: {e}"))?;
    if mapped > 0 {
        sys::mem_unmap(QUOTA_VA, mapped).map_err(|e| format!("mem_unmap of the {mapped} pages: {e}"))?;
    }
    let (_, after) = sys::quota().map_err(|e| format!("quota: {e}"))?;
    send_msg(driver, QUOTA_A, mapped, err.code(), quota)?;
    send_msg(driver, QUOTA_B, before, at_fail, after)
}

/// The mutex_cv_fifo test's waiters. `mutex M I DRIVER`: send (READY, I),
/// lock M (blocks: the test holds it), send (ACQUIRED, I), unlock.
/// `cv M CV I DRIVER`: lock M, send (READY, I), wait on CV, send
/// (ACQUIRED, I), unlock.
fn waiter(w: &mut Words, cv: bool) -> Result<(), String> {
    let m = w.need_u64("M")?;
    let c = if cv { w.need_u64("CV")? } else { 0 };
    let index = w.need_u64("I")?;
    let driver = w.need_u64("DRIVER")?;
    let step = |what: &str, r: Result<u64, Error>| -> Result<(), String> {
        r.map(|_| ()).map_err(|e| {
            fail(driver, index, e);
            format!("{what}: {e}")
        })
    };
    if cv {
        step("mutex_lock", sys::mutex_lock(m))?;
        send_msg(driver, READY, index, 0, 0)?;
        step("cv_wait", sys::cv_wait(c, m))?;
    } else {
        send_msg(driver, READY, index, 0, 0)?;
        step("mutex_lock", sys::mutex_lock(m))?;
    }
    send_msg(driver, ACQUIRED, index, 0, 0)?;
    step("mutex_unlock", sys::mutex_unlock(m))
}

/// The shm_protocol test's peer: `shm DRIVER`. Sends (HELLO, 0, channel),
/// then answers every command on its channel with (REPLY, 0, value) or
/// (REPLY, 1, error code):
/// `status` → its shm_status with the parent; `offer` → shm_offer at
/// [`SHM_CHILD_VA`]; `offer2` → a second offer (one page higher); `write`
/// → puts [`CHILD_MAGIC`] in word 0 and [`CHILD_TEXT`] from byte 16;
/// `read` → word 1 of the page; `exit` → replies, then exits.
fn shm(w: &mut Words) -> Result<(), String> {
    let driver = w.need_u64("DRIVER")?;
    let parent = sys::getppid().map_err(|e| format!("getppid: {e}"))?;
    let mine = sys::chan_create(u64::MAX).map_err(|e| {
        fail(driver, 0, e);
        format!("chan_create: {e}")
    })?;
    send_msg(driver, HELLO, 0, mine, 0)?;
    let mut page: Option<SharedPage> = None;
    let mut buf = [0u8; 16];
    loop {
        let (len, _) = sys::recv(mine, &mut buf).map_err(|e| format!("recv: {e}"))?;
        let cmd = &buf[..len as usize];
        let r: Result<u64, Error> = match cmd {
            b"status" => sys::shm_status(parent).map(|s| s as u64),
            b"offer" => SharedPage::offer(parent, SHM_CHILD_VA).map(|(p, s)| {
                page = Some(p);
                s as u64
            }),
            b"offer2" => sys::shm_offer(parent, SHM_CHILD_VA + abi::PAGE_SIZE).map(|s| s as u64),
            b"write" => match &page {
                Some(p) => {
                    p.store(0, CHILD_MAGIC);
                    p.write_bytes(16, CHILD_TEXT);
                    Ok(0)
                }
                None => Err(Error::NotMapped),
            },
            b"read" => match &page {
                Some(p) => Ok(p.load(1)),
                None => Err(Error::NotMapped),
            },
            b"exit" => {
                // The page goes when this process exits; never touch it again.
                page = None;
                Ok(0)
            }
            _ => Err(Error::Invalid),
        };
        let reply = match r {
            Ok(v) => encode(REPLY, 0, v, 0),
            Err(e) => encode(REPLY, 1, e.code(), 0),
        };
        sys::send(driver, &reply).map_err(|e| format!("reply: {e}"))?;
        if cmd == b"exit" {
            return Ok(());
        }
    }
}

rt::entry!(main);
