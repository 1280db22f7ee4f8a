//! # linuxboot: the Linux x86 boot protocol, as mc2's VMM speaks it
//!
//! mc2 boots Debian's unmodified Linux kernel as a guest without firmware:
//! the VMM plays the boot loader's part of the protocol described in the
//! kernel's `Documentation/arch/x86/boot.rst` ("32-bit boot protocol"):
//!
//! 1. [`Image::parse`] reads the real-mode setup header of a bzImage (its
//!    first kilobyte) and refuses what it cannot boot (not a bzImage, a
//!    protocol older than 2.10, a kernel that must be loaded low);
//! 2. [`plan`] lays the guest's physical memory out: GDT, boot parameters
//!    ("zero page"), command line, the protected-mode kernel at 1 MiB, room
//!    for the decompressed kernel (`pref_address` .. `+ init_size`), and the
//!    initrd as high as `initrd_addr_max` and the memory allow;
//! 3. [`boot_params`] fills the zero page: the setup header copied from the
//!    image with the loader's fields set, and the [`e820`] memory map of the
//!    PC the VMM emulates; [`GDT`] holds the flat `__BOOT_CS` / `__BOOT_DS`
//!    descriptors the protocol asks for;
//! 4. [`entry_regs`] is the vCPU state at `code32_start`: flat 32-bit
//!    protected mode, paging and interrupts off, `%esi` = boot parameters.
//!
//! The VMM copies the pieces to the places the [`Layout`] names (the kernel
//! and initrd straight from the boot file into guest memory) and runs.
//!
//! Invariants: nothing here trusts the image: every offset and size read
//! from it is bounds-checked, every layout is checked not to overlap and to
//! fit the guest's memory, and errors are values ([`Error`]). `no_std`, no
//! allocation, no `unsafe`.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

use abi::vm::{Regs, Segment};

/// Where the setup header starts in the image and in the zero page (boot.rst).
pub const SETUP_HEADER: usize = 0x1f1;
/// How much of the image [`Image::parse`] needs: the boot sector and the
/// whole setup header (which ends at most at 0x202 + 0xff).
pub const HEAD_BYTES: usize = 0x400;
/// Oldest boot protocol accepted: 2.10 has `pref_address` and `init_size`,
/// which say where the kernel decompresses itself and how much it needs.
pub const MIN_PROTOCOL: u16 = 0x020a;

/// Guest-physical places of the small pieces, below the 640 KiB hole.
pub const GDT_ADDR: u64 = 0x6000;
pub const BOOT_PARAMS_ADDR: u64 = 0x7000;
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// The protected-mode kernel's load address, the protocol's `code32_start`.
pub const KERNEL_ADDR: u64 = 0x10_0000;

/// The 640 KiB conventional-memory limit; the top 1 KiB is the EBDA, and
/// 0xa0000-0x100000 is the VGA window and the BIOS area (reserved).
const LOW_RAM_END: u64 = 0x9_fc00;
const BIOS_START: u64 = 0xf_0000;

/// e820 range types (ACPI 6.4 §15 "System Address Map Interfaces").
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// Why a kernel cannot be booted, or not in this much memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The file is shorter than the boot sector and setup header, or than
    /// the setup code it says it has.
    Truncated,
    /// No "HdrS" magic or boot flag: not a bzImage.
    NotBzImage,
    /// The boot protocol is older than [`MIN_PROTOCOL`] (the version found).
    OldProtocol(u16),
    /// A zImage (must be loaded low, below 640 KiB): not supported.
    NotLoadedHigh,
    /// The guest memory cannot hold the layout (bytes needed at least).
    TooLittleMemory { need: u64 },
    /// The kernel wants to decompress itself below 1 MiB (`pref_address`),
    /// over the boot parameters: no real kernel does.
    BadLoadAddress(u64),
    /// The command line is longer than the kernel accepts (its limit).
    CommandLineTooLong { max: u32 },
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Error::Truncated => write!(f, "kernel image truncated"),
            Error::NotBzImage => write!(f, "not a bzImage (no HdrS setup header)"),
            Error::OldProtocol(v) => write!(f, "boot protocol {}.{:02} is older than 2.10", v >> 8, v & 0xff),
            Error::NotLoadedHigh => write!(f, "zImage kernels (loaded below 640 KiB) are not supported"),
            Error::TooLittleMemory { need } => write!(f, "guest needs at least {} MiB of memory", need.div_ceil(1 << 20)),
            Error::BadLoadAddress(a) => write!(f, "kernel asks to be decompressed at {a:#x}, below 1 MiB"),
            Error::CommandLineTooLong { max } => write!(f, "command line longer than the kernel's {max} bytes"),
        }
    }
}

