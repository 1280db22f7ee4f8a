//! # virt: mc2's virtual machine management
//!
//! The seed's "virtual machine management module": mc2 runs guests with
//! hardware virtualization, one vCPU per VM, each VM pinned to one CPU,
//! while a user-level VMM process (its owner) emulates the devices.
//! - [`vmx`]: Intel VT-x with EPT ([`ept`]) and unrestricted guest;
//! - [`svm`]: AMD SVM with nested paging (ordinary page tables built by
//!   `mm::AddressSpace`);
//! - this module: the vendor-neutral VM table, the vCPU state the VMM sees
//!   (`abi::vm::Regs`), the run loop and the exits the kernel handles itself
//!   (CPUID, EFER, CR0/CR4 ownership, host interrupts, the posted port I/O
//!   of [`posted`], the local APIC of [`lapic`] with KVM's paravirtual
//!   EOI), everything else returned to the VMM as an
//!   `abi::vm::Exit`; the host's timer around guest execution and the
//!   CPU's other threads are the layer above's (`Host::guest_timer`,
//!   `Host::host_timer`; `Host::should_yield`, `Host::yield_cpu`: a host
//!   interrupt that finds another thread ready pauses the guest for it).
//!
//! Assumes from below: `mm` (frames and containers for VMCB/VMCS and nested
//! tables, the direct map), `machine` (MSRs, descriptor tables, CPU id).
//! Guest memory is the owner's own pages, shared into the guest (the caller
//! takes the extra reference), so it stays charged to the owner's container.
//!
//! Invariants: a VM is only ever entered on its CPU, by its owner; its
//! state is taken out of the table while it runs (other CPUs see "running");
//! host FPU/SSE state and the MSRs the hardware does not switch are saved
//! around every stretch of guest execution; nothing a guest does reaches the
//! host except through a decoded exit; writes the kernel queued for the VMM
//! reach it, in order, with the very next exit.
#![no_std]
#![deny(unsafe_code)]
// The hardware paths only exist in the kernel build.
#![cfg_attr(not(mc2_bare), allow(dead_code, unused_imports))]

extern crate alloc;

#[allow(unsafe_code)]
pub mod ept;
#[allow(unsafe_code)]
pub mod svm;
#[allow(unsafe_code)]
pub mod vmx;
pub mod lapic;
pub mod posted;
pub mod spec;

use abi::vm::{Exit, ExitKind, Regs, Segment};
use abi::Error;
use alloc::boxed::Box;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use lock::SpinLock;
use machine::MAX_CPUS;
use mm::kernel::{DirectMap, CONTAINERS};
use mm::{ContainerId, Frame, Owner};

/// The guest's general registers, in instruction-encoding order (RAX and
/// RSP live in the VMCB/VMCS for SVM/VMX; their slots here are scratch).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestGprs(pub [u64; 16]);

/// An event to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub vector: u8,
    /// 0 external interrupt, 2 NMI, 3 exception (VMX encoding, also SVM's).
    pub kind: u8,
    pub error_code: Option<u32>,
}

/// What an exit means before the run loop looks at it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// Already dealt with by the vendor code (e.g. a CR0 write).
    #[default]
    Handled,
    HostInterrupt,
    HostNmi,
    Cpuid,
    /// The guest is about to run IRET (SVM, asked for after an NMI).
    Iret,
    Msr {
        write: bool,
    },
    Exit(ExitKind),
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ExitInfo {
    pub kind: Kind,
    pub raw: u64,
    pub rip: u64,
    pub next_rip: u64,
    pub port: u32,
    pub size: u32,
    pub flags: u32,
    pub value: u64,
    pub extra: u64,
}

pub fn size_mask(size: u32) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// CR4 bits a guest may set (SDM Vol. 3 §2.5), before the CPU's own limits:
/// VME..OSXMMEXCPT (0-10), UMIP (11), FSGSBASE (16), PCIDE (17), SMEP (20),
/// SMAP (21). Not VMXE/SMXE (13-14: CPUID hides VMX/SMX), not OSXSAVE (18:
/// XSAVE is hidden), not LA57 or PKE (not offered), nothing reserved.
pub const GUEST_CR4_BITS: u64 = 0x7ff | 1 << 11 | 1 << 16 | 1 << 17 | 1 << 20 | 1 << 21;

// CR0, CR4 and EFER bits (SDM Vol. 3A §2.5, §2.2.1), shared with vmx.rs.
pub(crate) const CR0_PE: u64 = 1;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
pub(crate) const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
pub(crate) const EFER_LME: u64 = 1 << 8;
pub(crate) const EFER_LMA: u64 = 1 << 10;

/// #GP(0), as an event to deliver.
pub(crate) const GP0: Event = Event { vector: 13, kind: 3, error_code: Some(0) };

/// Would MOV to CR0 of `new` raise #GP(0) (SDM Vol. 3 §2.5, Vol. 2 "MOV—Move
/// to/from Control Registers")? The hypervisor emulating the write must
/// deliver the fault instead of accepting the value.
pub fn cr0_write_faults(new: u64, cr4: u64, efer: u64) -> bool {
    new >> 32 != 0
        || (new & CR0_PG != 0 && new & CR0_PE == 0)
        || (new & CR0_NW != 0 && new & CR0_CD == 0)
        || (new & CR0_PG != 0 && efer & EFER_LME != 0 && cr4 & CR4_PAE == 0)
}

/// Would MOV to CR4 of `new` raise #GP(0)? `supported` is what the CPU can
/// run a guest with (its fixed-1 bits); in IA-32e mode PAE cannot be cleared.
pub fn cr4_write_faults(new: u64, efer: u64, supported: u64) -> bool {
    new & !(GUEST_CR4_BITS & supported) != 0 || (efer & EFER_LMA != 0 && new & CR4_PAE == 0)
}

/// A CPU just out of reset, in real mode at 0:0 (the VMM sets the rest).
pub fn reset_state() -> Regs {
    let data = Segment { selector: 0, attrib: 0x93, limit: 0xffff, base: 0 };
    let mut r = Regs { rflags: 2, cr0: 0x10, gdt_limit: 0xffff, idt_limit: 0xffff, ..Regs::default() };
    r.seg = [data; 8];
    r.seg[abi::vm::CS] = Segment { attrib: 0x9b, ..data };
    r.seg[abi::vm::LDTR] = Segment { attrib: 0x82, ..data };
    r.seg[abi::vm::TR] = Segment { attrib: 0x8b, ..data };
    r
}

/// Which hardware virtualization this machine has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Vmx,
    Svm,
}

/// VT-x or SVM, if usable.
pub fn vendor() -> Option<Vendor> {
    if vmx::supported() {
        Some(Vendor::Vmx)
    } else if svm::supported() {
        Some(Vendor::Svm)
    } else {
        None
    }
}

enum CpuArch {
    Vmx(vmx::CpuVmx),
    Svm(svm::CpuSvm),
}

struct CpuState {
    arch: CpuArch,
    nrips: bool,
}

static CPUS: [SpinLock<Option<CpuState>>; MAX_CPUS] = [const { SpinLock::new(None) }; MAX_CPUS];

