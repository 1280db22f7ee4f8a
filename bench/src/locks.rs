//! `bench locks`: cycles per acquire+release of mc2's ticket and MCS locks
//! (the very `lock` crate the kernel links), against the physical floor (one
//! `lock xadd`) and two peers: spin's `TicketMutex` (same algorithm as our
//! ticket lock) and parking_lot's `RawMutex` (the peer for MCS: a general
//! purpose lock with a one-CAS fast path).
//!
//! Uncontended: one pinned thread; each repetition times a loop of `OPS`
//! acquire+release pairs of every candidate in turn (the starting candidate
//! rotates), so frequency drift and noise hit all candidates alike; the
//! figure is the median over repetitions.
//!
//! Contended (the seed's experiment): 1..=N threads, each pinned to its own
//! core, all hammer one lock with an empty critical section, `rounds` rounds
//! of `OPS` consecutive acquire+release each (rounds start together at a spin
//! barrier). Latency = mean cycles per acquire+release seen by a thread;
//! `norm` = latency / (1-thread latency x threads): 1.0 means the lock only
//! serialises, above 1.0 is the cost of moving the lock between cores.

use crate::affinity;
use crate::json::Json;
use crate::tsc;
use lock::{McsLock, RawLock, TicketLock, MAX_CPUS};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Acquire+release pairs per timed loop (the seed's sample size).
pub const OPS: u64 = 10_000;

pub struct Options {
    pub out: Option<PathBuf>,
    pub max_threads: Option<usize>,
    /// Contended rounds per thread count and lock.
    pub rounds: usize,
    /// Uncontended repetitions per candidate.
    pub reps: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { out: None, max_threads: None, rounds: 10, reps: 1001 }
    }
}

/// One thing to time: `op` is one acquire+release as CPU `cpu`.
trait Candidate: Sync {
    fn op(&self, cpu: usize);
}

/// The floor: one locked read-modify-write (`lock xadd`: the result is used).
struct Xadd(AtomicU64);
impl Candidate for Xadd {
    #[inline(always)]
    fn op(&self, _cpu: usize) {
        black_box(self.0.fetch_add(1, Ordering::AcqRel));
    }
}

/// Our locks through the raw API, as the kernel's `SpinLock` uses them.
struct Ours<L>(L);
impl<L: RawLock> Candidate for Ours<L> {
    #[inline(always)]
    fn op(&self, cpu: usize) {
        self.0.lock(cpu);
        // SAFETY: just acquired as `cpu` on this thread.
        unsafe { self.0.unlock(cpu) };
    }
}

/// spin's ticket mutex through its guard (its own fast path: the guard keeps
/// the ticket, release is one store).
struct SpinTicket(spin::mutex::TicketMutex<()>);
impl Candidate for SpinTicket {
    #[inline(always)]
    fn op(&self, _cpu: usize) {
        drop(self.0.lock());
    }
}

/// parking_lot's raw mutex through `lock_api::RawMutex`.
struct ParkingLot(parking_lot::RawMutex);
impl Candidate for ParkingLot {
    #[inline(always)]
    fn op(&self, _cpu: usize) {
        use lock_api::RawMutex as _;
        self.0.lock();
        // SAFETY: just acquired on this thread.
        unsafe { self.0.unlock() };
    }
}

/// Cache-line-aligned (two lines: adjacent-line prefetch) so nothing else
/// shares the candidate's lines.
#[repr(align(128))]
struct Aligned<T>(T);

/// TSC cycles for `OPS` ops. Not inlined, so each candidate's loop is a
/// separate function compiled the same way; `cpu` is opaque to the compiler,
/// as `machine::cpu::id()` is in the kernel.
#[inline(never)]
fn timed<C: Candidate>(c: &C, cpu: usize) -> u64 {
    let cpu = black_box(cpu);
    let t0 = tsc::now();
    for _ in 0..OPS {
        c.op(cpu);
    }
    tsc::now() - t0
}

/// Allowed excess of a paired ratio over 1.0 before "not slower than the
/// peer" counts as failed.
const PEER_NOISE: f64 = 0.03;

const NAMES: [&str; 5] = ["xadd", "ticket", "mcs", "spin_ticket", "parking_lot"];

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Uncontended {
    median: [f64; 5],
    min: [f64; 5],
    /// Per-repetition cycles, `samples[candidate][rep]`.
    samples: [Vec<f64>; 5],
}

impl Uncontended {
    /// Median over repetitions of candidate `a`'s cycles over `b`'s in the
    /// same repetition: a paired ratio, insensitive to drift between reps.
    fn ratio(&self, a: usize, b: usize) -> f64 {
        let mut r: Vec<f64> = self.samples[a].iter().zip(&self.samples[b]).map(|(x, y)| x / y).collect();
        median(&mut r)
    }
}

