//! Physical memory: mC2's page allocation table.
//!
//! One [`FrameEntry`] per 4 KiB frame from physical address 0 up to the end of
//! the highest usable region. Each entry holds the frame's owner and share
//! count in one atomic word, so ownership checks (double free, freeing another
//! owner's page) are a single compare-and-swap and need no lock. Free frames
//! are kept in two places:
//!
//! - **stripes**: [`STRIPES`] doubly linked free lists threaded through the
//!   entries, stripe `s` holding the free frames of one aligned range of
//!   physical memory, each list behind its own [`SpinLock`];
//! - **per-CPU caches** (magazines) of up to [`CACHE_SIZE`] frames, indexed by
//!   `machine::cpu::id()`, refilled from and drained to the stripes
//!   [`BATCH`] frames at a time.
//!
//! `alloc` on CPU c takes from c's cache; an empty cache is refilled from c's
//! home stripe, then from the other stripes; when every stripe is empty the
//! frame is taken from another CPU's cache. `free` puts the frame in c's cache,
//! spilling the oldest [`BATCH`] frames to their stripes when it is full. Both
//! are O(1) apart from the amortised batch moves. [`AllocTable::alloc_contiguous`]
//! scans (see there).
//!
//! ## Locking
//! Lock order: caches before stripes, each kind in ascending index order.
//! `alloc`/`free` hold at most their own cache and one stripe; stealing from
//! another CPU's cache happens with no other lock held; only
//! [`AllocTable::check_integrity`] holds several locks of a kind.
//!
//! ## Entry states
//! An entry's owner code says where the frame is: `LISTED` (free, on its
//! stripe's list: changed only under that stripe's lock), `CACHED` (free, in a
//! per-CPU cache or being moved by the CPU that holds it), `RESERVED` (never
//! allocatable), `KERNEL`, or a container. The share count is 1 on
//! allocation and 0 while free.

use crate::container::ContainerId;
use crate::{MmError, PAGE_SHIFT, PAGE_SIZE};
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use lock::SpinLock;
use machine::cpu::MAX_CPUS;

/// Number of free-list stripes (each with its own lock).
pub const STRIPES: usize = 8;
/// Capacity of one CPU's frame cache.
pub const CACHE_SIZE: usize = 32;
/// Frames moved between a cache and the stripes at a time.
pub const BATCH: usize = 16;
/// Longest run [`AllocTable::alloc_contiguous`] hands out.
pub const MAX_RUN: usize = 64;
/// Smallest stripe, in frames (a power of two): short tables use fewer stripes.
const MIN_STRIPE_SHIFT: u32 = 6;

// Owner codes (low 32 bits of an entry's state word).
const RESERVED: u32 = 0; // all-zero storage reads as reserved
const LISTED: u32 = 1;
const CACHED: u32 = 2;
const KERNEL: u32 = 3;
const CONTAINER_BASE: u32 = 4;
/// End of a free list.
const NIL: u32 = u32::MAX;

/// A 4 KiB physical frame, named by its frame number (physical address >> 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frame(u64);

impl Frame {
    /// The frame with number `pfn`.
    #[inline]
    pub const fn from_pfn(pfn: u64) -> Frame {
        Frame(pfn)
    }

    /// The frame starting at physical address `addr`; `Misaligned` unless
    /// `addr` is 4 KiB aligned.
    #[inline]
    pub const fn from_addr(addr: u64) -> Result<Frame, MmError> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(MmError::Misaligned);
        }
        Ok(Frame(addr >> PAGE_SHIFT))
    }

    /// Frame number.
    #[inline]
    pub const fn pfn(self) -> u64 {
        self.0
    }

    /// Physical address of the frame's first byte.
    #[inline]
    pub const fn addr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
}

/// Who holds a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// Free: on a free list or in a CPU's cache.
    Free,
    /// Not allocatable: a hole in the memory map, firmware, the kernel image,
    /// boot modules, the table itself, or anything else excluded at boot.
    Reserved,
    /// Allocated by the kernel for itself (not charged to any container).
    Kernel,
    /// Allocated by (and charged to) a container.
    Container(ContainerId),
}

