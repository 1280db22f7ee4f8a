//! What the driver, its workers and its watchdog send each other over IPC
//! (little-endian u64 words), and the conventions the host-side spec
//! (`spec::model`) shares: channel numbers, buffer sizes, the fill pattern.

/// The driver receives answers, hellos and ticks here.
pub const DRIVER_CHAN: u64 = 127;
/// Worker `i` receives its commands here.
pub fn cmd_chan(i: u64) -> u64 {
    DRIVER_CHAN - 1 - i
}
/// Most workers in a trace.
pub const MAX_WORKERS: u64 = 26;
/// The scratch buffer (`m<off>` arguments) and the read-only array (`r<off>`).
pub const BUF_LEN: usize = 12288;
pub const RO_LEN: usize = 8192;

pub const CMD: u64 = 0x434d_4400;
pub const REPORT: u64 = 0x5245_5000;
pub const HELLO: u64 = 0x4845_4c00;
pub const TICK: u64 = 0x5449_4300;

/// Argument kinds (2 bits each in a command's tag word).
pub const ARG_VAL: u64 = 0;
pub const ARG_BUF: u64 = 1;
pub const ARG_RO: u64 = 2;

/// Fill kinds.
pub const FILL_PATTERN: u64 = 1;
pub const FILL_BYTES: u64 = 2;

/// Byte `i` of a pattern fill with `seed` (spec::rng::pattern_byte).
pub fn pattern_byte(seed: u64, i: u64) -> u8 {
    let x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i.wrapping_mul(0xd6e8_feb8_6659_fd93));
    (x >> 56) as u8 ^ (i as u8)
}

/// Word `i` of a message.
pub fn word(m: &[u8], i: usize) -> u64 {
    m.get(i * 8..i * 8 + 8).map_or(0, |b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
}

pub fn put(m: &mut [u8], i: usize, v: u64) {
    if let Some(b) = m.get_mut(i * 8..i * 8 + 8) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}
