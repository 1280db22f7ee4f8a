//! Fixed-capacity byte queue used by the drivers (no heap).

/// A FIFO of at most `N` bytes.
pub struct Ring<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
}

impl<const N: usize> Ring<N> {
    pub const fn new() -> Self {
        Ring { buf: [0; N], head: 0, len: 0 }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn is_full(&self) -> bool {
        self.len == N
    }
    /// Append a byte; false (and nothing changes) when full.
    pub fn push(&mut self, b: u8) -> bool {
        if self.len == N {
            return false;
        }
        self.buf[(self.head + self.len) % N] = b;
        self.len += 1;
        true
    }
    pub fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(b)
    }
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Ring;

    #[test]
    fn fifo_and_bounds() {
        let mut r: Ring<3> = Ring::new();
        assert!(r.push(1) && r.push(2) && r.push(3));
        assert!(!r.push(4), "full ring refuses");
        assert_eq!(r.pop(), Some(1));
        assert!(r.push(4));
        assert_eq!([r.pop(), r.pop(), r.pop(), r.pop()], [Some(2), Some(3), Some(4), None]);
        assert!(r.is_empty());
    }
}
