//! The in-kernel test suite (`test` on the command line), and deliberate
//! failures the harness must recognise (`test=fault`, `test=panic`,
//! `test=hang`, `test=kstack`).
//!
//! Protocol on the console, read by `cargo xtask test`:
//! `TEST <name> ... ok` or `TEST <name> ... FAILED: <why>` per test, then
//! `TESTS DONE passed=<n> failed=<m>`, then the emulator exits with status 33
//! (all passed) or 35 (some failed).

use crate::cpus::{self, run_on, run_on_all};
use crate::intr::{self, COUNTERS, TEST_VECTOR};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use dev::console::CONSOLE;
use dev::{lapic, power, println};
use lock::{McsLock, RawLock, SpinLock, TicketLock};
use machine::multiboot::{BootInfo, RegionKind};
use machine::MAX_CPUS;

type Outcome = Result<(), &'static str>;

pub fn run(which: &str, info: &BootInfo) -> ! {
    match which {
        "" | "all" => suite(info),
        "fault" => deliberate_fault(),
        "wxorx" => {
            println!("TEST wxorx: writing to kernel text");
            let text = deliberate_fault as fn() -> ! as usize as *mut u8;
            // SAFETY: deliberately unsound: kernel text is mapped read-only,
            // so this write must page-fault; the harness checks the report.
            unsafe { core::ptr::write_volatile(text, 0xcc) };
            println!("TEST wxorx ... FAILED: kernel text is writable");
            finish(1, 0)
        }
        "panic" => panic!("deliberate panic requested by the command line (harness check)"),
        "kstack" => deliberate_stack_overflow(),
        "hang" => {
            println!("TEST hang: waiting forever (the harness must time out)");
            loop {
                // SAFETY: ring 0, IDT installed: the idle point.
                unsafe { machine::x86::wait_for_interrupt() };
            }
        }
        "rx" => {
            let failed = report("serial_rx_interrupt", serial_rx());
            println!("TESTS DONE passed={} failed={failed}", 1 - failed);
            finish(failed, 0)
        }
        other => {
            println!("TEST {other} ... FAILED: no such test");
            finish(0, 1)
        }
    }
}

fn report(name: &str, r: Outcome) -> usize {
    match r {
        Ok(()) => println!("TEST {name} ... ok"),
        Err(why) => println!("TEST {name} ... FAILED: {why}"),
    }
    r.is_err() as usize
}

fn finish(failed_a: usize, failed_b: usize) -> ! {
    let failed = failed_a + failed_b;
    let code = if failed == 0 { power::EXIT_SUCCESS } else { power::EXIT_FAILURE };
    CONSOLE.flush();
    power::exit(code, pm1a())
}

fn pm1a() -> Option<u16> {
    crate::boot::STATE.lock().as_ref().and_then(|s| s.platform.as_ref()).and_then(|p| p.pm1a_control)
}

