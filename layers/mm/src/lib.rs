//! # mm: mc2's memory management (physical, virtual, shared)
//!
//! The seed's memory-management module, modelled on mC2's layers from the
//! physical-memory allocation table up to shared memory. Pure logic: it never
//! touches hardware, so all of it builds and is tested on the host. It provides
//! - [`frames`]: the page allocation table, one [`FrameEntry`] per 4 KiB
//!   frame (owner + share count), free lists in locked stripes and a per-CPU
//!   cache, O(1) allocation of single frames, small contiguous runs;
//! - [`container`]: mC2's containers, a quota tree that accounts for every
//!   page a thread (or its children) may allocate;
//! - [`paging`]: x86-64 4-level page tables ([`AddressSpace`]) reached through
//!   a [`PhysAccess`] trait, page-table pages charged to the space's container,
//!   TLB work returned to the caller as [`Flush`] values, and [`CpuSet`];
//! - [`kernel`]: the kernel's instance of all of this (global tables, the
//!   direct map, the heap as global allocator, TLB shootdowns);
//! - [`kmap`]: the kernel half (direct map and image with per-section
//!   rights) that every address space shares;
//! - [`shm`]: the seed's shared-memory protocol between pairs of processes;
//! - [`heap`]: a size-class slab allocator (the logic behind the kernel's
//!   `GlobalAlloc`), the one module that uses `unsafe`;
//! - `spec` (tests, or feature `spec`): abstract models of all of the above,
//!   against which the implementation is checked.
//!
//! ## What it assumes of the layers below
//! - `machine::cpu::id()` is `< MAX_CPUS`, distinct for the CPUs running at
//!   the same time and constant while a CPU runs kernel code (interrupts are
//!   masked in the kernel): it picks the per-CPU frame cache.
//! - `lock::SpinLock` gives mutual exclusion with release/acquire ordering.
//! - The kernel hands over the memory map (usable regions and exclusions) and
//!   the table's storage, reaches page-table pages through its direct map, and
//!   carries out the TLB invalidations this crate reports.
//!
//! ## Invariants (each is checked by the tests, see `src/tests/`)
//! - Every managed frame has exactly one owner (free, kernel or one
//!   container); a free frame is on exactly one free list or in exactly one
//!   per-CPU cache; the free count equals the number of free frames.
//! - For every container, `usage = own pages + Σ children's quotas ≤ quota`.
//! - Conservation: the frames the table marks as owned by container `c` are
//!   exactly `own(c)` whenever no allocation for `c` is half done.
//! - An address space's page-table pages are owned by (charged to) its
//!   container and all of them are returned by [`AddressSpace::destroy`].
//! - A shared-memory pair in state Ready has one frame, share count 2, mapped
//!   in both processes; a torn-down pair holds nothing.
//!
//! Nothing here panics on a caller's mistake: every misuse is a distinct
//! [`MmError`].
//!
//! ## Using it in the kernel
//! - **Table storage**: `n = AllocTable::entries_needed(&ram)?` entries of 16
//!   bytes (one per frame from 0 to the end of RAM: 4 MiB per 1 GiB). Carve
//!   `n * 16` bytes out of a usable region (e.g. right after the kernel image
//!   and modules), make a `&'static mut [FrameEntry]` of it through the direct
//!   map (any contents will do), and list it among the exclusions, with the
//!   low 1 MiB, the image, the modules and whatever firmware tables are still
//!   needed. Frames not wholly inside a region are reserved anyway.
//! - **Containers**: `Containers::new()` is `const` (about 40 KiB: put it in
//!   a static); `root(frames.free_frames())` once the table exists. Kernel
//!   allocations (`Owner::Kernel`) are not charged, so quotas are promises:
//!   `alloc_page` can still fail with `OutOfMemory`. A container is destroyed
//!   only when its pages are freed (`HasPages` otherwise).
//! - **Address spaces**: build the whole kernel half first; `AddressSpace::new`
//!   copies its PML4 entries. Set IA32_EFER.NXE (leaf entries use XD).
//!   `unmap`/`protect` return a `#[must_use]` [`Flush`]: INVLPG, plus a
//!   shootdown to the CPUs in the space's [`paging::AtomicCpuSet`].
//!   [`AddressSpace::destroy`] frees the page tables and *reports* each still
//!   mapped page to a callback without freeing it; revoke shared memory
//!   before destroying a space. An `AddressSpace` takes `&mut self` to
//!   change: keep it behind the process's lock.
//! - **Shared memory**: `Shm` (64 × 64 links, about 200 KiB, `const fn new`)
//!   behind one lock; [`SpaceTable`] or your own [`ShmHost`] gives it access
//!   to the spaces. An offer allocates the page at once, charged to the
//!   offerer (the first of the pair); `revoke_all(id)` when a process exits.
//! - **Lock order**: shared-memory table → process/space locks → container
//!   tree → allocation table (CPU caches, then stripes). Heap class locks come
//!   before the allocation table (the heap's page source allocates frames).
//!   None of these calls back into the kernel while holding a lock, except
//!   the heap calling its page source. Interrupt handlers must not allocate
//!   while their CPU may hold one of these locks (the kernel runs with
//!   interrupts masked).
#![no_std]
#![deny(unsafe_code)]

