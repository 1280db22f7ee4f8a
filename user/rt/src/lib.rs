//! # rt: the runtime every mc2 user program links
//!
//! - the entry point `_start`, which records the argument string the parent
//!   passed to `spawn` and calls the program's `main` (declared with
//!   [`entry!`]), then exits with its return value;
//! - [`sys`]: the system calls of `abi`, as safe functions returning
//!   `Result<_, abi::Error>`;
//! - [`print!`]/[`println!`] on the console and [`io::read_line`];
//! - a heap (`alloc` works) grown with `mem_map`;
//! - a panic handler that reports and exits with status 101;
//! - helpers shared by the programs: [`text`] (argument parsing), [`check`]
//!   (checksummed test messages), [`proc`] (quota, CPUs, `ps` lookups, a
//!   child group that is always reaped), [`shm`] (a shared page seen as
//!   atomics) and [`time`] (TSC reads and busy loops).
//!
//! Programs are single-threaded (an mc2 process is one thread), so the
//! runtime's global state needs no locking.
#![no_std]

pub extern crate alloc;

use freestanding as _;

#[cfg(test)]
extern crate std;

pub mod check;
pub mod heap;
pub mod io;
pub mod proc;
pub mod shm;
pub mod sys;
pub mod text;
pub mod time;

pub use abi::Error;

/// Declare the program's entry: `rt::entry!(main);` with `fn main() -> i32`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        fn mc2_user_main() -> i32 {
            $main()
        }
    };
}

#[cfg(mc2_user)]
core::arch::global_asm!(
    r#"
.section .text.start, "ax"
.global _start
_start:
    xor %ebp, %ebp
    and $-16, %rsp
    call mc2_rt_start
    ud2
"#,
    options(att_syntax)
);

struct Args(core::cell::Cell<(u64, u64)>);
// SAFETY: a process has one thread; the cell is written once before main.
unsafe impl Sync for Args {}
static ARGS: Args = Args(core::cell::Cell::new((0, 0)));

/// The argument string the parent passed to `spawn` (empty if none).
pub fn args() -> &'static str {
    let (ptr, len) = ARGS.0.get();
    if ptr == 0 || len == 0 {
        return "";
    }
    // SAFETY: the kernel placed `len` bytes of UTF-8-checked text at `ptr`
    // on the initial stack page, which stays mapped for the process's life.
    let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) };
    core::str::from_utf8(bytes).unwrap_or("")
}

#[cfg(mc2_user)]
#[no_mangle]
extern "C" fn mc2_rt_start(args_ptr: u64, args_len: u64) -> ! {
    extern "Rust" {
        fn mc2_user_main() -> i32;
    }
    ARGS.0.set((args_ptr, args_len));
    // SAFETY: every program defines mc2_user_main through `entry!`.
    let code = unsafe { mc2_user_main() };
    sys::exit(code as u64)
}

#[cfg(mc2_user)]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("panic in {}: {}", sys::getpid().unwrap_or(0), info);
    sys::exit(101)
}
