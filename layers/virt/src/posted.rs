//! Posted port I/O: byte OUTs the kernel records and IN answers it gives
//! without a round trip through the VMM.
//!
//! An exit to the user-level VMM costs a world switch each way plus the
//! VMM's own run; under an emulator that is several times an exit the
//! kernel handles (`cargo xtask bench vm`). Some device registers need no
//! immediate answer: a write to the 8259's mask or EOI register changes
//! nothing the guest can see before the VMM next decides what to inject. For
//! ports the VMM names (`vm_post`), the kernel queues such writes and the
//! VMM applies them, in order, before it handles the next exit it sees
//! (`Exit::posted`). A byte IN of a named port can be answered with a value
//! the VMM left for it, as long as no write was posted since (the VMM sets
//! it again once it has applied them): the guest reads what the device
//! would have answered, and an interrupt a write made deliverable is
//! delivered at that next exit, as a little interrupt latency.
//!
//! The kernel knows nothing of the devices: which ports, and which reads
//! are plain (no side effect, value known), is the VMM's to say.

use abi::vm::{POST_MAX, POST_PORTS, POST_READ, POST_WRITES};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Port {
    port: u16,
    mode: u8,
    /// The answer to a byte IN, while `read_valid`.
    value: u8,
    read_valid: bool,
}

/// What the kernel did with an I/O exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The write is queued for the VMM; step over the OUT.
    Posted,
    /// Complete the IN with this byte; step over it.
    Read(u8),
}

/// A VM's posted ports and the writes queued since the last exit to the VMM.
#[derive(Clone, Debug, Default)]
pub struct Posting {
    ports: [Port; POST_PORTS],
    ports_n: usize,
    queued: [u32; POST_MAX],
    queued_n: usize,
    /// This run has `RUN_NO_POST`: writes exit.
    pub writes_exit: bool,
}

/// Why `vm_post` refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostError {
    /// Port above 0xffff, mode with unknown bits, or a read value above 0xff.
    Invalid,
    /// All `POST_PORTS` entries are taken.
    Full,
}

/// `vm_post`'s argument check, before any VM is looked up (the system
/// call reports `Invalid` ahead of `NoSuchObject`).
pub fn check(port: u64, mode: u64, value: u64) -> Result<(), PostError> {
    if port > 0xffff || mode & !(POST_WRITES | POST_READ) != 0 || (mode & POST_READ != 0 && value > 0xff) {
        return Err(PostError::Invalid);
    }
    Ok(())
}

impl Posting {
    /// `vm_post(port, mode, value)`: mode 0 removes the port; with
    /// `POST_READ`, byte INs read `value` until the next posted write.
    pub fn set(&mut self, port: u64, mode: u64, value: u64) -> Result<(), PostError> {
        check(port, mode, value)?;
        let port = port as u16;
        let at = self.ports[..self.ports_n].iter().position(|p| p.port == port);
        if mode == 0 {
            if let Some(i) = at {
                self.ports.copy_within(i + 1..self.ports_n, i);
                self.ports_n -= 1;
            }
            return Ok(());
        }
        let i = match at {
            Some(i) => i,
            None if self.ports_n < POST_PORTS => {
                self.ports_n += 1;
                self.ports_n - 1
            }
            None => return Err(PostError::Full),
        };
        self.ports[i] = Port { port, mode: mode as u8, value: value as u8, read_valid: mode & POST_READ != 0 };
        Ok(())
    }

    /// An I/O exit (`string`: INS/OUTS): what the kernel does with it, or
    /// None for the VMM.
    pub fn on_io(&mut self, port: u32, size: u32, input: bool, string: bool, value: u64) -> Option<Outcome> {
        if string || size != 1 {
            return None;
        }
        let p = self.ports[..self.ports_n].iter().position(|p| u32::from(p.port) == port)?;
        let entry = self.ports[p];
        if input {
            return (entry.mode & POST_READ as u8 != 0 && entry.read_valid).then_some(Outcome::Read(entry.value));
        }
        if entry.mode & POST_WRITES as u8 == 0 || self.writes_exit || self.queued_n == POST_MAX {
            return None;
        }
        self.queued[self.queued_n] = (port << 8) | (value as u32 & 0xff);
        self.queued_n += 1;
        // What a read would answer may depend on any of the VMM's posted
        // ports: none is answered until the VMM has applied this write.
        for q in &mut self.ports[..self.ports_n] {
            q.read_valid = false;
        }
        Some(Outcome::Posted)
    }

