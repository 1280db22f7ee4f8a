//! Local APIC driver, xAPIC memory-mapped mode (Intel SDM Vol. 3A ch. 11).
//!
//! Every CPU has its own local APIC at the same physical address; the driver
//! therefore has no per-CPU state besides what the hardware holds, and the
//! calibration result (timer ticks and TSC ticks per millisecond) is shared.

use core::sync::atomic::{AtomicU64, Ordering};

/// Register offsets (SDM Vol. 3A Table 11-1).
mod reg {
    pub const ID: usize = 0x20;
    pub const TPR: usize = 0x80;
    pub const EOI: usize = 0xb0;
    pub const SVR: usize = 0xf0;
    pub const ESR: usize = 0x280;
    pub const ICR_LOW: usize = 0x300;
    pub const ICR_HIGH: usize = 0x310;
    pub const LVT_TIMER: usize = 0x320;
    pub const LVT_LINT0: usize = 0x350;
    pub const LVT_LINT1: usize = 0x360;
    pub const LVT_ERROR: usize = 0x370;
    pub const TIMER_INITIAL: usize = 0x380;
    pub const TIMER_CURRENT: usize = 0x390;
    pub const TIMER_DIVIDE: usize = 0x3e0;
}

const SVR_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER_PERIODIC: u32 = 1 << 17;
/// LVT delivery mode NMI (SDM Vol. 3A §11.5.1).
const LVT_NMI: u32 = 0b100 << 8;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_NMI: u32 = 0b100 << 8;
/// Destination shorthand "all excluding self" (SDM Vol. 3A §11.6.1).
const ICR_ALL_BUT_SELF: u32 = 0b11 << 18;
/// Timer divide configuration value for divide-by-16.
const DIVIDE_BY_16: u32 = 0b0011;

/// Vectors the kernel reserves for the local APIC.
pub const SPURIOUS_VECTOR: u8 = 0xff;
pub const ERROR_VECTOR: u8 = 0xfe;

static TIMER_TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);
/// Physical address of the local APICs (the same on every CPU).
static BASE_PHYS: AtomicU64 = AtomicU64::new(DEFAULT_PHYS);

/// Architectural default local APIC address (SDM Vol. 3A §11.4.1).
pub const DEFAULT_PHYS: u64 = 0xfee0_0000;

/// Record where the local APICs are (from the MADT), once at boot.
///
/// # Safety
/// `phys` is the local APIC base of this platform and it is mapped uncached in
/// the direct map; no CPU is using [`local`] concurrently.
pub unsafe fn set_base(phys: u64) {
    BASE_PHYS.store(phys, Ordering::Relaxed);
}

/// The calling CPU's local APIC.
pub fn local() -> LocalApic {
    // SAFETY: BASE_PHYS holds the architectural default or what `set_base`'s
    // caller vouched for; the boot page tables map 3-4 GiB uncached.
    unsafe { LocalApic::at(BASE_PHYS.load(Ordering::Relaxed)) }
}
static TSC_PER_MS: AtomicU64 = AtomicU64::new(0);

/// A handle on the local APIC registers, mapped at `base` (virtual).
#[derive(Clone, Copy)]
pub struct LocalApic {
    base: usize,
}

impl LocalApic {
    /// The local APIC at physical `phys`, through the kernel's direct map.
    ///
    /// # Safety
    /// `phys` is the local APIC's address (from the MADT) and it is mapped
    /// uncached in the direct map.
    pub const unsafe fn at(phys: u64) -> Self {
        LocalApic { base: machine::layout::phys_to_virt(phys) as usize }
    }

    fn read(&self, r: usize) -> u32 {
        // SAFETY: `base` maps this CPU's local APIC (constructor contract); `r`
        // is a register offset from the SDM table, aligned to 16 bytes.
        unsafe { core::ptr::read_volatile((self.base + r) as *const u32) }
    }

