//! Abstract models of the memory-management layers (mC2's layer specs).
//!
//! Compiled for tests and with the crate feature `spec` (it needs `alloc`:
//! the models are ordered maps, not fixed tables, so that they say *what* the
//! layers do without saying how). Each model has the same operations as its
//! implementation and returns the same results, errors included, in the same
//! order of checks; the refinement tests (`src/tests/`) run random operation
//! sequences on both and compare results and every observable after each
//! step.
//!
//! - [`Frames`]: the allocation table as a map frame → (owner, share count).
//! - [`Containers`]: the quota tree as a map id → [`ContainerInfo`].
//! - [`Space`]: an address space as a map page → (frame, rights), plus the
//!   set of page tables it holds (a table per 512 GiB / 1 GiB / 2 MiB region
//!   it has ever mapped into: tables are kept until the space is destroyed).
//! - [`Shm`]: the shared-memory links, a state machine per pair.
//! - [`System`]: all of them together, with the cross-layer operations
//!   (allocate a page for a container, map, offer...).
//!
//! Where the implementation chooses (which free frame), the model accepts any
//! legal choice: [`Frames::picks`] holds the implementation's choices as
//! witnesses, consumed in order; with none, the model takes the lowest free
//! frame (so it can also run alone, e.g. to generate test cases).

use crate::container::{ContainerId, ContainerInfo, MAX_CONTAINERS};
use crate::frames::{Frame, Owner, MAX_RUN};
use crate::paging::{check_user_va, Rights, MAX_PFN};
use crate::shm::{ProcId, ShmHost, ShmStatus};
use crate::{MmError, PAGE_SIZE};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

fn holder(owner: Owner) -> Result<Owner, MmError> {
    match owner {
        Owner::Kernel | Owner::Container(_) => Ok(owner),
        Owner::Free | Owner::Reserved => Err(MmError::InvalidOwner),
    }
}

/// The allocation table: every managed frame's owner and share count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frames {
    /// Frames `0..len` are described; the rest are outside RAM.
    pub len: u64,
    /// Managed frames (free ones with count 0); frames below `len` missing
    /// here are reserved.
    pub frames: BTreeMap<u64, (Owner, u32)>,
    /// Contiguous runs never cross a multiple of this.
    pub run_boundary: u64,
    /// Witnesses: the frames the implementation chose, for the next
    /// allocations (single frames and first frames of runs), in order.
    pub picks: VecDeque<Frame>,
}