enum Arch {
    Vmx { vmcs: vmx::Vmcs, ept: ept::Ept },
    Svm { vmcb: svm::Vmcb, npt: mm::AddressSpace<'static, DirectMap>, nrips: bool },
}

/// FXSAVE area (SDM Vol. 1 §10.5.1).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Fx([u8; 512]);

impl Fx {
    fn clean() -> Fx {
        let mut f = Fx([0; 512]);
        f.0[0..2].copy_from_slice(&machine::context::FCW_DEFAULT.to_le_bytes());
        f.0[24..28].copy_from_slice(&machine::context::MXCSR_DEFAULT.to_le_bytes());
        f
    }
}

pub struct Vm {
    id: usize,
    owner: u32,
    cpu: usize,
    container: ContainerId,
    arch: Arch,
    gprs: GuestGprs,
    fx: Fx,
    pending: Option<Event>,
    /// The last exit handed to the VMM, if it must be completed (IO, MSR).
    last: Option<ExitInfo>,
    guest_msrs: [u64; vmx::SWAPPED_MSRS.len()],
    /// RIP of the last SVM VMEXIT_INVALID turned into a #GP (see
    /// `run_guest`); a second one there with nothing in between stops the VM.
    invalid_gp_at: Option<u64>,
    /// This run has `RUN_USER_CPUID`.
    user_cpuid: bool,
    /// Ports the VMM named with `vm_post`, and the writes queued for it.
    posting: posted::Posting,
    /// The vCPU's local APIC, from the first run with `RUN_LAPIC` on.
    lapic: Option<lapic::Lapic>,
    /// Its paravirtual EOI word, if the guest enabled one.
    pv_eoi: PvEoi,
    /// The local APIC's vector offered to the guest as a virtual interrupt
    /// for the current entry (SVM), accepted provisionally: settled after
    /// the exit (`settle_offer`), so never outstanding between entries.
    offered: Option<u8>,
    /// SVM: an NMI was injected and its handler's IRET has not run yet
    /// (VT-x keeps this itself: blocking by NMI).
    nmi_masked: bool,
    /// SVM: the RIP of the NMI handler's IRET, seen at its intercept; the
    /// NMI is over at the first exit with another RIP.
    iret_at: Option<u64>,
}

/// KVM's paravirtual EOI (`MSR_KVM_PV_EOI_EN`, Linux's
/// Documentation/virt/kvm/x86/msr.rst): the guest names a 4-byte word in
/// its RAM; while the kernel has set its bit 0, the guest ends an
/// interrupt by clearing that bit (one instruction, no exit) instead of
/// writing the EOI MSR, and the kernel performs the EOI when it next looks
/// (after every exit, before any new interrupt is accepted). The bit is
/// set only while [`lapic::Lapic::lazy_eoi_ok`].
#[derive(Clone, Copy, Debug, Default)]
struct PvEoi {
    /// The MSR as the guest last wrote it.
    msr: u64,
    /// The word's page and offset (enabled).
    at: Option<(Frame, usize)>,
    /// The kernel has set the bit (and the guest may have cleared it).
    set: bool,
}

/// `MSR_KVM_PV_EOI_EN`; its CPUID feature bit in leaf 0x4000_0101 EAX.
pub const MSR_KVM_PV_EOI_EN: u32 = 0x4b56_4d04;
pub const KVM_FEATURE_PV_EOI: u32 = 1 << 6;

/// Most VMs at once (one per CPU).
pub const MAX_VMS: usize = MAX_CPUS;

static VMS: [SpinLock<Option<Box<Vm>>>; MAX_VMS] = [const { SpinLock::new(None) }; MAX_VMS];

/// What `vm_list` shows, readable while a VM runs.
struct Public {
    owner: AtomicU32,
    cpu: AtomicU32,
    state: AtomicU32,
    pages: AtomicU64,
    exits: AtomicU64,
    /// Of `exits`, those handled in the kernel, by kind (`abi::vm::HANDLED_*`).
    handled: [AtomicU64; abi::vm::HANDLED_KINDS],
}

static PUBLIC: [Public; MAX_VMS] = [const {
    Public {
        owner: AtomicU32::new(0),
        cpu: AtomicU32::new(0),
        state: AtomicU32::new(0),
        pages: AtomicU64::new(0),
        exits: AtomicU64::new(0),
        handled: [const { AtomicU64::new(0) }; abi::vm::HANDLED_KINDS],
    }
}; MAX_VMS];

const ST_FREE: u32 = 0;
const ST_CREATED: u32 = 1;
const ST_RUNNING: u32 = 2;
const ST_STOPPED: u32 = 3;
/// Taken by a `create` still filling it in (not listed, not yet a VM).
const ST_CLAIMED: u32 = 4;

fn kernel_frame(n: usize) -> Result<Frame, Error> {
    let t = mm::kernel::frames();
    let f = if n == 1 { t.alloc(Owner::Kernel) } else { t.alloc_contiguous(n, 1, Owner::Kernel) }.map_err(|_| Error::NoMemory)?;
    for i in 0..n {
        mm::kernel::zero_frame(Frame::from_pfn(f.pfn() + i as u64));
    }
    Ok(f)
}

/// Set this CPU up for guests (once): VMXON or EFER.SVME, permission maps.
#[cfg(mc2_bare)]
#[allow(unsafe_code)]
fn cpu_setup(cpu: usize) -> Result<(), Error> {
    let mut g = CPUS[cpu].lock();
    if g.is_some() {
        return Ok(());
    }
    let st = match vendor().ok_or(Error::NotSupported)? {
        Vendor::Vmx => {
            let region = kernel_frame(1)?;
            // SAFETY: on this CPU, VMX supported, a fresh kernel frame.
            unsafe { vmx::enable(region) }.map_err(|_| Error::NotSupported)?;
            let bitmap = kernel_frame(1)?;
            // The maps are built on the heap: the kernel stack is 16 KiB
            // without a guard page, and page-sized arrays on it (12 KiB
            // here once) overran it into the frame below, a process's page
            // table, whose entries became all ones.
            let mut buf = ones(4096)?;
            let bits: &mut [u8; 4096] = buf.as_mut_slice().try_into().map_err(|_| Error::NoMemory)?;
            for msr in vmx::PASSTHROUGH_MSRS {
                vmx::msr_bitmap_allow(bits, msr);
            }
            mm::kernel::write_frame(bitmap, 0, &bits[..]);
            CpuState { arch: CpuArch::Vmx(vmx::CpuVmx { msr_bitmap: bitmap }), nrips: true }
        }
        Vendor::Svm => {
            let host_save = kernel_frame(1)?;
            // SAFETY: on this CPU, SVM supported, a fresh kernel frame.
            unsafe { svm::enable(host_save) };
            let iopm = kernel_frame(3)?;
            let msrpm = kernel_frame(2)?;
            // On the heap, not the 16 KiB kernel stack (see the VMX case).
            let mut buf = ones(8192)?;
            for i in 0..3 {
                mm::kernel::write_frame(Frame::from_pfn(iopm.pfn() + i), 0, &buf[..4096]);
            }
            let pm: &mut [u8; 8192] = buf.as_mut_slice().try_into().map_err(|_| Error::NoMemory)?;
            for msr in vmx::PASSTHROUGH_MSRS.iter().chain(&[0x174u32, 0x175, 0x176]) {
                svm_msrpm_allow(pm, *msr);
            }
            mm::kernel::write_frame(msrpm, 0, &pm[..4096]);
            mm::kernel::write_frame(Frame::from_pfn(msrpm.pfn() + 1), 0, &pm[4096..]);
            let host_vmsave = kernel_frame(1)?;
            CpuState { arch: CpuArch::Svm(svm::CpuSvm { iopm, msrpm, host_vmsave }), nrips: svm::has_nrips() }
        }
    };
    *g = Some(st);
    Ok(())
}

/// `n` bytes of all ones on the heap (permission maps are built there).
fn ones(n: usize) -> Result<alloc::vec::Vec<u8>, Error> {
    let mut v = alloc::vec::Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::NoMemory)?;
    v.resize(n, 0xff);
    Ok(v)
}