    fn write(&self, r: usize, v: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.base + r) as *mut u32, v) }
    }

    /// Enable this CPU's local APIC: software-enable with the spurious vector,
    /// accept all priorities, route errors to a vector, mask the legacy LINT0
    /// input (interrupts come through the I/O APIC), LINT1 as NMI.
    pub fn enable(&self) {
        // SAFETY: IA32_APIC_BASE exists on every CPU with a local APIC; setting
        // the global enable bit (11) keeps the base address.
        unsafe {
            let base = machine::x86::rdmsr(machine::x86::msr::IA32_APIC_BASE);
            machine::x86::wrmsr(machine::x86::msr::IA32_APIC_BASE, base | 1 << 11);
        }
        self.write(reg::SVR, SVR_ENABLE | SPURIOUS_VECTOR as u32);
        self.write(reg::TPR, 0);
        self.write(reg::LVT_LINT0, LVT_MASKED);
        self.write(reg::LVT_LINT1, LVT_NMI);
        self.write(reg::LVT_ERROR, ERROR_VECTOR as u32);
        self.write(reg::ESR, 0);
        self.write(reg::ESR, 0);
        self.write(reg::LVT_TIMER, LVT_MASKED);
        self.eoi();
    }

    /// This CPU's APIC id.
    pub fn id(&self) -> u32 {
        self.read(reg::ID) >> 24
    }

    /// Signal end of interrupt.
    pub fn eoi(&self) {
        self.write(reg::EOI, 0);
    }

    /// Read and clear the error status register.
    pub fn error_status(&self) -> u32 {
        self.write(reg::ESR, 0);
        self.read(reg::ESR)
    }

    fn send(&self, apic_id: u32, low: u32) {
        while self.read(reg::ICR_LOW) & ICR_DELIVERY_PENDING != 0 {
            machine::x86::pause();
        }
        self.write(reg::ICR_HIGH, apic_id << 24);
        self.write(reg::ICR_LOW, low);
        while self.read(reg::ICR_LOW) & ICR_DELIVERY_PENDING != 0 {
            machine::x86::pause();
        }
    }

    /// Fixed interrupt `vector` to the CPU with APIC id `apic_id`.
    pub fn send_ipi(&self, apic_id: u32, vector: u8) {
        self.send(apic_id, vector as u32);
    }

    /// NMI to every other CPU (used to stop them on a fatal error).
    pub fn send_nmi_all_but_self(&self) {
        self.send(0, ICR_ALL_BUT_SELF | ICR_NMI);
    }

    /// INIT (assert) to `apic_id`.
    pub fn send_init(&self, apic_id: u32) {
        self.send(apic_id, ICR_INIT | ICR_LEVEL_ASSERT);
    }

    /// STARTUP with the start page `vector`.
    pub fn send_startup(&self, apic_id: u32, vector: u8) {
        self.send(apic_id, ICR_STARTUP | ICR_LEVEL_ASSERT | vector as u32);
    }

    /// Measure the timer's and the TSC's rates against the PIT over two
    /// consecutive windows of `ms` milliseconds each (1 to
    /// [`pit::MAX_WINDOW_MS`]).
    ///
    /// The windows' ends are [`ClockSample`]s: the PIT's count and the
    /// timer's read between two TSC reads, the tightest of
    /// [`CALIBRATION_SAMPLES`] taken at each end. Only the first and last
    /// samples' brackets add error (a few µs of port and register reads
    /// over both windows: the middle one's cancels); the CPU may be away
    /// anywhere else (an emulator's vCPU thread descheduled on a busy host)
    /// without changing the result, unless it is away so long that the
    /// PIT's 16-bit counter wraps (55 ms): then the windows disagree (or
    /// the wait sees the count go back) and the measurement is taken again,
    /// up to [`CALIBRATION_TRIES`] times (the closest pair counts if none
    /// agrees). The earlier method, waiting for the PIT to run out between
    /// two TSC reads, counted the PIT's programming and the last poll as
    /// part of the window: under QEMU TCG every rate came out 0.6-1.3%
    /// high, and every tick, sleep and Linux guest clock ran that much
    /// slow.
    ///
    /// [`pit::MAX_WINDOW_MS`]: crate::pit::MAX_WINDOW_MS
    pub fn calibrate(&self, ms: u32) -> Calibration {
        use crate::pit;
        let window = pit::counts_in_ms(ms.clamp(1, pit::MAX_WINDOW_MS)) as u16;
        self.write(reg::TIMER_DIVIDE, DIVIDE_BY_16);
        self.write(reg::LVT_TIMER, LVT_MASKED);
        self.write(reg::TIMER_INITIAL, u32::MAX);
        pit::start_counting();
        let mut best: Option<Calibration> = None;
        for tries in 1..=CALIBRATION_TRIES {
            let a = self.tightest_sample();
            let b = wait_counts(a.pit, window).then(|| self.tightest_sample());
            let c = b.filter(|b| wait_counts(b.pit, window)).map(|_| self.tightest_sample());
            let (Some(b), Some(c)) = (b, c) else { continue };
            let Some(found) = two_windows(a, b, c) else { continue };
            if best.is_none_or(|kept| found.disagreement_ppm < kept.disagreement_ppm) {
                best = Some(Calibration { tries, ..found });
            }
            if found.disagreement_ppm <= WINDOWS_AGREE_PPM {
                break;
            }
        }
        pit::stop();
        self.write(reg::TIMER_INITIAL, 0);
        let c = best.unwrap_or(Calibration { timer_ticks_per_ms: 1, tsc_per_ms: 1, disagreement_ppm: u64::MAX, tries: CALIBRATION_TRIES });
        TIMER_TICKS_PER_MS.store(c.timer_ticks_per_ms, Ordering::Relaxed);
        TSC_PER_MS.store(c.tsc_per_ms, Ordering::Relaxed);
        c
    }

    /// The PIT's count and the timer's, bracketed by the TSC.
    fn sample(&self) -> ClockSample {
        let tsc_before = machine::x86::rdtsc();
        let pit = crate::pit::count();
        let timer = self.read(reg::TIMER_CURRENT);
        let tsc_after = machine::x86::rdtsc();
        ClockSample { tsc_before, tsc_after, pit, timer }
    }

    fn tightest_sample(&self) -> ClockSample {
        let mut best = self.sample();
        for _ in 1..CALIBRATION_SAMPLES {
            best = tighter(best, self.sample());
        }
        best
    }

    /// Periodic timer interrupt `vector` every `period_us` microseconds
    /// (requires an earlier [`calibrate`](Self::calibrate) on some CPU).
    pub fn start_periodic(&self, vector: u8, period_us: u64) {
        let per_ms = TIMER_TICKS_PER_MS.load(Ordering::Relaxed).max(1);
        let count = (per_ms * period_us / 1000).clamp(1, u32::MAX as u64) as u32;
        self.write(reg::TIMER_DIVIDE, DIVIDE_BY_16);
        self.write(reg::LVT_TIMER, vector as u32 | LVT_TIMER_PERIODIC);
        self.write(reg::TIMER_INITIAL, count);
    }

    /// One timer interrupt `vector` after `tsc_ticks` TSC ticks (one-shot
    /// mode, SDM Vol. 3A §11.5.4: LVT timer mode 00b; writing the initial
    /// count starts it), replacing a periodic timer. The delay is converted
    /// with the calibration, so it is as exact as that (a few µs); at least
    /// one timer tick, at most 2^32 - 1 of them (seconds at any rate).
    pub fn start_one_shot(&self, vector: u8, tsc_ticks: u64) {
        let per_ms = TIMER_TICKS_PER_MS.load(Ordering::Relaxed).max(1);
        let tsc_per_ms = TSC_PER_MS.load(Ordering::Relaxed).max(1);
        let count = (tsc_ticks as u128 * per_ms as u128 / tsc_per_ms as u128).clamp(1, u32::MAX as u128) as u32;
        self.write(reg::TIMER_DIVIDE, DIVIDE_BY_16);
        self.write(reg::LVT_TIMER, vector as u32);
        self.write(reg::TIMER_INITIAL, count);
    }

    /// Stop the timer.
    pub fn stop_timer(&self) {
        self.write(reg::LVT_TIMER, LVT_MASKED);
        self.write(reg::TIMER_INITIAL, 0);
    }
}

