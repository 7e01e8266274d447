//! The client: the application's handle and the state it shares with its session task.

use std::cell::Cell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::backoff::BackoffPolicy;
use crate::close::CloseSignal;
use crate::config::ClientConfig;
use crate::dispatch::{self, Dispatch};
use crate::error::Error;
use crate::event::{Event, EventQueue, MessageBatch, Queued};
use crate::heartbeat::HeartbeatPolicy;
use crate::outbox::{Batch, Outbox, OutboxFull, OutboxLimits};
use crate::tls::Tls;
use crate::{runtime, session};

/// Extra time `close` waits for the session to wind down after the flush deadline.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where a client is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Created; `connect` not called yet.
    Idle = 0,
    Connecting = 1,
    Connected = 2,
    /// Waiting out a backoff delay before the next attempt.
    WaitingToReconnect = 3,
    /// `close` was called; flushing.
    Closing = 4,
    Closed = 5,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Idle,
            1 => State::Connecting,
            2 => State::Connected,
            3 => State::WaitingToReconnect,
            4 => State::Closing,
            _ => State::Closed,
        }
    }
}

/// Counters since the client was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages_out: u64,
    pub bytes_out: u64,
    pub messages_in: u64,
    pub bytes_in: u64,
    /// Connections established after the first one.
    pub reconnects: u64,
    /// Messages waiting to be written, including a batch being written.
    pub queued_messages: u64,
    pub queued_bytes: u64,
    /// Round-trip time of the last answered ping, in microseconds (0 if none yet).
    pub last_rtt_us: u64,
}

/// Receives a client's events on a callback thread.
pub trait EventHandler: Send + Sync {
    fn on_event(&self, event: &Event);

    /// A received message, borrowed for the call; `text` for a WebSocket
    /// text message. The default hands a copy to [`EventHandler::on_event`];
    /// override it to avoid the copy.
    fn on_message(&self, payload: &[u8], text: bool) {
        let payload = bytes::Bytes::copy_from_slice(payload);
        self.on_event(&if text { Event::Text(payload) } else { Event::Message(payload) });
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub connections: AtomicU64,
    pub last_rtt_us: AtomicU64,
}

/// Settings that may change while the client runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveSettings {
    pub heartbeat: HeartbeatPolicy,
    pub backoff: BackoffPolicy,
}

