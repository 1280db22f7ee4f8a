//! # proc: mc2's process management
//!
//! The seed's "process management module", above the thread layer:
//! - [`table`]: processes (one thread each), their parents, exits and waits;
//! - [`objects`]: starvation-free mutexes and condition variables (FIFO
//!   hand-off: no waiter is overtaken);
//! - [`ipc`]: synchronous rendezvous IPC on numbered channels, copying
//!   straight from the sender's buffer to the receiver's;
//! - [`elf`]: checking a program file and planning its segments;
//! - [`wait`]: the scheduler interface these block through, and the result
//!   slots a waker fills in for the thread it wakes.
//!
//! Assumes from below: the thread layer's wait queues and scheduler (yield,
//! block with a lock released only once the thread is queued, wake), locks.
//! Copying between address spaces is left to the layer above (the
//! [`ipc::Copier`] it passes in), so this layer holds no memory of its own.
//!
//! Invariants: a waiter is woken only after its result is written; every
//! queue is FIFO; a mutex has at most one owner and is handed to the oldest
//! waiter on unlock; objects, channels and processes are released when their
//! owner exits, waking their waiters with `PeerGone`; a process holds at
//! most `abi::MAX_{CHANNELS,MUTEXES,CVS}_PER_PROCESS` of each kind, and the
//! tables (and the wait queues they take) are sized for every process at
//! those limits, so no process can fill one for the others. Lock order: channel or
//! condition variable, then mutex, then the scheduler's queues; the process
//! table lock is never held together with an object's.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod elf;
pub mod ipc;
pub mod objects;
#[cfg(any(test, feature = "spec"))]
pub mod spec;
pub mod table;
pub mod wait;

pub use table::{Pid, MAX_PROCS};

// Every wait queue the tables above can ask for exists: a process's child
// queue, two per channel, one per mutex and per condition variable.
const _: () = assert!(MAX_PROCS + 2 * ipc::MAX_CHANNELS + 2 * objects::MAX_OBJECTS <= thread::MAX_WAIT_QUEUES);
