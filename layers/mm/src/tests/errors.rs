//! Every misuse gives its own error; worked examples of each layer.

use super::{storage, table, FakePhys, EXCLUSIONS, REGIONS};
use crate::container::{ContainerId, Containers, MAX_CONTAINERS};
use crate::frames::{AllocTable, Frame, FrameEntry, Owner, MAX_RUN};
use crate::paging::*;
use crate::shm::{ShmHost, ShmStatus, ShmTable, SpaceTable};
use crate::MmError::{self, *};
use std::collections::HashSet;
use std::vec::Vec;
use std::{format, vec};

const C1: Owner = Owner::Container(ContainerId::new(1));

#[test]
fn display_is_distinct() {
    let all = [
        OutOfMemory, OutsideRam, ReservedFrame, DoubleFree, WrongOwner, StillShared, NotAllocated, TooManyRefs,
        InvalidOwner, InvalidRun, TableTooSmall, BadRegion, NoSuchContainer, QuotaExceeded, HasChildren, HasPages,
        IsRoot, RootExists, TooManyContainers, NotCharged, Misaligned, NonCanonical, KernelAddress, BadFrame,
        AlreadyMapped, NotMapped, UnknownId, SelfShare, AlreadyOffered, AlreadyShared,
    ];
    let texts: HashSet<_> = all.iter().map(|e| format!("{e}")).collect();
    assert_eq!(texts.len(), all.len());
}

#[test]
fn table_construction_errors() {
    assert_eq!(AllocTable::entries_needed(&[(u64::MAX, 2)]), Err(BadRegion));
    assert_eq!(AllocTable::entries_needed(&[(0, 1 << 45)]), Err(BadRegion)); // 2^33 frames
    assert_eq!(AllocTable::entries_needed(&[(0x1000, 0x2800), (1 << 40, 0)]), Ok(3));
    let short = std::boxed::Box::leak(vec![FrameEntry::new(), FrameEntry::new()].into_boxed_slice());
    assert!(matches!(AllocTable::new(short, &[(0, 0x3000)], &[]), Err(TableTooSmall)));
    assert!(matches!(AllocTable::new(storage(&[(0, 0x3000)]), &[(0, 0x3000)], &[(u64::MAX, 5)]), Err(BadRegion)));
    // Zero-length exclusions exclude nothing; partial frames are excluded whole.
    let t = AllocTable::new(storage(&[(0, 0x4000)]), &[(0, 0x4000)], &[(0x1800, 0), (0x2800, 0x10)]).unwrap();
    assert_eq!(t.total_frames(), 3);
    assert_eq!(t.owner(Frame::from_pfn(2)), Ok(Owner::Reserved));
    // An empty table works and has nothing.
    let t = AllocTable::new(&mut [], &[], &[]).unwrap();
    assert_eq!((t.len(), t.total_frames()), (0, 0));
    assert_eq!(t.alloc(Owner::Kernel), Err(OutOfMemory));
    assert_eq!(t.alloc_contiguous(1, 1, Owner::Kernel), Err(OutOfMemory));
    t.check_integrity().unwrap();
}

