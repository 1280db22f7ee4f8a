//! The guest's local APIC, in x2APIC mode, kept by the kernel.
//!
//! A Linux guest with only the VMM's 8259s and 8254 makes, per timer tick,
//! an exit to the VMM for the PIT's deadline and four 8259 accesses (mask,
//! EOI, unmask, a mask read): five world switches, one through the VMM.
//! With a local APIC whose registers are MSRs (x2APIC, SDM Vol. 3A §11.12)
//! and a TSC-deadline timer (§11.5.4.1), a tick is the timer's interrupt,
//! one WRMSR to EOI and one to set the next deadline: three world
//! switches, all answered here, none through the VMM (two with the
//! paravirtual EOI the run loop adds, `PvEoi` in the crate root, for which
//! [`Lapic::lazy_eoi_ok`] and [`Lapic::eoi`] are here).
//!
//! What is modelled: the APIC base MSR (enabled, x2APIC, BSP; disabling it
//! is allowed, returning to xAPIC mode is not: there is no MMIO page), ID
//! 0 and its logical ID, version, TPR/PPR, EOI, SVR (software enable),
//! ISR/TMR/IRR, ESR, ICR and SELF IPI (to this vCPU: fixed and NMI
//! deliveries; INIT/SIPI/SMI and other destinations are dropped, there is no
//! other vCPU), the six LVT entries, and the timer in one-shot, periodic and
//! TSC-deadline mode. The timer's count runs at the TSC rate over the
//! divide configuration (a guest calibrates it, or uses the deadline mode).
//! Interrupts are edge-triggered; LINT0/LINT1 inputs are not wired: the
//! VMM's 8259 output reaches the vCPU as in virtual-wire mode, as firmware
//! sets it up, and its vectors never enter the IRR/ISR.
//!
//! Every access is checked as the CPU checks it: a read of a write-only or
//! unknown register, a write of a read-only one, reserved bits set, a
//! non-zero EOI or ESR write, are each a #GP(0) for the guest ([`Fault`]).
//! Pure: the run loop gives it the TSC and injects what it says.

/// IA32_APIC_BASE (SDM Vol. 3A §11.4.4).
pub const MSR_APIC_BASE: u32 = 0x1b;
/// IA32_TSC_DEADLINE (SDM Vol. 3A §11.5.4.1).
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// The x2APIC register MSRs (SDM Vol. 3A §11.12.1.2, Table 11-6).
pub const X2APIC_MSRS: core::ops::RangeInclusive<u32> = 0x800..=0x8ff;

const BASE_BSP: u64 = 1 << 8;
const BASE_EXTD: u64 = 1 << 10;
const BASE_EN: u64 = 1 << 11;
/// The architectural default base address (§11.4.4).
const BASE_ADDR: u64 = 0xfee0_0000;
/// Version 0x14 (an integrated APIC), highest LVT entry 5 (§11.4.8).
const VERSION: u64 = 0x0005_0014;

// x2APIC register MSRs.
const ID: u32 = 0x802;
const VER: u32 = 0x803;
const TPR: u32 = 0x808;
const PPR: u32 = 0x80a;
const EOI: u32 = 0x80b;
const LDR: u32 = 0x80d;
const SVR: u32 = 0x80f;
const ISR0: u32 = 0x810;
const TMR0: u32 = 0x818;
const IRR0: u32 = 0x820;
const ESR: u32 = 0x828;
const ICR: u32 = 0x830;
const LVT_TIMER: u32 = 0x832;
const LVT_ERROR: u32 = 0x837;
const TMICT: u32 = 0x838;
const TMCCT: u32 = 0x839;
const TDCR: u32 = 0x83e;
const SELF_IPI: u32 = 0x83f;

