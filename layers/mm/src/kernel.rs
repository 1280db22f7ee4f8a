//! The kernel's instance of memory management: the allocation table over
//! the boot memory map, the root container, the kernel's own page tables
//! (replacing the boot tables), the kernel heap, page tables reached through
//! the direct map, and TLB shootdowns between CPUs.
//!
//! Everything that touches hardware (the direct map, CR3, INVLPG, IPIs) is
//! only compiled for the kernel (`--cfg mc2_bare`); on the host the types
//! exist so that the layers above build, but the direct map does not.

use crate::heap::{PageSource, SlabHeap};
use crate::kmap::{StackArea, StackPart};
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
    #[inline]
    fn read_entry(&self, table: Frame, index: usize) -> u64 {
        let entry = machine::layout::phys_to_virt(table.addr()) as *const u64;
        // SAFETY: mm only names frames it allocated as page tables (owned by
        // the kernel or by the space's container); they are RAM, so inside
        // the direct map; `index & 511` stays inside the 4 KiB table. (The
        // hot path of every page walk: no further checks.)
        unsafe { core::ptr::read_volatile(entry.add(index & 511)) }
    }
    #[inline]
    fn write_entry(&self, table: Frame, index: usize, value: u64) {
        let entry = machine::layout::phys_to_virt(table.addr()) as *mut u64;
        // SAFETY: as in read_entry; the table belongs to the caller's space.
        unsafe { core::ptr::write_volatile(entry.add(index & 511), value) }
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
    // The kernel-stack area, before any address space copies the kernel half.
    let (stacks, stack_tables) = kmap::add_stack_area(&PHYS, k.root, machine::layout::KSTACK_AREA, || table.alloc(Owner::Kernel).ok())
        .map_err(|_| "cannot build the kernel-stack area")?;
    let _ = STACKS.set(stacks);
    machine::phys::set_direct_map_size(direct);

    let free = table.free_frames();
    let root = CONTAINERS.root(free as u64).map_err(|_| "cannot create the root container")?;
    let _ = ROOT.set(root);
    let s = Summary { total_frames: table.total_frames(), free_at_boot: free, table_bytes: bytes, kernel_tables: k.tables + stack_tables, direct_map: direct };
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

/// Serve shootdowns posted to this CPU, if any (for CPUs that wait with
/// interrupts masked for something a shooting CPU holds).
pub fn serve_shootdowns() {
    let me = machine::cpu::id();
    if REQUESTED[me].load(Ordering::Acquire) > DONE[me].load(Ordering::Acquire) {
        handle_flush();
    }
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
            serve_shootdowns();
            machine::x86::pause();
        }
    }
}

// ---- copying between user space and the kernel ----

/// Which side of a user-to-user copy faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

/// The frame behind user address `va` of `space`, if the page is mapped for
/// user mode (and writable when `write`).
fn user_frame(space: &crate::AddressSpace<'_, DirectMap>, va: u64, write: bool) -> Result<Frame, crate::MmError> {
    match space.translate(va & !(crate::PAGE_SIZE - 1)) {
        Some((f, r)) if r.user && (r.write || !write) => Ok(f),
        Some(_) => Err(crate::MmError::NotMapped),
        None => Err(crate::MmError::NotMapped),
    }
}

/// Check that `[va, va + len)` lies in the user half and every page of it
/// is mapped for user mode (writable when `write`).
pub fn check_user_range(space: &crate::AddressSpace<'_, DirectMap>, va: u64, len: usize, write: bool) -> Result<(), crate::MmError> {
    if len == 0 {
        return Ok(());
    }
    let end = va.checked_add(len as u64).ok_or(crate::MmError::NonCanonical)?;
    if end > crate::paging::USER_END {
        return Err(crate::MmError::KernelAddress);
    }
    let mut page = va & !(crate::PAGE_SIZE - 1);
    while page < end {
        user_frame(space, page, write)?;
        page += crate::PAGE_SIZE;
    }
    Ok(())
}

/// Walk `[va, va + len)` page by page, giving each piece's physical address.
fn for_each_piece(
    space: &crate::AddressSpace<'_, DirectMap>,
    va: u64,
    len: usize,
    write: bool,
    mut f: impl FnMut(u64, usize, usize),
) -> Result<(), crate::MmError> {
    check_user_range(space, va, len, write)?;
    let mut done = 0;
    while done < len {
        let at = va + done as u64;
        let off = (at & (crate::PAGE_SIZE - 1)) as usize;
        let n = (crate::PAGE_SIZE as usize - off).min(len - done);
        let frame = user_frame(space, at, write)?;
        f(frame.addr() + off as u64, done, n);
        done += n;
    }
    Ok(())
}

