//! Ordinary tests: `SpinLock` guard behaviour and std threads hammering each
//! lock. Run with and without `--features mcs` (the default lock changes).
#![cfg(not(any(loom, shuttle)))]

use lock::{DefaultLock, McsLock, RawLock, SpinLock, TicketLock, MAX_CPUS};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;

// `SpinLock<T, L>: Sync` iff `T: Send`; `Send` iff `T: Send`.
fn assert_sync<T: Sync>() {}
fn assert_send<T: Send>() {}
#[test]
fn auto_traits() {
    assert_sync::<SpinLock<std::cell::Cell<u32>>>(); // Send, not Sync: fine
    assert_send::<SpinLock<std::cell::Cell<u32>, McsLock>>();
    assert_sync::<SpinLock<u32, TicketLock>>();
    assert_sync::<lock::SpinLockGuard<'static, u32>>();
    // The negative cases are compile_fail doc tests on `SpinLock`.
}

static GLOBAL: SpinLock<u64> = SpinLock::new(0);
static GLOBAL_MCS: SpinLock<[u8; 3], McsLock> = SpinLock::new([1, 2, 3]);

#[test]
fn static_and_const() {
    *GLOBAL.lock() += 1;
    assert!(*GLOBAL.lock() >= 1);
    assert_eq!(GLOBAL_MCS.lock()[2], 3);
    static T: TicketLock = TicketLock::NEW;
    static M: McsLock = McsLock::NEW;
    assert!(!T.is_locked() && !M.is_locked());
}

fn guard_behaviour<L: RawLock>() {
    let l: SpinLock<Vec<u32>, L> = SpinLock::new(vec![1]);
    assert!(!l.is_locked());
    {
        let mut g = l.lock();
        assert!(l.is_locked());
        g.push(2);
        assert_eq!(&*g, &[1, 2]);
        assert!(l.try_lock().is_none(), "try_lock must fail while held");
        assert_eq!(g.cpu(), machine::cpu::id());
        assert_eq!(format!("{g:?}"), "[1, 2]");
        assert_eq!(format!("{l:?}"), "SpinLock { locked: true, .. }");
    }
    assert!(!l.is_locked());
    {
        let mut g = l.try_lock().expect("free lock");
        g.push(3);
        assert!(l.is_locked());
    }
    assert!(!l.is_locked());
    assert_eq!(format!("{l:?}"), "SpinLock { locked: false, .. }");
    // Guard dropped during unwinding still unlocks.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _g = l.lock();
        panic!("inside");
    }));
    assert!(r.is_err());
    assert!(!l.is_locked());
    let mut l = l;
    l.get_mut().push(4);
    assert_eq!(l.into_inner(), vec![1, 2, 3, 4]);

    // Unsized data.
    let s: &SpinLock<[u32], L> = &SpinLock::new([5u32, 6]);
    s.lock()[0] = 7;
    assert_eq!(&*s.lock(), &[7, 6]);
}

#[test]
fn guard_ticket() {
    guard_behaviour::<TicketLock>();
}

#[test]
fn guard_mcs() {
    guard_behaviour::<McsLock>();
}

#[test]
fn default_lock_follows_feature() {
    let name = std::any::type_name::<DefaultLock>();
    if cfg!(feature = "mcs") {
        assert!(name.ends_with("McsLock"), "{name}");
    } else {
        assert!(name.ends_with("TicketLock"), "{name}");
    }
}

/// `threads` std threads each add 1 to a non-atomic counter `iters` times
/// under the lock; also check no two are inside at once.
fn hammer<L: RawLock + 'static>(threads: usize, iters: usize) {
    let _serial = serial();
    struct Shared<L: RawLock> {
        lock: SpinLock<u64, L>,
        inside: AtomicUsize,
    }
    let sh: &'static Shared<L> =
        Box::leak(Box::new(Shared { lock: SpinLock::new(0), inside: AtomicUsize::new(0) }));
    let start = Barrier::new(threads);
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start.wait();
                for i in 0..iters {
                    let mut g = if i % 7 == 0 {
                        match sh.lock.try_lock() {
                            Some(g) => g,
                            None => sh.lock.lock(),
                        }
                    } else {
                        sh.lock.lock()
                    };
                    assert_eq!(sh.inside.fetch_add(1, Ordering::Relaxed), 0);
                    // A read-modify-write that tears if two are inside.
                    let v = *g;
                    std::hint::black_box(&v);
                    *g = v + 1;
                    sh.inside.fetch_sub(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(*sh.lock.lock(), (threads * iters) as u64);
}

/// The thread-hammering tests run one at a time: a FIFO spin lock with more
/// spinning threads than cores hands the lock to preempted waiters and slows
/// down by orders of magnitude (each hand-over waits for a time slice).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn cores() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, MAX_CPUS)
}

#[test]
fn hammer_ticket() {
    hammer::<TicketLock>(cores(), 50_000);
    // Oversubscribed (waiters preempted while queued): few iterations.
    hammer::<TicketLock>((cores() * 3).min(MAX_CPUS), 300);
}

#[test]
fn hammer_mcs() {
    hammer::<McsLock>(cores(), 50_000);
    hammer::<McsLock>((cores() * 3).min(MAX_CPUS), 300);
}

#[test]
fn hammer_default() {
    hammer::<DefaultLock>(cores(), 20_000);
}

/// Raw API with explicit CPU numbers and the doorway closure under real
/// threads: every doorway is followed by exactly one acquisition.
fn raw_threads<L: RawLock + 'static>() {
    let _serial = serial();
    let lock: &'static L = Box::leak(Box::new(L::new()));
    let doorways = std::sync::Mutex::new(Vec::new());
    let acquired = std::sync::Mutex::new(Vec::new());
    let go = AtomicBool::new(false);
    let n = cores();
    thread::scope(|s| {
        for cpu in 0..n {
            let (doorways, acquired, go) = (&doorways, &acquired, &go);
            s.spawn(move || {
                while !go.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
                for _ in 0..2000 {
                    lock.lock_with(cpu, || doorways.lock().unwrap().push(cpu));
                    acquired.lock().unwrap().push(cpu);
                    // SAFETY: held as `cpu`.
                    unsafe { lock.unlock(cpu) };
                }
            });
        }
        go.store(true, Ordering::Relaxed);
    });
    let (d, a) = (doorways.into_inner().unwrap(), acquired.into_inner().unwrap());
    assert_eq!(d.len(), a.len());
    // The doorway record is not atomic with the doorway step on real threads
    // (a thread may be descheduled in between), so only require that the
    // orders agree as multisets here; exact FIFO is checked by shuttle.
    let (mut ds, mut as_) = (d.clone(), a.clone());
    ds.sort_unstable();
    as_.sort_unstable();
    assert_eq!(ds, as_);
}

#[test]
fn raw_ticket_threads() {
    raw_threads::<TicketLock>();
}

#[test]
fn raw_mcs_threads() {
    raw_threads::<McsLock>();
}
