//! The 8254 programmable interval timer (Intel 8254 datasheet, order
//! 231164) at 0x40-0x43, and the PC's port 0x61 (NMI status and control:
//! channel 2's gate and output, speaker enable, refresh toggle).
//!
//! Time is the host TSC: the model is given the TSC rate once and `now` (a
//! TSC value) at each access, and computes the counter from the time the
//! count was loaded, as a real counter clocked at 1.193182 MHz would show
//! it. Channel 0's OUT drives IRQ 0: [`Pit::advance`] says whether it rose
//! since the last call and [`Pit::next_irq_tsc`] when it will next rise, so
//! the VMM can wake the guest on time.
//!
//! Modelled: modes 0-5 (6 and 7 alias 2 and 3), LSB/MSB/word access with the
//! two-byte read and write sequences, the counter-latch command, the
//! read-back command (count and status, §"Read-Back Command"), BCD counting,
//! gate behaviour per mode (inhibit in 0/4, trigger in 1/5, restart in 2/3),
//! and the null-count status bit. Simplifications: a new count is used at
//! once (a real 8254 in modes 2/3 waits for the current period to end), and
//! the one-clock delay before counting starts is not modelled; mode 3 with
//! an odd count uses the even-count timing. Channels 0 and 1 have their
//! gates tied high, as on the PC.

use crate::{mul_div, mul_div_ceil};

/// The PC's PIT input clock, Hz (14.31818 MHz / 12).
pub const PIT_HZ: u64 = 1_193_182;

pub const CH0: u16 = 0x40;
pub const CH2: u16 = 0x42;
pub const CMD: u16 = 0x43;
/// PC "NMI status and control" (AT: port B of the 8255 on the XT).
pub const PORT_61: u16 = 0x61;

// Port 0x61 bits.
const P61_GATE2: u8 = 0x01;
const P61_SPEAKER: u8 = 0x02;
const P61_REFRESH: u8 = 0x10;
const P61_OUT2: u8 = 0x20;
/// DRAM refresh toggles bit 4 every 15.085 us on the PC/AT.
const REFRESH_NS: u64 = 15_085;

/// Where a two-byte read or write sequence stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Lsb,
    Msb,
    /// Word access, low byte next.
    Word0,
    /// Word access, high byte next.
    Word1,
}

impl Access {
    fn from_rw(rw: u8) -> Access {
        match rw {
            1 => Access::Lsb,
            2 => Access::Msb,
            _ => Access::Word0,
        }
    }
}

/// One counter.
#[derive(Clone, Debug)]
pub struct Channel {
    /// Initial count as a number of clocks (a written 0 means 0x10000, or
    /// 10000 in BCD).
    count: u64,
    /// A count was written since the last control word.
    armed: bool,
    null_count: bool,
    rw: u8,
    read_state: Access,
    write_state: Access,
    write_latch: u8,
    /// Latched count and which byte of it comes next.
    latched: Option<(u16, Access)>,
    status_latch: Option<u8>,
    mode: u8,
    bcd: bool,
    gate: bool,
    /// TSC at which counting (re)started.
    load: u64,
    /// Counting inhibited since this TSC (gate low).
    frozen: Option<u64>,
    /// Modes 1 and 5: a gate trigger started the count.
    triggered: bool,
    /// The last OUT rising edge already reported, in clocks since `load`
    /// (0: none; edges are at 1 or later).
    edge_done: u64,
}

impl Channel {
    fn new(gate: bool) -> Channel {
        Channel {
            count: 0x10000,
            armed: false,
            null_count: true,
            rw: 3,
            read_state: Access::Word0,
            write_state: Access::Word0,
            write_latch: 0,
            latched: None,
            status_latch: None,
            mode: 0,
            bcd: false,
            gate,
            load: 0,
            frozen: None,
            triggered: false,
            edge_done: 0,
        }
    }

    fn modulus(&self) -> u64 {
        if self.bcd {
            10_000
        } else {
            0x10000
        }
    }

