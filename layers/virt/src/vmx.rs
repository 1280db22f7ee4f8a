//! Intel VT-x (SDM Vol. 3C, ch. 23-29): VMXON, the VMCS, controls from the
//! capability MSRs, EPT, VM-exit decoding.
//!
//! Enabling (§23.7): IA32_FEATURE_CONTROL must allow VMX outside SMX (we set
//! and lock it if the firmware left it unlocked), CR0/CR4 must satisfy the
//! fixed-bit MSRs with CR4.VMXE set, then VMXON with a per-CPU region. Each VM
//! has a VMCS, made current on its CPU once (a VM never moves).
//!
//! Controls are computed from the TRUE capability MSRs when IA32_VMX_BASIC
//! bit 55 says they exist (§A.3): every bit we want is set if allowed, every
//! bit the CPU requires is set anyway. The guest runs with unrestricted guest
//! (real mode allowed) and EPT; CR0/CR4 bits the CPU forces (NE, VMXE) are
//! owned by the host through guest/host masks and read shadows, so the guest
//! sees its own values and CR0/CR4 writes that touch them exit and are
//! emulated here. EFER is loaded and saved by the entry/exit controls and
//! guest accesses to it are emulated; IA-32e mode follows EFER.LMA.

use crate::{Event, ExitInfo, GuestGprs, Kind};
use abi::vm::{ExitKind, Regs, Segment};
use core::arch::asm;
use machine::x86::{msr as m, rdmsr};
use mm::Frame;

// Capability MSRs (SDM Vol. 3D Appendix A).
const IA32_VMX_BASIC: u32 = 0x480;
const IA32_VMX_PINBASED: u32 = 0x481;
const IA32_VMX_PROCBASED: u32 = 0x482;
const IA32_VMX_EXIT: u32 = 0x483;
const IA32_VMX_ENTRY: u32 = 0x484;
const IA32_VMX_CR0_FIXED0: u32 = 0x486;
const IA32_VMX_CR0_FIXED1: u32 = 0x487;
const IA32_VMX_CR4_FIXED0: u32 = 0x488;
const IA32_VMX_CR4_FIXED1: u32 = 0x489;
const IA32_VMX_PROCBASED2: u32 = 0x48b;
const IA32_VMX_TRUE_PINBASED: u32 = 0x48d;
const IA32_VMX_TRUE_PROCBASED: u32 = 0x48e;
const IA32_VMX_TRUE_EXIT: u32 = 0x48f;
const IA32_VMX_TRUE_ENTRY: u32 = 0x490;

// VMCS field encodings (SDM Vol. 3D Appendix B).
mod f {
    pub const VPID: u32 = 0x0000;
    pub const GUEST_ES_SEL: u32 = 0x0800;
    pub const GUEST_LDTR_SEL: u32 = 0x080c;
    pub const GUEST_TR_SEL: u32 = 0x080e;
    pub const HOST_ES_SEL: u32 = 0x0c00;
    pub const HOST_CS_SEL: u32 = 0x0c02;
    pub const HOST_SS_SEL: u32 = 0x0c04;
    pub const HOST_DS_SEL: u32 = 0x0c06;
    pub const HOST_FS_SEL: u32 = 0x0c08;
    pub const HOST_GS_SEL: u32 = 0x0c0a;
    pub const HOST_TR_SEL: u32 = 0x0c0c;
    pub const MSR_BITMAP: u32 = 0x2004;
    pub const EPTP: u32 = 0x201a;
    pub const GUEST_PHYS_ADDR: u32 = 0x2400;
    pub const VMCS_LINK: u32 = 0x2800;
    pub const GUEST_PAT: u32 = 0x2804;
    pub const GUEST_EFER: u32 = 0x2806;
    pub const HOST_PAT: u32 = 0x2c00;
    pub const HOST_EFER: u32 = 0x2c02;
    pub const PIN_CTLS: u32 = 0x4000;
    pub const PROC_CTLS: u32 = 0x4002;
    pub const EXCEPTION_BITMAP: u32 = 0x4004;
    pub const EXIT_CTLS: u32 = 0x400c;
    pub const ENTRY_CTLS: u32 = 0x4012;
    pub const ENTRY_INTR_INFO: u32 = 0x4016;
    pub const ENTRY_ERROR_CODE: u32 = 0x4018;
    pub const ENTRY_INSTR_LEN: u32 = 0x401a;
    pub const PROC_CTLS2: u32 = 0x401e;
    pub const INSTR_ERROR: u32 = 0x4400;
    pub const EXIT_REASON: u32 = 0x4402;
    pub const EXIT_INTR_INFO: u32 = 0x4404;
    pub const IDT_VECTORING_INFO: u32 = 0x4408;
    pub const IDT_VECTORING_ERROR: u32 = 0x440a;
    pub const EXIT_INSTR_LEN: u32 = 0x440c;
    pub const GUEST_ES_LIMIT: u32 = 0x4800;
    pub const GUEST_LDTR_LIMIT: u32 = 0x480c;
    pub const GUEST_TR_LIMIT: u32 = 0x480e;
    pub const GUEST_GDTR_LIMIT: u32 = 0x4810;
    pub const GUEST_IDTR_LIMIT: u32 = 0x4812;
    pub const GUEST_ES_AR: u32 = 0x4814;
    pub const GUEST_LDTR_AR: u32 = 0x4820;
    pub const GUEST_TR_AR: u32 = 0x4822;
    pub const GUEST_INTERRUPTIBILITY: u32 = 0x4824;
    pub const GUEST_ACTIVITY: u32 = 0x4826;
    pub const HOST_SYSENTER_CS: u32 = 0x4c00;
    pub const CR0_MASK: u32 = 0x6000;
    pub const CR4_MASK: u32 = 0x6002;
    pub const CR0_SHADOW: u32 = 0x6004;
    pub const CR4_SHADOW: u32 = 0x6006;
    pub const EXIT_QUALIFICATION: u32 = 0x6400;
    pub const GUEST_CR0: u32 = 0x6800;
    pub const GUEST_CR3: u32 = 0x6802;
    pub const GUEST_CR4: u32 = 0x6804;
    pub const GUEST_ES_BASE: u32 = 0x6806;
    pub const GUEST_LDTR_BASE: u32 = 0x6812;
    pub const GUEST_TR_BASE: u32 = 0x6814;
    pub const GUEST_GDTR_BASE: u32 = 0x6816;
    pub const GUEST_IDTR_BASE: u32 = 0x6818;
    pub const GUEST_DR7: u32 = 0x681a;
    pub const GUEST_RSP: u32 = 0x681c;
    pub const GUEST_RIP: u32 = 0x681e;
    pub const GUEST_RFLAGS: u32 = 0x6820;
    pub const HOST_CR0: u32 = 0x6c00;
    pub const HOST_CR3: u32 = 0x6c02;
    pub const HOST_CR4: u32 = 0x6c04;
    pub const HOST_FS_BASE: u32 = 0x6c06;
    pub const HOST_GS_BASE: u32 = 0x6c08;
    pub const HOST_TR_BASE: u32 = 0x6c0a;
    pub const HOST_GDTR_BASE: u32 = 0x6c0c;
    pub const HOST_IDTR_BASE: u32 = 0x6c0e;
    pub const HOST_SYSENTER_ESP: u32 = 0x6c10;
    pub const HOST_SYSENTER_EIP: u32 = 0x6c12;
    pub const HOST_RIP: u32 = 0x6c16;
}