/// Each of the two calibration windows, ms (50 ms in all, under the PIT's
/// 55 ms wrap; the middle sample's error cancels, so two windows are as
/// precise as one of their sum).
pub const CALIBRATION_WINDOW_MS: u32 = 25;
/// Samples taken at each end of a calibration window; the tightest counts.
pub const CALIBRATION_SAMPLES: u32 = 8;
/// Measurements (two windows each) before the closest pair is taken.
pub const CALIBRATION_TRIES: u32 = 8;
/// Two windows whose rates differ by at most this many parts per million
/// agree (each window's own error is the samples' brackets: some tens of
/// ppm; a wrapped PIT count is off by tens of percent).
pub const WINDOWS_AGREE_PPM: u64 = 1_000;

/// Wait until the PIT has counted `window` down from `from`; false when the
/// count went back meanwhile (the CPU was away past a wrap of the counter:
/// the window's length is unknown).
fn wait_counts(from: u16, window: u16) -> bool {
    let mut last = 0u16;
    loop {
        let passed = from.wrapping_sub(crate::pit::count());
        if passed < last {
            return false;
        }
        if passed >= window {
            return true;
        }
        last = passed;
        machine::x86::pause();
    }
}

/// The rates over samples `a`, `b`, `c` (two consecutive windows), with
/// how far apart (`disagreement_ppm`: the larger of the TSC's and the
/// timer's) the two windows' own rates are; `None` when a window saw no PIT
/// count. The rates come from the sum of the windows' counts, each taken
/// modulo 2^16: the whole stretch from `a` to `c` may be longer than the
/// counter holds.
pub fn two_windows(a: ClockSample, b: ClockSample, c: ClockSample) -> Option<Calibration> {
    let (first, second) = (rates(a, b)?, rates(b, c)?);
    let apart = |x: u64, y: u64| x.abs_diff(y).saturating_mul(1_000_000) / x.max(y).max(1);
    let disagreement = apart(first.tsc_per_ms, second.tsc_per_ms).max(apart(first.timer_ticks_per_ms, second.timer_ticks_per_ms));
    let counts = a.pit.wrapping_sub(b.pit) as u128 + b.pit.wrapping_sub(c.pit) as u128;
    let timer = a.timer.wrapping_sub(b.timer) as u128 + b.timer.wrapping_sub(c.timer) as u128;
    let tsc = c.middle().wrapping_sub(a.middle()) as u128;
    Some(Calibration { timer_ticks_per_ms: per_ms(timer, counts), tsc_per_ms: per_ms(tsc, counts), disagreement_ppm: disagreement, tries: 1 })
}