#[test]
fn frame_errors() {
    let t = table(&REGIONS, &EXCLUSIONS);
    assert_eq!(Frame::from_addr(0x1001), Err(Misaligned));
    assert_eq!(Frame::from_addr(0x5000).map(Frame::pfn), Ok(5));
    let f = t.alloc(Owner::Kernel).unwrap();
    assert_eq!(t.owner(f), Ok(Owner::Kernel));
    assert_eq!(t.refs(f), Ok(1));
    assert_eq!(t.alloc(Owner::Free), Err(InvalidOwner));
    assert_eq!(t.alloc(Owner::Reserved), Err(InvalidOwner));
    assert_eq!(t.free(f, Owner::Reserved), Err(InvalidOwner));
    assert_eq!(t.free(f, C1), Err(WrongOwner));
    assert_eq!(t.free(Frame::from_pfn(10), Owner::Kernel), Err(ReservedFrame));
    assert_eq!(t.free(Frame::from_pfn(560), Owner::Kernel), Err(OutsideRam));
    assert_eq!(t.free(Frame::from_pfn(u64::MAX), Owner::Kernel), Err(OutsideRam));
    assert_eq!(t.owner(Frame::from_pfn(560)), Err(OutsideRam));
    assert_eq!(t.get_ref(f), Ok(2));
    assert_eq!(t.free(f, Owner::Kernel), Err(StillShared));
    assert_eq!(t.put_ref(f, C1), Err(WrongOwner));
    assert_eq!(t.put_ref(f, Owner::Kernel), Ok(false));
    assert_eq!(t.put_ref(f, Owner::Kernel), Ok(true));
    assert_eq!(t.put_ref(f, Owner::Kernel), Err(DoubleFree));
    assert_eq!(t.free(f, Owner::Kernel), Err(DoubleFree));
    assert_eq!(t.get_ref(f), Err(NotAllocated));
    assert_eq!(t.get_ref(Frame::from_pfn(0)), Err(ReservedFrame));
    let g = t.alloc(C1).unwrap();
    t.force_refs(g, u32::MAX);
    assert_eq!(t.get_ref(g), Err(TooManyRefs));
    t.force_refs(g, 1);
    t.free(g, C1).unwrap();
    t.check_integrity().unwrap();
    assert_eq!(t.free_frames(), t.total_frames());
}

#[test]
fn runs() {
    let t = table(&REGIONS, &EXCLUSIONS);
    assert_eq!(t.alloc_contiguous(0, 1, Owner::Kernel), Err(InvalidRun));
    assert_eq!(t.alloc_contiguous(MAX_RUN + 1, 1, Owner::Kernel), Err(InvalidRun));
    assert_eq!(t.alloc_contiguous(2, 3, Owner::Kernel), Err(InvalidRun));
    assert_eq!(t.alloc_contiguous(2, 0, Owner::Kernel), Err(InvalidRun));
    assert_eq!(t.alloc_contiguous(2, 1, Owner::Free), Err(InvalidOwner));
    // 256..272 is the first free run; 274..320 the longest (46).
    let r = t.alloc_contiguous(16, 16, Owner::Kernel).unwrap();
    assert_eq!(r.pfn(), 256);
    assert_eq!(t.alloc_contiguous(47, 1, Owner::Kernel), Err(OutOfMemory));
    let r2 = t.alloc_contiguous(46, 1, C1).unwrap();
    assert_eq!(r2.pfn(), 274);
    assert_eq!(t.free_frames(), 140 - 62);
    t.check_integrity().unwrap();
    assert_eq!(t.free_contiguous(r, 0, Owner::Kernel), Err(InvalidRun));
    assert_eq!(t.free_contiguous(Frame::from_pfn(550), 20, Owner::Kernel), Err(OutsideRam));
    assert_eq!(t.free_contiguous(r, 16, C1), Err(WrongOwner));
    assert_eq!(t.free_contiguous(r, 17, Owner::Kernel), Err(ReservedFrame)); // 272 is excluded
    assert_eq!(t.free_contiguous(Frame::from_pfn(271), 2, Owner::Kernel), Err(ReservedFrame));
    assert_eq!(t.owner(Frame::from_pfn(271)), Ok(Owner::Kernel), "all or nothing");
    t.free_contiguous(r, 16, Owner::Kernel).unwrap();
    assert_eq!(t.free_contiguous(r, 16, Owner::Kernel), Err(DoubleFree));
    t.free_contiguous(r2, 46, C1).unwrap();
    t.check_integrity().unwrap();
    assert_eq!(t.free_frames(), 140);
    // Single allocations then a run: the run is found after draining caches.
    let singles: Vec<_> = (0..140).map(|_| t.alloc(Owner::Kernel).unwrap()).collect();
    assert_eq!(t.alloc(Owner::Kernel), Err(OutOfMemory));
    for f in singles {
        t.free(f, Owner::Kernel).unwrap();
    }
    assert_eq!(t.alloc_contiguous(46, 2, Owner::Kernel).map(Frame::pfn), Ok(274));
    t.check_integrity().unwrap();
}

