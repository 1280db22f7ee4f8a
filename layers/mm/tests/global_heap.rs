//! The slab heap as this test binary's global allocator (pages from the
//! system allocator): std collections, strings and threads all run on it.

use mm::heap::{PageSource, SlabHeap};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};

struct SystemPages;

impl PageSource for SystemPages {
    fn alloc_pages(&self, n: usize) -> Option<usize> {
        let layout = Layout::from_size_align(n * 4096, 4096).ok()?;
        // SAFETY: non-zero size.
        let p = unsafe { System.alloc(layout) };
        (!p.is_null()).then(|| p.expose_provenance())
    }

    fn free_pages(&self, va: usize, n: usize) {
        let layout = Layout::from_size_align(n * 4096, 4096).unwrap();
        // SAFETY: `va` came from `alloc_pages(n)`, i.e. `System.alloc(layout)`.
        unsafe { System.dealloc(std::ptr::with_exposed_provenance_mut(va), layout) }
    }
}

#[global_allocator]
static HEAP: SlabHeap<SystemPages> = SlabHeap::new(SystemPages);

#[test]
fn std_on_the_slab_heap() {
    let before = HEAP.stats();
    let mut m: HashMap<String, Vec<u64>> = HashMap::new();
    for i in 0..5000u64 {
        m.entry(format!("key{}", i % 700)).or_default().push(i);
    }
    let b: BTreeMap<u64, String> = (0..3000).map(|i| (i, "x".repeat((i % 97) as usize))).collect();
    assert_eq!(m.len(), 700);
    assert_eq!(b[&96].len(), 96);
    let big = vec![7u8; 100_000];
    assert!(HEAP.stats().large_pages >= 25);
    let sums: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|k| s.spawn(move || (0..2000u64).map(|i| vec![i; (i % 50) as usize + k]).map(|v| v.len() as u64).sum()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(sums.len(), 3);
    drop((m, b, big));
    let after = HEAP.stats();
    assert!(after.slabs.iter().sum::<usize>() >= before.slabs.iter().sum::<usize>());
}