/// One frame's entry in the allocation table (16 bytes).
///
/// All-zero bytes are a valid entry, so the kernel may carve the storage out
/// of any RAM; [`AllocTable::new`] initialises every entry anyway.
#[repr(C)]
pub struct FrameEntry {
    /// Owner code (low 32 bits) and share count (high 32 bits).
    state: AtomicU64,
    /// Free-list links (frame numbers, `NIL` at the ends); meaningful only
    /// while the frame is `LISTED`, and then only under its stripe's lock.
    next: AtomicU32,
    prev: AtomicU32,
}

impl FrameEntry {
    /// A blank entry (reserved, unlinked).
    pub const fn new() -> FrameEntry {
        FrameEntry { state: AtomicU64::new(0), next: AtomicU32::new(NIL), prev: AtomicU32::new(NIL) }
    }

    fn load(&self) -> (u32, u32) {
        unpack(self.state.load(Ordering::Acquire))
    }
}

impl Default for FrameEntry {
    fn default() -> Self {
        Self::new()
    }
}

const _: () = assert!(core::mem::size_of::<FrameEntry>() == 16);

#[inline]
const fn pack(code: u32, refs: u32) -> u64 {
    code as u64 | (refs as u64) << 32
}

#[inline]
const fn unpack(state: u64) -> (u32, u32) {
    (state as u32, (state >> 32) as u32)
}

/// The owner code of an owner that may hold frames.
fn code_of(owner: Owner) -> Result<u32, MmError> {
    match owner {
        Owner::Kernel => Ok(KERNEL),
        Owner::Container(c) => Ok(CONTAINER_BASE + c.index() as u32),
        Owner::Free | Owner::Reserved => Err(MmError::InvalidOwner),
    }
}

fn owner_of(code: u32) -> Owner {
    match code {
        RESERVED => Owner::Reserved,
        LISTED | CACHED => Owner::Free,
        KERNEL => Owner::Kernel,
        c => Owner::Container(ContainerId::new((c - CONTAINER_BASE) as u16)),
    }
}

/// Why a compare-and-swap from "held by `code`, share count 1" failed.
fn why_not_held(state: u64, code: u32) -> MmError {
    match unpack(state) {
        (RESERVED, _) => MmError::ReservedFrame,
        (LISTED | CACHED, _) => MmError::DoubleFree,
        (c, _) if c != code => MmError::WrongOwner,
        _ => MmError::StillShared,
    }
}

/// One stripe's free list.
struct FreeList {
    head: u32,
    len: usize,
}

impl FreeList {
    const EMPTY: FreeList = FreeList { head: NIL, len: 0 };
}

/// A CPU's cache of free frames (a stack: the most recently freed on top).
struct Cache {
    frames: [u32; CACHE_SIZE],
    len: usize,
}

impl Cache {
    const EMPTY: Cache = Cache { frames: [NIL; CACHE_SIZE], len: 0 };

    fn pop(&mut self) -> Option<u32> {
        self.len = self.len.checked_sub(1)?;
        Some(self.frames[self.len])
    }
}

// Free-list operations on entries; the caller holds the list's stripe lock.

fn push(entries: &[FrameEntry], list: &mut FreeList, pfn: u32) {
    let e = &entries[pfn as usize];
    e.prev.store(NIL, Ordering::Relaxed);
    e.next.store(list.head, Ordering::Relaxed);
    if list.head != NIL {
        entries[list.head as usize].prev.store(pfn, Ordering::Relaxed);
    }
    list.head = pfn;
    list.len += 1;
    e.state.store(pack(LISTED, 0), Ordering::Release);
}

/// Remove `pfn` (which is on `list`) from the list; its state is left to the caller.
fn unlink(entries: &[FrameEntry], list: &mut FreeList, pfn: u32) {
    let e = &entries[pfn as usize];
    let (prev, next) = (e.prev.load(Ordering::Relaxed), e.next.load(Ordering::Relaxed));
    if prev == NIL {
        list.head = next;
    } else {
        entries[prev as usize].next.store(next, Ordering::Relaxed);
    }
    if next != NIL {
        entries[next as usize].prev.store(prev, Ordering::Relaxed);
    }
    list.len -= 1;
}

