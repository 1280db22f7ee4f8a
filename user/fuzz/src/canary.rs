//! A canary: `fuzz canary SECRET MASTER-PID MASTER-CHAN CHAN [PLANT]`. Its memory
//! of every kind holds the pattern `(MAGIC, secret ^ i)`: a static array
//! (bss), an array on its stack, and pages the kernel mapped for it (three
//! shared-memory offers to processes that never offer back — the master,
//! init, the shell — so the pages stay the canary's alone and are seen
//! through `rt::shm` without `unsafe`). All of it is checked on every
//! `check` from the master; the answer is (MSG_CANARY, bad words, pages).
//! With PLANT 1 (the harness's own teeth) the canary changes one word of
//! its static data after its first check, as a breach would: the master
//! must report it.

use crate::*;
use core::sync::atomic::{AtomicU64, Ordering};
use rt::shm::SharedPage;
use rt::sys;

static DATA: [AtomicU64; 2048] = [const { AtomicU64::new(0) }; 2048];

fn expect(secret: u64, i: usize) -> u64 {
    if i % 2 == 0 {
        MAGIC
    } else {
        secret ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

pub fn run(secret: u64, master: u64, master_chan: u64, chan: u64, plant: bool) -> i32 {
    if sys::chan_create(chan).is_err() {
        return 3;
    }
    let mut stack = [0u64; 1024];
    for (i, w) in stack.iter_mut().enumerate() {
        *w = expect(secret, i);
    }
    for (i, w) in DATA.iter().enumerate() {
        w.store(expect(secret, i), Ordering::Relaxed);
    }
    // Shared-memory pages, offered to processes that never offer back
    // (the master, init, the shell): mapped here only.
    let mut pages = alloc::vec::Vec::new();
    for (k, peer) in [master, 1, 2].into_iter().enumerate() {
        if let Ok((p, _)) = SharedPage::offer(peer, CANARY_VA + (CANARY_PAGES + k as u64) * abi::PAGE_SIZE) {
            for (i, w) in p.words().iter().enumerate() {
                w.store(expect(secret, i), Ordering::Relaxed);
            }
            pages.push(p);
        }
    }
    let ready = words([MSG_CANARY, 0, pages.len() as u64]);
    let _ = sys::send(master_chan, &ready);
    let mut m = [0u8; 64];
    loop {
        let Ok((n, from)) = sys::recv(chan, &mut m) else { continue };
        let cmd = word(&m[..n as usize], 0);
        if cmd != CMD_CHECK && cmd != CMD_STOP {
            continue; // a hostile's message: ignored
        }
        let mut bad = 0u64;
        bad += stack.iter().enumerate().filter(|&(i, &w)| w != expect(secret, i)).count() as u64;
        bad += DATA.iter().enumerate().filter(|(i, w)| w.load(Ordering::Relaxed) != expect(secret, *i)).count() as u64;
        for p in &pages {
            bad += p.words().iter().enumerate().filter(|(i, w)| w.load(Ordering::Relaxed) != expect(secret, *i)).count() as u64;
        }
        let _ = from;
        let _ = sys::send(master_chan, &words([MSG_CANARY, bad, pages.len() as u64]));
        if plant {
            DATA[7].fetch_xor(1, Ordering::Relaxed);
        }
        if cmd == CMD_STOP {
            // Keep the stack array alive until here.
            return if core::hint::black_box(&stack)[0] == MAGIC { 0 } else { 1 };
        }
    }
}
