//! `bad_pointers`: arguments the kernel must refuse, each with the error
//! docs/syscalls.md gives, after which the process carries on. Where the
//! document leaves the order of two checks open, either error is accepted
//! (and listed in the message).

use crate::{child_quota, msg, recv_msg, spawn_error, Ctx, TestResult};
use abi::{nr, Error, ShmState, USER_END};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use rt::proc::{self, Children};
use rt::sys;

/// Nothing is mapped here in any program.
const UNMAPPED: u64 = 0x5000_0000;
/// The start of the kernel half.
const KERNEL: u64 = 0xffff_8000_0000_0000;
/// The first non-canonical address.
const NON_CANONICAL: u64 = 0x0000_8000_0000_0000;
/// A page-aligned user address for shared-memory offers (never mapped here).
const SHM_VA: u64 = 0x7200_0000_0000;
const PAGE: u64 = abi::PAGE_SIZE;
/// An object number no kernel table reaches.
const NO_OBJECT: u64 = 1000;

/// Read-only data (the program's rodata segment): writes into it must be refused.
static READ_ONLY: [u8; 256] = [0x11; 256];

#[derive(Default)]
struct Checks {
    fails: Vec<String>,
    count: u32,
}

fn names(want: &[Error]) -> String {
    let v: Vec<String> = want.iter().map(|e| format!("`{e}`")).collect();
    v.join(" or ")
}

impl Checks {
    /// `got` must be one of the errors in `want`.
    fn expect(&mut self, what: &str, got: Result<u64, Error>, want: &[Error]) {
        self.count += 1;
        match got {
            Err(e) if want.contains(&e) => {}
            Err(e) => self.fails.push(format!("{what}: `{e}`, expected {}", names(want))),
            Ok(v) => self.fails.push(format!("{what}: succeeded ({v}), expected {}", names(want))),
        }
    }

    /// As `expect`, for a spawn: a child started by mistake is reaped.
    fn expect_spawn(&mut self, what: &str, got: Result<u64, Error>, want: &[Error]) {
        if let Ok(pid) = got {
            let _ = sys::kill(pid);
            let _ = sys::wait(pid);
        }
        self.expect(what, got, want);
    }

    /// As `expect`, for a mem_map: pages mapped by mistake are unmapped (a
    /// page left at 0 would make every later null-pointer check pass).
    fn expect_map(&mut self, what: &str, va: u64, pages: u64, prot: u64, want: &[Error]) {
        let got = sys::mem_map(va, pages, prot);
        if got.is_ok() {
            let _ = sys::mem_unmap(va, pages);
        }
        self.expect(what, got, want);
    }

    /// `got` must succeed with `want` (any value if None).
    fn value(&mut self, what: &str, got: Result<u64, Error>, want: Option<u64>) -> Option<u64> {
        self.count += 1;
        match got {
            Ok(v) if want.is_none_or(|w| w == v) => return Some(v),
            Ok(v) => self.fails.push(format!("{what}: {v}, expected {}", want.unwrap_or(0))),
            Err(e) => self.fails.push(format!("{what}: `{e}`")),
        }
        None
    }

    fn check(&mut self, what: &str, ok: bool) {
        self.count += 1;
        if !ok {
            self.fails.push(String::from(what));
        }
    }

    fn verdict(self) -> TestResult {
        if self.fails.is_empty() {
            return Ok(());
        }
        Err(format!("{} of {} checks failed: {}", self.fails.len(), self.count, self.fails.join("; ")))
    }
}

fn raw(n: u64, a: [u64; 6]) -> Result<u64, Error> {
    abi::decode(sys::raw(n, a).0)
}

fn shm(r: Result<ShmState, Error>) -> Result<u64, Error> {
    r.map(|s| s as u64)
}

fn usage() -> Result<u64, Error> {
    sys::quota().map(|(_, u)| u)
}

