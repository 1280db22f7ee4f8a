//! 8254 programmable interval timer, used only as a reference clock to
//! calibrate the local APIC timer and the TSC (Intel 8254 data sheet; PC port
//! 0x61 bits from the IBM PC/AT technical reference).

use machine::x86::{inb, outb};

/// Input clock of the PIT, Hz.
pub const PIT_HZ: u32 = 1_193_182;

const PORT_CH2: u16 = 0x42;
const PORT_CMD: u16 = 0x43;
const PORT_B: u16 = 0x61;
const PORTB_GATE2: u8 = 1 << 0;
const PORTB_SPEAKER: u8 = 1 << 1;
const PORTB_OUT2: u8 = 1 << 5;
/// Channel 2, access lobyte/hibyte, mode 0 (interrupt on terminal count), binary.
const CMD_CH2_MODE0: u8 = 0b1011_0000;

/// Channel 2 counter latch command (8254 data sheet, "Counter Latch Command":
/// SC = 10, RW = 00): the next two reads of port 0x42 give the count at
/// the moment of the latch, low byte first.
const CMD_CH2_LATCH: u8 = 0b1000_0000;

/// Longest window [`count`] can measure: the 16-bit counter's period
/// (65,536 counts, 54.9 ms) less a margin.
pub const MAX_WINDOW_MS: u32 = 50;

/// PIT counts in `ms` milliseconds (rounded to the nearest count).
pub const fn counts_in_ms(ms: u32) -> u32 {
    ((PIT_HZ as u64 * ms as u64 + 500) / 1000) as u32
}

/// Busy-wait `ms` milliseconds (at most 50 per step) by counting channel 2 down.
pub fn wait_ms(ms: u32) {
    let mut left = ms;
    while left > 0 {
        let step = left.min(MAX_WINDOW_MS);
        wait_one(counts_in_ms(step) as u16);
        left -= step;
    }
}

fn wait_one(count: u16) {
    start(count);
    // SAFETY: reading port 0x61 has no side effect; mode 0 raises OUT2 once
    // the count reaches zero.
    while unsafe { inb(PORT_B) } & PORTB_OUT2 == 0 {
        machine::x86::pause();
    }
    stop();
}

/// Load channel 2 with `count` in mode 0 and open its gate: it counts down
/// from there (OUT2 rises at zero) and goes on past zero, wrapping.
fn start(count: u16) {
    // SAFETY: channel 2 and port 0x61 belong to the kernel (the speaker is
    // kept off).
    unsafe {
        let b = inb(PORT_B);
        outb(PORT_B, (b & !PORTB_SPEAKER) & !PORTB_GATE2);
        outb(PORT_CMD, CMD_CH2_MODE0);
        outb(PORT_CH2, count as u8);
        outb(PORT_CH2, (count >> 8) as u8);
        outb(PORT_B, (b & !PORTB_SPEAKER) | PORTB_GATE2);
    }
}

/// Start channel 2 counting down from 0xffff, free running, for [`count`]
/// to read; [`stop`] ends it.
pub fn start_counting() {
    start(0xffff);
}

/// Channel 2's count now (it counts down; differences are taken modulo
/// 2^16, so windows up to [`MAX_WINDOW_MS`] are unambiguous).
pub fn count() -> u16 {
    // SAFETY: latching and reading channel 2 only reads the kernel's own
    // counter; the latch holds the value until both bytes are read.
    unsafe {
        outb(PORT_CMD, CMD_CH2_LATCH);
        let lo = inb(PORT_CH2);
        let hi = inb(PORT_CH2);
        u16::from_le_bytes([lo, hi])
    }
}

/// Stop channel 2 (gate off).
pub fn stop() {
    // SAFETY: as in `start`.
    unsafe {
        let b = inb(PORT_B);
        outb(PORT_B, b & !PORTB_SPEAKER & !PORTB_GATE2);
    }
}
