//! AMD SVM (AMD64 APM Vol. 2, ch. 15): the VMCB, nested paging, #VMEXIT
//! decoding.
//!
//! Enabling (§15.4): EFER.SVME, and VM_HSAVE_PA pointing at a per-CPU host
//! save area. Each VM has a VMCB (control area + guest state save area);
//! I/O and MSR accesses are all intercepted through per-CPU permission maps
//! of ones (§15.10, §15.11). Guest physical memory is translated by nested
//! page tables (§15.25), which are ordinary long-mode page tables with the
//! U bit set: `mm::AddressSpace` builds them.
//!
//! A run (`mc2_svm_run`): CLGI; VMSAVE the host's hidden state (FS/GS/TR/
//! LDTR bases, KernelGsBase, STAR/LSTAR/CSTAR/SFMASK, SYSENTER); VMLOAD the
//! guest's; load guest GPRs; VMRUN; CLI; save guest GPRs; VMSAVE the
//! guest's; VMLOAD the host's; STGI; with an STI right after the CLGI.
//! Global interrupts stay off in between, so nothing ever runs with the
//! guest's GS base. The STI matters: with
//! V_INTR_MASKING the host's RFLAGS.IF at VMRUN decides whether physical
//! interrupts reach the host (APM Vol. 2 §15.21.1); with IF clear (the
//! kernel runs masked) the host's timer never ended a guest that makes no
//! exits of its own, and a deadline passed unnoticed. GIF = 0 keeps the
//! interrupt pending until the kernel takes it after the exit. The STI is
//! not the instruction before VMRUN: QEMU carries its one-instruction
//! interrupt shadow into the guest, which then looked uninterruptible.

use crate::{Event, ExitInfo, GuestGprs};
use abi::vm::{ExitKind, Regs, Segment};
use mm::Frame;

/// MSRs (AMD APM Vol. 2 §15.30).
const MSR_VM_CR: u32 = 0xc001_0114;
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
const VM_CR_SVMDIS: u64 = 1 << 4;
const EFER_SVME: u64 = 1 << 12;

// VMCB control area offsets (APM Vol. 2 Appendix B, Table B-1).
const CTRL_INTERCEPT_CR: usize = 0x000;
const CTRL_INTERCEPT_EXC: usize = 0x008;
const CTRL_INTERCEPT_MISC1: usize = 0x00c;
const CTRL_INTERCEPT_MISC2: usize = 0x010;
const CTRL_IOPM_BASE: usize = 0x040;
const CTRL_MSRPM_BASE: usize = 0x048;
const CTRL_ASID: usize = 0x058;
const CTRL_TLB_CONTROL: usize = 0x05c;
const CTRL_VINTR: usize = 0x060;
/// Fields of the VINTR word (APM Vol. 2 Appendix B, offset 060h): V_IRQ,
/// V_IGN_TPR, and V_IRQ with V_INTR_PRIO, V_IGN_TPR and V_INTR_VECTOR.
const V_IRQ: u64 = 1 << 8;
const V_IGN_TPR: u64 = 1 << 20;
const V_IRQ_FIELDS: u64 = V_IRQ | 0xf << 16 | V_IGN_TPR | 0xff << 32;
const CTRL_INT_SHADOW: usize = 0x068;
const CTRL_EXITCODE: usize = 0x070;
const CTRL_EXITINFO1: usize = 0x078;
const CTRL_EXITINFO2: usize = 0x080;
const CTRL_EXITINTINFO: usize = 0x088;
const CTRL_NP_ENABLE: usize = 0x090;
const CTRL_EVENTINJ: usize = 0x0a8;
const CTRL_NCR3: usize = 0x0b0;
const CTRL_CLEAN: usize = 0x0c0;
const CTRL_NRIP: usize = 0x0c8;

