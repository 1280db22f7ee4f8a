//! In-kernel tests of the memory-management wiring (part of `test`).

extern crate alloc;

use crate::cpus::{self, run_on, run_on_all};
use mm::kernel::{self as mem, CONTAINERS, KERNEL_ROOT, PHYS};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use dev::println;
use lock::SpinLock;
use machine::MAX_CPUS;
use mm::kmap::lookup;
use mm::{AddressSpace, CpuSet, Rights};

pub type Outcome = Result<(), &'static str>;

/// The kernel page tables give each part of the image exactly its rights.
pub fn layout() -> Outcome {
    let root = *KERNEL_ROOT.get().ok_or("no kernel page tables")?;
    let text = layout as fn() -> Outcome as usize as u64;
    let (_, w, x, _) = lookup(&PHYS, root, text).ok_or("kernel text unmapped")?;
    if w || !x {
        return Err("kernel text is not read+execute only");
    }
    static SOME_DATA: AtomicU64 = AtomicU64::new(0);
    let (_, w, x, _) = lookup(&PHYS, root, &SOME_DATA as *const _ as u64).ok_or("kernel data unmapped")?;
    if !w || x {
        return Err("kernel data is not read+write, no-execute");
    }
    let (_, w, x, uc) = lookup(&PHYS, root, machine::layout::phys_to_virt(0x10_0000)).ok_or("direct map missing")?;
    if !w || x || uc {
        return Err("direct map of RAM must be RW, NX, write-back");
    }
    let (_, _, _, uc) = lookup(&PHYS, root, machine::layout::phys_to_virt(dev::lapic::DEFAULT_PHYS)).ok_or("local APIC not mapped")?;
    if !uc {
        return Err("local APIC page is not uncached");
    }
    if lookup(&PHYS, root, 0x10_0000).is_some() {
        return Err("the boot identity map is still present");
    }
    for g in machine::boot::guard_pages() {
        if lookup(&PHYS, root, g).is_some() {
            return Err("a stack guard page is mapped");
        }
    }
    Ok(())
}

/// Root quota = free frames at boot, and nothing is charged when idle.
pub fn root_accounting() -> Outcome {
    let s = mem::SUMMARY.get().ok_or("no summary")?;
    let root = CONTAINERS.info(*mem::ROOT.get().ok_or("no root")?).map_err(|_| "root missing")?;
    if root.quota != s.free_at_boot as u64 {
        return Err("root quota differs from the free frames at boot");
    }
    if root.usage != 0 || root.own != 0 {
        return Err("root container has usage with no process running");
    }
    Ok(())
}

const STORM_PAGES: u64 = 64;
const STORM_ROUNDS: u64 = 40;
static STORM_ERRORS: AtomicUsize = AtomicUsize::new(0);
static STORM_FIRST_ERROR: SpinLock<Option<&'static str>> = SpinLock::new(None);

fn storm_fail(why: &'static str) {
    STORM_ERRORS.fetch_add(1, Ordering::Relaxed);
    STORM_FIRST_ERROR.lock().get_or_insert(why);
}

