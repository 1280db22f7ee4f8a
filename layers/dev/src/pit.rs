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

/// Busy-wait `ms` milliseconds (at most 50 per step) by counting channel 2 down.
pub fn wait_ms(ms: u32) {
    let mut left = ms;
    while left > 0 {
        let step = left.min(50);
        wait_one(PIT_HZ / 1000 * step);
        left -= step;
    }
}

fn wait_one(count: u32) {
    // SAFETY: channel 2 and port 0x61 belong to the kernel (the speaker is kept
    // off); mode 0 raises OUT2 once the count reaches zero.
    unsafe {
        let b = inb(PORT_B);
        outb(PORT_B, (b & !PORTB_SPEAKER) & !PORTB_GATE2);
        outb(PORT_CMD, CMD_CH2_MODE0);
        outb(PORT_CH2, count as u8);
        outb(PORT_CH2, (count >> 8) as u8);
        outb(PORT_B, (b & !PORTB_SPEAKER) | PORTB_GATE2);
        while inb(PORT_B) & PORTB_OUT2 == 0 {
            machine::x86::pause();
        }
        outb(PORT_B, b & !PORTB_SPEAKER & !PORTB_GATE2);
    }
}
