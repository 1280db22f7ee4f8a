//! Console input for processes: `console_read` blocks until the serial
//! receive interrupt has put bytes in the ring. Readers are served in FIFO
//! order; the interrupt handler wakes the oldest under the same lock a reader
//! holds while it checks for input, so no wake-up is lost.

use dev::console::CONSOLE;
use lock::{Once, SpinLock};
use proc::wait::{Sched, RESULTS};
use thread::SCHED;

/// The readers' wait queue (allocated at boot).
static READERS: Once<usize> = Once::new();
static GATE: SpinLock<()> = SpinLock::new(());

pub fn init() -> Result<(), abi::Error> {
    let q = Sched::alloc_queue(&SCHED)?;
    let _ = READERS.set(q);
    Ok(())
}

/// Take up to `buf.len()` bytes of input, blocking until there is at least one.
pub fn read(buf: &mut [u8]) -> Result<usize, abi::Error> {
    let Some(&q) = READERS.get() else { return Err(abi::Error::NotSupported) };
    loop {
        let g = GATE.lock();
        let mut n = 0;
        while n < buf.len() {
            match CONSOLE.read_byte() {
                Some(b) => {
                    buf[n] = b;
                    n += 1;
                }
                None => break,
            }
        }
        if n > 0 {
            return Ok(n);
        }
        let me = Sched::current(&SCHED);
        RESULTS.arm(me);
        Sched::block(&SCHED, q, g);
        if RESULTS.get(me).is_none() {
            return Err(abi::Error::PeerGone); // interrupted
        }
    }
}

/// From the serial interrupt: input arrived, wake the oldest reader.
pub fn input_arrived() {
    let Some(&q) = READERS.get() else { return };
    let _g = GATE.lock();
    if let Some(t) = Sched::take(&SCHED, q) {
        RESULTS.set(t, Ok(0), 0);
        Sched::wake(&SCHED, t);
    }
}
