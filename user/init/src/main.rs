//! init: process 1, started by the kernel. Starts `shell` on CPU 0 with all
//! of its quota but [`RESERVE`] pages, passing its own argument line through
//! (a non-empty line is one command for the shell to run before it exits);
//! reaps every child that exits (orphans are re-parented to init) until the
//! shell itself exits, then powers the machine off with the shell's status.
//!
//! Messages: `init: <what failed>: <error>`; power-off status 1 when the
//! shell cannot be started.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use rt::{println, sys};

/// Pages init keeps for itself (its stack, page tables and small heap).
const RESERVE: u64 = 64;

fn main() -> i32 {
    let code = run_shell();
    match sys::poweroff(code) {
        Ok(_) => println!("init: poweroff returned"),
        Err(e) => println!("init: poweroff({code}): {e}"),
    }
    code as i32
}

/// Start the shell and reap children until it exits; returns its status
/// (1 when it could not be started or waited for).
fn run_shell() -> u64 {
    let (quota, usage) = match sys::quota() {
        Ok(q) => q,
        Err(e) => {
            println!("init: quota: {e}");
            return 1;
        }
    };
    let spare = quota.saturating_sub(usage);
    if spare <= RESERVE {
        println!("init: only {spare} pages of quota left ({quota} in all, {usage} used); the shell needs more than the {RESERVE} init keeps");
        return 1;
    }
    let shell = match sys::spawn("shell", spare - RESERVE, 0, rt::args()) {
        Ok(pid) => pid,
        Err(e) => {
            println!("init: cannot start the shell with {} pages on CPU 0: {e}", spare - RESERVE);
            return 1;
        }
    };
    loop {
        match sys::wait(abi::ANY_CHILD) {
            Ok((pid, code)) if pid == shell => return code,
            // An orphan re-parented to init: reaped, nothing else to do.
            Ok(_) => {}
            Err(e) => {
                println!("init: wait: {e} (the shell is pid {shell})");
                return 1;
            }
        }
    }
}

rt::entry!(main);