/// SVR bit 8: APIC software enable; bit 9: focus checking (kept, unused).
const SVR_ENABLE: u32 = 1 << 8;
const SVR_BITS: u32 = 0xff | SVR_ENABLE | 1 << 9;
const LVT_MASKED: u32 = 1 << 16;
/// Writable LVT bits (§11.5.1, Figure 11-8): timer: vector, mask, mode;
/// the others: vector, delivery mode, polarity, trigger, mask.
const LVT_TIMER_BITS: u32 = 0xff | LVT_MASKED | 3 << 17;
const LVT_OTHER_BITS: u32 = 0xff | 7 << 8 | 1 << 13 | 1 << 15 | LVT_MASKED;
const TIMER_ONE_SHOT: u32 = 0;
const TIMER_PERIODIC: u32 = 1;
const TIMER_DEADLINE: u32 = 2;
/// ESR bits (§11.5.3): an illegal vector sent (5) or received (6).
const ESR_SEND_ILLEGAL: u32 = 1 << 5;
const ESR_RECV_ILLEGAL: u32 = 1 << 6;

/// The guest's access faults: deliver #GP(0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault;

#[derive(Clone, Debug)]
pub struct Lapic {
    base: u64,
    tpr: u32,
    svr: u32,
    /// ESR as read, and the errors logged since its last write.
    esr: u32,
    errors: u32,
    icr: u64,
    /// Timer, thermal, performance counter, LINT0, LINT1, error.
    lvt: [u32; 6],
    irr: [u64; 4],
    isr: [u64; 4],
    tdcr: u32,
    tmict: u32,
    /// TSC when the count was loaded (one-shot, periodic).
    started: u64,
    /// IA32_TSC_DEADLINE as written (deadline mode; 0: disarmed).
    tsc_deadline: u64,
    /// When the timer fires next (TSC), if armed.
    due: Option<u64>,
    /// An NMI sent to itself, not yet delivered.
    nmi: bool,
}

impl Default for Lapic {
    fn default() -> Self {
        Self::new()
    }
}

impl Lapic {
    /// The state firmware hands over: enabled, in x2APIC mode (so Linux
    /// keeps it there and never needs the MMIO page), the bootstrap
    /// processor's; otherwise as after reset (§11.4.7.1: software
    /// disabled, SVR vector 0xff, every LVT masked).
    pub fn new() -> Lapic {
        Lapic {
            base: BASE_ADDR | BASE_EN | BASE_EXTD | BASE_BSP,
            tpr: 0,
            svr: 0xff,
            esr: 0,
            errors: 0,
            icr: 0,
            lvt: [LVT_MASKED; 6],
            irr: [0; 4],
            isr: [0; 4],
            tdcr: 0,
            tmict: 0,
            started: 0,
            tsc_deadline: 0,
            due: None,
            nmi: false,
        }
    }

    /// Globally enabled (IA32_APIC_BASE.EN): CPUID.01H:EDX.APIC follows it.
    pub fn enabled(&self) -> bool {
        self.base & BASE_EN != 0
    }

    fn software_enabled(&self) -> bool {
        self.enabled() && self.svr & SVR_ENABLE != 0
    }

    /// The MSRs this model answers (when the VM has a local APIC).
    pub fn owns(msr: u32) -> bool {
        msr == MSR_APIC_BASE || msr == MSR_TSC_DEADLINE || X2APIC_MSRS.contains(&msr)
    }

    fn timer_mode(&self) -> u32 {
        (self.lvt[0] >> 17) & 3
    }

    /// TSC ticks per timer count (the divide configuration, §11.5.4).
    fn divisor(&self) -> u64 {
        let v = (self.tdcr & 3) | ((self.tdcr & 8) >> 1);
        if v == 7 {
            1
        } else {
            2 << v
        }
    }

