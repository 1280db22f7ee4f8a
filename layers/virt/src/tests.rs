//! Host checks of the architecture rules the run loop applies itself: what
//! CPUID tells a guest, and which control-register writes must fault.

use super::*;
use machine::x86::Cpuid;

fn xorshift(seed: &mut u64) -> u32 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed as u32
}

#[test]
fn cpuid_hides_what_the_guest_may_not_use_whatever_the_host_says() {
    let mut seed = 0x1234_5678_9abc_def1;
    for _ in 0..10_000 {
        let host = Cpuid { eax: xorshift(&mut seed), ebx: xorshift(&mut seed), ecx: xorshift(&mut seed), edx: xorshift(&mut seed) };
        let g = guest_cpuid(1, 0, host);
        // VMX(5), SMX? no; MONITOR(3), x2APIC(21), TSC-deadline(24), XSAVE(26), OSXSAVE(27), AVX(28) clear; hypervisor(31) set.
        assert_eq!(g.ecx & (1 << 5 | 1 << 3 | 1 << 21 | 1 << 24 | 1 << 26 | 1 << 27 | 1 << 28), 0);
        assert_ne!(g.ecx & 1 << 31, 0);
        // APIC(9), MCE(7), MCA(14), MTRR(12) clear.
        assert_eq!(g.edx & (1 << 9 | 1 << 7 | 1 << 14 | 1 << 12), 0);
        // One logical processor, APIC id 0; the rest of leaf 1 passes through.
        assert_eq!(g.ebx >> 16, 0);
        assert_eq!(g.eax, host.eax);
        assert_eq!(guest_cpuid(0x8000_0001, 0, host).ecx & 1 << 2, 0, "SVM hidden");
        assert_eq!(guest_cpuid(7, 0, host).ebx & 1 << 5, 0, "AVX2 hidden");
        assert_eq!(guest_cpuid(7, 0, host).ebx & 1 << 10, 0, "INVPCID hidden (not enabled in the VMCS)");
        assert_eq!(guest_cpuid(7, 0, host).ecx & 1 << 22, 0, "RDPID hidden");
        assert_eq!(guest_cpuid(0x8000_0001, 0, host).edx & 1 << 27, 0, "RDTSCP hidden");
        let pmu = guest_cpuid(0xa, 0, host);
        assert_eq!((pmu.eax, pmu.ebx, pmu.ecx, pmu.edx), (0, 0, 0, 0));
        // Leaves the kernel does not filter are the host's.
        let other = guest_cpuid(0, 0, host);
        assert_eq!((other.eax, other.ebx, other.ecx, other.edx), (host.eax, host.ebx, host.ecx, host.edx));
    }
    let h = guest_cpuid(0x4000_0000, 0, Cpuid { eax: 0, ebx: 0, ecx: 0, edx: 0 });
    let mut sig = [0u8; 12];
    sig[..4].copy_from_slice(&h.ebx.to_le_bytes());
    sig[4..8].copy_from_slice(&h.ecx.to_le_bytes());
    sig[8..].copy_from_slice(&h.edx.to_le_bytes());
    assert_eq!(&sig, b"mc2 mc2 mc2 ");
}

#[test]
fn cr0_writes_that_fault() {
    let (pe, nw, cd, pg) = (1u64, 1u64 << 29, 1u64 << 30, 1u64 << 31);
    let pae = 1 << 5;
    let lme = 1 << 8;
    assert!(!cr0_write_faults(pe | 0x10, 0, 0));
    assert!(!cr0_write_faults(pe | pg | 0x10, 0, 0));
    assert!(cr0_write_faults(1 << 32 | pe, 0, 0), "reserved high bits");
    assert!(cr0_write_faults(pg, 0, 0), "paging without protection");
    assert!(cr0_write_faults(pe | nw, 0, 0), "NW without CD");
    assert!(!cr0_write_faults(pe | nw | cd, 0, 0));
    assert!(cr0_write_faults(pe | pg, 0, lme), "long mode paging needs PAE");
    assert!(!cr0_write_faults(pe | pg, pae, lme));
}

#[test]
fn cr4_writes_that_fault() {
    let all = u64::MAX;
    let lma = 1 << 10;
    assert!(!cr4_write_faults(1 << 5 | 1 << 7 | 1 << 9 | 1 << 10, 0, all));
    for bit in [13, 14, 15, 18, 12, 22, 23, 31, 32, 63] {
        assert!(cr4_write_faults(1 << bit, 0, all), "bit {bit} must fault");
    }
    // A bit the CPU cannot run a guest with faults although it is allowed.
    assert!(cr4_write_faults(1 << 11, 0, all & !(1 << 11)));
    // In IA-32e mode PAE stays on.
    assert!(cr4_write_faults(0, lma, all));
    assert!(!cr4_write_faults(1 << 5, lma, all));
}

#[test]
fn topology_and_local_apic_leaves() {
    let host = Cpuid { eax: 7, ebx: 4, ecx: 0x0000_0201, edx: 1 };
    // Leaf 0xB: one thread of one core, x2APIC ID 0, whatever the host CPU.
    for sub in 0..4 {
        let t = guest_cpuid(0xb, sub, host);
        assert_eq!((t.eax, t.edx), (0, 0));
        assert_eq!(t.ebx, if sub < 2 { 1 } else { 0 });
        assert_eq!(t.ecx & 0xff, sub);
        assert_eq!(t.ecx >> 8 & 0xff, if sub < 2 { sub + 1 } else { 0 }, "level type");
    }
    // With the kernel's local APIC: APIC, x2APIC and TSC-deadline in leaf 1
    // while it is enabled; KVM's signature at 0x4000_0100 with only the
    // paravirtual EOI; mc2's own leaf untouched.
    let mut l1 = guest_cpuid(1, 0, host);
    lapic_cpuid(1, &mut l1, true);
    assert_ne!(l1.edx & 1 << 9, 0);
    assert_eq!(l1.ecx & (1 << 21 | 1 << 24), 1 << 21 | 1 << 24);
    let mut off = guest_cpuid(1, 0, host);
    lapic_cpuid(1, &mut off, false);
    assert_eq!(off.edx & 1 << 9, 0, "disabled in IA32_APIC_BASE: no APIC in CPUID");
    let zero = Cpuid { eax: 0, ebx: 0, ecx: 0, edx: 0 };
    let mut kvm = zero;
    lapic_cpuid(KVM_CPUID_BASE, &mut kvm, true);
    let sig: std::vec::Vec<u8> = [kvm.ebx, kvm.ecx, kvm.edx].iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(&sig, b"KVMKVMKVM\0\0\0");
    assert_eq!(kvm.eax, KVM_CPUID_BASE + 1);
    let mut features = host;
    lapic_cpuid(KVM_CPUID_BASE + 1, &mut features, true);
    assert_eq!((features.eax, features.ebx, features.ecx, features.edx), (KVM_FEATURE_PV_EOI, 0, 0, 0));
    let mut mine = guest_cpuid(0x4000_0000, 0, zero);
    let before = (mine.eax, mine.ebx, mine.ecx, mine.edx);
    lapic_cpuid(0x4000_0000, &mut mine, true);
    assert_eq!((mine.eax, mine.ebx, mine.ecx, mine.edx), before);
}
