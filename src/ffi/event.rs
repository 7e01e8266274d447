//! Events: callbacks, the pull API (lc_client_poll) and the event descriptor.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Arc, MutexGuard};

use super::boundary::timeout_from_ms;
use super::client::{lc_client, lc_state, with_client};
use super::status::*;
use crate::client::EventHandler;
use crate::event::{DisconnectReason, ErrorKind, Event};

/// What happened.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lc_event_kind {
    /// A connection is up (`text`: the peer address).
    LC_EVENT_CONNECTED = 1,
    /// The connection dropped (`reason`, `text`: details).
    LC_EVENT_DISCONNECTED = 2,
    /// The next attempt is `attempt`, after `delay_ms`.
    LC_EVENT_RECONNECT_SCHEDULED = 3,
    /// A message arrived (`data`, `len`).
    LC_EVENT_MESSAGE = 4,
    /// Something failed (`error`, `text`); reconnection carries on unless `error` is LC_ERROR_GAVE_UP.
    LC_EVENT_ERROR = 5,
    /// The client stopped for good; `unsent` queued messages were discarded. The last event.
    LC_EVENT_CLOSED = 6,
}

/// Why a connection dropped.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lc_disconnect_reason {
    LC_DISCONNECT_NONE = 0,
    /// The server closed the connection.
    LC_DISCONNECT_PEER_CLOSED = 1,
    /// A socket read or write failed.
    LC_DISCONNECT_IO = 2,
    /// Nothing arrived from the server within the heartbeat timeout.
    LC_DISCONNECT_HEARTBEAT_TIMEOUT = 3,
    /// The server sent bytes that are not valid frames.
    LC_DISCONNECT_PROTOCOL = 4,
    /// The server sent a frame above the maximum frame size.
    LC_DISCONNECT_FRAME_TOO_LARGE = 5,
    /// The application closed the client.
    LC_DISCONNECT_CLOSED_BY_USER = 6,
}

/// What failed, in error events.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lc_error_kind {
    LC_ERROR_NONE = 0,
    LC_ERROR_CONNECT_FAILED = 1,
    LC_ERROR_HANDSHAKE_FAILED = 2,
    LC_ERROR_PROTOCOL = 3,
    LC_ERROR_FRAME_TOO_LARGE = 4,
    LC_ERROR_HEARTBEAT_TIMEOUT = 5,
    LC_ERROR_IO = 6,
    /// Reconnection stopped after the configured number of attempts; the client closes.
    LC_ERROR_GAVE_UP = 7,
}

/// One event. Fields that do not apply to `kind` are zero (`text`: "").
/// All pointers are owned by the library; see the callback and
/// lc_client_poll() for how long they stay valid.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lc_event {
    pub kind: lc_event_kind,
    /// The client's state when the event was delivered.
    pub state: lc_state,
    pub reason: lc_disconnect_reason,
    pub error: lc_error_kind,
    /// Reconnect attempt number, from 1.
    pub attempt: u32,
    pub delay_ms: u64,
    /// Messages discarded at close.
    pub unsent: u64,
    /// Message payload; NULL when `len` is 0.
    pub data: *const u8,
    pub len: usize,
    /// NUL-terminated UTF-8 description; never NULL.
    pub text: *const c_char,
    /// For messages: true for a WebSocket text message (valid UTF-8), false
    /// for binary (every message on the TCP transports).
    pub is_text: bool,
}

/// Receives every event (messages too, unless a message callback is set).
/// `event` and everything it points to are valid only during the call.
pub type lc_event_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const lc_event)>;

/// Receives one message; `data` (NULL when `len` is 0) is valid only during
/// the call. `is_text` is true for a WebSocket text message (valid UTF-8).
pub type lc_message_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, data: *const u8, len: usize, is_text: bool)>;

/// The C callbacks of one client.
#[derive(Clone, Copy)]
pub(crate) struct CallbackSet {
    event: lc_event_cb,
    event_data: *mut c_void,
    message: lc_message_cb,
    message_data: *mut c_void,
}