/// One CPU's part of the storm: its own container and address space,
/// allocate + write + map + translate + unmap + free, and heap churn.
fn storm_cpu(cpu: usize) {
    let Ok(root) = mem::ROOT.get().ok_or(()) else { return storm_fail("no root") };
    let Ok(c) = CONTAINERS.split(*root, STORM_PAGES * 2 + 16) else { return storm_fail("split refused") };
    let m = mem::mm();
    let Ok(mut space) = AddressSpace::new(m, c, KERNEL_ROOT.get().copied()) else { return storm_fail("space refused") };
    let base = 0x4000_0000 + cpu as u64 * 0x100_0000;
    let mut heap: Vec<Vec<u64>> = Vec::new();
    for round in 0..STORM_ROUNDS {
        let mut frames = [mm::Frame::from_pfn(0); STORM_PAGES as usize];
        for i in 0..STORM_PAGES {
            let f = match CONTAINERS.alloc_page(m.frames, c) {
                Ok(f) => f,
                Err(_) => return storm_fail("allocation refused within quota"),
            };
            let stamp = (cpu as u64) << 48 | round << 24 | i;
            // SAFETY: the frame was just allocated to this container (ours).
            unsafe { machine::phys::write_u64(f.addr(), stamp) };
            if space.map(base + i * 4096, f, Rights::USER_RW).is_err() {
                return storm_fail("map refused");
            }
            frames[i as usize] = f;
        }
        for i in 0..STORM_PAGES {
            match space.translate(base + i * 4096) {
                // SAFETY: reading back our own frame.
                Some((f, r)) if f == frames[i as usize] && r == Rights::USER_RW && unsafe { machine::phys::read_u64(f.addr()) } == ((cpu as u64) << 48 | round << 24 | i) => {}
                _ => return storm_fail("translate or contents wrong"),
            }
            match space.unmap(base + i * 4096) {
                // The space is loaded on no CPU, so no TLB holds its entries.
                Ok((f, _flush)) => {
                    if CONTAINERS.free_page(m.frames, c, f).is_err() {
                        return storm_fail("free refused");
                    }
                }
                Err(_) => return storm_fail("unmap refused"),
            }
        }
        heap.push((0..(round + cpu as u64) % 50).collect());
        if heap.len() > 8 {
            heap.remove(0);
        }
    }
    drop(heap);
    if space.destroy(|_, _, _| {}).is_err() {
        return storm_fail("destroy refused");
    }
    if CONTAINERS.destroy(c).is_err() {
        storm_fail("container destroy refused");
    }
}

/// All CPUs at once: allocate/map/free storms; afterwards free frames and
/// the root's usage must be exactly what they were.
pub fn storm() -> Outcome {
    let t = mem::frames();
    let root = *mem::ROOT.get().ok_or("no root")?;
    let heap_pages = || {
        let h = mem::HEAP.stats();
        h.slabs.iter().sum::<usize>() + h.large_pages
    };
    let (free_before, heap_before) = (t.free_frames(), heap_pages());
    let usage_before = CONTAINERS.info(root).map_err(|_| "root")?.usage;
    STORM_ERRORS.store(0, Ordering::Relaxed);
    run_on_all(storm_cpu);
    if let Some(why) = *STORM_FIRST_ERROR.lock() {
        return Err(why);
    }
    let (free_after, usage_after) = (t.free_frames(), CONTAINERS.info(root).map_err(|_| "root")?.usage);
    // The heap keeps the slab pages it grew (by design); everything else
    // must be back.
    let heap_grew = heap_pages() - heap_before;
    println!(
        "  {} CPUs x {} rounds x {} pages: free frames {} -> {} (+{} kept by the kernel heap), root usage {} -> {}",
        cpus::online_count(),
        STORM_ROUNDS,
        STORM_PAGES,
        free_before,
        free_after,
        heap_grew,
        usage_before,
        usage_after
    );
    if free_after + heap_grew != free_before {
        return Err("free frames did not return to their value before the storm");
    }
    if usage_after != usage_before {
        return Err("root usage did not return to its value before the storm");
    }
    t.check_integrity()
}

/// A container's quota bounds its page tables too, and a refused map
/// changes nothing.
pub fn quota_refused() -> Outcome {
    let root = *mem::ROOT.get().ok_or("no root")?;
    let free_before = mem::frames().free_frames();
    let c = CONTAINERS.split(root, 3).map_err(|_| "split refused")?;
    let m = mem::mm();
    let mut space = AddressSpace::new(m, c, KERNEL_ROOT.get().copied()).map_err(|_| "space refused")?;
    let f = mem::frames().alloc(mm::Owner::Kernel).map_err(|_| "no frame")?;
    // Root page + 3 tables + the frame would be 5 > 3: refused.
    let r = space.map(0x1000_0000, f, Rights::USER_RW);
    let _ = mem::frames().free(f, mm::Owner::Kernel);
    let unchanged = space.tables() == 1 && space.translate(0x1000_0000).is_none();
    let _ = space.destroy(|_, _, _| {});
    let _ = CONTAINERS.destroy(c);
    if r != Err(mm::MmError::QuotaExceeded) {
        return Err("map beyond quota was not refused with QuotaExceeded");
    }
    if !unchanged {
        return Err("a refused map changed the address space");
    }
    if mem::frames().free_frames() != free_before {
        return Err("frames leaked");
    }
    Ok(())
}

