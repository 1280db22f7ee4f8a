//! # spec: mc2's executable top-level specification, and conformance testing
//!
//! [`model::Model`] is a host-side model of the whole system-call interface
//! (docs/syscalls.md): processes, threads, containers and quotas, address
//! spaces at page granularity, IPC, mutexes and condition variables, shared
//! memory. It is *assembled from the layers' own specifications* rather than
//! written again: the memory state is `mm::spec::System` (frames, quota tree,
//! spaces with their page tables, shared-memory links), the process table,
//! objects and channels are `proc::spec::{ProcSpec, ObjectsSpec,
//! ChannelsSpec}`, and wait queues come from `thread::spec::SchedSpec`. What
//! this crate adds is the trap layer's part: decoding and checking each
//! call's arguments in the kernel's order, resolving user buffers against
//! the modelled address space, loading programs (ELF segments, stack, kernel
//! stack) the way `spawn` does, exit and reaping, and the continuations of
//! calls that block (the receive half of `call`, a woken condition-variable
//! waiter re-taking its mutex, a woken `wait`).
//!
//! Around it:
//! - [`trace`]: conformance traces (steps issued by numbered worker
//!   processes or by the driver), their one-line text form, and what each
//!   step must produce;
//! - [`gen`]: random traces from a seed (valid and invalid arguments, all
//!   calls), with a cleanup that ends every process, checked against the
//!   model as they are generated;
//! - [`check`]: parsing what mc2's `conform` driver printed and comparing it
//!   with the model, step by step;
//! - [`shrink`]: delta debugging of a failing trace down to a short one;
//! - [`rng`]: a small, stable pseudo-random generator (seeds must mean the
//!   same traces on every machine and toolchain).
//!
//! Assumptions (documented in docs/assurance.md): the model is sequential,
//! so the driver runs one call at a time and waits until the system has
//! settled (every expected report in, every process blocked or a zombie)
//! before the next; the kernel chooses the lowest free id for pids,
//! channels, mutexes, condition variables and containers (checked, not
//! assumed: a different choice shows as a divergence); physical frames are
//! abstract (the model never runs out of memory and does not predict which
//! frame is used, only which pages share one).
#![forbid(unsafe_code)]

pub mod check;
pub mod gen;
pub mod model;
pub mod rng;
pub mod shrink;
pub mod trace;

#[cfg(test)]
mod tests;
