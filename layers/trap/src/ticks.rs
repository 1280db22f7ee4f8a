//! Each CPU's tick clock, and quiet CPUs while a guest runs.
//!
//! Normally a CPU's local APIC timer interrupts every 1/[`TICK_HZ`] s and
//! each interrupt is one tick (sleeps, time slices). A CPU that runs a guest
//! and has nothing else to do (no other thread ready, none asleep on its
//! ticks) gains nothing from those ticks: each ends the guest's run for a
//! world switch — and under an emulator each world switch flushes the whole
//! emulated TLB, which the guest then refills page by page. So while such a
//! guest runs, the timer is armed once, for the guest's deadline (the VMM's
//! next timer event), at most [`QUIET_MAX_MS`] ahead; the ticks that pass
//! meanwhile are counted from the TSC. Back in the VMM the timer fires at
//! each tick due, armed once per tick from the TSC (so the ticks keep their
//! phase however often the guest exits): no tick is lost, none comes early,
//! and the guest's deadline is met to the timer's precision instead of at
//! the next host tick.
//!
//! [`TickClock`] is that bookkeeping, pure so the host tests can drive it;
//! `intr` applies what it returns to the local APIC and the scheduler.
//!
//! [`TICK_HZ`]: crate::TICK_HZ

use lock::{Padded, SpinLock};
use machine::MAX_CPUS;

/// The longest a quiet CPU goes without a timer interrupt: a bound for
/// anything no interrupt announces (a kill of the guest's owner and a
/// thread made ready from another CPU each come with an IPI).
pub const QUIET_MAX_MS: u64 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The timer interrupts every tick; each interrupt is a tick (a CPU
    /// that has never run a guest).
    Periodic,
    /// A guest runs: one interrupt at its deadline; ticks from the TSC.
    Quiet,
    /// No guest runs: one interrupt at each tick due; ticks from the TSC.
    Ticking,
}

/// What to do to the timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    /// Leave it as it is.
    Keep,
    /// One interrupt after this many TSC ticks.
    Once(u64),
}

#[derive(Clone, Copy, Debug)]
pub struct TickClock {
    mode: Mode,
    /// TSC when the next tick is due (0: not known yet, before the first).
    next_due: u64,
    /// When the one-shot interrupt armed last will come, until it has:
    /// an entry or return that wants the same (or, for a tick, an earlier)
    /// interrupt keeps it instead of writing the timer again (under an
    /// emulator each local APIC write is itself an emulated device access).
    armed: Option<u64>,
}

impl Default for TickClock {
    fn default() -> Self {
        Self::new()
    }
}

impl TickClock {
    pub const fn new() -> Self {
        TickClock {
            mode: Mode::Periodic,
            next_due: 0,
            armed: None,
        }
    }

