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
        // VMX(5), SMX? no; MONITOR(3), x2APIC(21), XSAVE(26), OSXSAVE(27), AVX(28) clear; hypervisor(31) set.
        assert_eq!(g.ecx & (1 << 5 | 1 << 3 | 1 << 21 | 1 << 26 | 1 << 27 | 1 << 28), 0);
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