fn uncontended(reps: usize) -> Uncontended {
    let xadd = Aligned(Xadd(AtomicU64::new(0)));
    let ticket = Aligned(Ours(TicketLock::new()));
    let mcs = Aligned(Ours(McsLock::new()));
    let spin_ticket = Aligned(SpinTicket(spin::mutex::TicketMutex::new(())));
    let parking_lot = Aligned(ParkingLot(<parking_lot::RawMutex as lock_api::RawMutex>::INIT));
    let run = |i: usize| -> u64 {
        match i {
            0 => timed(&xadd.0, 0),
            1 => timed(&ticket.0, 0),
            2 => timed(&mcs.0, 0),
            3 => timed(&spin_ticket.0, 0),
            _ => timed(&parking_lot.0, 0),
        }
    };
    // Warm up caches, branch predictors and the clock.
    for _ in 0..20 {
        for i in 0..NAMES.len() {
            run(i);
        }
    }
    let mut samples: [Vec<f64>; 5] = Default::default();
    for rep in 0..reps {
        for k in 0..NAMES.len() {
            let i = (rep + k) % NAMES.len();
            samples[i].push(run(i) as f64 / OPS as f64);
        }
    }
    let mut median_ = [0.0; 5];
    let mut min = [0.0; 5];
    for i in 0..NAMES.len() {
        min[i] = samples[i].iter().copied().fold(f64::INFINITY, f64::min);
        median_[i] = median(&mut samples[i].clone());
    }
    Uncontended { median: median_, min, samples }
}

/// Sense-reversing spin barrier: releases all parties within a few hundred
/// cycles of each other (a parking barrier would not).
struct SpinBarrier {
    n: usize,
    count: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    fn new(n: usize) -> Self {
        SpinBarrier { n, count: AtomicUsize::new(0), generation: AtomicUsize::new(0) }
    }
    fn wait(&self) {
        let g = self.generation.load(Ordering::Acquire);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.count.store(0, Ordering::Relaxed);
            self.generation.store(g.wrapping_add(1), Ordering::Release);
        } else {
            while self.generation.load(Ordering::Acquire) == g {
                std::hint::spin_loop();
            }
        }
    }
}

/// Mean cycles per acquire+release over all threads and rounds, with
/// `threads` threads pinned to `cpus[0..threads]` hammering `c`.
fn contended<C: Candidate>(c: &C, cpus: &[usize], threads: usize, rounds: usize) -> f64 {
    let barrier = Aligned(SpinBarrier::new(threads));
    let total = AtomicU64::new(0);
    std::thread::scope(|s| {
        for (i, &core) in cpus.iter().take(threads).enumerate() {
            let (barrier, total) = (&barrier, &total);
            s.spawn(move || {
                if let Err(e) = affinity::pin(core) {
                    eprintln!("bench: cannot pin to cpu {core}: {e}");
                }
                let mut cycles = 0;
                for _ in 0..rounds {
                    barrier.0.wait();
                    cycles += timed(c, i);
                }
                total.fetch_add(cycles, Ordering::Relaxed);
            });
        }
    });
    total.load(Ordering::Relaxed) as f64 / (threads * rounds) as f64 / OPS as f64
}

const CONTENDED: [&str; 4] = ["ticket", "mcs", "spin_ticket", "parking_lot"];

