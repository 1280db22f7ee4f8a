use super::*;
use std::vec;
use std::vec::Vec;

/// A synthetic bzImage head with the fields the protocol defines.
fn fake(version: u16, setup_sects: u8, pref: u64, init_size: u32) -> Vec<u8> {
    let mut h = vec![0u8; 0x400];
    h[0x1f1] = setup_sects;
    h[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    h[0x200] = 0xeb; // jmp short
    h[0x201] = 0x6a; // header ends at 0x26c (protocol 2.15)
    h[0x202..0x206].copy_from_slice(b"HdrS");
    h[0x206..0x208].copy_from_slice(&version.to_le_bytes());
    h[0x211] = LOADED_HIGH;
    h[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
    h[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    h[0x238..0x23c].copy_from_slice(&0x7ffu32.to_le_bytes());
    h[0x258..0x260].copy_from_slice(&pref.to_le_bytes());
    h[0x260..0x264].copy_from_slice(&init_size.to_le_bytes());
    h[0x26b] = 0x5a; // last header byte, must be copied
    h[0x26c] = 0xa5; // first byte past the header, must not be
    h
}

const MIB: u64 = 1 << 20;

#[test]
fn parses_the_header_fields() {
    let h = fake(0x020f, 39, 16 * MIB, 0x3f9_8000);
    let img = Image::parse(&h, 8 * MIB).unwrap();
    assert_eq!(img.version, 0x020f);
    assert_eq!(img.kernel_offset, 40 * 512);
    assert_eq!(img.kernel_len, 8 * MIB - 40 * 512);
    assert_eq!(img.pref_address, 16 * MIB);
    assert_eq!(img.init_size, 0x3f9_8000);
    assert_eq!(img.initrd_addr_max, 0x7fff_ffff);
    assert_eq!(img.cmdline_size, 0x7ff);
    // setup_sects == 0 means 4 (boot.rst).
    let h0 = fake(0x020f, 0, 16 * MIB, 1);
    assert_eq!(Image::parse(&h0, MIB).unwrap().kernel_offset, 5 * 512);
}

#[test]
fn refuses_what_it_cannot_boot() {
    let good = fake(0x020f, 39, 16 * MIB, 1);
    assert_eq!(Image::parse(&good[..0x3ff], MIB), Err(Error::Truncated));
    assert_eq!(Image::parse(&good, 40 * 512), Err(Error::Truncated));
    let mut magic = good.clone();
    magic[0x202] = b'X';
    assert_eq!(Image::parse(&magic, MIB), Err(Error::NotBzImage));
    let mut flag = good.clone();
    flag[0x1fe] = 0;
    assert_eq!(Image::parse(&flag, MIB), Err(Error::NotBzImage));
    assert_eq!(Image::parse(&fake(0x0209, 39, 16 * MIB, 1), MIB), Err(Error::OldProtocol(0x0209)));
    let mut low = good.clone();
    low[0x211] = 0;
    assert_eq!(Image::parse(&low, MIB), Err(Error::NotLoadedHigh));
}

#[test]
fn random_heads_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..20_000 {
        let mut h = fake(0x020f, 39, 16 * MIB, 0x400_0000);
        // Scramble a few bytes of the header, sometimes the magic too.
        for _ in 0..(round % 8) {
            let at = 0x1f1 + (next() as usize % 0x80);
            h[at] = next() as u8;
        }
        let len = next() % (64 * MIB);
        if let Ok(img) = Image::parse(&h, len) {
            assert!(img.kernel_offset < len);
            let mem = next() % (512 * MIB);
            let cmdline_len = next() % 4096;
            if let Ok(l) = plan(&img, mem, cmdline_len as usize, next() % (64 * MIB)) {
                check_layout(&img, &l, cmdline_len);
                let _ = boot_params(&img, &l, false);
            }
        }
    }
}

fn check_layout(img: &Image, l: &Layout, cmdline_len: u64) {
    // The small pieces sit below the kernel and do not overlap each other.
    assert!(l.gdt + GDT.len() as u64 <= l.boot_params);
    assert!(l.boot_params + 4096 <= l.cmdline);
    assert!(l.cmdline + cmdline_len + 1 <= l.kernel);
    assert!(img.pref_address >= l.kernel);
    assert!(l.cmdline + 4096 <= LOW_RAM_END);
    // The kernel (loaded and decompressed) and the initrd fit and are apart.
    assert!(l.kernel + img.kernel_len <= l.kernel_end);
    assert!(img.pref_address + img.init_size <= l.kernel_end);
    assert!(l.kernel_end <= l.mem_size);
    if l.initrd_size > 0 {
        assert_eq!(l.initrd % 4096, 0);
        assert!(l.initrd >= l.kernel_end);
        assert!(l.initrd + l.initrd_size <= l.mem_size);
        assert!(l.initrd + l.initrd_size - 1 <= img.initrd_addr_max);
    }
}

#[test]
fn layout_keeps_kernel_and_initrd_apart_and_inside_memory() {
    let img = Image::parse(&fake(0x020f, 39, 16 * MIB, 0x3f9_8000), 8 * MIB).unwrap();
    let l = plan(&img, 128 * MIB, 100, 3 * MIB + 5).unwrap();
    check_layout(&img, &l, 100);
    // Highest page-aligned place: the initrd ends within the last page.
    assert_eq!(l.initrd, 128 * MIB - 3 * MIB - 4096);
    // Too little memory names what would be enough.
    match plan(&img, 64 * MIB, 100, 3 * MIB) {
        Err(Error::TooLittleMemory { need }) => {
            assert!(need > 64 * MIB);
            let l = plan(&img, need, 100, 3 * MIB).unwrap();
            check_layout(&img, &l, 100);
        }
        other => panic!("{other:?}"),
    }
    // initrd_addr_max below the memory's top caps where the initrd goes.
    let mut h = fake(0x020f, 39, 16 * MIB, 0x3f9_8000);
    h[0x22c..0x230].copy_from_slice(&(100 * MIB as u32 - 1).to_le_bytes());
    let capped = Image::parse(&h, 8 * MIB).unwrap();
    let l = plan(&capped, 512 * MIB, 10, MIB).unwrap();
    assert_eq!(l.initrd + MIB, 100 * MIB);
    check_layout(&capped, &l, 100);
    // No initrd: nothing placed, nothing claimed.
    let l = plan(&img, 128 * MIB, 0, 0).unwrap();
    assert_eq!((l.initrd, l.initrd_size), (0, 0));
    assert_eq!(plan(&img, 128 * MIB, 0x800, 0), Err(Error::CommandLineTooLong { max: 0x7ff }));
}

#[test]
fn boot_params_carry_header_loader_fields_and_memory_map() {
    let h = fake(0x020f, 39, 16 * MIB, 0x3f9_8000);
    let img = Image::parse(&h, 8 * MIB).unwrap();
    let l = plan(&img, 128 * MIB, 20, 2 * MIB).unwrap();
    let zp = boot_params(&img, &l, false);
    assert_eq!(&zp[0x202..0x206], b"HdrS");
    assert_eq!(zp[0x26b], 0x5a, "last header byte copied");
    assert_eq!(zp[0x26c], 0, "nothing past the header copied");
    assert_eq!(zp[0x210], 0xff);
    assert_eq!(zp[0x211], LOADED_HIGH | CAN_USE_HEAP);
    assert_eq!(le32(&zp, 0x228) as u64, l.cmdline);
    assert_eq!(le32(&zp, 0x218) as u64, l.initrd);
    assert_eq!(le32(&zp, 0x21c) as u64, 2 * MIB);
    assert_eq!(zp[0x1e8], 4);
    let mut ram = 0;
    for i in 0..4 {
        let at = 0x2d0 + i * 20;
        let (addr, size, kind) = (le64(&zp, at), le64(&zp, at + 8), le32(&zp, at + 16));
        if kind == E820_RAM {
            ram += size;
            // Usable RAM never covers the VGA window or the BIOS.
            assert!(addr + size <= 0xa_0000 || addr >= KERNEL_ADDR);
        }
    }
    assert_eq!(ram, LOW_RAM_END + 127 * MIB);
}

#[test]
fn gdt_and_entry_state_follow_the_32_bit_protocol() {
    let desc = |i: usize| u64::from_le_bytes(GDT[i * 8..i * 8 + 8].try_into().unwrap());
    for (sel, exec) in [(BOOT_CS, true), (BOOT_DS, false)] {
        let d = desc(usize::from(sel) / 8);
        let base = (d >> 16 & 0xff_ffff) | (d >> 56) << 24;
        let limit = (d & 0xffff) | (d >> 48 & 0xf) << 16;
        assert_eq!(base, 0);
        assert_eq!(limit, 0xf_ffff);
        assert_eq!(d >> 55 & 1, 1, "4 KiB granularity");
        assert_eq!(d >> 54 & 1, 1, "32-bit");
        assert_eq!(d >> 47 & 1, 1, "present");
        assert_eq!(d >> 43 & 1, u64::from(exec));
    }
    let img = Image::parse(&fake(0x020f, 39, 16 * MIB, 0x3f9_8000), 8 * MIB).unwrap();
    let l = plan(&img, 128 * MIB, 20, 0).unwrap();
    let r = entry_regs(&l);
    assert_eq!(r.rip, KERNEL_ADDR);
    assert_eq!(r.gpr[abi::vm::RSI], BOOT_PARAMS_ADDR);
    for g in [abi::vm::RBP, abi::vm::RDI, abi::vm::RBX] {
        assert_eq!(r.gpr[g], 0);
    }
    assert_eq!(r.cr0 & 0x8000_0001, 1, "protected mode, no paging");
    assert_eq!(r.rflags & 0x200, 0, "interrupts off");
    assert_eq!(r.seg[abi::vm::CS].selector, BOOT_CS);
    for s in [abi::vm::DS, abi::vm::ES, abi::vm::SS] {
        assert_eq!(r.seg[s].selector, BOOT_DS);
        assert_eq!(r.seg[s].attrib & 0xf, 0x3);
    }
    assert_eq!(r.gdt_base, GDT_ADDR);
}

/// Debian's kernel, when `cargo xtask` has fetched it: parsed and laid out
/// in the memory mc2 gives a Linux guest.
#[test]
fn debian_kernel_when_fetched() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/linux/root/boot");
    let Some(path) = std::fs::read_dir(&dir).ok().and_then(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz")))) else {
        std::eprintln!("no Debian kernel under {} yet (cargo xtask fetches it): skipped", dir.display());
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let img = Image::parse(&bytes, bytes.len() as u64).unwrap();
    assert!(img.version >= MIN_PROTOCOL);
    assert!(img.init_size > img.kernel_len, "decompressed kernel is larger than the compressed one");
    let l = plan(&img, 160 * MIB, 200, 4 * MIB).unwrap();
    check_layout(&img, &l, 100);
}

#[test]
fn acpi_tables_are_well_formed() {
    let t = acpi_tables();
    let sum = |b: &[u8]| b.iter().fold(0u8, |a, &x| a.wrapping_add(x));
    assert_eq!(&t[0..8], b"RSD PTR ");
    assert_eq!(sum(&t[0..20]), 0, "RSDP checksum");
    let at = |o: usize| u32::from_le_bytes(t[o..o + 4].try_into().unwrap()) as usize - ACPI_ADDR as usize;
    let rsdt = at(16);
    assert_eq!(&t[rsdt..rsdt + 4], b"RSDT");
    let len = |o: usize| u32::from_le_bytes(t[o + 4..o + 8].try_into().unwrap()) as usize;
    assert_eq!(sum(&t[rsdt..rsdt + len(rsdt)]), 0, "RSDT checksum");
    assert_eq!(len(rsdt), 40, "one entry");
    let madt = at(rsdt + 36);
    assert_eq!(&t[madt..madt + 4], b"APIC");
    assert!(madt + len(madt) <= t.len());
    assert_eq!(sum(&t[madt..madt + len(madt)]), 0, "MADT checksum");
    assert_eq!(&t[madt + 36..madt + 40], &0xfee0_0000u32.to_le_bytes());
    assert_eq!(&t[madt + 44..madt + 52], &[0, 8, 0, 0, 1, 0, 0, 0], "local APIC 0, enabled");
    // Below the kernel, in the reserved BIOS area of the memory map.
    let bios = e820(64 << 20).into_iter().find(|e| e.addr <= ACPI_ADDR && ACPI_ADDR + t.len() as u64 <= e.addr + e.size).unwrap();
    assert_eq!(bios.kind, E820_RESERVED);
}