impl Default for CallbackSet {
    fn default() -> Self {
        CallbackSet { event: None, event_data: std::ptr::null_mut(), message: None, message_data: std::ptr::null_mut() }
    }
}

// SAFETY: registering a callback promises (documented) that it and its
// user_data may be used from the library's callback thread.
unsafe impl Send for CallbackSet {}
// SAFETY: as above; the set is only read after registration.
unsafe impl Sync for CallbackSet {}

struct CHandler {
    callbacks: CallbackSet,
    state_of: Box<dyn Fn() -> lc_state + Send + Sync>,
}

impl EventHandler for CHandler {
    fn on_event(&self, event: &Event) {
        match event {
            Event::Message(payload) => return self.on_message(payload, false),
            Event::Text(payload) => return self.on_message(payload, true),
            _ => {}
        }
        if let Some(on_event) = self.callbacks.event {
            let text = event_text(event);
            let c_event = to_c_event(event, &text, (self.state_of)());
            // SAFETY: the application registered this callback; `c_event` and
            // `text` outlive the call.
            unsafe { on_event(self.callbacks.event_data, &c_event) };
        }
    }

    /// Messages go to C straight from the shared read buffer, without a copy.
    fn on_message(&self, payload: &[u8], text: bool) {
        let cb = &self.callbacks;
        let data = if payload.is_empty() { std::ptr::null() } else { payload.as_ptr() };
        if let Some(on_message) = cb.message {
            // SAFETY: the application registered this callback; `data` is
            // valid for `len` bytes during the call.
            unsafe { on_message(cb.message_data, data, payload.len(), text) };
        } else if let Some(on_event) = cb.event {
            let mut c_event = blank_event(lc_event_kind::LC_EVENT_MESSAGE, c"", (self.state_of)());
            c_event.data = data;
            c_event.len = payload.len();
            c_event.is_text = text;
            // SAFETY: as above; the event and the payload outlive the call.
            unsafe { on_event(cb.event_data, &c_event) };
        }
    }
}