    fn ppr(&self) -> u32 {
        let isrv = highest(&self.isr).unwrap_or(0) as u32;
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr & 0xff
        } else {
            isrv & 0xf0
        }
    }

    pub fn rdmsr(&self, msr: u32, now: u64) -> Result<u64, Fault> {
        if msr == MSR_APIC_BASE {
            return Ok(self.base);
        }
        if !self.x2apic() {
            return Err(Fault);
        }
        Ok(match msr {
            MSR_TSC_DEADLINE => {
                if self.timer_mode() == TIMER_DEADLINE {
                    self.tsc_deadline
                } else {
                    0
                }
            }
            ID => 0,
            VER => VERSION,
            TPR => self.tpr as u64,
            PPR => self.ppr() as u64,
            // Cluster 0, bit 0 (§11.12.10.2: derived from the ID).
            LDR => 1,
            SVR => self.svr as u64,
            ISR0..=0x817 => word(&self.isr, msr - ISR0),
            TMR0..=0x81f => 0,
            IRR0..=0x827 => word(&self.irr, msr - IRR0),
            ESR => self.esr as u64,
            ICR => self.icr,
            LVT_TIMER..=LVT_ERROR => self.lvt[(msr - LVT_TIMER) as usize] as u64,
            TMICT => self.tmict as u64,
            TMCCT => self.current_count(now) as u64,
            TDCR => self.tdcr as u64,
            _ => return Err(Fault),
        })
    }

    fn x2apic(&self) -> bool {
        self.base & (BASE_EN | BASE_EXTD) == BASE_EN | BASE_EXTD
    }

    fn current_count(&self, now: u64) -> u32 {
        match (self.timer_mode(), self.due) {
            (TIMER_ONE_SHOT | TIMER_PERIODIC, Some(due)) if due > now => (due - now).div_ceil(self.divisor()).min(self.tmict as u64) as u32,
            _ => 0,
        }
    }

    pub fn wrmsr(&mut self, msr: u32, v: u64, now: u64) -> Result<(), Fault> {
        if msr == MSR_APIC_BASE {
            return self.write_base(v);
        }
        if !self.x2apic() {
            return Err(Fault);
        }
        if msr == MSR_TSC_DEADLINE {
            // Ignored outside deadline mode (§11.5.4.1).
            if self.timer_mode() == TIMER_DEADLINE {
                self.tsc_deadline = v;
                self.due = (v != 0).then_some(v);
            }
            return Ok(());
        }
        // Every register but the ICR is 32 bits wide here.
        if msr != ICR && v >> 32 != 0 {
            return Err(Fault);
        }
        let w = v as u32;
        match msr {
            TPR if w & !0xff == 0 => self.tpr = w,
            EOI if w == 0 => self.eoi(),
            SVR if w & !SVR_BITS == 0 => {
                self.svr = w;
                if w & SVR_ENABLE == 0 {
                    // §11.4.7.2: software disabling masks every LVT entry.
                    for l in &mut self.lvt {
                        *l |= LVT_MASKED;
                    }
                }
            }
            ESR if w == 0 => {
                self.esr = self.errors;
                self.errors = 0;
            }
            ICR if v & ICR_RESERVED == 0 => {
                self.icr = v;
                self.send(v);
            }
            LVT_TIMER => {
                if w & !LVT_TIMER_BITS != 0 || (w >> 17) & 3 == 3 {
                    return Err(Fault);
                }
                let w = if self.software_enabled() { w } else { w | LVT_MASKED };
                let was_deadline = self.timer_mode() == TIMER_DEADLINE;
                self.lvt[0] = w;
                if (self.timer_mode() == TIMER_DEADLINE) != was_deadline {
                    // Into or out of TSC-deadline mode the timer disarms
                    // (§11.5.4.1); between one-shot and periodic the count
                    // runs on, the new mode deciding what happens at zero.
                    self.due = None;
                    self.tmict = 0;
                    self.tsc_deadline = 0;
                }
            }
            0x833..=LVT_ERROR => {
                if w & !LVT_OTHER_BITS != 0 {
                    return Err(Fault);
                }
                self.lvt[(msr - LVT_TIMER) as usize] = if self.software_enabled() { w } else { w | LVT_MASKED };
            }
            TMICT => {
                if self.timer_mode() != TIMER_DEADLINE {
                    self.tmict = w;
                    self.started = now;
                    self.due = (w != 0).then(|| now + w as u64 * self.divisor());
                }
            }
            TDCR if w & !0xb == 0 => self.tdcr = w,
            SELF_IPI if w & !0xff == 0 => self.set_irr(w as u8, ESR_SEND_ILLEGAL),
            _ => return Err(Fault),
        }
        Ok(())
    }

    fn write_base(&mut self, v: u64) -> Result<(), Fault> {
        // Reserved: bits 0-7, 9, and above the 4 GiB the base must lie in
        // here (a guest physical width wider than the VMM gives).
        if v & 0xfff & !(BASE_BSP | BASE_EXTD | BASE_EN) != 0 || v >> 32 != 0 {
            return Err(Fault);
        }
        let (en, extd) = (v & BASE_EN != 0, v & BASE_EXTD != 0);
        match (self.x2apic(), self.enabled(), en, extd) {
            // Staying in x2APIC mode (the base address may be rewritten).
            (true, _, true, true) => {}
            // Disabling it: on re-enabling it would be as after reset.
            (_, _, false, false) => {
                *self = Lapic { base: 0, ..Lapic::new() };
                self.base = (v & !0xfff) | BASE_BSP;
                return Ok(());
            }
            // x2APIC to xAPIC, disabled to x2APIC (§11.12.5, invalid), or
            // into xAPIC mode at all (no MMIO page here).
            _ => return Err(Fault),
        }
        self.base = (v & !(0xfff & !(BASE_EN | BASE_EXTD))) | BASE_BSP;
        Ok(())
    }

    /// An IPI (x2APIC ICR, §11.12.9): fixed and lowest-priority ones for
    /// this vCPU enter its IRR, an NMI is delivered; the rest go nowhere.
    fn send(&mut self, icr: u64) {
        let vector = icr as u8;
        let mode = (icr >> 8) & 7;
        let logical = icr & 1 << 11 != 0;
        let dest = (icr >> 32) as u32;
        let to_me = match (icr >> 18) & 3 {
            // Self, all including self.
            1 | 2 => true,
            // All excluding self.
            3 => false,
            // Physical: ID 0 or broadcast; logical: cluster 0, bit 0.
            _ if logical => dest >> 16 == 0xffff || (dest >> 16 == 0 && dest & 1 != 0),
            _ => dest == 0 || dest == u32::MAX,
        };
        if !to_me {
            return;
        }
        match mode {
            0 | 1 => self.set_irr(vector, ESR_SEND_ILLEGAL),
            4 => self.nmi = true,
            _ => {}
        }
    }

    /// Raise `vector`; vectors 0-15 are illegal (§11.5.3), logged as `err`.
    fn set_irr(&mut self, vector: u8, err: u32) {
        if vector < 16 {
            self.errors |= err;
            return;
        }
        self.irr[vector as usize / 64] |= 1 << (vector % 64);
    }

    /// When the timer fires next (TSC), if it is armed.
    pub fn timer_due(&self) -> Option<u64> {
        self.due
    }

    /// Fire the timer if it is due by `now`: its vector enters the IRR
    /// unless masked; a periodic timer reloads (keeping its phase).
    pub fn expire(&mut self, now: u64) {
        let Some(due) = self.due.filter(|&d| d <= now) else { return };
        self.due = match self.timer_mode() {
            TIMER_PERIODIC if self.tmict != 0 => {
                let period = self.tmict as u64 * self.divisor();
                let missed = (now - due) / period;
                self.started = due + missed * period;
                Some(self.started + period)
            }
            TIMER_DEADLINE => {
                self.tsc_deadline = 0;
                None
            }
            _ => None,
        };
        let lvt = self.lvt[0];
        if lvt & LVT_MASKED == 0 {
            self.set_irr(lvt as u8, ESR_RECV_ILLEGAL);
        }
    }

    /// The vector to deliver now, if any: the highest requested whose
    /// priority class is above the processor priority (§11.8.3.1).
    pub fn deliverable(&self) -> Option<u8> {
        if !self.software_enabled() {
            return None;
        }
        let v = highest(&self.irr)?;
        (v as u32 & 0xf0 > self.ppr() & 0xf0).then_some(v)
    }

    /// `vector` (from [`deliverable`](Self::deliverable)) was injected: it
    /// is in service until the guest's EOI.
    pub fn accept(&mut self, vector: u8) {
        clear(&mut self.irr, vector);
        self.isr[vector as usize / 64] |= 1 << (vector % 64);
    }

    /// `vector`, accepted for a delivery that did not happen (the guest
    /// never took the offered interrupt): requested again.
    pub fn unaccept(&mut self, vector: u8) {
        clear(&mut self.isr, vector);
        self.irr[vector as usize / 64] |= 1 << (vector % 64);
    }

    /// Is any interrupt in service?
    pub fn in_service(&self) -> bool {
        highest(&self.isr).is_some()
    }

    /// End the highest in-service interrupt, as an EOI write does (the
    /// guest signalled it through the paravirtual EOI word instead).
    pub fn eoi(&mut self) {
        if let Some(v) = highest(&self.isr) {
            clear(&mut self.isr, v);
        }
    }

    /// May the guest's next EOI be a cleared bit instead of a WRMSR? Only
    /// while one interrupt class is in service and none is requested:
    /// the cleared bit then means exactly "the highest in service ended",
    /// and no new one can be accepted before the kernel has seen it (it
    /// looks before each entry).
    pub fn lazy_eoi_ok(&self) -> bool {
        self.software_enabled() && highest(&self.isr).is_some() && highest(&self.irr).is_none()
    }

    /// An NMI the guest sent itself waits.
    pub fn nmi_pending(&self) -> bool {
        self.nmi
    }

    /// An NMI the guest sent itself, taken for delivery.
    pub fn take_nmi(&mut self) -> bool {
        core::mem::take(&mut self.nmi)
    }
}