/// Copy `buf.len()` bytes from user address `va` of `space` (every page
/// mapped user-readable) into `buf`.
#[allow(unsafe_code)]
pub fn copy_from_user(space: &crate::AddressSpace<'_, DirectMap>, va: u64, buf: &mut [u8]) -> Result<(), crate::MmError> {
    let len = buf.len();
    for_each_piece(space, va, len, false, |pa, off, n| {
        // SAFETY: pa..pa+n lies in a frame mapped user-readable in `space`,
        // i.e. owned by its container (or shared with it); reading is allowed.
        unsafe { machine::phys::read(pa, &mut buf[off..off + n]) }
    })
}

/// Copy `data` to user address `va` of `space` (every page mapped
/// user-writable).
#[allow(unsafe_code)]
pub fn copy_to_user(space: &crate::AddressSpace<'_, DirectMap>, va: u64, data: &[u8]) -> Result<(), crate::MmError> {
    for_each_piece(space, va, data.len(), true, |pa, off, n| {
        // SAFETY: pa..pa+n lies in a frame mapped user-writable in `space`:
        // the process may write it, so the kernel may on its behalf.
        unsafe { machine::phys::write(pa, &data[off..off + n]) }
    })
}

/// Physical address of user address `va` in `space`: a plain four-level
/// walk (every entry present, the leaf user-accessible and, for `write`,
/// writable). The hot path of IPC copies, so it reads the tables directly.
#[inline]
fn user_pa(space: &crate::AddressSpace<'_, DirectMap>, va: u64, write: bool) -> Option<u64> {
    use crate::paging::{PTE_ADDR, PTE_P, PTE_PS, PTE_RW, PTE_US};
    if va >= crate::paging::USER_END {
        return None;
    }
    let need = PTE_P | PTE_US | if write { PTE_RW } else { 0 };
    let mut table = space.root().addr();
    for shift in [39u32, 30, 21, 12] {
        let e = DirectMap.read_entry(Frame::from_pfn(table >> 12), ((va >> shift) & 511) as usize);
        if e & PTE_P == 0 || (shift != 12 && e & PTE_PS != 0) {
            return None;
        }
        if shift == 12 && e & need != need {
            return None;
        }
        table = e & PTE_ADDR;
    }
    Some(table | (va & (crate::PAGE_SIZE - 1)))
}

/// Copy `len` bytes (at most 4096: one IPC message) from user memory of
/// one space to another, without a kernel buffer. Each side is translated
/// once per page, and both are checked before anything is copied.
#[allow(unsafe_code)]
pub fn copy_between(
    src: &crate::AddressSpace<'_, DirectMap>,
    src_va: u64,
    dst: &crate::AddressSpace<'_, DirectMap>,
    dst_va: u64,
    len: usize,
) -> Result<(), (Side, crate::MmError)> {
    const PAGE: u64 = crate::PAGE_SIZE;
    if len == 0 {
        return Ok(());
    }
    if len as u64 > PAGE {
        return Err((Side::Source, crate::MmError::BadRegion));
    }
    let bad = |side| (side, crate::MmError::NotMapped);
    // Each range touches at most two pages: the one of its first byte and
    // the one of its last. The source is checked completely before the
    // destination: when both are bad, the source's fault is the one
    // reported (the spec's order; an overflowing destination used to be
    // reported first, found by the conformance checks).
    let s_end = src_va.checked_add(len as u64 - 1).ok_or(bad(Side::Source))?;
    let s0 = user_pa(src, src_va, false).ok_or(bad(Side::Source))?;
    let s1 = if s_end / PAGE != src_va / PAGE { user_pa(src, s_end & !(PAGE - 1), false).ok_or(bad(Side::Source))? } else { s0 };
    let d_end = dst_va.checked_add(len as u64 - 1).ok_or(bad(Side::Destination))?;
    let d0 = user_pa(dst, dst_va, true).ok_or(bad(Side::Destination))?;
    let d1 = if d_end / PAGE != dst_va / PAGE { user_pa(dst, d_end & !(PAGE - 1), true).ok_or(bad(Side::Destination))? } else { d0 };
    let at = |first: u64, second: u64, va: u64, off: u64| {
        let o = (va & (PAGE - 1)) + off;
        if o < PAGE { first + off } else { (second & !(PAGE - 1)) + (o - PAGE) }
    };
    let mut done = 0u64;
    while done < len as u64 {
        let room = |va: u64| PAGE - ((va + done) & (PAGE - 1));
        let n = room(src_va).min(room(dst_va)).min(len as u64 - done);
        let (sp, dp) = (at(s0, s1, src_va, done), at(d0, d1, dst_va, done));
        // SAFETY: the source bytes lie in frames mapped user-readable in
        // `src`, the destination bytes in frames mapped user-writable in
        // `dst` (walked above; neither space can change meanwhile: the
        // caller holds both locks); both are RAM, inside the direct map. A
        // shared frame may be both source and destination: `copy` is memmove.
        unsafe {
            core::ptr::copy(
                machine::layout::phys_to_virt(sp) as *const u8,
                machine::layout::phys_to_virt(dp) as *mut u8,
                n as usize,
            )
        };
        done += n;
    }
    Ok(())
}

