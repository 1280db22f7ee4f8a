//! System-call dispatch: decode the registers, check every argument, call
//! the layer that does the work, encode the result (see docs/syscalls.md for
//! each call's abstract effect).

use crate::console;
use crate::process::{self, copy_in, copy_out, mm_error, with_space, ShmHost, SpaceCopier, SHM};
use abi::{nr, Error, ProcInfo, SysInfo};
use arrayvec::ArrayVec;
use dev::console::CONSOLE;
use mm::kernel::{self as kmm, CONTAINERS};
use mm::{ContainerId, Rights};
use proc::ipc::CHANNELS;
use proc::objects::OBJECTS;
use proc::table::{PState, PROCS};
use proc::{Pid, MAX_PROCS};
use thread::SCHED;

type Reply = Result<(u64, u64), Error>;

fn one(r: Result<u64, Error>) -> Reply {
    r.map(|v| (v, 0))
}

/// Copy a caller's string argument (at most `max` bytes) into `buf`.
fn read_str(pid: Pid, va: u64, len: u64, buf: &mut [u8], max: usize) -> Result<&str, Error> {
    let len = usize::try_from(len).map_err(|_| Error::TooLarge)?;
    if len > max || len > buf.len() {
        return Err(Error::TooLarge);
    }
    copy_in(pid, va, &mut buf[..len])?;
    core::str::from_utf8(&buf[..len]).map_err(|_| Error::Invalid)
}

/// Ticks of the scheduler clock in `ms` milliseconds (rounded up).
fn ticks_for(ms: u64) -> u64 {
    ms.saturating_mul(crate::TICK_HZ).div_ceil(1000)
}