impl Frames {
    /// The table over usable `regions` minus `exclusions` (byte ranges): a
    /// frame is managed iff it lies wholly inside a region and overlaps no
    /// exclusion. Errors: `BadRegion` (a range wraps, or over 2^32 - 1 frames).
    pub fn new(regions: &[(u64, u64)], exclusions: &[(u64, u64)], run_boundary: u64) -> Result<Frames, MmError> {
        let mut len = 0;
        for &(base, size) in regions {
            let end = base.checked_add(size).ok_or(MmError::BadRegion)?;
            if size > 0 {
                len = len.max(end / PAGE_SIZE);
            }
        }
        if len >= u32::MAX as u64 {
            return Err(MmError::BadRegion);
        }
        for &(base, size) in exclusions {
            base.checked_add(size).ok_or(MmError::BadRegion)?;
        }
        let mut frames = BTreeMap::new();
        for pfn in 0..len {
            let (lo, hi) = (pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
            let inside = regions.iter().any(|&(b, s)| b <= lo && hi <= b + s);
            let excluded = exclusions.iter().any(|&(b, s)| s > 0 && b < hi && lo < b + s);
            if inside && !excluded {
                frames.insert(pfn, (Owner::Free, 0));
            }
        }
        Ok(Frames { len, frames, run_boundary, picks: VecDeque::new() })
    }

    /// Managed frames.
    pub fn total(&self) -> usize {
        self.frames.len()
    }

    /// Free frames.
    pub fn free_count(&self) -> usize {
        self.frames.values().filter(|(o, _)| *o == Owner::Free).count()
    }

    /// Owner and share count of `f`.
    pub fn state(&self, f: Frame) -> Result<(Owner, u32), MmError> {
        if f.pfn() >= self.len {
            return Err(MmError::OutsideRam);
        }
        Ok(self.frames.get(&f.pfn()).copied().unwrap_or((Owner::Reserved, 0)))
    }

    /// Owner of `f`.
    pub fn owner(&self, f: Frame) -> Result<Owner, MmError> {
        self.state(f).map(|(o, _)| o)
    }

    fn is_free(&self, pfn: u64) -> bool {
        matches!(self.frames.get(&pfn), Some((Owner::Free, _)))
    }

    /// Allocate any free frame for `owner`. Errors: `InvalidOwner`, `OutOfMemory`.
    pub fn alloc(&mut self, owner: Owner) -> Result<Frame, MmError> {
        let owner = holder(owner)?;
        let pick = self.picks.pop_front().map(|f| f.pfn()).filter(|&p| self.is_free(p));
        let lowest = self.frames.iter().find(|(_, (o, _))| *o == Owner::Free).map(|(&p, _)| p);
        let pfn = pick.or(lowest).ok_or(MmError::OutOfMemory)?;
        self.frames.insert(pfn, (owner, 1));
        Ok(Frame::from_pfn(pfn))
    }

    /// Why `owner` may not release `f` (it must hold it).
    fn check_held(&self, f: Frame, owner: Owner) -> Result<u32, MmError> {
        match self.state(f)? {
            (Owner::Reserved, _) => Err(MmError::ReservedFrame),
            (Owner::Free, _) => Err(MmError::DoubleFree),
            (o, _) if o != owner => Err(MmError::WrongOwner),
            (_, refs) => Ok(refs),
        }
    }

    /// Free a frame `owner` holds unshared. Errors: `OutsideRam`,
    /// `InvalidOwner`, `ReservedFrame`, `DoubleFree`, `WrongOwner`, `StillShared`.
    pub fn free(&mut self, f: Frame, owner: Owner) -> Result<(), MmError> {
        self.state(f)?;
        let owner = holder(owner)?;
        if self.check_held(f, owner)? > 1 {
            return Err(MmError::StillShared);
        }
        self.frames.insert(f.pfn(), (Owner::Free, 0));
        Ok(())
    }

    /// One more reference. Errors: `OutsideRam`, `ReservedFrame`, `NotAllocated`, `TooManyRefs`.
    pub fn get_ref(&mut self, f: Frame) -> Result<u32, MmError> {
        match self.state(f)? {
            (Owner::Reserved, _) => Err(MmError::ReservedFrame),
            (Owner::Free, _) => Err(MmError::NotAllocated),
            (o, refs) => {
                let refs = refs.checked_add(1).ok_or(MmError::TooManyRefs)?;
                self.frames.insert(f.pfn(), (o, refs));
                Ok(refs)
            }
        }
    }

    /// Drop a reference; the last frees. Errors as [`free`](Self::free) but `StillShared`.
    pub fn put_ref(&mut self, f: Frame, owner: Owner) -> Result<bool, MmError> {
        self.state(f)?;
        let owner = holder(owner)?;
        let refs = self.check_held(f, owner)?;
        if refs > 1 {
            self.frames.insert(f.pfn(), (owner, refs - 1));
            Ok(false)
        } else {
            self.frames.insert(f.pfn(), (Owner::Free, 0));
            Ok(true)
        }
    }

    /// Whether `p..p+n` can be handed out as a run aligned to `align`.
    fn run_ok(&self, p: u64, n: u64, align: u64) -> bool {
        p.is_multiple_of(align)
            && p + n <= self.len
            && p / self.run_boundary == (p + n - 1) / self.run_boundary
            && (p..p + n).all(|q| self.is_free(q))
    }

    /// Allocate `n` contiguous free frames starting at a multiple of `align`,
    /// inside one run boundary. Errors: `InvalidOwner`, `InvalidRun`, `OutOfMemory`.
    pub fn alloc_contiguous(&mut self, n: usize, align: usize, owner: Owner) -> Result<Frame, MmError> {
        let owner = holder(owner)?;
        if n == 0 || n > MAX_RUN || !align.is_power_of_two() {
            return Err(MmError::InvalidRun);
        }
        let (n, align) = (n as u64, align as u64);
        let pick = self.picks.pop_front().map(|f| f.pfn()).filter(|&p| self.run_ok(p, n, align));
        let first = pick.or_else(|| (0..self.len).find(|&p| self.run_ok(p, n, align)));
        let first = first.ok_or(MmError::OutOfMemory)?;
        for q in first..first + n {
            self.frames.insert(q, (owner, 1));
        }
        Ok(Frame::from_pfn(first))
    }

    /// Free a run all held unshared by `owner`; all or nothing. Errors:
    /// `InvalidRun`, `OutsideRam`, `InvalidOwner`, then as `free` for the
    /// first frame of the run that is not held.
    pub fn free_contiguous(&mut self, first: Frame, n: usize, owner: Owner) -> Result<(), MmError> {
        if n == 0 || n > MAX_RUN {
            return Err(MmError::InvalidRun);
        }
        match first.pfn().checked_add(n as u64) {
            Some(end) if end <= self.len => {}
            _ => return Err(MmError::OutsideRam),
        }
        let owner = holder(owner)?;
        for q in first.pfn()..first.pfn() + n as u64 {
            if self.check_held(Frame::from_pfn(q), owner)? > 1 {
                return Err(MmError::StillShared);
            }
        }
        for q in first.pfn()..first.pfn() + n as u64 {
            self.frames.insert(q, (Owner::Free, 0));
        }
        Ok(())
    }
}

/// The quota tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Containers {
    /// Live containers.
    pub nodes: BTreeMap<u16, ContainerInfo>,
    /// Most live containers.
    pub capacity: usize,
}

