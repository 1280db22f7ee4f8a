//! Safe access to a page shared with another process under the kernel's
//! protocol (docs/syscalls.md, "Shared memory").
//!
//! [`SharedPage::offer`] calls `shm_offer`; once it succeeds the kernel has
//! mapped a fresh zeroed page at the address in the caller's space (it was
//! unmapped before, or the offer fails with `AlreadyMapped`), so no Rust
//! object lives there. The page is then seen as 512 atomic words or 4096
//! atomic bytes: the peer writes it concurrently, so every access is atomic.
//!
//! The page stays mapped until either process exits. Touching it after the
//! peer has exited faults (the kernel ends the process): use the page only
//! while the peer is known to be alive, e.g. before acknowledging its last
//! message.

use abi::{Error, ShmState};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Words in a page.
pub const WORDS: usize = 512;
/// Bytes in a page.
pub const BYTES: usize = 4096;

/// A page offered to (and possibly shared with) a peer.
pub struct SharedPage {
    peer: u64,
    vaddr: u64,
}

impl SharedPage {
    /// Offer a page at `vaddr` (page aligned, user half, not mapped) to
    /// `peer`. Returns the page and the pair's state after the offer
    /// (`Pending` if the peer has not offered yet, `Ready` if it had).
    pub fn offer(peer: u64, vaddr: u64) -> Result<(SharedPage, ShmState), Error> {
        let st = crate::sys::shm_offer(peer, vaddr)?;
        Ok((SharedPage { peer, vaddr }, st))
    }

    /// Poll `shm_status` every millisecond until the pair is Ready, for at
    /// most `timeout_ms`. Errors: the call's own, or `PeerGone` when the
    /// pair fell back to Dead (the peer exited) or the time ran out while
    /// still Pending (`Busy`).
    pub fn wait_ready(&self, timeout_ms: u64) -> Result<(), Error> {
        for _ in 0..=timeout_ms {
            match crate::sys::shm_status(self.peer)? {
                ShmState::Ready => return Ok(()),
                ShmState::Dead => return Err(Error::PeerGone),
                ShmState::Pending => crate::sys::sleep_ms(1),
            }
        }
        Err(Error::Busy)
    }

    /// Give up the page: from here on the peer may exit (and the page
    /// vanish) at any time; consuming the handle makes any later access a
    /// compile-time error.
    pub fn release(self) {}

    pub fn peer(&self) -> u64 {
        self.peer
    }

    pub fn vaddr(&self) -> u64 {
        self.vaddr
    }

    /// The page as words.
    pub fn words(&self) -> &[AtomicU64; WORDS] {
        // SAFETY: shm_offer succeeded, so the kernel mapped a page at vaddr
        // (page aligned, hence aligned for u64) read/write for this process,
        // where nothing was mapped before; it stays mapped while the peer
        // lives (see the module doc). Atomics make the peer's concurrent
        // writes well defined.
        unsafe { &*(self.vaddr as *const [AtomicU64; WORDS]) }
    }

    /// The page as bytes (do not mix byte and word access to the same
    /// location while the peer may be writing it).
    pub fn bytes(&self) -> &[AtomicU8; BYTES] {
        // SAFETY: as in `words`.
        unsafe { &*(self.vaddr as *const [AtomicU8; BYTES]) }
    }

    pub fn load(&self, word: usize) -> u64 {
        self.words()[word].load(Ordering::SeqCst)
    }

    pub fn store(&self, word: usize, v: u64) {
        self.words()[word].store(v, Ordering::SeqCst)
    }

    /// Copy `data` into the page at byte `offset` (clipped to the page).
    pub fn write_bytes(&self, offset: usize, data: &[u8]) {
        for (dst, &b) in self.bytes().iter().skip(offset).zip(data) {
            dst.store(b, Ordering::Relaxed);
        }
        core::sync::atomic::fence(Ordering::SeqCst);
    }

    /// Copy bytes out of the page from byte `offset` (clipped to the page).
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        core::sync::atomic::fence(Ordering::SeqCst);
        for (src, o) in self.bytes().iter().skip(offset).zip(out.iter_mut()) {
            *o = src.load(Ordering::Relaxed);
        }
    }
}