// Control bits (SDM Vol. 3C §24.6, §24.7, §24.8).
const PIN_EXTERNAL_INTERRUPT: u32 = 1 << 0;
const PIN_NMI: u32 = 1 << 3;
/// Virtual NMIs (SDM Vol. 3C §24.6.1): with NMI exiting, the guest's own
/// NMI blocking is tracked (set by an injected NMI, cleared by its IRET)
/// and readable as "blocking by NMI"; without it IRET never clears that.
const PIN_VIRTUAL_NMIS: u32 = 1 << 5;
const PROC_INTERRUPT_WINDOW: u32 = 1 << 2;
const PROC_HLT: u32 = 1 << 7;
const PROC_INVLPG: u32 = 1 << 9;
const PROC_MWAIT: u32 = 1 << 10;
const PROC_MONITOR: u32 = 1 << 29;
const PROC_CR3_LOAD: u32 = 1 << 15;
const PROC_CR3_STORE: u32 = 1 << 16;
const PROC_UNCOND_IO: u32 = 1 << 24;
const PROC_MSR_BITMAP: u32 = 1 << 28;
const PROC_SECONDARY: u32 = 1 << 31;
const PROC2_EPT: u32 = 1 << 1;
const PROC2_UNRESTRICTED: u32 = 1 << 7;
const EXIT_HOST_64: u32 = 1 << 9;
const EXIT_SAVE_PAT: u32 = 1 << 18;
const EXIT_LOAD_PAT: u32 = 1 << 19;
const EXIT_SAVE_EFER: u32 = 1 << 20;
const EXIT_LOAD_EFER: u32 = 1 << 21;
const ENTRY_IA32E: u32 = 1 << 9;
const ENTRY_LOAD_PAT: u32 = 1 << 14;
const ENTRY_LOAD_EFER: u32 = 1 << 15;

use crate::{CR0_PE, CR0_PG, EFER_LMA, EFER_LME, GP0};

// Exit reasons (SDM Vol. 3D Appendix C).
const R_EXCEPTION_NMI: u32 = 0;
const R_EXTERNAL_INTERRUPT: u32 = 1;
const R_TRIPLE_FAULT: u32 = 2;
const R_INTERRUPT_WINDOW: u32 = 7;
const R_CPUID: u32 = 10;
const R_HLT: u32 = 12;
const R_VMCALL: u32 = 18;
const R_CR_ACCESS: u32 = 28;
const R_IO: u32 = 30;
const R_RDMSR: u32 = 31;
const R_WRMSR: u32 = 32;
const R_INVALID_STATE: u32 = 33;
const R_EPT_VIOLATION: u32 = 48;

fn vmread(field: u32) -> u64 {
    let v: u64;
    // SAFETY: VMREAD of a defined field of the current VMCS; callers only
    // run on a CPU in VMX operation with the VM's VMCS current (the VM is
    // pinned to its CPU). A failure leaves `v` as read (0).
    unsafe { asm!("vmread {v}, {f}", f = in(reg) field as u64, v = out(reg) v, options(nostack)) };
    v
}