/// `ticks` over `counts` of the PIT, per millisecond, rounded (at least 1).
fn per_ms(ticks: u128, counts: u128) -> u64 {
    // ticks / (counts / PIT_HZ s) / 1000 = ticks per ms.
    let d = counts.max(1) * 1000;
    ((ticks * crate::pit::PIT_HZ as u128 + d / 2) / d).clamp(1, u64::MAX as u128) as u64
}

/// The PIT's count (`pit`, counting down at [`crate::pit::PIT_HZ`]) and the
/// local APIC timer's current count (`timer`, counting down), both read
/// between TSC reads `tsc_before` and `tsc_after`: taken as read at the
/// bracket's middle, give or take half its width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSample {
    pub tsc_before: u64,
    pub tsc_after: u64,
    pub pit: u16,
    pub timer: u32,
}

impl ClockSample {
    fn width(&self) -> u64 {
        self.tsc_after.wrapping_sub(self.tsc_before)
    }

    fn middle(&self) -> u64 {
        self.tsc_before.wrapping_add(self.width() / 2)
    }
}

/// Of two samples, the one with the narrower bracket (the first on a tie).
pub fn tighter(a: ClockSample, b: ClockSample) -> ClockSample {
    if b.width() < a.width() { b } else { a }
}

/// The rates that samples `a` and then `b` imply, rounded to the nearest
/// tick per millisecond (at least 1); `None` when no PIT count passed
/// between them. Counts are taken modulo 2^16 (PIT) and 2^32 (timer).
pub fn rates(a: ClockSample, b: ClockSample) -> Option<Calibration> {
    let counts = a.pit.wrapping_sub(b.pit) as u128;
    if counts == 0 {
        return None;
    }
    Some(Calibration {
        timer_ticks_per_ms: per_ms(a.timer.wrapping_sub(b.timer) as u128, counts),
        tsc_per_ms: per_ms(b.middle().wrapping_sub(a.middle()) as u128, counts),
        disagreement_ppm: 0,
        tries: 1,
    })
}

/// Result of [`LocalApic::calibrate`].
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    pub timer_ticks_per_ms: u64,
    pub tsc_per_ms: u64,
    /// How far apart the two windows' rates were (ppm).
    pub disagreement_ppm: u64,
    /// The measurement that counted (1: the first).
    pub tries: u32,
}

/// TSC ticks per millisecond, 0 before calibration.
pub fn tsc_per_ms() -> u64 {
    TSC_PER_MS.load(Ordering::Relaxed)
}