impl Default for Containers {
    fn default() -> Self {
        Containers { nodes: BTreeMap::new(), capacity: MAX_CONTAINERS }
    }
}

impl Containers {
    fn get(&mut self, c: ContainerId) -> Result<&mut ContainerInfo, MmError> {
        self.nodes.get_mut(&(c.index() as u16)).filter(|_| c.index() < self.capacity).ok_or(MmError::NoSuchContainer)
    }

    /// Create the root (id 0). Errors: `RootExists`.
    pub fn root(&mut self, quota: u64) -> Result<ContainerId, MmError> {
        if self.nodes.contains_key(&0) {
            return Err(MmError::RootExists);
        }
        self.nodes.insert(0, ContainerInfo::fresh(quota, None));
        Ok(ContainerId::ROOT)
    }

    /// The containers from `c` up to the root.
    fn chain(&self, c: ContainerId) -> Vec<u16> {
        let mut out = Vec::new();
        let mut at = Some(c.index() as u16);
        while let Some(i) = at {
            out.push(i);
            at = self.nodes.get(&i).and_then(|n| n.parent).map(|p| p.index() as u16);
        }
        out
    }

    /// A container below the first of `chain` came (`delta` 1) or went (-1).
    fn add_descendant(&mut self, chain: &[u16], delta: i32) {
        for a in chain {
            let n = self.nodes.get_mut(a).expect("on the chain");
            n.descendants = n.descendants.wrapping_add_signed(delta);
        }
    }

    /// Whether `c` lies below `ancestor` (strictly).
    pub fn is_below(&self, c: ContainerId, ancestor: ContainerId) -> bool {
        self.nodes.contains_key(&(c.index() as u16)) && self.chain(c)[1..].contains(&(ancestor.index() as u16))
    }

    /// How many live containers lie below `c`, counted afresh.
    pub fn count_below(&self, c: ContainerId) -> u32 {
        self.nodes.keys().filter(|&&i| i != c.index() as u16 && self.chain(ContainerId::new(i)).contains(&(c.index() as u16))).count() as u32
    }

