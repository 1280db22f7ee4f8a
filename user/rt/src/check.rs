//! Checksummed test messages: the content of message number `seq` is a
//! function of `seq` and its length, so every receiver can verify every byte
//! without being told what to expect; messages of 16 bytes or more also
//! carry their sequence number and an FNV-1a checksum.
//!
//! Layout (`len ≥ 16`): `seq` (u64 LE), pattern bytes, FNV-1a-64 of all the
//! bytes before it (u64 LE). Shorter messages are pattern bytes only.

use core::fmt;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// Lengths that hit the edges first (1 byte, a whole 4096-byte message,
/// around the header and word sizes), then pseudo-random ones.
const EDGES: [usize; 16] = [1, 4096, 2, 4095, 7, 8, 15, 16, 17, 63, 64, 65, 2047, 2048, 2049, 4093];

/// The length of message `seq`: always in `1..=4096`.
pub fn message_len(seq: u64) -> usize {
    match EDGES.get(seq as usize) {
        Some(&l) => l,
        None => 1 + ((seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % 4096) as usize,
    }
}

fn pattern(seq: u64, i: usize) -> u8 {
    let s = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56;
    (s as u8) ^ (i as u8).wrapping_mul(13) ^ ((i >> 8) as u8).wrapping_add(0x5a)
}

/// Fill `buf` with message `seq` (any length).
pub fn fill(seq: u64, buf: &mut [u8]) {
    let n = buf.len();
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern(seq, i);
    }
    if n >= 16 {
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        let h = fnv1a(&buf[..n - 8]);
        buf[n - 8..].copy_from_slice(&h.to_le_bytes());
    }
}

/// Why a message did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The length differs from `message_len(seq)` (when the caller asked).
    Length { got: usize, want: usize },
    /// The embedded sequence number differs.
    Seq { got: u64 },
    /// The embedded checksum does not match the bytes.
    Checksum,
    /// A pattern byte differs.
    Byte { at: usize },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Length { got, want } => write!(f, "length {got}, expected {want}"),
            Mismatch::Seq { got } => write!(f, "carries sequence number {got}"),
            Mismatch::Checksum => f.write_str("checksum mismatch"),
            Mismatch::Byte { at } => write!(f, "byte {at} differs"),
        }
    }
}

/// Check that `buf` is message `seq` (of whatever length it has).
pub fn verify(seq: u64, buf: &[u8]) -> Result<(), Mismatch> {
    let n = buf.len();
    let body = if n >= 16 {
        let got = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]));
        if got != seq {
            return Err(Mismatch::Seq { got });
        }
        let sum = u64::from_le_bytes(buf[n - 8..].try_into().unwrap_or([0; 8]));
        if sum != fnv1a(&buf[..n - 8]) {
            return Err(Mismatch::Checksum);
        }
        8..n - 8
    } else {
        0..n
    };
    for i in body {
        if buf[i] != pattern(seq, i) {
            return Err(Mismatch::Byte { at: i });
        }
    }
    Ok(())
}

/// Check that `buf` is message `seq` with the length [`message_len`] gives.
pub fn verify_len(seq: u64, buf: &[u8]) -> Result<(), Mismatch> {
    let want = message_len(seq);
    if buf.len() != want {
        return Err(Mismatch::Length { got: buf.len(), want });
    }
    verify(seq, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn lengths_cover_the_range() {
        let mut seen_min = usize::MAX;
        let mut seen_max = 0;
        for s in 0..10_000 {
            let l = message_len(s);
            assert!((1..=4096).contains(&l));
            seen_min = seen_min.min(l);
            seen_max = seen_max.max(l);
        }
        assert_eq!((seen_min, seen_max), (1, 4096));
        // The pseudo-random part varies.
        assert!((100..120).map(message_len).collect::<std::collections::BTreeSet<_>>().len() > 15);
    }

    #[test]
    fn round_trip_and_every_corruption_is_caught() {
        for seq in 0..64u64 {
            let n = message_len(seq);
            let mut buf = std::vec![0u8; n];
            fill(seq, &mut buf);
            assert_eq!(verify(seq, &buf), Ok(()));
            assert_eq!(verify_len(seq, &buf), Ok(()));
            for at in [0, n / 2, n - 1] {
                let mut bad = buf.clone();
                bad[at] ^= 0x01;
                assert!(verify(seq, &bad).is_err(), "seq {seq} len {n} flip at {at}");
            }
            if n > 1 {
                assert!(verify_len(seq, &buf[..n - 1]).is_err());
            }
            assert!(verify(seq + 1, &buf).is_err() || n < 2, "seq {seq} passes as {}", seq + 1);
        }
    }
}
