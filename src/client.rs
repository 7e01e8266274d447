//! `lc_client`: every function that acts on a client — creating, connecting,
//! sending, closing and freeing it, its callbacks, polling and its event
//! descriptor.

use std::ffi::{c_char, c_int, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use longconn_core::lock::lock;
use longconn_core::{Client, CloseOutcome, EventHandler};

use crate::boundary::{self, bytes_arg, slice_arg, slice_arg_mut, timeout_from_ms};
use crate::config::{backoff_policy, heartbeat_policy, lc_config};
use crate::event::{event_text, to_c_event, CHandler, CallbackSet, PolledEvent};
use crate::event::{lc_event, lc_event_cb, lc_message_cb, lc_messages_cb, lc_state};
use crate::status::*;

/// A client keeping one connection alive. Thread-safe: any thread may call
/// any function on it at the same time as other threads, except that
/// lc_client_free() must not race with other calls on the same client.
pub struct lc_client {
    client: Client,
    /// The C callbacks, changed under this lock and handed to the core as one handler.
    callbacks: Mutex<CallbackSet>,
    /// The event lc_client_poll() returned last, kept alive for its pointers.
    polled: Mutex<Option<PolledEvent>>,
}

impl lc_client {
    /// The core client behind the handle.
    pub(crate) fn core(&self) -> &Client {
        &self.client
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
    /// Every message up to this number (see lc_client_send_seq()) is done
    /// with: acknowledged by the server under acknowledged delivery, or
    /// handed to the socket under best effort.
    pub acked_number: u64,
    /// Written messages still waiting for the server's acknowledgement
    /// (also counted in `queued_messages`).
    pub unacked_messages: u64,
    /// The server of the current connection, or of the last one: its place
    /// in the list (0: the URL given to lc_config_new(), then in the order
    /// of lc_config_add_server()).
    pub server_index: u64,
    /// With an outbox file (lc_config_set_outbox_path()): the highest
    /// message number it held when the client was created; the client's
    /// numbering goes on after it, so a restarted program knows where its
    /// own stopped. 0 without one.
    pub restored_number: u64,
}

/// One message for lc_client_send_batch(): `len` bytes at `data`
/// (NULL allowed when `len` is 0).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lc_buffer {
    pub data: *const u8,
    pub len: usize,
}

/// Runs `f` on the client behind `client`, inside the panic boundary.
fn with_client(client: *const lc_client, f: impl FnOnce(&lc_client) -> lc_status) -> lc_status {
    ffi_guard!({
        let client = deref_or_fail!(client, "client");
        f(client)
    })
}

/// Creates a client from `config`.
///
/// `config`: not NULL; borrowed and copied, so it may be changed or freed
/// afterwards without affecting the client. `out_client`: not NULL; on
/// success receives a new client that the caller owns and must free with
/// lc_client_free(); untouched on failure. The client does nothing until
/// lc_client_connect(); messages sent before then are queued.
///
/// Any thread; also from a callback.
/// Returns LC_STATUS_OK, or LC_STATUS_NULL_ARGUMENT, LC_STATUS_INVALID_ARGUMENT
/// (inconsistent settings, or a TLS file that cannot be read), LC_STATUS_FORKED,
/// LC_STATUS_PANIC.
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
/// `client`: consumed; must not be used afterwards. If the client is still
/// open, it stops at once: queued messages are discarded (call
/// lc_client_close() first to flush them). Once this returns, no callback of
/// this client runs again; if a callback of this client is running on
/// another thread, this waits for it to return. May be called from inside
/// one of this client's own callbacks: the remaining callbacks are then
/// skipped. Any thread. In a fork() child the handle is leaked, not freed.
#[no_mangle]
pub unsafe extern "C" fn lc_client_free(client: *mut lc_client) {
    // SAFETY: the caller passes a handle from lc_client_new, freed once (documented).
    unsafe { boundary::free_boxed(client) }
}

/// Starts connecting in the background and returns at once. Progress is
/// reported through events (connected, error, reconnect scheduled, ...).
///
/// `client`: not NULL, borrowed. Any thread; also from a callback.
/// Returns LC_STATUS_OK, or LC_STATUS_NULL_ARGUMENT, LC_STATUS_ALREADY_STARTED
/// (called twice), LC_STATUS_CLOSED (after lc_client_close()), LC_STATUS_RUNTIME
/// (the I/O threads could not start), LC_STATUS_FORKED, LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_client_connect(client: *const lc_client) -> lc_status {
    with_client(client, |c| status_from(c.client.connect()))
}