#[cfg(any(test, feature = "spec"))]
extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod container;
pub mod frames;
#[allow(unsafe_code)]
pub mod heap;
pub mod kernel;
pub mod kmap;
pub mod paging;
pub mod shm;
#[cfg(any(test, feature = "spec"))]
pub mod spec;

#[cfg(test)]
mod tests;

use core::fmt;

pub use container::{ContainerId, ContainerInfo, Containers, MAX_CONTAINERS, NO_LIMIT};
pub use frames::{AllocTable, Frame, FrameEntry, Owner};
pub use paging::{AddressSpace, CpuSet, Flush, Mm, PhysAccess, Rights};
pub use shm::{ProcId, Shm, ShmHost, ShmStatus, ShmTable, SpaceTable};

/// Size of a page and of a physical frame (4 KiB; Intel SDM Vol. 3A §4.5).
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// Everything a caller of this crate can get wrong, and running out.
///
/// Each misuse has its own variant so that callers (and the refinement tests)
/// can tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmError {
    // -- physical memory ---------------------------------------------------
    /// No free frame (or no free aligned run) is left.
    OutOfMemory,
    /// The frame lies beyond the end of the allocation table.
    OutsideRam,
    /// The frame is not managed memory (hole, firmware, kernel image, excluded).
    ReservedFrame,
    /// The frame is already free.
    DoubleFree,
    /// The frame belongs to another owner than the one the caller named.
    WrongOwner,
    /// The frame is still shared (share count > 1): drop references instead.
    StillShared,
    /// A reference was asked for a frame nobody has allocated.
    NotAllocated,
    /// The share count would overflow.
    TooManyRefs,
    /// `Owner::Free` / `Owner::Reserved` cannot allocate or free frames.
    InvalidOwner,
    /// A contiguous run of length 0 or over 64 frames, or an alignment that
    /// is not a power of two.
    InvalidRun,
    /// The storage given to the allocation table is too short.
    TableTooSmall,
    /// A memory region wraps around the address space or is too large.
    BadRegion,
    // -- containers --------------------------------------------------------
    /// No live container has this id.
    NoSuchContainer,
    /// The container's quota does not cover the request.
    QuotaExceeded,
    /// The container still has live children.
    HasChildren,
    /// The container still has pages charged to it.
    HasPages,
    /// The root container cannot be destroyed.
    IsRoot,
    /// The root container exists already.
    RootExists,
    /// The container table is full.
    TooManyContainers,
    /// The parent, or a container above it, has as many descendants as its
    /// limit allows.
    LimitReached,
    /// Uncharging more pages than the container has charged.
    NotCharged,
    // -- virtual memory ----------------------------------------------------
    /// The address is not 4 KiB aligned.
    Misaligned,
    /// The virtual address is not canonical (bits 63..47 differ; SDM Vol. 1 §3.3.7.1).
    NonCanonical,
    /// The virtual address lies in the kernel half (shared by every space).
    KernelAddress,
    /// The frame's address does not fit a page-table entry (52-bit physical addresses).
    BadFrame,
    /// Something is mapped at this virtual address already.
    AlreadyMapped,
    /// Nothing is mapped at this virtual address.
    NotMapped,
    // -- shared memory -----------------------------------------------------
    /// No such process (id out of range, or not live).
    UnknownId,
    /// A process cannot share memory with itself.
    SelfShare,
    /// This process has already offered to this peer.
    AlreadyOffered,
    /// The two processes already share a page.
    AlreadyShared,
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use MmError::*;
        f.write_str(match self {
            OutOfMemory => "out of physical memory",
            OutsideRam => "frame outside the allocation table",
            ReservedFrame => "frame is reserved (not managed memory)",
            DoubleFree => "frame is already free",
            WrongOwner => "frame belongs to another owner",
            StillShared => "frame is still shared",
            NotAllocated => "frame is not allocated",
            TooManyRefs => "frame share count would overflow",
            InvalidOwner => "free or reserved cannot own allocations",
            InvalidRun => "invalid contiguous run length or alignment",
            TableTooSmall => "allocation table storage too small",
            BadRegion => "memory region wraps or is too large",
            NoSuchContainer => "no such container",
            QuotaExceeded => "container quota exceeded",
            HasChildren => "container has live children",
            HasPages => "container still has pages charged",
            IsRoot => "the root container cannot be destroyed",
            RootExists => "the root container exists already",
            TooManyContainers => "container table full",
            LimitReached => "container limit reached",
            NotCharged => "uncharging more than was charged",
            Misaligned => "address not page aligned",
            NonCanonical => "non-canonical virtual address",
            KernelAddress => "virtual address in the kernel half",
            BadFrame => "frame address does not fit a page-table entry",
            AlreadyMapped => "virtual address already mapped",
            NotMapped => "virtual address not mapped",
            UnknownId => "unknown process id",
            SelfShare => "cannot share memory with oneself",
            AlreadyOffered => "already offered to this peer",
            AlreadyShared => "already sharing with this peer",
        })
    }
}