/// A parsed bzImage: its setup header and where its protected-mode part is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image {
    /// The setup header bytes (image offsets 0x1f1 .. end of header).
    header: [u8; HEAD_BYTES - SETUP_HEADER],
    header_len: usize,
    /// Boot protocol version, e.g. 0x020f for 2.15.
    pub version: u16,
    /// Offset of the protected-mode kernel in the file: (setup_sects + 1) * 512.
    pub kernel_offset: u64,
    /// Its length (the rest of the file).
    pub kernel_len: u64,
    /// Where the kernel decompresses itself (LOAD_PHYSICAL_ADDR).
    pub pref_address: u64,
    /// Bytes the kernel needs from `pref_address` while and after decompressing.
    pub init_size: u64,
    /// Highest address the initrd may occupy.
    pub initrd_addr_max: u64,
    /// Longest command line, not counting the NUL.
    pub cmdline_size: u32,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | (u64::from(le32(b, at + 4)) << 32)
}

impl Image {
    /// Parse the first [`HEAD_BYTES`] (or more) of a bzImage of `file_len` bytes.
    pub fn parse(head: &[u8], file_len: u64) -> Result<Image, Error> {
        if head.len() < HEAD_BYTES || file_len < HEAD_BYTES as u64 {
            return Err(Error::Truncated);
        }
        if &head[0x202..0x206] != b"HdrS" || le16(head, 0x1fe) != 0xaa55 {
            return Err(Error::NotBzImage);
        }
        let version = le16(head, 0x206);
        if version < MIN_PROTOCOL {
            return Err(Error::OldProtocol(version));
        }
        if head[0x211] & LOADED_HIGH == 0 {
            return Err(Error::NotLoadedHigh);
        }
        let setup_sects = match head[SETUP_HEADER] {
            0 => 4,
            n => u64::from(n),
        };
        let kernel_offset = (setup_sects + 1) * 512;
        if kernel_offset >= file_len {
            return Err(Error::Truncated);
        }
        // The header ends at 0x202 plus the jump's displacement at 0x201.
        let end = 0x202 + usize::from(head[0x201]);
        let mut header = [0u8; HEAD_BYTES - SETUP_HEADER];
        header[..end - SETUP_HEADER].copy_from_slice(&head[SETUP_HEADER..end]);
        let cmdline_size = if version >= 0x0206 { le32(head, 0x238) } else { 255 };
        Ok(Image {
            header,
            header_len: end - SETUP_HEADER,
            version,
            kernel_offset,
            kernel_len: file_len - kernel_offset,
            pref_address: le64(head, 0x258),
            init_size: u64::from(le32(head, 0x260)),
            initrd_addr_max: u64::from(le32(head, 0x22c)),
            cmdline_size,
        })
    }
}

/// `loadflags` bits (boot.rst): the kernel is loaded at 1 MiB; the loader
/// set `heap_end_ptr`.
const LOADED_HIGH: u8 = 1 << 0;
const CAN_USE_HEAP: u8 = 1 << 7;

/// Where everything goes in guest-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub mem_size: u64,
    pub gdt: u64,
    pub boot_params: u64,
    pub cmdline: u64,
    /// The protected-mode kernel, `kernel_len` bytes from the file's `kernel_offset`.
    pub kernel: u64,
    /// First byte past what the running kernel may use while it sets up
    /// (max of the loaded image and `pref_address + init_size`).
    pub kernel_end: u64,
    pub initrd: u64,
    pub initrd_size: u64,
}

/// Lay out a guest of `mem_size` bytes for `image`, a command line of
/// `cmdline_len` bytes (without NUL) and an initrd of `initrd_size` bytes
/// (0: none).
pub fn plan(image: &Image, mem_size: u64, cmdline_len: usize, initrd_size: u64) -> Result<Layout, Error> {
    if cmdline_len as u64 > u64::from(image.cmdline_size) || cmdline_len >= (KERNEL_ADDR - CMDLINE_ADDR) as usize {
        return Err(Error::CommandLineTooLong { max: image.cmdline_size });
    }
    if image.pref_address < KERNEL_ADDR {
        return Err(Error::BadLoadAddress(image.pref_address));
    }
    let kernel_end = (KERNEL_ADDR + image.kernel_len).max(image.pref_address.saturating_add(image.init_size));
    let page = 0xfff;
    let initrd_pages = initrd_size.saturating_add(page) & !page;
    let need = kernel_end.saturating_add(initrd_pages);
    // The initrd goes as high as allowed: the kernel's early allocations
    // then have the low memory to themselves.
    let top = mem_size.min(image.initrd_addr_max.saturating_add(1)) & !page;
    if mem_size < need || top < need {
        return Err(Error::TooLittleMemory { need });
    }
    let initrd = if initrd_size == 0 { 0 } else { top - initrd_pages };
    Ok(Layout {
        mem_size,
        gdt: GDT_ADDR,
        boot_params: BOOT_PARAMS_ADDR,
        cmdline: CMDLINE_ADDR,
        kernel: KERNEL_ADDR,
        kernel_end,
        initrd,
        initrd_size,
    })
}

