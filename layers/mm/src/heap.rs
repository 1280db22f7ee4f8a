//! Kernel heap: a size-class slab allocator behind `GlobalAlloc`.
//!
//! Requests up to [`MAX_SMALL`] bytes are served from eight size classes
//! (16, 32, ..., 2048 bytes). Each class keeps a free list threaded through
//! its free objects (the first word of a free object is the address of the
//! next); an empty class takes one page from the [`PageSource`] and cuts it
//! into objects. An object of class `s` is aligned to `s` (pages are 4 KiB
//! aligned and `s` divides 4096), so a request goes to the smallest class
//! covering both its size and its alignment. Larger requests get whole page
//! runs straight from the source and give them back on free; slab pages are
//! kept by their class for reuse (never returned).
//!
//! The page source is where the kernel plugs in the allocation table: it
//! allocates `Owner::Kernel` frames (`alloc_contiguous` for runs) and returns
//! their direct-map virtual addresses. Each class has its own lock; a class
//! lock may be held while the source is called (lock order: heap class, then
//! the allocation table's locks), so the source must never allocate from
//! this heap. The heap works once `machine::cpu::id()` does (the spin locks
//! use it).
//!
//! This is the crate's only module with `unsafe`: reading and writing the
//! free-list links inside free objects, and the `GlobalAlloc` contract.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};
use lock::SpinLock;

/// Where the heap gets pages.
pub trait PageSource {
    /// `n` contiguous, 4 KiB-aligned, writable pages, as a virtual address,
    /// exclusively the heap's until given back; `None` if out of memory.
    fn alloc_pages(&self, n: usize) -> Option<usize>;
    /// Give back pages that `alloc_pages(n)` returned at `va`.
    fn free_pages(&self, va: usize, n: usize);
}

/// Object sizes of the classes.
pub const CLASSES: [usize; 8] = [16, 32, 64, 128, 256, 512, 1024, 2048];
/// Largest request served from a class.
pub const MAX_SMALL: usize = 2048;
const PAGE: usize = crate::PAGE_SIZE as usize;

/// The class serving `layout`, if it is small.
pub const fn class_of(layout: Layout) -> Option<usize> {
    let mut need = layout.size();
    if layout.align() > need {
        need = layout.align();
    }
    if need > MAX_SMALL {
        return None;
    }
    if need < CLASSES[0] {
        need = CLASSES[0];
    }
    Some((need.next_power_of_two().trailing_zeros() - CLASSES[0].trailing_zeros()) as usize)
}

/// Pages a large `layout` takes; `None` if its alignment exceeds a page.
pub const fn pages_for(layout: Layout) -> Option<usize> {
    if layout.align() > PAGE {
        return None;
    }
    Some(layout.size().div_ceil(PAGE))
}

struct Class {
    /// Address of the first free object, 0 if none.
    free: usize,
    /// Pages cut into objects of this class.
    slabs: usize,
    /// Objects handed out and not yet freed.
    in_use: usize,
}

/// Counters, for tests and the kernel's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Objects in use per class.
    pub in_use: [usize; 8],
    /// Slab pages per class.
    pub slabs: [usize; 8],
    /// Pages held by large allocations.
    pub large_pages: usize,
}

/// The slab heap over page source `S`.
pub struct SlabHeap<S: PageSource> {
    classes: [SpinLock<Class>; 8],
    large_pages: AtomicUsize,
    source: S,
}

impl<S: PageSource> SlabHeap<S> {
    /// An empty heap (usable in a `static`).
    pub const fn new(source: S) -> Self {
        SlabHeap {
            classes: [const { SpinLock::new(Class { free: 0, slabs: 0, in_use: 0 }) }; 8],
            large_pages: AtomicUsize::new(0),
            source,
        }
    }

    /// The page source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HeapStats {
        let mut s = HeapStats { large_pages: self.large_pages.load(Ordering::Relaxed), ..HeapStats::default() };
        for (i, c) in self.classes.iter().enumerate() {
            let c = c.lock();
            s.in_use[i] = c.in_use;
            s.slabs[i] = c.slabs;
        }
        s
    }

    /// Memory for `layout`, or null if out of memory or the alignment is over
    /// 4 KiB for a large request.
    pub fn allocate(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            Some(class) => self.alloc_small(class),
            None => {
                let Some(n) = pages_for(layout) else { return ptr::null_mut() };
                match self.source.alloc_pages(n) {
                    Some(va) => {
                        self.large_pages.fetch_add(n, Ordering::Relaxed);
                        ptr::with_exposed_provenance_mut(va)
                    }
                    None => ptr::null_mut(),
                }
            }
        }
    }

    fn alloc_small(&self, class: usize) -> *mut u8 {
        let size = CLASSES[class];
        let mut c = self.classes[class].lock();
        if c.free == 0 {
            let Some(page) = self.source.alloc_pages(1) else { return ptr::null_mut() };
            // Link the page's objects in address order, last one ends the list.
            let mut next = 0;
            for obj in (page..page + PAGE).step_by(size).rev() {
                // SAFETY: the source gave us this page exclusively and
                // writable; `obj` lies inside it and is aligned to `size` ≥ 16
                // ≥ align_of::<usize>() (the page is 4 KiB aligned).
                unsafe { ptr::with_exposed_provenance_mut::<usize>(obj).write(next) };
                next = obj;
            }
            c.free = page;
            c.slabs += 1;
        }
        let obj = c.free;
        // SAFETY: `obj` is on this class's free list, so it is a free object
        // of a page this class owns, aligned for usize, whose first word holds
        // the next link (written by `alloc_small` or `dealloc`); the class
        // lock is held, so nobody else touches the list.
        c.free = unsafe { ptr::with_exposed_provenance::<usize>(obj).read() };
        c.in_use += 1;
        ptr::with_exposed_provenance_mut(obj)
    }

    /// Give back memory from [`allocate`](Self::allocate).
    ///
    /// # Safety
    /// `p` came from `allocate(layout)` on this heap with this very `layout`
    /// and has not been given back since.
    pub unsafe fn deallocate(&self, p: *mut u8, layout: Layout) {
        match class_of(layout) {
            Some(class) => {
                let mut c = self.classes[class].lock();
                // SAFETY: by the caller's contract `p` is an object of this
                // class that nobody uses any more: we may store the link in
                // its first word (aligned: objects are aligned to ≥ 16).
                unsafe { p.cast::<usize>().write(c.free) };
                c.free = p.expose_provenance();
                c.in_use -= 1;
            }
            None => {
                // `pages_for` is Some: `allocate` succeeded with this layout.
                let n = pages_for(layout).unwrap_or(0);
                self.large_pages.fetch_sub(n, Ordering::Relaxed);
                self.source.free_pages(p.expose_provenance(), n);
            }
        }
    }
}

// SAFETY: `allocate` returns null or a block of at least `layout.size()`
// bytes aligned to `layout.align()` (class objects are aligned to their size,
// which is ≥ the alignment; page runs are page aligned and the alignment is
// ≤ 4 KiB) that no other live allocation overlaps (each object is on at most
// one free list and leaves it when handed out); `deallocate` returns it.
unsafe impl<S: PageSource + Sync> GlobalAlloc for SlabHeap<S> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocate(layout)
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract is `deallocate`'s.
        unsafe { self.deallocate(p, layout) }
    }
}