pub fn dispatch(pid: Pid, n: u64, a: [u64; 6]) -> Reply {
    let cpu = machine::cpu::id();
    match n {
        nr::EXIT => process::exit_current(a[0]),
        nr::SPAWN => {
            let mut name = [0u8; abi::MAX_NAME];
            let name = read_str(pid, a[0], a[1], &mut name, abi::MAX_NAME).map_err(|e| if e == Error::TooLarge { Error::NoSuchProgram } else { e })?;
            let mut args = [0u8; process::MAX_ARGS];
            let alen = usize::try_from(a[5]).map_err(|_| Error::Invalid)?;
            if alen > process::MAX_ARGS {
                return Err(Error::Invalid);
            }
            copy_in(pid, a[4], &mut args[..alen])?;
            one(process::spawn(pid, name, a[2], a[3], &args[..alen]).map(u64::from))
        }
        nr::WAIT => process::wait(pid, a[0]),
        nr::YIELD => {
            SCHED.yield_now(cpu);
            Ok((0, 0))
        }
        nr::SLEEP => {
            let until = SCHED.ticks(cpu).saturating_add(ticks_for(a[0]));
            SCHED.sleep_until(cpu, until);
            Ok((0, 0))
        }
        nr::GETPID => Ok((pid as u64, 0)),
        nr::GETPPID => Ok((PROCS.get(pid as u64)?.parent as u64, 0)),
        nr::QUOTA => {
            let c = ContainerId::new(PROCS.get(pid as u64)?.container);
            let i = CONTAINERS.info(c).map_err(mm_error)?;
            Ok((i.quota, i.usage))
        }
        nr::CONSOLE_WRITE => {
            let len = usize::try_from(a[1]).map_err(|_| Error::TooLarge)?;
            if len > abi::MAX_CONSOLE_WRITE {
                return Err(Error::TooLarge);
            }
            with_space(pid, |s| kmm::check_user_range(s, a[0], len, false))?.map_err(|_| Error::BadAddress)?;
            let mut buf = [0u8; 512];
            let mut done = 0;
            while done < len {
                let n = (len - done).min(buf.len());
                copy_in(pid, a[0] + done as u64, &mut buf[..n])?;
                CONSOLE.write(&buf[..n]);
                done += n;
            }
            Ok((len as u64, 0))
        }
        nr::CONSOLE_READ => {
            let len = usize::try_from(a[1]).map_err(|_| Error::Invalid)?.min(256);
            if len == 0 {
                return Err(Error::Invalid);
            }
            // Check the buffer first: input taken from the ring must not be lost.
            with_space(pid, |s| kmm::check_user_range(s, a[0], len, true))?.map_err(|_| Error::BadAddress)?;
            let mut buf = [0u8; 256];
            let got = console::read(&mut buf[..len])?;
            copy_out(pid, a[0], &buf[..got])?;
            Ok((got as u64, 0))
        }
        nr::SEND => one(CHANNELS.send(&SCHED, &SpaceCopier, pid, a[0], a[1], usize::try_from(a[2]).map_err(|_| Error::TooLarge)?)),
        nr::RECV => CHANNELS.recv(&SCHED, &SpaceCopier, pid, a[0], a[1], usize::try_from(a[2]).map_err(|_| Error::Invalid)?),
        nr::CALL => {
            CHANNELS.send(&SCHED, &SpaceCopier, pid, a[0], a[1], usize::try_from(a[2]).map_err(|_| Error::TooLarge)?)?;
            CHANNELS.recv(&SCHED, &SpaceCopier, pid, a[3], a[4], usize::try_from(a[5]).map_err(|_| Error::Invalid)?)
        }
        nr::SHM_OFFER => {
            let peer = a[0];
            if peer == pid as u64 {
                return Err(Error::SelfShare);
            }
            if !PROCS.is_live(peer) {
                return Err(Error::NoSuchProcess);
            }
            user_page(a[1])?;
            let mut host = ShmHost::new();
            let r = SHM.lock().offer(&mut host, pid as usize, peer as usize, a[1]);
            host.shoot();
            Ok((shm_state(r.map_err(mm_error)?), 0))
        }
        nr::SHM_STATUS => {
            let peer = a[0];
            if peer == pid as u64 {
                return Err(Error::SelfShare);
            }
            if peer == 0 || peer >= MAX_PROCS as u64 || PROCS.get(peer).is_err() {
                return Err(Error::NoSuchProcess);
            }
            Ok((shm_state(SHM.lock().status(pid as usize, peer as usize).map_err(mm_error)?), 0))
        }
        nr::MUTEX_CREATE => one(OBJECTS.mutex_create(&SCHED, pid)),
        nr::MUTEX_LOCK => one(OBJECTS.mutex_lock(&SCHED, a[0])),
        nr::MUTEX_UNLOCK => one(OBJECTS.mutex_unlock(&SCHED, a[0])),
        nr::CV_CREATE => one(OBJECTS.cv_create(&SCHED, pid)),
        nr::CV_WAIT => one(OBJECTS.cv_wait(&SCHED, a[0], a[1])),
        nr::CV_SIGNAL => one(OBJECTS.cv_signal(&SCHED, a[0])),
        nr::CV_BROADCAST => one(OBJECTS.cv_broadcast(&SCHED, a[0])),
        nr::CLOCK => Ok((machine::x86::rdtsc(), dev::lapic::tsc_per_ms())),
        nr::MEM_MAP => mem_map(pid, a[0], a[1], a[2]),
        nr::MEM_UNMAP => mem_unmap(pid, a[0], a[1]),
        nr::PS => ps(pid, a[0], a[1]),
        nr::PROGRAMS => programs(pid, a[0], a[1]),
        nr::KILL => {
            process::kill(pid, a[0])?;
            Ok((0, 0))
        }
        nr::CHAN_CREATE => one(CHANNELS.create(&SCHED, pid, a[0])),
        nr::SYSINFO => sysinfo(pid, a[0], a[1]),
        nr::POWEROFF => {
            if pid != proc::table::INIT {
                return Err(Error::NotPermitted);
            }
            crate::power_off(a[0])
        }
        nr::FILE_SIZE => crate::vmcalls::file_size(pid, a[0], a[1]),
        nr::FILE_READ => crate::vmcalls::file_read(pid, a[0], a[1], a[2], a[3], a[4]),
        nr::VM_CREATE => crate::vmcalls::vm_create(pid),
        nr::VM_MAP => crate::vmcalls::vm_map(pid, a[0], a[1], a[2], a[3], a[4]),
        nr::VM_RUN => crate::vmcalls::vm_run(pid, a[0], a[1], a[2], a[3], a[4]),
        nr::VM_GET_REGS => crate::vmcalls::vm_get_regs(pid, a[0], a[1], a[2]),
        nr::VM_SET_REGS => crate::vmcalls::vm_set_regs(pid, a[0], a[1], a[2]),
        nr::VM_INJECT => crate::vmcalls::vm_inject(pid, a[0], a[1], a[2], a[3]),
        nr::VM_LIST => crate::vmcalls::vm_list(pid, a[0], a[1]),
        nr::VM_DESTROY => crate::vmcalls::vm_destroy(pid, a[0]),
        nr::VM_POST => crate::vmcalls::vm_post(pid, a[0], a[1], a[2], a[3]),
        _ => Err(Error::NoSys),
    }
}

