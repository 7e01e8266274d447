//! Delivery: how events reach the application, by callbacks on a callback
//! thread or by polling the inbox.
//!
//! By default callbacks never run on a tokio worker, so a slow or blocking
//! callback cannot stall I/O. A small pool of threads named `longconn-cb` (1
//! by default) serves all clients; each client is pinned to one thread, which
//! keeps its callbacks serialized and in order. The callback loop of a
//! client is [`Delivery::dispatch`].
//!
//! A client configured with `callbacks_on_io_thread` runs them instead on
//! the I/O thread that queued them, at once, when no other thread is running
//! that client's callbacks (otherwise they go to its callback thread as
//! usual): one thread hand-off less per read, for callbacks that return
//! quickly and never block.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::{Duration, Instant};

use super::inbox::{EventQueue, Queued};
use super::lifecycle::{Lifecycle, State};
use super::spin::SpinThenPark;
use crate::error::Error;
use crate::event::{Event, MessageBatch};
use crate::lock::lock;
use crate::runtime;

/// Receives a client's events on a callback thread, with the client's
/// state at the time of delivery.
pub trait EventHandler: Send + Sync {
    fn on_event(&self, event: &Event, state: State);

    /// A received message, borrowed for the call; `text` for a WebSocket
    /// text message. The default hands a copy to [`EventHandler::on_event`];
    /// override it to avoid the copy.
    fn on_message(&self, payload: &[u8], text: bool, state: State) {
        let payload = bytes::Bytes::copy_from_slice(payload);
        self.on_event(&if text { Event::Text(payload) } else { Event::Message(payload) }, state);
    }

    /// Whether [`EventHandler::on_messages`] takes received messages, a
    /// batch per call, instead of [`EventHandler::on_message`] one by one.
    fn takes_batches(&self) -> bool {
        false
    }

    /// The messages of one read (all text or all binary), borrowed for the
    /// call; used when [`EventHandler::takes_batches`] says so.
    fn on_messages(&self, messages: &MessageBatch, state: State) {
        for message in messages.iter() {
            self.on_message(message, messages.is_text(), state);
        }
    }
}

thread_local! {
    /// Id of the client whose callbacks this thread is running, 0 if none.
    static DISPATCHING: Cell<u64> = const { Cell::new(0) };
}

/// Whether the calling thread is one of the library's callback threads
/// (those serve every client, so they must never block waiting).
pub fn on_callback_thread() -> bool {
    DISPATCHING.with(|d| d.get()) != 0
}

/// How one client's events reach the application.
pub struct Delivery {
    /// The client's id: it picks the callback thread.
    id: u64,
    /// Events and messages waiting for a callback or for `poll`.
    pub inbox: EventQueue,
    /// For the state handed to handlers with each event.
    lifecycle: Arc<Lifecycle>,
    handler: Mutex<Option<Arc<dyn EventHandler>>>,
    /// Mirrors `handler.is_some()` so emitting needs no lock.
    has_handler: AtomicBool,
    /// Queued on a callback thread and not yet drained.
    scheduled: AtomicBool,
    /// The handle is gone: no callback may run any more.
    detached: AtomicBool,
    /// Held while callbacks run, so a detach from another thread can wait them out.
    running: Mutex<()>,
    /// The application's connect hook, and a lock held while it runs
    /// (apart from `running`: it runs on a blocking thread, not a callback
    /// thread, so that a slow hook holds up no other client).
    connect_hook: Mutex<Option<Arc<dyn crate::hook::ConnectHook>>>,
    hook_running: Mutex<()>,
    /// Run callbacks on the I/O thread that queues them, when it can.
    on_io_thread: bool,
}

impl Delivery {
    pub fn new(id: u64, inbox: EventQueue, lifecycle: Arc<Lifecycle>, on_io_thread: bool) -> Delivery {
        Delivery {
            on_io_thread,
            id,
            inbox,
            lifecycle,
            handler: Mutex::new(None),
            has_handler: AtomicBool::new(false),
            scheduled: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            running: Mutex::new(()),
            connect_hook: Mutex::new(None),
            hook_running: Mutex::new(()),
        }
    }

