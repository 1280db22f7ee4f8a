//! The tests (except `bad_pointers`, in `bad.rs`).

use crate::msg::{self, CHILD_MAGIC, CHILD_TEXT, HELPER};
use crate::{child_quota, own_usage, recv_msg, spawn_error, Ctx, Msg, TestResult, RESERVE};
use abi::{Error, ShmState};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use rt::proc::{self, Children};
use rt::shm::SharedPage;
use rt::{check, sys};

/// Name of a shared-memory state, for messages.
fn state_name(s: ShmState) -> &'static str {
    match s {
        ShmState::Dead => "Dead",
        ShmState::Pending => "Pending",
        ShmState::Ready => "Ready",
    }
}

fn err_name(code: u64) -> String {
    match Error::from_code(code) {
        Some(e) => format!("{e}"),
        None => format!("error {code}"),
    }
}

fn chan() -> Result<u64, String> {
    sys::chan_create(u64::MAX).map_err(|e| format!("chan_create: {e}"))
}

fn unexpected(m: &Msg, what: &str) -> String {
    if m.kind == msg::FAIL {
        format!("{what}: helper {} (pid {}) failed: {}", m.a, m.from, err_name(m.b))
    } else {
        format!("{what}: unexpected message (kind {}, {}, {}, {}) from pid {}", m.kind, m.a, m.b, m.c, m.from)
    }
}

/// Messages sent round the ring.
const RING_ROUNDS: u64 = 200;

/// A ring of one process per CPU; 200 checksummed messages of 1..4096
/// bytes go round it (sent from and received into odd offsets of buffers
/// spanning pages); every hop verifies every message and the counts must
/// be exact.
pub fn ipc_chain(cx: &Ctx) -> TestResult {
    let n = cx.cpus as usize;
    let data = chan()?;
    let reports = chan()?;
    let q = child_quota(n as u64)?;
    let mut kids = Children::new();
    let mut pids = vec![0u64; n];
    for (i, pid) in pids.iter_mut().enumerate() {
        let cpu = i as u64;
        *pid = kids
            .spawn(HELPER, q, cpu, &format!("ring {i} {data} {reports} {RING_ROUNDS}"))
            .map_err(|e| spawn_error(&format!("ring member {i}"), cpu, q, e))?;
    }
    let mut chans: Vec<Option<u64>> = vec![None; n];
    for _ in 0..n {
        let m = recv_msg(reports, "the ring members' channels")?;
        let i = m.a as usize;
        if m.kind != msg::HELLO || i >= n || pids[i] != m.from || chans[i].is_some() {
            return Err(unexpected(&m, "setting up the ring"));
        }
        chans[i] = Some(m.b);
    }
    let chans: Vec<u64> = chans.into_iter().map(|c| c.unwrap_or(0)).collect();
    for i in 0..n {
        let next = if i + 1 < n { chans[i + 1] } else { data };
        sys::send(chans[i], &next.to_le_bytes()).map_err(|e| format!("telling member {i} its next hop: {e}"))?;
    }

    // Odd offsets: a message crosses a page boundary on both sides.
    const OUT: usize = 4093;
    const IN: usize = 4096 + 2047;
    let mut out = vec![0u8; 3 * 4096];
    let mut inb = vec![0u8; 3 * 4096];
    for k in 0..RING_ROUNDS {
        let len = check::message_len(k);
        check::fill(k, &mut out[OUT..OUT + len]);
        let (got, from) = sys::call_chan(chans[0], &out[OUT..OUT + len], data, &mut inb[IN..IN + abi::MAX_MESSAGE])
            .map_err(|e| format!("message {k}: call: {e}"))?;
        let m = &inb[IN..IN + got as usize];
        if let Err(e) = check::verify_len(k, m) {
            if let Some([msg::FAIL, i, code, _]) = msg::decode(m) {
                return Err(format!("message {k}: ring member {i} failed: {}", err_name(code)));
            }
            return Err(format!("message {k} ({len} bytes) after going round the ring: {e}"));
        }
        if from != pids[n - 1] {
            return Err(format!("message {k} came back from pid {from}, not from the last member (pid {})", pids[n - 1]));
        }
    }
    let mut seen = vec![false; n];
    for _ in 0..n {
        let m = recv_msg(reports, "the members' totals")?;
        let i = m.a as usize;
        if m.kind != msg::REPORT || i >= n || seen[i] {
            return Err(unexpected(&m, "collecting the totals"));
        }
        seen[i] = true;
        if m.b != RING_ROUNDS || m.c != 0 {
            return Err(format!("member {i} (cpu {i}) forwarded {} of {RING_ROUNDS} messages, {} of them bad", m.b, m.c));
        }
    }
    kids.wait_all_ok("a ring member")
}