    /// One interrupt at TSC `at` (at least one TSC tick from now).
    fn arm(&mut self, now: u64, at: u64) -> Arm {
        let at = at.max(now + 1);
        self.armed = Some(at);
        Arm::Once(at - now)
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The ticks due by `now` that are not counted yet (not in periodic
    /// mode, where the interrupts count).
    fn catch_up(&mut self, now: u64, per_tick: u64) -> u64 {
        if now < self.next_due {
            return 0;
        }
        let n = (now - self.next_due) / per_tick + 1;
        self.next_due += n * per_tick;
        n
    }

    /// A guest is about to run (or wait halted) until `deadline` (TSC, 0:
    /// none) and the CPU has nothing else to do (`alone`). Returns the ticks
    /// to count now and what to do to the timer.
    pub fn guest(
        &mut self,
        now: u64,
        deadline: u64,
        per_tick: u64,
        max_quiet: u64,
        alone: bool,
    ) -> (u64, Arm) {
        if !alone {
            return self.host(now, per_tick);
        }
        if self.next_due == 0 {
            self.next_due = now + per_tick;
        }
        // From periodic mode the last interrupt set next_due; a tick it is
        // late for is pending as an interrupt and counted here instead.
        let n = self.catch_up(now, per_tick);
        // Whatever is armed below is a one-shot: the mode must say so, also
        // when the deadline has passed (left periodic, the one-shot's
        // interrupt was taken for a periodic one and the CPU's timer never
        // came back: every sleeper there slept for ever; the fuzzer met it
        // once guests yielded their CPU, resuming past their deadlines).
        self.mode = Mode::Quiet;
        if deadline != 0 && now >= deadline {
            // Fire at once: the caller returns to the VMM, or notices the
            // deadline when the interrupt wakes it (a halted guest's wait
            // must not sleep past it with no timer armed).
            return (n, self.arm(now, now + 1));
        }
        // With no deadline within reach, any interrupt armed before the cap
        // will do; else exactly the deadline.
        let capped = deadline == 0 || deadline - now > max_quiet;
        let target = if capped { now + max_quiet } else { deadline };
        match self.armed {
            Some(t) if t > now && (t == target || (capped && t <= target)) => (n, Arm::Keep),
            _ => (n, self.arm(now, target)),
        }
    }

    /// The VMM runs again (or the CPU has other work): count the ticks
    /// passed and fire at the next one due.
    pub fn host(&mut self, now: u64, per_tick: u64) -> (u64, Arm) {
        if self.mode == Mode::Periodic {
            return (0, Arm::Keep);
        }
        let n = self.catch_up(now, per_tick);
        self.mode = Mode::Ticking;
        match self.armed {
            // The guest's interrupt comes first: the tick is counted then.
            Some(t) if t > now && t <= self.next_due => (n, Arm::Keep),
            _ => (n, self.arm(now, self.next_due)),
        }
    }

    /// The timer interrupted at `now`: the ticks to count and what next.
    pub fn fired(&mut self, now: u64, per_tick: u64) -> (u64, Arm) {
        // Whichever interrupt this was, none armed is pending now (a stale
        // one would only cost a needless write of the timer, never a wait
        // with none).
        self.armed = None;
        match self.mode {
            Mode::Periodic => {
                self.next_due = now + per_tick;
                (1, Arm::Keep)
            }
            // The guest's loop re-arms after the interrupt (`guest`).
            Mode::Quiet => (self.catch_up(now, per_tick), Arm::Keep),
            // (Early, if the count was rounded down: none counted, again.)
            Mode::Ticking => {
                let n = self.catch_up(now, per_tick);
                (n, self.arm(now, self.next_due))
            }
        }
    }
}

/// Each CPU's clock; only that CPU touches it, in the kernel with
/// interrupts masked or in its timer interrupt.
static CLOCKS: [Padded<SpinLock<TickClock>>; MAX_CPUS] =
    [const { Padded::new(SpinLock::new(TickClock::new())) }; MAX_CPUS];

/// TSC ticks per scheduler tick (0 before calibration).
fn tsc_per_tick() -> u64 {
    dev::lapic::tsc_per_ms() * 1000 / crate::TICK_HZ
}

/// Count `n` ticks on `cpu` and arm its timer as told.
fn apply(cpu: usize, (n, arm): (u64, Arm)) {
    for _ in 0..n {
        thread::SCHED.tick(cpu);
    }
    if let Arm::Once(d) = arm {
        // Late rather than early: the timer's rate is known only to the
        // calibration's precision, and an interrupt before the deadline
        // costs the guest a second exit (one world switch pair each) for
        // nothing. 1/1024 of the wait (~1,000 ppm: the timer's rate against
        // the TSC's is measured to some 20-80, `LocalApic::calibrate`, and
        // under an emulator the timer may follow a host clock that NTP
        // slews by up to 500) plus 2 µs covers that; a guest's 4 ms tick
        // then comes 6 µs late at most (33 µs with the 1/128 the old
        // calibration needed, whose rates were up to 1.3% off).
        let slack = d / 1024 + 2 * dev::lapic::tsc_per_ms() / 1000;
        dev::lapic::local().start_one_shot(crate::intr::TIMER_VECTOR, d + slack);
    }
}

/// Run `step` on `cpu`'s clock at the TSC now and apply what it says;
/// false before calibration (no tick length yet: nothing done).
fn drive(cpu: usize, step: impl FnOnce(&mut TickClock, u64, u64) -> (u64, Arm)) -> bool {
    let per_tick = tsc_per_tick();
    if per_tick == 0 {
        return false;
    }
    let r = step(&mut CLOCKS[cpu].lock(), machine::x86::rdtsc(), per_tick);
    apply(cpu, r);
    true
}

/// The timer interrupted this CPU: count the ticks it stands for.
pub fn timer_fired(cpu: usize) {
    if !drive(cpu, |c, now, per_tick| c.fired(now, per_tick)) {
        thread::SCHED.tick(cpu);
    }
}

/// A guest runs on this CPU until `deadline` (see [`TickClock::guest`]).
pub fn guest_timer(deadline: u64) {
    let cpu = machine::cpu::id();
    let alone = !thread::SCHED.has_ready(cpu) && !thread::SCHED.has_sleepers(cpu);
    let max_quiet = QUIET_MAX_MS * dev::lapic::tsc_per_ms();
    drive(cpu, |c, now, per_tick| c.guest(now, deadline, per_tick, max_quiet, alone));
}

/// The guest's VMM runs again on this CPU.
pub fn host_timer() {
    drive(machine::cpu::id(), |c, now, per_tick| c.host(now, per_tick));
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_TICK: u64 = 4_000;
    const MAX_QUIET: u64 = 5 * PER_TICK;

    /// A simulated CPU: the timer as the hardware runs it, and the kernel's
    /// calls at random times. Interrupts are taken only where the kernel
    /// would take them (between its calls), a little after they are due.
    struct Cpu {
        now: u64,
        clock: TickClock,
        /// Next interrupt: (when, periodic?).
        timer: Option<(u64, bool)>,
        ticks: u64,
        /// In the guest, until this deadline (0: none).
        in_guest: Option<u64>,
        rng: u64,
    }

    impl Cpu {
        fn rand(&mut self, n: u64) -> u64 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.rng % n
        }
        fn apply(&mut self, (n, arm): (u64, Arm)) {
            self.ticks += n;
            match arm {
                Arm::Keep => {}
                Arm::Once(d) => {
                    // The local APIC's count is the TSC delay rounded: the
                    // interrupt may come a little early.
                    let early = self.rand((d / 8).max(1));
                    self.timer = Some((self.now + d - early, false));
                }
            }
        }
        /// Advance to `t`, taking the interrupts due on the way.
        fn run_until(&mut self, t: u64) {
            while let Some((at, periodic)) = self.timer.filter(|&(at, _)| at <= t) {
                // Interrupt latency: up to 1% of a tick.
                self.now = self.now.max(at + self.rand(PER_TICK / 100));
                self.timer = periodic.then_some((at + PER_TICK, true));
                let r = self.clock.fired(self.now, PER_TICK);
                self.apply(r);
                self.check();
                if let Some(deadline) = self.in_guest {
                    // The guest loop re-arms after a host interrupt.
                    let r = self
                        .clock
                        .guest(self.now, deadline, PER_TICK, MAX_QUIET, true);
                    self.apply(r);
                    assert!(self.timer.is_some(), "no timer armed for the guest at {}", self.now);
                }
            }
            self.now = self.now.max(t);
        }
        /// The ticks counted stay within a tick (and the latencies) of the
        /// time that passed: none lost, none early.
        fn check(&self) {
            let ideal = self.now / PER_TICK;
            assert!(
                self.ticks <= ideal + 1,
                "ticks {} ahead of time {} ({ideal} ticks)",
                self.ticks,
                self.now
            );
            assert!(
                self.ticks + 2 >= ideal,
                "ticks {} behind time {} ({ideal} ticks)",
                self.ticks,
                self.now
            );
        }
    }

    fn simulate(seed: u64) {
        let mut c = Cpu {
            now: 0,
            clock: TickClock::new(),
            timer: Some((PER_TICK, true)),
            ticks: 0,
            in_guest: None,
            rng: seed | 1,
        };
        for _ in 0..2_000 {
            // The VMM runs a while, then enters the guest, which runs until
            // an exit (kernel-handled ones are invisible here).
            let t = c.now + c.rand(3 * PER_TICK);
            c.run_until(t);
            c.check();
            let deadline = match c.rand(4) {
                0 => 0,
                // Already passed (a guest resumed after yielding its CPU).
                1 => c.now.saturating_sub(c.rand(PER_TICK)).max(1),
                _ => c.now + c.rand(3 * PER_TICK),
            };
            let alone = c.rand(8) != 0;
            let r = c.clock.guest(c.now, deadline, PER_TICK, MAX_QUIET, alone);
            c.apply(r);
            // A halted guest's wait sleeps until an interrupt: one must come.
            assert!(c.timer.is_some(), "no timer armed for the guest");
            c.in_guest = Some(deadline);
            let exit = c.now + c.rand(4 * PER_TICK);
            c.run_until(if deadline != 0 {
                exit.min(deadline.max(c.now))
            } else {
                exit
            });
            c.in_guest = None;
            let r = c.clock.host(c.now, PER_TICK);
            c.apply(r);
            c.check();
            if c.clock.mode() == Mode::Quiet {
                panic!("quiet after the guest left");
            }
        }
    }

    #[test]
    fn ticks_follow_time_through_guest_runs() {
        for seed in 1..200 {
            simulate(seed * 0x9e37_79b9);
        }
    }

    #[test]
    fn a_quiet_guest_gets_one_interrupt_per_deadline() {
        let mut k = TickClock::new();
        // Periodic until t = 10,000 (two ticks seen).
        let _ = k.fired(4_000, PER_TICK);
        let _ = k.fired(8_000, PER_TICK);
        // The guest's deadline is 3 ticks away: one interrupt, then.
        assert_eq!(
            k.guest(10_000, 22_000, PER_TICK, MAX_QUIET, true),
            (0, Arm::Once(12_000))
        );
        // It fires: the ticks due at 12,000, 16,000 and 20,000 are counted.
        assert_eq!(k.fired(22_000, PER_TICK), (3, Arm::Keep));
        // Back to the VMM: the next tick is due at 24,000, and each after.
        assert_eq!(k.host(22_100, PER_TICK), (0, Arm::Once(1_900)));
        assert_eq!(k.fired(24_010, PER_TICK), (1, Arm::Once(3_990)));
        assert_eq!(k.fired(27_990, PER_TICK), (0, Arm::Once(10)));
        assert_eq!(k.fired(28_000, PER_TICK), (1, Arm::Once(4_000)));
        assert_eq!(k.mode(), Mode::Ticking);
    }

    #[test]
    fn exits_within_one_deadline_leave_the_timer_alone() {
        let mut k = TickClock::new();
        let _ = k.fired(4_000, PER_TICK); // periodic: the next tick at 8,000
        assert_eq!(k.guest(5_000, 7_000, PER_TICK, MAX_QUIET, true), (0, Arm::Once(2_000)));
        // The VMM handles an exit and enters again with the same deadline;
        // the guest's interrupt comes before the tick: nothing written.
        assert_eq!(k.host(5_500, PER_TICK), (0, Arm::Keep));
        assert_eq!(k.guest(5_600, 7_000, PER_TICK, MAX_QUIET, true), (0, Arm::Keep));
        // Another deadline: armed again.
        assert_eq!(k.guest(5_700, 7_500, PER_TICK, MAX_QUIET, true), (0, Arm::Once(1_800)));
        // It fires; back in the VMM the tick at 8,000 is armed.
        assert_eq!(k.fired(7_500, PER_TICK), (0, Arm::Keep));
        assert_eq!(k.host(7_600, PER_TICK), (0, Arm::Once(400)));
        // A deadline after that tick: the guest runs to it, not to the tick.
        assert_eq!(k.guest(7_700, 9_000, PER_TICK, MAX_QUIET, true), (0, Arm::Once(1_300)));
    }

    #[test]
    fn a_far_deadline_still_wakes_the_cpu_within_max_quiet() {
        let mut k = TickClock::new();
        assert_eq!(
            k.guest(1_000, 1_000_000_000, PER_TICK, MAX_QUIET, true),
            (0, Arm::Once(MAX_QUIET))
        );
    }

    /// The first entry of a CPU that never ran a guest alone, with its
    /// deadline already passed: the one-shot armed for it replaces the
    /// periodic timer, so the clock must not stay periodic (the interrupt
    /// would be taken as a periodic tick and nothing re-armed).
    #[test]
    fn a_passed_deadline_from_periodic_mode_keeps_the_timer_alive() {
        let mut c = TickClock::new();
        let _ = c.fired(PER_TICK, PER_TICK); // a periodic tick
        let (_, arm) = c.guest(PER_TICK + 10, PER_TICK + 5, PER_TICK, MAX_QUIET, true);
        assert_eq!(arm, Arm::Once(1));
        assert_ne!(c.mode(), Mode::Periodic, "a one-shot is armed");
        let _ = c.fired(PER_TICK + 12, PER_TICK);
        // The guest loop returns to the VMM: the ticks need a timer again.
        let (_, arm) = c.host(PER_TICK + 20, PER_TICK);
        assert_eq!(arm, Arm::Once(2 * PER_TICK - (PER_TICK + 20)), "the next tick is armed");
    }

    #[test]
    fn other_work_keeps_the_ticks() {
        let mut k = TickClock::new();
        assert_eq!(
            k.guest(1_000, 30_000, PER_TICK, MAX_QUIET, false),
            (0, Arm::Keep)
        );
        assert_eq!(k.mode(), Mode::Periodic);
        // No deadline: quiet for at most MAX_QUIET.
        assert_eq!(
            k.guest(1_000, 0, PER_TICK, MAX_QUIET, true),
            (0, Arm::Once(MAX_QUIET))
        );
        // Work arrives: resume at the tick due (5,000).
        assert_eq!(
            k.guest(2_000, 0, PER_TICK, MAX_QUIET, false),
            (0, Arm::Once(3_000))
        );
        assert_eq!(k.mode(), Mode::Ticking);
    }
}