    /// Hands events to callbacks or, without a handler, to `poll` and the event fd.
    pub fn emit(self: &Arc<Self>, events: impl IntoIterator<Item = Event>) {
        let to_callbacks = self.has_handler.load(Ordering::Acquire);
        self.inbox.push(events, !to_callbacks);
        self.schedule_if(to_callbacks);
    }

    pub fn emit_one(self: &Arc<Self>, event: Event) {
        self.emit(std::iter::once(event));
    }

    /// Hands received messages to callbacks or to `poll`.
    pub fn emit_messages(self: &Arc<Self>, batch: MessageBatch) {
        let to_callbacks = self.has_handler.load(Ordering::Acquire);
        self.inbox.push_messages(batch, !to_callbacks);
        self.schedule_if(to_callbacks);
    }

    fn schedule_if(self: &Arc<Self>, to_callbacks: bool) {
        if !to_callbacks || self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.on_io_thread && runtime::on_io_thread() {
            let running = match self.running.try_lock() {
                Ok(running) => Some(running),
                Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                // Another thread runs this client's callbacks: they go there, in order.
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(running) = running {
                self.scheduled.store(false, Ordering::Release);
                return self.run_callbacks(running);
            }
        }
        schedule(self.id as usize, self.clone());
    }

    /// Whether events go to a handler (else they wait for `poll`).
    pub fn has_handler(&self) -> bool {
        self.has_handler.load(Ordering::Acquire)
    }

    /// Delivers events to `handler` on a callback thread; `None` returns to poll mode.
    pub fn set_handler(self: &Arc<Self>, handler: Option<Arc<dyn EventHandler>>) -> Result<(), Error> {
        if handler.is_some() {
            start()?;
        }
        let installed = handler.is_some();
        *lock(&self.handler) = handler;
        self.has_handler.store(installed, Ordering::Release);
        if installed {
            self.emit(std::iter::empty()); // deliver what waited for `poll`
        } else {
            self.inbox.resignal();
        }
        Ok(())
    }

    /// No callback runs once this returns: the handler and the connect
    /// hook are dropped, and a callback running on another thread is waited
    /// out (one running on this thread, the caller itself, skips the rest
    /// of its batch).
    pub fn detach(&self) {
        self.detached.store(true, Ordering::Release);
        *lock(&self.handler) = None;
        *lock(&self.connect_hook) = None;
        self.has_handler.store(false, Ordering::Release);
        if DISPATCHING.with(|d| d.get()) != self.id {
            drop(lock(&self.running));
            drop(lock(&self.hook_running));
        }
    }

    pub fn set_connect_hook(&self, hook: Option<Arc<dyn crate::hook::ConnectHook>>) {
        *lock(&self.connect_hook) = hook;
    }

    pub fn connect_hook(&self) -> Option<Arc<dyn crate::hook::ConnectHook>> {
        lock(&self.connect_hook).clone()
    }

    /// Runs `hook` on the calling thread as one of this client's callbacks:
    /// a detach waits for it, and the client's functions called inside see
    /// a callback (a close does not wait). `None` if the handle is gone;
    /// a panic is caught and reported as an error.
    pub fn run_as_callback<R>(&self, hook: impl FnOnce() -> Result<R, String>) -> Option<Result<R, String>> {
        let _running = lock(&self.hook_running);
        if self.detached.load(Ordering::Acquire) {
            return None;
        }
        let outer = DISPATCHING.with(|d| d.replace(self.id));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook));
        DISPATCHING.with(|d| d.set(outer));
        Some(result.unwrap_or_else(|_| Err("it panicked".to_string())))
    }

    /// Runs one callback unless the handle is gone; false once it is.
    fn deliver(&self, callback: impl FnOnce()) -> bool {
        if self.detached.load(Ordering::Acquire) {
            return false;
        }
        // A panicking handler must not take the callback thread down with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback));
        true
    }

    /// The callback loop: drains the inbox into the handler until it is
    /// empty, the handler is removed, or the handle is gone.
    fn dispatch(&self) {
        self.scheduled.store(false, Ordering::Release);
        self.run_callbacks(lock(&self.running));
    }

    /// The body of [`Delivery::dispatch`], holding `running`.
    fn run_callbacks(&self, _running: MutexGuard<'_, ()>) {
        // Saved and restored: a callback on an I/O thread may make another
        // client's callbacks run on the same thread, inside it.
        let outer = DISPATCHING.with(|d| d.replace(self.id));
        while !self.detached.load(Ordering::Acquire) {
            let Some(handler) = lock(&self.handler).clone() else {
                // Switched to poll mode: leave the events for `poll`.
                self.inbox.resignal();
                break;
            };
            let batch = self.inbox.take_all();
            if batch.is_empty() {
                break;
            }
            for (i, entry) in batch.iter().enumerate() {
                let state = self.lifecycle.state();
                let delivered = match entry {
                    Queued::Event(event) => self.deliver(|| handler.on_event(event, state)),
                    Queued::Messages(messages) if handler.takes_batches() => {
                        self.deliver(|| handler.on_messages(messages, state))
                    }
                    Queued::Messages(messages) if messages.has_labels() => {
                        // An event stream's: each with its label, as an event.
                        messages.iter_labeled().all(|(m, label)| {
                            let data = bytes::Bytes::copy_from_slice(m);
                            let event = match label {
                                Some(label) => Event::Labeled { data, label: label.clone() },
                                None => Event::Text(data),
                            };
                            self.deliver(|| handler.on_event(&event, state))
                        })
                    }
                    Queued::Messages(messages) => {
                        let text = messages.is_text();
                        messages.iter().all(|m| self.deliver(|| handler.on_message(m, text, state)))
                    }
                };
                // Room for the reader as each read's worth is delivered.
                if !delivered {
                    self.inbox.delivered(batch.range(i..));
                    break;
                }
                self.inbox.delivered(std::iter::once(entry));
            }
        }
        DISPATCHING.with(|d| d.set(outer));
    }
}