// State save area (Table B-2).
const SAVE_ES: usize = 0x400;
const SAVE_GDTR: usize = 0x460;
const SAVE_LDTR: usize = 0x470;
const SAVE_IDTR: usize = 0x480;
const SAVE_TR: usize = 0x490;
const SAVE_CPL: usize = 0x4cb;
const SAVE_EFER: usize = 0x4d0;
const SAVE_CR4: usize = 0x548;
const SAVE_CR3: usize = 0x550;
const SAVE_CR0: usize = 0x558;
const SAVE_DR7: usize = 0x560;
const SAVE_DR6: usize = 0x568;
const SAVE_RFLAGS: usize = 0x570;
const SAVE_RIP: usize = 0x578;
const SAVE_RSP: usize = 0x5d8;
const SAVE_RAX: usize = 0x5f8;
const SAVE_CR2: usize = 0x640;
const SAVE_G_PAT: usize = 0x668;

// Intercept bits (Table B-1, offsets 0x0c and 0x10).
const I_INTR: u32 = 1 << 0;
const I_NMI: u32 = 1 << 1;
const I_VINTR: u32 = 1 << 4;
const I_CPUID: u32 = 1 << 18;
const I_IRET: u32 = 1 << 20;
const I_INVD: u32 = 1 << 22;
const I_HLT: u32 = 1 << 24;
const I_IOIO: u32 = 1 << 27;
const I_MSR: u32 = 1 << 28;
const I_SHUTDOWN: u32 = 1 << 31;
const I2_VMRUN: u32 = 1 << 0;
const I2_VMMCALL: u32 = 1 << 1;
const I2_VMLOAD: u32 = 1 << 2;
const I2_VMSAVE: u32 = 1 << 3;
const I2_STGI: u32 = 1 << 4;
const I2_CLGI: u32 = 1 << 5;
const I2_SKINIT: u32 = 1 << 6;
const I2_MONITOR: u32 = 1 << 10;
const I2_MWAIT: u32 = 1 << 11;
const I2_MWAIT_ARMED: u32 = 1 << 12;
const I2_XSETBV: u32 = 1 << 13;

// Exit codes (Appendix C).
const EXIT_EXCP_BASE: u64 = 0x40;
const EXIT_INTR: u64 = 0x60;
const EXIT_NMI: u64 = 0x61;
const EXIT_VINTR: u64 = 0x64;
const EXIT_CPUID: u64 = 0x72;
const EXIT_IRET: u64 = 0x74;
const EXIT_HLT: u64 = 0x78;
const EXIT_IOIO: u64 = 0x7b;
const EXIT_MSR: u64 = 0x7c;
const EXIT_SHUTDOWN: u64 = 0x7f;
const EXIT_VMMCALL: u64 = 0x81;
const EXIT_NPF: u64 = 0x400;
pub const EXIT_INVALID: u64 = u64::MAX;

/// Does this CPU have SVM with nested paging, usable (not disabled by firmware)?
pub fn supported() -> bool {
    let ext = machine::x86::cpuid(0x8000_0001, 0);
    if ext.ecx & (1 << 2) == 0 || machine::x86::cpuid(0x8000_0000, 0).eax < 0x8000_000a {
        return false;
    }
    let features = machine::x86::cpuid(0x8000_000a, 0);
    if features.edx & 1 == 0 {
        return false; // no nested paging
    }
    #[cfg(mc2_bare)]
    {
        // SAFETY: VM_CR exists on every CPU with SVM (APM Vol. 2 §15.30.1).
        (unsafe { machine::x86::rdmsr(MSR_VM_CR) }) & VM_CR_SVMDIS == 0
    }
    #[cfg(not(mc2_bare))]
    {
        let _ = (MSR_VM_CR, VM_CR_SVMDIS);
        false
    }
}

/// Next-RIP saving (the hardware reports where the exiting instruction ends).
pub fn has_nrips() -> bool {
    machine::x86::cpuid(0x8000_000a, 0).edx & (1 << 3) != 0
}

/// Turn SVM on on this CPU with `host_save` as its host save area.
///
/// # Safety
/// Ring 0, on the CPU concerned; `host_save` is a 4 KiB frame the kernel
/// owns for this purpose for as long as SVM is on.
#[cfg(mc2_bare)]
pub unsafe fn enable(host_save: Frame) {
    use machine::x86::{msr, rdmsr, wrmsr};
    // SAFETY: per the contract; EFER.SVME only enables the SVM instructions.
    unsafe {
        wrmsr(msr::IA32_EFER, rdmsr(msr::IA32_EFER) | EFER_SVME);
        wrmsr(MSR_VM_HSAVE_PA, host_save.addr());
    }
}

