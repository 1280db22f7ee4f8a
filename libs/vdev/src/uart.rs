//! PC16550D UART (National Semiconductor PC16550D datasheet, "Universal
//! Asynchronous Receiver/Transmitter with FIFOs"), as COM1 at 0x3f8-0x3ff,
//! IRQ 4.
//!
//! Transmission is instant: a byte written to THR is sent at once, so LSR
//! always shows THRE and TEMT, and the THRE interrupt comes back right after
//! each write (as on a real UART whose shift register is faster than the
//! CPU). Sent bytes are collected and handed out line by line
//! ([`Uart::drain_lines`]). Received bytes come from [`Uart::receive`] (the
//! VMM gives none today: LSR.DR stays 0). Loopback mode (MCR bit 4) routes
//! THR to RBR and the modem-control outputs to the modem-status inputs, as
//! the datasheet's §8.6 describes (Linux's 8250 driver probes with it).
//!
//! The interrupt output reaches the PIC only while MCR.OUT2 is set and
//! loopback is off: on PC boards OUT2 gates the UART's INTR onto the ISA
//! IRQ line, and the 8250 driver sets it when it uses interrupts.

/// COM1's first port and ISA IRQ.
pub const COM1_BASE: u16 = 0x3f8;
pub const COM1_IRQ: u8 = 4;

// Register offsets (datasheet Table II, "Register Addresses").
const RBR_THR: u16 = 0; // DLAB=1: DLL
const IER: u16 = 1; // DLAB=1: DLM
const IIR_FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
const SCR: u16 = 7;

// IER bits (§8.5).
const IER_RDA: u8 = 0x01;
const IER_THRE: u8 = 0x02;
const IER_RLS: u8 = 0x04;
const IER_MS: u8 = 0x08;

// IIR values (Table IV, interrupt identification; bit 0 = no interrupt).
const IIR_NONE: u8 = 0x01;
const IIR_RLS: u8 = 0x06;
const IIR_RDA: u8 = 0x04;
const IIR_TIMEOUT: u8 = 0x0c;
const IIR_THRE: u8 = 0x02;
const IIR_MS: u8 = 0x00;
const IIR_FIFOS: u8 = 0xc0;

// FCR bits (§8.7).
const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;
const FCR_CLEAR_TX: u8 = 0x04;

// LCR bit 7: divisor latch access (§8.1).
const LCR_DLAB: u8 = 0x80;

// MCR bits (§8.8).
const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;

// LSR bits (§8.4).
pub const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_ERRORS: u8 = 0x1e; // OE, PE, FE, BI
pub const LSR_THRE: u8 = 0x20;
pub const LSR_TEMT: u8 = 0x40;

// MSR bits (§8.9): deltas in 0-3, line states in 4-7.
const MSR_DCTS: u8 = 0x01;
const MSR_DDSR: u8 = 0x02;
const MSR_TERI: u8 = 0x04;
const MSR_DDCD: u8 = 0x08;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;

/// The receive FIFO's depth (§1: 16 bytes).
const RX_FIFO: usize = 16;
/// Bytes of output kept until the VMM drains them.
pub const OUT_CAP: usize = 4096;
/// A line longer than this is handed out in pieces of this size.
pub const LINE_MAX: usize = 200;