/// Clear the MSR permission map bits of `msr` (AMD APM Vol. 2 §15.11: two
/// bits per MSR, read then write; 0..1FFF at byte 0, C000_0000.. at 0x800,
/// C001_0000.. at 0x1000). MSRs the hardware switches with VMLOAD/VMSAVE or
/// keeps in the VMCB pass through.
fn svm_msrpm_allow(pm: &mut [u8; 8192], msr: u32) {
    let (base, n) = match msr {
        0..=0x1fff => (0, msr),
        0xc000_0000..=0xc000_1fff => (0x800, msr - 0xc000_0000),
        0xc001_0000..=0xc001_1fff => (0x1000, msr - 0xc001_0000),
        _ => return,
    };
    let bit = n as usize * 2;
    pm[base + bit / 8] &= !(3 << (bit % 8));
}

/// Create a VM owned by `owner` (container `container`) on the calling CPU.
#[cfg(mc2_bare)]
#[allow(unsafe_code)]
pub fn create(owner: u32, container: ContainerId) -> Result<u64, Error> {
    let cpu = machine::cpu::id();
    cpu_setup(cpu)?;
    // (A slot another CPU has only claimed is not on this CPU: creates on
    // one CPU never overlap, the kernel runs with interrupts masked.)
    if PUBLIC.iter().any(|p| !matches!(p.state.load(Ordering::Acquire), ST_FREE | ST_CLAIMED) && p.cpu.load(Ordering::Relaxed) as usize == cpu) {
        return Err(Error::Busy);
    }
    // Claim a free slot atomically: VMMs on other CPUs create VMs at the
    // same time (a plain find-then-store gave two of them the same id).
    let id = (0..MAX_VMS)
        .find(|&i| PUBLIC[i].state.compare_exchange(ST_FREE, ST_CLAIMED, Ordering::AcqRel, Ordering::Relaxed).is_ok())
        .ok_or(Error::TableFull)?;
    let r = create_in(id, owner, container, cpu);
    if r.is_err() {
        PUBLIC[id].state.store(ST_FREE, Ordering::Release);
    }
    r
}

/// `create` in slot `id`, which the caller has claimed.
#[cfg(mc2_bare)]
#[allow(unsafe_code)]
fn create_in(id: usize, owner: u32, container: ContainerId, cpu: usize) -> Result<u64, Error> {
    let m = mm::kernel::mm();
    let quota = |e: mm::MmError| if e == mm::MmError::QuotaExceeded { Error::QuotaExceeded } else { Error::NoMemory };
    let frame = CONTAINERS.alloc_page(m.frames, container).map_err(quota)?;
    mm::kernel::zero_frame(frame);
    let cs = CPUS[cpu].lock();
    let cs = cs.as_ref().ok_or(Error::NotSupported)?;
    let arch = match &cs.arch {
        CpuArch::Vmx(v) => {
            let ept = match ept::Ept::new(m, container) {
                Ok(e) => e,
                Err(e) => {
                    let _ = CONTAINERS.free_page(m.frames, container, frame);
                    return Err(quota(e));
                }
            };
            // SAFETY: on this CPU, in VMX operation (cpu_setup).
            match unsafe { vmx::Vmcs::new(frame, v, ept.eptp()) } {
                Ok(vmcs) => Arch::Vmx { vmcs, ept },
                Err(_) => {
                    ept.destroy(m, |_, _| {});
                    let _ = CONTAINERS.free_page(m.frames, container, frame);
                    return Err(Error::NotSupported);
                }
            }
        }
        CpuArch::Svm(s) => {
            let npt = match mm::AddressSpace::new(m, container, None) {
                Ok(n) => n,
                Err(e) => {
                    let _ = CONTAINERS.free_page(m.frames, container, frame);
                    return Err(quota(e));
                }
            };
            let vmcb = svm::Vmcb { frame };
            // ASID: the VM's slot + 1 (0 is the host's).
            vmcb.init(s, id as u32 + 1, npt.root().addr());
            Arch::Svm { vmcb, npt, nrips: cs.nrips }
        }
    };
    let vm = Box::new(Vm { id, owner, cpu, container, arch, gprs: GuestGprs::default(), fx: Fx::clean(), pending: None, last: None, guest_msrs: [0; vmx::SWAPPED_MSRS.len()], invalid_gp_at: None, user_cpuid: false, posting: posted::Posting::default(), lapic: None, pv_eoi: PvEoi::default(), offered: None, nmi_masked: false, iret_at: None });
    *VMS[id].lock() = Some(vm);
    let p = &PUBLIC[id];
    p.owner.store(owner, Ordering::Relaxed);
    p.cpu.store(cpu as u32, Ordering::Relaxed);
    p.pages.store(0, Ordering::Relaxed);
    p.exits.store(0, Ordering::Relaxed);
    for h in &p.handled {
        h.store(0, Ordering::Relaxed);
    }
    p.state.store(ST_CREATED, Ordering::Release);
    Ok(id as u64)
}

/// Take VM `id` out of its slot for `owner` (the caller puts it back).
fn take(id: u64, owner: u32) -> Result<Box<Vm>, Error> {
    let slot = VMS.get(usize::try_from(id).map_err(|_| Error::NoSuchObject)?).ok_or(Error::NoSuchObject)?;
    let mut g = slot.lock();
    match g.as_ref() {
        None => Err(if PUBLIC[id as usize].state.load(Ordering::Acquire) == ST_RUNNING { Error::Busy } else { Error::NoSuchObject }),
        Some(vm) if vm.owner != owner => Err(Error::NotOwner),
        Some(vm) if vm.cpu != machine::cpu::id() => Err(Error::BadCpu),
        Some(_) => g.take().ok_or(Error::NoSuchObject),
    }
}

fn put(vm: Box<Vm>) {
    let id = vm.id;
    *VMS[id].lock() = Some(vm);
}

/// Map guest-physical page `gpa` to `frame` (the caller holds a reference
/// on it for the guest).
pub fn map(id: u64, owner: u32, gpa: u64, frame: Frame, write: bool, exec: bool) -> Result<(), Error> {
    let mut vm = take(id, owner)?;
    let m = mm::kernel::mm();
    let r = match &mut vm.arch {
        Arch::Vmx { ept, .. } => ept.map(m, gpa, frame, write, exec),
        Arch::Svm { npt, .. } => npt.map(gpa, frame, mm::Rights { write, exec, user: true }),
    };
    if r.is_ok() {
        PUBLIC[vm.id].pages.fetch_add(1, Ordering::Relaxed);
    }
    put(vm);
    r.map_err(|e| match e {
        mm::MmError::AlreadyMapped => Error::AlreadyMapped,
        mm::MmError::QuotaExceeded => Error::QuotaExceeded,
        mm::MmError::Misaligned => Error::Misaligned,
        mm::MmError::OutOfMemory => Error::NoMemory,
        _ => Error::Invalid,
    })
}

pub fn get_regs(id: u64, owner: u32) -> Result<Regs, Error> {
    let vm = take(id, owner)?;
    let r = match &vm.arch {
        Arch::Vmx { vmcs, .. } => vmcs.regs(&vm.gprs),
        Arch::Svm { vmcb, .. } => vmcb.regs(&vm.gprs),
    };
    put(vm);
    Ok(r)
}