/// Per-CPU SVM resources: I/O and MSR permission maps (all ones: every port
/// and MSR access exits), and the area VMSAVE keeps the host's hidden state in.
pub struct CpuSvm {
    pub iopm: Frame,
    pub msrpm: Frame,
    pub host_vmsave: Frame,
}

/// A VMCB, reached through the direct map.
pub struct Vmcb {
    pub frame: Frame,
}

impl Vmcb {
    fn ptr(&self, off: usize) -> *mut u8 {
        (machine::layout::phys_to_virt(self.frame.addr()) as usize + off) as *mut u8
    }
    pub fn r64(&self, off: usize) -> u64 {
        // SAFETY: the VMCB frame is this VM's (allocated by `Vm::new`), in
        // RAM, and `off` < 4096 is an 8-byte aligned field offset.
        unsafe { core::ptr::read_volatile(self.ptr(off) as *const u64) }
    }
    pub fn w64(&self, off: usize, v: u64) {
        // SAFETY: as in r64.
        unsafe { core::ptr::write_volatile(self.ptr(off) as *mut u64, v) }
    }
    fn r32(&self, off: usize) -> u32 {
        // SAFETY: as in r64, 4-byte aligned.
        unsafe { core::ptr::read_volatile(self.ptr(off) as *const u32) }
    }
    fn w32(&self, off: usize, v: u32) {
        // SAFETY: as in r64, 4-byte aligned.
        unsafe { core::ptr::write_volatile(self.ptr(off) as *mut u32, v) }
    }
    fn w16(&self, off: usize, v: u16) {
        // SAFETY: as in r64, 2-byte aligned.
        unsafe { core::ptr::write_volatile(self.ptr(off) as *mut u16, v) }
    }
    fn r16(&self, off: usize) -> u16 {
        // SAFETY: as in r64, 2-byte aligned.
        unsafe { core::ptr::read_volatile(self.ptr(off) as *const u16) }
    }
    fn w8(&self, off: usize, v: u8) {
        // SAFETY: as in r64.
        unsafe { core::ptr::write_volatile(self.ptr(off), v) }
    }

    fn seg(&self, off: usize) -> Segment {
        Segment { selector: self.r16(off), attrib: self.r16(off + 2), limit: self.r32(off + 4), base: self.r64(off + 8) }
    }
    fn set_seg(&self, off: usize, s: &Segment) {
        self.w16(off, s.selector);
        self.w16(off + 2, s.attrib);
        self.w32(off + 4, s.limit);
        self.w64(off + 8, s.base);
    }

    /// Fill a fresh (zeroed) VMCB: intercepts, permission maps, ASID, nested
    /// paging with root `ncr3`, and a guest at the x86 reset state.
    pub fn init(&self, cpu: &CpuSvm, asid: u32, ncr3: u64) {
        self.w32(CTRL_INTERCEPT_CR, 0);
        // #MC goes to the host (a machine check is never the guest's business).
        self.w32(CTRL_INTERCEPT_EXC, 1 << 18);
        // INVD would throw away the host's dirty cache lines; XSETBV would
        // change the host's XCR0; MONITOR/MWAIT could park the CPU: all exit.
        self.w32(CTRL_INTERCEPT_MISC1, I_INTR | I_NMI | I_CPUID | I_INVD | I_HLT | I_IOIO | I_MSR | I_SHUTDOWN);
        self.w32(
            CTRL_INTERCEPT_MISC2,
            I2_VMRUN | I2_VMMCALL | I2_VMLOAD | I2_VMSAVE | I2_STGI | I2_CLGI | I2_SKINIT | I2_MONITOR | I2_MWAIT | I2_MWAIT_ARMED | I2_XSETBV,
        );
        self.w64(CTRL_IOPM_BASE, cpu.iopm.addr());
        self.w64(CTRL_MSRPM_BASE, cpu.msrpm.addr());
        self.w32(CTRL_ASID, asid);
        // The ASID is the slot's: an earlier VM in this slot may have left
        // translations tagged with it. Flush them at the first VMRUN
        // (TLB_CONTROL 3: this guest's ASID, APM Vol. 2 §15.16.1).
        self.w32(CTRL_TLB_CONTROL, 3);
        // V_INTR_MASKING: the guest's RFLAGS.IF masks only virtual interrupts;
        // physical ones always exit to the host.
        self.w64(CTRL_VINTR, 1 << 24);
        self.w64(CTRL_NP_ENABLE, 1);
        self.w64(CTRL_NCR3, ncr3);
        self.w64(SAVE_G_PAT, 0x0007_0406_0007_0406);
        self.w64(SAVE_DR7, 0x400);
        self.w64(SAVE_DR6, 0xffff_0ff0);
        self.set_regs(&crate::reset_state());
    }

