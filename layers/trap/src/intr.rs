//! The trap handler installed into `machine`: exceptions, device interrupts
//! and inter-processor interrupts, and the fatal-error path.
//!
//! An exception in user mode ends that process with a report (exit status
//! 128 + vector); one in kernel mode is a kernel bug and fatal. The timer
//! drives the scheduler's clock and preempts user code; the serial interrupt
//! wakes console readers.
//!
//! A fatal error (a kernel exception, a panic) prints a full report on the
//! console, stops every other CPU with an NMI and, when running the test
//! suite, ends the emulator with a failure status, so a failure can never
//! look like a silent hang or a triple-fault reboot.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use dev::console::{print_emergency, CONSOLE};
use dev::lapic;
use machine::trap::{exception_name, vector, TrapFrame};
use machine::MAX_CPUS;

/// Interrupt vectors mc2 uses (0-31 are exceptions; 0xfe/0xff are the
/// local APIC's error and spurious vectors); defined by the machine layer.
pub use machine::trap::vector::{
    FLUSH as FLUSH_VECTOR, PIC_BASE, SERIAL as SERIAL_VECTOR, TEST as TEST_VECTOR, TIMER as TIMER_VECTOR, WAKE as WAKE_VECTOR,
};

/// Per-CPU event counters, read by the self-test and the monitor.
pub struct Counters {
    pub timer: [AtomicU64; MAX_CPUS],
    pub test_ipi: [AtomicU64; MAX_CPUS],
    pub breakpoint: [AtomicU64; MAX_CPUS],
    pub spurious: AtomicU64,
}

pub static COUNTERS: Counters = Counters {
    timer: [const { AtomicU64::new(0) }; MAX_CPUS],
    test_ipi: [const { AtomicU64::new(0) }; MAX_CPUS],
    breakpoint: [const { AtomicU64::new(0) }; MAX_CPUS],
    spurious: AtomicU64::new(0),
};

/// Set once a CPU has hit a fatal error: others halt on the NMI that follows.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Running the test suite: fatal errors end the emulator with a failure code.
pub static TEST_MODE: AtomicBool = AtomicBool::new(false);

/// Installed with `machine::trap::set_handler`.
pub fn handle(frame: &mut TrapFrame) {
    let cpu = machine::cpu::id();
    let from_user = frame.from_user();
    crate::bkl::enter();
    if from_user && frame.vector < 32 && frame.vector != vector::NMI as u64 {
        user_exception(frame);
    }
    match frame.vector as u8 {
        vector::BREAKPOINT => {
            COUNTERS.breakpoint[cpu].fetch_add(1, Ordering::Relaxed);
            if TEST_MODE.load(Ordering::Relaxed) {
                clobber_sse();
            }
        }
        vector::NMI => {
            if STOPPING.load(Ordering::Acquire) {
                machine::x86::halt_forever();
            }
            log::warn!("NMI (hardware error signal?) at rip {:#x}; continuing", frame.rip);
        }
        0..=31 => fatal_exception(frame),
        TIMER_VECTOR => {
            COUNTERS.timer[cpu].fetch_add(1, Ordering::Relaxed);
            lapic::local().eoi();
            crate::ticks::timer_fired(cpu);
            if from_user && thread::SCHED.has_ready(cpu) {
                thread::SCHED.yield_now(cpu);
            }
        }
        TEST_VECTOR => {
            COUNTERS.test_ipi[cpu].fetch_add(1, Ordering::Relaxed);
            lapic::local().eoi();
        }
        WAKE_VECTOR => lapic::local().eoi(),
        FLUSH_VECTOR => {
            mm::kernel::handle_flush();
            lapic::local().eoi();
        }
        SERIAL_VECTOR => {
            CONSOLE.handle_irq();
            lapic::local().eoi();
            crate::console::input_arrived();
        }
        // A spurious interrupt is not in service: no EOI (SDM Vol. 3A §11.9).
        lapic::SPURIOUS_VECTOR => {
            COUNTERS.spurious.fetch_add(1, Ordering::Relaxed);
        }
        lapic::ERROR_VECTOR => {
            let esr = lapic::local().error_status();
            lapic::local().eoi();
            log::warn!("local APIC error, ESR {esr:#x}");
        }
        v if (PIC_BASE..PIC_BASE + 16).contains(&v) => {
            COUNTERS.spurious.fetch_add(1, Ordering::Relaxed);
        }
        v => {
            lapic::local().eoi();
            log::warn!("unexpected interrupt vector {v:#x}");
        }
    }
    if from_user {
        thread::SCHED.flush_handoff(cpu);
        crate::process::check_killed();
    }
    crate::bkl::leave();
}

