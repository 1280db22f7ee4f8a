//! Process life cycle: spawn (load a program from the boot image into a new
//! address space and container, start its thread), exit (release everything
//! the process holds), wait (reap a child: its kernel stack, thread slot and
//! container, returning the quota to the parent) and kill; plus the user
//! memory helpers every system call uses.
//!
//! What a process owns, all charged to its container: its page tables, its
//! program and stack pages, its heap (`mem_map`), its shared pages if it
//! offered first, and its 16 KiB kernel stack.

use crate::programs;
use abi::Error;
use arrayvec::ArrayVec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use lock::{Padded, SpinLock};
use machine::gdt::{USER_CS, USER_DS};
use machine::trap::TrapFrame;
use machine::MAX_CPUS;
use mm::kernel::{self as kmm, DirectMap, CONTAINERS};
use mm::{AddressSpace, ContainerId, CpuSet, Frame, MmError, Owner, Rights};
use proc::ipc::{CopyFault, Copier, CHANNELS};
use proc::objects::OBJECTS;
use proc::table::{PState, PROCS};
use proc::{Pid, MAX_PROCS};
use thread::{MAX_THREADS, SCHED};

pub type Space = AddressSpace<'static, DirectMap>;

/// Each process's address space (pid-indexed; each lock on a cache line of
/// its own, like the per-thread words below: processes on different CPUs
/// share no line through them).
pub static SPACES: [Padded<SpinLock<Option<Space>>>; MAX_PROCS] = [const { Padded::new(SpinLock::new(None)) }; MAX_PROCS];
/// Each process's kernel stack (first of its frames).
static KSTACKS: [SpinLock<Option<Frame>>; MAX_PROCS] = [const { SpinLock::new(None) }; MAX_PROCS];
/// Where each new process starts in user mode: entry, stack, args pointer, args length.
static START: [SpinLock<[u64; 4]>; MAX_PROCS] = [const { SpinLock::new([0; 4]) }; MAX_PROCS];
/// What the trap layer keeps per thread, on a cache line of its own.
struct ThreadWords {
    /// The process the thread belongs to (0: a kernel thread).
    pid: AtomicU32,
    /// The last system call it made (its number; u64::MAX: none yet), for
    /// fault reports.
    last_call: AtomicU64,
}
static THREADS: [Padded<ThreadWords>; MAX_THREADS] =
    [const { Padded::new(ThreadWords { pid: AtomicU32::new(0), last_call: AtomicU64::new(u64::MAX) }) }; MAX_THREADS];
/// The shared-memory table (mC2's protocol, `mm::shm`).
pub static SHM: SpinLock<mm::Shm> = SpinLock::new(mm::Shm::new());
/// CPUs processes may run on (bit per CPU).
static CPUS: AtomicU64 = AtomicU64::new(0);
/// Test aid (`exit_delay_us=N` on the kernel command line, 0 = off): an
/// exiting thread waits N us after its process is published as exited
/// (its parent may reap it from then on) and before it leaves its CPU, so
/// that checks meet that window on every exit instead of once in millions
/// of calls.
static EXIT_DELAY_US: AtomicU64 = AtomicU64::new(0);

/// Pages of a kernel stack.
pub const KSTACK_PAGES: usize = 4;
/// The user stack: `STACK_PAGES` pages ending at `STACK_TOP`.
pub const STACK_TOP: u64 = 0x0000_7fff_0000_0000;
pub const STACK_PAGES: u64 = 16;
/// Largest argument string for `spawn`.
pub const MAX_ARGS: usize = abi::MAX_ARGS;

/// Declare which CPUs run processes.
pub fn set_cpus(mask: u64) {
    CPUS.store(mask, Ordering::Relaxed);
}

/// Set the exit-window test aid (see `EXIT_DELAY_US`).
pub fn set_exit_delay_us(us: u64) {
    EXIT_DELAY_US.store(us, Ordering::Relaxed);
}

pub fn cpu_usable(cpu: u64) -> bool {
    cpu < MAX_CPUS as u64 && CPUS.load(Ordering::Relaxed) & (1 << cpu) != 0
}

/// The process the running thread belongs to (0 for kernel threads).
pub fn current_pid() -> Pid {
    pid_of(SCHED.current(machine::cpu::id()))
}

/// The process thread `t` belongs to (0: a kernel thread, or none).
pub fn pid_of(t: thread::Tid) -> Pid {
    THREADS.get(t as usize).map(|w| w.pid.load(Ordering::Relaxed)).unwrap_or(0)
}