    pub fn regs(&self, gprs: &GuestGprs) -> Regs {
        let mut r = Regs { gpr: gprs.0, ..Regs::default() };
        r.gpr[abi::vm::RAX] = self.r64(SAVE_RAX);
        r.gpr[abi::vm::RSP] = self.r64(SAVE_RSP);
        r.rip = self.r64(SAVE_RIP);
        r.rflags = self.r64(SAVE_RFLAGS);
        r.cr0 = self.r64(SAVE_CR0);
        r.cr2 = self.r64(SAVE_CR2);
        r.cr3 = self.r64(SAVE_CR3);
        r.cr4 = self.r64(SAVE_CR4);
        r.efer = self.r64(SAVE_EFER) & !EFER_SVME;
        for (i, s) in r.seg.iter_mut().enumerate().take(6) {
            *s = self.seg(SAVE_ES + 16 * i);
        }
        r.seg[abi::vm::LDTR] = self.seg(SAVE_LDTR);
        r.seg[abi::vm::TR] = self.seg(SAVE_TR);
        let (g, i) = (self.seg(SAVE_GDTR), self.seg(SAVE_IDTR));
        r.gdt_base = g.base;
        r.gdt_limit = g.limit;
        r.idt_base = i.base;
        r.idt_limit = i.limit;
        r
    }

    /// Load guest state (general registers other than RAX/RSP go to `gprs`).
    pub fn set_regs(&self, r: &Regs) {
        self.w64(SAVE_RAX, r.gpr[abi::vm::RAX]);
        self.w64(SAVE_RSP, r.gpr[abi::vm::RSP]);
        self.w64(SAVE_RIP, r.rip);
        self.w64(SAVE_RFLAGS, r.rflags | 2);
        self.w64(SAVE_CR0, r.cr0);
        self.w64(SAVE_CR2, r.cr2);
        self.w64(SAVE_CR3, r.cr3);
        self.w64(SAVE_CR4, r.cr4);
        // SVME must stay set in the guest's EFER (APM Vol. 2 §15.5.1);
        // the guest never sees it (EFER accesses are intercepted).
        self.w64(SAVE_EFER, r.efer | EFER_SVME);
        for i in 0..6 {
            self.set_seg(SAVE_ES + 16 * i, &r.seg[i]);
        }
        self.set_seg(SAVE_LDTR, &r.seg[abi::vm::LDTR]);
        self.set_seg(SAVE_TR, &r.seg[abi::vm::TR]);
        self.set_seg(SAVE_GDTR, &Segment { base: r.gdt_base, limit: r.gdt_limit, ..Segment::default() });
        self.set_seg(SAVE_IDTR, &Segment { base: r.idt_base, limit: r.idt_limit, ..Segment::default() });
        // CPL follows SS.DPL (real mode: 0).
        let cpl = if r.cr0 & 1 == 0 { 0 } else { ((r.seg[abi::vm::SS].attrib >> 5) & 3) as u8 };
        self.w8(SAVE_CPL, cpl);
        self.w64(CTRL_CLEAN, 0);
    }

