//! In-kernel benchmarks (`bench=...` on the command line). Results are
//! printed as `BENCH ...` lines that `cargo xtask bench` parses. Under an
//! emulator the cycle counts are emulated time, labelled as such by the xtask.

use crate::cpus::{self, run_on, Barrier};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use dev::console::CONSOLE;
use dev::{power, println};
use lock::{McsLock, RawLock, SpinLock, TicketLock};
use machine::MAX_CPUS;

pub fn run(which: &str) -> ! {
    let ok = match which {
        "locks" => {
            locks();
            true
        }
        "mm" => mm_costs().is_ok(),
        other => {
            println!("BENCH unknown benchmark \"{other}\"");
            false
        }
    };
    println!("BENCH DONE");
    CONSOLE.flush();
    power::exit(if ok { power::EXIT_SUCCESS } else { power::EXIT_FAILURE }, None)
}

/// Acquire/release pairs per CPU per round (the seed's sample size).
const OPS: u64 = 10_000;
const ROUNDS: usize = 5;

static TICKET: SpinLock<(), TicketLock> = SpinLock::new(());
static MCS: SpinLock<(), McsLock> = SpinLock::new(());
static KIND: AtomicUsize = AtomicUsize::new(0);
static PARTICIPANTS: AtomicUsize = AtomicUsize::new(0);
static START: Barrier = Barrier::new();
static CYCLES: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

fn transactions<L: RawLock>(lock: &SpinLock<(), L>) -> u64 {
    let t0 = machine::x86::rdtsc_ordered();
    for _ in 0..OPS {
        drop(core::hint::black_box(lock.lock()));
    }
    machine::x86::rdtsc_ordered() - t0
}

fn worker(cpu: usize) {
    START.wait(PARTICIPANTS.load(Ordering::Relaxed));
    let c = if KIND.load(Ordering::Relaxed) == 0 { transactions(&TICKET) } else { transactions(&MCS) };
    CYCLES[cpu].store(c, Ordering::Relaxed);
}

/// The seed's lock experiment: one lock, an empty critical section, n CPUs
/// each doing OPS consecutive acquire+release; latency = cycles per pair as
/// each CPU sees it, averaged over CPUs; median over rounds.
pub fn locks() {
    let n = cpus::online_count();
    for (kind, name) in ["ticket", "mcs"].iter().enumerate() {
        KIND.store(kind, Ordering::Relaxed);
        for k in 1..=n {
            PARTICIPANTS.store(k, Ordering::Relaxed);
            let mut samples = [0f64; ROUNDS];
            for s in samples.iter_mut() {
                run_on(k, worker);
                let total: u64 = (0..k).map(|c| CYCLES[c].load(Ordering::Relaxed)).sum();
                *s = total as f64 / (k as u64 * OPS) as f64;
            }
            samples.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(core::cmp::Ordering::Equal));
            println!("BENCH locks lock={name} cpus={k} cycles_per_op={:.1}", samples[ROUNDS / 2]);
        }
    }
}

// ---- memory management costs, in retired instructions ----

/// TSC ticks per retired instruction: under QEMU with `-icount shift=0` the
/// TSC follows the instruction count, so timing a loop of known length gives
/// the scale (1.0 when the TSC advances once per instruction).
fn ticks_per_instruction() -> f64 {
    const N: u64 = 200_000;
    let t0 = machine::x86::rdtsc_ordered();
    // SAFETY: a counted loop on a register; no memory, no flags live after.
    unsafe { core::arch::asm!("2:", "dec {n}", "jnz 2b", n = inout(reg) N => _, options(nomem, nostack)) };
    let t1 = machine::x86::rdtsc_ordered();
    (t1 - t0) as f64 / (2 * N) as f64
}

fn report(op: &str, ticks: u64, n: u64, scale: f64) {
    println!("BENCH mm op={op} instructions={:.1}", ticks as f64 / scale / n as f64);
}

/// Cost of one frame allocate+free, container-charged allocate+free, map,
/// unmap (with the local INVLPG) and translate, and of a map that must
/// create its page tables.
fn mm_costs() -> Result<(), &'static str> {
    use mm::kernel::{self as mem, CONTAINERS, KERNEL_ROOT};
    use mm::{AddressSpace, Owner, Rights};
    const N: u64 = 256;
    let scale = ticks_per_instruction();
    println!("BENCH mm scale ticks_per_instruction={scale:.3}");
    let t = mem::frames();
    let m = mem::mm();
    let root = *mem::ROOT.get().ok_or("no root")?;

    let t0 = machine::x86::rdtsc_ordered();
    for _ in 0..N {
        let f = t.alloc(Owner::Kernel).map_err(|_| "alloc")?;
        t.free(core::hint::black_box(f), Owner::Kernel).map_err(|_| "free")?;
    }
    report("frame_alloc_free", machine::x86::rdtsc_ordered() - t0, N, scale);

    let c = CONTAINERS.split(root, 4 * N + 64).map_err(|_| "split")?;
    let t0 = machine::x86::rdtsc_ordered();
    for _ in 0..N {
        let f = CONTAINERS.alloc_page(t, c).map_err(|_| "alloc_page")?;
        CONTAINERS.free_page(t, c, core::hint::black_box(f)).map_err(|_| "free_page")?;
    }
    report("container_alloc_free", machine::x86::rdtsc_ordered() - t0, N, scale);

    let mut space = AddressSpace::new(m, c, KERNEL_ROOT.get().copied()).map_err(|_| "space")?;
    let base = 0x4000_0000u64;
    let mut frames = [mm::Frame::from_pfn(0); N as usize + 1];
    for f in frames.iter_mut() {
        *f = CONTAINERS.alloc_page(t, c).map_err(|_| "alloc_page")?;
    }
    // The first map creates the tables the measured ones then find.
    space.map(base, frames[0], Rights::USER_RW).map_err(|_| "map")?;
    let t0 = machine::x86::rdtsc_ordered();
    for i in 1..=N {
        space.map(base + i * 4096, frames[i as usize], Rights::USER_RW).map_err(|_| "map")?;
    }
    report("map_page", machine::x86::rdtsc_ordered() - t0, N, scale);
    let t0 = machine::x86::rdtsc_ordered();
    let mut sum = 0;
    for i in 1..=N {
        sum += space.translate(base + i * 4096).map(|(f, _)| f.pfn()).unwrap_or(0);
    }
    report("translate", machine::x86::rdtsc_ordered() - t0, N, scale);
    core::hint::black_box(sum);
    let t0 = machine::x86::rdtsc_ordered();
    for i in 1..=N {
        let (_, flush) = space.unmap(base + i * 4096).map_err(|_| "unmap")?;
        // SAFETY: ring 0; dropping one TLB entry.
        unsafe { machine::x86::invlpg(flush.va() as usize) };
    }
    report("unmap_page", machine::x86::rdtsc_ordered() - t0, N, scale);
    // Maps that need all three lower tables (one per 512 GiB slot).
    const M: u64 = 16;
    let t0 = machine::x86::rdtsc_ordered();
    for i in 1..=M {
        space.map(i << 39, frames[i as usize], Rights::USER_RW).map_err(|_| "map new")?;
    }
    report("map_page_new_tables", machine::x86::rdtsc_ordered() - t0, M, scale);
    let _ = space.destroy(|_, _, _| {});
    for f in frames {
        let _ = CONTAINERS.free_page(t, c, f);
    }
    CONTAINERS.destroy(c).map_err(|_| "destroy")?;
    Ok(())
}