/// An exception in user mode: report it and end the process.
fn user_exception(frame: &TrapFrame) -> ! {
    let (mnemonic, name) = exception_name(frame.vector);
    let pid = crate::process::current_pid();
    let pname = proc::table::PROCS.get(pid as u64).map(|p| p.name).unwrap_or_default();
    if frame.vector == vector::PAGE_FAULT as u64 {
        // SAFETY: ring 0; reading CR2 has no side effect.
        let cr2 = unsafe { machine::x86::read_cr2() };
        dev::println!(
            "mc2: pid {pid} ({pname}) killed: {mnemonic} {name} at rip {:#x}, address {cr2:#x} ({})",
            frame.rip,
            PfCode(frame.error_code)
        );
    } else {
        dev::println!("mc2: pid {pid} ({pname}) killed: {mnemonic} {name} at rip {:#x} (error code {:#x})", frame.rip, frame.error_code);
    }
    crate::process::exit_current(128 + frame.vector)
}

/// Overwrite every SSE register, as any handler using SSE may: the self-test
/// checks the trap path restores them.
fn clobber_sse() {
    // SAFETY: writes only the registers declared as clobbered.
    unsafe {
        core::arch::asm!(
            "pcmpeqd xmm0, xmm0", "pcmpeqd xmm1, xmm1", "pcmpeqd xmm2, xmm2", "pcmpeqd xmm3, xmm3",
            "pcmpeqd xmm4, xmm4", "pcmpeqd xmm5, xmm5", "pcmpeqd xmm6, xmm6", "pcmpeqd xmm7, xmm7",
            "pcmpeqd xmm8, xmm8", "pcmpeqd xmm9, xmm9", "pcmpeqd xmm10, xmm10", "pcmpeqd xmm11, xmm11",
            "pcmpeqd xmm12, xmm12", "pcmpeqd xmm13, xmm13", "pcmpeqd xmm14, xmm14", "pcmpeqd xmm15, xmm15",
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _,
            out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nomem, nostack),
        );
    }
}

/// Decode a page-fault error code (SDM Vol. 3A §4.7, Figure 4-12).
struct PfCode(u64);

impl fmt::Display for PfCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        write!(
            f,
            "{}, {}, {}",
            if e & 1 != 0 { "protection violation" } else { "page not present" },
            if e & 0x10 != 0 {
                "instruction fetch"
            } else if e & 2 != 0 {
                "write"
            } else {
                "read"
            },
            if e & 4 != 0 { "user mode" } else { "kernel mode" }
        )?;
        if e & 8 != 0 {
            f.write_str(", reserved bit set")?;
        }
        Ok(())
    }
}

fn fatal_exception(frame: &TrapFrame) -> ! {
    let (mnemonic, name) = exception_name(frame.vector);
    let cpu = machine::cpu::id();
    let mode = if frame.from_user() { "user" } else { "kernel" };
    let cr2 = if frame.vector == vector::PAGE_FAULT as u64 {
        // SAFETY: ring 0; reading CR2 has no side effect.
        Some(unsafe { machine::x86::read_cr2() })
    } else {
        None
    };
    print_emergency(format_args!(
        "\n!!! mc2: cpu {cpu}: exception {mnemonic} {name} (vector {}) in {mode} mode\n",
        frame.vector
    ));
    if frame.vector == vector::PAGE_FAULT as u64 {
        print_emergency(format_args!("    error code {:#x} ({})\n", frame.error_code, PfCode(frame.error_code)));
    } else if machine::trap::has_error_code(frame.vector as u8) {
        print_emergency(format_args!("    error code {:#x}\n", frame.error_code));
    }
    if let Some(cr2) = cr2 {
        print_emergency(format_args!("    cr2 {cr2:#018x} (faulting address)\n"));
    }
    print_emergency(format_args!(
        "    rip {:#018x} cs {:#x} rflags {:#x} rsp {:#018x} ss {:#x}\n",
        frame.rip, frame.cs, frame.rflags, frame.rsp, frame.ss
    ));
    print_emergency(format_args!(
        "    rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x}\n",
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp
    ));
    print_emergency(format_args!(
        "    r8 {:#x} r9 {:#x} r10 {:#x} r11 {:#x} r12 {:#x} r13 {:#x} r14 {:#x} r15 {:#x}\n",
        frame.r8, frame.r9, frame.r10, frame.r11, frame.r12, frame.r13, frame.r14, frame.r15
    ));
    if !frame.from_user() {
        // A double fault from a stack overflow: CR2 still holds the address
        // of the page fault that could not be delivered.
        let cr2 = cr2.or_else(|| {
            // SAFETY: ring 0; reading CR2 has no side effect.
            (frame.vector == vector::DOUBLE_FAULT as u64).then(|| unsafe { machine::x86::read_cr2() })
        });
        print_stack_owner(frame.rsp, cr2);
    }
    fatal(format_args!("unhandled {mnemonic} in {mode} mode"), Some(cpu))
}