fn event_text(event: &Event) -> CString {
    let text = match event {
        Event::Connected { peer } => peer.clone(),
        Event::Disconnected { detail, .. } | Event::Error { detail, .. } => detail.clone(),
        Event::ReconnectScheduled { attempt, delay } => {
            format!("reconnect attempt {attempt} in {} ms", delay.as_millis())
        }
        Event::Message(_) | Event::Text(_) => String::new(),
        Event::Closed { unsent } => format!("closed; {unsent} messages unsent"),
    };
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

/// An event of `kind` with every other field zero.
fn blank_event(kind: lc_event_kind, text: &CStr, state: lc_state) -> lc_event {
    lc_event {
        kind,
        state,
        reason: lc_disconnect_reason::LC_DISCONNECT_NONE,
        error: lc_error_kind::LC_ERROR_NONE,
        attempt: 0,
        delay_ms: 0,
        unsent: 0,
        data: std::ptr::null(),
        len: 0,
        text: text.as_ptr(),
        is_text: false,
    }
}

fn to_c_event(event: &Event, text: &CStr, state: lc_state) -> lc_event {
    let mut e = blank_event(lc_event_kind::LC_EVENT_CONNECTED, text, state);
    match event {
        Event::Connected { .. } => {}
        Event::Disconnected { reason, .. } => {
            e.kind = lc_event_kind::LC_EVENT_DISCONNECTED;
            e.reason = match reason {
                DisconnectReason::PeerClosed => lc_disconnect_reason::LC_DISCONNECT_PEER_CLOSED,
                DisconnectReason::Io => lc_disconnect_reason::LC_DISCONNECT_IO,
                DisconnectReason::HeartbeatTimeout => lc_disconnect_reason::LC_DISCONNECT_HEARTBEAT_TIMEOUT,
                DisconnectReason::Protocol => lc_disconnect_reason::LC_DISCONNECT_PROTOCOL,
                DisconnectReason::FrameTooLarge => lc_disconnect_reason::LC_DISCONNECT_FRAME_TOO_LARGE,
                DisconnectReason::ClosedByUser => lc_disconnect_reason::LC_DISCONNECT_CLOSED_BY_USER,
            };
        }
        Event::ReconnectScheduled { attempt, delay } => {
            e.kind = lc_event_kind::LC_EVENT_RECONNECT_SCHEDULED;
            e.attempt = *attempt;
            e.delay_ms = delay.as_millis() as u64;
        }
        Event::Message(payload) | Event::Text(payload) => {
            e.kind = lc_event_kind::LC_EVENT_MESSAGE;
            e.is_text = matches!(event, Event::Text(_));
            if !payload.is_empty() {
                e.data = payload.as_ptr();
                e.len = payload.len();
            }
        }
        Event::Error { kind, .. } => {
            e.kind = lc_event_kind::LC_EVENT_ERROR;
            e.error = match kind {
                ErrorKind::ConnectFailed => lc_error_kind::LC_ERROR_CONNECT_FAILED,
                ErrorKind::HandshakeFailed => lc_error_kind::LC_ERROR_HANDSHAKE_FAILED,
                ErrorKind::Protocol => lc_error_kind::LC_ERROR_PROTOCOL,
                ErrorKind::FrameTooLarge => lc_error_kind::LC_ERROR_FRAME_TOO_LARGE,
                ErrorKind::HeartbeatTimeout => lc_error_kind::LC_ERROR_HEARTBEAT_TIMEOUT,
                ErrorKind::Io => lc_error_kind::LC_ERROR_IO,
                ErrorKind::GaveUp => lc_error_kind::LC_ERROR_GAVE_UP,
            };
        }
        Event::Closed { unsent } => {
            e.kind = lc_event_kind::LC_EVENT_CLOSED;
            e.unsent = *unsent;
        }
    }
    e
}

/// An event returned by lc_client_poll(), kept until the next poll.
pub(crate) struct PolledEvent {
    _event: Event,
    _text: CString,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn install(client: &lc_client, update: impl FnOnce(&mut CallbackSet)) -> lc_status {
    let mut set = lock(&client.callbacks);
    update(&mut set);
    let handler = if set.event.is_some() || set.message.is_some() {
        let state_source = client.client.state_source();
        Some(Arc::new(CHandler { callbacks: *set, state_of: Box::new(move || state_source().into()) })
            as Arc<dyn EventHandler>)
    } else {
        None
    };
    drop(set);
    status_from(client.client.set_handler(handler))
}

/// Registers the event callback; NULL removes it.
///
/// With any callback registered, events go to callbacks; with none, they
/// wait for lc_client_poll(). Events without a matching callback (for
/// example errors when only a message callback is set) are discarded.
/// Callbacks run on a library thread (never the caller's, never an I/O
/// thread), one at a time per client, in order. Inside a callback you may
/// call any function of this client, including lc_client_send(),
/// lc_client_close() (returns LC_STATUS_IN_PROGRESS) and lc_client_free().
/// Callbacks must not unwind (C++ exceptions, longjmp) across the library.
/// `user_data` is passed through untouched and must be usable from the
/// callback thread. Register before lc_client_connect() to see every event.
#[no_mangle]
pub unsafe extern "C" fn lc_client_set_event_callback(
    client: *const lc_client,
    callback: lc_event_cb,
    user_data: *mut c_void,
) -> lc_status {
    with_client(client, |c| {
        install(c, |set| {
            set.event = callback;
            set.event_data = user_data;
        })
    })
}

/// Registers a callback for messages only; NULL removes it. Messages then no
/// longer reach the event callback. Same rules as lc_client_set_event_callback().
#[no_mangle]
pub unsafe extern "C" fn lc_client_set_message_callback(
    client: *const lc_client,
    callback: lc_message_cb,
    user_data: *mut c_void,
) -> lc_status {
    with_client(client, |c| {
        install(c, |set| {
            set.message = callback;
            set.message_data = user_data;
        })
    })
}

/// Takes the next event when no callback is registered.
///
/// Waits up to `timeout_ms` (0: do not wait; negative: wait indefinitely).
/// On LC_STATUS_OK, `*out_event` (not NULL) holds the event; its pointers stay
/// valid until the next lc_client_poll() or lc_client_free() on this client.
/// Returns LC_STATUS_TIMEOUT when no event arrived in time, and
/// LC_STATUS_CLOSED at once when the client has stopped and its closed event
/// has already been taken (nothing more will come). Poll one client from one
/// thread at a time.
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
        let text = event_text(&event);
        let c_event = to_c_event(&event, &text, c.client.state().into());
        // Payload bytes and text live in the heap, so moving them keeps the pointers valid.
        *lock(&c.polled) = Some(PolledEvent { _event: event, _text: text });
        write_out!(out_event, c_event);
        LC_STATUS_OK
    })
}

