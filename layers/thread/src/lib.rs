//! # thread: mc2's thread management
//!
//! The seed's "thread management module" and "thread-local machine":
//! - [`queue`]: the shared queue library, doubly linked queues of thread ids,
//!   each with its own lock; its atomic interface is an abstract queue
//!   (`spec::QueueSpec`, compiled with the `spec` feature or in tests);
//! - [`sched`]: thread control blocks (state, home CPU, kernel stack, saved
//!   context) and the per-CPU scheduler with the three primitives yield,
//!   sleep (block on a wait queue, or until a tick) and wakeup, usable across
//!   CPUs; idle threads; zombie reaping once a thread is off its CPU.
//!
//! Assumes from below: `machine::cpu::id()` and `MAX_CPUS`, wake-up IPIs
//! through the local APIC (`dev`), kernel context
//! switches (`machine::context`) and the per-CPU kernel-stack slot
//! (`percpu::set_kernel_stack`); `lock::SpinLock` for every shared queue.
//!
//! Invariants: a thread is in at most one queue; a Ready thread is in its
//! home CPU's ready queue or is that CPU's one hand-off (the direct switch of
//! synchronous IPC); a Running thread is `current` of exactly its home
//! CPU; only a thread's home CPU resumes it; a Zombie's slot is reused only
//! after it is off its CPU. The only `unsafe` is the context switch itself.
#![no_std]
#![deny(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod queue;
pub mod sched;
#[cfg(any(test, feature = "spec"))]
pub mod spec;

/// Thread id: an index into the thread tables (`0..MAX_CPUS` are the idle threads).
pub type Tid = u32;

pub use sched::{Scheduler, State, MAX_THREADS, MAX_WAIT_QUEUES, SCHED};