/// Note that the running thread makes system call `nr` (for fault reports).
pub fn note_call(t: thread::Tid, nr: u64) {
    if let Some(w) = THREADS.get(t as usize) {
        w.last_call.store(nr, Ordering::Relaxed);
    }
}

/// The last system call thread `t` made, if any.
pub fn last_call(t: thread::Tid) -> Option<u64> {
    THREADS.get(t as usize).map(|w| w.last_call.load(Ordering::Relaxed)).filter(|&n| n != u64::MAX)
}

pub fn mm_error(e: MmError) -> Error {
    match e {
        MmError::OutOfMemory => Error::NoMemory,
        MmError::QuotaExceeded => Error::QuotaExceeded,
        MmError::Misaligned => Error::Misaligned,
        MmError::NonCanonical | MmError::KernelAddress | MmError::BadFrame => Error::BadAddress,
        MmError::AlreadyMapped => Error::AlreadyMapped,
        MmError::NotMapped => Error::NotMapped,
        MmError::SelfShare => Error::SelfShare,
        MmError::UnknownId => Error::NoSuchProcess,
        MmError::AlreadyOffered | MmError::AlreadyShared | MmError::StillShared => Error::Busy,
        MmError::TooManyContainers => Error::TableFull,
        MmError::LimitReached => Error::TooMany,
        MmError::NoSuchContainer => Error::NoSuchProcess,
        _ => Error::Invalid,
    }
}

fn container_of(pid: Pid) -> Result<ContainerId, Error> {
    if pid == 0 {
        return kmm::ROOT.get().copied().ok_or(Error::NotSupported);
    }
    Ok(ContainerId::new(PROCS.get(pid as u64)?.container))
}

/// Run `f` on `pid`'s address space.
pub fn with_space<R>(pid: Pid, f: impl FnOnce(&mut Space) -> R) -> Result<R, Error> {
    let mut g = SPACES.get(pid as usize).ok_or(Error::NoSuchProcess)?.lock();
    let s = g.as_mut().ok_or(Error::NoSuchProcess)?;
    Ok(f(s))
}

/// Copy from the caller's memory.
pub fn copy_in(pid: Pid, va: u64, buf: &mut [u8]) -> Result<(), Error> {
    with_space(pid, |s| kmm::copy_from_user(s, va, buf))?.map_err(|_| Error::BadAddress)
}

/// Copy to the caller's memory.
pub fn copy_out(pid: Pid, va: u64, data: &[u8]) -> Result<(), Error> {
    with_space(pid, |s| kmm::copy_to_user(s, va, data))?.map_err(|_| Error::BadAddress)
}

/// IPC copies straight between two address spaces (locks taken in pid
/// order; never together with the shared-memory table's).
pub struct SpaceCopier;

impl Copier for SpaceCopier {
    fn copy(&self, src: Pid, src_va: u64, dst: Pid, dst_va: u64, len: usize) -> Result<(), CopyFault> {
        if src == dst {
            return Err(CopyFault::Destination);
        }
        let (lo, hi) = (src.min(dst) as usize, src.max(dst) as usize);
        let (Some(a), Some(b)) = (SPACES.get(lo), SPACES.get(hi)) else { return Err(CopyFault::Source) };
        let ga = a.lock();
        let gb = b.lock();
        let (s, d) = if src as usize == lo { (ga.as_ref(), gb.as_ref()) } else { (gb.as_ref(), ga.as_ref()) };
        let s = s.ok_or(CopyFault::Source)?;
        let d = d.ok_or(CopyFault::Destination)?;
        kmm::copy_between(s, src_va, d, dst_va, len).map_err(|(side, _)| match side {
            kmm::Side::Source => CopyFault::Source,
            kmm::Side::Destination => CopyFault::Destination,
        })
    }

    fn read(&self, pid: Pid, va: u64, buf: &mut [u8]) -> Result<(), CopyFault> {
        copy_in(pid, va, buf).map_err(|_| CopyFault::Source)
    }

    fn write(&self, pid: Pid, va: u64, data: &[u8]) -> Result<(), CopyFault> {
        copy_out(pid, va, data).map_err(|_| CopyFault::Destination)
    }
}

// ---- spawn ----

