//! The smallest mc2 program: says hello with its pid, arguments and quota.
#![no_std]
#![no_main]

use rt::{println, sys};

fn main() -> i32 {
    let pid = sys::getpid().unwrap_or(0);
    let (quota, usage) = sys::quota().unwrap_or((0, 0));
    println!("hello from pid {pid} (args \"{}\", quota {quota} pages, {usage} used)", rt::args());
    0
}

rt::entry!(main);
