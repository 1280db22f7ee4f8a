//! The PC's two 8259A programmable interrupt controllers (Intel 8259A
//! datasheet, order 231468): master at 0x20/0x21, slave at 0xa0/0xa1,
//! cascaded on the master's IR2; plus the edge/level control registers at
//! 0x4d0/0x4d1 (PIIX ELCR).
//!
//! Modelled: the initialization sequence ICW1-ICW4 (§"Initialization Command
//! Words"), OCW1 masks, OCW2 EOI (non-specific, specific, with rotation) and
//! priority setting, OCW3 register selection (IRR/ISR), poll command and
//! special mask mode, automatic EOI, special fully nested mode, fully nested
//! priority with rotation, edge-triggered inputs (level where the ELCR says
//! so), and the spurious IRQ 7 / 15 an INTA cycle yields when the request
//! went away. The CPU side is [`Pics::pending_vector`] (INTR asserted, with
//! the vector it would deliver) and [`Pics::acknowledge`] (the INTA cycle).

pub const MASTER_CMD: u16 = 0x20;
pub const MASTER_DATA: u16 = 0x21;
pub const SLAVE_CMD: u16 = 0xa0;
pub const SLAVE_DATA: u16 = 0xa1;
pub const ELCR_MASTER: u16 = 0x4d0;
pub const ELCR_SLAVE: u16 = 0x4d1;

/// The master input the slave's INT drives.
pub const CASCADE_IRQ: u8 = 2;

// ICW1 bits.
const ICW1_IC4: u8 = 0x01; // ICW4 needed
const ICW1_SNGL: u8 = 0x02; // single (no cascade, no ICW3)
const ICW1_INIT: u8 = 0x10; // A0=0 with D4=1 is ICW1
// OCW3: A0=0, D4=0, D3=1.
const OCW3_SEL: u8 = 0x08;
const OCW3_RIS: u8 = 0x01; // read ISR (with RR)
const OCW3_RR: u8 = 0x02;
const OCW3_POLL: u8 = 0x04;
const OCW3_SMM: u8 = 0x20;
const OCW3_ESMM: u8 = 0x40;
// ICW4 bits.
const ICW4_AEOI: u8 = 0x02;
const ICW4_SFNM: u8 = 0x10;

/// Where the initialization sequence stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Init {
    /// Initialized: data-port writes are OCW1.
    Ready,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Clone, Debug)]
pub struct Chip {
    pub irr: u8,
    pub isr: u8,
    pub imr: u8,
    /// The input lines' levels (edge detection).
    lines: u8,
    /// Interrupt vector of IR0 (ICW2, low three bits zero).
    pub base: u8,
    /// Priority rotation: IR`priority_add` has the highest priority.
    priority_add: u8,
    read_isr: bool,
    poll: bool,
    special_mask: bool,
    init: Init,
    icw4_needed: bool,
    single: bool,
    auto_eoi: bool,
    rotate_on_auto_eoi: bool,
    special_fully_nested: bool,
    /// Inputs that are level-triggered (ELCR), and which may be.
    elcr: u8,
    elcr_mask: u8,
    master: bool,
}

impl Chip {
    fn new(master: bool) -> Chip {
        Chip {
            irr: 0,
            isr: 0,
            imr: 0xff,
            lines: 0,
            base: if master { 0x08 } else { 0x70 }, // the PC BIOS's vectors
            priority_add: 0,
            read_isr: false,
            poll: false,
            special_mask: false,
            init: Init::Ready,
            icw4_needed: false,
            single: false,
            auto_eoi: false,
            rotate_on_auto_eoi: false,
            special_fully_nested: false,
            elcr: 0,
            // IRQ 0, 1, 2 and 8, 13 are always edge on the PC (PIIX ELCR).
            elcr_mask: if master { 0xf8 } else { 0xde },
            master,
        }
    }

    /// The highest priority among the set bits of `mask`, 0 (highest) to
    /// 7, or 8 if none, under the current rotation.
    fn priority(&self, mask: u8) -> u8 {
        if mask == 0 {
            return 8;
        }
        let mut p = 0;
        while mask & (1 << ((p + self.priority_add) & 7)) == 0 {
            p += 1;
        }
        p
    }