/// Start program `name` as a child of `parent` (0: the kernel starting
/// init). `cpu_word` is the CPU and, in its high half, the most processes
/// the child's subtree may hold ([`abi::spawn_cpu`]); the child's container
/// gets that limit before the child runs.
pub fn spawn(parent: Pid, name: &str, quota: u64, cpu_word: u64, args: &[u8]) -> Result<Pid, Error> {
    let (cpu, max_procs) = abi::spawn_cpu_parts(cpu_word);
    if !cpu_usable(cpu) {
        return Err(Error::BadCpu);
    }
    if args.len() > MAX_ARGS || core::str::from_utf8(args).is_err() {
        return Err(Error::Invalid);
    }
    let file = programs::find(name).ok_or(Error::NoSuchProgram)?;
    let prog = proc::elf::parse(file, mm::paging::USER_END).map_err(|_| Error::Invalid)?;
    let c = CONTAINERS.split(container_of(parent)?, quota).map_err(mm_error)?;
    if max_procs != 0 {
        // The limit counts the containers below the child's: its descendants.
        if let Err(e) = CONTAINERS.set_limit(c, max_procs - 1) {
            let _ = CONTAINERS.destroy(c);
            return Err(mm_error(e));
        }
    }
    let pid = match PROCS.reserve(&SCHED, parent, name, cpu as usize, c.index() as u16) {
        Ok(p) => p,
        Err(e) => {
            let _ = CONTAINERS.destroy(c);
            return Err(e);
        }
    };
    match build(pid, c, &prog, file, cpu as usize, args) {
        Ok(()) => Ok(pid),
        Err(e) => {
            free_space(pid, c);
            free_kstack(pid, c, CpuSet::EMPTY); // its thread never ran
            PROCS.unreserve(&SCHED, pid);
            let _ = CONTAINERS.destroy(c);
            Err(e)
        }
    }
}

fn build(pid: Pid, c: ContainerId, prog: &proc::elf::Program, file: &[u8], cpu: usize, args: &[u8]) -> Result<(), Error> {
    let m = kmm::mm();
    let mut space = AddressSpace::new(m, c, kmm::KERNEL_ROOT.get().copied()).map_err(mm_error)?;
    // Keep the space where `free_space` finds it if anything below fails.
    let load = (|| -> Result<(), Error> {
        for seg in &prog.segments {
            let rights = Rights { write: seg.write, exec: seg.exec, user: true };
            let first = seg.vaddr & !4095;
            let end = (seg.vaddr + seg.memsz).div_ceil(4096) * 4096;
            let mut page = first;
            while page < end {
                let f = CONTAINERS.alloc_page(m.frames, c).map_err(mm_error)?;
                kmm::zero_frame(f);
                // The part of the file that lands in this page.
                let (lo, hi) = (page.max(seg.vaddr), (page + 4096).min(seg.vaddr + seg.filesz));
                if lo < hi {
                    let off = (seg.offset + (lo - seg.vaddr)) as usize;
                    kmm::write_frame(f, (lo - page) as usize, &file[off..off + (hi - lo) as usize]);
                }
                if let Err(e) = space.map(page, f, rights) {
                    let _ = CONTAINERS.free_page(m.frames, c, f);
                    return Err(mm_error(e));
                }
                page += 4096;
            }
        }
        for i in 1..=STACK_PAGES {
            let f = CONTAINERS.alloc_page(m.frames, c).map_err(mm_error)?;
            kmm::zero_frame(f);
            if let Err(e) = space.map(STACK_TOP - i * 4096, f, Rights::USER_RW) {
                let _ = CONTAINERS.free_page(m.frames, c, f);
                return Err(mm_error(e));
            }
        }
        Ok(())
    })();
    *SPACES[pid as usize].lock() = Some(space);
    load?;
    // Arguments at the top of the stack; the stack pointer below them.
    let args_va = STACK_TOP - MAX_ARGS as u64;
    copy_out(pid, args_va, args)?;
    *START[pid as usize].lock() = [prog.entry, args_va - 64, args_va, args.len() as u64];

    CONTAINERS.charge(c, KSTACK_PAGES as u64).map_err(mm_error)?;
    let kstack = match m.frames.alloc_contiguous(KSTACK_PAGES, 1, Owner::Container(c)) {
        Ok(f) => f,
        Err(e) => {
            let _ = CONTAINERS.uncharge(c, KSTACK_PAGES as u64);
            return Err(mm_error(e));
        }
    };
    *KSTACKS[pid as usize].lock() = Some(kstack);
    // Mapped in the pid's slot of the kernel-stack area, above guard pages.
    let (rsp, top) = kmm::map_kernel_stack(pid as usize, kstack, KSTACK_PAGES, process_start, pid as u64).map_err(mm_error)?;
    let tid = SCHED.alloc_thread().map_err(|_| Error::TableFull)?;
    let cr3 = with_space(pid, |s| s.root().addr())?;
    THREADS[tid as usize].pid.store(pid, Ordering::Relaxed);
    THREADS[tid as usize].last_call.store(u64::MAX, Ordering::Relaxed);
    PROCS.start(pid, tid);
    if SCHED.start(tid, cpu, rsp, top, cr3).is_err() {
        // Cannot happen (fresh slot, valid CPU); undo the slot.
        THREADS[tid as usize].pid.store(0, Ordering::Relaxed);
        SCHED.release_slot(tid);
        return Err(Error::TableFull);
    }
    Ok(())
}

