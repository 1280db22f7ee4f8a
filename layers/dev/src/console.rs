//! The kernel console on COM1 and the `log` facade over it.
//!
//! Every line is formatted into a buffer on the stack first and queued with a
//! single serial write, so lines from different CPUs never interleave. Log
//! lines carry the time since calibration, the CPU and the level:
//! `[   1.234 cpu2 INFO ] message`.

use crate::serial::{PortIo, Serial, COM1};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

/// The console UART.
pub static CONSOLE: Serial<PortIo> = Serial::new(PortIo { base: COM1 });

/// TSC value taken as time zero for log stamps.
static EPOCH_TSC: AtomicU64 = AtomicU64::new(0);

/// Formats into a fixed buffer, turning `\n` into `\r\n`, flushing to the
/// console whenever the buffer fills (a long line is split, never cut).
struct LineBuf {
    buf: [u8; 256],
    len: usize,
    emergency: bool,
}

impl LineBuf {
    fn new(emergency: bool) -> Self {
        LineBuf { buf: [0; 256], len: 0, emergency }
    }
    fn push(&mut self, b: u8) {
        if self.len == self.buf.len() {
            self.flush();
        }
        self.buf[self.len] = b;
        self.len += 1;
    }
    fn flush(&mut self) {
        if self.emergency {
            CONSOLE.write_emergency(&self.buf[..self.len]);
        } else {
            CONSOLE.write(&self.buf[..self.len]);
        }
        self.len = 0;
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.push(b'\r');
            }
            self.push(b);
        }
        Ok(())
    }
}

/// Print formatted text to the console (used by [`print!`] and [`println!`]).
pub fn print_fmt(args: fmt::Arguments<'_>) {
    let mut line = LineBuf::new(false);
    let _ = line.write_fmt(args);
    line.flush();
}

/// Print bypassing the console lock if it is held (fatal-error reports).
pub fn print_emergency(args: fmt::Arguments<'_>) {
    let mut line = LineBuf::new(true);
    let _ = line.write_fmt(args);
    line.flush();
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::console::print_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Milliseconds since [`start_clock`], 0 before it.
pub fn uptime_ms() -> u64 {
    let per_ms = crate::lapic::tsc_per_ms();
    let epoch = EPOCH_TSC.load(Ordering::Relaxed);
    if per_ms == 0 || epoch == 0 {
        return 0;
    }
    machine::x86::rdtsc().saturating_sub(epoch) / per_ms
}

/// Take "now" as time zero for log stamps (after the TSC is calibrated).
pub fn start_clock() {
    EPOCH_TSC.store(machine::x86::rdtsc(), Ordering::Relaxed);
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let ms = uptime_ms();
        print_fmt(format_args!(
            "[{:>4}.{:03} cpu{} {:<5}] {}\n",
            ms / 1000,
            ms % 1000,
            machine::cpu::id(),
            r.level(),
            r.args()
        ));
    }

    fn flush(&self) {
        CONSOLE.flush();
    }
}

static LOGGER: Logger = Logger;

/// Install the console logger at `level`.
pub fn init_logger(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