/// One e820 range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820 {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// The memory map of the emulated PC with `mem_size` bytes of RAM: low
/// memory up to the EBDA, the EBDA and BIOS area reserved, RAM from 1 MiB.
pub fn e820(mem_size: u64) -> [E820; 4] {
    [
        E820 { addr: 0, size: LOW_RAM_END, kind: E820_RAM },
        E820 { addr: LOW_RAM_END, size: 0xa_0000 - LOW_RAM_END, kind: E820_RESERVED },
        E820 { addr: BIOS_START, size: KERNEL_ADDR - BIOS_START, kind: E820_RESERVED },
        E820 { addr: KERNEL_ADDR, size: mem_size.saturating_sub(KERNEL_ADDR), kind: E820_RAM },
    ]
}

/// Where [`acpi_tables`] go: the BIOS area, reserved in the [`e820`] map,
/// where Linux also looks for the RSDP by itself (ACPI 6.4 §5.2.5.1).
pub const ACPI_ADDR: u64 = BIOS_START;

/// ACPI tables for a PC whose one CPU has a local APIC (ID 0) and whose
/// interrupts come from the 8259s: an RSDP (ACPI 1.0) and an RSDT naming
/// one MADT (ACPI 6.4 §5.2.12: the local APIC, "PC-AT compatible" dual
/// 8259s, no I/O APIC). Placed at [`ACPI_ADDR`]. Linux reads the MADT
/// early, and with the local APIC already in x2APIC mode it then uses its
/// x2APIC registers from the start (without a MADT it reads the xAPIC's
/// memory-mapped page first); it finds no FADT/DSDT and runs without the
/// ACPI interpreter, as before.
pub fn acpi_tables() -> [u8; 0x90] {
    const RSDT: usize = 0x20;
    const MADT: usize = 0x50;
    let mut t = [0u8; 0x90];
    // RSDP: signature, checksum over its 20 bytes, OEM, revision 0, RSDT.
    t[0..8].copy_from_slice(b"RSD PTR ");
    t[9..15].copy_from_slice(b"MC2   ");
    t[16..20].copy_from_slice(&((ACPI_ADDR as u32) + RSDT as u32).to_le_bytes());
    t[8] = checksum(&t[0..20]);
    // RSDT: header and one entry.
    let rsdt_len = 36 + 4;
    header(&mut t[RSDT..RSDT + 36], b"RSDT", rsdt_len, 1);
    t[RSDT + 36..RSDT + 40].copy_from_slice(&((ACPI_ADDR as u32) + MADT as u32).to_le_bytes());
    t[RSDT + 9] = checksum(&t[RSDT..RSDT + rsdt_len as usize]);
    // MADT: header, local APIC address, flags (PCAT_COMPAT), and one
    // Processor Local APIC structure (type 0: UID 0, APIC ID 0, enabled).
    let madt_len = 36 + 8 + 8;
    header(&mut t[MADT..MADT + 36], b"APIC", madt_len, 1);
    t[MADT + 36..MADT + 40].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
    t[MADT + 40..MADT + 44].copy_from_slice(&1u32.to_le_bytes());
    t[MADT + 44..MADT + 52].copy_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]);
    t[MADT + 9] = checksum(&t[MADT..MADT + madt_len as usize]);
    t
}

/// A system description table header (ACPI 6.4 §5.2.6), checksum 0.
fn header(h: &mut [u8], sig: &[u8; 4], len: u32, revision: u8) {
    h[0..4].copy_from_slice(sig);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8] = revision;
    h[10..16].copy_from_slice(b"MC2   ");
    h[16..24].copy_from_slice(b"MC2VMM  ");
    h[24..28].copy_from_slice(&1u32.to_le_bytes());
    h[28..32].copy_from_slice(b"MC2 ");
    h[32..36].copy_from_slice(&1u32.to_le_bytes());
}

/// The byte that makes `b` sum to zero.
fn checksum(b: &[u8]) -> u8 {
    0u8.wrapping_sub(b.iter().fold(0u8, |a, &x| a.wrapping_add(x)))
}

/// Zero-page offsets (`Documentation/arch/x86/zero-page.rst`, boot.rst).
mod zp {
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    pub const E820_ENTRIES: usize = 0x1e8;
    pub const VID_MODE: usize = 0x1fa;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const HEAP_END_PTR: usize = 0x224;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const E820_TABLE: usize = 0x2d0;
}