/// The prodcons program with 2000 items must succeed.
pub fn prodcons_counts(_: &Ctx) -> TestResult {
    let q = proc::spare_pages(RESERVE).map_err(|e| format!("quota: {e}"))?.min(3 * crate::CHILD_QUOTA);
    let mut kids = Children::new();
    let pid = kids.spawn("prodcons", q, 0, "2000").map_err(|e| spawn_error("prodcons", 0, q, e))?;
    let status = kids.wait(pid).map_err(|e| format!("wait: {e}"))?;
    if status != 0 {
        return Err(format!("`prodcons 2000` exited with status {status} (its own output says why)"));
    }
    Ok(())
}

const CHURN: usize = 100;

/// 100 short-lived children across the CPUs, in batches; each exits with
/// a known status that `wait` must return; pids are reused; the caller's
/// quota usage and the process count come back exactly.
pub fn spawn_exit_churn(cx: &Ctx) -> TestResult {
    let batch = cx.cpus.min(8) as usize;
    let q = child_quota(batch as u64)?;
    // Everything the loop needs is allocated before the usage is read.
    let args: Vec<String> = (0..4).map(|c| format!("exit {c}")).collect();
    let mut seen: Vec<u64> = Vec::with_capacity(CHURN);
    let mut live: Vec<(u64, u64)> = Vec::with_capacity(batch);
    let procs0 = sys::sysinfo().map_err(|e| format!("sysinfo: {e}"))?.processes;
    crate::warm_heap();
    let usage0 = own_usage()?;
    let reap = |live: &mut Vec<(u64, u64)>| {
        for &(pid, _) in live.iter() {
            let _ = sys::kill(pid);
            let _ = sys::wait(pid);
        }
        live.clear();
    };
    let mut spawned = 0;
    while spawned < CHURN {
        for j in 0..batch.min(CHURN - spawned) {
            let code = (spawned % 4) as u64;
            let cpu = j as u64 % cx.cpus;
            match sys::spawn(HELPER, q, cpu, &args[code as usize]) {
                Ok(pid) => live.push((pid, code)),
                Err(e) => {
                    reap(&mut live);
                    return Err(format!("spawn number {}: {}", spawned + 1, spawn_error(HELPER, cpu, q, e)));
                }
            }
            spawned += 1;
        }
        // Reap newest first: out of spawn order.
        while let Some((pid, code)) = live.pop() {
            match sys::wait(pid) {
                Ok((p, c)) if p == pid && c == code => seen.push(pid),
                Ok((p, c)) => {
                    reap(&mut live);
                    return Err(format!("wait({pid}) returned pid {p} with status {c}, expected status {code}"));
                }
                Err(e) => {
                    reap(&mut live);
                    return Err(format!("wait({pid}): {e}"));
                }
            }
        }
    }
    match sys::wait(abi::ANY_CHILD) {
        Err(Error::NoChildren) => {}
        r => return Err(format!("wait(any) after reaping everything: {r:?}, expected `no children`")),
    }
    let usage1 = own_usage()?;
    let procs1 = sys::sysinfo().map_err(|e| format!("sysinfo: {e}"))?.processes;
    if usage1 != usage0 {
        return Err(format!("own quota usage {usage1} pages after {CHURN} spawns and waits, {usage0} before"));
    }
    if procs1 != procs0 {
        return Err(format!("{procs1} processes after the churn, {procs0} before"));
    }
    if let Some(p) = seen.iter().find(|&&p| p == 0 || p >= 64) {
        return Err(format!("pid {p} is outside 1..64"));
    }
    seen.sort_unstable();
    seen.dedup();
    if seen.len() == CHURN {
        return Err(format!("{CHURN} children had {CHURN} distinct pids: pids are never reused"));
    }
    Ok(())
}

