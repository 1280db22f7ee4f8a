//! The kernel's instance of memory management: the allocation table over
//! the boot memory map, the root container, the kernel's own page tables
//! (replacing the boot tables), the kernel heap, page tables reached through
//! the direct map, and TLB shootdowns between CPUs.
//!
//! Everything that touches hardware (the direct map, CR3, INVLPG, IPIs) is
//! only compiled for the kernel (`--cfg mc2_bare`); on the host the types
//! exist so that the layers above build, but the direct map does not.

use crate::heap::{PageSource, SlabHeap};
use crate::{AllocTable, ContainerId, Containers, CpuSet, Frame, Mm, Owner, PhysAccess};
use arrayvec::ArrayVec;
use core::sync::atomic::{AtomicU64, Ordering};
use lock::{Once, SpinLock};
#[cfg(mc2_bare)]
use machine::trap::vector::FLUSH as FLUSH_VECTOR;
use machine::MAX_CPUS;
#[cfg(mc2_bare)]
use crate::kmap::{self, ImageSection, KernelLayout};
#[cfg(mc2_bare)]
use crate::FrameEntry;
#[cfg(mc2_bare)]
use machine::multiboot::{BootInfo, RegionKind};

/// Page tables and frames reached through the direct map.
pub struct DirectMap;

// The direct map is the one place mm touches memory it does not own as Rust
// objects: page-table pages, addressed by frame.

#[allow(unsafe_code)]
impl PhysAccess for DirectMap {
    fn read_entry(&self, table: Frame, index: usize) -> u64 {
        // SAFETY: mm only names frames it allocated as page tables (owned by
        // the kernel or by the space's container), and index < 512.
        unsafe { machine::phys::read_u64(table.addr() + index as u64 * 8) }
    }
    fn write_entry(&self, table: Frame, index: usize, value: u64) {
        // SAFETY: as in read_entry; the table belongs to the caller's space.
        unsafe { machine::phys::write_u64(table.addr() + index as u64 * 8, value) }
    }
    fn zero_table(&self, table: Frame) {
        // SAFETY: a freshly allocated table frame owned by the caller.
        unsafe { machine::phys::zero(table.addr(), 4096) }
    }
}

pub static PHYS: DirectMap = DirectMap;
pub static FRAMES: Once<AllocTable<'static>> = Once::new();
pub static CONTAINERS: Containers = Containers::new();
pub static ROOT: Once<ContainerId> = Once::new();
pub static KERNEL_ROOT: Once<Frame> = Once::new();

/// The allocation table (after [`init`]).
pub fn frames() -> &'static AllocTable<'static> {
    FRAMES.get().expect("memory management initialised")
}

/// The handle address spaces need.
pub fn mm() -> Mm<'static, DirectMap> {
    Mm { frames: frames(), containers: &CONTAINERS, phys: &PHYS }
}

/// What `init` found, for the boot log and the self-test.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub total_frames: usize,
    pub free_at_boot: usize,
    pub table_bytes: u64,
    pub kernel_tables: usize,
    pub direct_map: u64,
}

pub static SUMMARY: Once<Summary> = Once::new();

#[cfg(mc2_bare)]
const MIB: u64 = 1 << 20;

