//! vmbench: the workload of `cargo xtask bench vm`, the same flat image run
//! as a guest of mc2 (through the VMM) and directly as QEMU's own guest
//! (a disk whose boot sector jumps to 0x1000:0000, see xtask/src/bench_vm.rs).
//!
//! In long mode, with interrupts off and the first 64 MiB identity-mapped by
//! 2 MiB pages, it times with RDTSC (under QEMU `-icount shift=0` the TSC
//! counts retired instructions):
//!
//! - `loop`: 1,000,000 turns of a two-instruction loop (the TSC scale check);
//! - `cpuid`: 10,000 CPUID leaf 0, minus the same loop without CPUID (on
//!   mc2 each one exits to the kernel and back; bare it is one instruction);
//! - `io`: 2,000 reads of the CMOS data port 0x71, minus the empty loop (on
//!   mc2 each one is a round trip through the user-level VMM);
//! - `cpu`: a CPU-bound job (xorshift, multiply, rotate: 4,000,000 rounds);
//! - `mem`: a memory-bound job (2,000,000 dependent random read-modify-writes
//!   over 16 MiB at 16 MiB, after one untimed pass that touches every page,
//!   so that the VMM's on-demand mapping is not timed).
//!
//! Each part runs 5 times and its fastest run counts (a busy host only ever
//! adds time). It prints one line `vmbench: loop=T cpuid=T io=T cpu=T mem=T sum=X`
//! (ticks per whole section; `sum` is the jobs' result, equal in both
//! runs), then exits with status 0 through the debug-exit port.
#![no_std]
#![no_main]
#![allow(clippy::undocumented_unsafe_blocks)]

use core::arch::asm;
use guests::println;

core::arch::global_asm!(
    include_str!("../boot.S"),
    r#"
.section .boot, "awx"
.code16
rm_main:
    jmp rm_enter_long
.global msg_pm
msg_pm:     .asciz ""
.code64
"#,
    options(att_syntax)
);

const BUF: u64 = 16 << 20;
const BUF_LEN: u64 = 16 << 20;
const LOOP_TURNS: u64 = 1_000_000;
const CPUID_N: u64 = 10_000;
const IO_N: u64 = 2_000;
const CPU_ROUNDS: u64 = 4_000_000;
const MEM_STEPS: u64 = 2_000_000;
/// Runs of each timed part; the fastest counts.
const REPS: usize = 5;

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // LFENCE: the read is not moved before earlier instructions finish.
    unsafe { asm!("lfence; rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}

/// Identity-map 0..64 MiB with 2 MiB pages (boot.S mapped the first 4 MiB).
fn map_64_mib() {
    for i in 2..32u64 {
        unsafe { (*core::ptr::addr_of_mut!(guests::pd))[i as usize] = (i << 21) | 0x83 };
    }
    unsafe { asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack)) };
}

/// `n` turns of `dec; jnz` (two instructions a turn).
fn empty_loop(n: u64) -> u64 {
    let t = rdtsc();
    unsafe { asm!("2: dec {n}", "jnz 2b", n = inout(reg) n => _, options(nomem, nostack)) };
    rdtsc() - t
}

fn cpuid_loop(n: u64) -> u64 {
    let t = rdtsc();
    // RBX is reserved by LLVM: CPUID's EBX output goes through a scratch register.
    unsafe {
        asm!(
            "2: xor eax, eax",
            "mov {save}, rbx",
            "cpuid",
            "mov rbx, {save}",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) n => _, save = out(reg) _, out("eax") _, out("ecx") _, out("edx") _,
            options(nomem, nostack)
        )
    };
    rdtsc() - t
}

fn io_loop(n: u64) -> u64 {
    let t = rdtsc();
    unsafe { asm!("2: in al, 0x71", "dec {n}", "jnz 2b", n = inout(reg) n => _, out("al") _, options(nomem, nostack)) };
    rdtsc() - t
}

fn cpu_job(rounds: u64) -> u64 {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut acc: u64 = 0;
    for i in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = acc.wrapping_add(x.wrapping_mul(i | 1)).rotate_left(5);
    }
    core::hint::black_box(acc)
}

fn mem_job(steps: u64) -> u64 {
    let words = BUF_LEN / 8;
    let base = BUF as *mut u64;
    let mut i: u64 = 1;
    let mut acc: u64 = 0;
    for _ in 0..steps {
        // The next slot depends on what was read: no prefetching it.
        let p = unsafe { base.add((i % words) as usize) };
        let v = unsafe { p.read_volatile() };
        unsafe { p.write_volatile(v.wrapping_add(i)) };
        acc = acc.wrapping_add(v);
        i = i.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(v | 1_442_695_040_888_963_407);
    }
    acc
}

#[no_mangle]
extern "C" fn long_main(_arg: u64) -> ! {
    guests::set_name("vmbench");
    let ram_kib = unsafe { core::ptr::addr_of!(guests::boot_ram_kib).read_volatile() } as u64;
    if ram_kib != 0 && ram_kib * 1024 < BUF + BUF_LEN {
        println!("vmbench: needs {} MiB of RAM, has {} KiB", (BUF + BUF_LEN) >> 20, ram_kib);
        guests::exit(2);
    }
    map_64_mib();
    // Touch every page of the buffer (and zero it: both runs start alike).
    for off in (0..BUF_LEN).step_by(8) {
        unsafe { ((BUF + off) as *mut u64).write_volatile(0) };
    }
    // Each timed part runs REPS times and keeps its fastest run: on a busy
    // host the emulator's thread is sometimes descheduled, which only ever
    // adds time.
    let best = |f: &mut dyn FnMut() -> u64| (0..REPS).map(|_| f()).min().unwrap_or(0);
    let lp = best(&mut || empty_loop(LOOP_TURNS));
    let base_c = best(&mut || empty_loop(CPUID_N));
    let cpuid = best(&mut || cpuid_loop(CPUID_N)).saturating_sub(base_c);
    let base_i = best(&mut || empty_loop(IO_N));
    let io = best(&mut || io_loop(IO_N)).saturating_sub(base_i);
    let (mut s1, mut s2) = (0, 0);
    let cpu = best(&mut || {
        let t = rdtsc();
        s1 ^= cpu_job(CPU_ROUNDS);
        rdtsc() - t
    });
    let mem = best(&mut || {
        let t = rdtsc();
        s2 ^= mem_job(MEM_STEPS);
        rdtsc() - t
    });
    println!("vmbench: loop={lp} cpuid={cpuid} io={io} cpu={cpu} mem={mem} sum={:#x}", s1 ^ s2);
    println!("vmbench: counts loop={LOOP_TURNS} cpuid={CPUID_N} io={IO_N}");
    guests::exit(0)
}