/// `CALL_SHORT`: send the short message in `a[2..]` on `a[0]` and/or
/// receive one on `a[1]`. Returns the reply and the words for r10, r8, r9
/// (the received message; zero when nothing was received).
pub fn call_short(pid: Pid, a: [u64; 6]) -> (Reply, proc::ipc::Words) {
    use proc::ipc::Place;
    const NONE: proc::ipc::Words = [0; abi::SHORT_WORDS];
    let (send, recv) = (a[0] != abi::NO_CHANNEL, a[1] != abi::NO_CHANNEL);
    if !send && !recv {
        return (Err(Error::Invalid), NONE);
    }
    if send && recv {
        if let Some(r) = usize::try_from(a[2]).ok().and_then(|len| CHANNELS.call_short_fast(&SCHED, pid, a[0], [a[3], a[4], a[5]], len, a[1])) {
            return match r {
                Ok((len, from, words)) => (Ok((len, from)), words),
                Err(e) => (Err(e), NONE),
            };
        }
    }
    if send {
        let Ok(len) = usize::try_from(a[2]) else { return (Err(Error::TooLarge), NONE) };
        let src = Place::Regs { words: [a[3], a[4], a[5]], len };
        if let Err(e) = CHANNELS.send_from(&SCHED, &SpaceCopier, pid, a[0], src) {
            return (Err(e), NONE);
        }
        if !recv {
            return (Ok((0, 0)), NONE);
        }
    }
    match CHANNELS.recv_into(&SCHED, &SpaceCopier, pid, a[1], Place::Regs { words: NONE, len: abi::SHORT_MESSAGE }) {
        Ok((len, from, words)) => (Ok((len, from)), words),
        Err(e) => (Err(e), NONE),
    }
}

fn shm_state(s: mm::ShmStatus) -> u64 {
    match s {
        mm::ShmStatus::Dead => abi::ShmState::Dead as u64,
        mm::ShmStatus::Offered { .. } | mm::ShmStatus::Incoming => abi::ShmState::Pending as u64,
        mm::ShmStatus::Ready { .. } => abi::ShmState::Ready as u64,
    }
}

/// A page address user space may map: aligned, canonical, in the user
/// half, and not page 0 (which stays unmapped so null pointers fault).
fn user_page(va: u64) -> Result<(), Error> {
    mm::paging::check_user_va(va).map_err(mm_error)?;
    if va < abi::USER_BASE {
        return Err(Error::BadAddress);
    }
    Ok(())
}

/// Most pages one `mem_map` call maps.
const MAX_MAP_PAGES: u64 = 1 << 16;

fn mem_map(pid: Pid, va: u64, pages: u64, prot: u64) -> Reply {
    if pages == 0 || pages > MAX_MAP_PAGES || prot & !(abi::prot::WRITE | abi::prot::EXEC) != 0 {
        return Err(Error::Invalid);
    }
    let rights = Rights { write: prot & abi::prot::WRITE != 0, exec: prot & abi::prot::EXEC != 0, user: true };
    if rights.write && rights.exec {
        return Err(Error::Invalid);
    }
    user_page(va)?;
    let end = va.checked_add(pages * 4096).filter(|&e| e <= mm::paging::USER_END).ok_or(Error::BadAddress)?;
    let c = ContainerId::new(PROCS.get(pid as u64)?.container);
    let frames = kmm::frames();
    with_space(pid, |s| {
        // Nothing may be there yet: check the whole range before changing anything.
        let mut p = va;
        while p < end {
            if s.translate(p).is_some() {
                return Err(Error::AlreadyMapped);
            }
            p += 4096;
        }
        let mut p = va;
        while p < end {
            let r = CONTAINERS.alloc_page(frames, c).and_then(|f| {
                kmm::zero_frame(f);
                s.map(p, f, rights).inspect_err(|_| {
                    let _ = CONTAINERS.free_page(frames, c, f);
                })
            });
            if let Err(e) = r {
                // Undo what this call mapped (never mapped before: no TLB entries).
                let mut q = va;
                while q < p {
                    if let Ok((f, _)) = s.unmap(q) {
                        let _ = CONTAINERS.free_page(frames, c, f);
                    }
                    q += 4096;
                }
                return Err(mm_error(e));
            }
            p += 4096;
        }
        Ok((0, 0))
    })?
}

