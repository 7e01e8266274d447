//! `lc_runtime`: the library's threads, shared by every client in the process.

use longconn_core::runtime;

use crate::boundary;
use crate::status::*;

/// Sets the thread counts of the library's shared runtime: `worker_threads`
/// I/O threads (default 2) and `callback_threads` threads that run
/// callbacks (default 1), both from 1 to 64.
///
/// Only before the first lc_client_connect() in the process; the callback
/// thread count applies only if no callback has been registered yet (the
/// callback threads start with the first registration). Any thread; also
/// from a callback. Returns LC_STATUS_OK, or LC_STATUS_INVALID_ARGUMENT (a count out of range),
/// LC_STATUS_ALREADY_STARTED (the runtime is already running), LC_STATUS_PANIC.
#[no_mangle]
pub extern "C" fn lc_runtime_configure(worker_threads: u32, callback_threads: u32) -> lc_status {
    ffi_guard!({
        boundary::init();
        status_from(runtime::configure(worker_threads as usize, callback_threads as usize))
    })
}
