//! Plumbing every exported function uses: the panic boundary, pointer and
//! string checks, and the one-time process hooks (panic output, fork guard).

use std::ffi::{c_char, CStr};
use std::sync::Once;

use crate::status::*;
use longconn_core::log::{self, Level};
use longconn_core::runtime;

/// Runs `$body` (which evaluates to an `lc_status`) so that no panic crosses
/// into C: a panic becomes `LC_STATUS_PANIC` with a last-error message.
macro_rules! ffi_guard {
    ($body:block) => {{
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> $crate::status::lc_status { $body })) {
            Ok(status) => status,
            Err(_) => $crate::status::fail(
                $crate::status::LC_STATUS_PANIC,
                "internal error caught at the C boundary; please report it",
            ),
        }
    }};
}

/// Borrows `*$ptr`, or returns `LC_STATUS_NULL_ARGUMENT` naming the argument.
macro_rules! deref_or_fail {
    ($ptr:expr, $name:literal) => {{
        // SAFETY: the caller promises a non-NULL pointer is valid for the call
        // (documented on every function); NULL is handled here.
        match unsafe { $ptr.as_ref() } {
            Some(r) => r,
            None => return $crate::status::fail($crate::status::LC_STATUS_NULL_ARGUMENT, concat!($name, " is NULL")),
        }
    }};
}

/// Writes `$value` through an out-pointer already checked for NULL.
macro_rules! write_out {
    ($ptr:expr, $value:expr) => {{
        // SAFETY: checked non-NULL by the caller of this macro; the C caller
        // promises it points to writable memory of the right type.
        unsafe { $ptr.write($value) }
    }};
}

/// Fails with `LC_STATUS_NULL_ARGUMENT` if an out-pointer is NULL.
macro_rules! require_out {
    ($ptr:expr, $name:literal) => {
        if $ptr.is_null() {
            return $crate::status::fail($crate::status::LC_STATUS_NULL_ARGUMENT, concat!($name, " is NULL"));
        }
    };
}

/// Reads a NUL-terminated UTF-8 string argument.
pub(crate) fn str_arg<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, lc_status> {
    if ptr.is_null() {
        return Err(fail(LC_STATUS_NULL_ARGUMENT, format!("{name} is NULL")));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string that
    // stays valid for the duration of the call.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str().map_err(|e| fail(LC_STATUS_INVALID_UTF8, format!("{name} is not valid UTF-8: {e}")))
}

/// Reads a `(pointer, length)` byte buffer; NULL is allowed only with length 0.
pub(crate) fn bytes_arg<'a>(ptr: *const u8, len: usize, name: &str) -> Result<&'a [u8], lc_status> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(fail(LC_STATUS_NULL_ARGUMENT, format!("{name} is NULL but its length is {len}")));
    }
    if len > isize::MAX as usize {
        return Err(fail(LC_STATUS_INVALID_ARGUMENT, format!("{name} length {len} is impossible")));
    }
    // SAFETY: non-NULL and the caller promises `len` readable bytes for the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// `count` values of `T` at `ptr` from C, as a slice for the call. NULL is
/// allowed only with a count of 0; a count whose bytes no allocation can
/// hold is refused before any slice is made.
pub(crate) fn slice_arg<'a, T>(ptr: *const T, count: usize, name: &str) -> Result<&'a [T], lc_status> {
    if count == 0 {
        return Ok(&[]);
    }
    check_slice(ptr.is_null(), count, std::mem::size_of::<T>(), name)?;
    // SAFETY: non-NULL, within isize::MAX bytes, and the caller promises
    // `count` readable values for the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
}

/// Like [`slice_arg`], for room C gives the library to write into.
pub(crate) fn slice_arg_mut<'a, T>(ptr: *mut T, count: usize, name: &str) -> Result<&'a mut [T], lc_status> {
    if count == 0 {
        return Ok(&mut []);
    }
    check_slice(ptr.is_null(), count, std::mem::size_of::<T>(), name)?;
    // SAFETY: non-NULL, within isize::MAX bytes, and the caller promises
    // room for `count` values, written only by us during the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, count) })
}

fn check_slice(null: bool, count: usize, size: usize, name: &str) -> Result<(), lc_status> {
    if null {
        return Err(fail(LC_STATUS_NULL_ARGUMENT, format!("{name} is NULL but its count is {count}")));
    }
    match count.checked_mul(size) {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(()),
        _ => Err(fail(LC_STATUS_INVALID_ARGUMENT, format!("{name} count {count} is impossible"))),
    }
}

/// A wait in milliseconds as the API takes it: negative means indefinitely.
pub(crate) fn timeout_from_ms(timeout_ms: i32) -> std::time::Duration {
    match u64::try_from(timeout_ms) {
        Ok(ms) => std::time::Duration::from_millis(ms),
        Err(_) => std::time::Duration::MAX,
    }
}

/// Frees a handle made with `Box::into_raw`, inside the panic boundary.
/// NULL is a no-op; in a fork child the handle is leaked, since its locks
/// may be held by threads that do not exist there.
///
/// # Safety
/// A non-NULL `handle` must come from `Box::into_raw` and not be freed before.
pub(crate) unsafe fn free_boxed<T>(handle: *mut T) {
    let _ = ffi_guard!({
        if !handle.is_null() && runtime::check_not_forked().is_ok() {
            // SAFETY: the caller guarantees `handle` came from Box::into_raw and is freed once.
            drop(unsafe { Box::from_raw(handle) });
        }
        LC_STATUS_OK
    });
}

/// Installs the process hooks once: panics go to the log callback instead of
/// stderr, and a fork child is marked so the library refuses to run there.
pub(crate) fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // This library's copy of std has its own hook, so the host is unaffected.
        std::panic::set_hook(Box::new(|info| {
            if log::enabled(Level::Error) {
                log::write(Level::Error, &format!("internal panic: {info}"));
            }
        }));
        // SAFETY: pthread_atfork only stores the handler; `mark_forked` is
        // async-signal-safe (a single atomic store).
        unsafe {
            libc::pthread_atfork(None, None, Some(on_fork_child));
        }
    });
}

extern "C" fn on_fork_child() {
    runtime::mark_forked();
}