/// Queues a copy of `len` bytes at `data` as one message and returns at once.
///
/// Messages go out in the order they were sent, also across reconnects.
/// On plain TCP and WebSocket, a message sent while nothing else is queued
/// and the connection is idle is handed to the socket from the calling
/// thread, with a write that never waits; the rest of it, if the socket
/// takes only part, is written by the library's I/O thread.
/// `client`: not NULL, borrowed. `data`: borrowed for the call; NULL only
/// when `len` is 0. Any thread, several at once; also from a callback.
/// Returns LC_STATUS_OK, or LC_STATUS_QUEUE_FULL when the outbox is at its
/// limit (the message was not queued; try again later, or use
/// lc_client_send_wait()), LC_STATUS_MESSAGE_TOO_LARGE above the maximum
/// frame size, LC_STATUS_INVALID_ARGUMENT for a newline in line framing,
/// LC_STATUS_CLOSED after lc_client_close(), LC_STATUS_NULL_ARGUMENT,
/// LC_STATUS_FORKED, LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_client_send(client: *const lc_client, data: *const u8, len: usize) -> lc_status {
    with_client(client, |c| match bytes_arg(data, len, "data") {
        Ok(payload) => status_from(c.client.send(payload)),
        Err(status) => status,
    })
}

/// Like lc_client_send(), also giving the message's number: messages are
/// numbered from 1 in the client's life, in the order they were queued.
/// LC_EVENT_ACKNOWLEDGED events and lc_stats.acked_number speak of these
/// numbers, so the application can tell when the server has this message.
///
/// `out_seq`: not NULL; receives the number on success only. Threads and
/// the other statuses as lc_client_send().
#[no_mangle]
pub unsafe extern "C" fn lc_client_send_seq(
    client: *const lc_client,
    data: *const u8,
    len: usize,
    out_seq: *mut u64,
) -> lc_status {
    with_client(client, |c| {
        require_out!(out_seq, "out_seq");
        match bytes_arg(data, len, "data") {
            Ok(payload) => match c.client.send_numbered(payload, false) {
                Ok(seq) => {
                    write_out!(out_seq, seq);
                    LC_STATUS_OK
                }
                Err(e) => status_from(Err(e)),
            },
            Err(status) => status,
        }
    })
}

/// Queues a copy of `len` bytes at `text` as a WebSocket text message; on the
/// TCP transports it is the same as lc_client_send().
///
/// `text`: borrowed for the call; valid UTF-8, not NUL-terminated (`len`
/// counts the bytes); NULL only when `len` is 0. Invalid UTF-8 gives
/// LC_STATUS_INVALID_UTF8 and queues nothing. Threads and the other statuses
/// as lc_client_send().
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
/// `client`: not NULL, borrowed. `data`: borrowed for the call; NULL only
/// when `len` is 0. Any thread. From a callback it does not wait (the
/// callback thread serves other clients too): it tries once.
/// Returns LC_STATUS_OK, or LC_STATUS_QUEUE_FULL if no room came in time
/// (nothing was queued), LC_STATUS_CLOSED if the client is closed, or is
/// closed or freed while this waits, LC_STATUS_INVALID_UTF8 (with `text`),
/// and the other statuses of lc_client_send().
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
        Ok(bytes) => status_from(c.client.send_wait(bytes, text, timeout_from_ms(timeout_ms)).map(drop)),
        Err(status) => status,
    })
}