/// The boot parameters page for `image` laid out as `layout`; `acpi`: the
/// [`acpi_tables`] are in place (their RSDP named, protocol 2.14).
pub fn boot_params(image: &Image, layout: &Layout, acpi: bool) -> [u8; 4096] {
    let mut zp = [0u8; 4096];
    zp[SETUP_HEADER..SETUP_HEADER + image.header_len].copy_from_slice(&image.header[..image.header_len]);
    let put32 = |zp: &mut [u8; 4096], at: usize, v: u32| zp[at..at + 4].copy_from_slice(&v.to_le_bytes());
    // "Undefined" loader id: mc2 has none registered.
    zp[zp::TYPE_OF_LOADER] = 0xff;
    zp[zp::LOADFLAGS] |= CAN_USE_HEAP;
    zp[zp::VID_MODE..zp::VID_MODE + 2].copy_from_slice(&0xffffu16.to_le_bytes()); // "normal"
    zp[zp::HEAP_END_PTR..zp::HEAP_END_PTR + 2].copy_from_slice(&0xfe00u16.to_le_bytes());
    put32(&mut zp, zp::CMD_LINE_PTR, layout.cmdline as u32);
    put32(&mut zp, zp::RAMDISK_IMAGE, layout.initrd as u32);
    put32(&mut zp, zp::RAMDISK_SIZE, layout.initrd_size as u32);
    if acpi {
        zp[zp::ACPI_RSDP_ADDR..zp::ACPI_RSDP_ADDR + 8].copy_from_slice(&ACPI_ADDR.to_le_bytes());
    }
    let map = e820(layout.mem_size);
    zp[zp::E820_ENTRIES] = map.len() as u8;
    for (i, e) in map.iter().enumerate() {
        let at = zp::E820_TABLE + i * 20;
        zp[at..at + 8].copy_from_slice(&e.addr.to_le_bytes());
        zp[at + 8..at + 16].copy_from_slice(&e.size.to_le_bytes());
        zp[at + 16..at + 20].copy_from_slice(&e.kind.to_le_bytes());
    }
    zp
}

/// Selectors the 32-bit protocol requires (boot.rst: `__BOOT_CS`, `__BOOT_DS`).
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;

/// The GDT placed at [`GDT_ADDR`]: null, unused, flat 4 GiB code
/// (execute/read) and data (read/write), all 32-bit, granularity 4 KiB
/// (SDM Vol. 3 §3.4.5).
pub const GDT: [u8; 32] = {
    let code: u64 = 0x00cf_9b00_0000_ffff;
    let data: u64 = 0x00cf_9300_0000_ffff;
    let c = code.to_le_bytes();
    let d = data.to_le_bytes();
    let mut g = [0u8; 32];
    let mut i = 0;
    while i < 8 {
        g[16 + i] = c[i];
        g[24 + i] = d[i];
        i += 1;
    }
    g
};

/// Segment attributes in the VMM's packing (see [`abi::vm::Segment`]):
/// type | S << 4 | P << 7 | D/B << 10 | G << 11.
const CODE32: u16 = 0xb | 1 << 4 | 1 << 7 | 1 << 10 | 1 << 11;
const DATA32: u16 = 0x3 | 1 << 4 | 1 << 7 | 1 << 10 | 1 << 11;
/// A busy 32-bit TSS (the hardware wants a usable TR; Linux loads its own).
const TSS32_BUSY: u16 = 0xb | 1 << 7;

/// The vCPU at the 32-bit entry point: protected mode (CR0.PE, ET), no
/// paging, interrupts off, flat segments, `%esi` = boot parameters and
/// `%ebp`, `%edi`, `%ebx` zero.
pub fn entry_regs(layout: &Layout) -> Regs {
    let flat = |selector, attrib| Segment { selector, attrib, limit: 0xffff_ffff, base: 0 };
    let mut r = Regs::default();
    r.gpr[abi::vm::RSI] = layout.boot_params;
    r.rip = layout.kernel;
    r.rflags = 0x2;
    r.cr0 = 0x11;
    for s in [abi::vm::ES, abi::vm::SS, abi::vm::DS, abi::vm::FS, abi::vm::GS] {
        r.seg[s] = flat(BOOT_DS, DATA32);
    }
    r.seg[abi::vm::CS] = flat(BOOT_CS, CODE32);
    r.seg[abi::vm::TR] = Segment { selector: 0, attrib: TSS32_BUSY, limit: 0x67, base: 0 };
    r.seg[abi::vm::LDTR] = Segment::default();
    r.gdt_base = layout.gdt;
    r.gdt_limit = GDT.len() as u32 - 1;
    r.idt_base = 0;
    r.idt_limit = 0;
    r
}

#[cfg(test)]
mod tests;
