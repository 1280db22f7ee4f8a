//! The atomics and the spin hint the locks are written against.
//!
//! Normally these are `core`'s. Under `--cfg loom` they are loom's model
//! atomics (every interleaving and every C11-permitted value is explored), and
//! under `--cfg shuttle` shuttle's (randomized / PCT schedules, sequentially
//! consistent). The lock code is the same text in all three builds.
//!
//! Under loom, atomics cannot be built in a `const` context; [`loom_const_fn!`]
//! makes a constructor `const fn` everywhere except under loom.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[cfg(all(shuttle, not(loom)))]
pub(crate) use shuttle::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[cfg(not(any(loom, shuttle)))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// One iteration of a busy-wait loop.
///
/// The models must be told about spinning: loom's and shuttle's `spin_loop`
/// yield to another thread, so a spin loop cannot starve the model's
/// scheduler or blow up its state space.
#[inline(always)]
pub(crate) fn spin_wait() {
    #[cfg(loom)]
    loom::hint::spin_loop();
    #[cfg(all(shuttle, not(loom)))]
    shuttle::hint::spin_loop();
    #[cfg(not(any(loom, shuttle)))]
    core::hint::spin_loop();
}

/// `$vis const fn $name() -> $ret $body`, except under loom, where it is a
/// plain `fn` (loom atomics have no `const` constructor).
macro_rules! loom_const_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident() -> $ret:ty $body:block) => {
        #[cfg(not(loom))]
        $(#[$m])*
        $vis const fn $name() -> $ret $body
        #[cfg(loom)]
        $(#[$m])*
        $vis fn $name() -> $ret $body
    };
}
pub(crate) use loom_const_fn;

/// `T` alone on a cache line (64 bytes), so that CPUs spinning on different
/// `CachePadded` values never share a line.
#[repr(C, align(64))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