/// Queues copies of `count` messages, in order, in one call: the cheaper
/// way to send many small messages.
///
/// `client`: not NULL, borrowed. `messages`: `count` buffers, all borrowed
/// for the call; NULL only when `count` is 0. Every message is checked
/// first; if one is bad (NULL data with a length, too large, a newline in
/// line framing), nothing is queued. If the outbox fills part-way, the first
/// messages stay queued and LC_STATUS_QUEUE_FULL is returned. `out_queued`:
/// may be NULL; otherwise it receives how many messages were queued, on
/// success and on every failure (0 when nothing was). Any thread; also from
/// a callback. Returns LC_STATUS_OK, or LC_STATUS_QUEUE_FULL,
/// LC_STATUS_NULL_ARGUMENT, and the other statuses of lc_client_send().
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
        let buffers = match slice_arg(messages, count, "messages") {
            Ok(buffers) => buffers,
            Err(status) => return status,
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
/// `client`: not NULL, borrowed; it must still be freed with
/// lc_client_free(). Blocks up to about `timeout_ms`, except from inside a
/// callback, where it returns LC_STATUS_IN_PROGRESS at once and finishes in
/// the background. Any thread. The disconnected and closed events are
/// delivered to callbacks after the session ends, so they may still be
/// pending when this returns; freeing the client right away drops them
/// (lc_client_free() runs no more callbacks). `out_unsent`: may be NULL;
/// otherwise receives, on every return, the number of messages discarded
/// because the deadline passed (0 unless LC_STATUS_TIMEOUT). Returns
/// LC_STATUS_OK when everything was written (also when already closed),
/// LC_STATUS_IN_PROGRESS (from a callback), LC_STATUS_TIMEOUT when messages
/// were discarded, or when the session did not stop within 2 s after the
/// deadline, LC_STATUS_NULL_ARGUMENT, LC_STATUS_FORKED, LC_STATUS_PANIC.
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

/// Writes the client's current state to `out_state`.
///
/// `client`: not NULL, borrowed. `out_state`: not NULL; written on success.
/// Any thread; also from a callback. Returns LC_STATUS_OK, or
/// LC_STATUS_NULL_ARGUMENT, LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_client_state(client: *const lc_client, out_state: *mut lc_state) -> lc_status {
    with_client(client, |c| {
        require_out!(out_state, "out_state");
        write_out!(out_state, c.client.state().into());
        LC_STATUS_OK
    })
}

/// Writes the client's counters to `out_stats`.
///
/// `client`: not NULL, borrowed. `out_stats`: not NULL; written on success.
/// Any thread; also from a callback. Returns LC_STATUS_OK, or
/// LC_STATUS_NULL_ARGUMENT, LC_STATUS_PANIC.
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
                acked_number: s.acked_number,
                unacked_messages: s.unacked_messages,
                server_index: s.server_index,
                restored_number: s.restored_number,
            }
        );
        LC_STATUS_OK
    })
}

/// Changes heartbeat timing while the client runs (same rules as
/// lc_config_set_heartbeat()); applies at once, also to a live connection.
///
/// `client`: not NULL, borrowed. Any thread; also from a callback.
/// Returns LC_STATUS_OK, or LC_STATUS_INVALID_ARGUMENT (timeout not above
/// the interval), LC_STATUS_NULL_ARGUMENT, LC_STATUS_PANIC.
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
///
/// `client`: not NULL, borrowed. Any thread; also from a callback.
/// Returns LC_STATUS_OK, or LC_STATUS_INVALID_ARGUMENT (see
/// lc_config_set_reconnect()), LC_STATUS_NULL_ARGUMENT, LC_STATUS_PANIC.
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

/// Changes the client's callbacks under its lock and hands the core one handler.
fn install(client: &lc_client, update: impl FnOnce(&mut CallbackSet)) -> lc_status {
    let mut set = lock(&client.callbacks);
    update(&mut set);
    let handler = set.any().then(|| Arc::new(CHandler(*set)) as Arc<dyn EventHandler>);
    drop(set);
    status_from(client.client.set_handler(handler))
}