/// Quotas are enforced without harm: a spawn the quota cannot pay for
/// fails with QuotaExceeded and changes nothing; a child that maps pages
/// until mem_map fails gets QuotaExceeded with its quota (nearly) full and
/// exits normally; a huge mem_map fails the same way and maps nothing.
pub fn quota_limits(_: &Ctx) -> TestResult {
    crate::warm_heap();
    let usage0 = own_usage()?;
    let spare = proc::spare_pages(0).map_err(|e| format!("quota: {e}"))?;
    for (what, pages) in [("a 1-page quota", 1), ("more quota than the caller has", spare + 1000)] {
        match sys::spawn(HELPER, pages, 0, "exit 0") {
            Err(Error::QuotaExceeded) => {}
            Err(e) => return Err(format!("spawn with {what}: {e}, expected `quota exceeded`")),
            Ok(pid) => {
                let _ = sys::kill(pid);
                let _ = sys::wait(pid);
                return Err(format!("spawn with {what} ({pages} pages) succeeded (pid {pid})"));
            }
        }
        let u = own_usage()?;
        if u != usage0 {
            return Err(format!("a spawn with {what} failed but own usage went from {usage0} to {u} pages"));
        }
    }

    let driver = chan()?;
    let q = child_quota(1)?;
    let mut kids = Children::new();
    let pid = kids.spawn(HELPER, q, 0, &format!("quota {driver}")).map_err(|e| spawn_error("the quota child", 0, q, e))?;
    let a = recv_msg(driver, "the quota child's results")?;
    if a.kind != msg::QUOTA_A {
        return Err(unexpected(&a, "the quota child"));
    }
    let b = recv_msg(driver, "the quota child's usage")?;
    if b.kind != msg::QUOTA_B {
        return Err(unexpected(&b, "the quota child"));
    }
    let status = kids.wait(pid).map_err(|e| format!("wait: {e}"))?;
    let (mapped, code, quota) = (a.a, a.b, a.c);
    let (before, at_fail, after) = (b.a, b.b, b.c);
    if Error::from_code(code) != Some(Error::QuotaExceeded) {
        return Err(format!("the child's mem_map failed with `{}` after {mapped} pages, expected `quota exceeded`", err_name(code)));
    }
    if quota != q {
        return Err(format!("the child's quota is {quota} pages, it was given {q}"));
    }
    if mapped == 0 {
        return Err(format!("the child could not map a single page ({before} of {quota} used at the start)"));
    }
    // The last page plus up to three new page tables may not fit.
    if at_fail > quota || quota - at_fail >= 4 {
        return Err(format!("mem_map ran out of quota with usage {at_fail} of {quota} pages (expected within 4 pages of full)"));
    }
    if after + mapped > at_fail || after < before {
        return Err(format!("after unmapping its {mapped} pages the child's usage is {after} (was {at_fail} full, {before} before mapping)"));
    }
    if status != 0 {
        return Err(format!("the quota child exited with status {status}"));
    }
    let u = own_usage()?;
    if u != usage0 {
        return Err(format!("own usage {u} pages after reaping the quota child, {usage0} before"));
    }

    // One page more than the quota has room for; then far too many (where
    // the kernel may also call the count itself invalid). The page tables
    // for the range are made first, so that a refused call must leave the
    // usage exactly as it was.
    sys::mem_map(msg::QUOTA_VA, 1, abi::prot::WRITE).map_err(|e| format!("mem_map of one page at {:#x}: {e}", msg::QUOTA_VA))?;
    sys::mem_unmap(msg::QUOTA_VA, 1).map_err(|e| format!("mem_unmap at {:#x}: {e}", msg::QUOTA_VA))?;
    let usage0 = own_usage()?;
    let over = proc::spare_pages(0).map_err(|e| format!("quota: {e}"))? + 1;
    for (pages, want) in [(over, &[Error::QuotaExceeded][..]), (1u64 << 30, &[Error::QuotaExceeded, Error::Invalid][..])] {
        match sys::mem_map(msg::QUOTA_VA, pages, abi::prot::WRITE) {
            Err(e) if want.contains(&e) => {}
            Err(e) => return Err(format!("mem_map of {pages} pages: {e}, expected `quota exceeded`")),
            Ok(_) => {
                let _ = sys::mem_unmap(msg::QUOTA_VA, pages);
                return Err(format!("mem_map of {pages} pages succeeded"));
            }
        }
        let u = own_usage()?;
        if u != usage0 {
            return Err(format!("mem_map of {pages} pages failed but own usage went from {usage0} to {u} pages"));
        }
    }
    Ok(())
}

