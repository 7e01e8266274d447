//! The I/O threads shared by every client in the process.
//!
//! Started lazily on first use: 2 threads by default (named `longconn-io`),
//! so ten thousand clients do not mean ten thousand threads. Each thread
//! runs its own single-threaded tokio runtime, and a client's connection
//! lives on one of them for its whole life (the one holding the fewest
//! clients when it connects). Nothing moves a task between threads, so a
//! socket becoming readable, the connection's writer being woken by a send
//! and its timers firing never wake a second I/O thread: with tokio's
//! work-stealing scheduler each of those could (measured: 2.8 against 1.0
//! context switches per 1,000 echoed messages, docs/BENCHMARKS.md).
//! The threads are never stopped: the library cannot be unloaded once
//! started. After `fork()` the child has none of these threads, so every
//! entry point reports [`Error::Forked`] there instead of hanging.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::Handle;

use crate::error::Error;
use crate::lock::lock;
use crate::log::{log_at, Level};

pub const DEFAULT_WORKER_THREADS: usize = 2;
pub const DEFAULT_CALLBACK_THREADS: usize = 1;
const MAX_THREADS: usize = 64;

static IO_THREADS: OnceLock<Box<[IoThread]>> = OnceLock::new();
/// Serializes starting the threads, so a failed start can be retried.
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

/// One I/O thread: its runtime's handle and how many connections it runs.
struct IoThread {
    handle: Handle,
    connections: AtomicUsize,
}

/// A connection's task, counted on its thread until it ends. A struct, not
/// an `async` block around the task: such a block keeps room for the task
/// twice (measured: 3.7 KiB more per idle connection).
struct Placed<F> {
    task: Pin<Box<F>>,
    thread: &'static IoThread,
}

impl<F: Future<Output = ()>> Future for Placed<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.task.as_mut().poll(cx)
    }
}

impl<F> Drop for Placed<F> {
    fn drop(&mut self) {
        self.thread.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts the I/O threads on first use.
fn io_threads() -> Result<&'static [IoThread], Error> {
    check_not_forked()?;
    if let Some(threads) = IO_THREADS.get() {
        return Ok(threads);
    }
    let _guard = lock(&BUILD);
    if let Some(threads) = IO_THREADS.get() {
        return Ok(threads);
    }
    let count = WORKER_THREADS.load(Ordering::Relaxed);
    let mut threads = Vec::with_capacity(count);
    for _ in 0..count {
        match start_io_thread() {
            Ok(thread) => threads.push(thread),
            // Threads already running stay in use: they could not be stopped anyway.
            Err(e) if threads.is_empty() => return Err(e),
            Err(e) => {
                log_at!(Level::Warn, "{e}: running {} of {count} I/O threads", threads.len());
                break;
            }
        }
    }
    STARTED.store(true, Ordering::Release);
    Ok(IO_THREADS.get_or_init(|| threads.into_boxed_slice()))
}

/// One I/O thread running its own runtime until the process ends.
fn start_io_thread() -> Result<IoThread, Error> {
    let failed = |e: std::io::Error| Error::Runtime(format!("cannot start the I/O threads: {e}"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(failed)?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("longconn-io".into())
        .spawn(move || {
            ON_IO_THREAD.with(|on| on.set(true));
            rt.block_on(std::future::pending::<()>())
        })
        .map_err(failed)?;
    Ok(IoThread { handle, connections: AtomicUsize::new(0) })
}

/// Starts the I/O threads if they are not running yet.
pub fn start() -> Result<(), Error> {
    io_threads().map(drop)
}

/// Runs a connection's task on the I/O thread with the fewest connections,
/// for the task's whole life.
pub fn spawn(task: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
    let threads = io_threads()?;
    let thread = threads.iter().min_by_key(|t| t.connections.load(Ordering::Relaxed)).expect("at least one I/O thread");
    thread.connections.fetch_add(1, Ordering::Relaxed);
    thread.handle.spawn(Placed { task: Box::pin(task), thread });
    Ok(())
}