    /// The input this chip would present to the CPU now, if any: the
    /// highest-priority unmasked request above everything in service.
    fn get_irq(&self) -> Option<u8> {
        let p = self.priority(self.irr & !self.imr);
        if p == 8 {
            return None;
        }
        let mut in_service = self.isr;
        // Special mask mode: masked in-service levels do not block (OCW3).
        if self.special_mask {
            in_service &= !self.imr;
        }
        // Special fully nested mode: the cascade input does not block
        // further requests from the slave (ICW4 SFNM).
        if self.special_fully_nested && self.master {
            in_service &= !(1 << CASCADE_IRQ);
        }
        if p < self.priority(in_service) {
            Some((p + self.priority_add) & 7)
        } else {
            None
        }
    }

    /// Drive input `irq` to `level`.
    fn set_line(&mut self, irq: u8, level: bool) {
        let m = 1u8 << (irq & 7);
        if self.elcr & m != 0 {
            // Level-triggered: the request follows the line.
            if level {
                self.irr |= m;
            } else {
                self.irr &= !m;
            }
        } else if level && self.lines & m == 0 {
            self.irr |= m; // rising edge
        }
        if level {
            self.lines |= m;
        } else {
            self.lines &= !m;
        }
    }

    /// The INTA cycle for input `irq`: in service (unless automatic EOI),
    /// request cleared (edge mode).
    fn intack(&mut self, irq: u8) {
        let m = 1u8 << irq;
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.priority_add = (irq + 1) & 7;
            }
        } else {
            self.isr |= m;
        }
        if self.elcr & m == 0 {
            self.irr &= !m;
        }
    }

    /// ICW1: start initialization (the datasheet's reset of the chip's
    /// state: mask cleared, IR7 lowest priority, special mask off, IRR
    /// selected for reading; edge sensitivity re-armed).
    fn icw1(&mut self, v: u8) {
        self.lines = 0;
        self.irr &= self.elcr;
        self.isr = 0;
        self.imr = 0;
        self.priority_add = 0;
        self.read_isr = false;
        self.poll = false;
        self.special_mask = false;
        self.auto_eoi = false;
        self.rotate_on_auto_eoi = false;
        self.special_fully_nested = false;
        self.icw4_needed = v & ICW1_IC4 != 0;
        self.single = v & ICW1_SNGL != 0;
        // ICW1 bit 3 (LTIM, level-triggered mode) is the ELCR's job on PCs.
        self.init = Init::Icw2;
    }

    fn write_cmd(&mut self, v: u8) {
        if v & ICW1_INIT != 0 {
            self.icw1(v);
        } else if v & OCW3_SEL != 0 {
            // OCW3.
            if v & OCW3_POLL != 0 {
                self.poll = true;
            }
            if v & OCW3_RR != 0 {
                self.read_isr = v & OCW3_RIS != 0;
            }
            if v & OCW3_ESMM != 0 {
                self.special_mask = v & OCW3_SMM != 0;
            }
        } else {
            // OCW2: R, SL, EOI in bits 7-5, level in 2-0.
            let level = v & 7;
            match v >> 5 {
                0 => self.rotate_on_auto_eoi = false,
                4 => self.rotate_on_auto_eoi = true,
                1 | 5 => {
                    // Non-specific EOI: the highest-priority level in service.
                    let p = self.priority(self.isr);
                    if p != 8 {
                        let irq = (p + self.priority_add) & 7;
                        self.isr &= !(1 << irq);
                        if v >> 5 == 5 {
                            self.priority_add = (irq + 1) & 7;
                        }
                    }
                }
                3 => self.isr &= !(1 << level),
                7 => {
                    self.isr &= !(1 << level);
                    self.priority_add = (level + 1) & 7;
                }
                6 => self.priority_add = (level + 1) & 7,
                _ => {} // 2: no operation
            }
        }
    }

    fn write_data(&mut self, v: u8) {
        match self.init {
            Init::Ready => self.imr = v, // OCW1
            Init::Icw2 => {
                self.base = v & 0xf8;
                self.init = if !self.single {
                    Init::Icw3
                } else if self.icw4_needed {
                    Init::Icw4
                } else {
                    Init::Ready
                };
            }
            // ICW3 (cascade wiring) is fixed on the PC: IR2 / slave id 2.
            Init::Icw3 => self.init = if self.icw4_needed { Init::Icw4 } else { Init::Ready },
            Init::Icw4 => {
                self.auto_eoi = v & ICW4_AEOI != 0;
                self.special_fully_nested = v & ICW4_SFNM != 0;
                self.init = Init::Ready;
            }
        }
    }

    /// The poll command's answer: 0x80 | level and the request acknowledged,
    /// or 0 when nothing is pending.
    fn poll_read(&mut self) -> u8 {
        match self.get_irq() {
            Some(irq) => {
                self.intack(irq);
                0x80 | irq
            }
            None => 0,
        }
    }
}

