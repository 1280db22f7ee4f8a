//! Containers: mC2's per-thread memory accounting.
//!
//! A container is a node of a quota tree. Its `usage` is the pages it has
//! allocated itself (`own`) plus the quotas carved out for its live children;
//! `usage ≤ quota` always. The kernel creates the root with the free frames at
//! boot as quota and splits a child off for every thread (or process) it
//! creates; a child's quota comes out of its parent's and goes back when the
//! child is destroyed.
//!
//! Each container also counts the live containers below it (`descendants`)
//! and may carry a `limit` on that count, set by whoever creates it (the
//! trap layer: the process limit of `spawn`); a split fails with
//! `LimitReached` if it would take any container on the way up past its
//! limit. Invariant: `descendants` is exactly the number of live containers
//! whose chain of parents passes through it.
//!
//! Ids are indices into a fixed table of [`MAX_CONTAINERS`] slots (no heap);
//! a new container takes the lowest free slot, the root is always id 0.
//! The table sits behind one [`SpinLock`], held only for a few arithmetic
//! steps per call.
//!
//! [`Containers::alloc_page`] / [`Containers::free_page`] tie the tree to the
//! [`AllocTable`]: charge then allocate (undoing the charge if no frame is
//! left), free then uncharge. So for each container `c`, the frames the table
//! marks `Owner::Container(c)` never exceed `own(c)`, and equal it whenever no
//! such call for `c` is in flight (conservation). Frames for containers must
//! only be allocated through these calls (or with an explicit
//! [`charge`](Containers::charge) around the table call).

use crate::frames::{AllocTable, Frame, Owner};
use crate::MmError;
use core::fmt;
use lock::SpinLock;

/// Capacity of the container table.
pub const MAX_CONTAINERS: usize = 1024;

/// Name of a container: its slot in the table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerId(u16);

impl ContainerId {
    /// The root container's id.
    pub const ROOT: ContainerId = ContainerId(0);

    /// The id with slot number `index` (it names a container only while that
    /// slot is live).
    pub const fn new(index: u16) -> ContainerId {
        ContainerId(index)
    }

    /// Slot number.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C{}", self.0)
    }
}

/// A snapshot of one container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContainerInfo {
    /// Pages it may account for in all.
    pub quota: u64,
    /// `own` + Σ quotas of live children; never above `quota`.
    pub usage: u64,
    /// Pages charged to it for its own allocations.
    pub own: u64,
    /// Parent (None for the root).
    pub parent: Option<ContainerId>,
    /// Number of live children.
    pub children: u32,
    /// Number of live containers below it (children, theirs, ...).
    pub descendants: u32,
    /// Most containers that may live below it at once ([`NO_LIMIT`]: none
    /// of its own). A split anywhere below that would pass it fails.
    pub limit: u32,
}

/// [`ContainerInfo::limit`] of a container with no limit of its own.
pub const NO_LIMIT: u32 = u32::MAX;

impl ContainerInfo {
    /// A fresh container with `quota` pages under `parent`.
    pub const fn fresh(quota: u64, parent: Option<ContainerId>) -> ContainerInfo {
        ContainerInfo { quota, usage: 0, own: 0, parent, children: 0, descendants: 0, limit: NO_LIMIT }
    }
}

#[derive(Clone, Copy)]
struct Slot {
    live: bool,
    info: ContainerInfo,
}

const DEAD: Slot = Slot { live: false, info: ContainerInfo::fresh(0, None) };

struct Tree {
    slots: [Slot; MAX_CONTAINERS],
}

impl Tree {
    fn get(&mut self, c: ContainerId) -> Result<&mut ContainerInfo, MmError> {
        match self.slots.get_mut(c.index()) {
            Some(s) if s.live => Ok(&mut s.info),
            _ => Err(MmError::NoSuchContainer),
        }
    }

    /// A container below `from` came (`delta` 1) or went (-1): count it in
    /// `from` and in every container above.
    fn add_descendant(&mut self, from: ContainerId, delta: i32) -> Result<(), MmError> {
        let mut up = Some(from);
        while let Some(a) = up {
            let info = self.get(a)?;
            info.descendants = info.descendants.wrapping_add_signed(delta);
            up = info.parent;
        }
        Ok(())
    }
}

