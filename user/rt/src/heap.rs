//! The user heap: size classes of 16..2048 bytes carved from 4 KiB pages,
//! and whole-page runs for larger blocks, all mapped on demand with
//! `mem_map` in a reserved region (charged to the process's container).
//!
//! A freed large block is unmapped (its pages go back to the quota) and its
//! address range is remembered, so the next large block of that size or
//! less reuses it: a program that allocates and frees a buffer in a loop
//! stays within the same page tables instead of walking up the region.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

/// Where the heap lives in every process.
pub const HEAP_BASE: u64 = 0x0000_1000_0000_0000;
const PAGE: usize = 4096;
const CLASSES: [usize; 8] = [16, 32, 64, 128, 256, 512, 1024, 2048];
/// Unmapped ranges remembered for reuse.
const HOLES: usize = 16;

#[derive(Clone, Copy)]
struct Hole {
    addr: u64,
    pages: u64,
}

struct State {
    /// Next unmapped address of the region (grows up).
    top: u64,
    /// Free lists per size class (address of the first free block, 0 = none).
    free: [usize; CLASSES.len()],
    /// Unmapped ranges below `top` (pages 0 = unused slot).
    holes: [Hole; HOLES],
}

pub struct Heap(UnsafeCell<State>);

// SAFETY: an mc2 process has exactly one thread, and the allocator is not
// re-entered (it calls no allocating code), so there is never concurrent access.
unsafe impl Sync for Heap {}

#[cfg_attr(mc2_user, global_allocator)]
#[cfg_attr(not(mc2_user), allow(dead_code))] // only user builds install it
static HEAP: Heap = Heap(UnsafeCell::new(State { top: HEAP_BASE, free: [0; CLASSES.len()], holes: [Hole { addr: 0, pages: 0 }; HOLES] }));

fn class_of(layout: &Layout) -> Option<usize> {
    let need = layout.size().max(layout.align());
    CLASSES.iter().position(|&c| c >= need)
}

impl Heap {
    /// Map `pages` fresh pages at the top of the region.
    fn grow(st: &mut State, pages: usize) -> *mut u8 {
        let at = st.top;
        match crate::sys::mem_map(at, pages as u64, abi::prot::WRITE) {
            Ok(_) => {
                st.top += (pages * PAGE) as u64;
                at as *mut u8
            }
            Err(_) => core::ptr::null_mut(),
        }
    }

    /// Map `pages` pages for a large block: in the smallest remembered hole
    /// that fits, else at the top of the region.
    fn alloc_run(st: &mut State, pages: usize) -> *mut u8 {
        let need = pages as u64;
        let best = (0..HOLES).filter(|&i| st.holes[i].pages >= need).min_by_key(|&i| st.holes[i].pages);
        let Some(i) = best else {
            return Self::grow(st, pages);
        };
        let at = st.holes[i].addr;
        if crate::sys::mem_map(at, need, abi::prot::WRITE).is_err() {
            return core::ptr::null_mut();
        }
        st.holes[i].addr += need * PAGE as u64;
        st.holes[i].pages -= need;
        at as *mut u8
    }

    /// Unmap a large block and remember its range (forgotten if every slot
    /// is taken: only address space is lost then).
    fn free_run(st: &mut State, addr: u64, pages: usize) {
        if crate::sys::mem_unmap(addr, pages as u64).is_err() {
            return;
        }
        let pages = pages as u64;
        let end = addr + pages * PAGE as u64;
        // Join a neighbouring hole where there is one.
        for h in st.holes.iter_mut().filter(|h| h.pages > 0) {
            if h.addr + h.pages * PAGE as u64 == addr {
                h.pages += pages;
                return;
            }
            if end == h.addr {
                h.addr = addr;
                h.pages += pages;
                return;
            }
        }
        if let Some(h) = st.holes.iter_mut().find(|h| h.pages == 0) {
            *h = Hole { addr, pages };
        }
    }
}

// SAFETY: blocks handed out are disjoint (each class block comes off a free
// list or a freshly mapped page split into same-size blocks; large blocks are
// page runs freshly mapped at the top or in a hole, and holes only hold the
// ranges of large blocks already freed and unmapped), aligned to their class
// size (a power of two dividing the page size) or to the page, and live until
// dealloc returns them.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded, not re-entered (see the Sync impl).
        let st = unsafe { &mut *self.0.get() };
        match class_of(&layout) {
            Some(c) => {
                if st.free[c] == 0 {
                    let page = Self::grow(st, 1);
                    if page.is_null() {
                        return page;
                    }
                    let size = CLASSES[c];
                    // Thread the new page's blocks onto the free list.
                    for i in (0..PAGE / size).rev() {
                        let b = page as usize + i * size;
                        // SAFETY: b is inside the page just mapped writable.
                        unsafe { *(b as *mut usize) = st.free[c] };
                        st.free[c] = b;
                    }
                }
                let b = st.free[c];
                // SAFETY: b is a free block of this class; its first word links to the next.
                st.free[c] = unsafe { *(b as *const usize) };
                b as *mut u8
            }
            None => {
                if layout.align() > PAGE {
                    return core::ptr::null_mut();
                }
                Self::alloc_run(st, layout.size().div_ceil(PAGE))
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: single-threaded, not re-entered (see the Sync impl).
        let st = unsafe { &mut *self.0.get() };
        match class_of(&layout) {
            Some(c) => {
                // SAFETY: ptr was handed out for this class and is free again.
                unsafe { *(ptr as *mut usize) = st.free[c] };
                st.free[c] = ptr as usize;
            }
            None => Self::free_run(st, ptr as u64, layout.size().div_ceil(PAGE)),
        }
    }
}