/// Poll until `pid` is blocked (at most 5 s).
fn until_blocked(pid: u64, what: &str) -> TestResult {
    for _ in 0..5000 {
        match proc::info(pid).map_err(|e| format!("ps: {e}"))? {
            Some(p) if p.state == proc::BLOCKED => return Ok(()),
            Some(p) if p.state == proc::ZOMBIE => return Err(format!("{what} (pid {pid}) exited instead of blocking")),
            Some(_) => sys::sleep_ms(1),
            None => return Err(format!("{what} (pid {pid}) is gone")),
        }
    }
    Err(format!("{what} (pid {pid}) did not block within 5 s"))
}

const WAITERS: u64 = 4;

/// Start WAITERS waiters in `mode` one after another, each blocked before
/// the next starts, on CPU `cpu`, or spread over the CPUs if None.
fn start_waiters(kids: &mut Children, mode: &str, driver: u64, cpu: Option<u64>, q: u64) -> Result<(), String> {
    let cpus = proc::cpus().map_err(|e| format!("sysinfo: {e}"))?;
    for i in 0..WAITERS {
        let cpu = cpu.unwrap_or(i % cpus);
        let pid = kids.spawn(HELPER, q, cpu, &format!("{mode} {i} {driver}")).map_err(|e| spawn_error(&format!("waiter {i}"), cpu, q, e))?;
        let m = recv_msg(driver, "a waiter to start")?;
        if m.kind != msg::READY || m.a != i || m.from != pid {
            return Err(unexpected(&m, &format!("starting waiter {i}")));
        }
        until_blocked(pid, &format!("waiter {i}"))?;
    }
    Ok(())
}

/// Collect WAITERS `ACQUIRED` messages; they must come in index order.
fn acquired_in_order(driver: u64, what: &str) -> TestResult {
    for i in 0..WAITERS {
        let m = recv_msg(driver, what)?;
        if m.kind != msg::ACQUIRED {
            return Err(unexpected(&m, what));
        }
        if m.a != i {
            return Err(format!("{what}: waiter {} went before waiter {i} (FIFO order broken)", m.a));
        }
    }
    Ok(())
}

/// Waiters blocked on a mutex (spread over the CPUs), woken by cv_signal
/// (spread over the CPUs) and by cv_broadcast (on one CPU), each started and
/// seen blocked in a known order, must get the mutex in that order.
pub fn mutex_cv_fifo(cx: &Ctx) -> TestResult {
    let driver = chan()?;
    let m = sys::mutex_create().map_err(|e| format!("mutex_create: {e}"))?;
    let cv = sys::cv_create().map_err(|e| format!("cv_create: {e}"))?;
    let q = child_quota(WAITERS)?;

    // The mutex: the test holds it while the waiters queue up.
    sys::mutex_lock(m).map_err(|e| format!("mutex_lock: {e}"))?;
    let mut kids = Children::new();
    let r = start_waiters(&mut kids, &format!("mutex {m}"), driver, None, q);
    sys::mutex_unlock(m).map_err(|e| format!("mutex_unlock: {e}"))?;
    r?;
    acquired_in_order(driver, "the mutex's waiters")?;
    kids.wait_all_ok("a mutex waiter")?;

    // cv_signal wakes the oldest waiter, one at a time.
    start_waiters(&mut kids, &format!("cv {m} {cv}"), driver, None, q)?;
    for i in 0..WAITERS {
        let woken = sys::cv_signal(cv).map_err(|e| format!("cv_signal: {e}"))?;
        if woken != 1 {
            return Err(format!("cv_signal with {} waiters woke {woken}", WAITERS - i));
        }
        let got = recv_msg(driver, "a signalled waiter")?;
        if got.kind != msg::ACQUIRED {
            return Err(unexpected(&got, "cv_signal"));
        }
        if got.a != i {
            return Err(format!("cv_signal woke waiter {} before waiter {i} (FIFO order broken)", got.a));
        }
    }
    match sys::cv_signal(cv) {
        Ok(0) => {}
        r => return Err(format!("cv_signal with no waiters: {r:?}, expected Ok(0)")),
    }
    kids.wait_all_ok("a condition-variable waiter")?;

    // cv_broadcast wakes them all in order; each then takes the mutex
    // again. On one CPU they run, and so queue for the mutex, in the order
    // they were woken. (Spread over CPUs, the order they reach the mutex
    // would be up to the schedulers: the kernel does not queue them for the
    // mutex when it wakes them.)
    let one = if cx.cpus > 1 { 1 } else { 0 };
    start_waiters(&mut kids, &format!("cv {m} {cv}"), driver, Some(one), q)?;
    let woken = sys::cv_broadcast(cv).map_err(|e| format!("cv_broadcast: {e}"))?;
    if woken != WAITERS {
        return Err(format!("cv_broadcast woke {woken} of {WAITERS} waiters"));
    }
    acquired_in_order(driver, "the broadcast's waiters")?;
    kids.wait_all_ok("a broadcast waiter")
}