fn contended_all(cpus: &[usize], max_threads: usize, rounds: usize) -> Vec<(usize, [f64; 4])> {
    let mut rows = Vec::new();
    for threads in 1..=max_threads {
        // Fresh locks per thread count; the kinds interleaved per count.
        let ticket = Aligned(Ours(TicketLock::new()));
        let mcs = Aligned(Ours(McsLock::new()));
        let spin_ticket = Aligned(SpinTicket(spin::mutex::TicketMutex::new(())));
        let parking_lot = Aligned(ParkingLot(<parking_lot::RawMutex as lock_api::RawMutex>::INIT));
        let lat = [
            contended(&ticket.0, cpus, threads, rounds),
            contended(&mcs.0, cpus, threads, rounds),
            contended(&spin_ticket.0, cpus, threads, rounds),
            contended(&parking_lot.0, cpus, threads, rounds),
        ];
        rows.push((threads, lat));
    }
    rows
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

pub fn run(opts: &Options) -> Result<(), String> {
    let cpus = affinity::allowed_cpus().map_err(|e| format!("sched_getaffinity: {e}"))?;
    let avail = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores = cpus.len().min(avail).min(MAX_CPUS);
    let max_threads = opts.max_threads.unwrap_or(cores).clamp(1, cores);
    if opts.reps == 0 || opts.rounds == 0 {
        return Err("--reps and --rounds must be at least 1".into());
    }

    println!("mc2 lock benchmark: {} | cores used: {:?} | TSC cycles", cpu_model(), &cpus[..cores]);
    // The uncontended part runs on the first allowed core.
    affinity::pin(cpus[0]).map_err(|e| format!("pin to cpu {}: {e}", cpus[0]))?;
    let u = uncontended(opts.reps);
    let x = u.median[0];
    println!();
    println!("uncontended: cycles per acquire+release, median of {} interleaved reps x {OPS} ops", opts.reps);
    println!("  {:<12} {:>8} {:>8} {:>9}", "lock", "median", "min", "/ xadd");
    for (name, (med, min)) in NAMES.iter().zip(u.median.iter().zip(&u.min)) {
        println!("  {name:<12} {med:>8.1} {min:>8.1} {:>8.2}x", med / x);
    }
    // Figures: paired ratios (median over reps of a/b within the same rep).
    let figures = [
        ("ticket_over_xadd", u.ratio(1, 0)),
        ("mcs_over_xadd", u.ratio(2, 0)),
        ("ticket_over_spin_ticket", u.ratio(1, 3)),
        ("mcs_over_parking_lot", u.ratio(2, 4)),
    ];
    println!();
    println!("  paired ratios (median over reps of a/b measured back to back):");
    for (k, v) in figures {
        println!("  {k:<24} {v:.2}");
    }
    // The targets. "Not slower than the peer" allows PEER_NOISE:
    // identical instruction sequences differ by that much between builds and
    // runs (code alignment, VM noise).
    let checks = [
        ("ticket_over_xadd_le_1_3", figures[0].1 <= 1.3),
        ("mcs_over_xadd_le_2_2", figures[1].1 <= 2.2),
        ("ticket_not_slower_than_spin_ticket", figures[2].1 <= 1.0 + PEER_NOISE),
        ("mcs_not_slower_than_parking_lot", figures[3].1 <= 1.0 + PEER_NOISE),
    ];
    println!();
    for (k, ok) in checks {
        println!("  {k:<36} {}", if ok { "yes" } else { "NO" });
    }

    let rows = contended_all(&cpus[..cores], max_threads, opts.rounds);
    let single = rows[0].1;
    println!();
    println!(
        "contended: mean cycles per acquire+release per thread, {} rounds x {OPS} ops per thread; norm = lat / (lat(1) x threads)",
        opts.rounds
    );
    print!("  {:>7}", "threads");
    for name in CONTENDED {
        print!(" {name:>12} {:>6}", "norm");
    }
    println!();
    let mut contended_json = Vec::new();
    for (threads, lat) in &rows {
        print!("  {threads:>7}");
        let mut row = Json::obj().with("threads", *threads);
        for (k, name) in CONTENDED.iter().enumerate() {
            let norm = lat[k] / (single[k] * *threads as f64);
            print!(" {:>12.1} {:>6.2}", lat[k], norm);
            row = row.with(name, lat[k]);
        }
        for (k, name) in CONTENDED.iter().enumerate() {
            row = row.with(&format!("{name}_norm"), lat[k] / (single[k] * *threads as f64));
        }
        println!();
        contended_json.push(row);
    }

    let mut unc = Json::obj();
    let mut unc_min = Json::obj();
    for (name, (&med, &min)) in NAMES.iter().zip(u.median.iter().zip(&u.min)) {
        unc = unc.with(name, med);
        unc_min = unc_min.with(name, min);
    }
    let mut fig = Json::obj();
    for (k, v) in figures {
        fig = fig.with(k, v);
    }
    let mut chk = Json::obj();
    for (k, v) in checks {
        chk = chk.with(k, v);
    }
    let doc = Json::obj()
        .with("benchmark", "locks")
        .with("unit", "TSC cycles per acquire+release")
        .with("cpu_model", cpu_model())
        .with("cores", cores)
        .with("cpus", cpus[..cores].to_vec())
        .with("ops_per_loop", OPS)
        .with("uncontended_reps", opts.reps)
        .with("contended_rounds", opts.rounds)
        .with("uncontended", unc)
        .with("uncontended_min", unc_min)
        .with("figures", fig)
        .with("checks", chk)
        .with("peer_noise_tolerance", PEER_NOISE)
        .with("contended", Json::Arr(contended_json));
    if let Some(path) = &opts.out {
        std::fs::write(path, format!("{doc}\n")).map_err(|e| format!("write {}: {e}", path.display()))?;
        println!();
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke() {
        let u = uncontended(3);
        assert!(u.median.iter().chain(&u.min).all(|&c| c > 0.0 && c.is_finite()));
        let cpus = affinity::allowed_cpus().unwrap();
        let rows = contended_all(&cpus, cpus.len().min(2), 1);
        assert!(rows.iter().all(|(_, lat)| lat.iter().all(|&c| c > 0.0)));
    }

    #[test]
    fn median_odd_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