#[test]
fn container_errors() {
    let cs = Containers::new();
    let t = table(&REGIONS, &EXCLUSIONS);
    let none = ContainerId::new(7);
    assert_eq!(cs.charge(ContainerId::ROOT, 1), Err(NoSuchContainer));
    let root = cs.root(100).unwrap();
    assert_eq!(cs.root(5), Err(RootExists));
    assert_eq!(cs.split(none, 1), Err(NoSuchContainer));
    assert_eq!(cs.split(root, 101), Err(QuotaExceeded));
    assert_eq!(cs.split(root, u64::MAX), Err(QuotaExceeded));
    let a = cs.split(root, 60).unwrap();
    let b = cs.split(a, 10).unwrap();
    assert_eq!(cs.info(root).unwrap().usage, 60);
    assert_eq!(cs.remaining(a), Ok(50));
    assert_eq!(cs.destroy(root), Err(IsRoot));
    assert_eq!(cs.destroy(a), Err(HasChildren));
    assert_eq!(cs.destroy(none), Err(NoSuchContainer));
    let f = cs.alloc_page(t, b).unwrap();
    assert_eq!(t.owner(f), Ok(Owner::Container(b)));
    assert_eq!(cs.destroy(b), Err(HasPages));
    assert_eq!(cs.uncharge(b, 2), Err(NotCharged));
    assert_eq!(cs.charge(b, 10), Err(QuotaExceeded));
    cs.charge(b, 9).unwrap();
    assert_eq!(cs.alloc_page(t, b), Err(QuotaExceeded));
    cs.uncharge(b, 9).unwrap();
    assert_eq!(cs.free_page(t, a, f), Err(WrongOwner));
    cs.free_page(t, b, f).unwrap();
    cs.destroy(b).unwrap();
    assert_eq!(cs.info(b), Err(NoSuchContainer));
    cs.destroy(a).unwrap();
    assert_eq!(cs.info(root).unwrap(), crate::ContainerInfo::fresh(100, None));
    // The table runs out before the quota does: the charge is undone.
    let big = cs.split(root, 100).unwrap();
    let got: Vec<_> = (0..140).map_while(|_| cs.alloc_page(t, big).ok()).collect();
    assert_eq!(got.len(), 100);
    cs.destroy(root).unwrap_err();
    for f in got {
        cs.free_page(t, big, f).unwrap();
    }
    let small = cs.split(big, 0).unwrap();
    let hog: Vec<_> = (0..140).map(|_| t.alloc(Owner::Kernel).unwrap()).collect();
    assert_eq!(cs.alloc_page(t, big), Err(OutOfMemory));
    assert_eq!(cs.info(big).unwrap().own, 0);
    for f in hog {
        t.free(f, Owner::Kernel).unwrap();
    }
    cs.destroy(small).unwrap();
    // Capacity.
    let cs = Containers::new();
    let root = cs.root(u64::MAX).unwrap();
    for _ in 1..MAX_CONTAINERS {
        cs.split(root, 0).unwrap();
    }
    assert_eq!(cs.split(root, 0), Err(TooManyContainers));
    let mut n = 0;
    cs.for_each(|_, _| n += 1);
    assert_eq!(n, MAX_CONTAINERS);
}

fn setup() -> (&'static AllocTable<'static>, &'static Containers, &'static FakePhys) {
    let t = table(&REGIONS, &EXCLUSIONS);
    let cs = std::boxed::Box::leak(std::boxed::Box::new(Containers::new()));
    cs.root(t.total_frames() as u64).unwrap();
    (t, cs, std::boxed::Box::leak(std::boxed::Box::default()))
}

