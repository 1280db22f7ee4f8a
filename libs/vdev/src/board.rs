//! The virtual PC: I/O port decoding over the device models, the VMM's own
//! ports, and interrupt routing.
//!
//! | ports | device |
//! |---|---|
//! | 0x20-0x21, 0xa0-0xa1, 0x4d0-0x4d1 | 8259A pair, ELCR ([`crate::pic`]) |
//! | 0x40-0x43, 0x61 | 8254 PIT, port 0x61 ([`crate::pit`]) |
//! | 0x70-0x71 | MC146818 RTC/CMOS ([`crate::rtc`]) |
//! | 0x3f8-0x3ff | COM1 16550, IRQ 4 ([`crate::uart`]) |
//! | 0xcf8, 0xcfc-0xcff | PCI configuration mechanism #1 ([`crate::pci`]) |
//! | 0x501 | debug exit: a write ends the VM with the value as its status |
//! | 0x64 (0xfe), 0x92 (bit 0), 0xcf9 (bit 2) | reset requests: end the VM |
//! | 0x80 | POST codes / I/O delay: ignored |
//!
//! Every other port reads as all ones (an empty ISA bus: Linux's probes for
//! the i8042, COM2-4, the floppy controller, ... find nothing) and ignores
//! writes. Byte-wide devices accessed with a word or dword see consecutive
//! byte accesses at consecutive ports, as the ISA bus splits them.
//!
//! IRQ 0 is channel 0 of the PIT (edges), IRQ 4 the UART's INTR (gated by
//! OUT2); the RTC raises no IRQ 8 (see [`crate::rtc`]).

use crate::pci::PciHost;
use crate::pic::Pics;
use crate::pit::Pit;
use crate::rtc::Rtc;
use crate::uart::{Uart, COM1_BASE, COM1_IRQ};

/// The debug-exit port (the same port as QEMU's `isa-debug-exit` default).
pub const DEBUG_EXIT: u16 = 0x501;
/// 8042 keyboard controller command port; command 0xfe pulses reset.
pub const KBC_CMD: u16 = 0x64;
const KBC_RESET: u8 = 0xfe;
/// System control port A (PS/2): bit 0 fast reset, bit 1 A20.
pub const PORT_92: u16 = 0x92;
/// PIIX reset control register: bit 2 starts the reset (bit 1: hard).
pub const RESET_CONTROL: u16 = 0xcf9;
/// POST code port, also used for short I/O delays.
pub const POST: u16 = 0x80;

/// How the board is built.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// TSC ticks per millisecond (the time base of the PIT and the RTC).
    pub tsc_per_ms: u64,
    /// Guest RAM size (reported in the CMOS).
    pub ram_bytes: u64,
    /// Wall time at `now` (Unix seconds), for the RTC.
    pub epoch_unix: u64,
}

/// Something a port write asks of the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The guest wrote its exit status to the debug-exit port.
    Exit(u32),
    /// The guest asked for a machine reset through this port.
    Reset(u16),
}

/// The devices of the virtual PC.
#[derive(Clone, Debug)]
pub struct Board {
    pub uart: Uart,
    pub pic: Pics,
    pub pit: Pit,
    pub rtc: Rtc,
    pub pci: PciHost,
    port92: u8,
    /// The UART's INTR as last seen (IRQ 4 is driven on changes).
    uart_line: bool,
    /// Accesses to ports no device claims (reads and writes).
    pub unclaimed: u64,
}

impl Board {
    pub fn new(cfg: &Config, now: u64) -> Board {
        Board {
            uart: Uart::new(),
            pic: Pics::new(),
            pit: Pit::new(cfg.tsc_per_ms),
            rtc: Rtc::new(cfg.epoch_unix, now, cfg.tsc_per_ms, cfg.ram_bytes),
            pci: PciHost::new(),
            port92: 0x02, // A20 on
            uart_line: false,
            unclaimed: 0,
        }
    }

    /// Is `port` decoded by some device (or the VMM)?
    pub fn claims(port: u16) -> bool {
        Pics::claims(port)
            || Pit::claims(port)
            || Rtc::claims(port)
            || PciHost::claims(port)
            || (COM1_BASE..COM1_BASE + 8).contains(&port)
            || matches!(port, DEBUG_EXIT | KBC_CMD | PORT_92 | POST | RESET_CONTROL)
    }

    fn read8(&mut self, port: u16, now: u64) -> u8 {
        match port {
            p if Pics::claims(p) => self.pic.read(p),
            p if Pit::claims(p) => self.pit.read(p, now),
            p if Rtc::claims(p) => self.rtc.read(p, now),
            p if (COM1_BASE..COM1_BASE + 8).contains(&p) => self.uart.read(p - COM1_BASE),
            PORT_92 => self.port92,
            _ => {
                self.unclaimed += 1;
                0xff
            }
        }
    }