    /// A child of `parent` with `quota` (lowest free id). Errors:
    /// `NoSuchContainer`, `QuotaExceeded`, `LimitReached` (a container on the
    /// way up has `limit` containers below it), `TooManyContainers`.
    pub fn split(&mut self, parent: ContainerId, quota: u64) -> Result<ContainerId, MmError> {
        let cap = self.capacity;
        let p = self.get(parent)?;
        match p.usage.checked_add(quota) {
            Some(u) if u <= p.quota => {}
            _ => return Err(MmError::QuotaExceeded),
        }
        let chain = self.chain(parent);
        if chain.iter().any(|&a| self.count_below(ContainerId::new(a)) >= self.nodes[&a].limit) {
            return Err(MmError::LimitReached);
        }
        let id = (0..cap as u16).find(|i| !self.nodes.contains_key(i)).ok_or(MmError::TooManyContainers)?;
        let p = self.get(parent)?;
        p.usage += quota;
        p.children += 1;
        self.add_descendant(&chain, 1);
        self.nodes.insert(id, ContainerInfo::fresh(quota, Some(parent)));
        Ok(ContainerId::new(id))
    }

    /// Set `c`'s limit of containers below it. Errors: `NoSuchContainer`.
    pub fn set_limit(&mut self, c: ContainerId, limit: u32) -> Result<(), MmError> {
        self.get(c)?.limit = limit;
        Ok(())
    }

    /// Remove a childless, pageless, non-root container; its quota goes back.
    /// Errors: `NoSuchContainer`, `IsRoot`, `HasChildren`, `HasPages`.
    pub fn destroy(&mut self, c: ContainerId) -> Result<(), MmError> {
        let info = *self.get(c)?;
        let parent = info.parent.ok_or(MmError::IsRoot)?;
        if info.children > 0 {
            return Err(MmError::HasChildren);
        }
        if info.own > 0 {
            return Err(MmError::HasPages);
        }
        self.nodes.remove(&(c.index() as u16));
        let p = self.get(parent)?;
        p.usage -= info.quota;
        p.children -= 1;
        let chain = self.chain(parent);
        self.add_descendant(&chain, -1);
        Ok(())
    }

    /// Charge `n` own pages. Errors: `NoSuchContainer`, `QuotaExceeded`.
    pub fn charge(&mut self, c: ContainerId, n: u64) -> Result<(), MmError> {
        let info = self.get(c)?;
        match info.usage.checked_add(n) {
            Some(u) if u <= info.quota => {
                info.usage = u;
                info.own += n;
                Ok(())
            }
            _ => Err(MmError::QuotaExceeded),
        }
    }

    /// Uncharge `n` own pages. Errors: `NoSuchContainer`, `NotCharged`.
    pub fn uncharge(&mut self, c: ContainerId, n: u64) -> Result<(), MmError> {
        let info = self.get(c)?;
        if n > info.own {
            return Err(MmError::NotCharged);
        }
        info.own -= n;
        info.usage -= n;
        Ok(())
    }

    /// `quota - usage`. Errors: `NoSuchContainer`.
    pub fn remaining(&mut self, c: ContainerId) -> Result<u64, MmError> {
        self.get(c).map(|i| i.quota - i.usage)
    }

    /// A container. Errors: `NoSuchContainer`.
    pub fn info(&mut self, c: ContainerId) -> Result<ContainerInfo, MmError> {
        self.get(c).copied()
    }
}

/// An address space: its pages, and the page tables it holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Space {
    pub container: ContainerId,
    pub root: Frame,
    /// Tables below the root, keyed by (level, the va bits above what the
    /// table covers): (3, va >> 39) PDPT, (2, va >> 30) PD, (1, va >> 21) PT.
    pub tables: BTreeMap<(u32, u64), Frame>,
    /// Mapped pages.
    pub pages: BTreeMap<u64, (Frame, Rights)>,
}

impl Space {
    /// Tables a mapping at `va` needs that the space does not have.
    pub fn missing_tables(&self, va: u64) -> Vec<(u32, u64)> {
        [(3, va >> 39), (2, va >> 30), (1, va >> 21)].into_iter().filter(|k| !self.tables.contains_key(k)).collect()
    }
}

/// One shared-memory link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Link {
    /// `by` offered; the page is mapped at `va` in its space; `payer` pays.
    Pending { by: ProcId, va: u64, frame: Frame, payer: ContainerId },
    /// `first` offered at `first_va`, then `second` at `second_va`.
    Ready { first: ProcId, first_va: u64, second: ProcId, second_va: u64, frame: Frame, payer: ContainerId },
}