#[test]
fn paging() {
    let (t, cs, phys) = setup();
    let mm = Mm { frames: t, containers: cs, phys };
    // A kernel root with two kernel-half entries.
    let k = t.alloc(Owner::Kernel).unwrap();
    phys.write_entry(k, 256, 0x1234_5003);
    phys.write_entry(k, 511, 0x5000_0003);
    let c = cs.split(ContainerId::ROOT, 8).unwrap();
    let mut s = AddressSpace::new(mm, c, Some(k)).unwrap();
    assert_eq!(phys.read_entry(s.root(), 256), 0x1234_5003);
    assert_eq!(phys.read_entry(s.root(), 511), 0x5000_0003);
    assert_eq!((s.tables(), cs.info(c).unwrap().own), (1, 1));
    let f = Frame::from_pfn(0x42);
    let rw = Rights::USER_RW;
    s.map(0x40_0000, f, rw).unwrap();
    assert_eq!((s.tables(), cs.info(c).unwrap().own), (4, 4));
    // The leaf carries the rights, the path is permissive.
    let pml4e = phys.read_entry(s.root(), 0);
    assert_eq!(pml4e & !PTE_ADDR, PTE_P | PTE_RW | PTE_US);
    assert_eq!(s.translate(0x40_0123), Some((f, rw)));
    assert_eq!(s.translate(0x40_1000), None);
    assert_eq!(Rights { write: false, exec: true, user: false }.pte_bits(), PTE_P);
    assert_eq!(rw.pte_bits(), PTE_P | PTE_RW | PTE_US | PTE_XD);
    // Refusals.
    assert_eq!(s.map(0x40_0000, f, rw), Err(AlreadyMapped));
    assert_eq!(s.map(0x40_0800, f, rw), Err(Misaligned));
    assert_eq!(s.map(0xffff_8000_0000_0000, f, rw), Err(KernelAddress));
    assert_eq!(s.map(0x0000_8000_0000_0000, f, rw), Err(NonCanonical));
    assert_eq!(s.map(0x1000, Frame::from_pfn(MAX_PFN), rw), Err(BadFrame));
    assert_eq!(s.unmap(0x1000), Err(NotMapped));
    assert_eq!(s.unmap(0xffff_ffff_8000_0000), Err(KernelAddress));
    assert_eq!(s.protect(0x7000_0000_0000, rw), Err(NotMapped));
    assert_eq!(s.translate(0xffff_ffff_8000_0000), None);
    // Protect and unmap report the page to flush.
    let ro = Rights { write: false, exec: true, user: true };
    assert_eq!(s.protect(0x40_0000, ro).map(Flush::va), Ok(0x40_0000));
    assert_eq!(s.translate(0x40_0000), Some((f, ro)));
    assert_eq!(s.unmap(0x40_0000).map(|(f, fl)| (f, fl.va())), Ok((f, 0x40_0000)));
    assert_eq!(s.translate(0x40_0000), None);
    // Quota: 8 pages, 4 used; another PML4 slot needs 3 tables, then another 3.
    s.map(0x80_0000_0000, f, rw).unwrap();
    assert_eq!(s.tables(), 7);
    let writes = phys.writes.get();
    assert_eq!(s.map(0x100_0000_0000, f, rw), Err(QuotaExceeded));
    assert_eq!(phys.writes.get(), writes, "a refused map writes nothing");
    assert_eq!((s.tables(), cs.info(c).unwrap().own), (7, 7));
    s.map(0x80_0000_1000, Frame::from_pfn(0x43), ro).unwrap(); // no new table
    let mut leaves = Vec::new();
    assert_eq!(s.destroy(|va, f, r| leaves.push((va, f, r))), Ok(7));
    leaves.sort();
    assert_eq!(leaves, vec![(0x80_0000_0000, f, rw), (0x80_0000_1000, Frame::from_pfn(0x43), ro)]);
    assert_eq!(cs.info(c).unwrap().own, 0);
    cs.destroy(c).unwrap();
    t.free(k, Owner::Kernel).unwrap();
    assert_eq!(t.free_frames(), t.total_frames());
    // No container, no space.
    assert!(matches!(AddressSpace::new(mm, c, None), Err(NoSuchContainer)));
}