/// First code of a new process's thread, on its kernel stack: go to user mode.
extern "C" fn process_start(pid: u64) -> ! {
    let cpu = machine::cpu::id();
    SCHED.finish_switch(cpu);
    let [entry, rsp, args_va, args_len] = *START[pid as usize].lock();
    let frame = TrapFrame {
        rip: entry,
        cs: USER_CS as u64,
        rflags: 0x202, // IF set: user mode always runs with interrupts on
        rsp,
        ss: USER_DS as u64,
        rdi: args_va,
        rsi: args_len,
        ..TrapFrame::default()
    };
    crate::bkl::leave();
    let top = SCHED.kstack_top(SCHED.current(cpu));
    #[cfg(mc2_bare)]
    #[allow(unsafe_code)]
    // SAFETY: `top` is this thread's own kernel stack top (set by the scheduler
    // as the TSS/system-call stack), nothing live is on it but this frame's
    // caller, which never returns; the frame is ring-3 code of this process,
    // whose address space the scheduler loaded.
    unsafe {
        machine::trap::enter_user(&frame, top)
    }
    #[cfg(not(mc2_bare))]
    {
        let _ = (frame, top);
        unreachable!("processes only run on bare metal")
    }
}

// ---- exit, wait, kill ----

/// Free `pid`'s address space and the pages mapped in it (shared pages must
/// have been revoked first).
fn free_space(pid: Pid, c: ContainerId) {
    let Some(space) = SPACES[pid as usize].lock().take() else { return };
    let frames = kmm::frames();
    let _ = space.destroy(|_, f, _| {
        if let Err(e) = CONTAINERS.put_page(frames, c, f) {
            log::error!("pid {pid}: page {:#x} not freed: {e}", f.addr());
        }
    });
}

/// Free `pid`'s kernel stack (its thread off its CPU for good): unmapped
/// first, and dropped from the TLBs of `cpus` (where it ran) and this CPU.
fn free_kstack(pid: Pid, c: ContainerId, cpus: CpuSet) {
    // Out of the lock first: the shootdown below waits for other CPUs.
    let taken = KSTACKS[pid as usize].lock().take();
    if let Some(f) = taken {
        kmm::unmap_kernel_stack(pid as usize, cpus);
        match kmm::frames().free_contiguous(f, KSTACK_PAGES, Owner::Container(c)) {
            Ok(()) => {
                let _ = CONTAINERS.uncharge(c, KSTACK_PAGES as u64);
            }
            Err(e) => log::error!("pid {pid}: kernel stack not freed: {e}"),
        }
    }
}

/// Revoke every shared page of `pid`, then shoot down the TLB entries the
/// revocation left on other CPUs (after the locks are dropped).
fn revoke_shared(pid: Pid) {
    let mut host = ShmHost { flushes: ArrayVec::new() };
    let _ = SHM.lock().revoke_all(&mut host, pid as usize);
    host.shoot();
}

/// The calling process ends with `code`. Never returns.
pub fn exit_current(code: u64) -> ! {
    let cpu = machine::cpu::id();
    let tid = SCHED.current(cpu);
    let pid = THREADS[tid as usize].pid.load(Ordering::Relaxed);
    CHANNELS.process_exit(&SCHED, pid);
    OBJECTS.process_exit(&SCHED, pid, tid);
    crate::vmcalls::process_exit(pid);
    revoke_shared(pid);
    // Leave our own page tables before they go.
    let kernel_cr3 = kmm::KERNEL_ROOT.get().map(|f| f.addr()).unwrap_or(0);
    SCHED.set_cr3(tid, kernel_cr3);
    #[cfg(mc2_bare)]
    kmm::activate_kernel_tables();
    if let Ok(c) = container_of(pid) {
        free_space(pid, c);
    }
    PROCS.exit(&SCHED, pid, code);
    let delay = EXIT_DELAY_US.load(Ordering::Relaxed);
    if delay != 0 {
        dev::lapic::delay_us(delay);
    }
    SCHED.exit_current(cpu);
    unreachable!("a zombie was scheduled again")
}