fn vmwrite(field: u32, v: u64) {
    // SAFETY: as in vmread; the caller passes values valid for the field
    // (the hardware checks the guest state at entry, never the host's
    // memory, so a bad guest value can only make an entry fail).
    unsafe { asm!("vmwrite {f}, {v}", f = in(reg) field as u64, v = in(reg) v, options(nostack)) };
}

/// Does this CPU have VMX with EPT and unrestricted guest, allowed by firmware?
pub fn supported() -> bool {
    if machine::x86::cpuid(1, 0).ecx & (1 << 5) == 0 {
        return false;
    }
    #[cfg(mc2_bare)]
    {
        // SAFETY: the capability MSRs exist when CPUID reports VMX.
        let fc = unsafe { rdmsr(m::IA32_FEATURE_CONTROL) };
        if fc & 1 != 0 && fc & (1 << 2) == 0 {
            return false; // locked off by firmware
        }
        // SAFETY: as above.
        let proc = unsafe { rdmsr(IA32_VMX_PROCBASED) };
        if proc >> 32 & PROC_SECONDARY as u64 == 0 {
            return false;
        }
        // SAFETY: secondary controls exist (just checked).
        let proc2 = unsafe { rdmsr(IA32_VMX_PROCBASED2) };
        proc2 >> 32 & (PROC2_EPT | PROC2_UNRESTRICTED) as u64 == (PROC2_EPT | PROC2_UNRESTRICTED) as u64
    }
    #[cfg(not(mc2_bare))]
    false
}

/// A control value: `want` adjusted to the capability MSR `cap` (low half:
/// bits that must be 1; high half: bits that may be 1).
fn adjust(cap: u64, want: u32) -> u32 {
    (want | cap as u32) & (cap >> 32) as u32
}

/// VMCS revision identifier (IA32_VMX_BASIC bits 30:0).
fn revision() -> u32 {
    // SAFETY: exists whenever VMX is supported (callers checked).
    unsafe { rdmsr(IA32_VMX_BASIC) as u32 & 0x7fff_ffff }
}

/// Enter VMX operation on this CPU with `region` as its VMXON region.
///
/// # Safety
/// Ring 0 on the CPU concerned, `supported()`; `region` is a zeroed 4 KiB
/// frame owned by the kernel for as long as VMX stays on.
#[cfg(mc2_bare)]
pub unsafe fn enable(region: Frame) -> Result<(), &'static str> {
    use machine::x86::{read_cr0, read_cr4, wrmsr, write_cr0, write_cr4};
    // SAFETY: per the contract: MSRs exist, CR changes respect the fixed
    // bits the CPU reports (only the bits it requires are set).
    unsafe {
        let fc = rdmsr(m::IA32_FEATURE_CONTROL);
        if fc & 1 == 0 {
            wrmsr(m::IA32_FEATURE_CONTROL, fc | 1 << 2 | 1);
        }
        let cr0 = (read_cr0() | rdmsr(IA32_VMX_CR0_FIXED0)) & rdmsr(IA32_VMX_CR0_FIXED1);
        write_cr0(cr0);
        let cr4 = (read_cr4() | machine::x86::cr4::VMXE | rdmsr(IA32_VMX_CR4_FIXED0)) & rdmsr(IA32_VMX_CR4_FIXED1);
        write_cr4(cr4);
        core::ptr::write_volatile(machine::layout::phys_to_virt(region.addr()) as *mut u32, revision());
        let pa = region.addr();
        let failed: u8;
        asm!("vmxon [{pa}]", "setna {f}", pa = in(reg) &pa, f = out(reg_byte) failed, options(nostack));
        if failed != 0 {
            return Err("VMXON failed");
        }
    }
    Ok(())
}

/// Per-CPU VMX resources: the MSR bitmap (1 page: every MSR exits but the
/// ones the guest owns outright, which the run loop swaps).
pub struct CpuVmx {
    pub msr_bitmap: Frame,
}

/// MSRs the guest may access directly (their host values are swapped in and
/// out around guest execution, or saved by the VMCS: FS/GS base).
pub const PASSTHROUGH_MSRS: [u32; 7] = [
    m::IA32_FS_BASE,
    m::IA32_GS_BASE,
    m::IA32_KERNEL_GS_BASE,
    m::IA32_STAR,
    m::IA32_LSTAR,
    0xc000_0083, // IA32_CSTAR
    m::IA32_FMASK,
];

/// MSRs swapped between host and guest around the run loop (the VMCS does
/// not switch them).
pub const SWAPPED_MSRS: [u32; 5] = [m::IA32_KERNEL_GS_BASE, m::IA32_STAR, m::IA32_LSTAR, 0xc000_0083, m::IA32_FMASK];

/// Clear the bitmap bits that make `msr` exit (SDM Vol. 3C §24.6.9: read
/// bitmap low at 0, high at 1024; write bitmap low at 2048, high at 3072).
pub fn msr_bitmap_allow(bitmap: &mut [u8; 4096], msr: u32) {
    let (base, bit) = if msr < 0x2000 { (0, msr) } else if (0xc000_0000..0xc000_2000).contains(&msr) { (1024, msr - 0xc000_0000) } else { return };
    let (byte, mask) = ((bit / 8) as usize, 1u8 << (bit % 8));
    bitmap[base + byte] &= !mask;
    bitmap[base + 2048 + byte] &= !mask;
}