    fn one_shot_edge(&self) -> Option<u64> {
        match self.mode {
            0 => Some(self.count),
            1 if self.triggered => Some(self.count),
            4 => Some(self.count + 1),
            5 if self.triggered => Some(self.count + 1),
            _ => None,
        }
    }

    /// The first OUT rising edge after clock `after`.
    fn next_edge(&self, after: u64) -> Option<u64> {
        if !self.armed || self.frozen.is_some() {
            return None;
        }
        match self.mode {
            2 | 3 => Some((after / self.count).saturating_add(1).saturating_mul(self.count)),
            _ => self.one_shot_edge().filter(|&e| e > after),
        }
    }
}

/// The three counters plus port 0x61.
#[derive(Clone, Debug)]
pub struct Pit {
    pub ch: [Channel; 3],
    /// TSC ticks per millisecond.
    tsc_per_ms: u64,
    /// Port 0x61 bits 0-3 as written (gate 2, speaker data, and the two
    /// NMI source enables, which have no source here).
    p61: u8,
}

fn to_bcd(v: u64) -> u16 {
    let v = v % 10_000;
    ((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | (v % 10)) as u16
}

fn from_bcd(raw: u16) -> u64 {
    let d = |s: u16| ((raw >> s) & 0xf).min(9) as u64;
    d(12) * 1000 + d(8) * 100 + d(4) * 10 + d(0)
}

impl Pit {
    /// An 8254 at power-up: no channel counts (no IRQ 0 until the guest
    /// programs channel 0), channel 2's gate low.
    pub fn new(tsc_per_ms: u64) -> Pit {
        Pit { ch: [Channel::new(true), Channel::new(true), Channel::new(false)], tsc_per_ms: tsc_per_ms.max(1), p61: 0 }
    }

    fn tsc_hz(&self) -> u64 {
        self.tsc_per_ms.saturating_mul(1000)
    }

    /// Clocks counted by channel `i` by `now` since its count was loaded.
    fn elapsed(&self, i: usize, now: u64) -> u64 {
        let c = &self.ch[i];
        let end = c.frozen.unwrap_or(now);
        mul_div(end.saturating_sub(c.load), PIT_HZ, self.tsc_hz())
    }

    /// The counting element of channel `i` now (binary, or BCD-coded).
    fn counter(&self, i: usize, now: u64) -> u16 {
        let c = &self.ch[i];
        let m = c.modulus();
        let v = if !c.armed || (matches!(c.mode, 1 | 5) && !c.triggered) {
            c.count % m
        } else {
            let d = self.elapsed(i, now);
            let v = match c.mode {
                2 => c.count - d % c.count,
                3 => c.count - (2 * (d % c.count)) % c.count,
                // 0, 1, 4, 5: counts down and wraps past zero.
                _ => (c.count + m - d % m) % m,
            };
            v % m
        };
        if c.bcd {
            to_bcd(v)
        } else {
            v as u16
        }
    }

    /// OUT of channel `i` now.
    pub fn out(&self, i: usize, now: u64) -> bool {
        let c = &self.ch[i];
        if !c.armed {
            return c.mode != 0; // mode 0: low after the control word; others high
        }
        if matches!(c.mode, 2 | 3) && !c.gate {
            return true;
        }
        let d = self.elapsed(i, now);
        match c.mode {
            0 => d >= c.count,
            1 => !c.triggered || d >= c.count,
            2 => c.count < 2 || d % c.count != c.count - 1,
            3 => d % c.count < c.count.div_ceil(2),
            4 => d != c.count,
            _ => !c.triggered || d != c.count,
        }
    }

    fn status(&self, i: usize, now: u64) -> u8 {
        let c = &self.ch[i];
        (self.out(i, now) as u8) << 7 | (c.null_count as u8) << 6 | c.rw << 4 | c.mode << 1 | c.bcd as u8
    }

    fn latch_count(&mut self, i: usize, now: u64) {
        if self.ch[i].latched.is_none() {
            let v = self.counter(i, now);
            let c = &mut self.ch[i];
            c.latched = Some((v, Access::from_rw(c.rw)));
        }
    }

    fn control(&mut self, v: u8, now: u64) {
        let sc = (v >> 6) as usize;
        if sc == 3 {
            // Read-back: bit 5 low latches counts, bit 4 low latches status.
            for i in 0..3 {
                if v & (2 << i) == 0 {
                    continue;
                }
                if v & 0x20 == 0 {
                    self.latch_count(i, now);
                }
                if v & 0x10 == 0 && self.ch[i].status_latch.is_none() {
                    self.ch[i].status_latch = Some(self.status(i, now));
                }
            }
            return;
        }
        let rw = (v >> 4) & 3;
        if rw == 0 {
            self.latch_count(sc, now);
            return;
        }
        let mut mode = (v >> 1) & 7;
        if mode > 5 {
            mode -= 4;
        }
        let c = &mut self.ch[sc];
        c.rw = rw;
        c.mode = mode;
        c.bcd = v & 1 != 0;
        c.read_state = Access::from_rw(rw);
        c.write_state = Access::from_rw(rw);
        c.latched = None;
        c.status_latch = None;
        c.armed = false;
        c.null_count = true;
        c.frozen = None;
        c.triggered = false;
        c.edge_done = 0;
    }

    fn load(&mut self, i: usize, raw: u16, now: u64) {
        let c = &mut self.ch[i];
        let n = if c.bcd { from_bcd(raw) } else { raw as u64 };
        c.count = if n == 0 { c.modulus() } else { n };
        c.armed = true;
        c.null_count = false;
        c.load = now;
        c.edge_done = 0;
        c.triggered = false;
        c.frozen = if !c.gate && matches!(c.mode, 0 | 2 | 3 | 4) { Some(now) } else { None };
    }

    fn set_gate(&mut self, i: usize, level: bool, now: u64) {
        let c = &mut self.ch[i];
        if c.gate == level {
            return;
        }
        c.gate = level;
        match c.mode {
            0 | 4 => {
                if !level {
                    c.frozen = Some(now);
                } else if let Some(f) = c.frozen.take() {
                    c.load = c.load.saturating_add(now.saturating_sub(f));
                }
            }
            2 | 3 => {
                if !level {
                    c.frozen = Some(now);
                } else {
                    c.frozen = None;
                    c.load = now;
                    c.edge_done = 0;
                }
            }
            _ => {
                if level {
                    c.triggered = true;
                    c.load = now;
                    c.edge_done = 0;
                }
            }
        }
    }

    /// Is `port` the PIT's or port 0x61?
    pub fn claims(port: u16) -> bool {
        matches!(port, CH0..=CMD | PORT_61)
    }

    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        match port {
            CH0..=CH2 => {
                let i = (port - CH0) as usize;
                if let Some(s) = self.ch[i].status_latch.take() {
                    return s;
                }
                if let Some((v, st)) = self.ch[i].latched {
                    let c = &mut self.ch[i];
                    return match st {
                        Access::Lsb => {
                            c.latched = None;
                            v as u8
                        }
                        Access::Msb | Access::Word1 => {
                            c.latched = None;
                            (v >> 8) as u8
                        }
                        Access::Word0 => {
                            c.latched = Some((v, Access::Word1));
                            v as u8
                        }
                    };
                }
                let v = self.counter(i, now);
                let c = &mut self.ch[i];
                match c.read_state {
                    Access::Lsb => v as u8,
                    Access::Msb => (v >> 8) as u8,
                    Access::Word0 => {
                        c.read_state = Access::Word1;
                        v as u8
                    }
                    Access::Word1 => {
                        c.read_state = Access::Word0;
                        (v >> 8) as u8
                    }
                }
            }
            PORT_61 => {
                let ns = mul_div(now, 1_000_000, self.tsc_per_ms);
                let refresh = if (ns / REFRESH_NS) & 1 != 0 { P61_REFRESH } else { 0 };
                let out2 = if self.out(2, now) { P61_OUT2 } else { 0 };
                (self.p61 & 0x0f) | refresh | out2
            }
            _ => 0xff, // the control word register cannot be read (8254: no-op)
        }
    }

    pub fn write(&mut self, port: u16, v: u8, now: u64) {
        match port {
            CH0..=CH2 => {
                let i = (port - CH0) as usize;
                match self.ch[i].write_state {
                    Access::Lsb => self.load(i, v as u16, now),
                    Access::Msb => self.load(i, (v as u16) << 8, now),
                    Access::Word0 => {
                        let c = &mut self.ch[i];
                        c.write_latch = v;
                        c.write_state = Access::Word1;
                        // Mode 0: writing the first byte stops the count
                        // and sets OUT low until the second arrives.
                        if c.mode == 0 {
                            c.armed = false;
                        }
                    }
                    Access::Word1 => {
                        let lo = self.ch[i].write_latch as u16;
                        self.ch[i].write_state = Access::Word0;
                        self.load(i, lo | (v as u16) << 8, now);
                    }
                }
            }
            CMD => self.control(v, now),
            PORT_61 => {
                self.p61 = v & 0x0f;
                self.set_gate(2, v & P61_GATE2 != 0, now);
            }
            _ => {}
        }
    }

    /// Is the speaker on (gate 2 and speaker data both set)?
    pub fn speaker_on(&self) -> bool {
        self.p61 & (P61_GATE2 | P61_SPEAKER) == P61_GATE2 | P61_SPEAKER
    }

    /// Did channel 0's OUT rise since the last call (an IRQ 0 edge)?
    /// Several periods missed count as one edge, as an edge-triggered PIC
    /// input would see them.
    pub fn advance(&mut self, now: u64) -> bool {
        let d = self.elapsed(0, now);
        let c = &self.ch[0];
        match c.next_edge(c.edge_done) {
            Some(e) if e <= d => {
                let last = if matches!(c.mode, 2 | 3) { d / c.count * c.count } else { e };
                self.ch[0].edge_done = last;
                true
            }
            _ => false,
        }
    }

    /// TSC value at which channel 0's OUT rises next (IRQ 0), if it will.
    pub fn next_irq_tsc(&self) -> Option<u64> {
        let c = &self.ch[0];
        let e = c.next_edge(c.edge_done)?;
        Some(c.load.saturating_add(mul_div_ceil(e, self.tsc_hz(), PIT_HZ)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TSC at 1000 times the PIT's clock (1.19 GHz): conversions are exact.
    const TPMS: u64 = PIT_HZ;

    fn tsc_of_clocks(c: u64) -> u64 {
        mul_div_ceil(c, TPMS * 1000, PIT_HZ)
    }

    #[test]
    fn no_interrupts_until_programmed() {
        let mut p = Pit::new(TPMS);
        assert!(!p.advance(1 << 40));
        assert_eq!(p.next_irq_tsc(), None);
    }

    #[test]
    fn mode2_rate_generator_at_100hz() {
        let mut p = Pit::new(TPMS);
        let t0 = 5_000;
        let div = (PIT_HZ / 100) as u16; // 11931
        p.write(CMD, 0x34, t0); // ch0, word, mode 2, binary
        p.write(CH0, div as u8, t0);
        p.write(CH0, (div >> 8) as u8, t0);
        let first = p.next_irq_tsc().unwrap();
        assert_eq!(first, t0 + tsc_of_clocks(div as u64));
        assert!((first - t0).abs_diff(10 * TPMS) < TPMS / 100, "about 10 ms");
        assert!(!p.advance(first - 1));
        assert!(p.advance(first));
        assert!(!p.advance(first), "one edge per period");
        let second = p.next_irq_tsc().unwrap();
        assert_eq!(second, t0 + tsc_of_clocks(2 * div as u64));
        // Missing five periods gives one edge, then the schedule goes on.
        let late = t0 + tsc_of_clocks(7 * div as u64) + 10;
        assert!(p.advance(late));
        assert_eq!(p.next_irq_tsc().unwrap(), t0 + tsc_of_clocks(8 * div as u64));
        // The counter counts down from the divisor and reloads.
        let mid = t0 + tsc_of_clocks(100);
        let mut q = p.clone();
        q.write(CMD, 0x00, mid); // latch channel 0
        let lo = q.read(CH0, mid) as u16;
        let hi = q.read(CH0, mid) as u16;
        assert_eq!(lo | hi << 8, div - 100);
        // OUT is low for exactly the clock where the counter is 1.
        assert!(!p.out(0, t0 + tsc_of_clocks(div as u64 - 1)));
        assert!(p.out(0, t0 + tsc_of_clocks(div as u64)));
    }

    #[test]
    fn mode3_square_wave_and_mode0_one_shot_on_channel_0() {
        let mut p = Pit::new(TPMS);
        p.write(CMD, 0x36, 0); // mode 3
        p.write(CH0, 0, 0);
        p.write(CH0, 0, 0); // 0 = 65536: the BIOS's 18.2 Hz
        assert!(p.out(0, tsc_of_clocks(100)));
        assert!(!p.out(0, tsc_of_clocks(40000)));
        assert_eq!(p.next_irq_tsc(), Some(tsc_of_clocks(65536)));
        p.write(CMD, 0x30, 0); // mode 0
        assert!(!p.out(0, 0), "OUT low after the control word");
        assert_eq!(p.next_irq_tsc(), None, "no count yet");
        p.write(CH0, 0x10, 0);
        p.write(CH0, 0x00, 0);
        assert_eq!(p.next_irq_tsc(), Some(tsc_of_clocks(16)));
        assert!(p.advance(tsc_of_clocks(20)));
        assert!(p.out(0, tsc_of_clocks(20)));
        assert_eq!(p.next_irq_tsc(), None, "one shot");
        assert!(!p.advance(tsc_of_clocks(1_000_000)));
    }

    /// Linux's `pit_calibrate_tsc` (arch/x86/kernel/tsc.c): channel 2 in
    /// mode 0 gated through port 0x61, polled until OUT2 (bit 5) rises.
    #[test]
    fn linux_pit_calibrate_tsc() {
        let mut p = Pit::new(TPMS);
        let mut now = 1_000_000;
        let latch: u16 = (PIT_HZ / (1000 / 10)) as u16; // 10 ms
        let v = p.read(PORT_61, now);
        p.write(PORT_61, (v & !0x02) | 0x01, now);
        p.write(CMD, 0xb0, now); // ch2, word, mode 0, binary
        p.write(CH2, latch as u8, now);
        p.write(CH2, (latch >> 8) as u8, now);
        let start = now;
        let mut loops = 0u64;
        while p.read(PORT_61, now) & 0x20 == 0 {
            now += 1_000; // under a microsecond per poll (a VM exit each)
            loops += 1;
            assert!(loops < 1_000_000, "OUT2 never rose");
        }
        let ms = (now - start) as f64 / TPMS as f64;
        assert!((ms - 10.0).abs() < 0.01, "terminal count after {ms} ms");
        assert!(loops >= 1000, "enough loops for Linux's sanity check");
        // The speaker stays off: only the gate was set.
        assert!(!p.speaker_on());
    }

    /// Linux's `quick_pit_calibrate`: channel 2 mode 0 from 0xffff, reading
    /// LSB then MSB (unlatched) and expecting the MSB to step down every
    /// 256 clocks.
    #[test]
    fn linux_quick_pit_calibrate_msb_sequence() {
        let mut p = Pit::new(TPMS);
        let now = 777;
        let v = p.read(PORT_61, now);
        p.write(PORT_61, (v & !0x02) | 0x01, now);
        p.write(CMD, 0xb0, now);
        p.write(CH2, 0xff, now);
        p.write(CH2, 0xff, now);
        for i in 0..200u64 {
            // Middle of the window where the MSB should read 0xff - i.
            let t = now + tsc_of_clocks(256 * i + 128);
            let _lsb = p.read(CH2, t);
            let msb = p.read(CH2, t);
            assert_eq!(msb as u64, 0xff - i, "at step {i}");
        }
    }

    #[test]
    fn gate_low_inhibits_mode0_and_restarts_mode2() {
        let mut p = Pit::new(TPMS);
        p.write(CMD, 0xb0, 0);
        p.write(CH2, 100, 0);
        p.write(CH2, 0, 0);
        // Gate low (the reset state): nothing counts.
        assert!(!p.out(2, tsc_of_clocks(500)));
        p.write(PORT_61, 1, tsc_of_clocks(500));
        assert!(!p.out(2, tsc_of_clocks(599)));
        assert!(p.out(2, tsc_of_clocks(601)));
        // Mode 2 on channel 2: a rising gate reloads the count.
        p.write(CMD, 0xb4, 0);
        p.write(CH2, 10, 0);
        p.write(CH2, 0, 0);
        p.write(PORT_61, 0, tsc_of_clocks(5));
        assert!(p.out(2, tsc_of_clocks(9)), "gate low forces OUT high");
        p.write(PORT_61, 1, tsc_of_clocks(1000));
        p.write(CMD, 0x80, tsc_of_clocks(1003)); // latch ch2
        assert_eq!(p.read(CH2, 0) as u16 | (p.read(CH2, 0) as u16) << 8, 7);
    }

    #[test]
    fn read_back_status_and_lsb_msb_modes() {
        let mut p = Pit::new(TPMS);
        p.write(CMD, 0x14, 0); // ch0, LSB only, mode 2
        let st = |p: &mut Pit| {
            p.write(CMD, 0xe2, 0); // read-back status of ch0 (bit 5 set: no count)
            p.read(CH0, 0)
        };
        assert_eq!(st(&mut p) & 0x7f, 0x40 | 0x10 | 0x04, "null count, LSB, mode 2");
        p.write(CH0, 50, 0);
        assert_eq!(st(&mut p) & 0x40, 0, "count loaded");
        assert_eq!(p.read(CH0, tsc_of_clocks(10)), 40);
        assert_eq!(p.read(CH0, tsc_of_clocks(10)), 40, "LSB mode reads one byte each time");
        // Read-back of count and status together: status first, then count.
        p.write(CMD, 0xc2, tsc_of_clocks(20));
        assert_eq!(p.read(CH0, 0) & 0x0f, 0x04);
        assert_eq!(p.read(CH0, 0), 30);
        // MSB-only with a latched count.
        p.write(CMD, 0x26, 0); // ch0, MSB, mode 3
        p.write(CH0, 0x02, 0); // 0x200
        p.write(CMD, 0x00, tsc_of_clocks(0x40)); // latch
        assert_eq!(p.read(CH0, tsc_of_clocks(0x150)), 0x01, "latched 0x200 - 2*0x40 = 0x180");
    }

    #[test]
    fn bcd_counting() {
        let mut p = Pit::new(TPMS);
        p.write(CMD, 0x31, 0); // ch0, word, mode 0, BCD
        p.write(CH0, 0x00, 0);
        p.write(CH0, 0x10, 0); // 1000 decimal
        p.write(CMD, 0x00, tsc_of_clocks(1));
        assert_eq!((p.read(CH0, 0), p.read(CH0, 0)), (0x99, 0x09), "999 in BCD");
        assert_eq!(p.next_irq_tsc(), Some(tsc_of_clocks(1000)));
    }

    #[test]
    fn hostile_sequences_do_not_panic() {
        let mut p = Pit::new(1);
        let mut x: u64 = 99;
        let mut now = 0u64;
        for _ in 0..50000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now = now.wrapping_add(x % 5000);
            let port = [CH0, 0x41, CH2, CMD, PORT_61][(x % 5) as usize];
            if x & 0x100 != 0 {
                p.write(port, (x >> 16) as u8, now);
            } else {
                let _ = p.read(port, now);
            }
            let _ = p.advance(now);
            let _ = p.next_irq_tsc();
        }
        let mut q = Pit::new(0);
        q.write(CMD, 0x34, u64::MAX);
        q.write(CH0, 1, u64::MAX);
        q.write(CH0, 0, u64::MAX);
        let _ = q.advance(0);
        let _ = q.next_irq_tsc();
    }
}
