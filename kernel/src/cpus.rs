//! Which CPUs are online, and running a function on several of them at once
//! (used by the self-test and the in-kernel benchmarks; the scheduler will
//! take over this role for threads).

use crate::intr::WAKE_VECTOR;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use lock::SpinLock;
use machine::MAX_CPUS;

static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Mark the calling CPU online.
pub fn set_online(cpu: usize) {
    ONLINE[cpu].store(true, Ordering::Release);
}

pub fn is_online(cpu: usize) -> bool {
    ONLINE[cpu].load(Ordering::Acquire)
}

/// Number of CPUs online.
pub fn online_count() -> usize {
    (0..MAX_CPUS).filter(|&c| is_online(c)).count()
}

/// The work posted to the CPUs: a function, how many CPUs take part, and a
/// generation number that changes with every post.
struct Work {
    f: Option<fn(usize)>,
    cpus: usize,
}
static WORK: SpinLock<Work> = SpinLock::new(Work { f: None, cpus: 0 });
static WORK_GEN: AtomicU64 = AtomicU64::new(0);
static WORK_DONE: AtomicUsize = AtomicUsize::new(0);
/// One poster at a time.
static POST: SpinLock<()> = SpinLock::new(());

/// Run `f(cpu)` on every online CPU with index `< ncpus` (the caller, CPU 0,
/// included) and return when all have finished.
pub fn run_on(ncpus: usize, f: fn(usize)) {
    assert_eq!(machine::cpu::id(), 0, "run_on is called from the boot CPU");
    let _one = POST.lock();
    let helpers: usize = (1..ncpus.min(MAX_CPUS)).filter(|&c| is_online(c)).count();
    *WORK.lock() = Work { f: Some(f), cpus: ncpus };
    WORK_DONE.store(0, Ordering::Relaxed);
    WORK_GEN.fetch_add(1, Ordering::Release);
    let lapic = dev::lapic::local();
    for cpu in (1..ncpus.min(MAX_CPUS)).filter(|&c| is_online(c)) {
        lapic.send_ipi(machine::percpu::apic_id(cpu), WAKE_VECTOR);
    }
    f(0);
    while WORK_DONE.load(Ordering::Acquire) < helpers {
        machine::x86::pause();
    }
}

/// Run `f` on all online CPUs.
pub fn run_on_all(f: fn(usize)) {
    run_on(MAX_CPUS, f)
}

/// The loop an application processor lives in: run posted work, else halt
/// until an interrupt. The generation is checked with interrupts masked, so a
/// wake-up IPI sent after the check stays pending and ends the HLT at once.
pub fn ap_loop(cpu: usize) -> ! {
    let mut seen = WORK_GEN.load(Ordering::Acquire);
    loop {
        let gen = WORK_GEN.load(Ordering::Acquire);
        if gen != seen {
            seen = gen;
            let work = {
                let w = WORK.lock();
                w.f.filter(|_| cpu < w.cpus)
            };
            if let Some(f) = work {
                f(cpu);
                WORK_DONE.fetch_add(1, Ordering::AcqRel);
            }
            continue;
        }
        // SAFETY: ring 0 with the IDT installed; this is the idle point.
        unsafe { machine::x86::wait_for_interrupt() };
    }
}

/// A synchronisation barrier for `n` CPUs, reusable across rounds.
pub struct Barrier {
    count: AtomicUsize,
    round: AtomicUsize,
}

impl Barrier {
    pub const fn new() -> Self {
        Barrier { count: AtomicUsize::new(0), round: AtomicUsize::new(0) }
    }

    /// Wait until `n` CPUs have arrived.
    pub fn wait(&self, n: usize) {
        let round = self.round.load(Ordering::Acquire);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == n {
            self.count.store(0, Ordering::Relaxed);
            self.round.fetch_add(1, Ordering::Release);
        } else {
            while self.round.load(Ordering::Acquire) == round {
                machine::x86::pause();
            }
        }
    }
}
