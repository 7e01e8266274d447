//! `lc_client`: creating, connecting, sending, closing and freeing clients.

use std::ffi::c_char;
use std::sync::Mutex;
use std::time::Duration;

use super::boundary::{self, bytes_arg, timeout_from_ms};
use super::config::{backoff_policy, heartbeat_policy, lc_config};
use super::event::{CallbackSet, PolledEvent};
use super::status::*;
use crate::client::{Client, CloseOutcome, State};

/// A client keeping one connection alive. Thread-safe: any thread may call
/// any function on it, except that lc_client_free() must not race with
/// other calls on the same client.
pub struct lc_client {
    pub(crate) client: Client,
    pub(crate) callbacks: Mutex<CallbackSet>,
    /// The event lc_client_poll() returned last, kept alive for its pointers.
    pub(crate) polled: Mutex<Option<PolledEvent>>,
}

/// Where a client is in its life.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lc_state {
    /// Created; lc_client_connect() not called yet.
    LC_STATE_IDLE = 0,
    LC_STATE_CONNECTING = 1,
    LC_STATE_CONNECTED = 2,
    /// Waiting out a backoff delay before the next connection attempt.
    LC_STATE_WAITING_TO_RECONNECT = 3,
    /// lc_client_close() was called; flushing queued messages.
    LC_STATE_CLOSING = 4,
    LC_STATE_CLOSED = 5,
}

impl From<State> for lc_state {
    fn from(s: State) -> Self {
        match s {
            State::Idle => lc_state::LC_STATE_IDLE,
            State::Connecting => lc_state::LC_STATE_CONNECTING,
            State::Connected => lc_state::LC_STATE_CONNECTED,
            State::WaitingToReconnect => lc_state::LC_STATE_WAITING_TO_RECONNECT,
            State::Closing => lc_state::LC_STATE_CLOSING,
            State::Closed => lc_state::LC_STATE_CLOSED,
        }
    }
}

/// Counters since the client was created.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct lc_stats {
    pub messages_out: u64,
    pub bytes_out: u64,
    pub messages_in: u64,
    pub bytes_in: u64,
    /// Connections established after the first one.
    pub reconnects: u64,
    /// Messages waiting to be written (including a batch being written).
    pub queued_messages: u64,
    pub queued_bytes: u64,
    /// Round-trip time of the last answered ping in microseconds (0: none yet).
    pub last_rtt_us: u64,
}

/// Runs `f` on the client behind `client`, inside the panic boundary.
pub(crate) fn with_client(client: *const lc_client, f: impl FnOnce(&lc_client) -> lc_status) -> lc_status {
    ffi_guard!({
        let client = deref_or_fail!(client, "client");
        f(client)
    })
}

/// Creates a client from `config` (copied; the config may be freed afterwards).
///
/// `config`: not NULL. `out_client`: not NULL; on success receives a client
/// that the caller owns and must free with lc_client_free(). Untouched on
/// failure. The client does nothing until lc_client_connect(); messages sent
/// before then are queued.
///
/// Returns LC_STATUS_NULL_ARGUMENT, LC_STATUS_INVALID_ARGUMENT (inconsistent
/// settings), LC_STATUS_RUNTIME, LC_STATUS_FORKED. Any thread.
#[no_mangle]
pub unsafe extern "C" fn lc_client_new(config: *const lc_config, out_client: *mut *mut lc_client) -> lc_status {
    ffi_guard!({
        boundary::init();
        require_out!(out_client, "out_client");
        let config = deref_or_fail!(config, "config");
        match Client::new(config.inner.clone()) {
            Ok(client) => {
                let handle =
                    lc_client { client, callbacks: Mutex::new(CallbackSet::default()), polled: Mutex::new(None) };
                write_out!(out_client, Box::into_raw(Box::new(handle)));
                LC_STATUS_OK
            }
            Err(e) => fail_with(e),
        }
    })
}

/// Frees a client. NULL is fine; must not be called twice, nor while another
/// thread is still using the client.
///
/// If the client is still open, it stops at once: queued messages are
/// discarded (call lc_client_close() first to flush them). Once this returns,
/// no callback of this client runs again; if a callback of this client is
/// running on another thread, this waits for it to return. May be called
/// from inside one of this client's own callbacks: the remaining callbacks
/// are then skipped. In a fork() child the handle is leaked, not freed.
#[no_mangle]
pub unsafe extern "C" fn lc_client_free(client: *mut lc_client) {
    // SAFETY: the caller passes a handle from lc_client_new, freed once (documented).
    unsafe { boundary::free_boxed(client) }
}

