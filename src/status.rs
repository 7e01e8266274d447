//! The status every fallible function returns, and the last error message.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use longconn_core::Error;

/// Result of a longconn call. Numbers are stable and grouped: 0-99 success
/// or partial success, 100-199 bad arguments, 200-299 client state,
/// 300-399 environment, 900 internal.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lc_status {
    /// Success.
    LC_STATUS_OK = 0,
    /// The wait ended before the operation completed (poll: no event; close: messages left unsent).
    LC_STATUS_TIMEOUT = 1,
    /// Started, and completes in the background (close called from a callback).
    LC_STATUS_IN_PROGRESS = 2,
    /// A required pointer argument was NULL.
    LC_STATUS_NULL_ARGUMENT = 100,
    /// An argument is out of range or inconsistent; see lc_last_error_message().
    LC_STATUS_INVALID_ARGUMENT = 101,
    /// A string argument is not valid UTF-8.
    LC_STATUS_INVALID_UTF8 = 102,
    /// The server URL cannot be parsed or uses an unsupported scheme.
    LC_STATUS_INVALID_URL = 103,
    /// The message is larger than the maximum frame size.
    LC_STATUS_MESSAGE_TOO_LARGE = 104,
    /// The outbox is full; the message was not queued. Retry later.
    LC_STATUS_QUEUE_FULL = 200,
    /// The client has been closed.
    LC_STATUS_CLOSED = 201,
    /// Already done once (connect), or too late (runtime settings after start).
    LC_STATUS_ALREADY_STARTED = 202,
    /// Called in a child process after fork(); the library cannot be used there.
    LC_STATUS_FORKED = 300,
    /// The library could not start a thread or create a descriptor.
    LC_STATUS_RUNTIME = 301,
    /// The outbox file (lc_config_set_outbox_path()) could not be opened,
    /// locked, read or written; see lc_last_error_message().
    LC_STATUS_STORAGE = 302,
    /// An internal error was caught at the boundary; please report it.
    LC_STATUS_PANIC = 900,
}

pub use lc_status::*;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error and returns `status`.
pub(crate) fn fail(status: lc_status, message: impl Into<String>) -> lc_status {
    let text = message.into().replace('\0', " ");
    let c = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
    status
}

/// This thread's last error message, as text.
pub(crate) fn last_error() -> String {
    LAST_ERROR.with(|e| e.borrow().to_string_lossy().into_owned())
}

pub(crate) fn status_of(error: &Error) -> lc_status {
    match error {
        Error::InvalidArgument(_) => LC_STATUS_INVALID_ARGUMENT,
        Error::InvalidUrl(_) => LC_STATUS_INVALID_URL,
        Error::MessageTooLarge { .. } => LC_STATUS_MESSAGE_TOO_LARGE,
        Error::QueueFull { .. } => LC_STATUS_QUEUE_FULL,
        Error::Closed => LC_STATUS_CLOSED,
        Error::AlreadyStarted(_) => LC_STATUS_ALREADY_STARTED,
        Error::Forked => LC_STATUS_FORKED,
        Error::Runtime(_) => LC_STATUS_RUNTIME,
        Error::Timeout(_) => LC_STATUS_TIMEOUT,
        Error::Storage(_) => LC_STATUS_STORAGE,
    }
}

/// Records a core error as this thread's last error; returns its status.
pub(crate) fn fail_with(error: Error) -> lc_status {
    fail(status_of(&error), error.to_string())
}

/// Maps a core result to a status.
pub(crate) fn status_from(result: Result<(), Error>) -> lc_status {
    match result {
        Ok(()) => LC_STATUS_OK,
        Err(e) => fail_with(e),
    }
}