/// Where the faulting stack pointer (and, for page and double faults, the
/// faulting address) lies among the process kernel stacks: on the current
/// thread's, on another one's (a stack freed or shared by mistake), or in the
/// guard pages below one (a kernel stack overflow).
fn print_stack_owner(rsp: u64, cr2: Option<u64>) {
    use mm::kmap::StackPart;
    let cpu = machine::cpu::id();
    let cur = thread::SCHED.current(cpu);
    let thread_on = |slot: usize| {
        // Slot = pid; the thread is a live one (a freed thread slot keeps
        // its old stack top) whose stack top is that slot's: this CPU's
        // current or previous thread first.
        let top = mm::kernel::STACKS.get().map(|a| a.top(slot)).unwrap_or(0);
        let on = |t: thread::Tid| {
            (t as usize) >= MAX_CPUS
                && (t as usize) < thread::MAX_THREADS
                && thread::SCHED.kstack_top(t) == top
                && thread::SCHED.state(t) != thread::State::Free
        };
        [cur, thread::SCHED.previous(cpu)].into_iter().chain(0..thread::MAX_THREADS as thread::Tid).find(|&t| on(t))
    };
    for (what, addr) in [("rsp", Some(rsp)), ("cr2", cr2)] {
        let Some(addr) = addr else { continue };
        let stack_bytes = (crate::process::KSTACK_PAGES * 4096) as u64;
        let stack_part = |slot: usize| mm::kernel::STACKS.get().is_some_and(|a| addr >= a.top(slot) - stack_bytes);
        match mm::kernel::kernel_stack_part(addr) {
            // Unmapped where a stack would be: used after it was unmapped.
            Some(StackPart::Guard { slot }) if stack_part(slot) => print_emergency(format_args!(
                "    {what} {addr:#x} is on kernel stack slot {slot} (pid {slot}'s, thread {:?}), which is NOT MAPPED: a kernel stack used after it was freed\n",
                thread_on(slot)
            )),
            Some(StackPart::Guard { slot }) => print_emergency(format_args!(
                "    {what} {addr:#x} is in the guard pages below kernel stack slot {slot} (pid {slot}'s, thread {:?}): KERNEL STACK OVERFLOW\n",
                thread_on(slot)
            )),
            Some(StackPart::Stack { slot }) => match thread_on(slot) {
                Some(t) if t == cur => print_emergency(format_args!("    {what} is on the current thread's kernel stack\n")),
                t => print_emergency(format_args!(
                    "    {what} {addr:#x} is on kernel stack slot {slot} (pid {slot}'s, thread {t:?}), NOT the current thread's\n"
                )),
            },
            None if what == "rsp" => print_emergency(format_args!("    rsp is on no process's kernel stack\n")),
            None => {}
        }
    }
}

/// The threads involved: the current one and the one this CPU ran before
/// it, each with its state, process and last system call. Reads atomics
/// only (no lock a failing CPU may hold).
fn print_threads(cpu: usize) {
    let sched = &thread::SCHED;
    let describe = |what: &str, t: thread::Tid| {
        if t as usize >= thread::MAX_THREADS {
            print_emergency(format_args!("    {what}: none\n"));
            return;
        }
        let call = crate::process::last_call(t);
        let pid = crate::process::pid_of(t);
        let note = if (t as usize) < MAX_CPUS {
            ", idle"
        } else if pid == 0 {
            // Only `wait` clears a process thread's pid, after reaping it.
            ", its process reaped: its kernel stack may be freed"
        } else {
            ""
        };
        print_emergency(format_args!(
            "    {what}: thread {t} ({:?}{note}), pid {pid}, kernel stack top {:#x}, last system call {}\n",
            sched.state(t),
            sched.kstack_top(t),
            CallName(call)
        ));
    };
    describe("current", sched.current(cpu));
    describe("before it on this cpu", sched.previous(cpu));
}

/// A system-call number for a report (`abi::nr`), or none.
struct CallName(Option<u64>);

impl fmt::Display for CallName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("none"),
            Some(n) => write!(f, "{n}"),
        }
    }
}

/// Report a fatal error, stop the other CPUs, and leave (test mode) or halt.
pub fn fatal(what: fmt::Arguments<'_>, cpu: Option<usize>) -> ! {
    let cpu = cpu.unwrap_or_else(machine::cpu::id);
    let first = !STOPPING.swap(true, Ordering::AcqRel);
    print_emergency(format_args!("!!! mc2: cpu {cpu}: {what}\n"));
    if first {
        print_threads(cpu);
        lapic::local().send_nmi_all_but_self();
        print_emergency(format_args!("!!! mc2: system halted (cpu {cpu})\n"));
        if TEST_MODE.load(Ordering::Relaxed) {
            dev::power::exit(dev::power::EXIT_FAILURE, None);
        }
    }
    machine::x86::halt_forever()
}
