//! # vdev: the virtual PC of mc2's user-level VMM
//!
//! As in CertiKOS and seL4, mc2's kernel only runs the vCPU; the devices a
//! guest sees are emulated in user space by `vmm` (`user/vmm`). This crate
//! holds everything of that emulation that does not need the kernel, so that
//! it is tested on the host:
//!
//! - the device models, each following its datasheet: [`uart`] (PC16550D,
//!   COM1), [`pic`] (8259A master/slave pair), [`pit`] (8254 plus the PC's
//!   port 0x61), [`rtc`] (MC146818 real-time clock and CMOS bytes), [`pci`]
//!   (configuration mechanism #1 with one host bridge);
//! - [`board`]: the PC they form: I/O port decoding, the debug-exit port,
//!   reset requests, interrupt routing and the next timer deadline;
//! - [`paging`] and [`insn`]: guest linear-to-physical translation and
//!   prefix decoding, for the instructions the VMM completes (INS/OUTS);
//! - [`monitor`]: the VMM's exit-handling loop, written against the
//!   [`monitor::Host`] trait (the `vm_*` system calls in the VMM, a scripted
//!   fake in the tests).
//!
//! Assumptions: time is the host's TSC, passed in as `now` with the TSC rate
//! (ticks per millisecond) given at construction; nothing here reads a clock
//! or touches hardware. Every guest-controlled value is bounds-checked: no
//! input makes a model panic (the tests drive them with hostile sequences).
//! `no_std`, no allocation, no `unsafe`.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod board;
pub mod insn;
pub mod monitor;
pub mod paging;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod rtc;
pub mod uart;

/// `a * b / c` without overflow (c > 0), rounded down.
pub(crate) fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    let r = (a as u128 * b as u128) / (c.max(1) as u128);
    r.min(u64::MAX as u128) as u64
}

/// `a * b / c` without overflow (c > 0), rounded up.
pub(crate) fn mul_div_ceil(a: u64, b: u64, c: u64) -> u64 {
    let c = c.max(1) as u128;
    let r = (a as u128 * b as u128).div_ceil(c);
    r.min(u64::MAX as u128) as u64
}