/// One PC16550D.
#[derive(Clone, Debug)]
pub struct Uart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    /// LSR error bits (OE, PE, FE, BI), cleared by reading LSR.
    lsr_errors: u8,
    /// MSR delta bits, cleared by reading MSR.
    msr_delta: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    fifo_enabled: bool,
    rx: [u8; RX_FIFO],
    rx_head: usize,
    rx_len: usize,
    /// The THRE interrupt is pending (set when THR empties or when THRE
    /// interrupts get enabled with THR empty; cleared by an IIR read that
    /// reports it or a THR write) — §8.5 and Table IV.
    thre_pending: bool,
    out: [u8; OUT_CAP],
    out_len: usize,
    /// Output bytes lost because the VMM did not drain in time.
    pub dropped: u64,
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart {
    /// The state after a master reset (datasheet Table III: IER, FCR, LCR,
    /// MCR cleared, LSR = THRE|TEMT, IIR = 1).
    pub fn new() -> Uart {
        Uart {
            ier: 0,
            lcr: 0,
            mcr: 0,
            lsr_errors: 0,
            msr_delta: 0,
            scr: 0,
            dll: 0x0c, // 9600 baud, as a BIOS would leave it; nothing depends on it
            dlm: 0,
            fifo_enabled: false,
            rx: [0; RX_FIFO],
            rx_head: 0,
            rx_len: 0,
            thre_pending: false,
            out: [0; OUT_CAP],
            out_len: 0,
            dropped: 0,
        }
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    /// The modem-status line states (MSR bits 4-7): in loopback the MCR
    /// outputs (§8.6: CTS=RTS, DSR=DTR, RI=OUT1, DCD=OUT2); otherwise a
    /// connected terminal (CTS, DSR, DCD).
    fn msr_lines(&self) -> u8 {
        if self.loopback() {
            let m = self.mcr;
            let mut s = 0;
            if m & MCR_RTS != 0 {
                s |= MSR_CTS;
            }
            if m & MCR_DTR != 0 {
                s |= MSR_DSR;
            }
            if m & MCR_OUT1 != 0 {
                s |= MSR_RI;
            }
            if m & MCR_OUT2 != 0 {
                s |= MSR_DCD;
            }
            s
        } else {
            MSR_CTS | MSR_DSR | MSR_DCD
        }
    }

    fn lsr(&self) -> u8 {
        let mut l = LSR_THRE | LSR_TEMT | (self.lsr_errors & LSR_ERRORS);
        if self.rx_len > 0 {
            l |= LSR_DR;
        }
        l
    }

    /// The highest-priority pending interrupt's IIR code (Table IV).
    fn iir_id(&self) -> u8 {
        if self.ier & IER_RLS != 0 && self.lsr_errors != 0 {
            IIR_RLS
        } else if self.ier & IER_RDA != 0 && self.rx_len > 0 {
            // Without a trigger-level model, received data in FIFO mode
            // reports as the character timeout, which drivers treat alike.
            if self.fifo_enabled {
                IIR_TIMEOUT
            } else {
                IIR_RDA
            }
        } else if self.ier & IER_THRE != 0 && self.thre_pending {
            IIR_THRE
        } else if self.ier & IER_MS != 0 && self.msr_delta != 0 {
            IIR_MS
        } else {
            IIR_NONE
        }
    }

    /// The UART's INTR output as the PIC sees it on IRQ 4 (gated by OUT2,
    /// off in loopback).
    pub fn irq_line(&self) -> bool {
        !self.loopback() && self.mcr & MCR_OUT2 != 0 && self.iir_id() != IIR_NONE
    }

    /// Read register `offset` (0-7).
    pub fn read(&mut self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset & 7 {
            RBR_THR if dlab => self.dll,
            RBR_THR => {
                if self.rx_len == 0 {
                    return 0;
                }
                let b = self.rx[self.rx_head];
                self.rx_head = (self.rx_head + 1) % RX_FIFO;
                self.rx_len -= 1;
                b
            }
            IER if dlab => self.dlm,
            IER => self.ier,
            IIR_FCR => {
                let id = self.iir_id();
                // Reading IIR while it reports THRE clears that interrupt (Table IV).
                if id == IIR_THRE {
                    self.thre_pending = false;
                }
                id | if self.fifo_enabled { IIR_FIFOS } else { 0 }
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let l = self.lsr();
                self.lsr_errors = 0;
                l
            }
            MSR => {
                let m = self.msr_lines() | self.msr_delta;
                self.msr_delta = 0;
                m
            }
            SCR => self.scr,
            _ => unreachable!("offset masked to 0-7"),
        }
    }

    /// Write register `offset` (0-7).
    pub fn write(&mut self, offset: u16, v: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset & 7 {
            RBR_THR if dlab => self.dll = v,
            RBR_THR => {
                self.thre_pending = false;
                if self.loopback() {
                    self.push_rx(v);
                } else {
                    self.transmit(v);
                }
                // Sent at once: THR is empty again, which is a THRE interrupt.
                self.thre_pending = true;
            }
            IER if dlab => self.dlm = v,
            IER => {
                let was = self.ier;
                self.ier = v & 0x0f;
                // Enabling THRE interrupts with THR empty raises one at once
                // (Linux's 8250 driver relies on this, and probes for it).
                if was & IER_THRE == 0 && self.ier & IER_THRE != 0 {
                    self.thre_pending = true;
                }
            }
            IIR_FCR => {
                let enable = v & FCR_ENABLE != 0;
                if enable != self.fifo_enabled || v & FCR_CLEAR_RX != 0 {
                    self.rx_len = 0;
                    self.rx_head = 0;
                }
                // FCR_CLEAR_TX: the transmitter is always empty already.
                let _ = FCR_CLEAR_TX;
                self.fifo_enabled = enable;
            }
            LCR => self.lcr = v,
            MCR => {
                let before = self.msr_lines();
                self.mcr = v & 0x1f;
                let after = self.msr_lines();
                self.note_msr_change(before, after);
            }
            LSR | MSR => {} // read-only (factory test registers on real parts)
            SCR => self.scr = v,
            _ => unreachable!("offset masked to 0-7"),
        }
    }

    /// Record MSR delta bits for a change of the modem-status lines.
    fn note_msr_change(&mut self, before: u8, after: u8) {
        let changed = before ^ after;
        if changed & MSR_CTS != 0 {
            self.msr_delta |= MSR_DCTS;
        }
        if changed & MSR_DSR != 0 {
            self.msr_delta |= MSR_DDSR;
        }
        if changed & MSR_DCD != 0 {
            self.msr_delta |= MSR_DDCD;
        }
        // TERI: trailing edge of RI only (§8.9).
        if before & MSR_RI != 0 && after & MSR_RI == 0 {
            self.msr_delta |= MSR_TERI;
        }
    }

    fn push_rx(&mut self, b: u8) -> bool {
        if self.rx_len == RX_FIFO || (!self.fifo_enabled && self.rx_len == 1) {
            self.lsr_errors |= LSR_OE;
            return false;
        }
        let tail = (self.rx_head + self.rx_len) % RX_FIFO;
        self.rx[tail] = b;
        self.rx_len += 1;
        true
    }

    /// Would a terminal with RTS/CTS flow control send a byte now: RTS
    /// asserted (a driver has opened the port: Linux's 8250 sets DTR and
    /// RTS at startup, after clearing the FIFOs) and room in the receiver
    /// (not in loopback)? Sending only then never causes an overrun.
    pub fn has_room(&self) -> bool {
        !self.loopback() && self.mcr & MCR_RTS != 0 && self.rx_len < if self.fifo_enabled { RX_FIFO } else { 1 }
    }

    /// A byte arrives on the serial line; false if it was lost (overrun).
    pub fn receive(&mut self, b: u8) -> bool {
        if self.loopback() {
            return false; // the receiver is disconnected from the line in loopback
        }
        self.push_rx(b)
    }

    fn transmit(&mut self, b: u8) {
        if self.out_len == OUT_CAP {
            self.dropped += 1;
            return;
        }
        self.out[self.out_len] = b;
        self.out_len += 1;
    }

    /// Hand out every complete line of output (without its `\n`, and
    /// without a `\r` before it), and pieces of [`LINE_MAX`] bytes of a
    /// longer unfinished line.
    pub fn drain_lines(&mut self, f: &mut dyn FnMut(&[u8])) {
        let mut start = 0;
        loop {
            let rest = &self.out[start..self.out_len];
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) if i <= LINE_MAX => {
                    let mut line = &rest[..i];
                    if let Some((&b'\r', l)) = line.split_last() {
                        line = l;
                    }
                    f(line);
                    start += i + 1;
                }
                _ if rest.len() >= LINE_MAX => {
                    f(&rest[..LINE_MAX]);
                    start += LINE_MAX;
                }
                _ => break,
            }
        }
        self.out.copy_within(start..self.out_len, 0);
        self.out_len -= start;
    }

    /// Hand out whatever is left, including an unfinished last line.
    pub fn flush(&mut self, f: &mut dyn FnMut(&[u8])) {
        self.drain_lines(f);
        if self.out_len > 0 {
            f(&self.out[..self.out_len]);
            self.out_len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn lines(u: &mut Uart) -> Vec<String> {
        let mut v = Vec::new();
        u.drain_lines(&mut |l| v.push(String::from_utf8_lossy(l).into_owned()));
        v
    }

    fn put(u: &mut Uart, s: &str) {
        for b in s.bytes() {
            u.write(0, b);
        }
    }

    #[test]
    fn reset_state_matches_the_datasheet() {
        let mut u = Uart::new();
        assert_eq!(u.read(LSR), LSR_THRE | LSR_TEMT, "THRE and TEMT set, no data");
        assert_eq!(u.read(IIR_FCR), IIR_NONE);
        assert_eq!(u.read(IER), 0);
        assert_eq!(u.read(MCR), 0);
        assert_eq!(u.read(RBR_THR), 0, "reading an empty receiver gives 0");
        assert!(!u.irq_line());
    }

    #[test]
    fn output_comes_out_line_by_line() {
        let mut u = Uart::new();
        put(&mut u, "guest: real mode\r\nsecond");
        assert_eq!(lines(&mut u), ["guest: real mode"]);
        put(&mut u, " half\n\n");
        assert_eq!(lines(&mut u), ["second half", ""]);
        put(&mut u, "tail");
        assert!(lines(&mut u).is_empty());
        let mut rest = Vec::new();
        u.flush(&mut |l| rest.push(l.to_vec()));
        assert_eq!(rest, [b"tail".to_vec()]);
    }

    #[test]
    fn long_lines_are_split_and_a_full_buffer_drops() {
        let mut u = Uart::new();
        for _ in 0..(LINE_MAX * 2 + 5) {
            u.write(0, b'x');
        }
        let l = lines(&mut u);
        assert_eq!(l.len(), 2);
        assert!(l.iter().all(|s| s.len() == LINE_MAX));
        for _ in 0..(OUT_CAP + 10) {
            u.write(0, b'y');
        }
        assert_eq!(u.dropped, 15, "5 left + OUT_CAP + 10 written, OUT_CAP kept");
    }

    #[test]
    fn dlab_switches_the_divisor_latch_in() {
        let mut u = Uart::new();
        u.write(LCR, 0x83); // DLAB, 8N1
        u.write(0, 0x01); // DLL: 115200 baud
        u.write(1, 0x00);
        assert_eq!(u.read(0), 1);
        u.write(LCR, 0x03);
        assert_eq!(u.read(IER), 0, "IER untouched by the DLM write");
        put(&mut u, "a\n");
        assert_eq!(lines(&mut u), ["a"], "the DLL write was not output");
    }

    #[test]
    fn thre_interrupt_follows_linux_8250_expectations() {
        let mut u = Uart::new();
        u.write(MCR, MCR_OUT2 | MCR_RTS | MCR_DTR);
        // Enabling THRI with THR empty raises THRE at once...
        u.write(IER, IER_THRE);
        assert!(u.irq_line());
        assert_eq!(u.read(IIR_FCR) & 0x0f, IIR_THRE);
        // ...reading IIR cleared it...
        assert_eq!(u.read(IIR_FCR) & 0x0f, IIR_NONE);
        assert!(!u.irq_line());
        // ...and toggling THRI re-asserts it (no UART_BUG_THRE).
        u.write(IER, 0);
        u.write(IER, IER_THRE);
        assert_eq!(u.read(IIR_FCR) & 0x0f, IIR_THRE);
        // Each transmitted byte leaves THR empty: THRE pending again.
        u.write(0, b'z');
        assert!(u.irq_line());
        // Without OUT2 the line never reaches the PIC.
        u.write(MCR, 0);
        assert!(!u.irq_line());
    }

    #[test]
    fn fifo_bits_in_iir() {
        let mut u = Uart::new();
        u.write(IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX | FCR_CLEAR_TX);
        assert_eq!(u.read(IIR_FCR), IIR_FIFOS | IIR_NONE, "16550A identification: FIFOs enabled");
        u.write(IIR_FCR, 0);
        assert_eq!(u.read(IIR_FCR), IIR_NONE);
    }

    #[test]
    fn loopback_probe_as_the_8250_driver_does_it() {
        let mut u = Uart::new();
        // autoconfig: MCR = LOOP | OUT2 | RTS; MSR & 0xf0 must be DCD | CTS.
        u.write(MCR, MCR_LOOP | 0x0a);
        assert_eq!(u.read(MSR) & 0xf0, 0x90);
        // Looped-back bytes arrive in RBR instead of the output.
        u.write(0, 0x55);
        assert_eq!(u.read(LSR) & LSR_DR, LSR_DR);
        assert_eq!(u.read(0), 0x55);
        assert_eq!(u.read(LSR) & LSR_DR, 0);
        u.write(MCR, 0);
        assert!(lines(&mut u).is_empty());
        let mut rest = Vec::new();
        u.flush(&mut |l| rest.push(l.to_vec()));
        assert!(rest.is_empty());
        // Leaving loopback changed the lines: delta bits, cleared by the read.
        assert_ne!(u.read(MSR) & 0x0f, 0);
        assert_eq!(u.read(MSR) & 0x0f, 0);
        assert_eq!(u.read(MSR) & 0xf0, 0xb0, "a connected terminal: DCD, DSR, CTS");
    }

    #[test]
    fn receive_path_and_overrun() {
        let mut u = Uart::new();
        u.write(IER, IER_RDA | IER_RLS);
        u.write(MCR, MCR_OUT2);
        assert!(u.receive(b'a'));
        assert!(!u.receive(b'b'), "no FIFO: one byte holding register");
        // Overrun error has the highest priority; reading LSR clears it.
        assert_eq!(u.read(IIR_FCR), IIR_RLS);
        assert_eq!(u.read(LSR), LSR_THRE | LSR_TEMT | LSR_DR | LSR_OE);
        assert_eq!(u.read(IIR_FCR), IIR_RDA);
        assert_eq!(u.read(0), b'a');
        assert_eq!(u.read(IIR_FCR), IIR_NONE);
        u.write(IIR_FCR, FCR_ENABLE);
        for i in 0..RX_FIFO {
            assert!(u.receive(i as u8));
        }
        assert!(!u.receive(0xff));
        assert_eq!(u.read(0), 0);
    }

    #[test]
    fn scratch_register_and_hostile_offsets() {
        let mut u = Uart::new();
        u.write(SCR, 0xa5);
        assert_eq!(u.read(SCR), 0xa5);
        for off in 0..64u16 {
            for v in [0u8, 0xff, 0x80, 0x10] {
                u.write(off, v);
                let _ = u.read(off);
            }
        }
        let _ = u.irq_line();
    }
}
