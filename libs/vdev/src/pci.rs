//! PCI configuration mechanism #1 (PCI Local Bus Specification 3.0,
//! §3.2.2.3.2): the CONFIG_ADDRESS register at 0xcf8 (dword access only)
//! and CONFIG_DATA at 0xcfc-0xcff (byte, word or dword), with one device:
//! an i440FX host bridge at 00:00.0 (vendor 0x8086, device 0x1237, class
//! 0x060000 "host bridge"). Every other function reads as all ones, which
//! is how software sees an absent device (§6.1: vendor ID 0xffff).
//!
//! The bridge has no BARs (they read 0 and ignore writes, so sizing finds
//! nothing); the command register keeps its writable bits; the
//! device-specific registers 0x40-0xff (the i440FX's PAM, SMRAM, ...) are
//! stored and have no effect.

pub const CONFIG_ADDRESS: u16 = 0xcf8;
pub const CONFIG_DATA: u16 = 0xcfc;

/// CONFIG_ADDRESS bit 31: enable (§3.2.2.3.2, Figure 3-1).
const ENABLE: u32 = 0x8000_0000;
/// The bits of CONFIG_ADDRESS that hold state (bits 30-24 are reserved and
/// read 0; bits 1-0 are 0 for type 0/1 translation).
const ADDRESS_MASK: u32 = 0x80ff_fffc;

pub const VENDOR_INTEL: u16 = 0x8086;
pub const DEVICE_I440FX: u16 = 0x1237;

/// The host bridge and the address latch.
#[derive(Clone, Debug)]
pub struct PciHost {
    address: u32,
    config: [u8; 256],
}

impl Default for PciHost {
    fn default() -> Self {
        Self::new()
    }
}

impl PciHost {
    pub fn new() -> PciHost {
        let mut c = [0u8; 256];
        c[0x00..0x02].copy_from_slice(&VENDOR_INTEL.to_le_bytes());
        c[0x02..0x04].copy_from_slice(&DEVICE_I440FX.to_le_bytes());
        c[0x04..0x06].copy_from_slice(&0x0006u16.to_le_bytes()); // memory space, bus master
        c[0x06..0x08].copy_from_slice(&0x0280u16.to_le_bytes()); // fast back-to-back, medium DEVSEL
        c[0x08] = 0x02; // revision
        c[0x09] = 0x00; // programming interface
        c[0x0a] = 0x00; // subclass: host bridge
        c[0x0b] = 0x06; // class: bridge
        c[0x0e] = 0x00; // header type 0, single function
        PciHost { address: 0, config: c }
    }

    /// Which bits of config byte `reg` the guest may change.
    fn write_mask(reg: usize) -> u8 {
        match reg {
            0x04 => 0x47, // I/O, memory, master, parity response
            0x05 => 0x01, // SERR# enable
            0x0c | 0x0d => 0xff, // cache line size, latency timer
            0x40..=0xff => 0xff,
            _ => 0,
        }
    }

    pub fn claims(port: u16) -> bool {
        (CONFIG_ADDRESS..CONFIG_DATA + 4).contains(&port)
    }

    /// The config-space offset CONFIG_DATA + `lane` reaches, if it is the
    /// host bridge's (bus 0, device 0, function 0) and enabled.
    fn target(&self, lane: u16) -> Option<usize> {
        let a = self.address;
        if a & ENABLE == 0 || a & 0x00ff_ff00 != 0 {
            return None;
        }
        Some((a & 0xfc) as usize + lane as usize)
    }

    /// Read `size` bytes (1, 2 or 4) at `port`.
    pub fn read(&mut self, port: u16, size: u8) -> u32 {
        let ones = if size >= 4 { u32::MAX } else { (1u32 << (8 * size as u32)) - 1 };
        match port {
            CONFIG_ADDRESS if size == 4 => self.address,
            CONFIG_DATA..=0xcff => {
                let lane = port - CONFIG_DATA;
                match self.target(lane) {
                    Some(off) if off + size as usize <= 256 => {
                        let mut v = 0u32;
                        for i in 0..size as usize {
                            v |= (self.config[off + i] as u32) << (8 * i);
                        }
                        v
                    }
                    _ => ones,
                }
            }
            _ => ones,
        }
    }