#[test]
fn paging_out_of_memory_rolls_back() {
    let (t, cs, phys) = setup();
    let mm = Mm { frames: t, containers: cs, phys };
    let mut s = AddressSpace::new(mm, ContainerId::ROOT, None).unwrap();
    let hog: Vec<_> = (0..t.free_frames() - 2).map(|_| t.alloc(Owner::Kernel).unwrap()).collect();
    assert_eq!(s.map(0x1000, Frame::from_pfn(1), Rights::USER_RW), Err(OutOfMemory));
    assert_eq!((t.free_frames(), s.tables(), cs.info(ContainerId::ROOT).unwrap().own), (2, 1, 1));
    for f in hog {
        t.free(f, Owner::Kernel).unwrap();
    }
    s.map(0x1000, Frame::from_pfn(1), Rights::USER_RW).unwrap();
    assert_eq!(s.destroy(|_, _, _| {}), Ok(4));
    assert_eq!(t.free_frames(), t.total_frames());
    t.check_integrity().unwrap();
}

#[test]
fn cpu_sets() {
    let s = CpuSet::EMPTY.with(3).with(0).with(15).with(99);
    assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 3, 15]);
    assert_eq!((s.len(), s.contains(3), s.contains(4)), (3, true, false));
    assert_eq!(s.without(3).bits(), 1 | 1 << 15);
    assert_eq!(CpuSet::all().len(), machine::cpu::MAX_CPUS);
    let mut m = CpuSet::EMPTY;
    m.insert(2);
    m.remove(2);
    assert!(m.is_empty());
    assert_eq!(format!("{s:?}"), "{0, 3, 15}");
    let a = AtomicCpuSet::new();
    a.insert(5);
    a.insert(1);
    a.remove(5);
    assert_eq!(a.load(), CpuSet::from_bits(2));
}