/// Wait for a child of `parent`, reap it, return (pid, exit code).
pub fn wait(parent: Pid, which: u64) -> Result<(u64, u64), Error> {
    let (child, p) = PROCS.wait(&SCHED, parent, which)?;
    let c = ContainerId::new(p.container);
    let mut stack_free = true;
    if p.tid != 0 {
        // The child's exit is published (`PROCS.exit`) before its thread
        // becomes a zombie and leaves its CPU (`SCHED.exit_current` in
        // `exit_current`): until then it still runs on its kernel stack.
        // That is a few instructions with interrupts masked, but a CPU can
        // stall there (a vCPU preempted by the host). Before, `reap` failed
        // on the not-yet-zombie thread, the error was ignored and the stack
        // freed under the running thread, which then returned through
        // whatever the stack's next owner wrote there (the fuzzer's kernel
        // fault at rip 0; `exit_delay_us=` widens the window).
        while SCHED.state(p.tid) != thread::State::Zombie {
            machine::x86::pause();
        }
        match SCHED.reap(p.tid) {
            // Off its CPU: its stack is ours to free.
            Ok(()) => THREADS[p.tid as usize].pid.store(0, Ordering::Relaxed),
            Err(e) => {
                // Never free a stack a thread may still run on: leak it,
                // loudly (the fuzzer fails on kernel errors and leaks).
                log::error!("pid {child}: thread {} not reaped ({e:?}): kernel stack kept", p.tid);
                stack_free = false;
            }
        }
    }
    free_space(child, c); // normally gone already (exit frees it)
    if !stack_free {
        // Keep the pid (Reaping for good), so that its stack slot and
        // container are never reused either.
        return Ok((child as u64, p.exit_code));
    }
    free_kstack(child, c, CpuSet::EMPTY.with(p.cpu as usize));
    destroy_container(c, child, &p.name);
    PROCS.release(&SCHED, child);
    Ok((child as u64, p.exit_code))
}

/// Containers of reaped processes whose children outlived them (their
/// containers hang below): each goes, and its quota returns to its parent,
/// once its last child container has gone (the spec's `ReapSemantics::
/// Deferred`). Before, such a container was never destroyed and its quota
/// was lost to the parent for good (found by the conformance checks).
static DEFERRED: SpinLock<[u64; mm::MAX_CONTAINERS / 64]> = SpinLock::new([0; mm::MAX_CONTAINERS / 64]);

/// Destroy the container of reaped process `pid`, or defer it while it has
/// child containers; then destroy the deferred ones that are now childless.
fn destroy_container(c: ContainerId, pid: Pid, name: &str) {
    match CONTAINERS.destroy(c) {
        Ok(()) => {}
        Err(MmError::HasChildren) => {
            let i = c.index();
            DEFERRED.lock()[i / 64] |= 1 << (i % 64);
            return;
        }
        Err(e) => {
            log::error!("pid {pid} ({name}): container not destroyed: {e}");
            return;
        }
    }
    // A deferred container whose last child has gone goes too (which may
    // free its own deferred parent: repeat until nothing changes).
    loop {
        let mut gone = None;
        {
            let mut d = DEFERRED.lock();
            for i in 0..mm::MAX_CONTAINERS {
                if d[i / 64] & (1 << (i % 64)) == 0 {
                    continue;
                }
                let id = ContainerId::new(i as u16);
                if CONTAINERS.info(id).is_ok_and(|info| info.children == 0 && info.own == 0) {
                    d[i / 64] &= !(1 << (i % 64));
                    gone = Some(id);
                    break;
                }
            }
        }
        let Some(id) = gone else { return };
        if let Err(e) = CONTAINERS.destroy(id) {
            log::error!("deferred container {} not destroyed: {e}", id.index());
        }
    }
}

