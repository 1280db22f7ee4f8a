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