    pub fn rip(&self) -> u64 {
        self.r64(SAVE_RIP)
    }
    pub fn set_rip(&self, v: u64) {
        self.w64(SAVE_RIP, v);
    }
    pub fn rax(&self) -> u64 {
        self.r64(SAVE_RAX)
    }
    pub fn set_rax(&self, v: u64) {
        self.w64(SAVE_RAX, v);
    }
    pub fn rflags(&self) -> u64 {
        self.r64(SAVE_RFLAGS)
    }
    pub fn efer(&self) -> u64 {
        self.r64(SAVE_EFER) & !EFER_SVME
    }
    pub fn set_efer(&self, v: u64) {
        self.w64(SAVE_EFER, v | EFER_SVME);
    }
    pub fn interrupt_shadow(&self) -> bool {
        self.r64(CTRL_INT_SHADOW) & 1 != 0
    }

    /// Queue `e` for the next VMRUN (EVENTINJ, APM Vol. 2 §15.20).
    pub fn inject(&self, e: &Event) {
        let mut v = e.vector as u64 | (e.kind as u64 & 7) << 8 | 1 << 31;
        if let Some(code) = e.error_code {
            v |= 1 << 11 | (code as u64) << 32;
        }
        self.w64(CTRL_EVENTINJ, v);
    }

    /// An event is already set to be delivered at the next VMRUN (a
    /// re-delivery after EXITINTINFO, or a fault the kernel raised).
    pub fn event_pending(&self) -> bool {
        self.r64(CTRL_EVENTINJ) & (1 << 31) != 0
    }

    /// Does the saved guest state pass the VMRUN consistency checks that a
    /// guest's own instructions can break (APM Vol. 2 §15.5.1: CR0 high half
    /// and NW without CD, CR3 bits above 51, CR4 reserved bits, EFER.SVME,
    /// long mode with paging but without PAE or PE)? Used to tell QEMU's
    /// VMEXIT_INVALID for a guest MOV to CR4 (see `run_guest`) from a state
    /// that really cannot run.
    pub fn state_consistent(&self) -> bool {
        let (cr0, cr3, cr4, efer) = (self.r64(SAVE_CR0), self.r64(SAVE_CR3), self.r64(SAVE_CR4), self.r64(SAVE_EFER));
        efer & EFER_SVME != 0
            && !crate::cr0_write_faults(cr0, cr4, efer)
            && cr3 >> 52 == 0
            && cr4 & !crate::GUEST_CR4_BITS == 0
    }

    /// Ask for an exit as soon as the guest can take an interrupt (a virtual
    /// interrupt that is never delivered: V_IRQ with the VINTR intercept).
    pub fn request_window(&self, on: bool) {
        let misc = self.r32(CTRL_INTERCEPT_MISC1);
        self.w32(CTRL_INTERCEPT_MISC1, if on { misc | I_VINTR } else { misc & !I_VINTR });
        self.set_virtual_interrupt(on.then_some(0));
    }

    /// Exit before the guest's next IRET (the end of an NMI handler: SVM
    /// keeps no NMI blocking the kernel could read, APM Vol. 2 §15.20).
    pub fn intercept_iret(&self, on: bool) {
        let misc = self.r32(CTRL_INTERCEPT_MISC1);
        self.w32(CTRL_INTERCEPT_MISC1, if on { misc | I_IRET } else { misc & !I_IRET });
    }

    /// Is an interrupt-window exit asked for (the VINTR intercept on)?
    pub fn window_requested(&self) -> bool {
        self.r32(CTRL_INTERCEPT_MISC1) & I_VINTR != 0
    }

    /// Offer `vector` as a virtual interrupt (V_IRQ, APM Vol. 2 §15.21.4):
    /// the guest takes it through its IDT as soon as its RFLAGS.IF allows,
    /// without an exit. V_IGN_TPR: the kernel's local APIC has already
    /// weighed its priority. Not while a window is asked for (that uses
    /// the same fields).
    pub fn offer_interrupt(&self, vector: u8) {
        self.set_virtual_interrupt(Some(vector));
    }