/// Where the test maps its side of the shared page.
const SHM_VA: u64 = 0x7000_0000_0000;
const PARENT_MAGIC: u64 = 0x5eed_5eed_5eed_5eed;

/// Ask the shm helper to do `cmd`; its outcome.
fn ask(child_chan: u64, driver: u64, cmd: &str) -> Result<Result<u64, Error>, String> {
    sys::send(child_chan, cmd.as_bytes()).map_err(|e| format!("sending `{cmd}` to the child: {e}"))?;
    let m = recv_msg(driver, &format!("the child's answer to `{cmd}`"))?;
    match (m.kind, m.a) {
        (msg::REPLY, 0) => Ok(Ok(m.b)),
        (msg::REPLY, _) => Ok(Err(Error::from_code(m.b).unwrap_or(Error::NoSys))),
        _ => Err(unexpected(&m, cmd)),
    }
}

fn state(v: Result<u64, Error>) -> Result<ShmState, Error> {
    v.map(|s| ShmState::from_u64(s).unwrap_or(ShmState::Dead))
}

fn want_state(what: &str, got: Result<ShmState, Error>, want: ShmState) -> TestResult {
    match got {
        Ok(s) if s == want => Ok(()),
        Ok(s) => Err(format!("{what}: {}, expected {}", state_name(s), state_name(want))),
        Err(e) => Err(format!("{what}: {e}, expected {}", state_name(want))),
    }
}

