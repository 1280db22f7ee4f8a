//! # dev: mc2's device drivers
//!
//! The seed's "device driver module": the few devices a kernel that runs its
//! own processes and hosts guests needs itself.
//! - [`serial`]: 16550 UART, interrupt-driven input and output, never drops output;
//! - [`lapic`]: local APIC (EOI, IPIs incl. INIT/STARTUP, timer calibrated
//!   against the PIT, TSC rate);
//! - [`ioapic`]: I/O APIC routing of device interrupts to a CPU and vector;
//! - [`pit`] (reference clock only) and [`pic`] (legacy PICs, masked);
//! - [`console`]: the kernel console on COM1, `print!`/`println!`, the `log`
//!   facade with time, CPU and level on each line;
//! - [`power`]: leaving the machine (emulator exit ports, ACPI soft-off).
//!
//! Assumes from below: `machine` for port/MMIO access, the direct map
//! (`layout::phys_to_virt`) covering device MMIO uncached, and `cpu::id`;
//! `lock::SpinLock` for driver state shared between CPUs.
//!
//! Invariants: each device is driven through one driver instance; shared
//! driver state is only touched under its lock; interrupt handlers only run
//! with interrupts masked, so a handler never interrupts a lock holder on the
//! same CPU. Register-level logic that can be modelled (the UART) is tested on
//! the host against a model device.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod console;
pub mod ioapic;
pub mod lapic;
pub mod pic;
pub mod pit;
pub mod power;
pub mod ring;
pub mod serial;
