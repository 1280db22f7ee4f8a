//! The slab heap over host pages: sizes, alignment, no overlap, contents
//! intact, everything returned; with threads.

use crate::heap::{class_of, pages_for, HeapStats, PageSource, SlabHeap, CLASSES};
use core::alloc::Layout;
use std::alloc::{alloc, dealloc};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::vec::Vec;

/// Pages from the host allocator; counts what is out.
#[derive(Default)]
struct HostPages {
    out: Mutex<BTreeMap<usize, usize>>,
    /// Refuse after this many pages (None: never).
    limit: Option<usize>,
}

impl PageSource for HostPages {
    fn alloc_pages(&self, n: usize) -> Option<usize> {
        let mut out = self.out.lock().unwrap();
        if self.limit.is_some_and(|l| out.values().sum::<usize>() + n > l) {
            return None;
        }
        let layout = Layout::from_size_align(n * 4096, 4096).ok()?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc(layout) };
        if p.is_null() {
            return None;
        }
        out.insert(p.expose_provenance(), n);
        Some(p.expose_provenance())
    }

    fn free_pages(&self, va: usize, n: usize) {
        assert_eq!(self.out.lock().unwrap().remove(&va), Some(n), "pages given back wrong");
        // SAFETY: `va` came from `alloc_pages(n)` (checked above) with this layout.
        unsafe { dealloc(core::ptr::with_exposed_provenance_mut(va), Layout::from_size_align(n * 4096, 4096).unwrap()) }
    }
}

impl Drop for HostPages {
    fn drop(&mut self) {
        for (&va, &n) in self.out.get_mut().unwrap().iter() {
            // SAFETY: still out, from `alloc_pages(n)`.
            unsafe { dealloc(core::ptr::with_exposed_provenance_mut(va), Layout::from_size_align(n * 4096, 4096).unwrap()) }
        }
    }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn classes() {
    assert_eq!(class_of(layout(0, 1)), Some(0));
    assert_eq!(class_of(layout(16, 8)), Some(0));
    assert_eq!(class_of(layout(17, 1)), Some(1));
    assert_eq!(class_of(layout(8, 64)), Some(2), "alignment picks the class");
    assert_eq!(class_of(layout(2048, 2048)), Some(7));
    assert_eq!(class_of(layout(2049, 1)), None);
    assert_eq!(class_of(layout(8, 4096)), None);
    assert_eq!(pages_for(layout(4097, 8)), Some(2));
    assert_eq!(pages_for(layout(8, 8192)), None);
    for (i, &size) in CLASSES.iter().enumerate() {
        assert_eq!(class_of(layout(size, 1)), Some(i));
    }
}

/// Random allocations of one thread; returns when all are freed.
fn churn(heap: &SlabHeap<HostPages>, seed: u64, steps: usize) {
    let mut rng = seed | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
    for step in 0..steps {
        if next() % 3 != 0 || live.is_empty() {
            let size = match next() % 10 {
                0 => (next() % 9000) as usize,
                _ => (next() % 300) as usize,
            };
            let align = 1 << (next() % 13);
            let l = layout(size.max(1), align);
            let p = heap.allocate(l);
            if pages_for(l).is_none() {
                assert!(p.is_null());
                continue;
            }
            assert!(!p.is_null());
            assert_eq!(p.addr() % align, 0, "misaligned");
            let tag = step as u8;
            // SAFETY: `p` is a fresh block of at least `size` bytes.
            unsafe { core::ptr::write_bytes(p, tag, l.size()) };
            live.push((p, l, tag));
        } else {
            let (p, l, tag) = live.swap_remove((next() % live.len() as u64) as usize);
            // SAFETY: `p` is live, of `l.size()` bytes, and was filled with `tag`.
            let bytes = unsafe { core::slice::from_raw_parts(p, l.size()) };
            assert!(bytes.iter().all(|&b| b == tag), "block overwritten");
            // SAFETY: from `allocate(l)`, not yet freed.
            unsafe { heap.deallocate(p, l) };
        }
    }
    for (p, l, tag) in live {
        // SAFETY: as above.
        let bytes = unsafe { core::slice::from_raw_parts(p, l.size()) };
        assert!(bytes.iter().all(|&b| b == tag), "block overwritten");
        // SAFETY: as above.
        unsafe { heap.deallocate(p, l) };
    }
}

#[test]
fn single_thread() {
    let heap = SlabHeap::new(HostPages::default());
    churn(&heap, 7, 20_000);
    let s = heap.stats();
    assert_eq!((s.in_use, s.large_pages), ([0; 8], 0));
    // Only slab pages are still out.
    assert_eq!(heap.source().out.lock().unwrap().len(), s.slabs.iter().sum::<usize>());
}

#[test]
fn threads() {
    let heap = SlabHeap::new(HostPages::default());
    std::thread::scope(|s| {
        for k in 0..2 {
            let heap = &heap;
            s.spawn(move || churn(heap, 1000 + k, 4_000));
        }
    });
    let s = heap.stats();
    assert_eq!((s.in_use, s.large_pages), ([0; 8], 0));
}

#[test]
fn out_of_pages() {
    let heap = SlabHeap::new(HostPages { out: Mutex::default(), limit: Some(2) });
    assert!(heap.allocate(layout(3 * 4096, 8)).is_null());
    let a = heap.allocate(layout(4096, 4096));
    assert!(!a.is_null());
    let small: Vec<_> = (0..4096 / 64).map(|_| heap.allocate(layout(64, 8))).collect();
    assert!(small.iter().all(|p| !p.is_null()));
    assert!(heap.allocate(layout(64, 8)).is_null(), "no page for a second slab");
    let s = heap.stats();
    assert_eq!(s, HeapStats { in_use: [0, 0, 64, 0, 0, 0, 0, 0], slabs: [0, 0, 1, 0, 0, 0, 0, 0], large_pages: 1 });
    for p in small {
        // SAFETY: from `allocate` with this layout.
        unsafe { heap.deallocate(p, layout(64, 8)) };
    }
    // SAFETY: from `allocate` with this layout.
    unsafe { heap.deallocate(a, layout(4096, 4096)) };
    assert_eq!(heap.stats().large_pages, 0);
}
