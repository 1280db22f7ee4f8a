//! Starting the application processors (SDM Vol. 3A §9.4.4, MP initialization
//! protocol): INIT, wait 10 ms, STARTUP (SIPI), wait 200 µs, STARTUP again if
//! the CPU has not shown up, then wait for it with a timeout.
//!
//! APs are started one at a time: the real-mode trampoline (boot.S) is copied
//! once to [`TRAMPOLINE_PHYS`] and patched with the next AP's stack, index
//! and APIC id before each start. A CPU that does not answer in time is sent
//! INIT again, which parks it in wait-for-SIPI; boot goes on with the rest.
//! INIT alone is not enough on a loaded emulator host, where a late CPU can
//! still run the trampoline after the BSP has patched it for the next one
//! (it came up as a second "cpu2" and corrupted that CPU's stack): so an AP
//! also claims the patched data with a compare-and-swap, only if it is the
//! CPU named there, and the BSP revokes an unclaimed copy the same way
//! before reusing it. A CPU that loses parks in the trampoline.
//!
//! Sending the IPIs is the local APIC driver's job (the dev layer, above this
//! one), so the caller passes it in as a [`StartupIpi`].

use crate::cpu::MAX_CPUS;
use core::sync::atomic::{AtomicBool, Ordering};

pub use crate::layout::TRAMPOLINE_PHYS;

/// What starting a CPU needs from the interrupt controller and a clock.
pub trait StartupIpi {
    /// INIT IPI to the CPU with this APIC id.
    fn send_init(&self, apic_id: u32);
    /// STARTUP IPI: the CPU starts in real mode at `vector << 12`.
    fn send_startup(&self, apic_id: u32, vector: u8);
    /// Busy-wait this many microseconds.
    fn delay_us(&self, us: u64);
}

/// Set by each AP as soon as it runs Rust code.
static ARRIVED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Has CPU `cpu` arrived in the kernel?
pub fn arrived(cpu: usize) -> bool {
    ARRIVED[cpu].load(Ordering::Acquire)
}

/// Start CPU `cpu` (index, 1..MAX_CPUS) whose local APIC id is `apic_id`.
/// Returns whether it arrived within `timeout_us`.
///
/// # Safety
/// Boot CPU only, one call at a time, after the trampoline page is free RAM
/// (it is overwritten) and the kernel entry for APs is ready to run.
#[cfg(mc2_bare)]
pub unsafe fn start_ap(cpu: usize, apic_id: u32, ipi: &impl StartupIpi, timeout_us: u64) -> bool {
    use crate::layout::phys_to_virt;
    use crate::x86;
    extern "C" {
        static mc2_ap_trampoline_start: u8;
        static mc2_ap_trampoline_end: u8;
        static mc2_tr_off_stack: u8;
        static mc2_tr_off_cpu: u8;
        static mc2_tr_off_cr3: u8;
        static mc2_tr_off_efer: u8;
        static mc2_tr_off_apic: u8;
        static mc2_tr_off_claim: u8;
        static mc2_boot_efer_nxe: u32;
    }
    assert!(cpu > 0 && cpu < MAX_CPUS);
    let dst = phys_to_virt(TRAMPOLINE_PHYS) as *mut u8;
    // SAFETY: the trampoline symbols delimit code in the kernel image; the
    // offset symbols are absolute values (their "addresses" are the numbers).
    // The destination page is direct-mapped RAM below 1 MiB reserved for this
    // purpose (the caller guarantees it is free), and no AP is executing from
    // it: the previous one has arrived in the kernel or was parked by INIT.
    unsafe {
        let start = core::ptr::addr_of!(mc2_ap_trampoline_start);
        let len = core::ptr::addr_of!(mc2_ap_trampoline_end) as usize - start as usize;
        core::ptr::copy_nonoverlapping(start, dst, len);
        let patch = |off: *const u8, v: u64, wide: bool| {
            let at = dst.add(off as usize);
            if wide {
                core::ptr::write_volatile(at as *mut u64, v);
            } else {
                core::ptr::write_volatile(at as *mut u32, v as u32);
            }
        };
        patch(core::ptr::addr_of!(mc2_tr_off_stack), crate::percpu::kernel_stack_top(cpu), true);
        patch(core::ptr::addr_of!(mc2_tr_off_cpu), cpu as u64, true);
        patch(core::ptr::addr_of!(mc2_tr_off_cr3), x86::read_cr3(), false);
        patch(core::ptr::addr_of!(mc2_tr_off_efer), core::ptr::read_volatile(core::ptr::addr_of!(mc2_boot_efer_nxe)) as u64, false);
        // The AP checks its initial (8-bit) APIC id; x2APIC ids beyond it match any CPU.
        patch(core::ptr::addr_of!(mc2_tr_off_apic), if apic_id < 0xff { apic_id as u64 } else { 0xffff_ffff }, false);
        patch(core::ptr::addr_of!(mc2_tr_off_claim), CLAIM_FREE as u64, false);
    }
    // SAFETY: the claim word is a 4-byte aligned u32 inside the trampoline
    // copy (direct-mapped RAM we own); from here on the AP and we only touch
    // it atomically.
    let claim = unsafe { &*(dst.add(core::ptr::addr_of!(mc2_tr_off_claim) as usize) as *const core::sync::atomic::AtomicU32) };
    core::sync::atomic::fence(Ordering::SeqCst);
    let vector = (TRAMPOLINE_PHYS >> 12) as u8;
    ipi.send_init(apic_id);
    ipi.delay_us(10_000);
    ipi.send_startup(apic_id, vector);
    ipi.delay_us(200);
    if !arrived(cpu) {
        ipi.send_startup(apic_id, vector);
    }
    if wait_for(cpu, ipi, timeout_us) {
        return true;
    }
    // Revoke the data so that the CPU cannot take it later; if it already
    // has, it is on its way: give it a while longer.
    if claim.compare_exchange(CLAIM_FREE, CLAIM_REVOKED, Ordering::AcqRel, Ordering::Acquire).is_err() && wait_for(cpu, ipi, timeout_us * 10) {
        return true;
    }
    ipi.send_init(apic_id); // park it: see the module comment
    false
}

/// Wait up to `timeout_us` for CPU `cpu` to arrive; whether it did.
#[cfg(mc2_bare)]
fn wait_for(cpu: usize, ipi: &impl StartupIpi, timeout_us: u64) -> bool {
    let step = 100;
    let mut waited = 0;
    while !arrived(cpu) && waited < timeout_us {
        ipi.delay_us(step);
        waited += step;
    }
    arrived(cpu)
}

/// The trampoline's claim word (boot.S `.Ltr_claim`).
#[cfg(mc2_bare)]
const CLAIM_FREE: u32 = 0;
#[cfg(mc2_bare)]
const CLAIM_REVOKED: u32 = u32::MAX;

/// Rust entry of an AP, called from the trampoline on its boot stack.
#[cfg(mc2_bare)]
#[no_mangle]
extern "C" fn mc2_machine_ap_entry(cpu: u64) -> ! {
    extern "Rust" {
        fn mc2_kernel_ap_main(cpu: usize) -> !;
    }
    let cpu = cpu as usize;
    let apic_id = crate::x86::cpuid(1, 0).ebx >> 24;
    // SAFETY: this is CPU `cpu`'s first code in the kernel; the BSP gave the
    // index to this CPU alone.
    unsafe { crate::percpu::init_this_cpu(cpu, apic_id) };
    ARRIVED[cpu].store(true, Ordering::Release);
    // SAFETY: the kernel binary defines this entry point (see `boot`).
    unsafe { mc2_kernel_ap_main(cpu) }
}