/// `killer` ends its descendant `target`.
pub fn kill(killer: Pid, target: u64) -> Result<(), Error> {
    // Interrupted under the process table's lock (see `kill_and`).
    // Permitted when the target's container lies below the killer's: its
    // descendants, orphaned or not (an orphan's container stays where it
    // was until it is reaped, as its process limits do).
    let mine = ContainerId::new(PROCS.get(u64::from(killer))?.container);
    let tid = PROCS.kill_if(
        target,
        |t, i| CONTAINERS.is_below(ContainerId::new(t[i].container), mine),
        |t| {
            SCHED.interrupt(t);
        },
    )?;
    if tid != 0 {
        #[cfg(mc2_bare)]
        {
            let cpu = SCHED.home_cpu(tid);
            if cpu != machine::cpu::id() {
                dev::lapic::local().send_ipi(machine::percpu::apic_id(cpu), machine::trap::vector::WAKE);
            }
        }
    }
    Ok(())
}

/// Exit code of a killed process.
pub const KILLED: u64 = 137;

/// Before returning to user mode: a killed process exits instead.
pub fn check_killed() {
    check_killed_pid(current_pid());
}

/// [`check_killed`] for a caller that knows the current process, `pid`.
pub fn check_killed_pid(pid: Pid) {
    if pid != 0 && PROCS.killed(pid) {
        exit_current(KILLED);
    }
}

// ---- shared memory glue ----

/// `mm::ShmHost` over the kernel's spaces: every effect locks just the space
/// it touches (the shared-memory table's lock is taken first, by the caller).
pub struct ShmHost {
    flushes: ArrayVec<(Pid, u64), 8>,
}

impl ShmHost {
    pub fn new() -> Self {
        ShmHost { flushes: ArrayVec::new() }
    }

    /// Invalidate the pages unmapped from spaces live on other CPUs.
    pub fn shoot(self) {
        for (pid, va) in self.flushes {
            if let Ok(p) = PROCS.get(pid as u64) {
                if p.state == PState::Alive || p.state == PState::Starting {
                    kmm::shootdown(CpuSet::EMPTY.with(p.cpu as usize), Some(va));
                }
            }
        }
    }
}

impl Default for ShmHost {
    fn default() -> Self {
        Self::new()
    }
}

impl mm::ShmHost for ShmHost {
    fn container(&self, id: usize) -> Option<ContainerId> {
        let p = PROCS.get(id as u64).ok()?;
        matches!(p.state, PState::Alive | PState::Starting).then(|| ContainerId::new(p.container))
    }
    fn translate(&self, id: usize, va: u64) -> Option<Frame> {
        with_space(id as Pid, |s| s.translate(va).map(|(f, _)| f)).ok().flatten()
    }
    fn alloc_page(&mut self, c: ContainerId) -> Result<Frame, MmError> {
        let f = CONTAINERS.alloc_page(kmm::frames(), c)?;
        kmm::zero_frame(f);
        Ok(f)
    }
    fn share_page(&mut self, frame: Frame) -> Result<(), MmError> {
        kmm::frames().get_ref(frame).map(|_| ())
    }
    fn put_page(&mut self, c: ContainerId, frame: Frame) -> Result<bool, MmError> {
        CONTAINERS.put_page(kmm::frames(), c, frame)
    }
    fn map(&mut self, id: usize, va: u64, frame: Frame) -> Result<(), MmError> {
        with_space(id as Pid, |s| s.map(va, frame, Rights::USER_RW)).map_err(|_| MmError::UnknownId)?
    }
    fn unmap(&mut self, id: usize, va: u64) -> Result<Frame, MmError> {
        let (f, flush) = with_space(id as Pid, |s| s.unmap(va)).map_err(|_| MmError::UnknownId)??;
        let _ = self.flushes.try_push((id as Pid, flush.va()));
        Ok(f)
    }
}

/// Pages the process with `pid` has shared at `va` (mem_unmap must not touch them).
pub fn is_shared(pid: Pid, va: u64) -> bool {
    let shm = SHM.lock();
    (1..MAX_PROCS).any(|peer| {
        matches!(shm.status(pid as usize, peer), Ok(mm::ShmStatus::Offered { va: v }) | Ok(mm::ShmStatus::Ready { va: v }) if v == va)
    })
}

/// Processes that exist (for sysinfo).
pub fn count() -> usize {
    PROCS.count()
}

/// Start the first process (pid 1, normally `init`) with `args`, with all
/// of the root container's quota.
pub fn start_init(program: &str, args: &str, cpu: usize) -> Result<Pid, Error> {
    let root = kmm::ROOT.get().copied().ok_or(Error::NotSupported)?;
    let free = CONTAINERS.remaining(root).map_err(mm_error)?;
    spawn(0, program, free, cpu as u64, args.as_bytes())
}