/// The VMX state of one vCPU.
pub struct Vmcs {
    pub frame: Frame,
    cr0_fixed0: u64,
    cr0_fixed1: u64,
    cr4_fixed0: u64,
    cr4_fixed1: u64,
    pub launched: bool,
}

/// SVM-style packed attributes to VMX access rights (SDM Vol. 3C §24.4.1).
fn ar_from(attrib: u16) -> u64 {
    if attrib & 0x80 == 0 {
        return 1 << 16; // not present: unusable
    }
    (attrib as u64 & 0xff) | ((attrib as u64 & 0xf00) << 4)
}

fn ar_to(ar: u64) -> u16 {
    if ar & (1 << 16) != 0 {
        return 0;
    }
    ((ar & 0xff) | ((ar >> 4) & 0xf00)) as u16
}

impl Vmcs {
    /// Make `frame` (zeroed, owned by the VM) a VMCS, current on this CPU,
    /// with host state, controls and a reset guest.
    ///
    /// # Safety
    /// On the VM's CPU, in VMX operation.
    #[cfg(mc2_bare)]
    pub unsafe fn new(frame: Frame, cpu: &CpuVmx, eptp: u64) -> Result<Vmcs, &'static str> {
        // SAFETY: the frame is this VM's; VMCLEAR/VMPTRLD take its address.
        unsafe {
            core::ptr::write_volatile(machine::layout::phys_to_virt(frame.addr()) as *mut u32, revision());
            let pa = frame.addr();
            let failed: u8;
            asm!("vmclear [{pa}]", "setna {f}", pa = in(reg) &pa, f = out(reg_byte) failed, options(nostack));
            if failed != 0 {
                return Err("VMCLEAR failed");
            }
            let failed: u8;
            asm!("vmptrld [{pa}]", "setna {f}", pa = in(reg) &pa, f = out(reg_byte) failed, options(nostack));
            if failed != 0 {
                return Err("VMPTRLD failed");
            }
        }
        // SAFETY: capability MSRs exist (VMX is on).
        let (basic, fx) = unsafe { (rdmsr(IA32_VMX_BASIC), [rdmsr(IA32_VMX_CR0_FIXED0), rdmsr(IA32_VMX_CR0_FIXED1), rdmsr(IA32_VMX_CR4_FIXED0), rdmsr(IA32_VMX_CR4_FIXED1)]) };
        let truectl = basic & (1 << 55) != 0;
        let cap = |plain: u32, tru: u32| {
            // SAFETY: the TRUE MSRs exist when BASIC bit 55 says so.
            unsafe { rdmsr(if truectl { tru } else { plain }) }
        };
        let v = Vmcs { frame, cr0_fixed0: fx[0], cr0_fixed1: fx[1], cr4_fixed0: fx[2], cr4_fixed1: fx[3], launched: false };
        vmwrite(f::PIN_CTLS, adjust(cap(IA32_VMX_PINBASED, IA32_VMX_TRUE_PINBASED), PIN_EXTERNAL_INTERRUPT | PIN_NMI | PIN_VIRTUAL_NMIS) as u64);
        // INVD, XSETBV and the VMX instructions always exit (§25.1.2);
        // MONITOR/MWAIT are made to.
        let mut proc = adjust(cap(IA32_VMX_PROCBASED, IA32_VMX_TRUE_PROCBASED), PROC_HLT | PROC_UNCOND_IO | PROC_MSR_BITMAP | PROC_SECONDARY | PROC_MWAIT | PROC_MONITOR);
        proc &= !(PROC_CR3_LOAD | PROC_CR3_STORE | PROC_INVLPG) | cap(IA32_VMX_PROCBASED, IA32_VMX_TRUE_PROCBASED) as u32;
        vmwrite(f::PROC_CTLS, proc as u64);
        // SAFETY: secondary controls exist (supported() checked).
        vmwrite(f::PROC_CTLS2, adjust(unsafe { rdmsr(IA32_VMX_PROCBASED2) }, PROC2_EPT | PROC2_UNRESTRICTED) as u64);
        vmwrite(f::EXIT_CTLS, adjust(cap(IA32_VMX_EXIT, IA32_VMX_TRUE_EXIT), EXIT_HOST_64 | EXIT_SAVE_EFER | EXIT_LOAD_EFER | EXIT_SAVE_PAT | EXIT_LOAD_PAT) as u64);
        vmwrite(f::ENTRY_CTLS, adjust(cap(IA32_VMX_ENTRY, IA32_VMX_TRUE_ENTRY), ENTRY_LOAD_EFER | ENTRY_LOAD_PAT) as u64);
        vmwrite(f::EXCEPTION_BITMAP, 1 << 18); // #MC to the host
        vmwrite(f::MSR_BITMAP, cpu.msr_bitmap.addr());
        vmwrite(f::EPTP, eptp);
        vmwrite(f::VMCS_LINK, u64::MAX);
        // Host state: this CPU as it is now (the VM never leaves it).
        // SAFETY: reading control registers and MSRs in ring 0.
        unsafe {
            use machine::x86::{read_cr0, read_cr3, read_cr4};
            vmwrite(f::HOST_CR0, read_cr0());
            vmwrite(f::HOST_CR3, read_cr3());
            vmwrite(f::HOST_CR4, read_cr4());
            vmwrite(f::HOST_FS_BASE, rdmsr(m::IA32_FS_BASE));
            vmwrite(f::HOST_GS_BASE, rdmsr(m::IA32_GS_BASE));
            vmwrite(f::HOST_EFER, rdmsr(m::IA32_EFER));
            vmwrite(f::HOST_PAT, rdmsr(m::IA32_PAT));
        }
        let (gdtr, idtr, tr) = machine::percpu::descriptor_bases();
        vmwrite(f::HOST_GDTR_BASE, gdtr);
        vmwrite(f::HOST_IDTR_BASE, idtr);
        vmwrite(f::HOST_TR_BASE, tr);
        vmwrite(f::HOST_CS_SEL, machine::gdt::KERNEL_CS as u64);
        vmwrite(f::HOST_SS_SEL, machine::gdt::KERNEL_DS as u64);
        for sel in [f::HOST_ES_SEL, f::HOST_DS_SEL, f::HOST_FS_SEL, f::HOST_GS_SEL] {
            vmwrite(sel, 0);
        }
        vmwrite(f::HOST_TR_SEL, machine::gdt::TSS_SEL as u64);
        vmwrite(f::HOST_SYSENTER_CS, 0);
        vmwrite(f::HOST_SYSENTER_ESP, 0);
        vmwrite(f::HOST_SYSENTER_EIP, 0);
        extern "C" {
            static mc2_vmx_exit: u8;
        }
        vmwrite(f::HOST_RIP, core::ptr::addr_of!(mc2_vmx_exit) as u64);
        vmwrite(f::GUEST_PAT, 0x0007_0406_0007_0406);
        vmwrite(f::VPID, 0);
        v.set_regs(&crate::reset_state());
        Ok(v)
    }

    fn forced_cr0(&self, v: u64) -> u64 {
        // Unrestricted guest: PE and PG are the guest's own (§26.3.1.1).
        let must = self.cr0_fixed0 & !(CR0_PE | CR0_PG);
        (v | must) & (self.cr0_fixed1 | CR0_PE | CR0_PG)
    }
    fn forced_cr4(&self, v: u64) -> u64 {
        (v | self.cr4_fixed0) & self.cr4_fixed1
    }

    /// Set CR0 as the guest asked (read shadow) and as the CPU needs it.
    fn write_cr0(&self, v: u64) {
        vmwrite(f::CR0_MASK, (self.cr0_fixed0 & !(CR0_PE | CR0_PG)) | (!self.cr0_fixed1 & 0xffff_ffff));
        vmwrite(f::CR0_SHADOW, v);
        vmwrite(f::GUEST_CR0, self.forced_cr0(v));
        self.update_long_mode();
    }
    fn write_cr4(&self, v: u64) {
        vmwrite(f::CR4_MASK, self.cr4_fixed0 | (!self.cr4_fixed1 & 0xffff_ffff));
        vmwrite(f::CR4_SHADOW, v);
        vmwrite(f::GUEST_CR4, self.forced_cr4(v));
    }
    /// EFER.LMA = LME and paging on; the entry control follows (§9.8.5).
    fn update_long_mode(&self) {
        let efer = vmread(f::GUEST_EFER);
        let lma = efer & EFER_LME != 0 && vmread(f::GUEST_CR0) & CR0_PG != 0;
        vmwrite(f::GUEST_EFER, if lma { efer | EFER_LMA } else { efer & !EFER_LMA });
        let entry = vmread(f::ENTRY_CTLS) as u32;
        vmwrite(f::ENTRY_CTLS, if lma { entry | ENTRY_IA32E } else { entry & !ENTRY_IA32E } as u64);
    }

    pub fn regs(&self, gprs: &GuestGprs) -> Regs {
        let mut r = Regs { gpr: gprs.0, ..Regs::default() };
        r.gpr[abi::vm::RSP] = vmread(f::GUEST_RSP);
        r.rip = vmread(f::GUEST_RIP);
        r.rflags = vmread(f::GUEST_RFLAGS);
        r.cr0 = (vmread(f::GUEST_CR0) & !vmread(f::CR0_MASK)) | (vmread(f::CR0_SHADOW) & vmread(f::CR0_MASK));
        r.cr3 = vmread(f::GUEST_CR3);
        r.cr4 = (vmread(f::GUEST_CR4) & !vmread(f::CR4_MASK)) | (vmread(f::CR4_SHADOW) & vmread(f::CR4_MASK));
        r.efer = vmread(f::GUEST_EFER);
        for (i, s) in r.seg.iter_mut().enumerate() {
            let i = i as u32;
            *s = Segment {
                selector: vmread(f::GUEST_ES_SEL + 2 * i) as u16,
                attrib: ar_to(vmread(f::GUEST_ES_AR + 2 * i)),
                limit: vmread(f::GUEST_ES_LIMIT + 2 * i) as u32,
                base: vmread(f::GUEST_ES_BASE + 2 * i),
            };
        }
        r.gdt_base = vmread(f::GUEST_GDTR_BASE);
        r.gdt_limit = vmread(f::GUEST_GDTR_LIMIT) as u32;
        r.idt_base = vmread(f::GUEST_IDTR_BASE);
        r.idt_limit = vmread(f::GUEST_IDTR_LIMIT) as u32;
        r
    }

    pub fn set_regs(&self, r: &Regs) {
        vmwrite(f::GUEST_RSP, r.gpr[abi::vm::RSP]);
        vmwrite(f::GUEST_RIP, r.rip);
        vmwrite(f::GUEST_RFLAGS, r.rflags | 2);
        vmwrite(f::GUEST_CR3, r.cr3);
        vmwrite(f::GUEST_EFER, r.efer & !EFER_LMA);
        self.write_cr4(r.cr4);
        self.write_cr0(r.cr0);
        for (i, s) in r.seg.iter().enumerate() {
            let i = i as u32;
            vmwrite(f::GUEST_ES_SEL + 2 * i, s.selector as u64);
            let mut ar = ar_from(s.attrib);
            // TR and (in real mode) CS must be usable: give them the type the
            // checks want if the VMM left them empty (§26.3.1.2).
            if ar & (1 << 16) != 0 && (f::GUEST_ES_SEL + 2 * i == f::GUEST_TR_SEL) {
                ar = 0x8b;
            }
            vmwrite(f::GUEST_ES_AR + 2 * i, ar);
            vmwrite(f::GUEST_ES_LIMIT + 2 * i, s.limit as u64);
            vmwrite(f::GUEST_ES_BASE + 2 * i, s.base);
        }
        let _ = (f::GUEST_LDTR_SEL, f::GUEST_LDTR_LIMIT, f::GUEST_LDTR_AR, f::GUEST_LDTR_BASE, f::GUEST_TR_LIMIT, f::GUEST_TR_AR, f::GUEST_TR_BASE);
        vmwrite(f::GUEST_GDTR_BASE, r.gdt_base);
        vmwrite(f::GUEST_GDTR_LIMIT, r.gdt_limit as u64);
        vmwrite(f::GUEST_IDTR_BASE, r.idt_base);
        vmwrite(f::GUEST_IDTR_LIMIT, r.idt_limit as u64);
        vmwrite(f::GUEST_DR7, 0x400);
        vmwrite(f::GUEST_INTERRUPTIBILITY, 0);
        vmwrite(f::GUEST_ACTIVITY, 0);
    }

    pub fn rip(&self) -> u64 {
        vmread(f::GUEST_RIP)
    }
    pub fn set_rip(&self, v: u64) {
        vmwrite(f::GUEST_RIP, v);
        // Stepping over an instruction ends STI/MOV-SS blocking (§24.4.2).
        let intr = vmread(f::GUEST_INTERRUPTIBILITY);
        if intr & 3 != 0 {
            vmwrite(f::GUEST_INTERRUPTIBILITY, intr & !3);
        }
    }
    pub fn rflags(&self) -> u64 {
        vmread(f::GUEST_RFLAGS)
    }
    pub fn efer(&self) -> u64 {
        vmread(f::GUEST_EFER)
    }
    pub fn set_efer(&self, v: u64) {
        vmwrite(f::GUEST_EFER, v & !EFER_LMA);
        self.update_long_mode();
    }
    /// Blocking by NMI (guest interruptibility state bit 3, SDM Vol. 3C
    /// §24.4.2) with virtual NMIs: the guest's NMI handler has not yet run
    /// its IRET; injecting another NMI then would fail the entry
    /// (§26.3.1.5). Without virtual NMIs (not offered) nothing is tracked.
    pub fn nmi_blocked(&self) -> bool {
        self.virtual_nmis() && vmread(f::GUEST_INTERRUPTIBILITY) & 8 != 0
    }

    /// Did the CPU accept the virtual-NMIs control (`adjust` drops it where
    /// it is not offered)?
    fn virtual_nmis(&self) -> bool {
        vmread(f::PIN_CTLS) as u32 & PIN_VIRTUAL_NMIS != 0
    }
    pub fn interrupt_shadow(&self) -> bool {
        vmread(f::GUEST_INTERRUPTIBILITY) & 3 != 0
    }

    pub fn inject(&self, e: &Event) {
        let mut info = e.vector as u64 | (e.kind as u64 & 7) << 8 | 1 << 31;
        // Error codes are only delivered in protected mode (§26.2.1.3).
        if let Some(code) = e.error_code.filter(|_| vmread(f::GUEST_CR0) & CR0_PE != 0) {
            info |= 1 << 11;
            vmwrite(f::ENTRY_ERROR_CODE, code as u64);
        }
        vmwrite(f::ENTRY_INTR_INFO, info);
        vmwrite(f::ENTRY_INSTR_LEN, 0);
    }

    /// An event is already set to be delivered at the next entry (a
    /// re-delivery after IDT vectoring, or a fault the kernel raised).
    pub fn event_pending(&self) -> bool {
        vmread(f::ENTRY_INTR_INFO) & (1 << 31) != 0
    }

    pub fn request_window(&self, on: bool) {
        let p = vmread(f::PROC_CTLS);
        vmwrite(f::PROC_CTLS, if on { p | PROC_INTERRUPT_WINDOW as u64 } else { p & !(PROC_INTERRUPT_WINDOW as u64) });
    }

    /// Emulate a MOV to CR0/CR4 or LMSW/CLTS that exited (qualification
    /// §27.2.1 Table 27-3): a value the guest's CPU would refuse gets the
    /// #GP(0) it would raise (RIP stays on the instruction); otherwise the
    /// write is done and RIP steps over it. False if it is not one we handle.
    fn cr_access(&self, q: u64, gprs: &GuestGprs, next_rip: u64) -> bool {
        let (cr, kind, reg) = (q & 15, (q >> 4) & 3, ((q >> 8) & 15) as usize);
        let value = |r: usize| if r == abi::vm::RSP { vmread(f::GUEST_RSP) } else { gprs.0[r] };
        let shadow0 = vmread(f::CR0_SHADOW);
        let cr4 = (vmread(f::GUEST_CR4) & !vmread(f::CR4_MASK)) | (vmread(f::CR4_SHADOW) & vmread(f::CR4_MASK));
        let efer = vmread(f::GUEST_EFER);
        let new0 = match (kind, cr) {
            (0, 0) => Some(value(reg)),
            (2, _) => Some(shadow0 & !8),                           // CLTS
            (3, _) => Some((shadow0 & !0xe) | ((q >> 16) & 0xf)), // LMSW: PE can be set, not cleared
            _ => None,
        };
        match (new0, kind, cr) {
            (Some(v), _, _) if crate::cr0_write_faults(v, cr4, efer) => self.inject(&GP0),
            (Some(v), _, _) => {
                self.write_cr0(v);
                self.set_rip(next_rip);
            }
            (None, 0, 4) if crate::cr4_write_faults(value(reg), efer, self.cr4_fixed1) => self.inject(&GP0),
            (None, 0, 4) => {
                self.write_cr4(value(reg));
                self.set_rip(next_rip);
            }
            _ => return false,
        }
        true
    }

    /// With virtual NMIs, did this exit (an EPT violation, or an exception
    /// or NMI exit) come inside an IRET that unblocked NMIs? SDM Vol. 3C
    /// §27.2.1 (EPT violation qualification bit 12), §27.2.2 (exit
    /// interruption information bit 12).
    fn nmi_unblocked_by_iret(&self, reason: u32, q: u64) -> bool {
        if !self.virtual_nmis() {
            return false;
        }
        match reason & 0xffff {
            R_EPT_VIOLATION => q & (1 << 12) != 0,
            R_EXCEPTION_NMI => {
                let info = vmread(f::EXIT_INTR_INFO);
                info & (1 << 31) != 0 && info & (1 << 12) != 0
            }
            _ => false,
        }
    }

    /// After an exit: decode it, handling CR accesses here.
    pub fn decode_exit(&self, gprs: &GuestGprs) -> ExitInfo {
        let reason = vmread(f::EXIT_REASON) as u32;
        let q = vmread(f::EXIT_QUALIFICATION);
        let rip = vmread(f::GUEST_RIP);
        let len = vmread(f::EXIT_INSTR_LEN);
        let mut e = ExitInfo { raw: reason as u64, rip, next_rip: rip + len, ..ExitInfo::default() };
        // An event the exit interrupted must be delivered again (§27.2.4).
        let idt = vmread(f::IDT_VECTORING_INFO);
        if idt & (1 << 31) != 0 {
            vmwrite(f::ENTRY_INTR_INFO, idt & !(1 << 12));
            vmwrite(f::ENTRY_ERROR_CODE, vmread(f::IDT_VECTORING_ERROR));
            vmwrite(f::ENTRY_INSTR_LEN, len);
            // An NMI not yet delivered does not block one yet (its delivery
            // at the entry will), and an entry injecting an NMI must not
            // find blocking by NMI set (§26.3.1.5).
            if (idt >> 8) & 7 == 2 {
                vmwrite(f::GUEST_INTERRUPTIBILITY, vmread(f::GUEST_INTERRUPTIBILITY) & !8);
            }
        } else if self.nmi_unblocked_by_iret(reason, q) {
            // The exit came in an IRET that had ended the guest's NMI
            // handler; the IRET runs again, so its NMI blocks until then
            // (§27.2.3, "NMI unblocking due to IRET").
            vmwrite(f::GUEST_INTERRUPTIBILITY, vmread(f::GUEST_INTERRUPTIBILITY) | 8);
        }
        if reason & (1 << 31) != 0 {
            e.kind = Kind::Exit(ExitKind::Error);
            e.value = (reason & 0xffff) as u64;
            return e;
        }
        match reason & 0xffff {
            R_EXTERNAL_INTERRUPT => e.kind = Kind::HostInterrupt,
            R_EXCEPTION_NMI => {
                let info = vmread(f::EXIT_INTR_INFO);
                if (info >> 8) & 7 == 2 {
                    e.kind = Kind::HostNmi;
                } else {
                    e.kind = Kind::Exit(ExitKind::Exception);
                    e.extra = info & 0xff;
                }
            }
            R_TRIPLE_FAULT => e.kind = Kind::Exit(ExitKind::Shutdown),
            R_INTERRUPT_WINDOW => {
                self.request_window(false);
                e.kind = Kind::Exit(ExitKind::InterruptWindow);
            }
            R_CPUID => e.kind = Kind::Cpuid,
            R_HLT => e.kind = Kind::Exit(ExitKind::Hlt),
            R_VMCALL => {
                e.kind = Kind::Exit(ExitKind::Hypercall);
                e.value = gprs.0[abi::vm::RAX];
            }
            R_CR_ACCESS if self.cr_access(q, gprs, rip + len) => e.kind = Kind::Handled,
            R_CR_ACCESS => {
                e.kind = Kind::Exit(ExitKind::Other);
                e.value = reason as u64;
            }
            R_IO => {
                // Qualification (§27.2.1 Table 27-5): bits 0-2 size-1, 3 IN, 4 string, 5 rep, 16-31 port.
                e.kind = Kind::Exit(ExitKind::Io);
                e.size = (q & 7) as u32 + 1;
                e.port = (q >> 16) as u32;
                e.flags = (((q >> 3) & 1) as u32 * abi::vm::IN) | (((q >> 4) & 1) as u32 * abi::vm::STRING) | (((q >> 5) & 1) as u32 * abi::vm::REP);
                e.value = gprs.0[abi::vm::RAX] & crate::size_mask(e.size);
            }
            R_RDMSR => e.kind = Kind::Msr { write: false },
            R_WRMSR => e.kind = Kind::Msr { write: true },
            R_INVALID_STATE => {
                e.kind = Kind::Exit(ExitKind::Error);
                e.value = reason as u64;
            }
            R_EPT_VIOLATION => {
                e.kind = Kind::Exit(ExitKind::MemFault);
                e.value = vmread(f::GUEST_PHYS_ADDR);
                e.flags = if q & 2 != 0 { abi::vm::WRITE } else { 0 } | if q & 4 != 0 { abi::vm::EXEC } else { 0 };
            }
            _ => {
                e.kind = Kind::Exit(ExitKind::Other);
                e.value = reason as u64;
            }
        }
        e
    }

    /// The VM-instruction error of a failed VMLAUNCH/VMRESUME (§30.4).
    pub fn instruction_error(&self) -> u64 {
        vmread(f::INSTR_ERROR)
    }

    /// Give the VMCS up on this CPU (before its frame is freed).
    ///
    /// # Safety
    /// On the VM's CPU.
    #[cfg(mc2_bare)]
    pub unsafe fn clear(&self) {
        let pa = self.frame.addr();
        // SAFETY: VMCLEAR of this VM's VMCS on its CPU.
        unsafe { asm!("vmclear [{pa}]", pa = in(reg) &pa, options(nostack)) };
    }
}