    /// Write `size` bytes (1, 2 or 4) of `v` at `port`.
    pub fn write(&mut self, port: u16, size: u8, v: u32) {
        match port {
            CONFIG_ADDRESS if size == 4 => self.address = v & ADDRESS_MASK,
            CONFIG_DATA..=0xcff => {
                let lane = port - CONFIG_DATA;
                if let Some(off) = self.target(lane) {
                    for i in 0..size as usize {
                        let r = off + i;
                        if r < 256 {
                            let m = Self::write_mask(r);
                            let b = (v >> (8 * i)) as u8;
                            self.config[r] = (self.config[r] & !m) | (b & m);
                        }
                    }
                }
            }
            _ => {} // byte/word writes to CONFIG_ADDRESS: not mechanism #1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(bus: u32, dev: u32, func: u32, reg: u32) -> u32 {
        ENABLE | bus << 16 | dev << 11 | func << 8 | reg
    }

    fn cfg_read(p: &mut PciHost, a: u32, size: u8) -> u32 {
        p.write(CONFIG_ADDRESS, 4, a & !3);
        p.read(CONFIG_DATA + (a & 3) as u16, size)
    }

    /// Linux's `pci_check_type1` and `pci_sanity_check`.
    #[test]
    fn linux_detects_mechanism_1_and_the_host_bridge() {
        let mut p = PciHost::new();
        p.write(0xcfb, 1, 0x01);
        let saved = p.read(CONFIG_ADDRESS, 4);
        p.write(CONFIG_ADDRESS, 4, 0x8000_0000);
        assert_eq!(p.read(CONFIG_ADDRESS, 4), 0x8000_0000);
        p.write(CONFIG_ADDRESS, 4, saved);
        // Sanity check: some device on bus 0 is a host bridge or Intel.
        let class = cfg_read(&mut p, addr(0, 0, 0, 0x0a), 2);
        assert_eq!(class, 0x0600);
        assert_eq!(cfg_read(&mut p, addr(0, 0, 0, 0), 2), 0x8086);
        assert_eq!(cfg_read(&mut p, addr(0, 0, 0, 0), 4), 0x1237_8086);
        assert_eq!(cfg_read(&mut p, addr(0, 0, 0, 0x08), 4), 0x0600_0002);
    }

    #[test]
    fn absent_functions_read_all_ones() {
        let mut p = PciHost::new();
        for (b, d, f) in [(0, 1, 0), (0, 0, 1), (1, 0, 0), (255, 31, 7)] {
            assert_eq!(cfg_read(&mut p, addr(b, d, f, 0), 4), u32::MAX);
            assert_eq!(cfg_read(&mut p, addr(b, d, f, 0x0e), 1), 0xff);
            assert_eq!(cfg_read(&mut p, addr(b, d, f, 2), 2), 0xffff);
        }
        // Disabled address: all ones too.
        p.write(CONFIG_ADDRESS, 4, 0);
        assert_eq!(p.read(CONFIG_DATA, 4), u32::MAX);
        // Byte access to CONFIG_ADDRESS does not touch it.
        p.write(CONFIG_ADDRESS, 1, 0xff);
        assert_eq!(p.read(CONFIG_ADDRESS, 4), 0);
        assert_eq!(p.read(CONFIG_ADDRESS, 1), 0xff);
    }

    #[test]
    fn writes_respect_read_only_fields_and_bars_size_to_nothing() {
        let mut p = PciHost::new();
        p.write(CONFIG_ADDRESS, 4, addr(0, 0, 0, 0));
        p.write(CONFIG_DATA, 4, 0); // vendor/device are read-only
        assert_eq!(p.read(CONFIG_DATA, 4), 0x1237_8086);
        p.write(CONFIG_ADDRESS, 4, addr(0, 0, 0, 0x10));
        p.write(CONFIG_DATA, 4, u32::MAX); // BAR sizing
        assert_eq!(p.read(CONFIG_DATA, 4), 0, "no BAR");
        p.write(CONFIG_ADDRESS, 4, addr(0, 0, 0, 0x04));
        p.write(CONFIG_DATA, 2, 0xffff);
        assert_eq!(p.read(CONFIG_DATA, 2), 0x0147);
        // The i440FX's PAM registers are plain storage.
        p.write(CONFIG_ADDRESS, 4, addr(0, 0, 0, 0x58));
        p.write(CONFIG_DATA + 1, 1, 0x30);
        assert_eq!(p.read(CONFIG_DATA, 4), 0x3000);
        // Unaligned dword at the last lane stays inside the space.
        p.write(CONFIG_ADDRESS, 4, addr(0, 0, 0, 0xfc));
        assert_eq!(p.read(0xcff, 4), u32::MAX);
        p.write(0xcff, 4, 0x1234_5678);
        assert_eq!(p.read(0xcff, 1), 0x78);
    }
}