pub fn set_regs(id: u64, owner: u32, r: &Regs) -> Result<(), Error> {
    let mut vm = take(id, owner)?;
    vm.gprs.0 = r.gpr;
    match &vm.arch {
        Arch::Vmx { vmcs, .. } => vmcs.set_regs(r),
        Arch::Svm { vmcb, .. } => vmcb.set_regs(r),
    }
    vm.last = None; // new state: nothing half done
    put(vm);
    Ok(())
}

pub fn inject(id: u64, owner: u32, e: Event) -> Result<(), Error> {
    if e.kind != 0 && e.kind != 2 && e.kind != 3 {
        return Err(Error::Invalid);
    }
    if e.kind == 3 && e.vector >= 32 {
        return Err(Error::Invalid);
    }
    let mut vm = take(id, owner)?;
    let r = if vm.pending.is_some() {
        Err(Error::Busy)
    } else {
        vm.pending = Some(e);
        Ok(())
    };
    put(vm);
    r
}

/// `vm_post`: byte OUTs to `port` queued for the VMM instead of exiting
/// and/or byte INs answered with `value` (abi::vm::POST_WRITES, POST_READ).
pub fn post(id: u64, owner: u32, port: u64, mode: u64, value: u64) -> Result<(), Error> {
    let mut vm = take(id, owner)?;
    let r = vm.posting.set(port, mode, value).map_err(|e| match e {
        posted::PostError::Invalid => Error::Invalid,
        posted::PostError::Full => Error::TooMany,
    });
    put(vm);
    r
}

/// What the run loop needs from the layers above.
pub trait Host {
    /// The owner was killed: stop running the guest.
    fn should_stop(&self) -> bool;
    /// Let pending host interrupts in (STI; NOP; CLI) and do what the trap
    /// layer does around kernel work (the big kernel lock).
    fn take_interrupts(&self);
    /// Halt until an interrupt (the guest is halted).
    fn idle(&self);
    /// Around guest execution (drop and retake the big kernel lock).
    fn leave_kernel(&self);
    fn enter_kernel(&self);
    /// The guest runs (or is halted) until `deadline` (TSC, 0: none) unless
    /// it exits first: the host may replace its periodic tick with one timer
    /// interrupt at the deadline. Called again after each host interrupt
    /// (the interrupt may have been that timer, or may have made work for
    /// this CPU). Each tick that ends a guest's run is a world switch, and
    /// under an emulator a world switch flushes the emulated TLB.
    fn guest_timer(&self, deadline: u64);
    /// Back to the VMM: the host's own ticks again (those missed counted).
    fn host_timer(&self);
    /// Another thread is ready on this CPU: after a host interrupt the
    /// guest's run pauses for it (the host's timer back, the guest's state
    /// kept) instead of holding the CPU until the VMM next runs.
    fn should_yield(&self) -> bool;
    /// Let the ready threads of this CPU run; returns when this one is
    /// scheduled again.
    fn yield_cpu(&self);
}

/// Fill CPUID for the guest: the host's answer without the virtualization
/// extensions, with the hypervisor bit and leaf 0x4000_0000 identifying mc2.
fn cpuid(gprs: &mut GuestGprs, lapic: Option<&lapic::Lapic>) {
    let (leaf, sub) = (gprs.0[abi::vm::RAX] as u32, gprs.0[abi::vm::RCX] as u32);
    let mut r = guest_cpuid(leaf, sub, machine::x86::cpuid(leaf, sub));
    if let Some(l) = lapic {
        lapic_cpuid(leaf, &mut r, l.enabled());
    }
    gprs.0[abi::vm::RAX] = r.eax as u64;
    gprs.0[abi::vm::RBX] = r.ebx as u64;
    gprs.0[abi::vm::RCX] = r.ecx as u64;
    gprs.0[abi::vm::RDX] = r.edx as u64;
}

/// CPUID for a VM with a local APIC (`lapic`), over [`guest_cpuid`]'s
/// answer `r`; `enabled`: IA32_APIC_BASE.EN.
pub fn lapic_cpuid(leaf: u32, r: &mut machine::x86::Cpuid, enabled: bool) {
    match leaf {
        // A local APIC (EDX 9, which follows IA32_APIC_BASE.EN), in x2APIC
        // mode (ECX 21) with a TSC-deadline timer (ECX 24).
        1 if enabled => {
            r.edx |= 1 << 9;
            r.ecx |= 1 << 21 | 1 << 24;
        }
        // KVM's signature in the second hypervisor range, with one
        // paravirtual feature, the EOI by a bit in memory (`PvEoi`; all
        // else of 0x4000_0101 zero): Linux keeps an
        // x2APIC without interrupt remapping only under a hypervisor it
        // knows says it works (`x2apic_available`), and otherwise switches
        // back to the xAPIC's memory-mapped page, which mc2 does not
        // emulate. mc2's own signature stays at 0x4000_0000.
        KVM_CPUID_BASE => {
            r.eax = KVM_CPUID_BASE + 1;
            let sig = b"KVMKVMKVM\0\0\0";
            r.ebx = u32::from_le_bytes([sig[0], sig[1], sig[2], sig[3]]);
            r.ecx = u32::from_le_bytes([sig[4], sig[5], sig[6], sig[7]]);
            r.edx = u32::from_le_bytes([sig[8], sig[9], sig[10], sig[11]]);
        }
        0x4000_0101 => *r = machine::x86::Cpuid { eax: KVM_FEATURE_PV_EOI, ebx: 0, ecx: 0, edx: 0 },
        _ => {}
    }
}

/// Where [`lapic_cpuid`] answers as KVM does at 0x4000_0000.
pub const KVM_CPUID_BASE: u32 = 0x4000_0100;

/// What a guest's CPUID `leaf`.`sub` returns, given the host's answer.
pub fn guest_cpuid(leaf: u32, sub: u32, mut r: machine::x86::Cpuid) -> machine::x86::Cpuid {
    match leaf {
        1 => {
            // No VMX, MONITOR, XSAVE/OSXSAVE/AVX (the guest's XCR0 is not
            // switched); running under a hypervisor. No local APIC (nor its
            // x2APIC mode and TSC-deadline timer) unless the VM has one
            // (`cpuid` adds them), no machine-check architecture or MTRRs:
            // the VMM emulates a PC with 8259 PICs and an 8254 PIT, and no
            // such MSRs.
            r.ecx &= !(1 << 5 | 1 << 3 | 1 << 21 | 1 << 24 | 1 << 26 | 1 << 27 | 1 << 28);
            r.ecx |= 1 << 31;
            r.edx &= !(1 << 9 | 1 << 7 | 1 << 14 | 1 << 12);
            // One logical processor, APIC id 0.
            r.ebx &= 0x0000_ffff;
        }
        0xb => {
            // Topology: one thread of one core, x2APIC ID 0 (the host's
            // leaf names the host CPU's own ID; SDM Vol. 2 CPUID leaf 0BH).
            (r.eax, r.ebx, r.edx) = (0, if sub < 2 { 1 } else { 0 }, 0);
            r.ecx = if sub < 2 { (sub + 1) << 8 | sub } else { sub & 0xff };
        }
        0xa => {
            // No performance-monitoring counters.
            r.eax = 0;
            r.ebx = 0;
            r.ecx = 0;
            r.edx = 0;
        }
        7 if sub == 0 => {
            // AVX2 (needs XSAVE); INVPCID (EBX 10) and RDPID (ECX 22): the
            // VMCS enables neither INVPCID nor RDTSCP among its secondary
            // controls (SDM Vol. 3C §24.6.2), so both would #UD in a VT-x
            // guest (Linux's first global TLB flush did, in Bochs).
            r.ebx &= !(1 << 5 | 1 << 10);
            r.ecx &= !(1 << 22);
        }
        // SVM; RDTSCP (EDX 27), as RDPID above.
        0x8000_0001 => {
            r.ecx &= !(1 << 2);
            r.edx &= !(1 << 27);
        }
        0x4000_0000 => {
            r.eax = 0x4000_0000;
            let sig = b"mc2 mc2 mc2 ";
            r.ebx = u32::from_le_bytes([sig[0], sig[1], sig[2], sig[3]]);
            r.ecx = u32::from_le_bytes([sig[4], sig[5], sig[6], sig[7]]);
            r.edx = u32::from_le_bytes([sig[8], sig[9], sig[10], sig[11]]);
        }
        _ => {}
    }
    r
}