/// The page allocation table: owner and share count of every frame, and the
/// free frames. Shared by all CPUs (`&self` everywhere).
pub struct AllocTable<'a> {
    entries: &'a [FrameEntry],
    stripes: [SpinLock<FreeList>; STRIPES],
    caches: [SpinLock<Cache>; MAX_CPUS],
    /// Stripe of frame p: p >> stripe_shift.
    stripe_shift: u32,
    /// Stripes that cover some entry.
    used_stripes: usize,
    /// Frames that were free after initialisation (the managed frames).
    total: usize,
    /// Frames free now (listed + cached); exact whenever no operation is in flight.
    free: AtomicUsize,
    /// Deliberate bugs for the checks to catch (tests only).
    #[cfg(test)]
    pub(crate) mutant: crate::tests::Mutant,
    /// When Some, the frames handed out (first frame of a run), in order:
    /// the refinement tests give them to the model as witnesses.
    #[cfg(test)]
    pub(crate) trace: std::sync::Mutex<Option<std::vec::Vec<Frame>>>,
}

impl<'a> AllocTable<'a> {
    /// Entries the table needs for these usable `(base, len)` regions: one per
    /// frame from 0 to the end of the highest region. `BadRegion` if a region
    /// wraps or the table would exceed 2^32 - 1 entries (16 TiB).
    pub fn entries_needed(regions: &[(u64, u64)]) -> Result<usize, MmError> {
        let mut end = 0;
        for &(base, len) in regions {
            let top = base.checked_add(len).ok_or(MmError::BadRegion)?;
            if len != 0 {
                end = end.max(top >> PAGE_SHIFT);
            }
        }
        if end >= NIL as u64 {
            return Err(MmError::BadRegion);
        }
        Ok(end as usize)
    }

