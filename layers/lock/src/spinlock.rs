//! `SpinLock<T>`: data protected by a [`RawLock`], accessed through a guard.

use crate::{DefaultLock, RawLock};
use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

/// A value of type `T` that one CPU at a time may access, guarded by the raw
/// lock `L` (the ticket lock unless the crate feature `mcs` is on).
///
/// `lock` identifies the calling CPU with `machine::cpu::id()`. The kernel
/// holds spin locks with interrupts masked, so a guard never changes CPU.
///
/// `SpinLock<T, L>` is `Sync` iff `T: Send`; a guard is not `Send`:
/// ```compile_fail
/// fn sync<T: Sync>() {}
/// sync::<lock::SpinLock<std::rc::Rc<u32>>>();
/// ```
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<lock::SpinLockGuard<'static, u32>>();
/// ```
/// ```
/// fn sync<T: Sync>() {}
/// sync::<lock::SpinLock<std::cell::Cell<u32>>>();
/// ```
pub struct SpinLock<T: ?Sized, L: RawLock = DefaultLock> {
    raw: L,
    data: UnsafeCell<T>,
}

// SAFETY: the raw lock gives one CPU at a time access to `data` (RawLock's
// contract), so sharing the lock only ever hands `&mut T` to one thread at a
// time: that is sending `T`, hence `T: Send` (not `Sync`) is what is needed.
unsafe impl<T: ?Sized + Send, L: RawLock> Sync for SpinLock<T, L> {}
// `Send` comes automatically: `UnsafeCell<T>: Send` iff `T: Send`, `L: Send`.

/// Access to the data of a locked [`SpinLock`]; unlocks when dropped, as the
/// CPU that locked it.
///
/// Not `Send`: it must be dropped on the CPU that took it (for the MCS lock the
/// CPU names the queue node in use).
#[must_use = "if unused the SpinLock will immediately unlock"]
pub struct SpinLockGuard<'a, T: ?Sized, L: RawLock = DefaultLock> {
    lock: &'a SpinLock<T, L>,
    cpu: usize,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard only gives `&T`, like `&T` itself; so it may be
// shared between threads iff `T: Sync` (as `std::sync::MutexGuard`).
unsafe impl<T: ?Sized + Sync, L: RawLock> Sync for SpinLockGuard<'_, T, L> {}

impl<T, L: RawLock> SpinLock<T, L> {
    /// A new unlocked spin lock holding `value`.
    #[cfg(not(loom))]
    #[inline]
    pub const fn new(value: T) -> Self {
        SpinLock { raw: L::NEW, data: UnsafeCell::new(value) }
    }

    /// A new unlocked spin lock holding `value` (not `const` under loom).
    #[cfg(loom)]
    #[inline]
    pub fn new(value: T) -> Self {
        SpinLock { raw: L::new(), data: UnsafeCell::new(value) }
    }

    /// The protected value; no locking needed, the lock is owned.
    #[inline]
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized, L: RawLock> SpinLock<T, L> {
    /// Spin until this CPU holds the lock.
    #[inline]
    pub fn lock(&self) -> SpinLockGuard<'_, T, L> {
        let cpu = machine::cpu::id();
        self.raw.lock(cpu);
        SpinLockGuard { lock: self, cpu, _not_send: PhantomData }
    }

    /// Take the lock if nobody holds it or waits for it.
    #[inline]
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T, L>> {
        let cpu = machine::cpu::id();
        if self.raw.try_lock(cpu) {
            Some(SpinLockGuard { lock: self, cpu, _not_send: PhantomData })
        } else {
            None
        }
    }

    /// The protected value; no locking needed, the borrow is exclusive.
    #[inline]
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Whether some CPU holds the lock (a snapshot, for assertions and
    /// diagnostics only).
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The raw lock (for diagnostics and tests).
    #[inline]
    pub fn raw(&self) -> &L {
        &self.raw
    }
}

impl<T: Default, L: RawLock> Default for SpinLock<T, L> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: ?Sized, L: RawLock> fmt::Debug for SpinLock<T, L> {
    /// Does not lock (and so never blocks): shows whether the lock is held,
    /// not the data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpinLock").field("locked", &self.is_locked()).finish_non_exhaustive()
    }
}

impl<T: ?Sized, L: RawLock> SpinLockGuard<'_, T, L> {
    /// The CPU that holds the lock through this guard.
    #[inline]
    pub fn cpu(&self) -> usize {
        self.cpu
    }
}

impl<T: ?Sized, L: RawLock> Deref for SpinLockGuard<'_, T, L> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while `cpu` holds the lock, so no
        // other CPU accesses `data`; the borrow lives no longer than the guard.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized, L: RawLock> DerefMut for SpinLockGuard<'_, T, L> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow
        // through this guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized, L: RawLock> Drop for SpinLockGuard<'_, T, L> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard was made when `self.cpu` acquired the lock, and
        // the lock is released only here, once.
        unsafe { self.lock.raw.unlock(self.cpu) }
    }
}

impl<T: ?Sized + fmt::Debug, L: RawLock> fmt::Debug for SpinLockGuard<'_, T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display, L: RawLock> fmt::Display for SpinLockGuard<'_, T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