/// ICR bits that must be zero (x2APIC: delivery status, reserved 13,
/// 16-17, 20-31; SDM Vol. 3A §11.12.9).
const ICR_RESERVED: u64 = 1 << 12 | 1 << 13 | 3 << 16 | 0xfff << 20;

/// 32 bits `i` (0-7) of a 256-bit register.
fn word(r: &[u64; 4], i: u32) -> u64 {
    (r[i as usize / 2] >> (32 * (i % 2))) & 0xffff_ffff
}

fn highest(r: &[u64; 4]) -> Option<u8> {
    (0..4).rev().find(|&i| r[i] != 0).map(|i| (i * 64 + 63 - r[i].leading_zeros() as usize) as u8)
}

fn clear(r: &mut [u64; 4], v: u8) {
    r[v as usize / 64] &= !(1 << (v % 64));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's sequence: software enable, the timer in deadline mode, a
    /// deadline, its interrupt taken and EOIed.
    fn enabled() -> Lapic {
        let mut l = Lapic::new();
        l.wrmsr(SVR, 0x1ff, 0).unwrap();
        l
    }

    #[test]
    fn firmware_state_is_x2apic_enabled_bsp_software_disabled() {
        let l = Lapic::new();
        assert_eq!(l.rdmsr(MSR_APIC_BASE, 0), Ok(0xfee0_0000 | BASE_EN | BASE_EXTD | BASE_BSP));
        assert_eq!(l.rdmsr(ID, 0), Ok(0));
        assert_eq!(l.rdmsr(VER, 0), Ok(0x0005_0014));
        assert_eq!(l.rdmsr(LVT_TIMER, 0), Ok(LVT_MASKED as u64));
        assert_eq!(l.deliverable(), None);
    }

    #[test]
    fn tsc_deadline_tick_is_one_interrupt_until_eoi() {
        let mut l = enabled();
        l.wrmsr(LVT_TIMER, 0xec | 2 << 17, 0).unwrap();
        l.wrmsr(MSR_TSC_DEADLINE, 1000, 0).unwrap();
        assert_eq!(l.timer_due(), Some(1000));
        l.expire(999);
        assert_eq!(l.deliverable(), None, "not before the deadline");
        l.expire(1000);
        assert_eq!(l.rdmsr(MSR_TSC_DEADLINE, 1000), Ok(0), "disarmed and cleared once fired");
        assert_eq!(l.timer_due(), None);
        assert_eq!(l.deliverable(), Some(0xec));
        l.accept(0xec);
        assert_eq!(l.deliverable(), None);
        assert_eq!(l.rdmsr(ISR0 + 7, 1000), Ok(1 << 12), "0xec in service");
        l.wrmsr(EOI, 0, 1000).unwrap();
        assert_eq!(l.rdmsr(ISR0 + 7, 1000), Ok(0));
    }

    #[test]
    fn priority_masks_lower_classes_until_eoi() {
        let mut l = enabled();
        l.wrmsr(SELF_IPI, 0x41, 0).unwrap();
        l.wrmsr(SELF_IPI, 0x82, 0).unwrap();
        assert_eq!(l.deliverable(), Some(0x82), "the highest first");
        l.accept(0x82);
        assert_eq!(l.deliverable(), None, "0x41 waits below the in-service class");
        assert_eq!(l.rdmsr(PPR, 0), Ok(0x80));
        l.wrmsr(EOI, 0, 0).unwrap();
        assert_eq!(l.deliverable(), Some(0x41));
        l.wrmsr(TPR, 0x50, 0).unwrap();
        assert_eq!(l.deliverable(), None, "TPR above its class");
        l.wrmsr(TPR, 0x30, 0).unwrap();
        assert_eq!(l.deliverable(), Some(0x41));
    }

    #[test]
    fn one_shot_and_periodic_count_at_tsc_over_divisor() {
        let mut l = enabled();
        l.wrmsr(TDCR, 0xb, 0).unwrap(); // divide by 1
        l.wrmsr(LVT_TIMER, 0x30 | 1 << 17, 0).unwrap();
        l.wrmsr(TMICT, 100, 50).unwrap();
        assert_eq!(l.timer_due(), Some(150));
        assert_eq!(l.rdmsr(TMCCT, 120), Ok(30));
        l.expire(365); // two periods late: one interrupt, phase kept
        assert_eq!(l.timer_due(), Some(450));
        assert_eq!(l.deliverable(), Some(0x30));
        l.wrmsr(LVT_TIMER, 0x31, 400).unwrap(); // one-shot: the count runs on
        assert_eq!(l.timer_due(), Some(450));
        l.expire(450);
        assert_eq!(l.timer_due(), None, "and ends as a one-shot");
        l.wrmsr(TDCR, 0, 460).unwrap(); // divide by 2
        l.wrmsr(TMICT, 10, 460).unwrap();
        assert_eq!(l.timer_due(), Some(480));
        l.wrmsr(LVT_TIMER, 0x31 | 2 << 17, 470).unwrap(); // into deadline mode: disarmed
        assert_eq!(l.timer_due(), None);
        assert_eq!(l.rdmsr(TMCCT, 470), Ok(0));
    }

    #[test]
    fn masked_or_disabled_timer_raises_nothing() {
        let mut l = Lapic::new(); // software disabled: LVT writes stay masked
        l.wrmsr(LVT_TIMER, 0xec | 2 << 17, 0).unwrap();
        assert_eq!(l.rdmsr(LVT_TIMER, 0), Ok((0xec | 2 << 17 | LVT_MASKED) as u64));
        l.wrmsr(MSR_TSC_DEADLINE, 5, 0).unwrap();
        l.expire(5);
        assert_eq!(l.deliverable(), None);
    }

    #[test]
    fn bad_accesses_fault() {
        let mut l = enabled();
        assert_eq!(l.rdmsr(EOI, 0), Err(Fault), "write-only");
        assert_eq!(l.rdmsr(SELF_IPI, 0), Err(Fault));
        assert_eq!(l.rdmsr(0x8ff, 0), Err(Fault), "no such register");
        assert_eq!(l.wrmsr(ID, 1, 0), Err(Fault), "read-only");
        assert_eq!(l.wrmsr(PPR, 0, 0), Err(Fault));
        assert_eq!(l.wrmsr(EOI, 1, 0), Err(Fault), "EOI takes 0 only");
        assert_eq!(l.wrmsr(ESR, 1, 0), Err(Fault));
        assert_eq!(l.wrmsr(TPR, 1 << 32, 0), Err(Fault), "upper half reserved");
        assert_eq!(l.wrmsr(LVT_TIMER, 3 << 17, 0), Err(Fault), "reserved timer mode");
        assert_eq!(l.wrmsr(ICR, 1 << 12, 0), Err(Fault));
        assert_eq!(l.wrmsr(MSR_APIC_BASE, 0xfee0_0000 | BASE_EN, 0), Err(Fault), "x2APIC to xAPIC");
        l.wrmsr(MSR_APIC_BASE, 0, 0).unwrap();
        assert!(!l.enabled());
        assert_eq!(l.rdmsr(TPR, 0), Err(Fault), "x2APIC registers gone with it");
        assert_eq!(l.wrmsr(MSR_APIC_BASE, 0xfee0_0000 | BASE_EN | BASE_EXTD, 0), Err(Fault), "disabled to x2APIC");
    }

    #[test]
    fn illegal_vectors_are_logged_not_raised() {
        let mut l = enabled();
        l.wrmsr(SELF_IPI, 5, 0).unwrap();
        assert_eq!(l.deliverable(), None);
        assert_eq!(l.rdmsr(ESR, 0), Ok(0), "visible after an ESR write");
        l.wrmsr(ESR, 0, 0).unwrap();
        assert_eq!(l.rdmsr(ESR, 0), Ok(ESR_SEND_ILLEGAL as u64));
    }

    #[test]
    fn lazy_eoi_only_with_one_in_service_and_none_requested() {
        let mut l = enabled();
        assert!(!l.lazy_eoi_ok(), "nothing in service");
        l.wrmsr(SELF_IPI, 0x40, 0).unwrap();
        assert!(!l.lazy_eoi_ok(), "requested, not in service");
        l.accept(0x40);
        assert!(l.lazy_eoi_ok());
        l.wrmsr(SELF_IPI, 0x30, 0).unwrap();
        assert!(!l.lazy_eoi_ok(), "another requested: the EOI must be seen at once");
        l.eoi();
        assert_eq!(l.rdmsr(ISR0 + 2, 0), Ok(0), "0x40 ended");
        assert_eq!(l.deliverable(), Some(0x30));
    }

    #[test]
    fn an_offer_not_taken_is_requested_again() {
        let mut l = enabled();
        l.wrmsr(SELF_IPI, 0x40, 0).unwrap();
        assert!(!l.in_service());
        l.accept(0x40);
        assert!(l.in_service() && l.lazy_eoi_ok(), "offered: in service, its EOI may be lazy");
        l.unaccept(0x40);
        assert!(!l.in_service());
        assert_eq!(l.deliverable(), Some(0x40), "requested again, nothing lost");
        assert_eq!(l.rdmsr(ISR0 + 2, 0), Ok(0));
    }

    #[test]
    fn icr_reaches_this_vcpu_only() {
        let mut l = enabled();
        l.wrmsr(ICR, 0x40 | 3 << 18, 0).unwrap(); // all excluding self
        l.wrmsr(ICR, 0x41 | 1 << 32, 0).unwrap(); // physical ID 1
        assert_eq!(l.deliverable(), None);
        l.wrmsr(ICR, 0x42 | 1 << 11 | 1 << 32, 0).unwrap(); // logical cluster 0 bit 0
        assert_eq!(l.deliverable(), Some(0x42));
        l.wrmsr(ICR, 4 << 8 | 1 << 18, 0).unwrap(); // NMI to self
        assert!(l.take_nmi());
        assert!(!l.take_nmi());
    }
}