/// The shared-memory links of `n` processes (absent: Dead).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shm {
    pub n: usize,
    /// Keyed by (lower id, higher id).
    pub links: BTreeMap<(ProcId, ProcId), Link>,
}

impl Shm {
    /// Validate a pair. Errors: `UnknownId`, `SelfShare`.
    fn key(&self, me: ProcId, peer: ProcId) -> Result<(ProcId, ProcId), MmError> {
        if me >= self.n || peer >= self.n {
            return Err(MmError::UnknownId);
        }
        if me == peer {
            return Err(MmError::SelfShare);
        }
        Ok((me.min(peer), me.max(peer)))
    }

    /// The link as `me` sees it.
    pub fn status(&self, me: ProcId, peer: ProcId) -> Result<ShmStatus, MmError> {
        let key = self.key(me, peer)?;
        Ok(match self.links.get(&key) {
            None => ShmStatus::Dead,
            Some(&Link::Pending { by, va, .. }) if by == me => ShmStatus::Offered { va },
            Some(Link::Pending { .. }) => ShmStatus::Incoming,
            Some(&Link::Ready { first, first_va, second_va, .. }) => {
                ShmStatus::Ready { va: if first == me { first_va } else { second_va } }
            }
        })
    }
}

/// The pages a destroyed space still mapped: (va, frame, rights).
pub type Leaves = Vec<(u64, Frame, Rights)>;

/// The whole memory-management state: frames, containers, address spaces
/// (by process id) and shared-memory links.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct System {
    pub frames: Frames,
    pub containers: Containers,
    pub spaces: BTreeMap<ProcId, Space>,
    pub shm: Shm,
}

impl System {
    /// A system over `frames` with no containers, spaces or links, for `procs` processes.
    pub fn new(frames: Frames, procs: usize) -> System {
        System { frames, containers: Containers::default(), spaces: BTreeMap::new(), shm: Shm { n: procs, links: BTreeMap::new() } }
    }

    /// Charge then allocate. Errors: `NoSuchContainer`, `QuotaExceeded`, `OutOfMemory`.
    pub fn alloc_page(&mut self, c: ContainerId) -> Result<Frame, MmError> {
        self.containers.charge(c, 1)?;
        self.frames.alloc(Owner::Container(c)).inspect_err(|_| {
            let _ = self.containers.uncharge(c, 1);
        })
    }

    /// Free then uncharge.
    pub fn free_page(&mut self, c: ContainerId, f: Frame) -> Result<(), MmError> {
        self.frames.free(f, Owner::Container(c))?;
        self.containers.uncharge(c, 1)
    }

    /// Drop a reference; uncharge if it was the last.
    pub fn put_page(&mut self, c: ContainerId, f: Frame) -> Result<bool, MmError> {
        let freed = self.frames.put_ref(f, Owner::Container(c))?;
        if freed {
            self.containers.uncharge(c, 1)?;
        }
        Ok(freed)
    }

    /// A new, empty space for process `id` (replacing none) charged to `c`.
    pub fn new_space(&mut self, id: ProcId, c: ContainerId) -> Result<(), MmError> {
        let root = self.alloc_page(c)?;
        self.spaces.insert(id, Space { container: c, root, tables: BTreeMap::new(), pages: BTreeMap::new() });
        Ok(())
    }

    fn space(&self, id: ProcId) -> Result<&Space, MmError> {
        self.spaces.get(&id).ok_or(MmError::UnknownId)
    }

    /// What `va` maps to in `id`'s space.
    pub fn translate(&self, id: ProcId, va: u64) -> Option<(Frame, Rights)> {
        let page = va & !(PAGE_SIZE - 1);
        check_user_va(page).ok()?;
        self.spaces.get(&id)?.pages.get(&page).copied()
    }