    /// The queued writes, oldest first, handed over with an exit.
    pub fn take(&mut self) -> ([u32; POST_MAX], usize) {
        let r = (self.queued, self.queued_n);
        self.queued_n = 0;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_queue_in_order_and_reads_need_a_fresh_value() {
        let mut p = Posting::default();
        p.set(0x21, POST_WRITES | POST_READ, 0xfb).unwrap();
        p.set(0x20, POST_WRITES, 0).unwrap();
        // The read answer holds until a write is queued.
        assert_eq!(p.on_io(0x21, 1, true, false, 0), Some(Outcome::Read(0xfb)));
        assert_eq!(p.on_io(0x21, 1, false, false, 0xfa), Some(Outcome::Posted));
        assert_eq!(p.on_io(0x21, 1, true, false, 0), None, "a read after a queued write must exit");
        assert_eq!(p.on_io(0x20, 1, false, false, 0x160), Some(Outcome::Posted), "only the byte is kept");
        // A port with writes posted but no read answer: its reads exit.
        assert_eq!(p.on_io(0x20, 1, true, false, 0), None);
        let (q, n) = p.take();
        assert_eq!(&q[..n], &[0x21 << 8 | 0xfa, 0x20 << 8 | 0x60]);
        assert_eq!(p.take().1, 0, "taken once");
        // The VMM sets the answer again.
        p.set(0x21, POST_WRITES | POST_READ, 0xfa).unwrap();
        assert_eq!(p.on_io(0x21, 1, true, false, 0), Some(Outcome::Read(0xfa)));
    }

    #[test]
    fn only_byte_io_to_named_ports_and_only_while_there_is_room() {
        let mut p = Posting::default();
        p.set(0x21, POST_WRITES, 0).unwrap();
        assert_eq!(p.on_io(0x22, 1, false, false, 1), None, "not named");
        assert_eq!(p.on_io(0x21, 2, false, false, 1), None, "a word");
        assert_eq!(p.on_io(0x21, 1, false, true, 1), None, "OUTS");
        assert_eq!(p.on_io(0x21, 1, true, false, 0), None, "no read answer");
        for i in 0..POST_MAX as u64 {
            assert_eq!(p.on_io(0x21, 1, false, false, i), Some(Outcome::Posted));
        }
        assert_eq!(p.on_io(0x21, 1, false, false, 9), None, "the queue is full: the write exits");
        assert_eq!(p.take().1, POST_MAX);
        // A run with RUN_NO_POST: writes exit, reads are still answered.
        p.set(0x21, POST_WRITES | POST_READ, 0x12).unwrap();
        p.writes_exit = true;
        assert_eq!(p.on_io(0x21, 1, false, false, 1), None);
        assert_eq!(p.on_io(0x21, 1, true, false, 0), Some(Outcome::Read(0x12)));
        p.writes_exit = false;
        // Removed: exits again.
        p.set(0x21, 0, 0).unwrap();
        assert_eq!(p.on_io(0x21, 1, false, false, 1), None);
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut p = Posting::default();
        assert_eq!(p.set(0x10000, POST_WRITES, 0), Err(PostError::Invalid));
        assert_eq!(p.set(0x21, 4, 0), Err(PostError::Invalid));
        assert_eq!(p.set(0x21, POST_READ, 0x100), Err(PostError::Invalid));
        for port in 0..POST_PORTS as u64 {
            p.set(port, POST_WRITES, 0).unwrap();
        }
        assert_eq!(p.set(0x100, POST_WRITES, 0), Err(PostError::Full));
        // Changing a named port needs no new entry; removing one makes room.
        p.set(3, POST_WRITES | POST_READ, 7).unwrap();
        p.set(3, 0, 0).unwrap();
        p.set(0x100, POST_WRITES, 0).unwrap();
        assert_eq!(p.on_io(3, 1, false, false, 0), None);
        assert_eq!(p.on_io(0x100, 1, false, false, 0), Some(Outcome::Posted));
    }
}