/// Write `data` into `frame` at byte `offset` (loading programs into fresh frames).
#[allow(unsafe_code)]
pub fn write_frame(frame: Frame, offset: usize, data: &[u8]) {
    assert!(offset + data.len() <= crate::PAGE_SIZE as usize);
    // SAFETY: callers pass frames they just allocated (owned by them).
    unsafe { machine::phys::write(frame.addr() + offset as u64, data) }
}

/// Read bytes of `frame` at byte `offset` (a word a guest shares with the
/// kernel in a page of its RAM).
#[allow(unsafe_code)]
pub fn read_frame(frame: Frame, offset: usize, buf: &mut [u8]) {
    assert!(offset + buf.len() <= crate::PAGE_SIZE as usize);
    // SAFETY: a frame the caller holds a reference on (RAM in the direct
    // map); reading it has no effect on anyone.
    unsafe { machine::phys::read(frame.addr() + offset as u64, buf) }
}

/// Zero a whole frame.
#[allow(unsafe_code)]
pub fn zero_frame(frame: Frame) {
    // SAFETY: callers pass frames they own.
    unsafe { machine::phys::zero(frame.addr(), crate::PAGE_SIZE as usize) }
}

/// Read bytes of physical memory that belong to the boot image (modules).
#[allow(unsafe_code)]
pub fn boot_module(start: u64, end: u64) -> &'static [u8] {
    let len = (end - start) as usize;
    // SAFETY: boot modules are excluded from the allocation table at init,
    // so their bytes are never reused; they are only ever read.
    unsafe { core::slice::from_raw_parts(machine::phys::virt(start, len), len) }
}

/// The kernel-stack area (`machine::layout::KSTACK_AREA`): process kernel
/// stacks with unmapped guard pages below each (see `kmap::StackArea`).
pub static STACKS: Once<StackArea> = Once::new();

/// Map `pages` contiguous frames from `first` (just allocated by the caller)
/// as the kernel stack of slot `slot` of the stack area, above its guard
/// pages, and lay it out so that the first switch to it calls `entry(arg)`,
/// leaving the top `machine::trap::USER_ENTRY_RESERVE` bytes free for the
/// frame that takes it to user mode. Returns (saved stack pointer, stack
/// top), both in the stack area. The caller unmaps it with
/// [`unmap_kernel_stack`] before freeing the frames.
#[allow(unsafe_code)]
pub fn map_kernel_stack(slot: usize, first: Frame, pages: usize, entry: extern "C" fn(u64) -> !, arg: u64) -> Result<(u64, u64), crate::MmError> {
    let area = STACKS.get().ok_or(crate::MmError::OutOfMemory)?;
    let low = area.map(&PHYS, slot, first, pages)?;
    let bytes = pages * crate::PAGE_SIZE as usize;
    let base = machine::phys::virt(first.addr(), bytes);
    // SAFETY: the frames are contiguous, direct-mapped, page aligned and
    // owned by the caller, who hands them to this thread alone; the stack
    // area maps the same frames, which nothing uses before the thread runs.
    let stack = unsafe { core::slice::from_raw_parts_mut(base as *mut u64, bytes / 8) };
    // Zeroed whole: no bytes of the frames' last owner survive, and (under
    // QEMU TCG) translated code cached for frames that held a dead
    // process's program is dropped now, not kept to make every later push
    // to this stack take the emulator's self-modifying-code slow path.
    stack.fill(0);
    let below = stack.len() - machine::trap::USER_ENTRY_RESERVE / 8;
    let rsp = machine::context::init_stack(&mut stack[..below], entry, arg);
    // The same place in the stack area.
    Ok((rsp - base as u64 + low, low + bytes as u64))
}

/// Unmap slot `slot`'s kernel stack and invalidate it in the TLBs of `cpus`
/// (the CPUs that ran on it) and this one, before its frames are freed. Its
/// thread must be off its CPU for good.
pub fn unmap_kernel_stack(slot: usize, cpus: CpuSet) {
    if let Some(area) = STACKS.get() {
        area.unmap(&PHYS, slot);
        // Stack pages are not global: a CR3 reload drops them.
        shootdown(cpus.with(machine::cpu::id()), None);
    }
}

/// What `va` is in the kernel-stack area (for fault reports), if in it.
pub fn kernel_stack_part(va: u64) -> Option<StackPart> {
    STACKS.get()?.locate(&PHYS, va)
}