const MSR_EFER: u32 = 0xc000_0080;

impl Vm {
    fn rip(&self) -> u64 {
        match &self.arch {
            Arch::Vmx { vmcs, .. } => vmcs.rip(),
            Arch::Svm { vmcb, .. } => vmcb.rip(),
        }
    }
    fn set_rip(&mut self, v: u64) {
        match &self.arch {
            Arch::Vmx { vmcs, .. } => vmcs.set_rip(v),
            Arch::Svm { vmcb, .. } => vmcb.set_rip(v),
        }
    }
    /// RAX lives in the VMCB for SVM and in `gprs` for VMX.
    fn rax(&self) -> u64 {
        match &self.arch {
            Arch::Svm { vmcb, .. } => vmcb.rax(),
            Arch::Vmx { .. } => self.gprs.0[abi::vm::RAX],
        }
    }
    fn set_rax(&mut self, v: u64) {
        match &self.arch {
            Arch::Svm { vmcb, .. } => vmcb.set_rax(v),
            Arch::Vmx { .. } => self.gprs.0[abi::vm::RAX] = v,
        }
    }
    fn efer(&self) -> u64 {
        match &self.arch {
            Arch::Vmx { vmcs, .. } => vmcs.efer(),
            Arch::Svm { vmcb, .. } => vmcb.efer(),
        }
    }
    fn set_efer(&self, v: u64) {
        match &self.arch {
            Arch::Vmx { vmcs, .. } => vmcs.set_efer(v),
            Arch::Svm { vmcb, .. } => vmcb.set_efer(v),
        }
    }
    fn request_window(&self, on: bool) {
        match &self.arch {
            Arch::Vmx { vmcs, .. } => vmcs.request_window(on),
            Arch::Svm { vmcb, .. } => vmcb.request_window(on),
        }
    }
    /// The hardware has an event to deliver at the next entry (re-injected
    /// after an exit during its delivery, or raised by the kernel).
    fn event_pending(&self) -> bool {
        match &self.arch {
            Arch::Vmx { vmcs, .. } => vmcs.event_pending(),
            Arch::Svm { vmcb, .. } => vmcb.event_pending(),
        }
    }
    fn can_take_interrupt(&self) -> bool {
        let (rflags, shadow) = match &self.arch {
            Arch::Vmx { vmcs, .. } => (vmcs.rflags(), vmcs.interrupt_shadow()),
            Arch::Svm { vmcb, .. } => (vmcb.rflags(), vmcb.interrupt_shadow()),
        };
        rflags & (1 << 9) != 0 && !shadow
    }

    /// Put an IN's `value` of `size` bytes in place.
    fn complete_in(&mut self, size: u32, value: u64) {
        let mask = size_mask(size);
        // A 32-bit IN zero-extends into RAX; narrower ones merge.
        let v = if size == 4 { value & mask } else { (self.rax() & !mask) | (value & mask) };
        self.set_rax(v);
    }

    /// Finish the IO/MSR instruction the last exit reported: put an IN's or
    /// RDMSR's result in place and step over the instruction.
    fn complete_last(&mut self, complete_in: bool, in_value: u64) {
        let Some(last) = self.last.take() else { return };
        match last.kind {
            Kind::Exit(ExitKind::Io) if last.flags & abi::vm::STRING == 0 => {
                if last.flags & abi::vm::IN != 0 && complete_in {
                    self.complete_in(last.size, in_value);
                }
                self.set_rip(last.next_rip);
            }
            Kind::Msr { write } => {
                if !write && complete_in {
                    self.set_msr_result(in_value);
                }
                self.set_rip(last.next_rip);
            }
            _ => {}
        }
    }

    /// When the host's timer should next end the guest's run: the VMM's
    /// `deadline` or the local APIC timer's, whichever comes first (0:
    /// neither). A timer already due by `now` fires first (into the IRR), so that
    /// the host is not asked for an interrupt at once for it.
    fn timer_target(&mut self, deadline: u64, now: u64) -> u64 {
        let Some(l) = self.lapic.as_mut() else { return deadline };
        l.expire(now);
        match (deadline, l.timer_due()) {
            (0, Some(t)) => t,
            (d, Some(t)) => d.min(t),
            (d, None) => d,
        }
    }

    /// Does the local APIC (its timer fired by `now`) have an interrupt or
    /// NMI that wakes a halted guest? (An interrupt wakes HLT only when
    /// the guest can take it; the VMM let it halt with IF set.)
    fn lapic_wakes(&mut self, now: u64) -> bool {
        let Some(l) = self.lapic.as_mut() else { return false };
        l.expire(now);
        l.deliverable().is_some() || l.nmi_pending()
    }

    /// The guest writes `MSR_KVM_PV_EOI_EN`: bit 0 enables, bit 1 is
    /// reserved, the rest is the word's guest-physical address (4-byte
    /// aligned, in RAM the VM has). False: #GP, nothing changed.
    fn set_pv_eoi(&mut self, v: u64) -> bool {
        if v & 2 != 0 {
            return false;
        }
        let at = if v & 1 != 0 {
            let gpa = v & !3;
            let m = mm::kernel::mm();
            // Only a page the guest may write itself (the VMM's mapping).
            let frame = match &self.arch {
                Arch::Vmx { ept, .. } => ept.lookup(m, gpa & !0xfff).filter(|&(_, w, _)| w).map(|(f, _, _)| f),
                Arch::Svm { npt, .. } => npt.translate(gpa & !0xfff).filter(|(_, r)| r.write).map(|(f, _)| f),
            };
            let Some(frame) = frame else { return false };
            Some((frame, (gpa & 0xfff) as usize))
        } else {
            None
        };
        // An EOI the guest signalled through the old word is not lost.
        self.pv_eoi_from_guest();
        self.pv_eoi = PvEoi { msr: v, at, set: false };
        true
    }

    /// After an exit: did the guest clear the bit the kernel set? Then its
    /// interrupt ended.
    fn pv_eoi_from_guest(&mut self) {
        let PvEoi { at: Some((frame, off)), set: true, .. } = self.pv_eoi else { return };
        let mut w = [0u8; 4];
        mm::kernel::read_frame(frame, off, &mut w);
        if w[0] & 1 == 0 {
            if let Some(l) = self.lapic.as_mut() {
                l.eoi();
            }
            self.pv_eoi.set = false;
        }
    }