/// The container table (mC2's `cn_*` operations). Construct it in a `static`
/// (`const fn new`): it is about 40 KiB.
pub struct Containers {
    tree: SpinLock<Tree>,
    /// Deliberate bugs for the checks to catch (tests only).
    #[cfg(test)]
    pub(crate) mutant: crate::tests::Mutant,
}

impl Default for Containers {
    fn default() -> Self {
        Self::new()
    }
}

impl Containers {
    /// An empty table (no root yet).
    pub const fn new() -> Containers {
        Containers {
            tree: SpinLock::new(Tree { slots: [DEAD; MAX_CONTAINERS] }),
            #[cfg(test)]
            mutant: crate::tests::Mutant::None,
        }
    }

    /// Create the root container (id 0) with `quota` pages. `RootExists` the
    /// second time.
    pub fn root(&self, quota: u64) -> Result<ContainerId, MmError> {
        let mut t = self.tree.lock();
        if t.slots[0].live {
            return Err(MmError::RootExists);
        }
        t.slots[0] = Slot { live: true, info: ContainerInfo::fresh(quota, None) };
        Ok(ContainerId::ROOT)
    }

    /// Carve a child with `quota` pages out of `parent`'s quota.
    /// Errors: `NoSuchContainer`, `QuotaExceeded`, `LimitReached` (the
    /// parent or a container above it has as many descendants as its
    /// limit), `TooManyContainers`.
    pub fn split(&self, parent: ContainerId, quota: u64) -> Result<ContainerId, MmError> {
        let mut t = self.tree.lock();
        let p = t.get(parent)?;
        let usage = p.usage.checked_add(quota).ok_or(MmError::QuotaExceeded)?;
        #[cfg(test)]
        let ignore_quota = self.mutant == crate::tests::Mutant::SplitIgnoresQuota;
        #[cfg(not(test))]
        let ignore_quota = false;
        if usage > p.quota && !ignore_quota {
            return Err(MmError::QuotaExceeded);
        }
        #[cfg(test)]
        let parent_only = self.mutant == crate::tests::Mutant::LimitParentOnly;
        #[cfg(not(test))]
        let parent_only = false;
        let mut up = Some(parent);
        while let Some(a) = up {
            let info = t.get(a)?;
            if info.descendants >= info.limit {
                return Err(MmError::LimitReached);
            }
            up = if parent_only { None } else { info.parent };
        }
        let Some(slot) = t.slots.iter().position(|s| !s.live) else {
            return Err(MmError::TooManyContainers);
        };
        let p = t.get(parent)?;
        p.usage = usage;
        p.children += 1;
        t.add_descendant(parent, 1)?;
        t.slots[slot] = Slot { live: true, info: ContainerInfo::fresh(quota, Some(parent)) };
        Ok(ContainerId(slot as u16))
    }

    /// Whether `c` lies below `ancestor` (strictly: not `c` itself).
    pub fn is_below(&self, c: ContainerId, ancestor: ContainerId) -> bool {
        let mut t = self.tree.lock();
        let mut at = t.get(c).ok().and_then(|i| i.parent);
        let mut hops = 0;
        while let Some(a) = at {
            if a == ancestor {
                return true;
            }
            hops += 1;
            if hops > MAX_CONTAINERS {
                return false;
            }
            at = t.get(a).ok().and_then(|i| i.parent);
        }
        false
    }

    /// Let at most `limit` containers live below `c` from now on ([`NO_LIMIT`]
    /// lifts its own limit). Those already there stay. Errors: `NoSuchContainer`.
    pub fn set_limit(&self, c: ContainerId, limit: u32) -> Result<(), MmError> {
        self.tree.lock().get(c)?.limit = limit;
        Ok(())
    }

