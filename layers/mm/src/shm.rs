//! Shared memory: the seed's protocol for two processes to share a page.
//!
//! For each unordered pair of process ids (`0..N`, a fixed table, no heap)
//! there is one link, which both parties read through [`ShmTable::status`]:
//!
//! - **Dead**: nothing.
//! - **Pending**: one side offered at its `va`. As in mC2, the offer already
//!   allocates the page, charged to the *offerer's* container, and maps it
//!   read/write at `va` in the offerer's space (share count 1): an offer
//!   that cannot be paid for fails at once, with the offerer.
//! - **Ready**: the other side offered too, at its own `va`: the same frame
//!   is mapped there as well and its share count is 2. It stays charged to the
//!   first offerer's container.
//!
//! [`ShmTable::revoke_all`] (a process exits) or [`ShmTable::revoke`] (one
//! link) unmaps the page from both parties, drops both references (the last
//! one frees and uncharges the frame) and sets the link back to Dead. The
//! kernel must revoke a process's links while its address space still exists,
//! i.e. before [`AddressSpace::destroy`].
//!
//! The effects (allocate, map, unmap, free) go through the [`ShmHost`] trait:
//! [`SpaceTable`] implements it over real [`AddressSpace`]s and the
//! [`AllocTable`](crate::AllocTable); the model checks implement it over the
//! abstract models. The table is plain data: the kernel keeps it behind a
//! lock taken before any space's lock.

use crate::container::ContainerId;
use crate::frames::Frame;
use crate::paging::{check_user_va, AddressSpace, Flush, Mm, PhysAccess, Rights};
use crate::MmError;

/// A process id as the shared-memory table knows it: `0..N`.
pub type ProcId = usize;

/// Most processes the kernel's table serves.
pub const MAX_PROCS: usize = 64;

/// The kernel's table (64 × 64 links, about 200 KiB: construct it in a `static`).
pub type Shm = ShmTable<MAX_PROCS>;

/// A link as one party sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShmStatus {
    /// Nothing shared, nothing offered.
    Dead,
    /// I offered; the page is mapped at `va` in my space; the peer has not answered.
    Offered { va: u64 },
    /// The peer offered; I have not.
    Incoming,
    /// Shared: the page is mapped at `va` in my space (and in the peer's, at its own va).
    Ready { va: u64 },
}

/// The state of one pair. Sides: 0 = the lower id, 1 = the higher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Link {
    Dead,
    Pending { by: usize, va: u64, frame: Frame, payer: ContainerId },
    Ready { va: [u64; 2], frame: Frame, payer: ContainerId },
}

/// What the protocol needs from the rest of the kernel.
pub trait ShmHost {
    /// The container of process `id`, if `id` is a live process.
    fn container(&self, id: ProcId) -> Option<ContainerId>;
    /// The frame mapped at `va` in `id`'s space.
    fn translate(&self, id: ProcId, va: u64) -> Option<Frame>;
    /// A new frame charged to `c`.
    fn alloc_page(&mut self, c: ContainerId) -> Result<Frame, MmError>;
    /// One more reference to an allocated frame.
    fn share_page(&mut self, frame: Frame) -> Result<(), MmError>;
    /// Drop a reference to a frame charged to `c`; the last frees and
    /// uncharges it. Whether it was the last.
    fn put_page(&mut self, c: ContainerId, frame: Frame) -> Result<bool, MmError>;
    /// Map `frame` read/write for the user at `va` in `id`'s space.
    fn map(&mut self, id: ProcId, va: u64, frame: Frame) -> Result<(), MmError>;
    /// Unmap `va` from `id`'s space (the host flushes the TLB).
    fn unmap(&mut self, id: ProcId, va: u64) -> Result<Frame, MmError>;
}

/// The links between every pair of `N` processes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShmTable<const N: usize> {
    /// `links[lo][hi]` for `lo < hi`; the rest unused.
    links: [[Link; N]; N],
    /// Deliberate bugs for the checks to catch (tests only).
    #[cfg(test)]
    pub(crate) mutant: crate::tests::Mutant,
}

impl<const N: usize> Default for ShmTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ShmTable<N> {
    /// Every link Dead.
    pub const fn new() -> Self {
        ShmTable {
            links: [[Link::Dead; N]; N],
            #[cfg(test)]
            mutant: crate::tests::Mutant::None,
        }
    }