/// The master/slave pair.
#[derive(Clone, Debug)]
pub struct Pics {
    pub master: Chip,
    pub slave: Chip,
}

impl Default for Pics {
    fn default() -> Self {
        Self::new()
    }
}

impl Pics {
    /// Both chips uninitialized with every input masked (what a guest
    /// finds without a BIOS: it must run ICW1-ICW4 and unmask).
    pub fn new() -> Pics {
        Pics { master: Chip::new(true), slave: Chip::new(false) }
    }

    /// Propagate the slave's INT output to the master's cascade input.
    fn cascade(&mut self) {
        let s = self.slave.get_irq().is_some();
        self.master.set_line(CASCADE_IRQ, s);
    }

    /// Drive ISA IRQ `irq` (0-15) to `level`.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        match irq {
            0..=7 => self.master.set_line(irq, level),
            8..=15 => self.slave.set_line(irq - 8, level),
            _ => return,
        }
        self.cascade();
    }

    pub fn raise(&mut self, irq: u8) {
        self.set_irq(irq, true);
    }

    pub fn lower(&mut self, irq: u8) {
        self.set_irq(irq, false);
    }

    /// A pulse on an edge-triggered input: one request.
    pub fn pulse(&mut self, irq: u8) {
        self.raise(irq);
        self.lower(irq);
    }

    /// The vector the pair would deliver if the CPU acknowledged now (the
    /// master's INT output is asserted), considering masks and priorities.
    pub fn pending_vector(&self) -> Option<u8> {
        let irq = self.master.get_irq()?;
        if irq == CASCADE_IRQ && !self.master.single {
            // The slave's request, or a spurious IRQ 15 if it went away.
            let s = self.slave.get_irq().unwrap_or(7);
            return Some(self.slave.base.wrapping_add(s));
        }
        Some(self.master.base.wrapping_add(irq))
    }

    /// The INTA cycle: returns the vector and marks it in service. With no
    /// request left this is the spurious IRQ 7 (nothing set in service); a
    /// cascade whose slave request vanished gives the spurious IRQ 15 with
    /// the master's IR2 in service, as on the real pair.
    pub fn acknowledge(&mut self) -> u8 {
        let v = match self.master.get_irq() {
            Some(irq) => {
                self.master.intack(irq);
                if irq == CASCADE_IRQ && !self.master.single {
                    match self.slave.get_irq() {
                        Some(s) => {
                            self.slave.intack(s);
                            self.slave.base.wrapping_add(s)
                        }
                        None => self.slave.base.wrapping_add(7),
                    }
                } else {
                    self.master.base.wrapping_add(irq)
                }
            }
            None => self.master.base.wrapping_add(7),
        };
        self.cascade();
        v
    }

    /// Is `port` one of the pair's (or the ELCR's)?
    pub fn claims(port: u16) -> bool {
        matches!(port, MASTER_CMD | MASTER_DATA | SLAVE_CMD | SLAVE_DATA | ELCR_MASTER | ELCR_SLAVE)
    }

    pub fn read(&mut self, port: u16) -> u8 {
        let v = match port {
            ELCR_MASTER => return self.master.elcr,
            ELCR_SLAVE => return self.slave.elcr,
            MASTER_CMD | MASTER_DATA | SLAVE_CMD | SLAVE_DATA => {
                let chip = if port & 0x80 != 0 { &mut self.slave } else { &mut self.master };
                if chip.poll {
                    chip.poll = false;
                    chip.poll_read()
                } else if port & 1 == 0 {
                    if chip.read_isr {
                        chip.isr
                    } else {
                        chip.irr
                    }
                } else {
                    chip.imr
                }
            }
            _ => 0xff,
        };
        self.cascade();
        v
    }

    pub fn write(&mut self, port: u16, v: u8) {
        match port {
            MASTER_CMD => self.master.write_cmd(v),
            MASTER_DATA => self.master.write_data(v),
            SLAVE_CMD => self.slave.write_cmd(v),
            SLAVE_DATA => self.slave.write_data(v),
            ELCR_MASTER => self.master.elcr = v & self.master.elcr_mask,
            ELCR_SLAVE => self.slave.elcr = v & self.slave.elcr_mask,
            _ => return,
        }
        self.cascade();
    }

    /// Is any interrupt request latched (an IRR bit in either chip)? A
    /// write to the PICs (an unmask, an EOI) could then make it
    /// deliverable at once.
    pub fn any_request(&self) -> bool {
        self.master.irr | self.slave.irr != 0
    }

    /// What a read of `port` answers if it has no side effect: the mask
    /// register of a data port, unless a poll command is pending.
    pub fn plain_read(&self, port: u16) -> Option<u8> {
        let chip = match port {
            MASTER_DATA => &self.master,
            SLAVE_DATA => &self.slave,
            _ => return None,
        };
        (!chip.poll).then_some(chip.imr)
    }

    /// Is IRQ `irq` masked (in its chip's IMR)?
    pub fn masked(&self, irq: u8) -> bool {
        match irq {
            0..=7 => self.master.imr & (1 << irq) != 0,
            8..=15 => self.slave.imr & (1 << (irq - 8)) != 0,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The initialization Linux's `init_8259A` performs: vectors 0x20 and
    /// 0x28, cascade on IR2, 8086 mode, then the masks.
    fn linux_init(p: &mut Pics, master_mask: u8, slave_mask: u8) {
        p.write(MASTER_DATA, 0xff);
        p.write(SLAVE_DATA, 0xff);
        p.write(MASTER_CMD, 0x11); // ICW1: edge, cascade, ICW4
        p.write(MASTER_DATA, 0x20); // ICW2
        p.write(MASTER_DATA, 1 << CASCADE_IRQ); // ICW3
        p.write(MASTER_DATA, 0x01); // ICW4: 8086 mode, normal EOI
        p.write(SLAVE_CMD, 0x11);
        p.write(SLAVE_DATA, 0x28);
        p.write(SLAVE_DATA, CASCADE_IRQ);
        p.write(SLAVE_DATA, 0x01);
        p.write(MASTER_DATA, master_mask);
        p.write(SLAVE_DATA, slave_mask);
    }

    #[test]
    fn nothing_pending_before_initialization() {
        let mut p = Pics::new();
        p.pulse(0);
        assert_eq!(p.pending_vector(), None, "every input masked at start");
    }

    #[test]
    fn init_sequence_and_masks() {
        let mut p = Pics::new();
        linux_init(&mut p, 0xfa, 0xff);
        assert_eq!(p.read(MASTER_DATA), 0xfa);
        assert_eq!(p.read(SLAVE_DATA), 0xff);
        assert_eq!(p.master.base, 0x20);
        assert_eq!(p.slave.base, 0x28);
        p.pulse(0);
        assert_eq!(p.pending_vector(), Some(0x20));
        assert_eq!(p.acknowledge(), 0x20);
        assert_eq!(p.master.isr, 1);
        assert_eq!(p.master.irr, 0, "edge request cleared by INTA");
        assert_eq!(p.pending_vector(), None);
        p.write(MASTER_CMD, 0x20); // non-specific EOI
        assert_eq!(p.master.isr, 0);
        // A masked input is remembered in IRR but not delivered.
        p.pulse(1);
        assert_eq!(p.pending_vector(), None);
        assert_eq!(p.read(MASTER_CMD), 0x02, "IRR read (OCW3 default)");
        p.write(MASTER_DATA, 0xf8);
        assert_eq!(p.pending_vector(), Some(0x21));
        // Linux's probe: write a mask, read it back.
        p.write(MASTER_DATA, 0xfb);
        assert_eq!(p.read(MASTER_DATA), 0xfb);
    }

    #[test]
    fn edge_triggering_needs_a_new_edge() {
        let mut p = Pics::new();
        linux_init(&mut p, 0x00, 0x00);
        p.raise(3);
        assert_eq!(p.acknowledge(), 0x23);
        p.write(MASTER_CMD, 0x63); // specific EOI for IR3
        p.raise(3); // still high: no new edge
        assert_eq!(p.pending_vector(), None);
        p.lower(3);
        p.raise(3);
        assert_eq!(p.pending_vector(), Some(0x23));
    }

    #[test]
    fn priority_and_nesting() {
        let mut p = Pics::new();
        linux_init(&mut p, 0x00, 0x00);
        p.pulse(4);
        assert_eq!(p.acknowledge(), 0x24);
        // A lower-priority request waits while IR4 is in service...
        p.pulse(6);
        assert_eq!(p.pending_vector(), None);
        // ...a higher-priority one nests.
        p.pulse(1);
        assert_eq!(p.pending_vector(), Some(0x21));
        assert_eq!(p.acknowledge(), 0x21);
        assert_eq!(p.master.isr, 0x12);
        // Non-specific EOI ends the highest in service (IR1), then IR4.
        p.write(MASTER_CMD, 0x20);
        assert_eq!(p.master.isr, 0x10);
        assert_eq!(p.pending_vector(), None);
        p.write(MASTER_CMD, 0x20);
        assert_eq!(p.pending_vector(), Some(0x26));
        // OCW3: read ISR.
        p.acknowledge();
        p.write(MASTER_CMD, 0x0b);
        assert_eq!(p.read(MASTER_CMD), 0x40);
        p.write(MASTER_CMD, 0x0a);
        assert_eq!(p.read(MASTER_CMD), 0x00);
    }

    #[test]
    fn cascade_through_ir2_and_linux_eoi() {
        let mut p = Pics::new();
        linux_init(&mut p, 0xfb, 0xfe); // IR2 open on the master, IRQ8 on the slave
        p.pulse(8);
        assert_eq!(p.pending_vector(), Some(0x28));
        assert_eq!(p.acknowledge(), 0x28);
        assert_eq!(p.master.isr, 1 << CASCADE_IRQ);
        assert_eq!(p.slave.isr, 1);
        // Linux's mask_and_ack for a slave IRQ: specific EOIs on both chips.
        p.write(SLAVE_CMD, 0x60);
        p.write(MASTER_CMD, 0x60 + CASCADE_IRQ);
        assert_eq!((p.master.isr, p.slave.isr), (0, 0));
        // Master IRQs outrank the whole slave (IR0, IR1 above IR2).
        p.write(MASTER_DATA, 0xfa);
        p.pulse(9);
        p.write(SLAVE_DATA, 0xfc);
        p.pulse(0);
        assert_eq!(p.acknowledge(), 0x20);
        p.write(MASTER_CMD, 0x20);
        assert_eq!(p.acknowledge(), 0x29);
    }

    #[test]
    fn spurious_irq7_and_irq15() {
        let mut p = Pics::new();
        linux_init(&mut p, 0x00, 0x00);
        // INTA with nothing pending: IRQ 7, not put in service.
        assert_eq!(p.acknowledge(), 0x27);
        assert_eq!(p.master.isr, 0);
        // The slave's request vanishes between INTR and INTA (level input
        // dropped): IRQ 15 from the slave, IR2 in service on the master.
        p.write(ELCR_SLAVE, 0x02); // IRQ9 level-triggered
        p.raise(9);
        assert_eq!(p.pending_vector(), Some(0x29));
        p.lower(9); // the master's edge-triggered IR2 keeps its request
        assert_eq!(p.acknowledge(), 0x2f);
        assert_eq!(p.slave.isr, 0);
        assert_eq!(p.master.isr, 1 << CASCADE_IRQ);
    }

    #[test]
    fn level_triggered_inputs_follow_the_line() {
        let mut p = Pics::new();
        linux_init(&mut p, 0x00, 0x00);
        p.write(ELCR_MASTER, 0xff);
        assert_eq!(p.read(ELCR_MASTER), 0xf8, "IRQ 0-2 cannot be level");
        p.raise(5);
        assert_eq!(p.acknowledge(), 0x25);
        p.write(MASTER_CMD, 0x20);
        assert_eq!(p.pending_vector(), Some(0x25), "still asserted: requested again");
        p.lower(5);
        assert_eq!(p.pending_vector(), None);
    }

    #[test]
    fn auto_eoi_rotation_and_poll() {
        let mut p = Pics::new();
        p.write(MASTER_CMD, 0x13); // single, ICW4
        p.write(MASTER_DATA, 0x40);
        p.write(MASTER_DATA, 0x03); // ICW4: AEOI
        p.write(MASTER_DATA, 0x00);
        p.pulse(3);
        assert_eq!(p.acknowledge(), 0x43);
        assert_eq!(p.master.isr, 0, "automatic EOI");
        // Rotation: after "rotate on non-specific EOI" IR5 becomes lowest.
        p.write(MASTER_CMD, 0x11);
        p.write(MASTER_DATA, 0x40); // cascade mode this time
        p.write(MASTER_DATA, 0x04); // ICW3
        p.write(MASTER_DATA, 0x00); // ICW4: no automatic EOI
        p.pulse(5);
        assert_eq!(p.acknowledge(), 0x45);
        p.write(MASTER_CMD, 0xa0); // rotate on non-specific EOI
        p.pulse(0);
        p.pulse(6);
        assert_eq!(p.acknowledge(), 0x46, "IR6 now has the highest priority");
        p.write(MASTER_CMD, 0xc7); // set priority: IR7 lowest, IR0 highest
        p.write(MASTER_CMD, 0x66);
        // Poll command: the next read answers with the level.
        p.write(MASTER_CMD, 0x0c);
        assert_eq!(p.read(MASTER_CMD), 0x80);
        p.write(MASTER_CMD, 0x60);
        p.write(MASTER_CMD, 0x0c);
        assert_eq!(p.read(MASTER_CMD), 0, "nothing left");
    }

    #[test]
    fn special_mask_mode_lets_lower_levels_in() {
        let mut p = Pics::new();
        linux_init(&mut p, 0x00, 0x00);
        p.pulse(2 + 1);
        assert_eq!(p.acknowledge(), 0x23);
        p.pulse(5);
        assert_eq!(p.pending_vector(), None);
        p.write(MASTER_DATA, 0x08); // mask the level in service
        p.write(MASTER_CMD, 0x68); // OCW3: set special mask
        assert_eq!(p.pending_vector(), Some(0x25));
        p.write(MASTER_CMD, 0x48); // reset special mask
        assert_eq!(p.pending_vector(), None);
    }

    #[test]
    fn hostile_sequences_do_not_panic() {
        let mut p = Pics::new();
        let mut x: u32 = 12345;
        for _ in 0..20000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let port = [MASTER_CMD, MASTER_DATA, SLAVE_CMD, SLAVE_DATA, ELCR_MASTER, ELCR_SLAVE, 0x22][(x % 7) as usize];
            match (x >> 8) % 5 {
                0 => p.write(port, (x >> 16) as u8),
                1 => {
                    let _ = p.read(port);
                }
                2 => p.set_irq((x >> 16) as u8 % 20, x & 0x100_0000 != 0),
                3 => {
                    let _ = p.acknowledge();
                }
                _ => {
                    let _ = p.pending_vector();
                }
            }
        }
    }
}