/// One guest run: VMLAUNCH the first time, VMRESUME after. Returns Err with
/// the VM-instruction error if the entry itself failed.
///
/// # Safety
/// On the VM's CPU with its VMCS current and complete; interrupts masked.
#[cfg(mc2_bare)]
pub unsafe fn run(vmcs: &mut Vmcs, gprs: &mut GuestGprs) -> Result<(), u64> {
    extern "C" {
        fn mc2_vmx_run(gprs: *mut u64, launched: u64) -> u64;
    }
    // SAFETY: per the contract; the assembly saves and restores every host
    // register the ABI asks for and the VMCS restores the rest on exit.
    let r = unsafe { mc2_vmx_run(gprs.0.as_mut_ptr(), vmcs.launched as u64) };
    if r != 0 {
        return Err(vmcs.instruction_error());
    }
    vmcs.launched = true;
    Ok(())
}

#[cfg(mc2_bare)]
core::arch::global_asm!(
    r#"
.text
.global mc2_vmx_run, mc2_vmx_exit
mc2_vmx_run:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdi
    mov $0x6c14, %rax
    vmwrite %rsp, %rax
    cmp $0, %rsi
    mov 0(%rdi), %rax
    mov 8(%rdi), %rcx
    mov 16(%rdi), %rdx
    mov 24(%rdi), %rbx
    mov 40(%rdi), %rbp
    mov 48(%rdi), %rsi
    mov 64(%rdi), %r8
    mov 72(%rdi), %r9
    mov 80(%rdi), %r10
    mov 88(%rdi), %r11
    mov 96(%rdi), %r12
    mov 104(%rdi), %r13
    mov 112(%rdi), %r14
    mov 120(%rdi), %r15
    mov 56(%rdi), %rdi
    jne 1f
    vmlaunch
    jmp 2f
1:  vmresume
2:  /* the entry failed: no guest ran; host registers hold guest values */
    pop %rdi
    mov $1, %eax
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret
mc2_vmx_exit:
    push %rdi
    mov 8(%rsp), %rdi
    mov %rax, 0(%rdi)
    mov %rcx, 8(%rdi)
    mov %rdx, 16(%rdi)
    mov %rbx, 24(%rdi)
    mov %rbp, 40(%rdi)
    mov %rsi, 48(%rdi)
    mov %r8, 64(%rdi)
    mov %r9, 72(%rdi)
    mov %r10, 80(%rdi)
    mov %r11, 88(%rdi)
    mov %r12, 96(%rdi)
    mov %r13, 104(%rdi)
    mov %r14, 112(%rdi)
    mov %r15, 120(%rdi)
    pop %rax
    mov %rax, 56(%rdi)
    pop %rdi
    xor %eax, %eax
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret
"#,
    options(att_syntax)
);