    fn write8(&mut self, port: u16, v: u8, now: u64) -> Option<Event> {
        match port {
            p if Pics::claims(p) => self.pic.write(p, v),
            p if Pit::claims(p) => self.pit.write(p, v, now),
            p if Rtc::claims(p) => self.rtc.write(p, v, now),
            p if (COM1_BASE..COM1_BASE + 8).contains(&p) => self.uart.write(p - COM1_BASE, v),
            KBC_CMD if v == KBC_RESET => return Some(Event::Reset(port)),
            PORT_92 => {
                if v & 1 != 0 && self.port92 & 1 == 0 {
                    return Some(Event::Reset(port));
                }
                self.port92 = v & 0x02;
            }
            KBC_CMD | POST => {}
            _ => self.unclaimed += 1,
        }
        None
    }

    /// IN of `size` bytes (1, 2 or 4; anything else reads as 1) at `port`.
    pub fn io_in(&mut self, port: u16, size: u8, now: u64) -> u32 {
        let size = if matches!(size, 1 | 2 | 4) { size } else { 1 };
        let v = if PciHost::claims(port) {
            self.pci.read(port, size)
        } else if port == DEBUG_EXIT || port == RESET_CONTROL {
            u32::MAX
        } else {
            let mut v = 0u32;
            for i in 0..size as u16 {
                v |= (self.read8(port.wrapping_add(i), now) as u32) << (8 * i);
            }
            v
        };
        self.update_irqs(now);
        if size == 4 {
            v
        } else {
            v & ((1 << (8 * size as u32)) - 1)
        }
    }

    /// OUT of `size` bytes of `value` at `port`.
    pub fn io_out(&mut self, port: u16, size: u8, value: u32, now: u64) -> Option<Event> {
        let size = if matches!(size, 1 | 2 | 4) { size } else { 1 };
        let value = if size == 4 { value } else { value & ((1 << (8 * size as u32)) - 1) };
        let ev = if port == DEBUG_EXIT {
            Some(Event::Exit(value))
        } else if port == RESET_CONTROL && size == 1 {
            // The PIIX's reset control register: bit 2 starts the reset.
            if value & 0x04 != 0 {
                Some(Event::Reset(port))
            } else {
                None
            }
        } else if PciHost::claims(port) {
            self.pci.write(port, size, value);
            None
        } else {
            let mut ev = None;
            for i in 0..size as u16 {
                ev = ev.or(self.write8(port.wrapping_add(i), (value >> (8 * i)) as u8, now));
            }
            ev
        };
        self.update_irqs(now);
        ev
    }

    /// Bring interrupt lines up to date at time `now`: PIT edges on IRQ 0,
    /// the UART's INTR on IRQ 4.
    pub fn update_irqs(&mut self, now: u64) {
        if self.pit.advance(now) {
            self.pic.pulse(0);
        }
        let u = self.uart.irq_line();
        if u != self.uart_line {
            self.uart_line = u;
            self.pic.set_irq(COM1_IRQ, u);
        }
    }

    /// The vector the PIC pair would deliver now, if any.
    pub fn pending_vector(&self) -> Option<u8> {
        self.pic.pending_vector()
    }

    /// The interrupt-acknowledge cycle: the vector to inject.
    pub fn acknowledge(&mut self) -> u8 {
        self.pic.acknowledge()
    }