/// Busy-wait `us` microseconds on the TSC (PIT-based before calibration).
pub fn delay_us(us: u64) {
    let per_ms = tsc_per_ms();
    if per_ms == 0 {
        crate::pit::wait_ms(us.div_ceil(1000).max(1) as u32);
        return;
    }
    let end = machine::x86::rdtsc() + per_ms * us / 1000;
    while machine::x86::rdtsc() < end {
        machine::x86::pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pit::PIT_HZ;

    /// TSC and timer rates of the simulated machine, ticks per ms.
    const TSC_RATE: u64 = 2_445_430;
    const TIMER_RATE: u64 = 62_500;

    /// The sample a CPU takes starting at `t_ns` whose reads take `width_ns`
    /// (the PIT and the timer read at the bracket's middle); the PIT
    /// started at `pit_start`.
    fn sample_at(t_ns: u64, width_ns: u64, pit_start: u16) -> ClockSample {
        read_at(t_ns, width_ns, width_ns / 2, pit_start)
    }

    /// As [`sample_at`], the PIT and the timer read `read_ns` into the bracket.
    fn read_at(t_ns: u64, width_ns: u64, read_ns: u64, pit_start: u16) -> ClockSample {
        let read = (t_ns + read_ns) as u128;
        let pit_passed = (read * PIT_HZ as u128 / 1_000_000_000) as u16;
        ClockSample {
            tsc_before: (t_ns as u128 * TSC_RATE as u128 / 1_000_000) as u64,
            tsc_after: ((t_ns + width_ns) as u128 * TSC_RATE as u128 / 1_000_000) as u64,
            pit: pit_start.wrapping_sub(pit_passed),
            timer: u32::MAX - (read * TIMER_RATE as u128 / 1_000_000) as u32,
        }
    }

    fn close(got: u64, want: u64, parts_per_million: u64) -> bool {
        got.abs_diff(want) * 1_000_000 <= want * parts_per_million
    }

    #[test]
    fn rates_recover_the_clocks_within_a_hundredth_of_a_percent() {
        // A 20 ms window with 10 µs brackets, the PIT wrapping through 0.
        let a = sample_at(1_000_000, 10_000, 1_000);
        let b = sample_at(21_000_000, 10_000, 1_000);
        let c = rates(a, b).unwrap();
        assert!(close(c.tsc_per_ms, TSC_RATE, 100), "{c:?}");
        assert!(close(c.timer_ticks_per_ms, TIMER_RATE, 100), "{c:?}");
    }

    #[test]
    fn time_away_between_the_samples_changes_nothing() {
        // The old method counted everything between its two TSC reads; a
        // sample is self-contained, so a CPU away before the window's end
        // (here 5 ms late to take it) only lengthens the window.
        let a = sample_at(0, 8_000, 0xffff);
        let on_time = rates(a, sample_at(20_000_000, 8_000, 0xffff)).unwrap();
        let late = rates(a, sample_at(25_000_000, 8_000, 0xffff)).unwrap();
        assert!(close(on_time.tsc_per_ms, TSC_RATE, 100) && close(late.tsc_per_ms, TSC_RATE, 100), "{on_time:?} {late:?}");
    }

    #[test]
    fn the_tightest_sample_is_kept() {
        // A sample the CPU was away in (away 3 ms after its reads) would
        // put the PIT's read at the wrong TSC; the narrower one wins.
        let away = read_at(0, 3_000_000, 2_000, 0xffff);
        let tight = sample_at(3_000_000, 5_000, 0xffff);
        assert_eq!(tighter(away, tight), tight);
        assert_eq!(tighter(tight, away), tight);
        let b = sample_at(23_000_000, 5_000, 0xffff);
        assert!(close(rates(tight, b).unwrap().tsc_per_ms, TSC_RATE, 100));
        // Taken as its middle, the wide one is off by far more.
        assert!(!close(rates(away, b).unwrap().tsc_per_ms, TSC_RATE, 1_000));
    }

    #[test]
    fn two_windows_sum_their_counts_and_a_wrapped_one_disagrees() {
        // Two 30 ms windows: 60 ms in all, more than the 16-bit PIT holds
        // (55 ms), still right, and the windows agree.
        let (a, b, c) = (sample_at(0, 5_000, 0x1234), sample_at(30_000_000, 5_000, 0x1234), sample_at(60_000_000, 5_000, 0x1234));
        let r = two_windows(a, b, c).unwrap();
        assert!(r.disagreement_ppm <= WINDOWS_AGREE_PPM, "{r:?}");
        assert!(close(r.tsc_per_ms, TSC_RATE, 100) && close(r.timer_ticks_per_ms, TIMER_RATE, 100), "{r:?}");
        // The CPU away for 60 ms in the second window: its count wrapped.
        let late = sample_at(90_000_000, 5_000, 0x1234);
        let r = two_windows(a, b, late).unwrap();
        assert!(r.disagreement_ppm > WINDOWS_AGREE_PPM, "{r:?}");
    }

    #[test]
    fn no_pit_count_between_the_samples_gives_none() {
        let a = sample_at(0, 100, 0xffff);
        assert!(rates(a, a).is_none());
    }
}