/// Takes many waiting messages in one call, when no callback is registered:
/// the fast way to drain a busy client from an event loop or another language.
///
/// Waits up to `timeout_ms` (0: do not wait; negative: indefinitely) for an
/// event, then copies waiting messages, oldest first, back to back into
/// `buffer` (`buffer_len` bytes) and their lengths into `lengths` (room for
/// `max_messages`), until either is full or the next event is not a message.
/// If `is_text` is not NULL (room for `max_messages`), it receives for each
/// message whether it is a WebSocket text message (always false on the TCP
/// transports). `*out_count` (not NULL) receives how many were copied. Returns
/// LC_STATUS_OK with a count of 0 when the next event is not a message (take
/// it with lc_client_poll()), LC_STATUS_TIMEOUT when nothing arrived in time,
/// LC_STATUS_CLOSED as lc_client_poll(),
/// and LC_STATUS_INVALID_ARGUMENT when the next message alone is larger than
/// `buffer_len` (lc_last_error_message() says how large; a buffer of the
/// maximum frame size always fits). `buffer` and `lengths` may be NULL only
/// when their sizes are 0. Poll one client from one thread at a time.
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
        if (buffer.is_null() && buffer_len > 0) || (lengths.is_null() && max_messages > 0) {
            return fail(LC_STATUS_NULL_ARGUMENT, "buffer or lengths is NULL but its size is not 0");
        }
        let buffer: &mut [u8] = if buffer_len == 0 {
            &mut []
        } else {
            // SAFETY: non-NULL, and the caller promises `buffer_len` writable bytes for the call.
            unsafe { std::slice::from_raw_parts_mut(buffer, buffer_len) }
        };
        let lengths: &mut [usize] = if max_messages == 0 {
            &mut []
        } else {
            // SAFETY: non-NULL, and the caller promises room for `max_messages` lengths for the call.
            unsafe { std::slice::from_raw_parts_mut(lengths, max_messages) }
        };
        let is_text: &mut [bool] = if is_text.is_null() || max_messages == 0 {
            &mut []
        } else {
            // SAFETY: non-NULL, and the caller promises room for `max_messages` flags for the call.
            unsafe { std::slice::from_raw_parts_mut(is_text, max_messages) }
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

/// Writes a file descriptor to `out_fd` (not NULL) that is readable while
/// events wait for lc_client_poll(). For select/poll/epoll loops: wait for
/// readability, then call lc_client_poll() with timeout 0 until it returns
/// LC_STATUS_TIMEOUT. Owned by the client: do not read, write or close it;
/// it is closed by lc_client_free(). Made on the first call (a client that
/// never asks uses no descriptor for it); LC_STATUS_RUNTIME if the process
/// is out of descriptors.
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
