//! A worker: `conform w I`. Claims command channel `cmd_chan(I)`, says hello
//! to the driver, then forever: receive a command, write its fills into the
//! scratch buffer, resolve its symbolic arguments (`m<off>`: the scratch
//! buffer, `r<off>`: the read-only array) and issue the system call exactly
//! as given, then report `rax`, `rdx` and, for a receive into the scratch
//! buffer, the FNV-1a of the bytes received.
//!
//! Uses no heap: its quota usage is exactly what the spec predicts from
//! its program image, stack and page tables.

use crate::proto::*;
use abi::nr;
use rt::sys;

/// The read-only array: 8 KiB of `.` in the program's rodata (console
/// writes from it print dots).
static RO: [u8; RO_LEN] = [b'.'; RO_LEN];

pub fn ro_addr() -> u64 {
    RO.as_ptr() as u64
}

/// Write fill number `f` of command `cmd` (starting at word `at`) into
/// `buf`; returns the word after it.
pub fn apply_fill(cmd: &[u8], at: usize, buf: &mut [u8]) -> Option<usize> {
    let (kind, off, len) = (word(cmd, at), word(cmd, at + 1) as usize, word(cmd, at + 2) as usize);
    let end = off.checked_add(len).filter(|&e| e <= buf.len())?;
    match kind {
        FILL_PATTERN => {
            let seed = word(cmd, at + 3);
            for (i, b) in buf[off..end].iter_mut().enumerate() {
                *b = pattern_byte(seed, i as u64);
            }
            Some(at + 4)
        }
        FILL_BYTES => {
            let data = cmd.get((at + 3) * 8..(at + 3) * 8 + len)?;
            buf[off..end].copy_from_slice(data);
            Some(at + 3 + len.div_ceil(8))
        }
        _ => None,
    }
}

/// Resolve a command's arguments against `buf` and the read-only array.
pub fn resolve(cmd: &[u8], buf: &[u8]) -> [u64; 6] {
    let tags = word(cmd, 8);
    let mut a = [0u64; 6];
    for (i, slot) in a.iter_mut().enumerate() {
        let v = word(cmd, 2 + i);
        *slot = match (tags >> (2 * i)) & 3 {
            ARG_BUF => (buf.as_ptr() as u64).wrapping_add(v),
            ARG_RO => ro_addr().wrapping_add(v),
            _ => v,
        };
    }
    a
}

/// The FNV-1a of what a successful receive (or boot-file read) put into the
/// scratch buffer, if its destination was the scratch buffer.
pub fn received_hash(cmd: &[u8], buf: &[u8], rax: u64) -> Option<u64> {
    let n = word(cmd, 1);
    let dst = match n {
        nr::RECV => 1,
        nr::CALL => 4,
        nr::FILE_READ => 3,
        _ => return None,
    };
    if abi::decode(rax).is_err() || (word(cmd, 8) >> (2 * dst)) & 3 != ARG_BUF {
        return None;
    }
    let off = word(cmd, 2 + dst) as usize;
    let bytes = buf.get(off..off.checked_add(rax as usize)?)?;
    Some(rt::check::fnv1a(bytes))
}

pub fn run(index: u64) -> i32 {
    if index >= MAX_WORKERS {
        rt::println!("conform worker: index {index} out of range");
        return 2;
    }
    let chan = cmd_chan(index);
    if let Err(e) = sys::chan_create(chan) {
        rt::println!("conform worker {index}: cannot claim channel {chan}: {e}");
        return 3;
    }
    let mut hello = [0u8; 24];
    put(&mut hello, 0, HELLO);
    put(&mut hello, 1, index);
    put(&mut hello, 2, chan);
    if sys::send(DRIVER_CHAN, &hello).is_err() {
        return 4;
    }
    let mut buf = [0u8; BUF_LEN];
    let mut cmd = [0u8; abi::MAX_MESSAGE];
    loop {
        let Ok((len, _)) = sys::recv(chan, &mut cmd) else { continue };
        let cmd = &cmd[..len as usize];
        if word(cmd, 0) != CMD {
            continue;
        }
        let mut at = 10;
        for _ in 0..word(cmd, 9) {
            match apply_fill(cmd, at, &mut buf) {
                Some(next) => at = next,
                None => break,
            }
        }
        let args = resolve(cmd, &buf);
        let (rax, rdx, hash) = if word(cmd, 1) == nr::CALL_SHORT {
            // The message comes back in registers: hash those bytes.
            let (rax, rdx, words) = sys::raw_words(nr::CALL_SHORT, args);
            let got = sys::Short { len: rax as usize, words };
            let (bytes, n) = got.bytes();
            let ok = abi::decode(rax).is_ok() && args[1] != abi::NO_CHANNEL && rax <= abi::SHORT_MESSAGE as u64;
            (rax, rdx, ok.then(|| rt::check::fnv1a(&bytes[..n])))
        } else {
            let (rax, rdx) = sys::raw(word(cmd, 1), args);
            (rax, rdx, received_hash(cmd, &buf, rax))
        };
        let mut rep = [0u8; 48];
        put(&mut rep, 0, REPORT);
        put(&mut rep, 1, index);
        put(&mut rep, 2, rax);
        put(&mut rep, 3, rdx);
        put(&mut rep, 4, hash.is_some() as u64);
        put(&mut rep, 5, hash.unwrap_or(0));
        let _ = sys::send(DRIVER_CHAN, &rep);
    }
}

/// The watchdog: `conform tick CHAN` sends a tick every 100 ms until the
/// channel is gone.
pub fn tick(chan: u64) -> i32 {
    let mut m = [0u8; 8];
    put(&mut m, 0, TICK);
    loop {
        sys::sleep_ms(100);
        if sys::send(chan, &m).is_err() {
            return 0;
        }
    }
}