pub fn bad_pointers(cx: &Ctx) -> TestResult {
    use Error::*;
    let mut c = Checks::default();
    let ro = READ_ONLY.as_ptr() as u64;
    let ro_page = ro & !(PAGE - 1);
    let mut big = vec![0u8; 8192];
    let buf = big.as_mut_ptr() as u64;
    let w = abi::prot::WRITE;

    // Console output.
    c.expect("console_write(null, 16)", raw(nr::CONSOLE_WRITE, [0, 16, 0, 0, 0, 0]), &[BadAddress]);
    c.expect("console_write(unmapped)", raw(nr::CONSOLE_WRITE, [UNMAPPED, 16, 0, 0, 0, 0]), &[BadAddress]);
    c.expect("console_write(kernel half)", raw(nr::CONSOLE_WRITE, [KERNEL, 16, 0, 0, 0, 0]), &[BadAddress]);
    c.expect("console_write(across the end of user space)", raw(nr::CONSOLE_WRITE, [USER_END - 8, 16, 0, 0, 0, 0]), &[BadAddress]);
    c.expect("console_write(5000 bytes)", sys::console_write(&big[..5000]), &[TooLarge]);
    c.expect("console_write(length 2^64-1)", raw(nr::CONSOLE_WRITE, [buf, u64::MAX, 0, 0, 0, 0]), &[TooLarge, BadAddress]);

    // Calls that write into a buffer.
    c.expect("sysinfo(null)", raw(nr::SYSINFO, [0, 64, 0, 0, 0, 0]), &[BadAddress]);
    c.expect("sysinfo(kernel half)", raw(nr::SYSINFO, [KERNEL, 64, 0, 0, 0, 0]), &[BadAddress]);
    c.expect("sysinfo(read-only buffer)", raw(nr::SYSINFO, [ro, 64, 0, 0, 0, 0]), &[BadAddress]);
    c.expect("sysinfo(8-byte buffer)", raw(nr::SYSINFO, [buf, 8, 0, 0, 0, 0]), &[Invalid]);
    c.expect("ps(null)", raw(nr::PS, [0, 640, 0, 0, 0, 0]), &[BadAddress]);
    c.expect("ps(unmapped)", raw(nr::PS, [UNMAPPED, 640, 0, 0, 0, 0]), &[BadAddress]);
    c.expect("ps(kernel half)", raw(nr::PS, [KERNEL, 640, 0, 0, 0, 0]), &[BadAddress]);
    c.expect("ps(read-only buffer)", raw(nr::PS, [ro, 128, 0, 0, 0, 0]), &[BadAddress]);
    c.expect("programs(null)", raw(nr::PROGRAMS, [0, 4096, 0, 0, 0, 0]), &[BadAddress]);
    c.expect("programs(kernel half)", raw(nr::PROGRAMS, [KERNEL, 4096, 0, 0, 0, 0]), &[BadAddress]);
    c.expect("programs(1-byte buffer)", raw(nr::PROGRAMS, [buf, 1, 0, 0, 0, 0]), &[TooLarge]);

    // Numbers that are no system call.
    c.expect("system call 999", raw(999, [0; 6]), &[NoSys]);
    c.expect("system call 31 (one past the last)", raw(nr::COUNT, [0; 6]), &[NoSys]);
    c.expect("system call 2^63", raw(1 << 63, [0; 6]), &[NoSys]);

    // Mapping memory.
    c.expect_map("mem_map(misaligned)", UNMAPPED + 1, 1, w, &[Misaligned]);
    c.expect_map("mem_map(kernel half)", KERNEL, 1, w, &[BadAddress]);
    c.expect_map("mem_map(non-canonical)", NON_CANONICAL, 1, w, &[BadAddress]);
    c.expect_map("mem_map(page 0, below the user base)", 0, 1, w, &[BadAddress]);
    c.expect_map("mem_map(across the end of user space)", USER_END - PAGE, 2, w, &[BadAddress]);
    c.expect_map("mem_map(write+execute)", UNMAPPED, 1, w | abi::prot::EXEC, &[Invalid]);
    c.expect_map("mem_map(over the program's rodata)", ro_page, 1, w, &[AlreadyMapped]);
    c.expect("mem_unmap(not mapped)", sys::mem_unmap(UNMAPPED, 1), &[NotMapped]);
    c.expect("mem_unmap(misaligned)", sys::mem_unmap(UNMAPPED + 3, 1), &[Misaligned]);
    c.expect("mem_unmap(kernel half)", sys::mem_unmap(KERNEL, 1), &[BadAddress]);
    // Failed calls change nothing.
    if c.value("mem_map(one page)", sys::mem_map(UNMAPPED + PAGE, 1, w), Some(0)).is_some() {
        let u0 = usage().unwrap_or(0);
        c.expect_map("mem_map(2 pages, the second mapped)", UNMAPPED, 2, w, &[AlreadyMapped]);
        let u1 = usage().unwrap_or(0);
        c.check(&format!("a refused mem_map changed usage from {u0} to {u1}"), u0 == u1);
        c.expect("mem_unmap(2 pages, the first not mapped)", sys::mem_unmap(UNMAPPED, 2), &[NotMapped]);
        c.expect("mem_map over the page a refused unmap kept", sys::mem_map(UNMAPPED + PAGE, 1, w), &[AlreadyMapped]);
        c.value("mem_unmap(the page)", sys::mem_unmap(UNMAPPED + PAGE, 1), Some(0));
        let u2 = usage().unwrap_or(0);
        c.check(&format!("unmapping a page took usage from {u1} to {u2}, expected one less"), u2 + 1 == u1);
    }

    // Starting programs.
    let q = child_quota(1)?;
    let hello = "hello";
    c.expect_spawn("spawn(no such program)", sys::spawn("no-such-program", q, 0, ""), &[NoSuchProgram]);
    c.expect_spawn("spawn(CPU 999)", sys::spawn(hello, q, 999, ""), &[BadCpu]);
    c.expect_spawn(&format!("spawn(CPU {}, one past the last online)", cx.cpus), sys::spawn(hello, q, cx.cpus, ""), &[BadCpu]);
    c.expect_spawn("spawn(one byte of arguments too many)", sys::spawn(hello, q, 0, &"x".repeat(abi::MAX_ARGS + 1)), &[Invalid]);
    c.expect_spawn("spawn(name at null)", raw(nr::SPAWN, [0, 5, q, 0, 0, 0]), &[BadAddress]);
    c.expect_spawn("spawn(name in the kernel half)", raw(nr::SPAWN, [KERNEL, 5, q, 0, 0, 0]), &[BadAddress]);
    c.expect_spawn("spawn(arguments unmapped)", raw(nr::SPAWN, [hello.as_ptr() as u64, 5, q, 0, UNMAPPED, 8]), &[BadAddress]);

    // Kernel objects.
    if let Some(m) = c.value("mutex_create", sys::mutex_create(), None) {
        c.expect("mutex_unlock(not held)", sys::mutex_unlock(m), &[NotOwner]);
        if c.value("mutex_lock", sys::mutex_lock(m), Some(0)).is_some() {
            c.expect("mutex_lock(already held)", sys::mutex_lock(m), &[WouldDeadlock]);
            c.value("mutex_unlock", sys::mutex_unlock(m), Some(0));
        }
        if let Some(cv) = c.value("cv_create", sys::cv_create(), None) {
            c.expect("cv_wait(the mutex not held)", sys::cv_wait(cv, m), &[NotOwner]);
            c.value("cv_signal(no waiters)", sys::cv_signal(cv), Some(0));
            c.value("cv_broadcast(no waiters)", sys::cv_broadcast(cv), Some(0));
        }
    }
    c.expect("mutex_lock(no such mutex)", sys::mutex_lock(NO_OBJECT), &[NoSuchObject, Invalid]);
    c.expect("mutex_unlock(no such mutex)", sys::mutex_unlock(NO_OBJECT), &[NoSuchObject, Invalid]);
    c.expect("cv_signal(no such cv)", sys::cv_signal(NO_OBJECT), &[NoSuchObject, Invalid]);
    c.expect("cv_broadcast(no such cv)", sys::cv_broadcast(NO_OBJECT), &[NoSuchObject, Invalid]);

    // Processes that are not ours, or not there.
    let unused = proc::list()
        .map_err(|e| format!("ps: {e}"))?
        .iter()
        .map(|p| p.pid as u64)
        .fold((2..64u64).collect::<Vec<_>>(), |mut free, p| {
            free.retain(|&f| f != p);
            free
        })
        .first()
        .copied()
        .unwrap_or(63);
    c.expect(&format!("wait({unused}, nobody's pid)"), sys::wait(unused).map(|(p, _)| p), &[NoSuchProcess, NotChild]);
    c.expect("kill(1, init: not a descendant)", sys::kill(1), &[NotPermitted]);
    c.expect(&format!("kill({unused}, nobody's pid)"), sys::kill(unused), &[NoSuchProcess]);
    c.expect("shm_offer(self)", shm(sys::shm_offer(cx.me, SHM_VA)), &[SelfShare]);
    c.expect("shm_status(self)", shm(sys::shm_status(cx.me)), &[SelfShare]);
    c.expect(&format!("shm_offer({unused}, nobody's pid)"), shm(sys::shm_offer(unused, SHM_VA)), &[NoSuchProcess]);
    c.expect(&format!("shm_status({unused}, nobody's pid)"), shm(sys::shm_status(unused)), &[NoSuchProcess]);
    c.expect("poweroff (not init)", sys::poweroff(77), &[NotPermitted]);

    // Channels, with a live peer (the helper answers on its channel).
    let driver = sys::chan_create(u64::MAX).map_err(|e| format!("chan_create: {e}"))?;
    let cpu = if cx.cpus > 1 { 1 } else { 0 };
    let mut kids = Children::new();
    let helper = kids.spawn(msg::HELPER, q, cpu, &format!("helper {driver}")).map_err(|e| spawn_error("the helper", cpu, q, e))?;
    let hi = recv_msg(driver, "the helper's channel")?;
    if hi.kind != msg::HELLO || hi.from != helper {
        return Err(format!("the helper's first message has kind {} (from pid {})", hi.kind, hi.from));
    }
    let hc = hi.b;
    c.expect("chan_create(a taken channel)", sys::chan_create(driver), &[Busy]);
    c.expect("chan_create(CHANNELS)", sys::chan_create(abi::CHANNELS as u64), &[Invalid]);
    c.expect("send(own channel)", sys::send(driver, b"x"), &[SelfChannel]);
    c.expect("send(no such channel)", sys::send(NO_OBJECT, b"x"), &[NoSuchObject, Invalid]);
    c.expect("send(null)", raw(nr::SEND, [hc, 0, 8, 0, 0, 0]), &[BadAddress]);
    c.expect("send(unmapped)", raw(nr::SEND, [hc, UNMAPPED, 8, 0, 0, 0]), &[BadAddress]);
    c.expect("send(kernel half)", raw(nr::SEND, [hc, KERNEL, 8, 0, 0, 0]), &[BadAddress]);
    c.expect("send(across the end of user space)", raw(nr::SEND, [hc, USER_END - 4, 8, 0, 0, 0]), &[BadAddress]);
    c.expect("send(5000 bytes)", sys::send(hc, &big[..5000]), &[TooLarge]);
    c.expect("send(100 bytes to a 64-byte buffer)", sys::send(hc, &big[..100]), &[TooLarge]);
    let mut small = [0u8; 64];
    c.expect("recv(the helper's channel)", sys::recv(hc, &mut small).map(|(n, _)| n), &[NotPermitted]);
    // Receive into bad buffers while the helper is sending. A receive the
    // kernel wrongly accepts takes the message: ask for another, so that
    // the good receive at the end does not wait forever.
    let mut pending = c.value("send(`send` to the helper)", sys::send(hc, b"send"), Some(0)).is_some();
    for (what, ptr) in [("recv(null)", 0), ("recv(unmapped)", UNMAPPED), ("recv(kernel half)", KERNEL), ("recv(read-only buffer)", ro)] {
        if !pending {
            break;
        }
        let got = raw(nr::RECV, [driver, ptr, 64, 0, 0, 0]);
        if got.is_ok() {
            pending = c.value("send(`send` to the helper)", sys::send(hc, b"send"), Some(0)).is_some();
        }
        c.expect(what, got, &[BadAddress]);
    }
    if pending {
        match sys::recv(driver, &mut small) {
            Ok((n, from)) => c.check(
                &format!("after the refused receives, got {n} bytes from pid {from}, expected `data` from the helper (pid {helper})"),
                &small[..n as usize] == b"data" && from == helper,
            ),
            Err(e) => c.check(&format!("recv after the refused receives: `{e}`"), false),
        }
    }
    // Offers the kernel must refuse, with a live peer; they change nothing.
    c.expect("shm_offer(misaligned)", shm(sys::shm_offer(helper, SHM_VA + 1)), &[Misaligned]);
    c.expect("shm_offer(kernel half)", shm(sys::shm_offer(helper, KERNEL)), &[BadAddress]);
    c.expect("shm_offer(non-canonical)", shm(sys::shm_offer(helper, NON_CANONICAL)), &[BadAddress]);
    c.expect("shm_offer(over the program's rodata)", shm(sys::shm_offer(helper, ro_page)), &[AlreadyMapped]);
    c.value("shm_status after the refused offers", shm(sys::shm_status(helper)), Some(ShmState::Dead as u64));
    // With a child alive, waiting for someone else's process is NotChild.
    c.expect("wait(1, init: not a child)", sys::wait(1).map(|(p, _)| p), &[NotChild]);
    c.value("send(`stop` to the helper)", sys::send(hc, b"stop"), Some(0));
    let status = kids.wait(helper).map_err(|e| format!("wait for the helper: {e}"))?;
    c.check(&format!("the helper exited with status {status}"), status == 0);
    c.expect("wait(any) with no children", sys::wait(abi::ANY_CHILD).map(|(p, _)| p), &[NoChildren]);

    // Still running, and the basics still answer.
    match sys::quota() {
        Ok((q, u)) => c.check(&format!("quota: usage {u} above quota {q}"), u <= q),
        Err(e) => c.check(&format!("quota: `{e}`"), false),
    }
    match (sys::clock(), sys::clock()) {
        (Ok((t0, rate)), Ok((t1, _))) => c.check(&format!("clock: TSC {t0} then {t1}, {rate} ticks/ms"), t1 >= t0 && rate > 0),
        _ => c.check("clock failed", false),
    }
    c.verdict()
}
