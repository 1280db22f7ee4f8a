//! # machine: the multicore machine and the CPU-local machine
//!
//! The bottom layer of mc2 (the seed's "multicore machine" and "CPU-local
//! machine"). It provides:
//! - the boot path: Multiboot entry, long mode, higher-half mapping, SSE on
//!   before any Rust code ([`boot`], `arch/boot.S`, `arch/kernel.ld`);
//! - discovery: the loader's memory map and command line ([`multiboot`]), CPUs
//!   and I/O APICs from the ACPI MADT or MP tables ([`acpi`]);
//! - per-CPU state reached through GS base: index, GDT, TSS, IDT, kernel and IST
//!   stacks ([`percpu`], [`cpu::id`]);
//! - the trap entry path and IDT, the system-call entry and the way into
//!   user mode ([`trap`]); kernel context switches between threads ([`context`]);
//! - AP start-up with INIT-SIPI-SIPI ([`smp`]);
//! - instruction wrappers ([`x86`]), the address-space layout ([`layout`]) and
//!   access to physical memory through the direct map ([`phys`]).
//!
//! It assumes nothing below it but the hardware (an x86-64 CPU with SSE2 and a
//! Multiboot loader). Everything that touches hardware state is compiled only
//! with `--cfg mc2_bare` (the kernel build); the pure parts (tables, descriptor
//! encodings, `cpu::id` with host threads as CPUs) build and are tested on the
//! host.
//!
//! Invariants: after `percpu::init_this_cpu`, GS base points at the CPU's own
//! block whenever that CPU runs kernel code; `cpu::id()` is then in
//! `0..MAX_CPUS`, unique per CPU, and constant. Only that CPU writes its block.
//! Interrupts are masked whenever kernel code runs (the trap path keeps them
//! masked; only `x86::wait_for_interrupt` opens a window).
#![no_std]

#[cfg(test)]
extern crate std;

pub mod acpi;
pub mod boot;
pub mod context;
pub mod cpu;
pub mod gdt;
pub mod layout;
pub mod multiboot;
pub mod percpu;
pub mod phys;
pub mod physmem;
pub mod smp;
pub mod trap;
pub mod x86;

pub use cpu::MAX_CPUS;
