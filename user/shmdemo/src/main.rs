//! shmdemo: two processes share a page through the kernel's protocol and
//! show its states (Dead → Pending → Ready → Dead) as each side sees them.
//!
//! `shmdemo` spawns itself as `shmdemo child PARENT-CHAN` (on CPU 1 when
//! there is one). The steps are kept in order by IPC messages on the two
//! processes' channels:
//!
//! 1. the child reports the state it sees (Dead) and sends its channel;
//! 2. the parent sees Dead, offers its page at [`PARENT_VA`] (→ Pending);
//! 3. the child sees Pending, offers at [`CHILD_VA`] (→ Ready);
//! 4. the parent sees Ready and writes a message into the page;
//! 5. the child reads it and writes a reply; the parent reads the reply;
//! 6. the child exits; the parent sees Dead again.
//!
//! Every line starts with `shmdemo: parent:` or `shmdemo: child:`; the last
//! is `shmdemo: ok`, or `shmdemo: FAILED: <why>` (status 1).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use abi::ShmState;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use rt::shm::SharedPage;
use rt::text::Words;
use rt::{println, proc, sys};

/// Where each side maps the shared page (different addresses: the page is
/// the same, the mappings are each process's own).
const PARENT_VA: u64 = 0x7000_0000_0000;
const CHILD_VA: u64 = 0x7100_0000_0000;
const CHILD_QUOTA: u64 = 64;
const RESERVE: u64 = 16;
/// Where the message text starts in the page (word 0 holds its length).
const TEXT: usize = 8;

fn main() -> i32 {
    let args = rt::args();
    let mut w = Words::new(args);
    let r = if args.split_whitespace().next() == Some("child") {
        w.next();
        child(&mut w).map_err(|e| format!("child: {e}"))
    } else {
        parent()
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            println!("shmdemo: FAILED: {e}");
            1
        }
    }
}

fn state_name(s: ShmState) -> &'static str {
    match s {
        ShmState::Dead => "Dead",
        ShmState::Pending => "Pending",
        ShmState::Ready => "Ready",
    }
}

fn status(who: &str, peer: u64) -> Result<ShmState, String> {
    let s = sys::shm_status(peer).map_err(|e| format!("shm_status({peer}): {e}"))?;
    println!("shmdemo: {who}: state with pid {peer}: {}", state_name(s));
    Ok(s)
}

fn expect(got: ShmState, want: ShmState, when: &str) -> Result<(), String> {
    if got != want {
        return Err(format!("{when}: state {}, expected {}", state_name(got), state_name(want)));
    }
    Ok(())
}

/// What the child sends instead of the next step's message when it fails.
const FAILED: &[u8] = b"FAILED";

/// Receive one message on `chan` from `from`; returns its length.
fn recv_from(chan: u64, from: u64, buf: &mut [u8]) -> Result<usize, String> {
    let (n, sender) = sys::recv(chan, buf).map_err(|e| format!("recv on channel {chan}: {e}"))?;
    if sender != from {
        return Err(format!("a message from pid {sender}, expected pid {from}"));
    }
    if &buf[..n as usize] == FAILED {
        return Err(format!("pid {from} failed (its message says why)"));
    }
    Ok(n as usize)
}

/// Put a length-prefixed text in the page.
fn put_text(page: &SharedPage, text: &str) {
    page.write_bytes(TEXT, text.as_bytes());
    page.store(0, text.len() as u64);
}

fn get_text(page: &SharedPage) -> String {
    let n = (page.load(0) as usize).min(rt::shm::BYTES - TEXT);
    let mut b = vec![0u8; n];
    page.read_bytes(TEXT, &mut b);
    String::from_utf8_lossy(&b).into_owned()
}