// ---- TLB shootdown: CPU 1 must see a remap done on CPU 0 ----

const TLB_VA: u64 = 0x2000_0000;
static TLB_SPACE: SpinLock<Option<AddressSpace<'static, mm::kernel::DirectMap>>> = SpinLock::new(None);
static TLB_ROOT: AtomicU64 = AtomicU64::new(0);
static TLB_PHASE: AtomicUsize = AtomicUsize::new(0);
static TLB_SEEN: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

fn tlb_cpu(cpu: usize) {
    match cpu {
        1 => {
            mem::activate(mm::Frame::from_pfn(TLB_ROOT.load(Ordering::Acquire) >> 12));
            // SAFETY: TLB_VA is mapped RW in the space just loaded; the read
            // caches the translation in this CPU's TLB.
            TLB_SEEN[0].store(unsafe { core::ptr::read_volatile(TLB_VA as *const u64) }, Ordering::Relaxed);
            TLB_PHASE.store(1, Ordering::Release);
            while TLB_PHASE.load(Ordering::Acquire) != 2 {
                // Interrupts are masked: the shootdown IPI stays pending until
                // this window (as it would until a CPU leaves the kernel).
                // SAFETY: ring 0, IDT installed.
                unsafe { machine::x86::take_pending_interrupts() };
            }
            // SAFETY: TLB_VA is mapped (now to the second frame).
            TLB_SEEN[1].store(unsafe { core::ptr::read_volatile(TLB_VA as *const u64) }, Ordering::Relaxed);
            mem::activate_kernel_tables();
        }
        0 => {
            while TLB_PHASE.load(Ordering::Acquire) != 1 {
                core::hint::spin_loop();
            }
            let mut g = TLB_SPACE.lock();
            let Some(space) = g.as_mut() else { return };
            let (old, flush) = space.unmap(TLB_VA).expect("mapped");
            let new = NEXT_FRAME.load(Ordering::Relaxed);
            space.map(TLB_VA, mm::Frame::from_pfn(new), Rights::USER_RW).expect("remap");
            drop(g);
            mem::shootdown(CpuSet::from_bits(0b10), Some(flush.va()));
            OLD_FRAME.store(old.pfn(), Ordering::Relaxed);
            TLB_PHASE.store(2, Ordering::Release);
        }
        _ => {}
    }
}

static NEXT_FRAME: AtomicU64 = AtomicU64::new(0);
static OLD_FRAME: AtomicU64 = AtomicU64::new(0);