thread_local! {
    /// Id of the client whose callbacks this thread is running, 0 if none.
    static DISPATCHING: Cell<u64> = const { Cell::new(0) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Shared {
    pub id: u64,
    me: Weak<Shared>,
    pub config: ClientConfig,
    /// The TLS connector for `tls://` and `wss://`, built once from the config.
    pub tls: Option<Tls>,
    live: Mutex<LiveSettings>,
    /// Wakes the heartbeat loop when settings change.
    pub settings_changed: Notify,
    outbox: Mutex<Outbox>,
    /// Wakes senders waiting for room in the outbox ([`Client::send_wait`]).
    room: Condvar,
    /// Senders waiting on `room`; only then is it notified.
    room_waiters: AtomicUsize,
    /// Wakes the writer: messages queued, a control frame, or a close request.
    pub writer_wake: Notify,
    pub events: EventQueue,
    pub counters: Counters,
    state: AtomicU8,
    pub close: CloseSignal,
    /// Messages discarded at close, once the session has finished.
    finished: Mutex<Option<u64>>,
    finished_cv: Condvar,
    handler: Mutex<Option<Arc<dyn EventHandler>>>,
    /// Mirrors `handler.is_some()` so emitting needs no lock.
    has_handler: AtomicBool,
    /// Queued on a callback thread and not yet drained.
    scheduled: AtomicBool,
    /// The handle is gone: no callback may run any more.
    detached: AtomicBool,
    /// Held while callbacks run, so a detach from another thread can wait them out.
    dispatch_lock: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub fn live(&self) -> LiveSettings {
        *lock(&self.live)
    }

    pub fn heartbeat(&self) -> HeartbeatPolicy {
        self.config.effective_heartbeat(self.live().heartbeat)
    }

    /// Hands events to callbacks or, without a handler, to `poll` and the event fd.
    pub fn emit(&self, events: impl IntoIterator<Item = Event>) {
        let to_callbacks = self.has_handler.load(Ordering::Acquire);
        self.events.push(events, !to_callbacks);
        self.schedule_if(to_callbacks);
    }

    pub fn emit_one(&self, event: Event) {
        self.emit(std::iter::once(event));
    }

    /// Takes everything queued to write it; it stays counted as queued until written.
    pub fn take_batch(&self) -> Option<Batch> {
        lock(&self.outbox).take_batch()
    }

    /// Counts messages of `batch` handed to the transport since the last call.
    pub fn record_sent(&self, batch: &mut Batch) {
        self.count_sent(batch);
        let mut outbox = lock(&self.outbox);
        outbox.batch_progress(batch);
        self.room_freed();
    }

    /// Records a fully written batch and returns its buffers to the outbox,
    /// under one lock; buffers the outbox does not keep are freed after it.
    pub fn batch_written(&self, mut batch: Batch) {
        self.count_sent(&mut batch);
        let mut outbox = lock(&self.outbox);
        let unused = outbox.recycle(batch);
        self.room_freed();
        drop(outbox);
        drop(unused);
    }

    /// Queues `payload` under the held outbox lock, releases it, and wakes
    /// the writer if the outbox was empty. When full, hands the lock back.
    #[inline]
    fn push_and_wake<'a>(
        &self,
        mut outbox: MutexGuard<'a, Outbox>,
        payload: &[u8],
        text: bool,
    ) -> Result<(), (MutexGuard<'a, Outbox>, OutboxFull)> {
        let was_empty = outbox.is_empty();
        if let Err(full) = outbox.push_kind(payload, text) {
            return Err((outbox, full));
        }
        drop(outbox);
        if was_empty {
            self.writer_wake.notify_one();
        }
        Ok(())
    }

    /// Wakes every sender waiting for room, to see a close request: under
    /// the outbox lock, so none is between checking and waiting.
    fn wake_room_waiters(&self) {
        let _outbox = lock(&self.outbox);
        self.room.notify_all();
    }

    /// Wakes senders waiting for room. Called with the outbox lock held, so
    /// a sender that found the outbox full is either waiting or sees the room.
    fn room_freed(&self) {
        if self.room_waiters.load(Ordering::Relaxed) > 0 {
            self.room.notify_all();
        }
    }

    fn count_sent(&self, batch: &mut Batch) {
        let (messages, bytes) = batch.take_newly_sent();
        let c = &self.counters;
        c.messages_out.fetch_add(messages as u64, Ordering::Relaxed);
        c.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Messages and payload bytes waiting or being written.
    pub fn queued(&self) -> (usize, usize) {
        lock(&self.outbox).queued()
    }

    /// Empties the outbox (and what was in flight); returns how many messages were discarded.
    pub fn discard_outbox(&self) -> usize {
        let mut outbox = lock(&self.outbox);
        let discarded = outbox.clear();
        self.room_freed();
        discarded
    }

    /// Called once by the session as it ends.
    pub fn finish(&self, unsent: u64) {
        self.events.end();
        *lock(&self.finished) = Some(unsent);
        self.finished_cv.notify_all();
    }

    fn wait_finished(&self, deadline: Instant) -> Option<u64> {
        let mut f = lock(&self.finished);
        loop {
            if let Some(unsent) = *f {
                return Some(unsent);
            }
            let wait = deadline.checked_duration_since(Instant::now())?;
            f = self.finished_cv.wait_timeout(f, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl Shared {
    /// Runs one callback unless the handle is gone; false once it is.
    fn deliver(&self, callback: impl FnOnce()) -> bool {
        if self.detached.load(Ordering::Acquire) {
            return false;
        }
        // A panicking handler must not take the callback thread down with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(callback));
        true
    }

    /// Hands received messages to callbacks or to `poll`.
    pub fn emit_messages(&self, batch: MessageBatch) {
        let to_callbacks = self.has_handler.load(Ordering::Acquire);
        self.events.push_messages(batch, !to_callbacks);
        self.schedule_if(to_callbacks);
    }

    fn schedule_if(&self, to_callbacks: bool) {
        if to_callbacks && !self.scheduled.swap(true, Ordering::AcqRel) {
            if let Some(me) = self.me.upgrade() {
                dispatch::schedule(self.id as usize, me);
            }
        }
    }
}

impl Dispatch for Shared {
    fn dispatch(&self) {
        self.scheduled.store(false, Ordering::Release);
        let _running = lock(&self.dispatch_lock);
        DISPATCHING.with(|d| d.set(self.id));
        while !self.detached.load(Ordering::Acquire) {
            let Some(handler) = lock(&self.handler).clone() else {
                // Switched to poll mode: leave the events for `poll`.
                self.events.resignal();
                break;
            };
            let batch = self.events.take_all();
            if batch.is_empty() {
                break;
            }
            for entry in &batch {
                match entry {
                    Queued::Event(event) => {
                        if !self.deliver(|| handler.on_event(event)) {
                            break;
                        }
                    }
                    Queued::Messages(messages) => {
                        if !messages.iter().all(|m| self.deliver(|| handler.on_message(m, messages.is_text()))) {
                            break;
                        }
                    }
                }
            }
        }
        DISPATCHING.with(|d| d.set(0));
    }
}

/// Result of [`Client::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// Everything queued was written.
    Flushed,
    /// The deadline passed; this many messages were discarded (also reported in the closed event).
    Unsent(u64),
    /// Called from a callback: the close goes on in the background and ends with a closed event.
    InProgress,
}

fn queue_full(full: OutboxFull) -> Error {
    Error::QueueFull { queued_messages: full.queued_messages, queued_bytes: full.queued_bytes }
}

/// A long-lived connection to one server, kept up in the background.
pub struct Client {
    shared: Arc<Shared>,
    started: AtomicBool,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        runtime::check_not_forked()?;
        config.validate()?;
        let events = EventQueue::new(config.inbox_limit);
        let live = LiveSettings { heartbeat: config.heartbeat, backoff: config.backoff };
        let tls = if config.endpoint.scheme.is_tls() { Some(Tls::new(&config.tls)?) } else { None };
        let shared = Arc::new_cyclic(|me| Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            me: me.clone(),
            outbox: Mutex::new(Outbox::new(config.outbox, config.framing())),
            tls,
            config,
            live: Mutex::new(live),
            settings_changed: Notify::new(),
            writer_wake: Notify::new(),
            room: Condvar::new(),
            room_waiters: AtomicUsize::new(0),
            events,
            counters: Counters::default(),
            state: AtomicU8::new(State::Idle as u8),
            close: CloseSignal::default(),
            finished: Mutex::new(None),
            finished_cv: Condvar::new(),
            handler: Mutex::new(None),
            has_handler: AtomicBool::new(false),
            scheduled: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            dispatch_lock: Mutex::new(()),
        });
        Ok(Client { shared, started: AtomicBool::new(false) })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.shared.config
    }

    /// Starts connecting in the background and returns at once.
    pub fn connect(&self) -> Result<(), Error> {
        runtime::check_not_forked()?;
        if self.shared.close.requested() {
            return Err(Error::Closed);
        }
        let rt = runtime::get()?;
        if self.started.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyStarted("connect was already called on this client"));
        }
        self.shared.set_state(State::Connecting);
        rt.spawn(session::run(self.shared.clone()));
        Ok(())
    }

    /// Queues a copy of `payload`; it is written in order once connected.
    #[inline]
    pub fn send(&self, payload: &[u8]) -> Result<(), Error> {
        self.enqueue(payload, false)
    }

    /// Queues a copy of `text` as a WebSocket text message (on the TCP
    /// transports, the same as [`Client::send`]).
    pub fn send_text(&self, text: &str) -> Result<(), Error> {
        self.enqueue(text.as_bytes(), true)
    }

    /// Like [`Client::send_text`] for bytes that must be valid UTF-8.
    pub fn send_text_bytes(&self, text: &[u8]) -> Result<(), Error> {
        self.enqueue(text, true)
    }

    #[inline]
    fn enqueue(&self, payload: &[u8], text: bool) -> Result<(), Error> {
        let shared = self.check_sendable()?;
        shared.config.check_payload(payload, text)?;
        shared.push_and_wake(lock(&shared.outbox), payload, text).map_err(|(_, full)| queue_full(full))
    }

    /// Like [`Client::send`] (or [`Client::send_text_bytes`] with `text`),
    /// but when the outbox is full waits up to `timeout` for room instead of
    /// failing at once. On a callback thread it does not wait (the thread
    /// runs other clients' callbacks too). [`Error::Closed`] if the client
    /// is closed, also while waiting.
    pub fn send_wait(&self, payload: &[u8], text: bool, timeout: Duration) -> Result<(), Error> {
        let shared = self.check_sendable()?;
        shared.config.check_payload(payload, text)?;
        let deadline = Instant::now().checked_add(timeout);
        let may_wait = DISPATCHING.with(|d| d.get()) == 0;
        let mut outbox = lock(&shared.outbox);
        loop {
            let full = match shared.push_and_wake(outbox, payload, text) {
                Ok(()) => return Ok(()),
                Err((guard, full)) => {
                    outbox = guard;
                    full
                }
            };
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if !may_wait || left == Some(Duration::ZERO) {
                return Err(queue_full(full));
            }
            if shared.close.requested() {
                return Err(Error::Closed);
            }
            shared.room_waiters.fetch_add(1, Ordering::Relaxed);
            outbox =
                shared.room.wait_timeout(outbox, left.unwrap_or(Duration::MAX)).unwrap_or_else(|e| e.into_inner()).0;
            shared.room_waiters.fetch_sub(1, Ordering::Relaxed);
            if shared.close.requested() {
                return Err(Error::Closed);
            }
        }
    }

    /// Queues copies of `payloads` in order, under one lock.
    ///
    /// Every message is checked first, so a bad one queues nothing. If the
    /// outbox fills part-way, the messages before that point stay queued and
    /// the error says how many: `Err((queued, Error::QueueFull { .. }))`.
    pub fn send_batch(&self, payloads: &[&[u8]]) -> Result<usize, (usize, Error)> {
        let shared = self.check_sendable().map_err(|e| (0, e))?;
        for payload in payloads {
            shared.config.check_payload(payload, false).map_err(|e| (0, e))?;
        }
        let mut queued = 0;
        let (was_empty, result) = {
            let mut outbox = lock(&shared.outbox);
            let was_empty = outbox.is_empty();
            let mut result = Ok(());
            for payload in payloads {
                if let Err(full) = outbox.push(payload) {
                    result = Err(queue_full(full));
                    break;
                }
                queued += 1;
            }
            (was_empty, result)
        };
        if was_empty && queued > 0 {
            shared.writer_wake.notify_one();
        }
        result.map(|()| queued).map_err(|e| (queued, e))
    }

    /// The shared state, if messages may be sent now.
    #[inline]
    fn check_sendable(&self) -> Result<&Shared, Error> {
        runtime::check_not_forked()?;
        if self.shared.close.requested() {
            return Err(Error::Closed);
        }
        Ok(&self.shared)
    }

    /// Stops the client after flushing queued messages for up to `timeout`.
    ///
    /// Blocks the caller until the flush ends, except when called from one
    /// of this library's callbacks, where it returns [`CloseOutcome::InProgress`].
    pub fn close(&self, timeout: Duration) -> Result<CloseOutcome, Error> {
        runtime::check_not_forked()?;
        let shared = &*self.shared;
        let deadline = Instant::now() + timeout;
        shared.close.request(deadline);
        shared.wake_room_waiters();
        shared.writer_wake.notify_one();
        if !self.started.swap(true, Ordering::AcqRel) {
            // Never connected: nothing can be flushed.
            let unsent = shared.discard_outbox() as u64;
            shared.set_state(State::Closed);
            shared.emit_one(Event::Closed { unsent });
            shared.finish(unsent);
        } else if shared.state() != State::Closed {
            shared.set_state(State::Closing);
        }
        if DISPATCHING.with(|d| d.get()) != 0 {
            return Ok(CloseOutcome::InProgress);
        }
        match shared.wait_finished(deadline + CLOSE_GRACE) {
            Some(0) => Ok(CloseOutcome::Flushed),
            Some(unsent) => Ok(CloseOutcome::Unsent(unsent)),
            None => Err(Error::Timeout("the session did not stop in time".into())),
        }
    }

    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// A getter of the current state for handlers; it holds no strong
    /// reference, so a handler stored in the client does not keep it alive.
    pub fn state_source(&self) -> impl Fn() -> State + Send + Sync + 'static {
        let weak = Arc::downgrade(&self.shared);
        move || weak.upgrade().map_or(State::Closed, |s| s.state())
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let (queued, queued_bytes) = self.shared.queued();
        Stats {
            messages_out: c.messages_out.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            messages_in: c.messages_in.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            reconnects: c.connections.load(Ordering::Relaxed).saturating_sub(1),
            queued_messages: queued as u64,
            queued_bytes: queued_bytes as u64,
            last_rtt_us: c.last_rtt_us.load(Ordering::Relaxed),
        }
    }

    /// Changes heartbeat timing; takes effect at once, also on a live connection.
    pub fn set_heartbeat(&self, policy: HeartbeatPolicy) -> Result<(), Error> {
        policy.validate().map_err(|w| Error::InvalidArgument(w.into()))?;
        lock(&self.shared.live).heartbeat = policy;
        self.shared.settings_changed.notify_waiters();
        Ok(())
    }

    /// Changes the reconnection schedule; applies from the next delay on.
    pub fn set_backoff(&self, policy: BackoffPolicy) -> Result<(), Error> {
        policy.validate().map_err(|w| Error::InvalidArgument(w.into()))?;
        lock(&self.shared.live).backoff = policy;
        Ok(())
    }

    pub fn set_outbox_limits(&self, limits: OutboxLimits) -> Result<(), Error> {
        if limits.max_messages == 0 || limits.max_bytes == 0 {
            return Err(Error::InvalidArgument("outbox limits must be positive".into()));
        }
        let mut outbox = lock(&self.shared.outbox);
        outbox.set_limits(limits);
        self.shared.room_freed();
        Ok(())
    }

    /// Delivers events to `handler` on a callback thread; `None` returns to poll mode.
    pub fn set_handler(&self, handler: Option<Arc<dyn EventHandler>>) -> Result<(), Error> {
        if handler.is_some() {
            dispatch::start()?;
        }
        let shared = &*self.shared;
        let installed = handler.is_some();
        *lock(&shared.handler) = handler;
        shared.has_handler.store(installed, Ordering::Release);
        if installed {
            shared.emit(std::iter::empty()); // deliver what waited for `poll`
        } else {
            shared.events.resignal();
        }
        Ok(())
    }

    /// Takes the next event in poll mode, waiting up to `timeout`;
    /// [`Error::Closed`] at once when the client has stopped and its last
    /// event (the closed event) has been taken.
    pub fn poll(&self, timeout: Duration) -> Result<Option<Event>, Error> {
        runtime::check_not_forked()?;
        match self.shared.events.pop(timeout) {
            None if self.shared.events.is_drained_and_ended() => Err(Error::Closed),
            polled => Ok(polled),
        }
    }

    /// Hands waiting messages to `take` in order, with whether each is a
    /// WebSocket text message, waiting up to `timeout` for something to
    /// arrive; how many were taken, or `None` if nothing arrived. See
    /// [`EventQueue::take_messages`].
    pub fn poll_messages(
        &self,
        timeout: Duration,
        take: impl FnMut(&[u8], bool) -> bool,
    ) -> Result<Option<usize>, Error> {
        runtime::check_not_forked()?;
        match self.shared.events.take_messages(timeout, take) {
            None if self.shared.events.is_drained_and_ended() => Err(Error::Closed),
            taken => Ok(taken),
        }
    }

    /// Readable while events wait in poll mode; owned by the client. Made
    /// on the first call, so clients that never ask hold no extra descriptors.
    pub fn event_fd(&self) -> Result<RawFd, Error> {
        let fd =
            self.shared.events.fd().map_err(|e| Error::Runtime(format!("cannot create the event descriptor: {e}")))?;
        if !self.shared.has_handler.load(Ordering::Acquire) {
            self.shared.events.resignal(); // events queued before the descriptor existed
        }
        Ok(fd)
    }
}

impl Drop for Client {
    /// Stops the session without flushing and waits out a callback running
    /// on another thread, so no callback runs once the drop returns.
    fn drop(&mut self) {
        let shared = &*self.shared;
        shared.close.abort();
        shared.wake_room_waiters();
        shared.writer_wake.notify_one();
        shared.detached.store(true, Ordering::Release);
        *lock(&shared.handler) = None;
        shared.has_handler.store(false, Ordering::Release);
        if DISPATCHING.with(|d| d.get()) != shared.id {
            drop(lock(&shared.dispatch_lock));
        }
    }
}