fn parent() -> Result<(), String> {
    let me = sys::getpid().map_err(|e| format!("getpid: {e}"))?;
    let cpu = if proc::cpus().map_err(|e| format!("sysinfo: {e}"))? > 1 { 1 } else { 0 };
    let chan = sys::chan_create(u64::MAX).map_err(|e| format!("cannot claim a channel: {e}"))?;
    let quota = proc::spare_pages(RESERVE).map_err(|e| format!("quota: {e}"))?.min(CHILD_QUOTA);
    let mut kids = proc::Children::new();
    let child = kids
        .spawn("shmdemo", quota, cpu, &format!("child {chan}"))
        .map_err(|e| format!("cannot start the child on CPU {cpu} with {quota} pages: {e}"))?;
    println!("shmdemo: parent: pid {me}, child pid {child} on cpu {cpu}");
    let mut buf = [0u8; 16];

    // 1. The child has looked (Dead) and sent its channel.
    let n = recv_from(chan, child, &mut buf)?;
    if n != 8 {
        return Err(format!("the child's channel message is {n} bytes, expected 8"));
    }
    let child_chan = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]));

    // 2. Dead; offer.
    expect(status("parent", child)?, ShmState::Dead, "parent, before any offer")?;
    let (page, st) = SharedPage::offer(child, PARENT_VA).map_err(|e| format!("shm_offer({child}, {PARENT_VA:#x}): {e}"))?;
    println!("shmdemo: parent: offered a page at {PARENT_VA:#x}: {}", state_name(st));
    expect(st, ShmState::Pending, "parent, after its offer")?;
    sys::send(child_chan, b"offered").map_err(|e| format!("send: {e}"))?;

    // 3. The child has offered too.
    recv_from(chan, child, &mut buf)?;
    expect(status("parent", child)?, ShmState::Ready, "parent, after the child's offer")?;

    // 4. Write a message; the child reads it and replies in the page.
    let text = format!("hello from pid {me}, written at {PARENT_VA:#x}");
    put_text(&page, &text);
    println!("shmdemo: parent: wrote \"{text}\"");
    sys::send(child_chan, b"read").map_err(|e| format!("send: {e}"))?;

    // 5. The reply.
    recv_from(chan, child, &mut buf)?;
    println!("shmdemo: parent: read \"{}\"", get_text(&page));
    // The child exits after this message: the page goes with it.
    page.release();
    sys::send(child_chan, b"bye").map_err(|e| format!("send: {e}"))?;

    // 6. The child has exited (a zombie until reaped): the pair is Dead.
    if !proc::wait_state(child, proc::ZOMBIE, 10_000).map_err(|e| format!("ps: {e}"))? {
        return Err(format!("the child (pid {child}) did not exit within 10 s"));
    }
    expect(status("parent", child)?, ShmState::Dead, "parent, after the child exited")?;
    let code = kids.wait(child).map_err(|e| format!("wait: {e}"))?;
    if code != 0 {
        return Err(format!("the child exited with status {code}"));
    }
    println!("shmdemo: ok");
    Ok(())
}

fn child(w: &mut Words) -> Result<(), String> {
    let parent_chan = w.need_u64("the parent's channel")?;
    let parent = sys::getppid().map_err(|e| format!("getppid: {e}"))?;
    let r = child_steps(parent_chan, parent);
    if r.is_err() {
        // The parent is waiting for the next step's message: tell it, so
        // that it stops instead of waiting forever.
        let _ = sys::send(parent_chan, FAILED);
    }
    r
}

fn child_steps(parent_chan: u64, parent: u64) -> Result<(), String> {
    let chan = sys::chan_create(u64::MAX).map_err(|e| format!("cannot claim a channel: {e}"))?;
    let mut buf = [0u8; 16];

    expect(status("child", parent)?, ShmState::Dead, "child, at the start")?;
    sys::send(parent_chan, &chan.to_le_bytes()).map_err(|e| format!("send: {e}"))?;

    // The parent has offered.
    recv_from(chan, parent, &mut buf)?;
    expect(status("child", parent)?, ShmState::Pending, "child, after the parent's offer")?;
    let (page, st) = SharedPage::offer(parent, CHILD_VA).map_err(|e| format!("shm_offer({parent}, {CHILD_VA:#x}): {e}"))?;
    println!("shmdemo: child: offered a page at {CHILD_VA:#x}: {}", state_name(st));
    expect(st, ShmState::Ready, "child, after its offer")?;
    sys::send(parent_chan, b"offered").map_err(|e| format!("send: {e}"))?;

    // Read the parent's message, reply in the page.
    recv_from(chan, parent, &mut buf)?;
    let got = get_text(&page);
    println!("shmdemo: child: read \"{got}\"");
    let me = sys::getpid().map_err(|e| format!("getpid: {e}"))?;
    let reply = format!("hello back from pid {me}, at {CHILD_VA:#x}");
    put_text(&page, &reply);
    println!("shmdemo: child: wrote \"{reply}\"");
    sys::send(parent_chan, b"replied").map_err(|e| format!("send: {e}"))?;

    // Wait for the parent's goodbye before exiting (it reads the page first).
    recv_from(chan, parent, &mut buf)?;
    Ok(())
}

rt::entry!(main);
