//! conform: mc2's side of conformance testing against the host-side spec.
//!
//! - `conform`: the driver ([`driver`]), started from the shell by the host
//!   harness (`xtask/src/conform.rs`);
//! - `conform w I`: worker number I ([`worker`]), started by the driver or
//!   by other workers as a trace says;
//! - `conform tick CHAN`: the driver's watchdog.
//!
//! What is checked, and how the host and this program talk, is described
//! in docs/assurance.md.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod driver;
mod proto;
mod worker;

use rt::text::parse_u64;

fn main() -> i32 {
    let args = rt::args();
    let mut w = args.split_whitespace();
    match (w.next(), w.next().and_then(parse_u64)) {
        (None, _) => driver::run(),
        (Some("w"), Some(i)) => worker::run(i),
        (Some("tick"), Some(chan)) => worker::tick(chan),
        _ => {
            rt::println!("usage: conform | conform w INDEX | conform tick CHAN");
            2
        }
    }
}

rt::entry!(main);