    /// Map a page; the tables it needs are charged all at once, all or nothing.
    pub fn map(&mut self, id: ProcId, va: u64, f: Frame, rights: Rights) -> Result<(), MmError> {
        let s = self.space(id)?;
        check_user_va(va)?;
        if f.pfn() >= MAX_PFN {
            return Err(MmError::BadFrame);
        }
        if s.pages.contains_key(&va) {
            return Err(MmError::AlreadyMapped);
        }
        let (c, missing) = (s.container, s.missing_tables(va));
        if !missing.is_empty() {
            self.containers.charge(c, missing.len() as u64)?;
            let mut got = Vec::new();
            for _ in &missing {
                match self.frames.alloc(Owner::Container(c)) {
                    Ok(t) => got.push(t),
                    Err(e) => {
                        for t in got {
                            let _ = self.frames.free(t, Owner::Container(c));
                        }
                        let _ = self.containers.uncharge(c, missing.len() as u64);
                        return Err(e);
                    }
                }
            }
            let s = self.spaces.get_mut(&id).ok_or(MmError::UnknownId)?;
            s.tables.extend(missing.into_iter().zip(got));
        }
        let s = self.spaces.get_mut(&id).ok_or(MmError::UnknownId)?;
        s.pages.insert(va, (f, rights));
        Ok(())
    }

    /// Unmap a page; returns its frame.
    pub fn unmap(&mut self, id: ProcId, va: u64) -> Result<Frame, MmError> {
        self.space(id)?;
        check_user_va(va)?;
        let s = self.spaces.get_mut(&id).ok_or(MmError::UnknownId)?;
        s.pages.remove(&va).map(|(f, _)| f).ok_or(MmError::NotMapped)
    }

    /// Change a page's rights.
    pub fn protect(&mut self, id: ProcId, va: u64, rights: Rights) -> Result<(), MmError> {
        self.space(id)?;
        check_user_va(va)?;
        let s = self.spaces.get_mut(&id).ok_or(MmError::UnknownId)?;
        let page = s.pages.get_mut(&va).ok_or(MmError::NotMapped)?;
        page.1 = rights;
        Ok(())
    }

    /// Remove `id`'s space, freeing its tables and root; returns the number
    /// of table pages freed and the pages still mapped (not freed).
    pub fn destroy_space(&mut self, id: ProcId) -> Result<(usize, Leaves), MmError> {
        let s = self.spaces.remove(&id).ok_or(MmError::UnknownId)?;
        let mut n = 0;
        for &t in s.tables.values().chain([&s.root]) {
            self.free_page(s.container, t)?;
            n += 1;
        }
        Ok((n, s.pages.iter().map(|(&va, &(f, r))| (va, f, r)).collect()))
    }

    /// `me` offers a page to `peer` at `va` (see [`crate::shm::ShmTable::offer`]).
    pub fn offer(&mut self, me: ProcId, peer: ProcId, va: u64) -> Result<ShmStatus, MmError> {
        let key = self.shm.key(me, peer)?;
        let mine = self.spaces.get(&me).ok_or(MmError::UnknownId)?.container;
        self.space(peer)?;
        check_user_va(va)?;
        let link = self.shm.links.get(&key).copied();
        match link {
            Some(Link::Ready { .. }) => return Err(MmError::AlreadyShared),
            Some(Link::Pending { by, .. }) if by == me => return Err(MmError::AlreadyOffered),
            _ => {}
        }
        if self.translate(me, va).is_some() {
            return Err(MmError::AlreadyMapped);
        }
        if let Some(Link::Pending { by, va: by_va, frame, payer }) = link {
            self.frames.get_ref(frame)?;
            if let Err(e) = self.map(me, va, frame, Rights::USER_RW) {
                let _ = self.put_page(payer, frame);
                return Err(e);
            }
            let ready = Link::Ready { first: by, first_va: by_va, second: me, second_va: va, frame, payer };
            self.shm.links.insert(key, ready);
            Ok(ShmStatus::Ready { va })
        } else {
            let frame = self.alloc_page(mine)?;
            if let Err(e) = self.map(me, va, frame, Rights::USER_RW) {
                let _ = self.put_page(mine, frame);
                return Err(e);
            }
            self.shm.links.insert(key, Link::Pending { by: me, va, frame, payer: mine });
            Ok(ShmStatus::Offered { va })
        }
    }

