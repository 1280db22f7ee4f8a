//! # mc2 kernel binary
//!
//! The bare-metal image. It owns no mechanism of its own: it wires the layers
//! together in boot order (see [`boot`]), installs the trap layer's handlers,
//! and offers the boot-time modes selected on the kernel command line:
//!
//! | command line        | what runs                                               |
//! |---------------------|---------------------------------------------------------|
//! | (nothing)           | user space: `init` from the boot bundle, which starts the shell |
//! | `-- COMMAND`        | user space; the shell runs COMMAND, then init powers off |
//! | `monitor`           | the kernel monitor on the serial console (no processes) |
//! | `test`              | the in-kernel test suite, then exit (QEMU/Bochs)        |
//! | `test=fault`, `test=panic`, `test=hang`, `test=wxorx` | deliberate failures the harness must catch |
//! | `bench=locks`, `bench=mm` | in-kernel benchmarks on 1..N CPUs, then exit       |
//!
//! It assumes the layer crates were built with `--cfg mc2_bare` and linked
//! with `machine`'s linker script (both done by `cargo xtask`).
#![no_std]
#![no_main]

mod bench;
mod boot;
mod cpus;
mod intr {
    //! The trap layer's handler, under the name the kernel's modules use.
    pub use trap::intr::*;
}
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