    /// Before an entry: set the bit when a lazy EOI is safe, clear it when
    /// not (only when that changes).
    fn pv_eoi_to_guest(&mut self) {
        let Some((frame, off)) = self.pv_eoi.at else { return };
        let want = self.lapic.as_ref().is_some_and(|l| l.lazy_eoi_ok());
        if want != self.pv_eoi.set {
            mm::kernel::write_frame(frame, off, &u32::from(want).to_le_bytes());
            self.pv_eoi.set = want;
        }
    }

    /// The local APIC's `vector` must wait for the guest's RFLAGS.IF: under
    /// SVM, with nothing in service and no window asked for, offer it as
    /// a virtual interrupt that the guest takes by itself (no window exit
    /// and second entry); otherwise ask for the window. The offer counts as
    /// accepted until [`settle_offer`](Self::settle_offer) finds otherwise
    /// (so that its EOI may be the paravirtual bit: nothing else is in
    /// service to confuse it with).
    fn wait_for_window(&mut self, vector: u8) {
        if let (Arch::Svm { vmcb, .. }, Some(l)) = (&self.arch, self.lapic.as_mut()) {
            if !l.in_service() && !vmcb.window_requested() {
                l.accept(vector);
                vmcb.offer_interrupt(vector);
                self.offered = Some(vector);
                return;
            }
        }
        self.request_window(true);
    }

    /// After an exit: an offered interrupt the guest has not taken goes back
    /// to the local APIC's requests (and off the VMCB); one it took stays in
    /// service (if the exit came during its delivery, the hardware's
    /// re-delivery carries it).
    fn settle_offer(&mut self) {
        let Some(v) = self.offered.take() else { return };
        if let (Arch::Svm { vmcb, .. }, Some(l)) = (&self.arch, self.lapic.as_mut()) {
            if vmcb.offer_waiting() {
                vmcb.withdraw_offer();
                l.unaccept(v);
            }
        }
    }

    /// Would an NMI injected now nest inside the guest's NMI handler (or,
    /// under VT-x, fail the entry)? It then waits for a later exit.
    fn nmi_blocked(&self) -> bool {
        match &self.arch {
            Arch::Vmx { vmcs, .. } => vmcs.nmi_blocked(),
            Arch::Svm { .. } => self.nmi_masked,
        }
    }

    /// After an exit: under SVM, the NMI handler's IRET has run once the
    /// guest is past it.
    fn track_iret(&mut self) {
        if let Some(at) = self.iret_at {
            if self.rip() != at {
                (self.nmi_masked, self.iret_at) = (false, None);
            }
        }
    }

    /// Deliver `e` at the next entry (the caller knows none is pending);
    /// an NMI blocks further NMIs until its handler's IRET, as on the CPU.
    fn inject_event(&mut self, e: &Event) {
        self.inject_now(e);
        if e.kind == 2 {
            if let Arch::Svm { vmcb, .. } = &self.arch {
                vmcb.intercept_iret(true);
                (self.nmi_masked, self.iret_at) = (true, None);
            }
        }
    }

    /// Deliver `e` at the next entry (the caller knows none is pending).
    fn inject_now(&self, e: &Event) {
        match &self.arch {
            Arch::Vmx { vmcs, .. } => vmcs.inject(e),
            Arch::Svm { vmcb, .. } => vmcb.inject(e),
        }
    }

    /// The value a WRMSR writes (EDX:EAX).
    fn msr_operand(&self) -> u64 {
        (self.gprs.0[abi::vm::RDX] << 32) | (self.rax() & 0xffff_ffff)
    }

    /// Put an RDMSR's result in EDX:EAX.
    fn set_msr_result(&mut self, v: u64) {
        self.gprs.0[abi::vm::RDX] = v >> 32;
        self.set_rax(v & 0xffff_ffff);
    }

    /// An RDMSR/WRMSR the kernel handles itself (EFER, the local APIC's,
    /// the paravirtual EOI's); false if the VMM must. `now`: the TSC.
    fn msr(&mut self, write: bool, next_rip: u64, now: u64) -> bool {
        let ecx = self.gprs.0[abi::vm::RCX] as u32;
        let value = self.msr_operand();
        // Ok(Some(v)): a read's result; Ok(None): a write done; Err: #GP(0)
        // for the guest, the instruction not done (as the CPU would).
        let r: Result<Option<u64>, ()> = if self.lapic.is_some() && ecx == MSR_KVM_PV_EOI_EN {
            if write {
                if self.set_pv_eoi(value) { Ok(None) } else { Err(()) }
            } else {
                Ok(Some(self.pv_eoi.msr))
            }
        } else if let Some(l) = self.lapic.as_mut().filter(|_| lapic::Lapic::owns(ecx)) {
            if write {
                l.wrmsr(ecx, value, now).map(|()| None).map_err(|_| ())
            } else {
                l.rdmsr(ecx, now).map(Some).map_err(|_| ())
            }
        } else if ecx == MSR_EFER {
            if write {
                // Only SCE, LME, NXE are the guest's to set; LMA is the
                // CPU's and stays as it is (AMD APM Vol. 2 §3.1.7: writes
                // to LMA are ignored). Dropping it would leave a guest
                // running in long mode with EFER.LMA clear: SVM then shuts
                // the guest down (Linux's startup_64 sets NXE exactly so).
                let lma = self.efer() & EFER_LMA;
                self.set_efer((value & (1 | 1 << 8 | 1 << 11)) | lma);
                Ok(None)
            } else {
                Ok(Some(self.efer()))
            }
        } else {
            return false;
        };
        match r {
            Ok(read) => {
                if let Some(v) = read {
                    self.set_msr_result(v);
                }
                self.set_rip(next_rip);
            }
            Err(()) => self.inject_now(&GP0),
        }
        true
    }
}

/// Run VM `id` for `owner` until an exit for the VMM (see abi::vm::Exit).
#[cfg(mc2_bare)]
#[allow(unsafe_code)]
pub fn run(id: u64, owner: u32, flags: u64, deadline: u64, in_value: u64, host: &impl Host) -> Result<Exit, Error> {
    let mut vm = take(id, owner)?;
    let public = &PUBLIC[vm.id];
    public.state.store(ST_RUNNING, Ordering::Release);
    vm.complete_last(flags & abi::vm::RUN_COMPLETE_IN != 0, in_value);
    let window = flags & abi::vm::RUN_WINDOW != 0;
    vm.request_window(window);
    vm.user_cpuid = flags & abi::vm::RUN_USER_CPUID != 0;
    if flags & abi::vm::RUN_LAPIC != 0 && vm.lapic.is_none() {
        vm.lapic = Some(lapic::Lapic::new());
    }
    vm.posting.writes_exit = flags & abi::vm::RUN_NO_POST != 0;
    let mut handled = [0u64; abi::vm::HANDLED_KINDS];
    let mut halted = flags & abi::vm::RUN_HALTED != 0 && vm.pending.is_none();
    let result = loop {
        let step = if halted {
            // The guest is halted: nothing to run until the deadline (none:
            // until the owner is stopped, as a halted PC with nothing to
            // wake it).
            loop {
                if host.should_stop() {
                    break Step::Done(Err(Error::PeerGone));
                }
                let now = machine::x86::rdtsc();
                if deadline != 0 && now >= deadline {
                    // Still halted: the VMM keeps it so.
                    break Step::Done(Ok(Exit { kind: ExitKind::Deadline as u32, flags: abi::vm::HALTED, rip: vm.rip(), ..Exit::default() }));
                }
                // The local APIC's interrupt ends the halt, as on the CPU.
                if vm.lapic_wakes(now) {
                    break Step::Wake;
                }
                if host.should_yield() {
                    break Step::Yield;
                }
                host.guest_timer(vm.timer_target(deadline, now));
                host.idle();
            }
        } else {
            host.guest_timer(vm.timer_target(deadline, machine::x86::rdtsc()));
            run_guest(&mut vm, deadline, window, host, &mut handled)
        };
        match step {
            Step::Done(r) => break r,
            Step::Wake => halted = false,
            // Another thread of this CPU runs meanwhile (the guest would
            // otherwise keep it waiting until the VMM's next return to user
            // mode: a whole guest's life for a halted or busy one). The VM
            // stays out of the table, "running", as it is.
            Step::Yield => {
                host.host_timer();
                host.yield_cpu();
            }
        }
    };
    host.host_timer();
    // Every exit counts, those the VMM sees as well as those handled here.
    public.exits.fetch_add(handled.iter().sum::<u64>() + u64::from(result.is_ok()), Ordering::Relaxed);
    for (counter, n) in public.handled.iter().zip(handled) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    // Tell the VMM when an interrupt it injects now would enter at once: it
    // then skips the interrupt-window round trip (a world switch each way).
    let interruptible = vm.pending.is_none() && !vm.event_pending() && vm.can_take_interrupt();
    let (posted, posted_n) = vm.posting.take();
    public.state.store(ST_STOPPED, Ordering::Release);
    put(vm);
    result.map(|mut e| {
        e.handled = handled.iter().sum();
        (e.posted, e.posted_n) = (posted, posted_n as u32);
        if interruptible {
            e.flags |= abi::vm::INTERRUPTIBLE;
        }
        e
    })
}