fn suite(info: &BootInfo) -> ! {
    let tests: &[(&str, &dyn Fn() -> Outcome)] = &[
        ("memory_map", &|| memory_map(info)),
        ("expected_cpus_online", &|| expected_cpus(info)),
        ("lock_counter_ticket", &|| counter(&TICKET, &TICKET_SHADOW)),
        ("lock_counter_mcs", &|| counter(&MCS, &MCS_SHADOW)),
        ("lock_counter_default", &|| counter(&DEFAULT, &DEFAULT_SHADOW)),
        ("ipi_to_each_cpu", &ipi_each),
        ("breakpoint_on_each_cpu", &breakpoint_each),
        ("trap_preserves_registers", &trap_preserves_registers),
        ("timer_on_each_cpu", &timer_each),
        ("serial_output_by_interrupt", &serial_tx),
        ("mm_kernel_page_tables", &crate::selftest_mm::layout),
        ("mm_root_container", &crate::selftest_mm::root_accounting),
        ("mm_storm_all_cpus", &crate::selftest_mm::storm),
        ("mm_quota_bounds_page_tables", &crate::selftest_mm::quota_refused),
        ("mm_tlb_shootdown", &crate::selftest_mm::shootdown),
        ("mm_kernel_heap_all_cpus", &crate::selftest_mm::heap),
        ("mm_kernel_stack_zeroed", &crate::selftest_mm::kernel_stack_zeroed),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, t) in tests {
        if report(name, t()) == 0 {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!("TESTS DONE passed={passed} failed={failed}");
    finish(failed, 0)
}

fn memory_map(info: &BootInfo) -> Outcome {
    if info.usable_bytes() < 16 << 20 {
        return Err("less than 16 MiB of usable RAM reported");
    }
    let (start, end) = machine::boot::image_range();
    let inside = info.memory.iter().any(|r| r.kind == RegionKind::Usable && r.base <= start && r.end() >= end);
    if !inside {
        return Err("the kernel image is not inside a usable region");
    }
    Ok(())
}

fn expected_cpus(info: &BootInfo) -> Outcome {
    let Some(want) = info.cmdline_value("expect_cpus").and_then(|v| v.parse::<usize>().ok()) else {
        return Ok(()); // nothing to compare with
    };
    if cpus::online_count() != want {
        return Err("online CPU count differs from expect_cpus=");
    }
    Ok(())
}

// ---- locks: every CPU increments one counter under one lock ----

const ITERATIONS: u64 = 2_000;
static TICKET: SpinLock<u64, TicketLock> = SpinLock::new(0);
static MCS: SpinLock<u64, McsLock> = SpinLock::new(0);
static DEFAULT: SpinLock<u64> = SpinLock::new(0);
/// Updated with a separate load and store inside the critical section: any
/// overlap of two holders loses an update here, even if the guarded counter
/// (also a read-modify-write) happened not to.
static TICKET_SHADOW: AtomicU64 = AtomicU64::new(0);
static MCS_SHADOW: AtomicU64 = AtomicU64::new(0);
static DEFAULT_SHADOW: AtomicU64 = AtomicU64::new(0);

fn hammer<L: RawLock>(lock: &SpinLock<u64, L>, shadow: &AtomicU64) {
    for _ in 0..ITERATIONS {
        let mut g = lock.lock();
        *g += 1;
        let s = shadow.load(Ordering::Relaxed);
        for _ in 0..4 {
            core::hint::spin_loop();
        }
        shadow.store(s + 1, Ordering::Relaxed);
        drop(g);
    }
}

fn counter<L: RawLock>(lock: &'static SpinLock<u64, L>, shadow: &'static AtomicU64) -> Outcome {
    *lock.lock() = 0;
    shadow.store(0, Ordering::Relaxed);
    // `run_on_all` takes a plain fn: pick the statics by identity.
    if core::ptr::eq(lock as *const _ as *const u8, &TICKET as *const _ as *const u8) {
        run_on_all(|_| hammer(&TICKET, &TICKET_SHADOW));
    } else if core::ptr::eq(lock as *const _ as *const u8, &MCS as *const _ as *const u8) {
        run_on_all(|_| hammer(&MCS, &MCS_SHADOW));
    } else {
        run_on_all(|_| hammer(&DEFAULT, &DEFAULT_SHADOW));
    }
    let want = ITERATIONS * cpus::online_count() as u64;
    let got = *lock.lock();
    println!("  {} CPUs x {} increments: counter {}, shadow {} (want {})", cpus::online_count(), ITERATIONS, got, shadow.load(Ordering::Relaxed), want);
    if got != want || shadow.load(Ordering::Relaxed) != want {
        return Err("lost updates: mutual exclusion violated");
    }
    Ok(())
}

// ---- interrupts ----

fn wait_until(ms: u64, cond: impl Fn() -> bool) -> bool {
    let end = machine::x86::rdtsc() + lapic::tsc_per_ms().max(1) * ms;
    while machine::x86::rdtsc() < end {
        if cond() {
            return true;
        }
        // SAFETY: ring 0, IDT installed; lets the interrupts we wait for in.
        unsafe { machine::x86::take_pending_interrupts() };
        machine::x86::pause();
    }
    cond()
}

fn ipi_each() -> Outcome {
    const PER_CPU: u64 = 50;
    let targets: arrayvec::ArrayVec<usize, MAX_CPUS> = (1..MAX_CPUS).filter(|&c| cpus::is_online(c)).collect();
    let before: [u64; MAX_CPUS] = core::array::from_fn(|c| COUNTERS.test_ipi[c].load(Ordering::Relaxed));
    let l = lapic::local();
    for _ in 0..PER_CPU {
        for &c in &targets {
            l.send_ipi(machine::percpu::apic_id(c), TEST_VECTOR);
        }
    }
    // Fixed IPIs to one CPU can merge while one is pending (one IRR bit), so
    // each CPU must see at least one and at most PER_CPU.
    let ok = wait_until(2000, || {
        targets.iter().all(|&c| COUNTERS.test_ipi[c].load(Ordering::Relaxed) > before[c])
    });
    if !ok {
        return Err("some CPU never received its IPIs");
    }
    if targets.iter().any(|&c| COUNTERS.test_ipi[c].load(Ordering::Relaxed) - before[c] > PER_CPU) {
        return Err("a CPU counted more IPIs than were sent");
    }
    Ok(())
}

fn breakpoint_each() -> Outcome {
    let before: [u64; MAX_CPUS] = core::array::from_fn(|c| COUNTERS.breakpoint[c].load(Ordering::Relaxed));
    run_on_all(|_| {
        // SAFETY: INT3 traps to the breakpoint handler, which counts and returns.
        unsafe { core::arch::asm!("int3") };
    });
    for c in (0..MAX_CPUS).filter(|&c| cpus::is_online(c)) {
        if COUNTERS.breakpoint[c].load(Ordering::Relaxed) != before[c] + 1 {
            return Err("a CPU did not return from its breakpoint exactly once");
        }
    }
    Ok(())
}

/// A trap must hand back every general and SSE register as it found them,
/// even when the handler uses them (the breakpoint handler clobbers XMM0-15
/// in test mode).
fn trap_preserves_registers() -> Outcome {
    let (x5, x15, r12): (u64, u64, u64);
    // SAFETY: only registers declared as operands are touched; INT3 returns.
    unsafe {
        core::arch::asm!(
            "movq xmm5, {a}",
            "movq xmm15, {b}",
            "mov r12, {c}",
            "int3",
            "movq {a}, xmm5",
            "movq {b}, xmm15",
            "mov {c}, r12",
            a = inout(reg) 0x1111_2222_3333_4444u64 => x5,
            b = inout(reg) 0x5555_6666_7777_8888u64 => x15,
            c = inout(reg) 0x9999_aaaa_bbbb_ccccu64 => r12,
            out("xmm5") _, out("xmm15") _, out("r12") _,
        );
    }
    if x5 != 0x1111_2222_3333_4444 || x15 != 0x5555_6666_7777_8888 {
        return Err("SSE registers changed across a trap");
    }
    if r12 != 0x9999_aaaa_bbbb_cccc {
        return Err("a general register changed across a trap");
    }
    Ok(())
}

static TIMER_OK: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

fn timer_each() -> Outcome {
    run_on_all(|cpu| {
        let before = COUNTERS.timer[cpu].load(Ordering::Relaxed);
        let l = lapic::local();
        l.start_periodic(intr::TIMER_VECTOR, 1000);
        let ok = wait_until(3000, || COUNTERS.timer[cpu].load(Ordering::Relaxed) >= before + 10);
        l.stop_timer();
        TIMER_OK[cpu].store(ok, Ordering::Relaxed);
    });
    if (0..MAX_CPUS).filter(|&c| cpus::is_online(c)).all(|c| TIMER_OK[c].load(Ordering::Relaxed)) {
        Ok(())
    } else {
        Err("a CPU's local APIC timer did not tick 10 times within 3 s")
    }
}

fn serial_tx() -> Outcome {
    let before = CONSOLE.stats.tx_by_irq.load(Ordering::Relaxed);
    CONSOLE.set_interrupt_driven(true);
    println!("  serial: this line is longer than the 16-byte FIFO, so all but its first 16 bytes go out from the transmit interrupt handler ...");
    let drained = wait_until(2000, || CONSOLE.tx_pending() == 0);
    let by_irq = CONSOLE.stats.tx_by_irq.load(Ordering::Relaxed) - before;
    CONSOLE.set_interrupt_driven(false);
    if !drained {
        return Err("transmit ring did not drain within 2 s");
    }
    if by_irq == 0 {
        return Err("no byte was sent by the transmit interrupt (is COM1 routed?)");
    }
    Ok(())
}

/// Wait for the harness to type a probe line, received by interrupt.
fn serial_rx() -> Outcome {
    const PROBE: &[u8] = b"mc2-rx-probe";
    println!("rx-test: ready for input");
    let mut got = arrayvec::ArrayVec::<u8, 64>::new();
    let end = machine::x86::rdtsc() + lapic::tsc_per_ms().max(1) * 10_000;
    while machine::x86::rdtsc() < end {
        while let Some(b) = CONSOLE.read_byte() {
            if b == b'\r' || b == b'\n' {
                if got.as_slice() == PROBE {
                    return if CONSOLE.stats.irqs.load(Ordering::Relaxed) > 0 {
                        Ok(())
                    } else {
                        Err("input arrived but no serial interrupt was taken")
                    };
                }
                got.clear();
            } else {
                let _ = got.try_push(b);
            }
        }
        // SAFETY: ring 0, IDT installed: wait for the receive interrupt.
        unsafe { machine::x86::wait_for_interrupt() };
    }
    Err("the probe line did not arrive within 10 s")
}

/// Run on a kernel stack of the stack area (slot 0, which no process
/// uses) and overflow it: the guard pages below it must turn that into a
/// reported fault (a double fault: the page fault cannot be delivered on the
/// same stack) naming the stack, not silent corruption of what lies below.
fn deliberate_stack_overflow() -> ! {
    const PAGES: usize = 4;
    println!("TEST kstack: overflowing a kernel stack of the stack area");
    extern "C" fn dive_forever(_: u64) -> ! {
        fn dive(n: u64) -> u64 {
            let frame = [n; 32];
            if core::hint::black_box(n) == u64::MAX {
                return n;
            }
            dive(core::hint::black_box(&frame)[1] + 1).wrapping_add(frame[2])
        }
        let n = dive(0);
        println!("TEST kstack ... FAILED: the recursion ended ({n})");
        finish(1, 0)
    }
    let Ok(first) = mm::kernel::frames().alloc_contiguous(PAGES, 1, mm::Owner::Kernel) else {
        println!("TEST kstack ... FAILED: no frames for the stack");
        finish(1, 0)
    };
    let (rsp, _top) = match mm::kernel::map_kernel_stack(0, first, PAGES, dive_forever, 0) {
        Ok(r) => r,
        Err(e) => {
            println!("TEST kstack ... FAILED: stack not mapped: {e:?}");
            finish(1, 0)
        }
    };
    let mut saved = 0u64;
    // SAFETY: `rsp` was laid out by map_kernel_stack for `dive_forever`,
    // which never returns (so `saved` is never resumed); interrupts are
    // masked in the kernel.
    unsafe { machine::context::switch(&mut saved, rsp) };
    println!("TEST kstack ... FAILED: came back from the overflowing stack");
    finish(1, 0)
}

fn deliberate_fault() -> ! {
    println!("TEST fault: cpu{} will write to an unmapped address", if cpus::online_count() > 1 { 1 } else { 0 });
    run_on(2, |cpu| {
        if cpu == 1 || cpus::online_count() == 1 {
            // SAFETY: deliberately unsound: PML4 slot 255 is unmapped, so this
            // write page-faults; the harness checks the report that follows.
            unsafe { core::ptr::write_volatile(0x0000_7fff_0000_0000 as *mut u64, 1) };
        }
    });
    // Only reached if the fault did not stop the system.
    println!("TEST fault ... FAILED: the write did not fault");
    finish(1, 0)
}
