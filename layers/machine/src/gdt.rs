//! Segment descriptors and the task-state segment (Intel SDM Vol. 3A §3.4.5,
//! §7.2.3). Long mode ignores segment bases and limits except for FS/GS and the
//! TSS; the GDT exists for privilege levels, `syscall`/`sysret` and the TSS.
//!
//! Layout per CPU (the order `sysret` requires, SDM Vol. 2B SYSRET: user SS =
//! STAR[63:48] + 8, user CS = STAR[63:48] + 16):
//! `0x08` kernel code, `0x10` kernel data, `0x18` user data, `0x20` user code,
//! `0x28` TSS (two slots).

pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_DS: u16 = 0x10;
pub const USER_DS: u16 = 0x18 | 3;
pub const USER_CS: u16 = 0x20 | 3;
pub const TSS_SEL: u16 = 0x28;

/// Descriptor values: G, L (code) or D/B (data), P, DPL, S, type.
const KERNEL_CODE64: u64 = 0x00af_9a00_0000_ffff;
const KERNEL_DATA: u64 = 0x00cf_9200_0000_ffff;
const USER_DATA: u64 = 0x00cf_f200_0000_ffff;
const USER_CODE64: u64 = 0x00af_fa00_0000_ffff;

pub const GDT_ENTRIES: usize = 7;

/// 64-bit task-state segment (SDM Vol. 3A §7.7, Figure 7-11).
#[repr(C, packed(4))]
#[derive(Clone, Copy)]
pub struct Tss {
    _reserved0: u32,
    /// Stack pointers loaded on a privilege change to ring 0..2.
    pub rsp: [u64; 3],
    _reserved1: u64,
    /// Interrupt stack table: stacks selected by the IST field of a gate (1..7).
    pub ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    /// Offset of the I/O permission bitmap; past the limit means "no bitmap":
    /// ring 3 may touch no port.
    pub iomap_base: u16,
}

impl Tss {
    pub const fn new() -> Self {
        Tss {
            _reserved0: 0,
            rsp: [0; 3],
            _reserved1: 0,
            ist: [0; 7],
            _reserved2: 0,
            _reserved3: 0,
            iomap_base: core::mem::size_of::<Tss>() as u16,
        }
    }
}

impl Default for Tss {
    fn default() -> Self {
        Self::new()
    }
}

/// A per-CPU GDT pointing at that CPU's TSS at `tss_addr`.
pub fn build(tss_addr: u64) -> [u64; GDT_ENTRIES] {
    let limit = (core::mem::size_of::<Tss>() - 1) as u64;
    // System-segment descriptor, type 9 = available 64-bit TSS, present (SDM Vol. 3A §7.2.3).
    let low = (limit & 0xffff)
        | (tss_addr & 0xff_ffff) << 16
        | 0x89 << 40
        | ((limit >> 16) & 0xf) << 48
        | ((tss_addr >> 24) & 0xff) << 56;
    let high = tss_addr >> 32;
    [0, KERNEL_CODE64, KERNEL_DATA, USER_DATA, USER_CODE64, low, high]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tss_is_104_bytes() {
        assert_eq!(core::mem::size_of::<Tss>(), 104);
    }

    #[test]
    fn tss_descriptor_splits_the_address() {
        let g = build(0xffff_8000_1234_5678);
        assert_eq!(g[5] >> 16 & 0xff_ffff, 0x34_5678);
        assert_eq!(g[5] >> 56, 0x12);
        assert_eq!(g[6], 0xffff_8000);
        assert_eq!(g[5] >> 40 & 0xff, 0x89);
    }

    #[test]
    fn selectors_match_sysret_layout() {
        // sysret: SS = base + 8, CS = base + 16 with base = KERNEL_DS.
        assert_eq!(USER_DS & !3, KERNEL_DS + 8);
        assert_eq!(USER_CS & !3, KERNEL_DS + 16);
    }
}
