//! utest: tests of the kernel driven from user space.
//!
//! `utest` runs every test, `utest NAME...` the named ones. Each test prints
//! exactly one line, `TEST <name> ... ok` or `TEST <name> ... FAILED: <why>`,
//! and the run ends with `TESTS DONE passed=N failed=M`; the exit status is 0
//! iff every test passed. (Programs the tests start, such as `prodcons`,
//! print their own lines in between.)
//!
//! At the start utest records the machine's free pages, the root container's
//! usage, the number of processes and its own quota usage; the last test,
//! `resources_returned`, compares against them. After each test, any child
//! the test left behind is killed and reaped and the test fails.
//!
//! The tests start their helper processes from the small `utest-helper`
//! program (which also holds the protocol they speak), one per CPU at most,
//! each with a fair share of utest's quota (at most 64 pages): the default
//! 256 pages are enough on 4 CPUs; on more, give utest more quota
//! (`run -q 1024 utest`), and a test that cannot fit says so.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod bad;
mod tests;

use abi::Error;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use rt::{println, proc, sys};

/// What a test returns: `Err` holds the reason it failed.
pub type TestResult = Result<(), String>;

/// The machine as utest found it.
pub struct Baseline {
    pub free_pages: u64,
    pub root_usage: u64,
    pub processes: u64,
    pub own_usage: u64,
}

pub struct Ctx {
    pub me: u64,
    pub cpus: u64,
    pub base: Baseline,
}

/// A test: `Ok` if it passed.
type Test = fn(&Ctx) -> TestResult;

/// Every test, in the order `utest` runs them (`resources_returned` last).
const TESTS: &[(&str, Test)] = &[
    ("ipc_chain", tests::ipc_chain),
    ("prodcons_counts", tests::prodcons_counts),
    ("spawn_exit_churn", tests::spawn_exit_churn),
    ("bad_pointers", bad::bad_pointers),
    ("quota_limits", tests::quota_limits),
    ("mutex_cv_fifo", tests::mutex_cv_fifo),
    ("shm_protocol", tests::shm_protocol),
    ("resources_returned", tests::resources_returned),
];

/// Most pages given to one helper child.
pub const CHILD_QUOTA: u64 = 64;
/// Pages utest keeps for itself when sharing its quota out.
pub const RESERVE: u64 = 16;

fn main() -> i32 {
    let args = rt::args();
    let wanted: Vec<&str> = args.split_whitespace().collect();
    let base = match baseline() {
        Ok(b) => b,
        Err(e) => {
            println!("TEST setup ... FAILED: {e}");
            println!("TESTS DONE passed=0 failed=1");
            return 1;
        }
    };
    let cx = Ctx { me: sys::getpid().unwrap_or(0), cpus: proc::cpus().unwrap_or(1), base };
    let (mut passed, mut failed) = (0u32, 0u32);
    for name in &wanted {
        if !TESTS.iter().any(|(n, _)| n == name) {
            let names: Vec<&str> = TESTS.iter().map(|(n, _)| *n).collect();
            println!("TEST {name} ... FAILED: no such test (tests: {})", names.join(" "));
            failed += 1;
        }
    }
    for (name, test) in TESTS {
        if !wanted.is_empty() && !wanted.contains(name) {
            continue;
        }
        let r = test(&cx).and(leftovers(cx.me));
        match r {
            Ok(()) => {
                println!("TEST {name} ... ok");
                passed += 1;
            }
            Err(e) => {
                println!("TEST {name} ... FAILED: {e}");
                failed += 1;
            }
        }
    }
    println!("TESTS DONE passed={passed} failed={failed}");
    if failed == 0 {
        0
    } else {
        1
    }
}

/// Give the heap a page for each size class and a page run for large
/// blocks (the ps buffer), so that the short-lived allocations a test makes
/// (messages, ps) do not grow it while the test compares quota usage.
pub fn warm_heap() {
    let mut blocks: Vec<Vec<u8>> = Vec::with_capacity(16);
    let mut size = 16;
    while size <= 2048 {
        blocks.push(Vec::with_capacity(size));
        size *= 2;
    }
    let _ = proc::list();
    drop(blocks);
}

fn baseline() -> Result<Baseline, String> {
    warm_heap();
    let si = sys::sysinfo().map_err(|e| format!("sysinfo: {e}"))?;
    let (_, own_usage) = sys::quota().map_err(|e| format!("quota: {e}"))?;
    Ok(Baseline { free_pages: si.free_pages, root_usage: si.root_usage, processes: si.processes, own_usage })
}

/// Kill and reap any child a test left behind; that fails the test.
fn leftovers(me: u64) -> TestResult {
    let list = proc::list().map_err(|e| format!("ps after the test: {e}"))?;
    let left: Vec<u64> = list.iter().filter(|p| p.parent as u64 == me).map(|p| p.pid as u64).collect();
    if left.is_empty() {
        return Ok(());
    }
    for &pid in &left {
        let _ = sys::kill(pid);
    }
    for &pid in &left {
        let _ = sys::wait(pid);
    }
    Err(format!("left children behind (pids {left:?}); killed and reaped them"))
}

/// Pages for each of `n` children: a fair share of what utest can spare,
/// at most [`CHILD_QUOTA`].
pub fn child_quota(n: u64) -> Result<u64, String> {
    let spare = proc::spare_pages(RESERVE).map_err(|e| format!("quota: {e}"))?;
    let each = (spare / n.max(1)).min(CHILD_QUOTA);
    if each == 0 {
        return Err(format!("no quota for {n} children ({spare} pages to spare); run utest with more (run -q PAGES utest)"));
    }
    Ok(each)
}

/// The caller's quota usage.
pub fn own_usage() -> Result<u64, String> {
    sys::quota().map(|(_, u)| u).map_err(|e| format!("quota: {e}"))
}

/// A spawn error, with the quota it was given (and a hint when that was
/// too little).
pub fn spawn_error(what: &str, cpu: u64, quota: u64, e: Error) -> String {
    let hint = if e == Error::QuotaExceeded {
        let cpus = proc::cpus().unwrap_or(1);
        format!(" (utest shares out its own quota; give it more, e.g. `run -q {} utest`)", (cpus + 2) * CHILD_QUOTA)
    } else {
        String::new()
    };
    format!("spawning {what} on CPU {cpu} with {quota} pages: {e}{hint}")
}

/// The protocol with utest-helper, under a short name.
pub use utest_proto as msg;
pub use utest_proto::{recv_msg, Msg};

rt::entry!(main);
