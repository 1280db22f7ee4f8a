//! Helpers around processes: spare quota, CPU count, finding processes,
//! and a group of children that is always reaped.

use abi::{Error, ProcInfo};
use alloc::vec::Vec;

/// `ProcInfo::state` values.
pub const RUNNING: u32 = 0;
pub const READY: u32 = 1;
pub const BLOCKED: u32 = 2;
pub const ZOMBIE: u32 = 3;

/// Name of a `ProcInfo::state`.
pub fn state_name(s: u32) -> &'static str {
    match s {
        RUNNING => "running",
        READY => "ready",
        BLOCKED => "blocked",
        ZOMBIE => "zombie",
        _ => "?",
    }
}

/// Pages of the caller's quota not in use, less `reserve` (kept for its
/// own heap and page tables).
pub fn spare_pages(reserve: u64) -> Result<u64, Error> {
    let (quota, usage) = crate::sys::quota()?;
    Ok(quota.saturating_sub(usage).saturating_sub(reserve))
}

/// Process-table slots free now, less `reserve` (what a process can hand a
/// child as its process limit, [`abi::spawn_cpu`], and still start `reserve`
/// more itself).
pub fn spare_processes(reserve: u64) -> Result<u64, Error> {
    let used = crate::sys::sysinfo()?.processes;
    Ok((abi::MAX_PROCESSES as u64).saturating_sub(used).saturating_sub(reserve))
}

/// Number of CPUs online (at least 1).
pub fn cpus() -> Result<u64, Error> {
    Ok(crate::sys::sysinfo()?.cpus_online.max(1))
}

/// Every process's record.
pub fn list() -> Result<Vec<ProcInfo>, Error> {
    let mut v = alloc::vec![ProcInfo::default(); 64];
    let n = crate::sys::ps(&mut v)?;
    v.truncate(n.min(64));
    Ok(v)
}

/// The record of process `pid`, if it exists.
pub fn info(pid: u64) -> Result<Option<ProcInfo>, Error> {
    Ok(list()?.into_iter().find(|p| p.pid as u64 == pid))
}

/// Poll (every millisecond, at most `timeout_ms`) until process `pid` is in
/// `state`. Returns whether it got there.
pub fn wait_state(pid: u64, state: u32, timeout_ms: u64) -> Result<bool, Error> {
    for _ in 0..=timeout_ms {
        if info(pid)?.is_some_and(|p| p.state == state) {
            return Ok(true);
        }
        crate::sys::sleep_ms(1);
    }
    Ok(false)
}

/// The CPU the caller runs on (from `ps`).
pub fn my_cpu() -> Result<u64, Error> {
    let me = crate::sys::getpid()?;
    Ok(info(me)?.map(|p| p.cpu as u64).unwrap_or(0))
}

/// Send, retrying while the channel is not claimed yet (`NoSuchObject`):
/// the receiver may not have run far enough to claim it. Yields in between;
/// gives up after `tries` attempts with the last error.
pub fn send_retry(chan: u64, msg: &[u8], tries: u32) -> Result<(), Error> {
    let mut last = Error::NoSuchObject;
    for i in 0..tries.max(1) {
        match crate::sys::send(chan, msg) {
            Ok(_) => return Ok(()),
            Err(Error::NoSuchObject) => last = Error::NoSuchObject,
            Err(e) => return Err(e),
        }
        if i % 64 == 63 {
            crate::sys::sleep_ms(1);
        } else {
            crate::sys::yield_now();
        }
    }
    Err(last)
}

/// Children that are killed and reaped if the group is dropped before they
/// were waited for, so an error path never leaves processes behind.
#[derive(Default)]
pub struct Children {
    pids: Vec<u64>,
}

impl Children {
    pub fn new() -> Self {
        Children { pids: Vec::new() }
    }

    /// Spawn a child and remember it.
    pub fn spawn(&mut self, name: &str, quota: u64, cpu: u64, args: &str) -> Result<u64, Error> {
        self.pids.reserve(1);
        let pid = crate::sys::spawn(name, quota, cpu, args)?;
        self.pids.push(pid);
        Ok(pid)
    }

    pub fn pids(&self) -> &[u64] {
        &self.pids
    }

    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
    }

    /// Wait for child `pid` (one of the group); returns its exit status.
    pub fn wait(&mut self, pid: u64) -> Result<u64, Error> {
        let (_, code) = crate::sys::wait(pid)?;
        self.pids.retain(|&p| p != pid);
        Ok(code)
    }

    /// Wait for every child; returns (pid, status) in spawn order.
    pub fn wait_all(&mut self) -> Result<Vec<(u64, u64)>, Error> {
        let mut out = Vec::with_capacity(self.pids.len());
        while let Some(&pid) = self.pids.first() {
            let code = self.wait(pid)?;
            out.push((pid, code));
        }
        Ok(out)
    }

    /// Wait for every child and require status 0 from each.
    pub fn wait_all_ok(&mut self, what: &str) -> Result<(), alloc::string::String> {
        let st = self.wait_all().map_err(|e| alloc::format!("wait for {what}: {e}"))?;
        match st.iter().find(|&&(_, c)| c != 0) {
            Some((pid, c)) => Err(alloc::format!("{what} (pid {pid}) exited with status {c}")),
            None => Ok(()),
        }
    }

    /// Kill and reap every child not waited for yet.
    pub fn kill_all(&mut self) {
        for &pid in &self.pids {
            let _ = crate::sys::kill(pid);
        }
        for pid in core::mem::take(&mut self.pids) {
            let _ = crate::sys::wait(pid);
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill_all();
    }
}