/// Build the allocation table, the root container and the kernel page tables.
#[cfg(mc2_bare)]
#[allow(unsafe_code)]
pub fn init(info: &BootInfo) -> Result<Summary, &'static str> {
    let usable: ArrayVec<(u64, u64), 128> =
        info.memory.iter().filter(|r| r.kind == RegionKind::Usable).map(|r| (r.base, r.len)).collect();
    let (img_start, img_end) = machine::boot::image_range();
    let mut excl: ArrayVec<(u64, u64), 32> = ArrayVec::new();
    excl.push((0, MIB)); // BIOS data, EBDA, the AP trampoline page, VGA, ROMs
    excl.push((img_start, img_end - img_start));
    for m in &info.modules {
        let _ = excl.try_push((m.start, m.end - m.start));
    }
    let n = AllocTable::entries_needed(&usable).map_err(|_| "memory map does not fit the allocation table")?;
    let bytes = (n * core::mem::size_of::<FrameEntry>()) as u64;
    let bytes = bytes.div_ceil(4096) * 4096;
    let at = place(&usable, &excl, bytes).ok_or("no room for the allocation table in usable RAM below 4 GiB")?;
    let _ = excl.try_push((at, bytes));
    // SAFETY: [at, at+bytes) lies in usable RAM below 4 GiB (direct-mapped),
    // overlaps no exclusion (kernel image, modules, low memory), and is
    // excluded from the table it will hold, so nothing else will ever use
    // it; FrameEntry is a set of atomics, valid when zeroed; 4 KiB aligned.
    let storage: &'static mut [FrameEntry] = unsafe { machine::phys::carve(at, n) };
    let table = AllocTable::new(storage, &usable, &excl).map_err(|_| "allocation table rejected the memory map")?;
    let table = FRAMES.set(table).map_err(|_| "memory management initialised twice")?;

    // The kernel half: direct map of RAM (at least the low 4 GiB, for the
    // MMIO there; reserved ranges above, such as QEMU's 64-bit PCI window,
    // are left out) and the image with per-section rights.
    let ram: ArrayVec<(u64, u64), 128> =
        info.memory.iter().filter(|r| r.kind != RegionKind::Reserved && r.kind != RegionKind::Defective).map(|r| (r.base, r.len)).collect();
    let top = ram.iter().map(|&(b, l)| b + l).max().unwrap_or(0);
    let direct = top.max(4 << 30).div_ceil(1 << 30) << 30;
    let image = image_without_guards();
    let layout = KernelLayout { direct_base: machine::layout::PHYS_MAP_BASE, direct_size: direct, ram: &ram, image: &image };
    let k = kmap::build(&PHYS, || table.alloc(Owner::Kernel).ok(), &layout).map_err(|_| "cannot build the kernel page tables")?;
    let _ = KERNEL_ROOT.set(k.root);
    machine::phys::set_direct_map_size(direct);

    let free = table.free_frames();
    let root = CONTAINERS.root(free as u64).map_err(|_| "cannot create the root container")?;
    let _ = ROOT.set(root);
    let s = Summary { total_frames: table.total_frames(), free_at_boot: free, table_bytes: bytes, kernel_tables: k.tables, direct_map: direct };
    let _ = SUMMARY.set(s);
    Ok(s)
}

/// The image sections with the stacks' guard pages cut out (left unmapped).
#[cfg(mc2_bare)]
fn image_without_guards() -> ArrayVec<ImageSection, 96> {
    let mut guards: ArrayVec<u64, 80> = machine::boot::guard_pages().collect();
    guards.sort_unstable();
    let mut out = ArrayVec::new();
    for s in machine::boot::image_sections() {
        let end = s.va + s.len.div_ceil(4096) * 4096;
        let mut at = s.va;
        for &g in guards.iter().filter(|&&g| g >= s.va && g < end) {
            if g > at {
                out.push(ImageSection { va: at, pa: s.pa + (at - s.va), len: g - at, write: s.write, exec: s.exec });
            }
            at = g + 4096;
        }
        if end > at {
            out.push(ImageSection { va: at, pa: s.pa + (at - s.va), len: end - at, write: s.write, exec: s.exec });
        }
    }
    out
}

/// First 4 KiB-aligned spot of `bytes` in a usable region, at or above 1 MiB
/// and below 4 GiB (the boot direct map), clear of every exclusion.
#[cfg(mc2_bare)]
fn place(usable: &[(u64, u64)], excl: &[(u64, u64)], bytes: u64) -> Option<u64> {
    for &(base, len) in usable {
        let end = (base + len).min(4 << 30);
        let mut at = base.max(MIB).div_ceil(4096) * 4096;
        while at + bytes <= end {
            match excl.iter().find(|&&(b, l)| b < at + bytes && b + l > at) {
                Some(&(b, l)) => at = (b + l).div_ceil(4096) * 4096,
                None => return Some(at),
            }
        }
    }
    None
}

/// Load the kernel's page tables on the calling CPU (after `init`).
#[cfg(mc2_bare)]
#[allow(unsafe_code)]
pub fn activate_kernel_tables() {
    if let Some(root) = KERNEL_ROOT.get() {
        // SAFETY: the kernel tables map the whole image (with the rights it
        // needs), the direct map and MMIO exactly as the boot tables did for
        // everything the kernel still uses; the low identity map is only
        // needed to start APs, which happens before this.
        unsafe { machine::x86::write_cr3(root.addr()) };
    }
}