/// Starts connecting in the background; returns at once. Progress is
/// reported through events (connected, error, reconnect scheduled, ...).
///
/// Returns LC_STATUS_NULL_ARGUMENT, LC_STATUS_ALREADY_STARTED (called twice),
/// LC_STATUS_CLOSED, LC_STATUS_RUNTIME, LC_STATUS_FORKED. Any thread,
/// callbacks included.
#[no_mangle]
pub unsafe extern "C" fn lc_client_connect(client: *const lc_client) -> lc_status {
    with_client(client, |c| status_from(c.client.connect()))
}

/// Queues a copy of `len` bytes at `data` as one message and returns at once.
///
/// Messages go out in the order they were sent, also across reconnects.
/// `data` may be NULL only when `len` is 0; it is borrowed for the call.
/// Returns LC_STATUS_QUEUE_FULL when the outbox is at its limit (the message
/// was not queued; try again later), LC_STATUS_MESSAGE_TOO_LARGE above the
/// maximum frame size, LC_STATUS_INVALID_ARGUMENT for a newline in line
/// framing, LC_STATUS_CLOSED after lc_client_close(), LC_STATUS_NULL_ARGUMENT.
/// Any thread, callbacks included.
#[no_mangle]
pub unsafe extern "C" fn lc_client_send(client: *const lc_client, data: *const u8, len: usize) -> lc_status {
    with_client(client, |c| match bytes_arg(data, len, "data") {
        Ok(payload) => status_from(c.client.send(payload)),
        Err(status) => status,
    })
}

/// Queues a copy of `len` bytes at `text` as a WebSocket text message; on the
/// TCP transports it is the same as lc_client_send(). The bytes must be valid
/// UTF-8 (not NUL-terminated; `len` counts them), else
/// LC_STATUS_INVALID_UTF8 and nothing is queued. Other statuses as
/// lc_client_send(). Any thread, callbacks included.
#[no_mangle]
pub unsafe extern "C" fn lc_client_send_text(client: *const lc_client, text: *const c_char, len: usize) -> lc_status {
    with_client(client, |c| match bytes_arg(text.cast(), len, "text") {
        Ok(bytes) if std::str::from_utf8(bytes).is_err() => fail(LC_STATUS_INVALID_UTF8, "text is not valid UTF-8"),
        Ok(bytes) => status_from(c.client.send_text_bytes(bytes)),
        Err(status) => status,
    })
}

/// Like lc_client_send() (or lc_client_send_text() when `text` is true), but
/// when the outbox is full waits up to `timeout_ms` (negative: indefinitely)
/// for the writer to make room, instead of failing at once: backpressure
/// without polling. Blocks the calling thread while it waits.
///
/// Returns LC_STATUS_QUEUE_FULL if no room came in time (nothing was queued),
/// LC_STATUS_CLOSED if the client is closed or freed meanwhile, and the other
/// statuses of lc_client_send() / lc_client_send_text(). Inside a callback it
/// does not wait (the callback thread serves other clients too). Any thread.
#[no_mangle]
pub unsafe extern "C" fn lc_client_send_wait(
    client: *const lc_client,
    data: *const u8,
    len: usize,
    text: bool,
    timeout_ms: i32,
) -> lc_status {
    with_client(client, |c| match bytes_arg(data, len, "data") {
        Ok(bytes) if text && std::str::from_utf8(bytes).is_err() => {
            fail(LC_STATUS_INVALID_UTF8, "text is not valid UTF-8")
        }
        Ok(bytes) => status_from(c.client.send_wait(bytes, text, timeout_from_ms(timeout_ms))),
        Err(status) => status,
    })
}

/// One message for lc_client_send_batch(): `len` bytes at `data`
/// (NULL allowed when `len` is 0).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lc_buffer {
    pub data: *const u8,
    pub len: usize,
}

/// Queues copies of `count` messages, in order, in one call: the cheaper
/// way to send many small messages.
///
/// `messages` points to `count` buffers (NULL allowed when `count` is 0),
/// all borrowed for the call. Every message is checked first; if one is bad
/// (NULL data with a length, too large, a newline in line framing), nothing
/// is queued. If the outbox fills part-way, the first messages stay queued
/// and LC_STATUS_QUEUE_FULL is returned. `out_queued` may be NULL; otherwise
/// it receives how many messages were queued, on success and on failure.
/// Other statuses as lc_client_send(). Any thread, callbacks included.
#[no_mangle]
pub unsafe extern "C" fn lc_client_send_batch(
    client: *const lc_client,
    messages: *const lc_buffer,
    count: usize,
    out_queued: *mut usize,
) -> lc_status {
    with_client(client, |c| {
        if !out_queued.is_null() {
            write_out!(out_queued, 0);
        }
        if count > 0 && messages.is_null() {
            return fail(LC_STATUS_NULL_ARGUMENT, "messages is NULL but count is not 0");
        }
        let buffers: &[lc_buffer] = if count == 0 {
            &[]
        } else {
            // SAFETY: non-NULL, and the caller promises `count` readable buffers for the call.
            unsafe { std::slice::from_raw_parts(messages, count) }
        };
        let mut payloads = Vec::with_capacity(buffers.len());
        for (i, b) in buffers.iter().enumerate() {
            match bytes_arg(b.data, b.len, "messages[i].data") {
                Ok(p) => payloads.push(p),
                Err(status) => return fail(status, format!("message {i}: {}", last_error())),
            }
        }
        let (queued, status) = match c.client.send_batch(&payloads) {
            Ok(queued) => (queued, LC_STATUS_OK),
            Err((queued, e)) => (queued, fail_with(e)),
        };
        if !out_queued.is_null() {
            write_out!(out_queued, queued);
        }
        status
    })
}

