//! The Linux side of `cargo xtask bench ipc`: the same measurements mc2's
//! `ipcbench` makes, run as `/init` of a Linux guest under the same QEMU
//! configuration (`-icount shift=0`, so the TSC counts retired instructions).
//!
//! - null system call: `getppid` in a loop;
//! - round trip: two processes ping-pong 8 bytes over a pair of pipes.
//!
//! Prints `BENCH linux ...` lines, then powers the machine off. Built
//! statically (`-C target-feature=+crt-static`) by the xtask.

use std::io::Write;

fn tsc() -> u64 {
    // SAFETY: LFENCE and RDTSC only order and read the time-stamp counter.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        core::arch::x86_64::_rdtsc()
    }
}

fn check(r: libc::c_int, what: &str) {
    if r < 0 {
        eprintln!("linux-ipc: {what} failed: {}", std::io::Error::last_os_error());
        finish(1);
    }
}

fn finish(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    // As /init (pid 1) power the guest off; run by hand, just exit.
    if std::process::id() == 1 {
        // SAFETY: sync and reboot take no pointers.
        unsafe {
            libc::sync();
            libc::reboot(libc::RB_POWER_OFF);
        }
    }
    std::process::exit(code)
}

fn main() {
    const NULL_CALLS: u64 = 10_000;
    const ROUND_TRIPS: u64 = 2_000;
    // Warm up, then time getppid.
    for _ in 0..100 {
        // SAFETY: getppid has no arguments and cannot fail.
        unsafe { libc::getppid() };
    }
    let t0 = tsc();
    for _ in 0..NULL_CALLS {
        // SAFETY: as above.
        unsafe { libc::getppid() };
    }
    let null = (tsc() - t0) as f64 / NULL_CALLS as f64;
    println!("BENCH linux null_syscall cycles_per_call={null:.1}");

    let mut ab = [0i32; 2];
    let mut ba = [0i32; 2];
    // SAFETY: pipe writes two descriptors into the arrays given.
    check(unsafe { libc::pipe(ab.as_mut_ptr()) }, "pipe");
    // SAFETY: as above.
    check(unsafe { libc::pipe(ba.as_mut_ptr()) }, "pipe");
    // SAFETY: fork has no arguments; both processes continue below.
    let child = unsafe { libc::fork() };
    check(child, "fork");
    let mut buf = [0u8; 8];
    if child == 0 {
        // SAFETY: closing the ends this process does not use, so that the
        // parent's close is seen as end-of-file.
        unsafe {
            libc::close(ab[1]);
            libc::close(ba[0]);
        }
        // Echo server: read 8 bytes, write them back, until the pipe closes.
        loop {
            // SAFETY: buf is 8 writable bytes; descriptors from pipe().
            let n = unsafe { libc::read(ab[0], buf.as_mut_ptr().cast(), 8) };
            if n <= 0 {
                // SAFETY: _exit takes a status only.
                unsafe { libc::_exit(0) };
            }
            // SAFETY: buf holds n valid bytes.
            unsafe { libc::write(ba[1], buf.as_ptr().cast(), n as usize) };
        }
    }
    // SAFETY: as in the child, for the parent's unused ends.
    unsafe {
        libc::close(ab[0]);
        libc::close(ba[1]);
    }
    let mut round = |i: u64| {
        buf = i.to_le_bytes();
        // SAFETY: 8 readable/writable bytes in buf; descriptors from pipe().
        unsafe {
            libc::write(ab[1], buf.as_ptr().cast(), 8);
            let mut got = 0;
            while got < 8 {
                let n = libc::read(ba[0], buf.as_mut_ptr().add(got).cast(), 8 - got);
                if n <= 0 {
                    break;
                }
                got += n as usize;
            }
        }
        u64::from_le_bytes(buf) == i
    };
    for i in 0..100 {
        round(i);
    }
    let t0 = tsc();
    let mut ok = true;
    for i in 0..ROUND_TRIPS {
        ok &= round(i);
    }
    let rtt = (tsc() - t0) as f64 / ROUND_TRIPS as f64;
    println!("BENCH linux pipe_roundtrip cycles_per_roundtrip={rtt:.1} ok={ok}");
    // SAFETY: closing our ends lets the child see end-of-file and exit.
    unsafe {
        libc::close(ab[1]);
        let mut status = 0;
        libc::waitpid(child, &mut status, 0);
    }
    println!("BENCH linux DONE");
    finish(if ok { 0 } else { 1 })
}