/// Load `root` (a user address space sharing the kernel half) on this CPU.
#[cfg(mc2_bare)]
#[allow(unsafe_code)]
pub fn activate(root: Frame) {
    // SAFETY: every address space copies the kernel half from KERNEL_ROOT,
    // so the kernel keeps running unchanged after the switch.
    unsafe { machine::x86::write_cr3(root.addr()) };
}

// ---- the kernel heap ----

/// Kernel frames for the heap, handed out as direct-map addresses.
pub struct KernelPages;

impl PageSource for KernelPages {
    fn alloc_pages(&self, n: usize) -> Option<usize> {
        let t = FRAMES.get()?;
        let f = if n == 1 { t.alloc(Owner::Kernel).ok()? } else { t.alloc_contiguous(n, 1, Owner::Kernel).ok()? };
        Some(machine::layout::phys_to_virt(f.addr()) as usize)
    }
    fn free_pages(&self, va: usize, n: usize) {
        let Some(t) = FRAMES.get() else { return };
        let Some(pa) = machine::layout::kernel_virt_to_phys(va as u64) else { return };
        let f = Frame::from_pfn(pa >> 12);
        let _ = if n == 1 { t.free(f, Owner::Kernel) } else { t.free_contiguous(f, n, Owner::Kernel) };
    }
}

#[cfg_attr(mc2_bare, global_allocator)]
pub static HEAP: SlabHeap<KernelPages> = SlabHeap::new(KernelPages);

// ---- TLB shootdown ----

/// Pages to invalidate, posted to a CPU (or "everything").
struct Mailbox {
    pages: ArrayVec<u64, 16>,
    all: bool,
}

static MAILBOX: [SpinLock<Mailbox>; MAX_CPUS] = [const { SpinLock::new(Mailbox { pages: ArrayVec::new_const(), all: false }) }; MAX_CPUS];
static REQUESTED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static DONE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Shootdown IPIs handled per CPU (for the self-test).
pub static SHOOTDOWNS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

#[allow(unsafe_code)]
fn invalidate(va: Option<u64>) {
    if !cfg!(mc2_bare) {
        return;
    }
    // SAFETY: ring 0; INVLPG and a CR3 reload only drop TLB entries.
    unsafe {
        match va {
            Some(va) => machine::x86::invlpg(va as usize),
            None => machine::x86::write_cr3(machine::x86::read_cr3()),
        }
    }
}

/// Process the invalidations posted to this CPU (from the IPI handler, and
/// by a CPU waiting for its own shootdown, so two CPUs shooting at each other
/// with interrupts masked cannot deadlock).
pub fn handle_flush() {
    let me = machine::cpu::id();
    let (pages, all, gen) = {
        let mut mb = MAILBOX[me].lock();
        let r = (core::mem::take(&mut mb.pages), mb.all, REQUESTED[me].load(Ordering::Acquire));
        mb.all = false;
        r
    };
    if all {
        invalidate(None);
    } else {
        for va in pages {
            invalidate(Some(va));
        }
    }
    DONE[me].fetch_max(gen, Ordering::Release);
    SHOOTDOWNS[me].fetch_add(1, Ordering::Relaxed);
}

/// Invalidate page `va` (or the whole TLB with `None`) on every CPU in `cpus`
/// and wait until each has done it. Must not be called with a spin lock held
/// that the target CPUs might be waiting for.
pub fn shootdown(cpus: CpuSet, va: Option<u64>) {
    let me = machine::cpu::id();
    let mut wait: ArrayVec<(usize, u64), MAX_CPUS> = ArrayVec::new();
    for c in cpus.iter() {
        if c == me {
            invalidate(va);
            continue;
        }
        let gen = {
            let mut mb = MAILBOX[c].lock();
            match va {
                Some(v) if !mb.all && mb.pages.try_push(v).is_ok() => {}
                _ => mb.all = true,
            }
            REQUESTED[c].fetch_add(1, Ordering::AcqRel) + 1
        };
        #[cfg(mc2_bare)]
        dev::lapic::local().send_ipi(machine::percpu::apic_id(c), FLUSH_VECTOR);
        wait.push((c, gen));
    }
    for (c, gen) in wait {
        while DONE[c].load(Ordering::Acquire) < gen {
            if REQUESTED[me].load(Ordering::Acquire) > DONE[me].load(Ordering::Acquire) {
                handle_flush();
            }
            machine::x86::pause();
        }
    }
}