    /// (lower id, higher id, my side). Errors: `UnknownId`, `SelfShare`.
    fn pair(me: ProcId, peer: ProcId) -> Result<(usize, usize, usize), MmError> {
        if me >= N || peer >= N {
            return Err(MmError::UnknownId);
        }
        match me.cmp(&peer) {
            core::cmp::Ordering::Less => Ok((me, peer, 0)),
            core::cmp::Ordering::Greater => Ok((peer, me, 1)),
            core::cmp::Ordering::Equal => Err(MmError::SelfShare),
        }
    }

    /// The link between `me` and `peer` as `me` sees it.
    /// Errors: `UnknownId` (out of range), `SelfShare`.
    pub fn status(&self, me: ProcId, peer: ProcId) -> Result<ShmStatus, MmError> {
        let (lo, hi, side) = Self::pair(me, peer)?;
        Ok(match self.links[lo][hi] {
            Link::Dead => ShmStatus::Dead,
            Link::Pending { by, va, .. } if by == side => ShmStatus::Offered { va },
            Link::Pending { .. } => ShmStatus::Incoming,
            Link::Ready { va, .. } => ShmStatus::Ready { va: va[side] },
        })
    }

    /// The frame of the link between `me` and `peer`, if any (Pending or Ready).
    pub fn frame(&self, me: ProcId, peer: ProcId) -> Result<Option<Frame>, MmError> {
        let (lo, hi, _) = Self::pair(me, peer)?;
        Ok(match self.links[lo][hi] {
            Link::Dead => None,
            Link::Pending { frame, .. } | Link::Ready { frame, .. } => Some(frame),
        })
    }

    /// `me` offers to share a page with `peer`, at `va` in its own space.
    /// If `peer` has offered already, the pair becomes Ready; otherwise it
    /// becomes Pending (a page is allocated for and mapped in `me`).
    /// Returns `me`'s new status. On error nothing changes.
    ///
    /// Errors, in this order: `UnknownId` (out of range or not live),
    /// `SelfShare`, `NonCanonical`/`KernelAddress`/`Misaligned`,
    /// `AlreadyShared`, `AlreadyOffered`, `AlreadyMapped` (something is at
    /// `va` already), then `QuotaExceeded`/`OutOfMemory` from the allocation
    /// or from the page tables `map` needs.
    pub fn offer(
        &mut self,
        host: &mut impl ShmHost,
        me: ProcId,
        peer: ProcId,
        va: u64,
    ) -> Result<ShmStatus, MmError> {
        let (lo, hi, side) = Self::pair(me, peer)?;
        let mine = host.container(me).ok_or(MmError::UnknownId)?;
        host.container(peer).ok_or(MmError::UnknownId)?;
        check_user_va(va)?;
        let link = self.links[lo][hi];
        match link {
            Link::Ready { .. } => return Err(MmError::AlreadyShared),
            Link::Pending { by, .. } if by == side => return Err(MmError::AlreadyOffered),
            _ => {}
        }
        if host.translate(me, va).is_some() {
            return Err(MmError::AlreadyMapped);
        }
        match link {
            Link::Pending { by, va: their_va, frame, payer } => {
                host.share_page(frame)?;
                if let Err(e) = host.map(me, va, frame) {
                    let _ = host.put_page(payer, frame);
                    return Err(e);
                }
                let mut vas = [0; 2];
                vas[by] = their_va;
                vas[side] = va;
                self.links[lo][hi] = Link::Ready { va: vas, frame, payer };
                Ok(ShmStatus::Ready { va })
            }
            _ => {
                let frame = host.alloc_page(mine)?;
                if let Err(e) = host.map(me, va, frame) {
                    let _ = host.put_page(mine, frame);
                    return Err(e);
                }
                self.links[lo][hi] = Link::Pending { by: side, va, frame, payer: mine };
                Ok(ShmStatus::Offered { va })
            }
        }
    }

    /// Tear down the link between `me` and `peer` (either may): unmap the
    /// page from both, drop both references (freeing it), set it Dead.
    /// Returns whether there was anything. Errors: `UnknownId` (out of
    /// range), `SelfShare`; then only errors of a corrupted host, after which
    /// the link is Dead all the same.
    pub fn revoke(&mut self, host: &mut impl ShmHost, me: ProcId, peer: ProcId) -> Result<bool, MmError> {
        let (lo, hi, _) = Self::pair(me, peer)?;
        self.teardown(host, lo, hi)
    }