fn mem_unmap(pid: Pid, va: u64, pages: u64) -> Reply {
    if pages == 0 || pages > MAX_MAP_PAGES {
        return Err(Error::Invalid);
    }
    user_page(va)?;
    let end = va.checked_add(pages * 4096).filter(|&e| e <= mm::paging::USER_END).ok_or(Error::BadAddress)?;
    let c = ContainerId::new(PROCS.get(pid as u64)?.container);
    // Shared pages are only released through the shared-memory protocol.
    let mut p = va;
    while p < end {
        if process::is_shared(pid, p) {
            return Err(Error::NotPermitted);
        }
        p += 4096;
    }
    let frames = kmm::frames();
    with_space(pid, |s| {
        let mut p = va;
        while p < end {
            if s.translate(p).is_none() {
                return Err(Error::NotMapped);
            }
            p += 4096;
        }
        let mut p = va;
        while p < end {
            if let Ok((f, flush)) = s.unmap(p) {
                // A process runs on one CPU, this one: a local flush suffices.
                kmm::shootdown(mm::CpuSet::EMPTY.with(machine::cpu::id()), Some(flush.va()));
                // A page shared into a guest keeps the guest's reference.
                let _ = CONTAINERS.put_page(frames, c, f);
            }
            p += 4096;
        }
        Ok((0, 0))
    })?
}

fn ps(pid: Pid, va: u64, len: u64) -> Reply {
    let mut all: ArrayVec<(Pid, proc::table::Proc), MAX_PROCS> = ArrayVec::new();
    PROCS.list(&mut all);
    let room = usize::try_from(len).unwrap_or(usize::MAX) / ProcInfo::SIZE;
    for (i, (p, info)) in all.iter().enumerate().take(room) {
        // A container's limit counts the containers below it; a process's
        // counts its subtree, itself included.
        let (quota, usage, subtree, limit) = CONTAINERS
            .info(ContainerId::new(info.container))
            .map(|c| (c.quota, c.usage, c.descendants.saturating_add(1), if c.limit == mm::NO_LIMIT { abi::NO_PROCESS_LIMIT } else { c.limit.saturating_add(1) }))
            .unwrap_or((0, 0, 1, abi::NO_PROCESS_LIMIT));
        let mut name = [0u8; 32];
        name[..info.name.len()].copy_from_slice(info.name.as_bytes());
        let state = match info.state {
            PState::Alive if SCHED.current(info.cpu as usize) == info.tid => 0,
            PState::Alive => match SCHED.state(info.tid) {
                thread::State::Ready => 1,
                _ => 2,
            },
            PState::Starting => 1,
            _ => 3,
        };
        let rec = ProcInfo { pid: *p, parent: info.parent, cpu: info.cpu, state, quota, usage, name, subtree, limit };
        copy_out(pid, va + (i * ProcInfo::SIZE) as u64, &rec.to_bytes())?;
    }
    Ok((all.len() as u64, 0))
}

fn programs(pid: Pid, va: u64, len: u64) -> Reply {
    let mut at = 0u64;
    for name in crate::programs::names() {
        let need = name.len() as u64 + 1;
        if at + need > len {
            return Err(Error::TooLarge);
        }
        copy_out(pid, va + at, name.as_bytes())?;
        copy_out(pid, va + at + name.len() as u64, &[0])?;
        at += need;
    }
    Ok((at, 0))
}

fn sysinfo(pid: Pid, va: u64, len: u64) -> Reply {
    if len < SysInfo::SIZE as u64 {
        return Err(Error::Invalid);
    }
    let root = kmm::ROOT.get().copied().ok_or(Error::NotSupported)?;
    let r = CONTAINERS.info(root).map_err(mm_error)?;
    let t = kmm::frames();
    let cpu = machine::cpu::id();
    let s = SysInfo {
        cpus_online: (0..machine::MAX_CPUS as u64).filter(|&c| process::cpu_usable(c)).count() as u64,
        free_pages: t.free_frames() as u64,
        total_pages: t.total_frames() as u64,
        processes: process::count() as u64,
        tsc_per_ms: dev::lapic::tsc_per_ms(),
        root_quota: r.quota,
        root_usage: r.usage,
        ticks: SCHED.ticks(cpu),
    };
    copy_out(pid, va, &s.to_bytes())?;
    Ok((0, 0))
}