    /// Destroy a leaf container that has no pages charged and give its quota
    /// back to its parent. Errors: `NoSuchContainer`, `IsRoot`, `HasChildren`,
    /// `HasPages` (free its pages first: the tree does not know which frames
    /// they are; the table does, but finding them would be a scan).
    pub fn destroy(&self, c: ContainerId) -> Result<(), MmError> {
        let mut t = self.tree.lock();
        let info = *t.get(c)?;
        let Some(parent) = info.parent else { return Err(MmError::IsRoot) };
        if info.children > 0 {
            return Err(MmError::HasChildren);
        }
        if info.own > 0 {
            return Err(MmError::HasPages);
        }
        let p = t.get(parent)?;
        p.usage -= info.quota;
        p.children -= 1;
        t.add_descendant(parent, -1)?;
        t.slots[c.index()] = DEAD;
        Ok(())
    }

    /// Account for `n` more pages of `c`'s own. Errors: `NoSuchContainer`,
    /// `QuotaExceeded` (nothing charged).
    pub fn charge(&self, c: ContainerId, n: u64) -> Result<(), MmError> {
        let mut t = self.tree.lock();
        let info = t.get(c)?;
        let usage = info.usage.checked_add(n).ok_or(MmError::QuotaExceeded)?;
        if usage > info.quota {
            return Err(MmError::QuotaExceeded);
        }
        info.usage = usage;
        info.own += n;
        Ok(())
    }

    /// Give back `n` of `c`'s own pages. Errors: `NoSuchContainer`,
    /// `NotCharged` (n > own).
    pub fn uncharge(&self, c: ContainerId, n: u64) -> Result<(), MmError> {
        let mut t = self.tree.lock();
        let info = t.get(c)?;
        if n > info.own {
            return Err(MmError::NotCharged);
        }
        info.own -= n;
        info.usage -= n;
        Ok(())
    }

    /// Pages `c` can still charge or give to children.
    pub fn remaining(&self, c: ContainerId) -> Result<u64, MmError> {
        let mut t = self.tree.lock();
        let info = t.get(c)?;
        Ok(info.quota - info.usage)
    }

    /// A snapshot of `c`.
    pub fn info(&self, c: ContainerId) -> Result<ContainerInfo, MmError> {
        Ok(*self.tree.lock().get(c)?)
    }

    /// Allocate a frame for `c`: charge one page, then allocate from `frames`
    /// with owner `Container(c)`; if the table has no frame, the charge is
    /// undone. Errors: `NoSuchContainer`, `QuotaExceeded`, `OutOfMemory`.
    pub fn alloc_page(&self, frames: &AllocTable<'_>, c: ContainerId) -> Result<Frame, MmError> {
        self.charge(c, 1)?;
        frames.alloc(Owner::Container(c)).inspect_err(|_| {
            // Cannot fail: the charge above is still there.
            let _ = self.uncharge(c, 1);
        })
    }

    /// Free a frame `c` allocated (share count 1) and uncharge it. Errors as
    /// [`AllocTable::free`]; nothing changes on error.
    pub fn free_page(&self, frames: &AllocTable<'_>, c: ContainerId, frame: Frame) -> Result<(), MmError> {
        frames.free(frame, Owner::Container(c))?;
        // The frame was c's, so c was charged for it (conservation).
        self.uncharge(c, 1)
    }

    /// Drop one reference to a frame `c` allocated; when that was the last,
    /// the frame is freed and uncharged. Returns whether it was freed.
    pub fn put_page(&self, frames: &AllocTable<'_>, c: ContainerId, frame: Frame) -> Result<bool, MmError> {
        let freed = frames.put_ref(frame, Owner::Container(c))?;
        if freed {
            self.uncharge(c, 1)?;
        }
        Ok(freed)
    }

    /// Visit every live container (under the lock: keep `f` short).
    pub fn for_each(&self, mut f: impl FnMut(ContainerId, &ContainerInfo)) {
        let t = self.tree.lock();
        for (i, s) in t.slots.iter().enumerate() {
            if s.live {
                f(ContainerId(i as u16), &s.info);
            }
        }
    }
}

impl fmt::Debug for Containers {
    /// Does not lock.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Containers").finish_non_exhaustive()
    }
}