/// How a stretch of the run loop ended.
enum Step {
    /// With an exit for the VMM (or an error).
    Done(Result<Exit, Error>),
    /// For another thread of this CPU; the guest goes on afterwards.
    Yield,
    /// A halted guest's local APIC has an interrupt for it: run it.
    Wake,
}

#[cfg(mc2_bare)]
#[allow(unsafe_code)]
fn run_guest(vm: &mut Vm, deadline: u64, window: bool, host: &impl Host, handled: &mut [u64; abi::vm::HANDLED_KINDS]) -> Step {
    use abi::vm::{HANDLED_CPUID, HANDLED_INTERRUPT, HANDLED_IO, HANDLED_MSR, HANDLED_OTHER};
    use machine::x86::{rdmsr, wrmsr};
    let mut host_fx = Fx([0; 512]);
    let mut host_msrs = [0u64; vmx::SWAPPED_MSRS.len()];
    let is_vmx = matches!(vm.arch, Arch::Vmx { .. });
    // SAFETY: the swapped MSRs exist on every x86-64 CPU and the host does
    // not use them until we restore them below (no user code runs on this
    // CPU meanwhile).
    unsafe {
        if is_vmx {
            for (i, msr) in vmx::SWAPPED_MSRS.iter().enumerate() {
                host_msrs[i] = rdmsr(*msr);
                wrmsr(*msr, vm.guest_msrs[i]);
            }
        }
    }
    let host_vmsave = match &CPUS[vm.cpu].lock().as_ref().map(|c| &c.arch) {
        Some(CpuArch::Svm(s)) => Some(s.host_vmsave),
        _ => None,
    };
    let result = loop {
        if host.should_stop() {
            break Step::Done(Err(Error::PeerGone));
        }
        if deadline != 0 && machine::x86::rdtsc() >= deadline {
            break Step::Done(Ok(Exit { kind: ExitKind::Deadline as u32, rip: vm.rip(), ..Exit::default() }));
        }
        // The VMM's event waits while the hardware has one to deliver first
        // (an interrupted delivery or a fault the kernel raised): it goes in at
        // a later entry instead of overwriting that one.
        if let Some(e) = vm.pending {
            let busy = vm.event_pending();
            if !busy && e.kind == 0 && !vm.can_take_interrupt() {
                // An external interrupt only enters an interruptible guest
                // (SDM Vol. 3 §26.3.1.5; APM §15.20): wait for the window.
                vm.request_window(true);
            } else if !busy && !(e.kind == 2 && vm.nmi_blocked()) {
                vm.pending = None;
                vm.inject_event(&e);
            }
        } else if vm.lapic.is_some() && !vm.event_pending() {
            // Then the local APIC's: its NMI, else its highest deliverable
            // interrupt when the guest can take one (else a window).
            let now = machine::x86::rdtsc();
            let can_take = vm.can_take_interrupt();
            let nmi_ok = !vm.nmi_blocked();
            let l = vm.lapic.as_mut().unwrap_or_else(|| unreachable!());
            l.expire(now);
            let event = if nmi_ok && l.take_nmi() {
                Some(Event { vector: 2, kind: 2, error_code: None })
            } else {
                match l.deliverable() {
                    Some(v) if can_take => {
                        l.accept(v);
                        Some(Event { vector: v, kind: 0, error_code: None })
                    }
                    Some(v) => {
                        vm.wait_for_window(v);
                        None
                    }
                    None => None,
                }
            };
            if let Some(e) = event {
                vm.inject_event(&e);
            }
        }
        vm.pv_eoi_to_guest();
        host.leave_kernel();
        // The guest's FPU/SSE state is in the registers only across the
        // world switch itself: the kernel's Rust code between runs (exit
        // decoding, CPUID, the host's interrupt handlers) uses SSE and
        // would clobber it (a Linux guest's programs crashed so).
        // SAFETY: FXSAVE/FXRSTOR on 16-byte aligned 512-byte areas we own;
        // the compiler is told the vector registers change.
        unsafe {
            core::arch::asm!("fxsave64 [{}]", "fxrstor64 [{}]", in(reg) host_fx.0.as_mut_ptr(), in(reg) vm.fx.0.as_ptr(), clobber_abi("C"), options(nostack));
        }
        let ran = match &mut vm.arch {
            // SAFETY: on the VM's CPU (take() checked), its VMCS current
            // since creation, interrupts masked in the kernel.
            Arch::Vmx { vmcs, .. } => unsafe { vmx::run(vmcs, &mut vm.gprs) },
            Arch::Svm { vmcb, .. } => {
                // SAFETY: on the VM's CPU with SVM enabled (cpu_setup);
                // the VMCB was initialised by create(); interrupts masked.
                unsafe { svm::run(vmcb, &mut vm.gprs, host_vmsave.unwrap_or(vmcb.frame)) };
                Ok(())
            }
        };
        // SAFETY: as above, in reverse.
        unsafe {
            core::arch::asm!("fxsave64 [{}]", "fxrstor64 [{}]", in(reg) vm.fx.0.as_mut_ptr(), in(reg) host_fx.0.as_ptr(), clobber_abi("C"), options(nostack));
        }
        let info = match (&mut vm.arch, ran) {
            (Arch::Vmx { vmcs, .. }, Ok(())) => vmcs.decode_exit(&vm.gprs),
            (Arch::Vmx { vmcs, .. }, Err(code)) => ExitInfo { kind: Kind::Exit(ExitKind::Error), value: code, raw: u64::MAX, rip: vmcs.rip(), ..ExitInfo::default() },
            (Arch::Svm { vmcb, nrips, .. }, _) => vmcb.decode_exit(*nrips),
        };
        host.enter_kernel();
        vm.settle_offer();
        vm.track_iret();
        vm.pv_eoi_from_guest();
        let invalid_gp_at = vm.invalid_gp_at.take();
        match info.kind {
            Kind::Handled => handled[HANDLED_OTHER] += 1,
            Kind::HostInterrupt => {
                handled[HANDLED_INTERRUPT] += 1;
                host.take_interrupts();
                if host.should_yield() {
                    break Step::Yield;
                }
                host.guest_timer(vm.timer_target(deadline, machine::x86::rdtsc()));
            }
            Kind::Iret => {
                handled[HANDLED_OTHER] += 1;
                if let Arch::Svm { vmcb, .. } = &vm.arch {
                    vmcb.intercept_iret(false);
                }
                vm.iret_at = Some(info.rip);
            }
            Kind::HostNmi => {
                handled[HANDLED_INTERRUPT] += 1;
                // SAFETY: INT 2 runs the host's NMI handler, as the NMI would have.
                unsafe { core::arch::asm!("int 2", options(nostack)) };
            }
            Kind::Cpuid => {
                handled[HANDLED_CPUID] += 1;
                let rax = vm.rax();
                vm.gprs.0[abi::vm::RAX] = rax;
                cpuid(&mut vm.gprs, vm.lapic.as_ref());
                let v = vm.gprs.0[abi::vm::RAX];
                vm.set_rax(v);
                vm.set_rip(info.next_rip);
                if vm.user_cpuid {
                    if let Arch::Svm { vmcb, .. } = &vm.arch {
                        if vmcb.cpl() == 3 {
                            vmcb.let_cpuid_through();
                        }
                    }
                }
            }
            Kind::Msr { write } => {
                let due = vm.lapic.as_ref().and_then(|l| l.timer_due());
                if vm.msr(write, info.next_rip, machine::x86::rdtsc()) {
                    handled[HANDLED_MSR] += 1;
                    // A new local APIC timer deadline (each tick's WRMSR):
                    // the host's timer follows it.
                    if vm.lapic.as_ref().and_then(|l| l.timer_due()) != due {
                        host.guest_timer(vm.timer_target(deadline, machine::x86::rdtsc()));
                    }
                } else {
                    vm.last = Some(info);
                    let ecx = vm.gprs.0[abi::vm::RCX];
                    let value = vm.msr_operand();
                    break Step::Done(Ok(Exit { kind: ExitKind::Msr as u32, flags: if write { 0 } else { abi::vm::IN }, extra: ecx & 0xffff_ffff, value: if write { value } else { 0 }, rip: info.rip, ..Exit::default() }));
                }
            }
            Kind::Exit(ExitKind::InterruptWindow) if vm.pending.is_some() || vm.lapic.as_ref().is_some_and(|l| l.deliverable().is_some()) => {
                // Our own window for the VMM's queued interrupt or the local
                // APIC's: inject it at the top of the loop; keep the VMM's
                // request if it made one.
                handled[HANDLED_OTHER] += 1;
                vm.request_window(window);
            }
            Kind::Exit(ExitKind::Error) if info.raw == svm::EXIT_INVALID && invalid_gp_at != Some(info.rip) && svm_gp_instead(vm) => {
                // QEMU TCG ends a guest's MOV to CR4 with reserved bits in
                // VMEXIT_INVALID, where the CPU raises #GP(0) in the guest
                // (APM Vol. 2 §3.1.3; SDM Vol. 2 "MOV—Move to/from Control
                // Registers"). The saved state is still sound (the write did
                // not happen), so deliver that #GP; if the next entry fails
                // again at the same RIP the state is really bad: the VMM gets
                // the error.
                handled[HANDLED_OTHER] += 1;
                vm.invalid_gp_at = Some(info.rip);
            }
            Kind::Exit(ExitKind::Io) if let Some(done) = vm.posting.on_io(info.port, info.size, info.flags & abi::vm::IN != 0, info.flags & abi::vm::STRING != 0, info.value) => {
                handled[HANDLED_IO] += 1;
                if let posted::Outcome::Read(v) = done {
                    vm.complete_in(info.size, u64::from(v));
                }
                vm.set_rip(info.next_rip);
            }
            Kind::Exit(kind) => {
                match kind {
                    ExitKind::Io => vm.last = Some(info),
                    ExitKind::Hlt | ExitKind::Hypercall => vm.set_rip(info.next_rip),
                    _ => {}
                }
                break Step::Done(Ok(Exit { kind: kind as u32, port: info.port, size: info.size, flags: info.flags, value: info.value, extra: info.extra, rip: info.rip, ..Exit::default() }));
            }
        }
    };
    // SAFETY: as above, in reverse.
    unsafe {
        if is_vmx {
            for (i, msr) in vmx::SWAPPED_MSRS.iter().enumerate() {
                vm.guest_msrs[i] = rdmsr(*msr);
                wrmsr(*msr, host_msrs[i]);
            }
        }
    }
    result
}