/// The shared-memory protocol from both sides: Dead; Pending after the
/// first offer (for both); Ready after the second; the page is shared (each
/// side sees the other's writes); a second offer is Busy; after the peer
/// exits the pair is Dead, the page is gone from this space and its charge
/// is returned.
pub fn shm_protocol(cx: &Ctx) -> TestResult {
    // Create the page tables for SHM_VA first, so that usage compares exactly.
    sys::mem_map(SHM_VA, 1, abi::prot::WRITE).map_err(|e| format!("mem_map at {SHM_VA:#x}: {e}"))?;
    sys::mem_unmap(SHM_VA, 1).map_err(|e| format!("mem_unmap at {SHM_VA:#x}: {e}"))?;
    let driver = chan()?;
    let cpu = if cx.cpus > 1 { 1 } else { 0 };
    let q = child_quota(1)?;
    let args = format!("shm {driver}");
    crate::warm_heap();
    let start = own_usage()?;
    let mut kids = Children::new();
    let child = kids.spawn(HELPER, q, cpu, &args).map_err(|e| spawn_error("the shm child", cpu, q, e))?;
    let hello = recv_msg(driver, "the child's channel")?;
    if hello.kind != msg::HELLO || hello.from != child {
        return Err(unexpected(&hello, "starting the shm child"));
    }
    let cc = hello.b;
    let usage0 = own_usage()?;

    want_state("status before any offer (parent)", sys::shm_status(child), ShmState::Dead)?;
    want_state("status before any offer (child)", state(ask(cc, driver, "status")?), ShmState::Dead)?;

    let (page, st) = SharedPage::offer(child, SHM_VA).map_err(|e| format!("the parent's offer at {SHM_VA:#x}: {e}"))?;
    want_state("the parent's offer", Ok(st), ShmState::Pending)?;
    want_state("status after the parent's offer (parent)", sys::shm_status(child), ShmState::Pending)?;
    want_state("status after the parent's offer (child)", state(ask(cc, driver, "status")?), ShmState::Pending)?;
    // The page is charged to the first offerer (page tables may come with it).
    let usage1 = own_usage()?;
    if !(usage0 + 1..=usage0 + 4).contains(&usage1) {
        return Err(format!("the first offerer's usage went from {usage0} to {usage1} pages, expected one more for the page (and at most 3 page tables)"));
    }

    want_state("the child's offer", state(ask(cc, driver, "offer")?), ShmState::Ready)?;
    want_state("status after both offers (parent)", sys::shm_status(child), ShmState::Ready)?;
    want_state("status after both offers (child)", state(ask(cc, driver, "status")?), ShmState::Ready)?;

    // The same page on both sides.
    match ask(cc, driver, "write")? {
        Ok(_) => {}
        Err(e) => return Err(format!("the child could not write its page: {e}")),
    }
    let mut text = [0u8; 20];
    page.read_bytes(16, &mut text);
    if page.load(0) != CHILD_MAGIC || text[..] != CHILD_TEXT[..] {
        return Err(format!("the child's writes are not in the parent's page (word 0 = {:#x})", page.load(0)));
    }
    page.store(1, PARENT_MAGIC);
    match ask(cc, driver, "read")? {
        Ok(v) if v == PARENT_MAGIC => {}
        r => return Err(format!("the child reads {r:?} from word 1, the parent wrote {PARENT_MAGIC:#x}")),
    }

    // Offering again is Busy on both sides.
    match sys::shm_offer(child, SHM_VA + 2 * abi::PAGE_SIZE) {
        Err(Error::Busy) => {}
        r => return Err(format!("a second offer from the parent: {r:?}, expected `busy`")),
    }
    match ask(cc, driver, "offer2")? {
        Err(Error::Busy) => {}
        r => return Err(format!("a second offer from the child: {r:?}, expected `busy`")),
    }

    // The child exits: Dead again, the page unmapped here and uncharged.
    page.release();
    ask(cc, driver, "exit")?.map_err(|e| format!("the child's `exit`: {e}"))?;
    if !proc::wait_state(child, proc::ZOMBIE, 5000).map_err(|e| format!("ps: {e}"))? {
        return Err("the child did not exit within 5 s".into());
    }
    want_state("status after the child exited (not reaped yet)", sys::shm_status(child), ShmState::Dead)?;
    let status = kids.wait(child).map_err(|e| format!("wait: {e}"))?;
    if status != 0 {
        return Err(format!("the shm child exited with status {status}"));
    }
    match sys::shm_status(child) {
        Ok(ShmState::Dead) | Err(Error::NoSuchProcess) => {}
        r => return Err(format!("status after the child was reaped: {r:?}, expected Dead or `no such process`")),
    }
    sys::mem_map(SHM_VA, 1, abi::prot::WRITE).map_err(|e| format!("mapping {SHM_VA:#x} after the peer exited: {e} (the shared page should be unmapped)"))?;
    sys::mem_unmap(SHM_VA, 1).map_err(|e| format!("mem_unmap at {SHM_VA:#x}: {e}"))?;
    let usage2 = own_usage()?;
    if usage2 != start {
        return Err(format!("own usage {usage2} pages after the peer exited and was reaped, {start} before it was started"));
    }
    Ok(())
}

/// The machine is back where utest found it: the root container's usage
/// and the process count exactly; free pages within 16 once utest's own
/// growth (heap, page tables: its usage delta) is set aside, because the
/// kernel heap may keep pages it grew by; utest's own usage within 16.
pub fn resources_returned(cx: &Ctx) -> TestResult {
    let si = sys::sysinfo().map_err(|e| format!("sysinfo: {e}"))?;
    let usage = own_usage()?;
    let b = &cx.base;
    if si.root_usage != b.root_usage {
        return Err(format!("root usage {} pages, {} at the start", si.root_usage, b.root_usage));
    }
    if si.processes != b.processes {
        return Err(format!("{} processes, {} at the start", si.processes, b.processes));
    }
    let own_delta = usage as i64 - b.own_usage as i64;
    if !(0..=16).contains(&own_delta) {
        return Err(format!("utest's own usage {usage} pages, {} at the start (allowed: up to 16 more, for its heap and page tables)", b.own_usage));
    }
    let free_delta = b.free_pages as i64 - si.free_pages as i64;
    let kernel_delta = free_delta - own_delta;
    if kernel_delta.abs() > 16 {
        return Err(format!(
            "free pages {} , {} at the start: {kernel_delta} pages unaccounted for once utest's own {own_delta} are set aside (tolerance 16, for the kernel heap)",
            si.free_pages, b.free_pages
        ));
    }
    Ok(())
}
