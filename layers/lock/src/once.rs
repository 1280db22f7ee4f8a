//! A value set once at boot and read by every CPU afterwards (the kernel's
//! global tables: allocation table, platform description, ...).

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

pub struct Once<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written once, by the CPU that won the EMPTY->WRITING
// transition, before the Release store of READY; readers only form `&T`
// after an Acquire load of READY, so they see the finished value. `T: Sync`
// because many CPUs read it, `T: Send` because it may be dropped elsewhere.
unsafe impl<T: Send + Sync> Sync for Once<T> {}

impl<T> Default for Once<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Once<T> {
    pub const fn new() -> Self {
        Once { state: AtomicU8::new(EMPTY), value: UnsafeCell::new(MaybeUninit::uninit()) }
    }

    /// Set the value; `Err(v)` if it was set (or is being set) already.
    pub fn set(&self, v: T) -> Result<&T, T> {
        if self.state.compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Err(v);
        }
        // SAFETY: we won EMPTY->WRITING, so nobody else writes, and readers
        // wait for READY, which is stored only after this write.
        unsafe { (*self.value.get()).write(v) };
        self.state.store(READY, Ordering::Release);
        // SAFETY: just written and now READY; never written again.
        Ok(unsafe { (*self.value.get()).assume_init_ref() })
    }

    /// The value, once set.
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) == READY {
            // SAFETY: READY is stored after the value is fully written (see set).
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }
}

impl<T> Drop for Once<T> {
    fn drop(&mut self) {
        if *self.state.get_mut() == READY {
            // SAFETY: READY means initialised; we have exclusive access.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Once;

    #[test]
    fn set_once_then_read() {
        let o: Once<u32> = Once::new();
        assert!(o.get().is_none());
        assert_eq!(o.set(7).copied(), Ok(7));
        assert_eq!(o.set(8), Err(8));
        assert_eq!(o.get(), Some(&7));
    }

    #[test]
    fn racing_setters_one_wins() {
        let o: Once<usize> = Once::new();
        let wins: usize = std::thread::scope(|s| {
            let hs: std::vec::Vec<_> = (0..4).map(|i| { let o = &o; s.spawn(move || o.set(i).is_ok() as usize) }).collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
        assert!(o.get().is_some());
    }
}