/// For an SVM VMEXIT_INVALID whose saved state is consistent and has no
/// event queued: inject #GP(0) and say so.
fn svm_gp_instead(vm: &Vm) -> bool {
    match &vm.arch {
        Arch::Svm { vmcb, .. } if vmcb.state_consistent() && !vmcb.event_pending() => {
            vmcb.inject(&GP0);
            true
        }
        _ => false,
    }
}

/// Destroy VM `id`: free its VMCB/VMCS and nested tables; `unshare` gets
/// every guest page (the caller drops the guest's reference).
#[allow(unsafe_code)]
pub fn destroy(id: u64, owner: u32, unshare: &mut dyn FnMut(Frame)) -> Result<(), Error> {
    let vm = take(id, owner)?;
    let m = mm::kernel::mm();
    let Vm { arch, container, id, .. } = *vm;
    match arch {
        Arch::Vmx { vmcs, ept } => {
            #[cfg(mc2_bare)]
            // SAFETY: on the VM's CPU (take() checked).
            unsafe {
                vmcs.clear()
            };
            ept.destroy(m, |_, f| unshare(f));
            let _ = CONTAINERS.free_page(m.frames, container, vmcs.frame);
        }
        Arch::Svm { vmcb, npt, .. } => {
            let _ = npt.destroy(|_, f, _| unshare(f));
            let _ = CONTAINERS.free_page(m.frames, container, vmcb.frame);
        }
    }
    PUBLIC[id].state.store(ST_FREE, Ordering::Release);
    Ok(())
}

/// Destroy every VM `owner` has (it is exiting, on its CPU).
pub fn destroy_owned_by(owner: u32, unshare: &mut dyn FnMut(Frame)) {
    for (id, p) in PUBLIC.iter().enumerate() {
        if !matches!(p.state.load(Ordering::Acquire), ST_FREE | ST_CLAIMED) && p.owner.load(Ordering::Relaxed) == owner {
            let _ = destroy(id as u64, owner, unshare);
        }
    }
}

/// The VMs, for `vm_list`.
pub fn list(mut f: impl FnMut(abi::vm::Info)) -> usize {
    let mut n = 0;
    for (id, p) in PUBLIC.iter().enumerate() {
        let st = p.state.load(Ordering::Acquire);
        if st == ST_FREE || st == ST_CLAIMED {
            continue;
        }
        n += 1;
        f(abi::vm::Info {
            id: id as u32,
            owner: p.owner.load(Ordering::Relaxed),
            cpu: p.cpu.load(Ordering::Relaxed),
            state: match st {
                ST_CREATED => 0,
                ST_RUNNING => 1,
                _ => 2,
            },
            guest_pages: p.pages.load(Ordering::Relaxed),
            exits: p.exits.load(Ordering::Relaxed),
            handled: core::array::from_fn(|i| p.handled[i].load(Ordering::Relaxed)),
        });
    }
    n
}

#[cfg(test)]
extern crate std;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod ept_sm;
