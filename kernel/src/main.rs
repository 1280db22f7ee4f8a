//! # mc2 kernel binary
//!
//! The bare-metal image. It owns no mechanism of its own: it wires the layers
//! together in boot order (see [`boot`]), installs the trap handler that
//! dispatches to them ([`intr`]), and offers the boot-time modes selected on
//! the kernel command line:
//!
//! | command line        | what runs                                               |
//! |---------------------|---------------------------------------------------------|
//! | (nothing)           | the kernel monitor on the serial console                |
//! | `test`              | the in-kernel test suite, then exit (QEMU/Bochs)        |
//! | `test=fault`, `test=panic`, `test=hang` | deliberate failures the harness must catch |
//! | `bench=locks`       | the lock benchmark on 1..N CPUs, then exit              |
//!
//! It assumes the layer crates were built with `--cfg mc2_bare` and linked
//! with `machine`'s linker script (both done by `cargo xtask`).
#![no_std]
#![no_main]

mod bench;
mod boot;
mod cpus;
mod intr;
mod monitor;
mod rt;
mod selftest;
mod selftest_mm;

/// Called by `machine` on the boot CPU, in long mode on its boot stack.
#[no_mangle]
fn mc2_kernel_main(handoff: machine::boot::Handoff) -> ! {
    boot::bsp(handoff)
}

/// Called by `machine` on each application processor.
#[no_mangle]
fn mc2_kernel_ap_main(cpu: usize) -> ! {
    boot::ap(cpu)
}