    /// When the board next needs attention (TSC): the next IRQ 0 edge.
    pub fn next_deadline(&self) -> Option<u64> {
        self.pit.next_irq_tsc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TPMS: u64 = crate::pit::PIT_HZ; // 1000 TSC ticks per PIT clock

    fn board() -> Board {
        Board::new(&Config { tsc_per_ms: TPMS, ram_bytes: 8 << 20, epoch_unix: 1_735_689_600 }, 0)
    }

    #[test]
    fn unclaimed_ports_float_high_and_writes_vanish() {
        let mut b = board();
        assert_eq!(b.io_in(0x2f8, 1, 0), 0xff, "no COM2");
        assert_eq!(b.io_in(0x60, 1, 0), 0xff, "no i8042");
        assert_eq!(b.io_in(0x1234, 2, 0), 0xffff);
        assert_eq!(b.io_in(0xffff, 4, 0), 0xffff_ffff);
        assert_eq!(b.io_out(0x1234, 4, 0xdead_beef, 0), None);
        assert_eq!(b.io_out(POST, 1, 0x55, 0), None);
        assert!(b.unclaimed >= 4);
    }

    #[test]
    fn debug_exit_and_resets() {
        let mut b = board();
        assert_eq!(b.io_out(DEBUG_EXIT, 1, 0x100 | 7, 0), Some(Event::Exit(7)), "byte write: low byte");
        assert_eq!(b.io_out(DEBUG_EXIT, 4, 300, 0), Some(Event::Exit(300)));
        assert_eq!(b.io_out(KBC_CMD, 1, 0xfe, 0), Some(Event::Reset(KBC_CMD)));
        assert_eq!(b.io_out(KBC_CMD, 1, 0xd1, 0), None);
        assert_eq!(b.io_out(PORT_92, 1, 0x02, 0), None);
        assert_eq!(b.io_out(PORT_92, 1, 0x03, 0), Some(Event::Reset(PORT_92)));
        assert_eq!(b.io_out(RESET_CONTROL, 1, 0x02, 0), None);
        assert_eq!(b.io_out(RESET_CONTROL, 1, 0x06, 0), Some(Event::Reset(RESET_CONTROL)));
        assert_eq!(b.io_in(PORT_92, 1, 0), 0x02, "A20 on");
    }

    #[test]
    fn word_access_to_byte_devices_is_split() {
        let mut b = board();
        // OUT word to 0x70: index 0x0f at 0x70, then 0x5a to the data port.
        b.io_out(0x70, 2, 0x5a0f, 0);
        b.io_out(0x70, 1, 0x0f, 0);
        assert_eq!(b.io_in(0x71, 1, 0), 0x5a);
        // PCI config with dword access is one access.
        b.io_out(0xcf8, 4, 0x8000_0000, 0);
        assert_eq!(b.io_in(0xcfc, 4, 0), 0x1237_8086);
    }

    /// The test guest's sequence: remap the PICs, unmask IRQ 0, PIT at
    /// 100 Hz in mode 2; IRQ 0 arrives at the deadline as vector 0x20.
    #[test]
    fn timer_interrupts_reach_the_cpu_on_time() {
        let mut b = board();
        for (p, v) in [(0x20, 0x11), (0xa0, 0x11), (0x21, 0x20), (0xa1, 0x28), (0x21, 4), (0xa1, 2), (0x21, 1), (0xa1, 1), (0x21, 0xfe), (0xa1, 0xff)] {
            b.io_out(p, 1, v, 0);
        }
        let div = 11932u32;
        b.io_out(0x43, 1, 0x34, 100);
        b.io_out(0x40, 1, div & 0xff, 100);
        b.io_out(0x40, 1, div >> 8, 100);
        assert_eq!(b.pending_vector(), None);
        let due = b.next_deadline().unwrap();
        assert_eq!(due, 100 + div as u64 * 1000);
        b.update_irqs(due - 1);
        assert_eq!(b.pending_vector(), None);
        b.update_irqs(due);
        assert_eq!(b.pending_vector(), Some(0x20));
        assert_eq!(b.acknowledge(), 0x20);
        assert_eq!(b.pending_vector(), None);
        // The next tick waits for the EOI.
        b.update_irqs(due + div as u64 * 1000);
        assert_eq!(b.pending_vector(), None);
        b.io_out(0x20, 1, 0x20, due + div as u64 * 1000);
        assert_eq!(b.pending_vector(), Some(0x20));
    }

    #[test]
    fn uart_thre_interrupt_on_irq4() {
        let mut b = board();
        for (p, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 4), (0x21, 1), (0x21, 0xef)] {
            b.io_out(p, 1, v, 0);
        }
        b.io_out(0x3fc, 1, 0x0b, 0); // MCR: DTR, RTS, OUT2
        b.io_out(0x3f9, 1, 0x02, 0); // IER: THRE
        assert_eq!(b.pending_vector(), Some(0x24));
        assert_eq!(b.acknowledge(), 0x24);
        assert_eq!(b.io_in(0x3fa, 1, 0) & 0x0f, 0x02, "IIR: THRE");
        assert_eq!(b.io_in(0x3fa, 1, 0) & 0x0f, 0x01, "cleared");
        b.io_out(0x20, 1, 0x20, 0);
        b.io_out(0x3f8, 1, b'x' as u32, 0);
        assert_eq!(b.pending_vector(), Some(0x24), "THR empty again: a new edge");
    }

    #[test]
    fn hostile_port_storm() {
        let mut b = board();
        let mut x: u64 = 7;
        let mut now = 0u64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now = now.wrapping_add(x % 100_000);
            let ports = [0x20, 0x21, 0xa0, 0xa1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x70, 0x71, 0x3f8, 0x3fb, 0x3fc, 0xcf8, 0xcfc, 0xcfe, 0x4d0, 0x4d1, 0x92];
            let port = if x & 1 != 0 { ports[(x >> 8) as usize % ports.len()] } else { (x >> 20) as u16 };
            let size = [1, 2, 4, 3][(x >> 40) as usize % 4];
            if x & 2 != 0 {
                let _ = b.io_out(port, size, (x >> 24) as u32, now);
            } else {
                let _ = b.io_in(port, size, now);
            }
            if b.pending_vector().is_some() && x & 4 != 0 {
                let _ = b.acknowledge();
            }
            let _ = b.next_deadline();
            b.uart.drain_lines(&mut |_| {});
        }
    }
}
