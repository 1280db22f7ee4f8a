//! `bench mm`: allocate+free of 4 KiB frames with mc2's allocation table
//! (the very `mm` crate the kernel links), against a well-kept peer, the
//! `buddy_system_allocator` crate's `FrameAllocator`, in the same run.
//!
//! Two patterns, both over a 64 MiB pool:
//! - `pair`: allocate one frame and free it at once (the hot path);
//! - `batch`: allocate 1,000 frames, then free them all (free-list work).
//!
//! Cycles per allocate+free (TSC), median of interleaved repetitions.

use crate::json::Json;
use crate::tsc;
use buddy_system_allocator::FrameAllocator;
use mm::{AllocTable, ContainerId, Containers, FrameEntry, Owner};

pub struct Options {
    pub out: Option<std::path::PathBuf>,
    pub reps: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { out: None, reps: 201 }
    }
}

const POOL_FRAMES: u64 = 16 * 1024;
const BATCH: usize = 1000;
const PAIRS: usize = 10_000;

fn mc2_table() -> AllocTable<'static> {
    let regions = [(0u64, POOL_FRAMES * 4096)];
    let n = AllocTable::entries_needed(&regions).unwrap();
    let storage: &'static mut [FrameEntry] = Box::leak((0..n).map(|_| FrameEntry::default()).collect::<Vec<_>>().into_boxed_slice());
    AllocTable::new(storage, &regions, &[]).unwrap()
}

fn peer() -> FrameAllocator<32> {
    let mut f = FrameAllocator::<32>::new();
    f.add_frame(0, POOL_FRAMES as usize);
    f
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub fn run(o: &Options) -> Result<(), String> {
    let table = mc2_table();
    let containers = Containers::new();
    let root: ContainerId = containers.root(POOL_FRAMES).map_err(|e| e.to_string())?;
    let mut buddy = peer();
    let mut held: Vec<mm::Frame> = Vec::with_capacity(BATCH);
    let mut held_peer: Vec<usize> = Vec::with_capacity(BATCH);
    let (mut pair_mc2, mut pair_peer, mut batch_mc2, mut batch_peer, mut pair_cont) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..o.reps {
        // pair: mc2
        let t0 = tsc::now();
        for _ in 0..PAIRS {
            let f = table.alloc(Owner::Kernel).map_err(|e| e.to_string())?;
            table.free(std::hint::black_box(f), Owner::Kernel).map_err(|e| e.to_string())?;
        }
        pair_mc2.push((tsc::now() - t0) as f64 / PAIRS as f64);
        // pair: peer
        let t0 = tsc::now();
        for _ in 0..PAIRS {
            let f = buddy.alloc(1).ok_or("peer empty")?;
            buddy.dealloc(std::hint::black_box(f), 1);
        }
        pair_peer.push((tsc::now() - t0) as f64 / PAIRS as f64);
        // pair through a container (charge + allocate, free + uncharge)
        let t0 = tsc::now();
        for _ in 0..PAIRS {
            let f = containers.alloc_page(&table, root).map_err(|e| e.to_string())?;
            containers.free_page(&table, root, std::hint::black_box(f)).map_err(|e| e.to_string())?;
        }
        pair_cont.push((tsc::now() - t0) as f64 / PAIRS as f64);
        // batch: mc2
        let t0 = tsc::now();
        for _ in 0..BATCH {
            held.push(table.alloc(Owner::Kernel).map_err(|e| e.to_string())?);
        }
        for f in held.drain(..) {
            table.free(f, Owner::Kernel).map_err(|e| e.to_string())?;
        }
        batch_mc2.push((tsc::now() - t0) as f64 / BATCH as f64);
        // batch: peer
        let t0 = tsc::now();
        for _ in 0..BATCH {
            held_peer.push(buddy.alloc(1).ok_or("peer empty")?);
        }
        for f in held_peer.drain(..) {
            buddy.dealloc(f, 1);
        }
        batch_peer.push((tsc::now() - t0) as f64 / BATCH as f64);
    }
    let (pm, pp, bm, bp, pc) = (median(&mut pair_mc2), median(&mut pair_peer), median(&mut batch_mc2), median(&mut batch_peer), median(&mut pair_cont));
    println!("mc2 mm benchmark: cycles per allocate+free of a 4 KiB frame, median of {} interleaved reps", o.reps);
    println!("  pattern        mc2 table   buddy_system_allocator   ratio");
    println!("  pair        {pm:>12.1} {pp:>24.1} {:>7.2}", pm / pp);
    println!("  batch 1000  {bm:>12.1} {bp:>24.1} {:>7.2}", bm / bp);
    println!("  pair via a container (charge+alloc, free+uncharge): {pc:.1}");
    let figures = Json::obj()
        .with("alloc_free_over_peer", (pm / pp + bm / bp) / 2.0)
        .with("pair_over_peer", pm / pp)
        .with("batch_over_peer", bm / bp)
        .with("container_pair_cycles", pc);
    let out = Json::obj()
        .with("benchmark", "mm-host")
        .with("unit", "TSC cycles per allocate+free")
        .with("peer", "buddy_system_allocator 0.11 FrameAllocator<32>")
        .with("reps", o.reps)
        .with("pool_frames", POOL_FRAMES)
        .with("pair", Json::obj().with("mc2", pm).with("peer", pp).with("mc2_container", pc))
        .with("batch", Json::obj().with("mc2", bm).with("peer", bp))
        .with("figures", figures);
    if let Some(path) = &o.out {
        std::fs::write(path, out.to_string()).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
