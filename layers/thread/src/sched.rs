//! Thread control blocks and the per-CPU scheduler: the seed's yield, sleep
//! and wakeup, on top of the shared queue library.
//!
//! Every thread is pinned to one CPU (its home). Each CPU has a ready queue
//! (queue id = CPU index) that only that CPU dequeues from, and an idle
//! thread (thread id = CPU index) that runs when the queue is empty. Other
//! CPUs may enqueue into it (wakeups) and then kick the CPU with an IPI.
//! Because only the home CPU ever resumes a thread, a thread that is woken
//! while it is still on its way to sleep is simply found in the ready queue
//! by its own CPU, which then keeps running it (no lost wakeup, no double run).
//!
//! A thread's kernel context is its saved stack pointer (see
//! `machine::context`); its user registers, FPU/SSE state included, are in
//! the trap frame on its kernel stack. The scheduler switches with
//! `machine::context::switch` on bare metal; on the host the same state
//! machine runs without switching stacks, which is what the refinement checks
//! drive.

use crate::queue::QueueSet;
use crate::Tid;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use lock::{Padded, SpinLock};
use machine::MAX_CPUS;

/// Threads the kernel can hold at once, idle threads (ids `0..MAX_CPUS`) included.
pub const MAX_THREADS: usize = 128;
/// Wait queues available to the layers above, after the per-CPU ready and
/// sleep queues: the process layer needs one per process, two per channel
/// and one per mutex and per condition variable, and sizes those tables so
/// that this never runs out (it checks that at compile time): 64 + 2 × 512
/// + 512 + 512, rounded up to a multiple of 64.
pub const MAX_WAIT_QUEUES: usize = 2176;
/// Total queues: ready queues `0..MAX_CPUS`, sleep queues
/// `MAX_CPUS..2*MAX_CPUS`, then the wait queues.
pub const MAX_QUEUES: usize = 2 * MAX_CPUS + MAX_WAIT_QUEUES;
const FIRST_WAIT_QUEUE: usize = 2 * MAX_CPUS;

/// Scheduler states of a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Free = 0,
    Ready = 1,
    Running = 2,
    Blocked = 3,
    Zombie = 4,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Ready,
            2 => State::Running,
            3 => State::Blocked,
            4 => State::Zombie,
            _ => State::Free,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedError {
    /// No free thread slot.
    NoThreadSlot,
    /// No free wait queue.
    NoQueue,
    /// Thread id or CPU out of range, or the thread is not in the state the
    /// operation needs.
    BadThread,
    BadCpu,
    /// The queue still has waiters.
    QueueBusy,
}

/// Deliberate bugs the refinement checks must catch (feature `mutants`;
/// set [`Scheduler::mutant`] to one of these; 0 is none).
#[cfg(feature = "mutants")]
pub mod mutant {
    /// `start` keeps the home CPU the slot had before (a stale one after
    /// the slot is reused).
    pub const START_KEEPS_HOME: u8 = 1;
    /// `block_on` drops the caller's lock before the thread is in the wait
    /// queue (a waker can then miss it: lost wake-up).
    pub const BLOCK_RELEASES_EARLY: u8 = 2;
    /// `wake_handoff` hands a thread of another CPU to the caller's CPU.
    pub const HANDOFF_IGNORES_HOME: u8 = 3;
}

/// Sleeping threads of one CPU: (wake-up tick, thread).
struct Sleepers {
    list: [(u64, Tid); MAX_THREADS],
    len: usize,
}

/// One thread's scheduler slot (on a cache line of its own: threads of
/// different CPUs never write a shared line).
struct ThreadSlot {
    state: AtomicU8,
    home: AtomicU32,
    saved_rsp: AtomicU64,
    kstack_top: AtomicU64,
    /// Page-table root the thread runs with (its process's address space;
    /// the kernel's tables for idle threads).
    cr3: AtomicU64,
    /// Still executing on its CPU (cleared by the next thread after the switch).
    on_cpu: AtomicBool,
    /// Interrupted (killed): must not go to sleep any more.
    interrupted: AtomicBool,
}