/// Closes the client: stops taking messages, writes what is queued (waiting
/// up to `timeout_ms` for a connection if there is none), says goodbye to
/// the server and stops reconnecting. The closed event follows.
///
/// Blocks up to about `timeout_ms`, except from inside a callback, where it
/// returns LC_STATUS_IN_PROGRESS at once and finishes in the background.
/// The disconnected and closed events are delivered to callbacks after the
/// session ends, so they may still be pending when this returns; freeing the
/// client right away drops them (lc_client_free() runs no more callbacks).
/// `out_unsent` may be NULL; otherwise receives the number of messages
/// discarded because the deadline passed. Returns LC_STATUS_OK when
/// everything was written (also when already closed), LC_STATUS_TIMEOUT when
/// messages were discarded, LC_STATUS_NULL_ARGUMENT, LC_STATUS_FORKED.
/// The client must still be freed with lc_client_free().
#[no_mangle]
pub unsafe extern "C" fn lc_client_close(client: *const lc_client, timeout_ms: u32, out_unsent: *mut u64) -> lc_status {
    with_client(client, |c| {
        let (status, unsent) = match c.client.close(Duration::from_millis(timeout_ms.into())) {
            Ok(CloseOutcome::Flushed) => (LC_STATUS_OK, 0),
            Ok(CloseOutcome::InProgress) => (LC_STATUS_IN_PROGRESS, 0),
            Ok(CloseOutcome::Unsent(n)) => {
                (fail(LC_STATUS_TIMEOUT, format!("close deadline passed; {n} messages were not sent")), n)
            }
            Err(e) => (fail_with(e), 0),
        };
        if !out_unsent.is_null() {
            write_out!(out_unsent, unsent);
        }
        status
    })
}

/// Writes the client's current state to `out_state` (not NULL).
#[no_mangle]
pub unsafe extern "C" fn lc_client_state(client: *const lc_client, out_state: *mut lc_state) -> lc_status {
    with_client(client, |c| {
        require_out!(out_state, "out_state");
        write_out!(out_state, c.client.state().into());
        LC_STATUS_OK
    })
}

/// Writes the client's counters to `out_stats` (not NULL). Any thread.
#[no_mangle]
pub unsafe extern "C" fn lc_client_stats(client: *const lc_client, out_stats: *mut lc_stats) -> lc_status {
    with_client(client, |c| {
        require_out!(out_stats, "out_stats");
        let s = c.client.stats();
        write_out!(
            out_stats,
            lc_stats {
                messages_out: s.messages_out,
                bytes_out: s.bytes_out,
                messages_in: s.messages_in,
                bytes_in: s.bytes_in,
                reconnects: s.reconnects,
                queued_messages: s.queued_messages,
                queued_bytes: s.queued_bytes,
                last_rtt_us: s.last_rtt_us,
            }
        );
        LC_STATUS_OK
    })
}

/// Changes heartbeat timing while the client runs (same rules as
/// lc_config_set_heartbeat()); applies at once, also to a live connection.
#[no_mangle]
pub unsafe extern "C" fn lc_client_set_heartbeat(
    client: *const lc_client,
    interval_ms: u32,
    timeout_ms: u32,
) -> lc_status {
    with_client(client, |c| match heartbeat_policy(interval_ms, timeout_ms) {
        Ok(policy) => status_from(c.client.set_heartbeat(policy)),
        Err(status) => status,
    })
}

/// Changes the reconnection schedule while the client runs (same rules as
/// lc_config_set_reconnect()); applies from the next delay on.
#[no_mangle]
pub unsafe extern "C" fn lc_client_set_reconnect(
    client: *const lc_client,
    initial_ms: u32,
    max_ms: u32,
    multiplier: f64,
    jitter: f64,
    max_attempts: u32,
) -> lc_status {
    with_client(client, |c| {
        let base = c.client.config().backoff;
        match backoff_policy(base, initial_ms, max_ms, multiplier, jitter, max_attempts) {
            Ok(policy) => status_from(c.client.set_backoff(policy)),
            Err(status) => status,
        }
    })
}
