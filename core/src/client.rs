//! The client: the application's handle. It holds the engine and starts the
//! session; everything it does goes through the engine's parts.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::ClientConfig;
use crate::engine::counters::Stats;
use crate::engine::dispatch::{on_callback_thread, EventHandler};
use crate::engine::lifecycle::State;
use crate::engine::sending::NotQueued;
use crate::engine::Engine;
use crate::error::Error;
use crate::event::Event;
use crate::outbox::OutboxFull;
use crate::policy::backoff::BackoffPolicy;
use crate::policy::heartbeat::HeartbeatPolicy;
use crate::policy::limits::OutboxLimits;
use crate::{runtime, session};

/// Extra time `close` waits for the session to wind down after the flush deadline.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

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

fn not_queued(why: NotQueued) -> Error {
    match why {
        NotQueued::Full(full) => queue_full(full),
        NotQueued::Closed => Error::Closed,
        NotQueued::Disk(e) => Error::Storage(format!("the outbox file could not be written ({e}); message not queued")),
    }
}

/// Whether at most the message being handled waits for the application:
/// a send now likely answers it, rather than being one of many replies to
/// come (see `engine/sending.rs` on direct writes).
fn answers_alone(engine: &Engine) -> bool {
    engine.delivery.inbox.undelivered() <= 1
}

/// A long-lived connection to one server, kept up in the background.
pub struct Client {
    engine: Arc<Engine>,
    started: AtomicBool,
    /// With `io_in_poll`: the client's own runtime, driven by its pollers.
    driver: Option<Driver>,
}

/// A client's own single-threaded runtime, run only by the threads that
/// poll or close that client (`ClientConfig::io_in_poll`).
struct Driver(Option<tokio::runtime::Runtime>);

