//! What utest and utest-helper agree on: the messages they exchange, the
//! addresses the helpers map, and the values they write.
//!
//! A message is (kind, a, b, c): four little-endian u64, 32 bytes.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use rt::sys;

/// The program name of the helper.
pub const HELPER: &str = "utest-helper";

pub const LEN: usize = 32;
/// A helper's channel (a = helper index, b = channel).
pub const HELLO: u64 = 1;
/// A waiter is about to block (a = index).
pub const READY: u64 = 2;
/// A waiter acquired the mutex (a = index).
pub const ACQUIRED: u64 = 3;
/// A ring member's totals (a = index, b = messages forwarded, c = bad ones).
pub const REPORT: u64 = 4;
/// A command's outcome: a = 0 and b = value, or a = 1 and b = error code.
pub const REPLY: u64 = 5;
/// A helper failed (a = index, b = error code).
pub const FAIL: u64 = 6;
/// The quota helper's results (a = pages mapped, b = error code, c = quota)...
pub const QUOTA_A: u64 = 7;
/// ... and (a = usage before, b = usage when mem_map failed, c = usage after unmapping).
pub const QUOTA_B: u64 = 8;

/// Where the quota helper maps pages until its quota runs out.
pub const QUOTA_VA: u64 = 0x6000_0000;
/// Where the shm helper maps the shared page.
pub const SHM_CHILD_VA: u64 = 0x7100_0000_0000;
/// What the shm helper writes into the shared page: word 0 ...
pub const CHILD_MAGIC: u64 = 0xc0ff_ee00_c0ff_ee00;
/// ... and from byte 16.
pub const CHILD_TEXT: &[u8] = b"written by the child";

pub fn encode(kind: u64, a: u64, b: u64, c: u64) -> [u8; LEN] {
    let mut m = [0u8; LEN];
    for (i, v) in [kind, a, b, c].into_iter().enumerate() {
        m[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    m
}

pub fn decode(m: &[u8]) -> Option<[u64; 4]> {
    if m.len() != LEN {
        return None;
    }
    let w = |i: usize| u64::from_le_bytes(m[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    Some([w(0), w(1), w(2), w(3)])
}

/// A message as received: its four words and its sender.
pub struct Msg {
    pub kind: u64,
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub from: u64,
}

/// Receive one message on `chan` (`what` says what for, in errors).
pub fn recv_msg(chan: u64, what: &str) -> Result<Msg, String> {
    let mut buf = [0u8; LEN];
    let (len, from) = sys::recv(chan, &mut buf).map_err(|e| format!("waiting for {what}: {e}"))?;
    let [kind, a, b, c] = decode(&buf[..len as usize]).ok_or_else(|| format!("waiting for {what}: a {len}-byte message from pid {from}"))?;
    Ok(Msg { kind, a, b, c, from })
}

pub fn send_msg(chan: u64, kind: u64, a: u64, b: u64, c: u64) -> Result<(), String> {
    sys::send(chan, &encode(kind, a, b, c)).map(|_| ()).map_err(|e| format!("send to channel {chan}: {e}"))
}
