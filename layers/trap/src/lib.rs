//! # trap: exceptions, interrupts and the system-call interface
//!
//! The top layer of mc2 (the seed's "trap handler module"): everything user
//! programs can reach goes through here, so its behaviour is the
//! specification of the whole kernel (docs/syscalls.md).
//! - [`intr`]: the handler for every vector (user exceptions end the
//!   process; kernel exceptions are fatal with a full report; timer ticks
//!   drive the scheduler and preempt user code; device and IPI vectors);
//! - [`syscall`]: decoding, checking and dispatching the system calls;
//! - [`process`]: spawn, exit, wait and kill, each process's address space,
//!   kernel stack and container, user-memory copies, shared memory glue;
//! - [`console`]: blocking console input;
//! - [`ticks`]: each CPU's tick clock, kept quiet while a guest runs alone;
//! - [`vmcalls`]: the virtual-machine system calls (the `virt` layer below
//!   does the work) and reading guest images from the boot bundle;
//! - [`bkl`]: the big kernel lock of the mC2-bl comparison build.
//!
//! Assumes from below: mm (allocation table, containers, address spaces,
//! shared memory, the direct map), thread (scheduler), proc (process table,
//! IPC, mutexes, condition variables), dev (console, local APIC), machine
//! (trap frames, the way into user mode).
//!
//! Invariants: every user pointer is checked against the caller's page tables
//! before the kernel touches it (`mm::kernel::copy_*`), so nothing a process
//! passes faults the kernel; every error is a distinct `abi::Error`; a
//! process's resources are all charged to its container and all returned when
//! it is reaped.
#![no_std]
#![deny(unsafe_code)]

pub mod bkl;
pub mod console;
#[allow(unsafe_code)]
pub mod intr;
pub mod process;
pub mod programs;
pub mod syscall;
pub mod ticks;
pub mod vmcalls;

use core::sync::atomic::{AtomicU32, Ordering};

/// Scheduler clock rate: timer interrupts per second on every CPU.
pub const TICK_HZ: u64 = 250;

/// ACPI PM1a control port (0: none), for powering off.
static PM1A: AtomicU32 = AtomicU32::new(0);

pub fn set_pm1a(port: Option<u16>) {
    PM1A.store(port.map(u32::from).unwrap_or(0), Ordering::Relaxed);
}

/// Installed with `machine::trap::set_syscall_handler`.
pub fn syscall_entry(frame: &mut machine::trap::TrapFrame) {
    bkl::enter();
    // The calling thread stays on this CPU (threads are pinned) and in this
    // process for the whole call: look both up once.
    let cpu = machine::cpu::id();
    let tid = thread::SCHED.current(cpu);
    let pid = process::pid_of(tid);
    process::note_call(tid, frame.rax);
    let args = [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9];
    let r = if frame.rax == abi::nr::CALL_SHORT {
        let (r, [w0, w1, w2]) = syscall::call_short(pid, args);
        (frame.r10, frame.r8, frame.r9) = (w0, w1, w2);
        r
    } else {
        syscall::dispatch(pid, frame.rax, args)
    };
    frame.rax = abi::encode(r.map(|v| v.0));
    frame.rdx = r.map(|v| v.1).unwrap_or(0);
    thread::SCHED.flush_handoff(cpu);
    process::check_killed_pid(pid);
    bkl::leave();
}

/// Power the machine off on init's behalf: status 0 is success for the
/// emulator, anything else failure.
pub fn power_off(code: u64) -> ! {
    dev::println!("mc2: init powered off with status {code}");
    dev::console::CONSOLE.flush();
    let pm = PM1A.load(Ordering::Relaxed);
    let exit = if code == 0 { dev::power::EXIT_SUCCESS } else { dev::power::EXIT_FAILURE };
    dev::power::exit(exit, (pm != 0).then_some(pm as u16))
}
