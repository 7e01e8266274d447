//! Locking that survives a panic elsewhere.
//!
//! A panic while a lock is held (in an application's callback, say) poisons
//! the mutex. Every piece of state behind one of our locks stays consistent
//! between statements, so the library takes the lock anyway instead of
//! spreading the panic to every later call.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Locks `mutex`, ignoring poisoning.
#[inline]
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `condvar` for up to `timeout`, ignoring poisoning.
pub fn wait_timeout<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>, timeout: Duration) -> MutexGuard<'a, T> {
    condvar.wait_timeout(guard, timeout).unwrap_or_else(|e| e.into_inner()).0
}