    /// Is the offered virtual interrupt still waiting (the CPU clears
    /// V_IRQ when it takes it)?
    pub fn offer_waiting(&self) -> bool {
        self.r64(CTRL_VINTR) & V_IRQ != 0
    }

    /// Take back an offered virtual interrupt the guest has not taken.
    pub fn withdraw_offer(&self) {
        self.set_virtual_interrupt(None);
    }

    /// V_IRQ with `vector`, top priority and V_IGN_TPR (the window's and
    /// the offer's), or none; V_TPR and V_INTR_MASKING stay.
    fn set_virtual_interrupt(&self, vector: Option<u8>) {
        let vintr = self.r64(CTRL_VINTR) & !V_IRQ_FIELDS;
        let irq = vector.map_or(0, |v| V_IRQ | 0xf << 16 | V_IGN_TPR | u64::from(v) << 32);
        self.w64(CTRL_VINTR, vintr | irq);
    }

    /// The guest's current privilege level.
    pub fn cpl(&self) -> u8 {
        // SAFETY: as in r64 (a byte field).
        unsafe { core::ptr::read_volatile(self.ptr(SAVE_CPL)) }
    }

    /// Stop intercepting CPUID: the guest reads the processor's own leaves
    /// (`abi::vm::RUN_USER_CPUID`).
    pub fn let_cpuid_through(&self) {
        let misc = self.r32(CTRL_INTERCEPT_MISC1);
        self.w32(CTRL_INTERCEPT_MISC1, misc & !I_CPUID);
    }

    /// Flush this guest's TLB entries at the next VMRUN (after unmapping).
    pub fn flush_tlb(&self) {
        self.w32(CTRL_TLB_CONTROL, 3);
    }

    /// After a run: decode the #VMEXIT. `nrips`: the hardware filled next-RIP.
    pub fn decode_exit(&self, nrips: bool) -> ExitInfo {
        // VMEXIT_INVALID is -1; QEMU TCG stores it as a 32-bit -1.
        let code = match self.r64(CTRL_EXITCODE) {
            c if c as u32 == u32::MAX => EXIT_INVALID,
            c => c,
        };
        let info1 = self.r64(CTRL_EXITINFO1);
        let info2 = self.r64(CTRL_EXITINFO2);
        self.w32(CTRL_TLB_CONTROL, 0);
        // A re-injected event the exit interrupted (EXITINTINFO, §15.7.2):
        // deliver it again at the next entry.
        let intinfo = self.r64(CTRL_EXITINTINFO);
        if intinfo & (1 << 31) != 0 {
            self.w64(CTRL_EVENTINJ, intinfo);
        }
        let rip = self.rip();
        let next = |len: u64| if nrips { self.r64(CTRL_NRIP) } else { rip + len };
        let mut e = ExitInfo { raw: code, rip, ..ExitInfo::default() };
        match code {
            EXIT_INTR | EXIT_NMI => e.kind = crate::Kind::HostInterrupt,
            EXIT_IRET => e.kind = crate::Kind::Iret,
            EXIT_CPUID => {
                e.kind = crate::Kind::Cpuid;
                e.next_rip = next(2);
            }
            EXIT_HLT => {
                e.kind = crate::Kind::Exit(ExitKind::Hlt);
                e.next_rip = next(1);
            }
            EXIT_VINTR => {
                e.kind = crate::Kind::Exit(ExitKind::InterruptWindow);
                self.request_window(false);
            }
            EXIT_IOIO => {
                // EXITINFO1 (§15.10.2): bit 0 IN, 2 string, 3 rep, 4-6 size, 16-31 port; EXITINFO2: next RIP.
                e.kind = crate::Kind::Exit(ExitKind::Io);
                e.port = (info1 >> 16) as u32;
                e.size = if info1 & (1 << 4) != 0 { 1 } else if info1 & (1 << 5) != 0 { 2 } else { 4 };
                e.flags = ((info1 & 1) as u32 * abi::vm::IN) | (((info1 >> 2) & 1) as u32 * abi::vm::STRING) | (((info1 >> 3) & 1) as u32 * abi::vm::REP);
                e.value = self.rax() & crate::size_mask(e.size);
                e.next_rip = info2;
            }
            EXIT_MSR => {
                e.kind = crate::Kind::Msr { write: info1 & 1 != 0 };
                e.next_rip = next(2);
            }
            EXIT_NPF => {
                // EXITINFO1: page-fault error code (bit 1 write, bit 4 fetch); EXITINFO2: the GPA.
                e.kind = crate::Kind::Exit(ExitKind::MemFault);
                e.value = info2;
                e.flags = if info1 & 2 != 0 { abi::vm::WRITE } else { 0 } | if info1 & 0x10 != 0 { abi::vm::EXEC } else { 0 };
            }
            EXIT_SHUTDOWN => e.kind = crate::Kind::Exit(ExitKind::Shutdown),
            EXIT_VMMCALL => {
                e.kind = crate::Kind::Exit(ExitKind::Hypercall);
                e.value = self.rax();
                e.next_rip = next(3);
            }
            // (Normalised above from QEMU's 32-bit -1.)
            EXIT_INVALID => {
                e.kind = crate::Kind::Exit(ExitKind::Error);
                e.value = code;
            }
            c if (EXIT_EXCP_BASE..EXIT_EXCP_BASE + 32).contains(&c) => {
                e.kind = crate::Kind::Exit(ExitKind::Exception);
                e.extra = c - EXIT_EXCP_BASE;
            }
            _ => {
                e.kind = crate::Kind::Exit(ExitKind::Other);
                e.value = code;
            }
        }
        e
    }
}