/// Registers the event callback; NULL removes it.
///
/// With any callback registered, events go to callbacks; with none, they
/// wait for lc_client_poll(). Events without a matching callback (for
/// example errors when only a message callback is set) are discarded.
/// Callbacks run on a library thread (never the caller's, never an I/O
/// thread unless lc_config_set_callbacks_on_io_thread() asked for it), one
/// at a time per client, in order. Inside a callback you may
/// call any function of this client, including lc_client_send(),
/// lc_client_close() (returns LC_STATUS_IN_PROGRESS) and lc_client_free().
/// Callbacks must not unwind (C++ exceptions, longjmp) across the library.
/// Register before lc_client_connect() to see every event.
///
/// `client`: not NULL, borrowed. `callback`: may be NULL. `user_data`: passed
/// through untouched, never dereferenced by the library; it must stay usable
/// from the callback thread until the callback is replaced or the client is
/// freed. Any thread; also from a callback. Returns LC_STATUS_OK, or
/// LC_STATUS_NULL_ARGUMENT, LC_STATUS_RUNTIME (the callback thread could not
/// start), LC_STATUS_FORKED, LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_client_set_event_callback(
    client: *const lc_client,
    callback: lc_event_cb,
    user_data: *mut c_void,
) -> lc_status {
    with_client(client, |c| install(c, |set| set.set_event(callback, user_data)))
}

/// Registers a callback for messages only; NULL removes it. Messages then no
/// longer reach the event callback. Pointers, threads and statuses as
/// lc_client_set_event_callback().
#[no_mangle]
pub unsafe extern "C" fn lc_client_set_message_callback(
    client: *const lc_client,
    callback: lc_message_cb,
    user_data: *mut c_void,
) -> lc_status {
    with_client(client, |c| install(c, |set| set.set_message(callback, user_data)))
}

/// Registers a callback that takes received messages in batches, one call
/// for the messages one read produced (all text or all binary), instead of
/// a call per message: the cheap way to receive many small messages,
/// especially from another language. While set, messages reach neither the
/// message nor the event callback. NULL removes it. Pointers, threads and
/// statuses as lc_client_set_event_callback().
#[no_mangle]
pub unsafe extern "C" fn lc_client_set_messages_callback(
    client: *const lc_client,
    callback: lc_messages_cb,
    user_data: *mut c_void,
) -> lc_status {
    with_client(client, |c| install(c, |set| set.set_messages(callback, user_data)))
}

/// Takes the next event, in poll mode (no callback registered).
///
/// Waits up to `timeout_ms` (0: do not wait; negative: wait indefinitely).
/// `client`: not NULL, borrowed. `out_event`: not NULL; written on
/// LC_STATUS_OK only; its pointers are owned by the client and stay valid
/// until the next lc_client_poll() or lc_client_free() on this client.
/// Poll one client from one thread at a time; any thread, but not from a
/// callback with a timeout other than 0 (it would hold up the callback
/// thread, which serves every client). Returns LC_STATUS_OK, or
/// LC_STATUS_TIMEOUT when no event arrived in time, LC_STATUS_CLOSED at once
/// when the client has stopped and its closed event has already been taken
/// (nothing more will come), LC_STATUS_NULL_ARGUMENT, LC_STATUS_FORKED,
/// LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_client_poll(
    client: *const lc_client,
    timeout_ms: i32,
    out_event: *mut lc_event,
) -> lc_status {
    with_client(client, |c| {
        require_out!(out_event, "out_event");
        let timeout = timeout_from_ms(timeout_ms);
        let event = match c.client.poll(timeout) {
            Ok(Some(event)) => event,
            Ok(None) => return LC_STATUS_TIMEOUT,
            Err(e) => return fail_with(e),
        };
        // A message has no text: no allocation for it on the busiest path.
        let text = event.as_message().is_none().then(|| event_text(&event));
        let c_event = to_c_event(&event, text.as_deref().unwrap_or(c""), c.client.state().into());
        // Payload bytes and text live in the heap, so moving them keeps the pointers valid.
        *lock(&c.polled) = Some(PolledEvent { _event: event, _text: text });
        write_out!(out_event, c_event);
        LC_STATUS_OK
    })
}

