//! [`Padded`]: a value alone on its cache line(s).

/// `T` aligned (and so sized) to a 64-byte cache line, so that data written
/// by one CPU never shares a line with data another CPU writes (false
/// sharing: every write would pull the line away from the other CPU). Used
/// for the per-CPU and per-thread slots of the scheduler, queues and
/// channels. (64 bytes: the line size x86-64 processors report in CPUID
/// leaf 1, EBX bits 15:8, in 8-byte units.)
#[repr(align(64))]
#[derive(Default, Debug)]
pub struct Padded<T>(pub T);

impl<T> Padded<T> {
    pub const fn new(value: T) -> Self {
        Padded(value)
    }
}

impl<T> core::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> core::ops::DerefMut for Padded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Padded;

    #[test]
    fn one_line_each() {
        assert_eq!(core::mem::align_of::<Padded<u8>>(), 64);
        assert_eq!(core::mem::size_of::<[Padded<u32>; 2]>(), 128);
        let a = [Padded::new(1u64), Padded::new(2u64)];
        assert_eq!(&a[1] as *const _ as usize - &a[0] as *const _ as usize, 64);
        assert_eq!(*a[1], 2);
    }
}