/// One CPU's scheduler state (on a cache line of its own).
struct CpuSlot {
    current: AtomicU32,
    /// A thread to run next on this CPU ahead of the ready queue (the
    /// direct switch of synchronous IPC), or NIL.
    handoff: AtomicU32,
    switched_from: AtomicU32,
    /// The thread this CPU ran before its current one (for fault reports).
    previous: AtomicU32,
    ticks: AtomicU64,
}

/// The scheduler state of the whole machine.
pub struct Scheduler {
    pub queues: QueueSet<MAX_QUEUES, MAX_THREADS>,
    threads: [Padded<ThreadSlot>; MAX_THREADS],
    cpus: [Padded<CpuSlot>; MAX_CPUS],
    sleepers: [SpinLock<Sleepers>; MAX_CPUS],
    /// Which wait queues are handed out (bit i = queue FIRST_WAIT_QUEUE + i).
    wait_alloc: SpinLock<[u64; MAX_WAIT_QUEUES / 64]>,
    slots: SpinLock<()>,
    /// Which deliberate bug is on (see [`mutant`]).
    #[cfg(feature = "mutants")]
    pub mutant: AtomicU8,
}

/// The kernel's scheduler.
pub static SCHED: Scheduler = Scheduler::new();

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scheduler {
    pub const fn new() -> Self {
        Scheduler {
            queues: QueueSet::new(),
            threads: [const {
                Padded::new(ThreadSlot {
                    state: AtomicU8::new(State::Free as u8),
                    home: AtomicU32::new(0),
                    saved_rsp: AtomicU64::new(0),
                    kstack_top: AtomicU64::new(0),
                    cr3: AtomicU64::new(0),
                    on_cpu: AtomicBool::new(false),
                    interrupted: AtomicBool::new(false),
                })
            }; MAX_THREADS],
            cpus: [const {
                Padded::new(CpuSlot {
                    current: AtomicU32::new(0),
                    handoff: AtomicU32::new(crate::queue::NIL),
                    switched_from: AtomicU32::new(crate::queue::NIL),
                    previous: AtomicU32::new(crate::queue::NIL),
                    ticks: AtomicU64::new(0),
                })
            }; MAX_CPUS],
            sleepers: [const { SpinLock::new(Sleepers { list: [(0, 0); MAX_THREADS], len: 0 }) }; MAX_CPUS],
            wait_alloc: SpinLock::new([0; MAX_WAIT_QUEUES / 64]),
            slots: SpinLock::new(()),
            #[cfg(feature = "mutants")]
            mutant: AtomicU8::new(0),
        }
    }

    /// Interrupt `cpu` so it looks at its ready queue: a wake-up IPI (a
    /// halted CPU wakes; a busy one notices at its next kernel exit).
    fn kick(&self, cpu: usize) {
        #[cfg(mc2_bare)]
        dev::lapic::local().send_ipi(machine::percpu::apic_id(cpu), machine::trap::vector::WAKE);
        #[cfg(not(mc2_bare))]
        let _ = cpu;
    }

    #[inline]
    pub fn state(&self, t: Tid) -> State {
        self.threads.get(t as usize).map(|s| State::from_u8(s.state.load(Ordering::Acquire))).unwrap_or(State::Free)
    }

    #[inline]
    fn set_state(&self, t: Tid, s: State) {
        self.threads[t as usize].state.store(s as u8, Ordering::Release);
    }

    /// The CPU a thread is pinned to.
    #[inline]
    pub fn home_cpu(&self, t: Tid) -> usize {
        self.threads[t as usize].home.load(Ordering::Relaxed) as usize
    }

    /// The thread running on `cpu`.
    #[inline]
    pub fn current(&self, cpu: usize) -> Tid {
        self.cpus[cpu].current.load(Ordering::Acquire)
    }

    /// The thread `cpu` ran before its current one (NIL if none yet), for
    /// fault reports.
    pub fn previous(&self, cpu: usize) -> Tid {
        self.cpus[cpu].previous.load(Ordering::Relaxed)
    }

    /// Change the page tables `t` runs with (a process tearing down its space
    /// moves to the kernel's first).
    pub fn set_cr3(&self, t: Tid, cr3: u64) {
        self.threads[t as usize].cr3.store(cr3, Ordering::Relaxed);
    }

    /// Top of `t`'s kernel stack.
    #[inline]
    pub fn kstack_top(&self, t: Tid) -> u64 {
        self.threads[t as usize].kstack_top.load(Ordering::Relaxed)
    }

    /// Ticks seen by `cpu`'s timer.
    pub fn ticks(&self, cpu: usize) -> u64 {
        self.cpus[cpu].ticks.load(Ordering::Relaxed)
    }

    /// Adopt the calling context as `cpu`'s idle thread (thread id = cpu),
    /// running on page tables `cr3`.
    pub fn init_idle(&self, cpu: usize, cr3: u64) {
        let t = cpu as Tid;
        self.threads[cpu].cr3.store(cr3, Ordering::Relaxed);
        self.threads[cpu].home.store(cpu as u32, Ordering::Relaxed);
        self.set_state(t, State::Running);
        self.threads[cpu].on_cpu.store(true, Ordering::Release);
        self.cpus[cpu].current.store(t, Ordering::Release);
    }

    /// Reserve a thread slot (state Free -> Blocked, not in any queue).
    pub fn alloc_thread(&self) -> Result<Tid, SchedError> {
        let _g = self.slots.lock();
        for t in MAX_CPUS..MAX_THREADS {
            if self.state(t as Tid) == State::Free && !self.threads[t].on_cpu.load(Ordering::Acquire) {
                self.threads[t].interrupted.store(false, Ordering::Relaxed);
                self.set_state(t as Tid, State::Blocked);
                return Ok(t as Tid);
            }
        }
        Err(SchedError::NoThreadSlot)
    }

    /// Give back a slot reserved by `alloc_thread` that was never started.
    pub fn release_slot(&self, t: Tid) {
        if (t as usize) >= MAX_CPUS && (t as usize) < MAX_THREADS && self.state(t) == State::Blocked && self.queues.home(t).is_none() {
            self.set_state(t, State::Free);
        }
    }

    /// Make a reserved thread runnable on `cpu`, starting from the kernel
    /// context `rsp` (from `machine::context::init_stack`) on the stack whose
    /// top is `kstack_top`, with page tables `cr3`.
    pub fn start(&self, t: Tid, cpu: usize, rsp: u64, kstack_top: u64, cr3: u64) -> Result<(), SchedError> {
        if cpu >= MAX_CPUS {
            return Err(SchedError::BadCpu);
        }
        if (t as usize) < MAX_CPUS || t as usize >= MAX_THREADS || self.state(t) != State::Blocked || self.queues.home(t).is_some() {
            return Err(SchedError::BadThread);
        }
        #[cfg(feature = "mutants")]
        let old_home = self.threads[t as usize].home.load(Ordering::Relaxed);
        self.threads[t as usize].home.store(cpu as u32, Ordering::Relaxed);
        #[cfg(feature = "mutants")]
        if self.mutant.load(Ordering::Relaxed) == mutant::START_KEEPS_HOME {
            self.threads[t as usize].home.store(old_home, Ordering::Relaxed);
        }
        self.threads[t as usize].saved_rsp.store(rsp, Ordering::Relaxed);
        self.threads[t as usize].kstack_top.store(kstack_top, Ordering::Relaxed);
        self.threads[t as usize].cr3.store(cr3, Ordering::Relaxed);
        self.make_ready(t);
        Ok(())
    }

    /// Make a blocked thread that is in no queue (taken from a wait queue by
    /// the caller) runnable on its CPU.
    pub fn make_runnable(&self, t: Tid) {
        self.make_ready(t)
    }

    /// Make `t` (taken from a wait queue) runnable, and if it lives on this
    /// CPU, run it next, ahead of the ready queue: the direct switch of
    /// synchronous IPC, where the waker is about to block (a client calling
    /// a server). If the waker does not block after all, its kernel exit
    /// calls [`flush_handoff`](Self::flush_handoff) and `t` joins the ready
    /// queue as usual.
    pub fn wake_handoff(&self, t: Tid) {
        let cpu = machine::cpu::id();
        #[cfg(feature = "mutants")]
        if self.mutant.load(Ordering::Relaxed) == mutant::HANDOFF_IGNORES_HOME && self.cpus[cpu].handoff.load(Ordering::Relaxed) == crate::queue::NIL {
            self.set_state(t, State::Ready);
            self.cpus[cpu].handoff.store(t, Ordering::Relaxed);
            return;
        }
        if self.home_cpu(t) == cpu && self.cpus[cpu].handoff.load(Ordering::Relaxed) == crate::queue::NIL {
            self.set_state(t, State::Ready);
            self.cpus[cpu].handoff.store(t, Ordering::Relaxed);
        } else {
            self.make_ready(t);
        }
    }

    /// Move a pending hand-off of `cpu` to its ready queue (at kernel exit).
    #[inline]
    pub fn flush_handoff(&self, cpu: usize) {
        let t = self.cpus[cpu].handoff.swap(crate::queue::NIL, Ordering::Relaxed);
        if t != crate::queue::NIL {
            let _ = self.queues.enqueue(cpu, t);
        }
    }

    /// Put `t` (not in any queue) on its CPU's ready queue and kick that CPU.
    fn make_ready(&self, t: Tid) {
        let cpu = self.home_cpu(t);
        self.set_state(t, State::Ready);
        let _ = self.queues.enqueue(cpu, t);
        if cpu != machine::cpu::id() {
            self.kick(cpu);
        }
    }

    /// Hand out a wait queue.
    pub fn alloc_queue(&self) -> Result<usize, SchedError> {
        let mut bits = self.wait_alloc.lock();
        for (w, word) in bits.iter_mut().enumerate() {
            if *word != u64::MAX {
                let b = (!*word).trailing_zeros() as usize;
                *word |= 1 << b;
                return Ok(FIRST_WAIT_QUEUE + w * 64 + b);
            }
        }
        Err(SchedError::NoQueue)
    }

    /// Return an empty wait queue.
    pub fn free_queue(&self, q: usize) -> Result<(), SchedError> {
        if !(FIRST_WAIT_QUEUE..MAX_QUEUES).contains(&q) {
            return Err(SchedError::NoQueue);
        }
        if !self.queues.is_empty(q) {
            return Err(SchedError::QueueBusy);
        }
        let i = q - FIRST_WAIT_QUEUE;
        self.wait_alloc.lock()[i / 64] &= !(1 << (i % 64));
        Ok(())
    }

    /// Wait queues handed out and not returned.
    pub fn queues_in_use(&self) -> usize {
        self.wait_alloc.lock().iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Yield: the current thread of `cpu` goes to the back of its ready queue
    /// if another thread is ready.
    pub fn yield_now(&self, cpu: usize) {
        let cur = self.current(cpu);
        if !self.has_ready(cpu) || cur as usize == cpu {
            return;
        }
        self.set_state(cur, State::Ready);
        let _ = self.queues.enqueue(cpu, cur);
        self.switch_to_next(cpu);
    }

    /// Sleep: block the current thread of `cpu` on wait queue `q`. The
    /// caller's lock guard `release` is dropped after the thread is in the
    /// queue and before it switches away, so a waker that takes the same lock
    /// always finds it there. Returns when the thread has been woken.
    pub fn block_on<G>(&self, cpu: usize, q: usize, release: G) {
        #[cfg(feature = "mutants")]
        let release = {
            let mut release = Some(release);
            if self.mutant.load(Ordering::Relaxed) == mutant::BLOCK_RELEASES_EARLY {
                drop(release.take());
            }
            release
        };
        let cur = self.current(cpu);
        self.set_state(cur, State::Blocked);
        let _ = self.queues.enqueue(q, cur);
        drop(release);
        self.switch_to_next(cpu);
    }

    /// [`block_on`](Self::block_on) for waits a kill must end (IPC, mutexes,
    /// condition variables, children): a thread already interrupted (its
    /// mark set by [`interrupt`](Self::interrupt)) leaves the queue again and
    /// returns at once instead of sleeping. The mark is read after the
    /// thread is in the queue (and [`interrupt`](Self::interrupt) looks for
    /// the thread after setting it), so a kill either finds the thread in
    /// the queue or is seen here. Before, a kill that came between a thread
    /// deciding to wait and queueing itself was lost and the killer's `wait`
    /// hung (found by the fuzzer). Otherwise the same as `block_on`.
    pub fn block_on_killable<G>(&self, cpu: usize, q: usize, release: G) {
        let cur = self.current(cpu);
        self.set_state(cur, State::Blocked);
        let _ = self.queues.enqueue(q, cur);
        core::sync::atomic::fence(Ordering::SeqCst);
        if self.threads[cur as usize].interrupted.load(Ordering::Acquire) && self.queues.remove(q, cur) {
            // Not asleep yet and nobody woke it: carry on running.
            self.set_state(cur, State::Running);
            drop(release);
            return;
        }
        drop(release);
        self.switch_to_next(cpu);
    }

    /// Wake the thread at the head of wait queue `q`.
    pub fn wake_one(&self, q: usize) -> Option<Tid> {
        let t = self.queues.dequeue(q)?;
        self.make_ready(t);
        Some(t)
    }

    /// Wake every thread in `q`; returns how many.
    pub fn wake_all(&self, q: usize) -> usize {
        let mut n = 0;
        while self.wake_one(q).is_some() {
            n += 1;
        }
        n
    }

    /// Wake `t` if it is waiting in `q` (for kills and timeouts).
    pub fn wake_thread(&self, q: usize, t: Tid) -> bool {
        if self.queues.remove(q, t) {
            self.make_ready(t);
            true
        } else {
            false
        }
    }

    /// Sleep until `cpu`'s tick counter reaches `until`.
    pub fn sleep_until(&self, cpu: usize, until: u64) {
        let cur = self.current(cpu);
        let mut s = self.sleepers[cpu].lock();
        if self.ticks(cpu) >= until {
            return;
        }
        let n = s.len;
        s.list[n] = (until, cur);
        s.len += 1;
        self.block_on(cpu, MAX_CPUS + cpu, s);
    }

    /// Does a thread sleep on `cpu`'s ticks? (Only a thread on `cpu` puts
    /// itself there, so while `cpu` runs one thread this cannot change.)
    pub fn has_sleepers(&self, cpu: usize) -> bool {
        self.sleepers[cpu].lock().len != 0
    }

    /// A timer tick on `cpu`: wake the sleepers whose time has come.
    pub fn tick(&self, cpu: usize) {
        let now = self.cpus[cpu].ticks.fetch_add(1, Ordering::Relaxed) + 1;
        let mut s = self.sleepers[cpu].lock();
        let mut i = 0;
        while i < s.len {
            let (until, t) = s.list[i];
            if until <= now {
                let last = s.len - 1;
                s.list[i] = s.list[last];
                s.len -= 1;
                self.wake_thread(MAX_CPUS + cpu, t);
            } else {
                i += 1;
            }
        }
    }

    /// One pass of the idle loop (`idle`) without the halt: if `cpu` runs its
    /// idle thread and another thread is ready, switch to it; whether it did.
    /// (The host has no idle loop; the refinement checks drive this.)
    #[cfg(any(test, feature = "spec"))]
    pub fn idle_step(&self, cpu: usize) -> bool {
        if self.current(cpu) as usize != cpu || !self.has_ready(cpu) {
            return false;
        }
        self.switch_to_next(cpu);
        true
    }

    /// Is any thread other than the running one ready on `cpu`?
    #[inline]
    pub fn has_ready(&self, cpu: usize) -> bool {
        self.cpus[cpu].handoff.load(Ordering::Relaxed) != crate::queue::NIL || !self.queues.is_empty(cpu)
    }

    /// Leave the current thread of `cpu` for good: it becomes a zombie until
    /// [`reap`](Self::reap). On bare metal this never returns.
    pub fn exit_current(&self, cpu: usize) {
        let cur = self.current(cpu);
        self.set_state(cur, State::Zombie);
        self.switch_to_next(cpu);
    }

    /// Free a zombie's slot once it is off its CPU (its kernel stack may then
    /// be freed by the caller).
    pub fn reap(&self, t: Tid) -> Result<(), SchedError> {
        if (t as usize) < MAX_CPUS || t as usize >= MAX_THREADS || self.state(t) != State::Zombie {
            return Err(SchedError::BadThread);
        }
        while self.threads[t as usize].on_cpu.load(Ordering::Acquire) {
            machine::x86::pause();
        }
        self.set_state(t, State::Free);
        Ok(())
    }

    /// Kill-path helper: take a blocked thread out of whatever wait queue
    /// holds it and make it ready (so it can notice it was killed); a thread
    /// not yet asleep will not go to sleep in
    /// [`block_on_killable`](Self::block_on_killable), which checks the mark
    /// after queueing (plain `block_on` and `sleep_until` do not: their
    /// waits are bounded or not ended by kills).
    pub fn interrupt(&self, t: Tid) -> bool {
        if let Some(flag) = self.threads.get(t as usize).map(|s| &s.interrupted) {
            flag.store(true, Ordering::Release);
        }
        // Pairs with the fence in block_on_killable (store, then load, on
        // both sides).
        core::sync::atomic::fence(Ordering::SeqCst);
        match self.queues.home(t) {
            Some(q) if (MAX_CPUS..2 * MAX_CPUS).contains(&q) => {
                let mut s = self.sleepers[q - MAX_CPUS].lock();
                if let Some(i) = s.list[..s.len].iter().position(|&(_, x)| x == t) {
                    let last = s.len - 1;
                    s.list[i] = s.list[last];
                    s.len -= 1;
                }
                self.wake_thread(q, t)
            }
            Some(q) if q >= 2 * MAX_CPUS => self.wake_thread(q, t),
            _ => false,
        }
    }

    /// Run the next ready thread of `cpu` (or its idle thread). The current
    /// thread must already be queued, blocked or a zombie.
    fn switch_to_next(&self, cpu: usize) {
        let cur = self.current(cpu);
        let h = self.cpus[cpu].handoff.swap(crate::queue::NIL, Ordering::Relaxed);
        let next = if h != crate::queue::NIL { h } else { self.queues.dequeue(cpu).unwrap_or(cpu as Tid) };
        self.set_state(next, State::Running);
        if next == cur {
            return; // woken before it got away: keep running
        }
        self.threads[next as usize].on_cpu.store(true, Ordering::Release);
        self.cpus[cpu].current.store(next, Ordering::Release);
        self.cpus[cpu].switched_from.store(cur, Ordering::Relaxed);
        self.cpus[cpu].previous.store(cur, Ordering::Relaxed);
        #[cfg(mc2_bare)]
        #[allow(unsafe_code)]
        {
            if next as usize >= MAX_CPUS {
                machine::percpu::set_kernel_stack(self.kstack_top(next));
            }
            let cr3 = self.threads[next as usize].cr3.load(Ordering::Relaxed);
            // SAFETY: every thread's cr3 is the kernel's tables or an address
            // space that shares the kernel half (mm::AddressSpace::new), live
            // until the thread is reaped, which waits for it to be off-CPU.
            if cr3 != 0 && unsafe { machine::x86::read_cr3() } != cr3 {
                // SAFETY: as above.
                unsafe { machine::x86::write_cr3(cr3) };
            }
            let save = self.threads[cur as usize].saved_rsp.as_ptr();
            let to = self.threads[next as usize].saved_rsp.load(Ordering::Relaxed);
            // SAFETY: `to` was stored by an earlier switch away from `next`
            // or by `start` from `machine::context::init_stack`; `next` runs
            // nowhere else (only its home CPU, this one, resumes it, and it
            // was just taken off this CPU's ready queue). `save` points into
            // this static table, valid for the kernel's life. Interrupts are
            // masked in the kernel.
            unsafe { machine::context::switch(save, to) };
        }
        self.finish_switch(cpu);
    }

    /// After a switch lands in a thread: the thread we came from is off the
    /// CPU now. A new thread calls this first (see `machine::context`).
    pub fn finish_switch(&self, cpu: usize) {
        let from = self.cpus[cpu].switched_from.swap(crate::queue::NIL, Ordering::Relaxed);
        if from != crate::queue::NIL {
            self.threads[from as usize].on_cpu.store(false, Ordering::Release);
        }
    }

    /// The idle loop of `cpu`: run whatever becomes ready, else halt until an
    /// interrupt. `hook` runs before each halt (the kernel releases the big
    /// kernel lock there in that build).
    #[cfg(mc2_bare)]
    pub fn idle(&self, cpu: usize, before_halt: fn(), after_halt: fn()) -> ! {
        loop {
            if self.has_ready(cpu) {
                self.switch_to_next(cpu);
                continue;
            }
            before_halt();
            // SAFETY: ring 0 with the IDT installed; this is the idle point.
            #[allow(unsafe_code)]
            unsafe {
                machine::x86::wait_for_interrupt()
            };
            after_halt();
        }
    }
}