    /// Unmap `va` from `id` if it is live and still maps `frame` there.
    fn unmap_if(&mut self, id: ProcId, va: u64, frame: Frame) {
        if self.translate(id, va).map(|(f, _)| f) == Some(frame) {
            let _ = self.unmap(id, va);
        }
    }

    fn teardown(&mut self, key: (ProcId, ProcId)) -> Result<bool, MmError> {
        match self.shm.links.remove(&key) {
            None => Ok(false),
            Some(Link::Pending { by, va, frame, payer }) => {
                self.unmap_if(by, va, frame);
                self.put_page(payer, frame)?;
                Ok(true)
            }
            Some(Link::Ready { first, first_va, second, second_va, frame, payer }) => {
                self.unmap_if(first, first_va, frame);
                self.unmap_if(second, second_va, frame);
                let a = self.put_page(payer, frame);
                self.put_page(payer, frame)?;
                a?;
                Ok(true)
            }
        }
    }

    /// Tear down one link.
    pub fn revoke(&mut self, me: ProcId, peer: ProcId) -> Result<bool, MmError> {
        let key = self.shm.key(me, peer)?;
        self.teardown(key)
    }

    /// Tear down every link of `id`; how many there were.
    pub fn revoke_all(&mut self, id: ProcId) -> Result<usize, MmError> {
        if id >= self.shm.n {
            return Err(MmError::UnknownId);
        }
        let keys: Vec<_> = self.shm.links.keys().copied().filter(|&(a, b)| a == id || b == id).collect();
        let mut n = 0;
        for k in keys {
            self.teardown(k)?;
            n += 1;
        }
        Ok(n)
    }

    /// Frames owned by container `c`.
    pub fn owned_by(&self, c: ContainerId) -> u64 {
        self.frames.frames.values().filter(|(o, _)| *o == Owner::Container(c)).count() as u64
    }

    /// The invariants of the whole model; the first broken one.
    pub fn check(&self) -> Result<(), &'static str> {
        for (&id, info) in &self.containers.nodes {
            if info.usage > info.quota {
                return Err("usage above quota");
            }
            let children: u64 = self
                .containers
                .nodes
                .values()
                .filter(|n| n.parent == Some(ContainerId::new(id)))
                .map(|n| n.quota)
                .sum();
            if info.usage != info.own + children {
                return Err("usage is not own + children's quotas");
            }
            if self.owned_by(ContainerId::new(id)) != info.own {
                return Err("conservation: frames owned differ from own pages");
            }
        }
        for (key, link) in &self.shm.links {
            if let Link::Ready { first, first_va, second, second_va, frame, .. } = *link {
                if (first.min(second), first.max(second)) != *key {
                    return Err("link under the wrong pair");
                }
                let a = self.translate(first, first_va).map(|(f, _)| f);
                let b = self.translate(second, second_va).map(|(f, _)| f);
                if a != Some(frame) || b != Some(frame) {
                    return Err("a Ready pair does not map its frame in both spaces");
                }
            }
        }
        Ok(())
    }
}

/// The model as the host of the real shared-memory table (for model checking
/// [`crate::shm::ShmTable`] itself).
impl ShmHost for System {
    fn container(&self, id: ProcId) -> Option<ContainerId> {
        self.spaces.get(&id).map(|s| s.container)
    }

    fn translate(&self, id: ProcId, va: u64) -> Option<Frame> {
        System::translate(self, id, va).map(|(f, _)| f)
    }

    fn alloc_page(&mut self, c: ContainerId) -> Result<Frame, MmError> {
        System::alloc_page(self, c)
    }

    fn share_page(&mut self, frame: Frame) -> Result<(), MmError> {
        self.frames.get_ref(frame).map(|_| ())
    }

    fn put_page(&mut self, c: ContainerId, frame: Frame) -> Result<bool, MmError> {
        System::put_page(self, c, frame)
    }

    fn map(&mut self, id: ProcId, va: u64, frame: Frame) -> Result<(), MmError> {
        System::map(self, id, va, frame, Rights::USER_RW)
    }

    fn unmap(&mut self, id: ProcId, va: u64) -> Result<Frame, MmError> {
        System::unmap(self, id, va)
    }
}