struct Pool {
    shards: Vec<mpsc::Sender<Arc<Delivery>>>,
}

static POOL: OnceLock<Pool> = OnceLock::new();
static BUILD: Mutex<()> = Mutex::new(());

fn pool() -> Result<&'static Pool, Error> {
    runtime::check_not_forked()?;
    if let Some(p) = POOL.get() {
        return Ok(p);
    }
    let _guard = lock(&BUILD);
    if let Some(p) = POOL.get() {
        return Ok(p);
    }
    let mut shards = Vec::new();
    for i in 0..runtime::callback_threads() {
        let (tx, rx) = mpsc::channel::<Arc<Delivery>>();
        std::thread::Builder::new()
            .name(format!("longconn-cb-{i}"))
            .spawn(move || {
                let spin = SpinThenPark::new();
                while let Some(target) = next_target(&rx, &spin) {
                    target.dispatch();
                }
            })
            .map_err(|e| Error::Runtime(format!("cannot start a callback thread: {e}")))?;
        shards.push(tx);
    }
    Ok(POOL.get_or_init(|| Pool { shards }))
}

/// The next client whose callbacks are due on this callback thread,
/// looking for one a moment before parking while recent waits were short
/// (`spin.rs`); `None` once the pool is gone.
fn next_target(rx: &mpsc::Receiver<Arc<Delivery>>, spin: &SpinThenPark) -> Option<Arc<Delivery>> {
    match rx.try_recv() {
        Ok(target) => return Some(target),
        Err(mpsc::TryRecvError::Disconnected) => return None,
        Err(mpsc::TryRecvError::Empty) => {}
    }
    let started = Instant::now();
    let mut found = None;
    spin.look(Duration::MAX, || match rx.try_recv() {
        Ok(target) => {
            found = Some(target);
            true
        }
        Err(_) => false,
    });
    let target = match found {
        Some(target) => target,
        None => rx.recv().ok()?,
    };
    spin.waited(started.elapsed());
    Some(target)
}

/// Starts the callback threads if they are not running yet.
fn start() -> Result<(), Error> {
    pool().map(|_| ())
}

/// Queues `target` on the thread that serves shard `key`.
fn schedule(key: usize, target: Arc<Delivery>) {
    let Ok(pool) = pool() else { return };
    let shard = &pool.shards[key % pool.shards.len()];
    let _ = shard.send(target);
}