#[test]
fn shm_errors() {
    let (t, cs, phys) = setup();
    let mm = Mm { frames: t, containers: cs, phys };
    let ca = cs.split(ContainerId::ROOT, 6).unwrap();
    let cb = cs.split(ContainerId::ROOT, 6).unwrap();
    let mut spaces = [Some(AddressSpace::new(mm, ca, None).unwrap()), Some(AddressSpace::new(mm, cb, None).unwrap()), None];
    let mut flushes = Vec::new();
    let mut shm = ShmTable::<3>::new();
    let mut host = SpaceTable { mm, spaces: &mut spaces, on_flush: |id, f: Flush| flushes.push((id, f.va())) };
    let va = 0x10_0000;
    assert_eq!(shm.offer(&mut host, 0, 3, va), Err(UnknownId));
    assert_eq!(shm.offer(&mut host, 0, 2, va), Err(UnknownId), "2 has no space");
    assert_eq!(shm.offer(&mut host, 1, 1, va), Err(SelfShare));
    assert_eq!(shm.offer(&mut host, 0, 1, va + 8), Err(Misaligned));
    assert_eq!(shm.offer(&mut host, 0, 1, 0xffff_8000_0000_0000), Err(KernelAddress));
    assert_eq!(shm.status(0, 0), Err(SelfShare));
    assert_eq!(shm.status(0, 9), Err(UnknownId));
    assert_eq!(shm.offer(&mut host, 0, 1, va), Ok(ShmStatus::Offered { va }));
    assert_eq!(shm.status(1, 0), Ok(ShmStatus::Incoming));
    assert_eq!(shm.offer(&mut host, 0, 1, va + 0x1000), Err(AlreadyOffered));
    // 1's va is taken by something else: refused, nothing changes.
    host.map(1, va, Frame::from_pfn(0x99)).unwrap();
    assert_eq!(shm.offer(&mut host, 1, 0, va), Err(AlreadyMapped));
    let vb = 0x20_0000;
    assert_eq!(shm.offer(&mut host, 1, 0, vb), Ok(ShmStatus::Ready { va: vb }));
    assert_eq!(shm.offer(&mut host, 1, 0, vb + 0x1000), Err(AlreadyShared));
    let f = shm.frame(0, 1).unwrap().unwrap();
    assert_eq!(host.translate(0, va), Some(f));
    assert_eq!(host.translate(1, vb), Some(f));
    assert_eq!(t.refs(f), Ok(2));
    assert_eq!(t.owner(f), Ok(Owner::Container(ca)), "charged to the first offerer");
    // Quota: a (6) has root + 3 tables + the page; one more page is too many.
    assert_eq!(cs.remaining(ca), Ok(1));
    assert_eq!(shm.offer(&mut host, 0, 2, va), Err(UnknownId));
    spaces_quota_check(&mut shm, &mut host);
    assert_eq!(shm.revoke_all(&mut host, 5), Err(UnknownId));
    assert_eq!(shm.revoke_all(&mut host, 1), Ok(1));
    assert_eq!(shm.status(0, 1), Ok(ShmStatus::Dead));
    assert_eq!(host.translate(0, va), None);
    assert_eq!(t.owner(f), Ok(Owner::Free));
    flushes.sort();
    assert_eq!(flushes, vec![(0, va), (1, vb)]);
    assert_eq!(cs.info(ca).unwrap().own, 4);
}

/// `a` (id 0) has 1 page of quota left: offering to a third process that
/// exists needs a page and a table... here only a page: fits once.
fn spaces_quota_check<H: crate::ShmHost>(shm: &mut ShmTable<3>, host: &mut H) {
    // Process 1 offers to 0 again is AlreadyShared; 0 cannot offer to 1 again either.
    assert_eq!(shm.offer(host, 0, 1, 0x30_0000), Err(AlreadyShared));
    // 0 maps a private page with its last quota page: the next allocation fails.
    let f = host.alloc_page(host.container(0).unwrap()).unwrap();
    assert_eq!(host.alloc_page(host.container(0).unwrap()), Err(MmError::QuotaExceeded));
    host.put_page(host.container(0).unwrap(), f).unwrap();
}

#[test]
fn shm_quota_refusal_changes_nothing() {
    let (t, cs, phys) = setup();
    let mm = Mm { frames: t, containers: cs, phys };
    let ca = cs.split(ContainerId::ROOT, 1).unwrap(); // root only: no room for the page
    let cb = cs.split(ContainerId::ROOT, 4).unwrap(); // root + 3 tables: no room for the page
    let mut spaces = [Some(AddressSpace::new(mm, ca, None).unwrap()), Some(AddressSpace::new(mm, cb, None).unwrap())];
    let mut shm = ShmTable::<2>::new();
    let mut host = SpaceTable { mm, spaces: &mut spaces, on_flush: |_, _| {} };
    let free = t.free_frames();
    assert_eq!(shm.offer(&mut host, 0, 1, 0x1000), Err(QuotaExceeded));
    assert_eq!(shm.offer(&mut host, 1, 0, 0x1000), Err(QuotaExceeded), "page fits, its tables do not");
    assert_eq!(t.free_frames(), free);
    assert_eq!((cs.info(ca).unwrap().own, cs.info(cb).unwrap().own), (1, 1));
    assert_eq!(shm.status(0, 1), Ok(ShmStatus::Dead));
}
