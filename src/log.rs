//! Routing library log lines to a C callback.

use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use crate::boundary;
use crate::status::*;
use longconn_core::log::{self, Level, LogSink};

/// Receives a log line. `level`: 1 error, 2 warning, 3 info, 4 debug.
/// `message` is borrowed for the duration of the call.
pub type lc_log_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, level: u32, message: *const c_char)>;

struct CLogSink {
    callback: unsafe extern "C" fn(*mut c_void, u32, *const c_char),
    user_data: *mut c_void,
}

// SAFETY: the application promises (documented on lc_set_log_callback) that
// the callback and user_data may be used from any library thread.
unsafe impl Send for CLogSink {}
// SAFETY: as above.
unsafe impl Sync for CLogSink {}

impl LogSink for CLogSink {
    fn log(&self, level: Level, message: &str) {
        let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the application registered this function for exactly this use.
        unsafe { (self.callback)(self.user_data, level as u32, text.as_ptr()) }
    }
}

/// Installs the process-wide log callback; NULL removes it.
///
/// The library prints nothing to stdout or stderr; without a callback, logs
/// are discarded. `max_level` is the most verbose level delivered (1 error
/// to 4 debug). The callback runs on library threads, possibly on several at
/// once: it must be thread-safe, return quickly, and must not call longconn
/// functions. `user_data` is passed through untouched. Replacing or removing
/// the callback waits for calls of the old one in progress: once this
/// returns, the old callback is not running on any thread.
///
/// `callback`: may be NULL. `user_data`: passed through untouched, never
/// dereferenced by the library; it must stay usable from any thread until
/// the callback is replaced. Any thread; also from an event callback (not
/// from the log callback itself). Returns LC_STATUS_OK, or
/// LC_STATUS_INVALID_ARGUMENT for a level outside 1..4, LC_STATUS_PANIC.
#[no_mangle]
pub extern "C" fn lc_set_log_callback(callback: lc_log_cb, user_data: *mut c_void, max_level: u32) -> lc_status {
    ffi_guard!({
        boundary::init();
        let level = match max_level {
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            _ => return fail(LC_STATUS_INVALID_ARGUMENT, "log level must be 1 (error) to 4 (debug)"),
        };
        let sink = callback.map(|callback| Arc::new(CLogSink { callback, user_data }) as Arc<dyn LogSink>);
        log::set_sink(sink, level);
        LC_STATUS_OK
    })
}