/// One guest run. Interrupts must be masked (RFLAGS.IF = 0); this also masks
/// global interrupts around the world switch.
///
/// # Safety
/// `vmcb` is a valid VMCB for this CPU's SVM (see [`Vmcb::init`]); SVM is
/// enabled on this CPU; `host_vmsave` is this CPU's VMSAVE area; `gprs`
/// points at the guest's general registers.
#[cfg(mc2_bare)]
pub unsafe fn run(vmcb: &Vmcb, gprs: &mut GuestGprs, host_vmsave: Frame) {
    extern "C" {
        fn mc2_svm_run(vmcb_pa: u64, gprs: *mut u64, host_vmsave_pa: u64);
    }
    // SAFETY: per the contract.
    unsafe { mc2_svm_run(vmcb.frame.addr(), gprs.0.as_mut_ptr(), host_vmsave.addr()) }
}

#[cfg(mc2_bare)]
core::arch::global_asm!(
    r#"
.text
.global mc2_svm_run
mc2_svm_run:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    push %rsi
    push %rdi
    push %rdx
    clgi
    sti
    mov %rdx, %rax
    vmsave
    mov 8(%rsp), %rax
    vmload
    mov 16(%rsp), %rsi
    mov 8(%rsi), %rcx
    mov 16(%rsi), %rdx
    mov 24(%rsi), %rbx
    mov 40(%rsi), %rbp
    mov 56(%rsi), %rdi
    mov 64(%rsi), %r8
    mov 72(%rsi), %r9
    mov 80(%rsi), %r10
    mov 88(%rsi), %r11
    mov 96(%rsi), %r12
    mov 104(%rsi), %r13
    mov 112(%rsi), %r14
    mov 120(%rsi), %r15
    mov 48(%rsi), %rsi
    vmrun
    cli
    push %rsi
    mov 24(%rsp), %rsi
    mov %rcx, 8(%rsi)
    mov %rdx, 16(%rsi)
    mov %rbx, 24(%rsi)
    mov %rbp, 40(%rsi)
    mov %rdi, 56(%rsi)
    mov %r8, 64(%rsi)
    mov %r9, 72(%rsi)
    mov %r10, 80(%rsi)
    mov %r11, 88(%rsi)
    mov %r12, 96(%rsi)
    mov %r13, 104(%rsi)
    mov %r14, 112(%rsi)
    mov %r15, 120(%rsi)
    pop %rax
    mov %rax, 48(%rsi)
    mov 8(%rsp), %rax
    vmsave
    mov (%rsp), %rax
    vmload
    stgi
    add $24, %rsp
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