/// Takes many waiting messages in one call, in poll mode: the fast way to
/// drain a busy client from an event loop or another language.
///
/// Waits up to `timeout_ms` (0: do not wait; negative: indefinitely) for an
/// event, then copies waiting messages, oldest first, back to back into
/// `buffer` (`buffer_len` bytes) and their lengths into `lengths` (room for
/// `max_messages`, at least 1), until either is full or the next event is
/// not a message. `buffer`, `lengths`: caller-owned, written during the
/// call; `buffer` NULL only when `buffer_len` is 0. `is_text`: may be NULL; otherwise room for
/// `max_messages` flags, each true for a WebSocket text message (always
/// false on the TCP transports). `out_count`: not NULL; receives how many
/// messages were copied on every return once `client` and it are checked,
/// failures included (0 then). Threads as lc_client_poll().
/// Returns LC_STATUS_OK (a count of 0 means the next event is not a message:
/// take it with lc_client_poll()), LC_STATUS_TIMEOUT when nothing arrived in
/// time, LC_STATUS_CLOSED as lc_client_poll(), LC_STATUS_INVALID_ARGUMENT
/// when the next message alone is larger than `buffer_len`
/// (lc_last_error_message() says how large; a buffer of the maximum frame
/// size always fits), when `max_messages` is 0, or when a size is larger
/// than any buffer can be, LC_STATUS_NULL_ARGUMENT, LC_STATUS_FORKED, LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_client_poll_messages(
    client: *const lc_client,
    timeout_ms: i32,
    buffer: *mut u8,
    buffer_len: usize,
    lengths: *mut usize,
    is_text: *mut bool,
    max_messages: usize,
    out_count: *mut usize,
) -> lc_status {
    with_client(client, |c| {
        require_out!(out_count, "out_count");
        write_out!(out_count, 0);
        if max_messages == 0 {
            // A count of 0 would read as "the next event is not a message".
            return fail(LC_STATUS_INVALID_ARGUMENT, "max_messages is 0: there is no room for a message");
        }
        let slices = slice_arg_mut(buffer, buffer_len, "buffer").and_then(|buffer| {
            let lengths = slice_arg_mut(lengths, max_messages, "lengths")?;
            let is_text = if is_text.is_null() { &mut [] } else { slice_arg_mut(is_text, max_messages, "is_text")? };
            Ok((buffer, lengths, is_text))
        });
        let (buffer, lengths, is_text): (&mut [u8], &mut [usize], &mut [bool]) = match slices {
            Ok(slices) => slices,
            Err(status) => return status,
        };
        let timeout = timeout_from_ms(timeout_ms);
        let (mut count, mut used, mut refused) = (0usize, 0usize, None);
        let result = c.client.poll_messages(timeout, |message, text| {
            if count == lengths.len() || used + message.len() > buffer.len() {
                refused = Some(message.len());
                return false;
            }
            buffer[used..used + message.len()].copy_from_slice(message);
            lengths[count] = message.len();
            if let Some(flag) = is_text.get_mut(count) {
                *flag = text;
            }
            used += message.len();
            count += 1;
            true
        });
        write_out!(out_count, count);
        match (result, refused) {
            (Err(e), _) => fail_with(e),
            (Ok(None), _) => LC_STATUS_TIMEOUT,
            (Ok(Some(0)), Some(needed)) if needed > buffer.len() => fail(
                LC_STATUS_INVALID_ARGUMENT,
                format!("buffer of {} bytes is too small: the next message has {needed} bytes", buffer.len()),
            ),
            (Ok(Some(_)), _) => LC_STATUS_OK,
        }
    })
}

/// Writes a file descriptor to `out_fd` that is readable while events wait
/// for lc_client_poll(). For select/poll/epoll loops: wait for readability,
/// then call lc_client_poll() with timeout 0 until it returns
/// LC_STATUS_TIMEOUT.
///
/// `client`: not NULL, borrowed. `out_fd`: not NULL; written on success. The
/// descriptor is owned by the client: do not read, write or close it; it is
/// closed by lc_client_free(). Made on the first call (a client that never
/// asks uses no descriptor for it); later calls return the same one. Any
/// thread; also from a callback. Returns LC_STATUS_OK, or LC_STATUS_RUNTIME
/// if the process is out of descriptors, LC_STATUS_INVALID_ARGUMENT for a
/// client that does its I/O in poll (lc_config_set_io_in_poll()),
/// LC_STATUS_NULL_ARGUMENT, LC_STATUS_PANIC.
#[no_mangle]
pub unsafe extern "C" fn lc_client_event_fd(client: *const lc_client, out_fd: *mut c_int) -> lc_status {
    with_client(client, |c| {
        require_out!(out_fd, "out_fd");
        match c.client.event_fd() {
            Ok(fd) => {
                write_out!(out_fd, fd);
                LC_STATUS_OK
            }
            Err(e) => fail_with(e),
        }
    })
}