/// The message of the last failed call on the calling thread ("" if none).
///
/// Never NULL. The string is owned by the library (never free it) and stays valid until the
/// next longconn call on the same thread. Any thread; callbacks too.
#[no_mangle]
pub extern "C" fn lc_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The name of a status as a static string, for example "LC_STATUS_QUEUE_FULL".
///
/// Never NULL; unknown numbers give "LC_STATUS_UNKNOWN". The string is
/// static: never free it. Any thread; callbacks too.
#[no_mangle]
pub extern "C" fn lc_status_name(status: u32) -> *const c_char {
    let name: &'static [u8] = match status {
        0 => b"LC_STATUS_OK\0",
        1 => b"LC_STATUS_TIMEOUT\0",
        2 => b"LC_STATUS_IN_PROGRESS\0",
        100 => b"LC_STATUS_NULL_ARGUMENT\0",
        101 => b"LC_STATUS_INVALID_ARGUMENT\0",
        102 => b"LC_STATUS_INVALID_UTF8\0",
        103 => b"LC_STATUS_INVALID_URL\0",
        104 => b"LC_STATUS_MESSAGE_TOO_LARGE\0",
        200 => b"LC_STATUS_QUEUE_FULL\0",
        201 => b"LC_STATUS_CLOSED\0",
        202 => b"LC_STATUS_ALREADY_STARTED\0",
        300 => b"LC_STATUS_FORKED\0",
        301 => b"LC_STATUS_RUNTIME\0",
        900 => b"LC_STATUS_PANIC\0",
        _ => b"LC_STATUS_UNKNOWN\0",
    };
    name.as_ptr().cast()
}

/// The library version, for example "0.1.0". Static (never free it); never
/// NULL. Any thread; callbacks too.
#[no_mangle]
pub extern "C" fn lc_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The library's version as a number, (major << 16) | (minor << 8) | patch:
/// the LONGCONN_VERSION_NUM of the header it was built with, so a program
/// can check at run time that the library it loaded is the one it was
/// compiled against (or newer). Any thread; callbacks too.
#[no_mangle]
pub extern "C" fn lc_version_number() -> u32 {
    const fn number(text: &str) -> u32 {
        let bytes = text.as_bytes();
        let mut value = 0;
        let mut i = 0;
        while i < bytes.len() {
            value = value * 10 + (bytes[i] - b'0') as u32;
            i += 1;
        }
        value
    }
    const NUMBER: u32 = (number(env!("CARGO_PKG_VERSION_MAJOR")) << 16)
        | (number(env!("CARGO_PKG_VERSION_MINOR")) << 8)
        | number(env!("CARGO_PKG_VERSION_PATCH"));
    NUMBER
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn every_status_has_its_own_name() {
        for s in [
            LC_STATUS_OK,
            LC_STATUS_TIMEOUT,
            LC_STATUS_IN_PROGRESS,
            LC_STATUS_NULL_ARGUMENT,
            LC_STATUS_INVALID_ARGUMENT,
            LC_STATUS_INVALID_UTF8,
            LC_STATUS_INVALID_URL,
            LC_STATUS_MESSAGE_TOO_LARGE,
            LC_STATUS_QUEUE_FULL,
            LC_STATUS_CLOSED,
            LC_STATUS_ALREADY_STARTED,
            LC_STATUS_FORKED,
            LC_STATUS_RUNTIME,
            LC_STATUS_PANIC,
        ] {
            // SAFETY: lc_status_name returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(lc_status_name(s as u32)) }.to_str().unwrap();
            assert_eq!(name, format!("{s:?}"));
        }
    }

    #[test]
    fn the_version_number_matches_the_version_text() {
        // SAFETY: lc_version returns a static NUL-terminated string.
        let text = unsafe { CStr::from_ptr(lc_version()) }.to_str().unwrap();
        let parts: Vec<u32> = text.split('.').map(|p| p.parse().unwrap()).collect();
        assert_eq!(lc_version_number(), (parts[0] << 16) | (parts[1] << 8) | parts[2]);
    }

    #[test]
    fn last_error_is_per_thread_and_never_null() {
        fail(LC_STATUS_CLOSED, "here");
        // SAFETY: the pointer is valid until the next call on this thread.
        let here = unsafe { CStr::from_ptr(lc_last_error_message()) }.to_str().unwrap().to_owned();
        assert_eq!(here, "here");
        let there = std::thread::spawn(|| {
            // SAFETY: as above, on the spawned thread.
            unsafe { CStr::from_ptr(lc_last_error_message()) }.to_bytes().len()
        })
        .join()
        .unwrap();
        assert_eq!(there, 0);
    }
}