    /// Build the table over `storage` (at least
    /// [`entries_needed`](Self::entries_needed)`(regions)` entries). Frames
    /// wholly inside a region are free unless they overlap an exclusion
    /// (kernel image, modules, low memory, ACPI, the storage itself...);
    /// everything else is reserved. Exclusions beyond the table are ignored.
    pub fn new(
        storage: &'a mut [FrameEntry],
        regions: &[(u64, u64)],
        exclusions: &[(u64, u64)],
    ) -> Result<AllocTable<'a>, MmError> {
        let n = Self::entries_needed(regions)?;
        if storage.len() < n {
            return Err(MmError::TableTooSmall);
        }
        for &(base, len) in exclusions {
            base.checked_add(len).ok_or(MmError::BadRegion)?;
        }
        let storage: &'a [FrameEntry] = storage;
        let entries = &storage[..n];
        for e in entries {
            e.state.store(pack(RESERVED, 0), Ordering::Relaxed);
            e.next.store(NIL, Ordering::Relaxed);
            e.prev.store(NIL, Ordering::Relaxed);
        }
        for &(base, len) in regions {
            // Only whole frames inside the region are usable.
            let first = base.div_ceil(PAGE_SIZE);
            let end = (base + len) / PAGE_SIZE;
            for pfn in first..end {
                entries[pfn as usize].state.store(pack(LISTED, 0), Ordering::Relaxed);
            }
        }
        for &(base, len) in exclusions.iter().filter(|&&(_, len)| len != 0) {
            // Any frame an exclusion touches is reserved.
            let first = base / PAGE_SIZE;
            let end = (base + len).div_ceil(PAGE_SIZE).min(n as u64);
            for pfn in first..end {
                entries[pfn as usize].state.store(pack(RESERVED, 0), Ordering::Relaxed);
            }
        }
        let per_stripe = n.div_ceil(STRIPES).max(1);
        let stripe_shift = per_stripe.next_power_of_two().trailing_zeros().max(MIN_STRIPE_SHIFT);
        let used_stripes = n.div_ceil(1 << stripe_shift).max(1);
        let mut table = AllocTable {
            entries,
            stripes: [const { SpinLock::new(FreeList::EMPTY) }; STRIPES],
            caches: [const { SpinLock::new(Cache::EMPTY) }; MAX_CPUS],
            stripe_shift,
            used_stripes,
            total: 0,
            free: AtomicUsize::new(0),
            #[cfg(test)]
            mutant: crate::tests::Mutant::None,
            #[cfg(test)]
            trace: std::sync::Mutex::new(None),
        };
        // Push in descending order so each list starts at its lowest frame.
        let mut total = 0;
        for pfn in (0..n).rev() {
            if entries[pfn].load().0 == LISTED {
                let stripe = pfn >> stripe_shift;
                push(entries, table.stripes[stripe].get_mut(), pfn as u32);
                total += 1;
            }
        }
        table.total = total;
        table.free = AtomicUsize::new(total);
        Ok(table)
    }

    /// Frames managed by the table (free after initialisation).
    pub fn total_frames(&self) -> usize {
        self.total
    }

    /// Frames free now (exact when no allocation or free is in flight).
    pub fn free_frames(&self) -> usize {
        self.free.load(Ordering::Acquire)
    }

    /// Number of entries (frames 0..len are described).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table describes no frame at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Frames per stripe (a power of two); contiguous runs never cross a
    /// multiple of it.
    pub fn stripe_span(&self) -> u64 {
        1 << self.stripe_shift
    }

    fn entry(&self, frame: Frame) -> Result<&FrameEntry, MmError> {
        usize::try_from(frame.pfn()).ok().and_then(|i| self.entries.get(i)).ok_or(MmError::OutsideRam)
    }

    /// Current owner of `frame`.
    pub fn owner(&self, frame: Frame) -> Result<Owner, MmError> {
        Ok(owner_of(self.entry(frame)?.load().0))
    }

    /// Current share count of `frame` (0 when free or reserved).
    pub fn refs(&self, frame: Frame) -> Result<u32, MmError> {
        Ok(self.entry(frame)?.load().1)
    }

    /// This CPU's index, clamped defensively into the cache array.
    #[inline]
    fn cpu() -> usize {
        machine::cpu::id() % MAX_CPUS
    }

    /// Allocate one frame for `owner` (share count 1). O(1) amortised.
    pub fn alloc(&self, owner: Owner) -> Result<Frame, MmError> {
        let code = code_of(owner)?;
        let pfn = self.take_one().ok_or(MmError::OutOfMemory)?;
        // The frame is CACHED and only this CPU holds it: a plain store suffices.
        self.entries[pfn as usize].state.store(pack(code, 1), Ordering::Release);
        self.free.fetch_sub(1, Ordering::AcqRel);
        #[cfg(test)]
        self.traced(Frame(pfn as u64));
        Ok(Frame(pfn as u64))
    }

    /// Take a free frame (left in state CACHED) for this CPU.
    fn take_one(&self) -> Option<u32> {
        let cpu = Self::cpu();
        {
            let mut cache = self.caches[cpu].lock();
            if cache.len == 0 {
                self.refill(&mut cache, cpu);
            }
            if let Some(pfn) = cache.pop() {
                return Some(pfn);
            }
        }
        // Every stripe is empty: take from another CPU's cache, holding no
        // other lock (two caches are never held at once).
        for i in 1..MAX_CPUS {
            let other = (cpu + i) % MAX_CPUS;
            if let Some(pfn) = self.caches[other].lock().pop() {
                return Some(pfn);
            }
        }
        None
    }

    /// Move up to BATCH frames into `cache` from this CPU's home stripe, or
    /// failing that from the first other stripe that has any.
    fn refill(&self, cache: &mut Cache, cpu: usize) {
        let home = cpu % self.used_stripes;
        for i in 0..self.used_stripes {
            let mut list = self.stripes[(home + i) % self.used_stripes].lock();
            while cache.len < BATCH {
                let pfn = list.head;
                if pfn == NIL {
                    break;
                }
                unlink(self.entries, &mut list, pfn);
                self.entries[pfn as usize].state.store(pack(CACHED, 0), Ordering::Release);
                cache.frames[cache.len] = pfn;
                cache.len += 1;
            }
            if cache.len > 0 {
                return;
            }
        }
    }

    /// Return the `n` oldest frames of `cache` to their stripes.
    fn spill(&self, cache: &mut Cache, n: usize) {
        let n = n.min(cache.len);
        for &pfn in &cache.frames[..n] {
            let mut list = self.stripes[(pfn >> self.stripe_shift) as usize].lock();
            push(self.entries, &mut list, pfn);
        }
        cache.frames.copy_within(n..cache.len, 0);
        cache.len -= n;
    }

    /// Put a frame this CPU holds in state CACHED into this CPU's cache.
    fn release(&self, pfn: u32) {
        self.free.fetch_add(1, Ordering::AcqRel);
        let mut cache = self.caches[Self::cpu()].lock();
        if cache.len == CACHE_SIZE {
            self.spill(&mut cache, BATCH);
        }
        let len = cache.len;
        cache.frames[len] = pfn;
        cache.len += 1;
    }

    /// Free `frame`, which `expected` holds with share count 1.
    ///
    /// Errors: `OutsideRam`, `InvalidOwner` (`expected` is Free/Reserved),
    /// `ReservedFrame`, `DoubleFree`, `WrongOwner`, `StillShared`; nothing
    /// changes on error.
    pub fn free(&self, frame: Frame, expected: Owner) -> Result<(), MmError> {
        let e = self.entry(frame)?;
        let code = code_of(expected)?;
        #[cfg(test)]
        if self.mutant == crate::tests::Mutant::FreeIgnoresOwner {
            // Broken: accepts any allocated frame, whoever holds it.
            let (c, _) = e.load();
            if c >= KERNEL {
                e.state.store(pack(CACHED, 0), Ordering::Release);
                self.release(frame.pfn() as u32);
                return Ok(());
            }
        }
        e.state
            .compare_exchange(pack(code, 1), pack(CACHED, 0), Ordering::AcqRel, Ordering::Acquire)
            .map_err(|s| why_not_held(s, code))?;
        self.release(frame.pfn() as u32);
        Ok(())
    }

    /// Add a reference to an allocated frame (it is now mapped once more);
    /// returns the new share count. Errors: `OutsideRam`, `ReservedFrame`,
    /// `NotAllocated`, `TooManyRefs`.
    pub fn get_ref(&self, frame: Frame) -> Result<u32, MmError> {
        let e = self.entry(frame)?;
        let mut s = e.state.load(Ordering::Acquire);
        loop {
            let (code, refs) = unpack(s);
            match code {
                RESERVED => return Err(MmError::ReservedFrame),
                LISTED | CACHED => return Err(MmError::NotAllocated),
                _ => {}
            }
            let refs = refs.checked_add(1).ok_or(MmError::TooManyRefs)?;
            match e.state.compare_exchange_weak(s, pack(code, refs), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(refs),
                Err(now) => s = now,
            }
        }
    }

    /// Drop a reference to a frame `expected` holds; the last reference frees
    /// it. Returns whether the frame was freed. Errors as [`free`](Self::free)
    /// (but never `StillShared`).
    pub fn put_ref(&self, frame: Frame, expected: Owner) -> Result<bool, MmError> {
        let e = self.entry(frame)?;
        let code = code_of(expected)?;
        let mut s = e.state.load(Ordering::Acquire);
        loop {
            let (c, refs) = unpack(s);
            if c != code || refs == 0 {
                return Err(why_not_held(s, code));
            }
            let last = refs == 1;
            let new = if last { pack(CACHED, 0) } else { pack(code, refs - 1) };
            match e.state.compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    if last {
                        self.release(frame.pfn() as u32);
                    }
                    return Ok(last);
                }
                Err(now) => s = now,
            }
        }
    }

    /// Allocate `n` (1..=64) physically contiguous frames whose first frame
    /// number is a multiple of `align` (a power of two), for `owner`; each
    /// gets share count 1.
    ///
    /// Cost: scans each stripe that has at least `n` free frames, under that
    /// stripe's lock, O(frames in the stripe) each, so O(total frames) in the
    /// worst case; if that finds nothing it drains every CPU's cache and scans
    /// once more. Meant for page tables and devices, not for hot paths. A run
    /// never crosses a multiple of [`stripe_span`](Self::stripe_span).
    pub fn alloc_contiguous(&self, n: usize, align: usize, owner: Owner) -> Result<Frame, MmError> {
        let code = code_of(owner)?;
        if n == 0 || n > MAX_RUN || !align.is_power_of_two() {
            return Err(MmError::InvalidRun);
        }
        for attempt in 0..2 {
            if let Some(first) = self.find_run(n, align as u64, code) {
                return Ok(Frame(first));
            }
            if attempt == 0 {
                self.drain_caches();
            }
        }
        Err(MmError::OutOfMemory)
    }

    fn find_run(&self, n: usize, align: u64, code: u32) -> Option<u64> {
        let span = self.stripe_span();
        let len = self.entries.len() as u64;
        let round_up = |p: u64| p.checked_add(align - 1).map(|q| q & !(align - 1));
        for s in 0..self.used_stripes {
            let mut list = self.stripes[s].lock();
            if list.len < n {
                continue;
            }
            let start = s as u64 * span;
            let end = (start + span).min(len);
            let mut p = round_up(start)?;
            'scan: while p.checked_add(n as u64).is_some_and(|e| e <= end) {
                for k in 0..n as u64 {
                    if self.entries[(p + k) as usize].load().0 != LISTED {
                        match round_up(p + k + 1) {
                            Some(next) => p = next,
                            None => break 'scan,
                        }
                        continue 'scan;
                    }
                }
                for k in 0..n as u64 {
                    let pfn = (p + k) as u32;
                    #[cfg(test)]
                    if self.mutant == crate::tests::Mutant::RunSkipsUnlink && k == n as u64 - 1 {
                        // Broken: the last frame stays on the free list.
                        self.entries[pfn as usize].state.store(pack(code, 1), Ordering::Release);
                        continue;
                    }
                    unlink(self.entries, &mut list, pfn);
                    self.entries[pfn as usize].state.store(pack(code, 1), Ordering::Release);
                }
                self.free.fetch_sub(n, Ordering::AcqRel);
                #[cfg(test)]
                self.traced(Frame(p));
                return Some(p);
            }
        }
        None
    }

    /// Free `n` contiguous frames starting at `first`, all held by `expected`
    /// with share count 1; they go back to the stripes (not to a cache), where
    /// later runs can find them. All or nothing: on error nothing changes.
    /// Errors: `InvalidRun`, `OutsideRam`, then as [`free`](Self::free) for
    /// the first frame that is not held.
    pub fn free_contiguous(&self, first: Frame, n: usize, expected: Owner) -> Result<(), MmError> {
        if n == 0 || n > MAX_RUN {
            return Err(MmError::InvalidRun);
        }
        let end = first.pfn().checked_add(n as u64).ok_or(MmError::OutsideRam)?;
        if end > self.entries.len() as u64 {
            return Err(MmError::OutsideRam);
        }
        let code = code_of(expected)?;
        let run = first.pfn() as usize..end as usize;
        for i in run.clone() {
            let e = &self.entries[i];
            if let Err(s) =
                e.state.compare_exchange(pack(code, 1), pack(CACHED, 0), Ordering::AcqRel, Ordering::Acquire)
            {
                // Undo: the frames before i are ours again.
                for j in run.start..i {
                    self.entries[j].state.store(pack(code, 1), Ordering::Release);
                }
                return Err(why_not_held(s, code));
            }
        }
        self.free.fetch_add(n, Ordering::AcqRel);
        for pfn in run {
            let mut list = self.stripes[pfn >> self.stripe_shift].lock();
            push(self.entries, &mut list, pfn as u32);
        }
        Ok(())
    }

    /// Return every CPU's cached frames to the stripes.
    pub fn drain_caches(&self) {
        for cache in &self.caches {
            let mut cache = cache.lock();
            let len = cache.len;
            self.spill(&mut cache, len);
        }
    }

    /// Walk every list and cache and check the table's invariants: each free
    /// frame is on exactly one list (its stripe's) or in exactly one cache,
    /// links are consistent, lengths and the free count add up. Takes every
    /// lock (caches, then stripes): for tests and kernel self-checks. Exact
    /// only while no other call is in flight (a frame being freed or handed
    /// out is briefly in no cache).
    pub fn check_integrity(&self) -> Result<(), &'static str> {
        let caches: [_; MAX_CPUS] = core::array::from_fn(|i| self.caches[i].lock());
        let stripes: [_; STRIPES] = core::array::from_fn(|i| self.stripes[i].lock());
        let (mut listed, mut cached, mut managed) = (0usize, 0usize, 0usize);
        for e in self.entries {
            match e.load() {
                (LISTED, 0) => listed += 1,
                (CACHED, 0) => cached += 1,
                (LISTED | CACHED, _) => return Err("free frame with a non-zero share count"),
                (RESERVED, _) => continue,
                (_, 0) => return Err("allocated frame with share count 0"),
                _ => {}
            }
            managed += 1;
        }
        if managed != self.total {
            return Err("managed frames changed");
        }
        let mut on_lists = 0;
        for (s, list) in stripes.iter().enumerate() {
            let (mut prev, mut cur, mut n) = (NIL, list.head, 0);
            while cur != NIL {
                let e = self.entries.get(cur as usize).ok_or("list link outside the table")?;
                if e.load().0 != LISTED {
                    return Err("frame on a list is not LISTED");
                }
                if (cur >> self.stripe_shift) as usize != s {
                    return Err("frame on another stripe's list");
                }
                if e.prev.load(Ordering::Relaxed) != prev {
                    return Err("broken prev link");
                }
                n += 1;
                if n > list.len {
                    return Err("list longer than its length (or a cycle)");
                }
                prev = cur;
                cur = e.next.load(Ordering::Relaxed);
            }
            if n != list.len {
                return Err("list shorter than its length");
            }
            on_lists += n;
        }
        if on_lists != listed {
            return Err("LISTED frames not all on lists");
        }
        let mut in_caches = 0;
        for cache in &caches {
            for &pfn in &cache.frames[..cache.len] {
                let e = self.entries.get(pfn as usize).ok_or("cached frame outside the table")?;
                if e.load().0 != CACHED {
                    return Err("frame in a cache is not CACHED");
                }
            }
            in_caches += cache.len;
        }
        if in_caches != cached {
            return Err("CACHED frames not each in exactly one cache");
        }
        if self.free.load(Ordering::Acquire) != listed + cached {
            return Err("free count wrong");
        }
        Ok(())
    }
}

impl fmt::Debug for AllocTable<'_> {
    /// Does not lock: totals only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllocTable")
            .field("entries", &self.entries.len())
            .field("total", &self.total)
            .field("free", &self.free_frames())
            .finish_non_exhaustive()
    }
}

/// Test-only access to entry internals (to reach states no legal call sequence reaches quickly).
#[cfg(test)]
impl AllocTable<'_> {
    fn traced(&self, f: Frame) {
        if let Some(log) = self.trace.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            log.push(f);
        }
    }

    /// Start recording allocations (drops what was recorded).
    pub(crate) fn start_trace(&self) {
        *self.trace.lock().unwrap() = Some(std::vec::Vec::new());
    }

    /// The allocations since `start_trace`, in order; keeps recording.
    pub(crate) fn take_trace(&self) -> std::collections::VecDeque<Frame> {
        self.trace.lock().unwrap().as_mut().map(core::mem::take).unwrap_or_default().into()
    }

    pub(crate) fn force_refs(&self, frame: Frame, refs: u32) {
        let e = &self.entries[frame.pfn() as usize];
        let (code, _) = e.load();
        e.state.store(pack(code, refs), Ordering::Release);
    }
}