impl Driver {
    fn new() -> Result<Driver, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Runtime(format!("cannot make the client's runtime: {e}")))?;
        Ok(Driver(Some(rt)))
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until dropped")
    }

    /// One turn that never waits: what is ready runs, the sockets are
    /// looked at once, and what that woke runs too (a poll with no timeout).
    fn run_once(&self) {
        self.runtime().block_on(async {
            // The first yield lets the runtime poll its sockets without
            // waiting; the second lets what they woke run.
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
        })
    }

    /// Runs the client's I/O on this thread until `done` says so or `until` passes.
    fn run_until<F: std::future::Future<Output = ()>>(
        &self,
        until: Option<Instant>,
        mut done: impl FnMut() -> bool,
        woken: impl Fn() -> F,
    ) {
        if done() {
            return;
        }
        self.runtime().block_on(async {
            while !done() {
                match until {
                    Some(until) => tokio::select! {
                        // In order, so a simulated run replays exactly.
                        biased;
                        _ = woken() => {}
                        _ = tokio::time::sleep_until(until.into()) => return,
                    },
                    None => woken().await,
                }
            }
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Drops the session's task without waiting; fine on any thread.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        runtime::check_not_forked()?;
        config.validate()?;
        let driver = if config.io_in_poll { Some(Driver::new()?) } else { None };
        Ok(Client { engine: Arc::new(Engine::new(config)?), started: AtomicBool::new(false), driver })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.engine.config
    }

    /// Starts connecting in the background and returns at once.
    pub fn connect(&self) -> Result<(), Error> {
        runtime::check_not_forked()?;
        if self.engine.close.requested() {
            return Err(Error::Closed);
        }
        let current = match self.engine.config.on_current_runtime {
            true => Some(tokio::runtime::Handle::try_current().map_err(|_| {
                Error::Runtime("on_current_runtime: connect must be called inside a tokio runtime".into())
            })?),
            false => None,
        };
        if self.driver.is_none() && current.is_none() {
            runtime::start()?;
        }
        if self.started.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyStarted("connect was already called on this client"));
        }
        self.engine.lifecycle.set_state(State::Connecting);
        match (&self.driver, current) {
            // Runs from the first poll on.
            (Some(driver), _) => drop(driver.runtime().spawn(session::run(self.engine.clone()))),
            (None, Some(handle)) => drop(handle.spawn(session::run(self.engine.clone()))),
            (None, None) => runtime::spawn(session::run(self.engine.clone()))?,
        }
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
        self.send_numbered(payload, text).map(drop)
    }

    /// Like [`Client::send`] (or [`Client::send_text_bytes`] with `text`),
    /// returning the message's number: messages are numbered from 1 in the
    /// client's life, and acknowledgement events and statistics speak of
    /// these numbers.
    #[inline]
    pub fn send_numbered(&self, payload: &[u8], text: bool) -> Result<u64, Error> {
        let engine = self.check_sendable()?;
        engine.config.check_payload(payload, text)?;
        engine.sending.push(payload, text, &engine.counters, || answers_alone(engine)).map_err(not_queued)
    }

    /// Like [`Client::send`] (or [`Client::send_text_bytes`] with `text`),
    /// but when the outbox is full waits up to `timeout` for room instead of
    /// failing at once. On a callback thread it does not wait (the thread
    /// runs other clients' callbacks too). [`Error::Closed`] if the client
    /// is closed, also while waiting.
    #[inline]
    pub fn send_wait(&self, payload: &[u8], text: bool, timeout: Duration) -> Result<u64, Error> {
        let engine = self.check_sendable()?;
        engine.config.check_payload(payload, text)?;
        let closed = || engine.close.requested();
        // With `io_in_poll` room comes only while the application polls.
        let may_wait = || self.driver.is_none() && !on_callback_thread();
        match engine
            .sending
            .push_waiting(payload, text, timeout, may_wait, closed, &engine.counters, || answers_alone(engine))
        {
            Ok(number) => Ok(number),
            Err(why) => Err(not_queued(why)),
        }
    }

    /// Queues copies of `payloads` in order, under one lock.
    ///
    /// Every message is checked first, so a bad one queues nothing. If the
    /// outbox fills part-way, the messages before that point stay queued and
    /// the error says how many: `Err((queued, Error::QueueFull { .. }))`.
    pub fn send_batch(&self, payloads: &[&[u8]]) -> Result<usize, (usize, Error)> {
        let engine = self.check_sendable().map_err(|e| (0, e))?;
        for payload in payloads {
            engine.config.check_payload(payload, false).map_err(|e| (0, e))?;
        }
        match engine.sending.push_all(payloads) {
            (queued, None) => Ok(queued),
            (queued, Some(why)) => Err((queued, not_queued(why))),
        }
    }

    /// The engine, if messages may be sent now.
    #[inline]
    fn check_sendable(&self) -> Result<&Engine, Error> {
        runtime::check_not_forked()?;
        if self.engine.close.requested() {
            return Err(Error::Closed);
        }
        Ok(&self.engine)
    }

    /// Stops the client after flushing queued messages for up to `timeout`.
    ///
    /// Blocks the caller until the flush ends, except when called from one
    /// of this library's callbacks, where it returns [`CloseOutcome::InProgress`].
    pub fn close(&self, timeout: Duration) -> Result<CloseOutcome, Error> {
        runtime::check_not_forked()?;
        let engine = &*self.engine;
        let deadline = Instant::now() + timeout;
        engine.close.request(deadline);
        engine.sending.wake_waiting_senders();
        engine.sending.wake_writer();
        if !self.started.swap(true, Ordering::AcqRel) {
            // Never connected: nothing can be flushed.
            session::finish(engine);
        } else if engine.lifecycle.state() != State::Closed {
            engine.lifecycle.set_state(State::Closing);
        }
        if on_callback_thread() {
            return Ok(CloseOutcome::InProgress);
        }
        if let Some(driver) = &self.driver {
            let lifecycle = &engine.lifecycle;
            driver.run_until(Some(deadline + CLOSE_GRACE), || lifecycle.finished().is_some(), || lifecycle.finishing());
        }
        match engine.lifecycle.wait_finished(deadline + CLOSE_GRACE) {
            Some(0) => Ok(CloseOutcome::Flushed),
            Some(unsent) => Ok(CloseOutcome::Unsent(unsent)),
            None => Err(Error::Timeout("the session did not stop in time".into())),
        }
    }

    pub fn state(&self) -> State {
        self.engine.lifecycle.state()
    }

    pub fn stats(&self) -> Stats {
        let stats = self.engine.counters.snapshot(self.engine.sending.figures());
        Stats { restored_number: self.engine.restored.last_number, ..stats }
    }

    /// Changes heartbeat timing; takes effect at once, also on a live connection.
    pub fn set_heartbeat(&self, policy: HeartbeatPolicy) -> Result<(), Error> {
        policy.validate().map_err(|w| Error::InvalidArgument(w.into()))?;
        self.engine.settings.set_heartbeat(policy);
        Ok(())
    }

    /// Changes the reconnection schedule; applies from the next delay on.
    pub fn set_backoff(&self, policy: BackoffPolicy) -> Result<(), Error> {
        policy.validate().map_err(|w| Error::InvalidArgument(w.into()))?;
        self.engine.settings.set_backoff(policy);
        Ok(())
    }

    pub fn set_outbox_limits(&self, limits: OutboxLimits) -> Result<(), Error> {
        limits.validate().map_err(|w| Error::InvalidArgument(w.into()))?;
        self.engine.sending.set_limits(limits);
        Ok(())
    }

    /// Calls `hook` before each connection attempt from now on (`None`:
    /// no more); see [`crate::hook::ConnectHook`] for its thread and rules.
    pub fn set_connect_hook(&self, hook: Option<Arc<dyn crate::hook::ConnectHook>>) {
        self.engine.delivery.set_connect_hook(hook);
    }

    /// Delivers events to `handler` on a callback thread; `None` returns to poll mode.
    pub fn set_handler(&self, handler: Option<Arc<dyn EventHandler>>) -> Result<(), Error> {
        if self.driver.is_some() && handler.is_some() {
            return Err(Error::InvalidArgument(
                "this client does its I/O in poll (io_in_poll), so it takes no callbacks".into(),
            ));
        }
        self.engine.delivery.set_handler(handler)
    }

    /// Takes the next event in poll mode, waiting up to `timeout`;
    /// [`Error::Closed`] at once when the client has stopped and its last
    /// event (the closed event) has been taken.
    ///
    /// With `ClientConfig::io_in_poll` the connection's I/O runs here, on
    /// the calling thread, while it waits (a `timeout` of zero takes one
    /// turn that never waits); from a callback on an I/O thread that is
    /// refused with [`Error::InvalidArgument`].
    pub fn poll(&self, timeout: Duration) -> Result<Option<Event>, Error> {
        runtime::check_not_forked()?;
        let inbox = &self.engine.delivery.inbox;
        let timeout = self.drive(timeout)?;
        match inbox.pop(timeout) {
            None if inbox.is_drained_and_ended() => Err(Error::Closed),
            polled => Ok(polled),
        }
    }

    /// Hands waiting messages to `take` in order, with whether each is a
    /// WebSocket text message, waiting up to `timeout` for something to
    /// arrive; how many were taken, or `None` if nothing arrived. See
    /// [`crate::engine::inbox::EventQueue::take_messages`].
    pub fn poll_messages(
        &self,
        timeout: Duration,
        take: impl FnMut(&[u8], bool) -> bool,
    ) -> Result<Option<usize>, Error> {
        runtime::check_not_forked()?;
        let inbox = &self.engine.delivery.inbox;
        let timeout = self.drive(timeout)?;
        match inbox.take_messages(timeout, take) {
            None if inbox.is_drained_and_ended() => Err(Error::Closed),
            taken => Ok(taken),
        }
    }

    /// With `io_in_poll`, runs the client's I/O on this thread until an
    /// event waits or `timeout` passes, and returns how long taking the
    /// event may still wait (none: it waits already, or never will); else
    /// returns `timeout` as it is.
    fn drive(&self, timeout: Duration) -> Result<Duration, Error> {
        let Some(driver) = &self.driver else {
            return Ok(timeout);
        };
        if runtime::on_io_thread() {
            return Err(Error::InvalidArgument(
                "a client that does its I/O in poll cannot be polled from a callback on an I/O thread".into(),
            ));
        }
        let inbox = &self.engine.delivery.inbox;
        if timeout.is_zero() {
            driver.run_once();
        } else {
            let until = Instant::now().checked_add(timeout);
            driver.run_until(until, || inbox.has_waiting() || inbox.is_drained_and_ended(), || inbox.arrival());
        }
        Ok(Duration::ZERO)
    }

    /// Readable while events wait in poll mode; owned by the client. Made
    /// on the first call, so clients that never ask hold no extra descriptors.
    pub fn event_fd(&self) -> Result<RawFd, Error> {
        if self.driver.is_some() {
            // Nothing would arrive while the program waits on it.
            return Err(Error::InvalidArgument(
                "this client does its I/O in poll (io_in_poll): its events arrive only inside poll".into(),
            ));
        }
        let delivery = &self.engine.delivery;
        let fd = delivery.inbox.fd().map_err(|e| Error::Runtime(format!("cannot create the event descriptor: {e}")))?;
        if !delivery.has_handler() {
            delivery.inbox.resignal(); // events queued before the descriptor existed
        }
        Ok(fd)
    }
}

impl Drop for Client {
    /// Stops the session without flushing and waits out a callback running
    /// on another thread, so no callback runs once the drop returns.
    fn drop(&mut self) {
        let engine = &*self.engine;
        engine.close.abort();
        engine.sending.wake_waiting_senders();
        engine.sending.wake_writer();
        engine.delivery.detach();
    }
}