pub fn shootdown() -> Outcome {
    if !cpus::is_online(1) {
        return Ok(()); // one CPU: nothing to shoot down
    }
    let root = *mem::ROOT.get().ok_or("no root")?;
    let m = mem::mm();
    let c = CONTAINERS.split(root, 16).map_err(|_| "split")?;
    let mut space = AddressSpace::new(m, c, KERNEL_ROOT.get().copied()).map_err(|_| "space")?;
    let a = CONTAINERS.alloc_page(m.frames, c).map_err(|_| "alloc")?;
    let b = CONTAINERS.alloc_page(m.frames, c).map_err(|_| "alloc")?;
    // SAFETY: both frames were just allocated to this test's container.
    unsafe {
        machine::phys::write_u64(a.addr(), 0xaaaa);
        machine::phys::write_u64(b.addr(), 0xbbbb);
    }
    space.map(TLB_VA, a, Rights::USER_RW).map_err(|_| "map")?;
    TLB_ROOT.store(space.root().addr(), Ordering::Release);
    NEXT_FRAME.store(b.pfn(), Ordering::Relaxed);
    TLB_PHASE.store(0, Ordering::Relaxed);
    *TLB_SPACE.lock() = Some(space);
    let before = mem::SHOOTDOWNS[1].load(Ordering::Relaxed);
    run_on(2, tlb_cpu);
    let space = TLB_SPACE.lock().take().ok_or("space vanished")?;
    let _ = space.destroy(|_, f, _| {
        let _ = CONTAINERS.free_page(m.frames, c, f);
    });
    let _ = CONTAINERS.free_page(m.frames, c, mm::Frame::from_pfn(OLD_FRAME.load(Ordering::Relaxed)));
    let _ = CONTAINERS.destroy(c);
    let seen = [TLB_SEEN[0].load(Ordering::Relaxed), TLB_SEEN[1].load(Ordering::Relaxed)];
    println!("  cpu1 read {:#x} before and {:#x} after cpu0's remap; shootdown IPIs on cpu1: {}", seen[0], seen[1], mem::SHOOTDOWNS[1].load(Ordering::Relaxed) - before);
    if seen[0] != 0xaaaa {
        return Err("cpu1 did not see the first mapping");
    }
    if seen[1] != 0xbbbb {
        return Err("cpu1 still saw the old page: TLB not shot down");
    }
    Ok(())
}

/// The kernel heap serves every CPU at once.
pub fn heap() -> Outcome {
    static SUMS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
    run_on_all(|cpu| {
        let mut m: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for i in 0..400u64 {
            m.insert(i, alloc::vec![cpu as u8; (i % 300) as usize]);
            if i % 3 == 0 {
                m.remove(&(i / 2));
            }
        }
        let big = alloc::vec![1u64; 3000]; // a multi-page block
        SUMS[cpu].store(m.values().map(|v| v.len() as u64).sum::<u64>() + big.iter().sum::<u64>(), Ordering::Relaxed);
    });
    let first = SUMS[0].load(Ordering::Relaxed);
    if first == 0 || (0..MAX_CPUS).filter(|&c| cpus::is_online(c)).any(|c| SUMS[c].load(Ordering::Relaxed) != first) {
        return Err("heap-built collections differ between CPUs");
    }
    Ok(())
}

/// A kernel stack is handed out zeroed: nothing its frames held before (a
/// dead process's program, its data) survives below the first frame that
/// `map_kernel_stack` lays out. (Under QEMU TCG a stack on frames that still
/// had translated code made every push take the emulator's slow path.)
pub fn kernel_stack_zeroed() -> Outcome {
    const PAGES: usize = 4;
    extern "C" fn never_started(_: u64) -> ! {
        panic!("the zeroed-stack test's thread was started");
    }
    let frames = mem::frames();
    let first = frames.alloc_contiguous(PAGES, 1, mm::Owner::Kernel).map_err(|_| "no frames for the stack")?;
    for i in 0..PAGES {
        mem::write_frame(mm::Frame::from_pfn(first.pfn() + i as u64), 0, &[0xa5; 4096]);
    }
    // Slot 0 of the stack area: no process has pid 0.
    let r = match mem::map_kernel_stack(0, first, PAGES, never_started, 0) {
        Ok((rsp, top)) => {
            let bottom = top - (PAGES * 4096) as u64;
            // SAFETY: bottom..rsp lies in the stack just mapped in the
            // stack area (kernel read/write), which nothing else uses.
            let left = (bottom..rsp).step_by(8).filter(|&a| unsafe { core::ptr::read_volatile(a as *const u64) } != 0).count();
            if left == 0 { Ok(()) } else { Err("a new kernel stack still holds its frames' old bytes") }
        }
        Err(_) => Err("kernel stack not mapped"),
    };
    mem::unmap_kernel_stack(0, CpuSet::EMPTY);
    frames.free_contiguous(first, PAGES, mm::Owner::Kernel).map_err(|_| "stack frames not freed")?;
    r
}