    /// Tear down every link of `id` (it is exiting). Returns how many links
    /// there were. Errors: `UnknownId` (out of range); see [`revoke`](Self::revoke).
    pub fn revoke_all(&mut self, host: &mut impl ShmHost, id: ProcId) -> Result<usize, MmError> {
        if id >= N {
            return Err(MmError::UnknownId);
        }
        let (mut n, mut first_err) = (0, None);
        for peer in (0..N).filter(|&p| p != id) {
            let (lo, hi) = (id.min(peer), id.max(peer));
            match self.teardown(host, lo, hi) {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => {
                    n += 1;
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(n), Err)
    }

    fn teardown(&mut self, host: &mut impl ShmHost, lo: usize, hi: usize) -> Result<bool, MmError> {
        let ids = [lo, hi];
        let link = core::mem::replace(&mut self.links[lo][hi], Link::Dead);
        // Unmap only what is still ours: a party that is gone, or a va the
        // kernel has remapped since, is left alone.
        let mut unmap = |id: ProcId, va: u64, frame: Frame| {
            if host.container(id).is_some() && host.translate(id, va) == Some(frame) {
                let _ = host.unmap(id, va);
            }
        };
        match link {
            Link::Dead => Ok(false),
            Link::Pending { by, va, frame, payer } => {
                unmap(ids[by], va, frame);
                host.put_page(payer, frame)?;
                Ok(true)
            }
            Link::Ready { va, frame, payer } => {
                unmap(ids[0], va[0], frame);
                unmap(ids[1], va[1], frame);
                let first = host.put_page(payer, frame);
                #[cfg(test)]
                if self.mutant == crate::tests::Mutant::RevokeDropsOneRef {
                    // Broken: the second reference is never dropped.
                    return first.map(|_| true);
                }
                host.put_page(payer, frame)?;
                first?;
                Ok(true)
            }
        }
    }
}

/// [`ShmHost`] over a table of address spaces indexed by process id (a slot
/// with no space is not a live process). `on_flush` receives the TLB work of
/// every unmap.
pub struct SpaceTable<'s, 'a, P: PhysAccess, F: FnMut(ProcId, Flush)> {
    pub mm: Mm<'a, P>,
    pub spaces: &'s mut [Option<AddressSpace<'a, P>>],
    pub on_flush: F,
}

impl<'a, P: PhysAccess, F: FnMut(ProcId, Flush)> SpaceTable<'_, 'a, P, F> {
    fn space(&mut self, id: ProcId) -> Result<&mut AddressSpace<'a, P>, MmError> {
        match self.spaces.get_mut(id) {
            Some(Some(s)) => Ok(s),
            _ => Err(MmError::UnknownId),
        }
    }
}

impl<P: PhysAccess, F: FnMut(ProcId, Flush)> ShmHost for SpaceTable<'_, '_, P, F> {
    fn container(&self, id: ProcId) -> Option<ContainerId> {
        self.spaces.get(id)?.as_ref().map(|s| s.container())
    }

    fn translate(&self, id: ProcId, va: u64) -> Option<Frame> {
        self.spaces.get(id)?.as_ref()?.translate(va).map(|(f, _)| f)
    }

    fn alloc_page(&mut self, c: ContainerId) -> Result<Frame, MmError> {
        self.mm.containers.alloc_page(self.mm.frames, c)
    }

    fn share_page(&mut self, frame: Frame) -> Result<(), MmError> {
        self.mm.frames.get_ref(frame).map(|_| ())
    }

    fn put_page(&mut self, c: ContainerId, frame: Frame) -> Result<bool, MmError> {
        self.mm.containers.put_page(self.mm.frames, c, frame)
    }

    fn map(&mut self, id: ProcId, va: u64, frame: Frame) -> Result<(), MmError> {
        self.space(id)?.map(va, frame, Rights::USER_RW)
    }

    fn unmap(&mut self, id: ProcId, va: u64) -> Result<Frame, MmError> {
        let (frame, flush) = self.space(id)?.unmap(va)?;
        (self.on_flush)(id, flush);
        Ok(frame)
    }
}
