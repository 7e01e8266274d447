//! The one tokio runtime shared by every client in the process.
//!
//! Built lazily on first use with 2 worker threads by default (named
//! `longconn-io`), so ten thousand clients do not mean ten thousand threads.
//! It is never shut down: the library cannot be unloaded once started.
//! After `fork()` the child has none of these threads, so every entry point
//! reports [`Error::Forked`] there instead of hanging.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio::runtime::Runtime;

use crate::error::Error;
use crate::lock::lock;

pub const DEFAULT_WORKER_THREADS: usize = 2;
pub const DEFAULT_CALLBACK_THREADS: usize = 1;
const MAX_THREADS: usize = 64;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Serializes building the runtime, so a failed build can be retried.
static BUILD: Mutex<()> = Mutex::new(());
static WORKER_THREADS: AtomicUsize = AtomicUsize::new(DEFAULT_WORKER_THREADS);
static CALLBACK_THREADS: AtomicUsize = AtomicUsize::new(DEFAULT_CALLBACK_THREADS);
static STARTED: AtomicBool = AtomicBool::new(false);
static FORKED: AtomicBool = AtomicBool::new(false);

/// Sets thread counts; only before the first client starts the runtime.
pub fn configure(worker_threads: usize, callback_threads: usize) -> Result<(), Error> {
    if !(1..=MAX_THREADS).contains(&worker_threads) || !(1..=MAX_THREADS).contains(&callback_threads) {
        return Err(Error::InvalidArgument(format!("thread counts must be between 1 and {MAX_THREADS}")));
    }
    let _guard = lock(&BUILD);
    if STARTED.load(Ordering::Acquire) {
        return Err(Error::AlreadyStarted(
            "the runtime is already running; configure it before creating the first client",
        ));
    }
    WORKER_THREADS.store(worker_threads, Ordering::Relaxed);
    CALLBACK_THREADS.store(callback_threads, Ordering::Relaxed);
    Ok(())
}

pub fn callback_threads() -> usize {
    CALLBACK_THREADS.load(Ordering::Relaxed)
}

/// Marks the process as a fork child; called from the fork handler.
pub fn mark_forked() {
    FORKED.store(true, Ordering::Relaxed);
}

/// Fails in a fork child. Cheap enough for every entry point.
#[inline]
pub fn check_not_forked() -> Result<(), Error> {
    if FORKED.load(Ordering::Relaxed) {
        return Err(Error::Forked);
    }
    Ok(())
}

thread_local! {
    /// Set on the runtime's own threads.
    static ON_IO_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is one of the I/O threads.
pub fn on_io_thread() -> bool {
    ON_IO_THREAD.with(|on| on.get())
}

/// The shared runtime, started on first use.
pub fn get() -> Result<&'static Runtime, Error> {
    check_not_forked()?;
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let _guard = lock(&BUILD);
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS.load(Ordering::Relaxed))
        .thread_name("longconn-io")
        .on_thread_start(|| ON_IO_THREAD.with(|on| on.set(true)))
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start the I/O threads: {e}")))?;
    STARTED.store(true, Ordering::Release);
    Ok(RUNTIME.get_or_init(|| rt))
}
