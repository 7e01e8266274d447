//! `lc_event`: what a client reports, as C sees it, and the handler that
//! hands events to the C callbacks. The functions that register callbacks
//! and poll events act on a client and live with the other `lc_client_*`
//! functions in `client.rs`.

use std::ffi::{c_char, c_void, CStr, CString};

use longconn_core::event::{DisconnectReason, ErrorKind, Event, MessageBatch};
use longconn_core::{EventHandler, State};

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

/// What happened.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lc_event_kind {
    /// A connection is up (`text`: the peer address; `acknowledged`,
    /// `resumed`, `recovered` and `epoch`: the delivery guarantee in force).
    LC_EVENT_CONNECTED = 1,
    /// The connection dropped (`reason`, `text`: details).
    LC_EVENT_DISCONNECTED = 2,
    /// The next attempt is `attempt`, after `delay_ms`.
    LC_EVENT_RECONNECT_SCHEDULED = 3,
    /// A message arrived (`data`, `len`).
    LC_EVENT_MESSAGE = 4,
    /// Something failed (`error`, `text`); reconnection carries on unless `error` is LC_ERROR_GAVE_UP.
    LC_EVENT_ERROR = 5,
    /// The client stopped for good; `unsent` messages were discarded: queued,
    /// or written but not acknowledged under acknowledged delivery. The last event.
    LC_EVENT_CLOSED = 6,
    /// The server acknowledged every message up to number `seq` (acknowledged
    /// delivery only, and only after lc_config_set_acknowledgement_events()).
    LC_EVENT_ACKNOWLEDGED = 7,
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
    /// The server refused the client's credentials (the token the connect
    /// callback gives, missing or wrong); reconnection goes on.
    LC_ERROR_UNAUTHORIZED = 8,
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
    /// LC_EVENT_ACKNOWLEDGED: the highest message number acknowledged.
    pub seq: u64,
    /// LC_EVENT_CONNECTED: true under acknowledged delivery (protocol
    /// version 2: nothing lost, nothing twice, across reconnects and server
    /// restarts); false for best effort (a version 1 server, the plain
    /// framings, a WebSocket server without the longconn.v2 subprotocol).
    pub acknowledged: bool,
    /// LC_EVENT_CONNECTED: the server found this client's session and both
    /// directions continue where they stopped.
    pub resumed: bool,
    /// LC_EVENT_CONNECTED: nothing the server sent is missing (first
    /// session, or everything missed is replayed). False under acknowledged
    /// delivery means messages from the server were lost (its history was
    /// wiped or exceeded): resynchronise by other means.
    pub recovered: bool,
    /// LC_EVENT_CONNECTED: the epoch of the server's room history (0: none);
    /// it changes whenever that history was lost.
    pub epoch: u64,
    /// LC_EVENT_CONNECTED: the server's place in the list of servers (0:
    /// the URL given to lc_config_new(), then in the order of
    /// lc_config_add_server()).
    pub server_index: u32,
    /// LC_EVENT_MESSAGE from an event stream (http:// and https:// servers
    /// that send Server-Sent Events): its event type (`message` unless the
    /// stream named another) and the last event id (empty when none), as
    /// NUL-terminated UTF-8 valid as long as `data`; NULL for any other
    /// message or event.
    pub event_type: *const c_char,
    pub event_id: *const c_char,
}

/// Receives every event (messages too, unless a message callback is set).
/// `event` and everything it points to are valid only during the call.
pub type lc_event_cb = Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const lc_event)>;

/// Receives one message; `data` (NULL when `len` is 0) is valid only during
/// the call. `is_text` is true for a WebSocket text message (valid UTF-8).
pub type lc_message_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, data: *const u8, len: usize, is_text: bool)>;

/// One received message, as lc_messages_cb hands it over.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lc_message {
    /// The payload (NULL when `len` is 0), valid only during the call.
    pub data: *const u8,
    pub len: usize,
    /// A WebSocket text message (valid UTF-8), or an event stream's message.
    pub is_text: bool,
    /// An event stream's message: its event type and last event id, as in
    /// lc_event; NULL for other messages.
    pub event_type: *const c_char,
    pub event_id: *const c_char,
}

/// Receives the messages one read produced, oldest first: `count` (at
/// least 1) entries at `messages`, which and whose payloads are valid only
/// during the call.
pub type lc_messages_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, messages: *const lc_message, count: usize)>;

/// The C callbacks of one client.
#[derive(Clone, Copy)]
pub(crate) struct CallbackSet {
    event: lc_event_cb,
    event_data: *mut c_void,
    message: lc_message_cb,
    message_data: *mut c_void,
    messages: lc_messages_cb,
    messages_data: *mut c_void,
}

impl Default for CallbackSet {
    fn default() -> Self {
        CallbackSet {
            event: None,
            event_data: std::ptr::null_mut(),
            message: None,
            message_data: std::ptr::null_mut(),
            messages: None,
            messages_data: std::ptr::null_mut(),
        }
    }
}

// SAFETY: registering a callback promises (documented) that it and its
// user_data may be used from the library's callback thread.
unsafe impl Send for CallbackSet {}
// SAFETY: as above; the set is only read after registration.
unsafe impl Sync for CallbackSet {}

impl CallbackSet {
    /// Whether any callback is registered.
    pub(crate) fn any(&self) -> bool {
        self.event.is_some() || self.message.is_some() || self.messages.is_some()
    }

    pub(crate) fn set_event(&mut self, callback: lc_event_cb, user_data: *mut c_void) {
        self.event = callback;
        self.event_data = user_data;
    }

    pub(crate) fn set_message(&mut self, callback: lc_message_cb, user_data: *mut c_void) {
        self.message = callback;
        self.message_data = user_data;
    }

    pub(crate) fn set_messages(&mut self, callback: lc_messages_cb, user_data: *mut c_void) {
        self.messages = callback;
        self.messages_data = user_data;
    }
}

/// Hands a client's events to its C callbacks (on the callback thread).
pub(crate) struct CHandler(pub(crate) CallbackSet);

impl EventHandler for CHandler {
    fn on_event(&self, event: &Event, state: State) {
        match event {
            Event::Message(payload) => return self.on_message(payload, false, state),
            Event::Text(payload) => return self.on_message(payload, true, state),
            // With an event callback, an event stream's message goes there
            // with its label; a message callback alone gets the payload only.
            Event::Labeled { data, .. } if self.0.event.is_none() => return self.on_message(data, true, state),
            _ => {}
        }
        if let Some(on_event) = self.0.event {
            let text = event_text(event);
            let c_event = to_c_event(event, &text, state.into());
            // SAFETY: the application registered this callback; `c_event` and
            // `text` outlive the call.
            unsafe { on_event(self.0.event_data, &c_event) };
        }
    }

    fn takes_batches(&self) -> bool {
        self.0.messages.is_some()
    }

    /// One call for the messages of one read, each pointing into the shared
    /// read buffer; the list itself is the only allocation.
    fn on_messages(&self, batch: &MessageBatch, _state: State) {
        let Some(on_messages) = self.0.messages else { return };
        let is_text = batch.is_text();
        let list: Vec<lc_message> = batch
            .iter_labeled()
            .map(|(m, label)| lc_message {
                data: if m.is_empty() { std::ptr::null() } else { m.as_ptr() },
                len: m.len(),
                is_text,
                event_type: label.map_or(std::ptr::null(), |l| l.event_type_with_nul().as_ptr().cast()),
                event_id: label.map_or(std::ptr::null(), |l| l.id_with_nul().as_ptr().cast()),
            })
            .collect();
        // SAFETY: the application registered this callback; `list` and the
        // payloads it points to outlive the call.
        unsafe { on_messages(self.0.messages_data, list.as_ptr(), list.len()) };
    }

    /// Messages go to C straight from the shared read buffer, without a copy.
    fn on_message(&self, payload: &[u8], text: bool, state: State) {
        let cb = &self.0;
        let data = if payload.is_empty() { std::ptr::null() } else { payload.as_ptr() };
        if let Some(on_message) = cb.message {
            // SAFETY: the application registered this callback; `data` is
            // valid for `len` bytes during the call.
            unsafe { on_message(cb.message_data, data, payload.len(), text) };
        } else if let Some(on_event) = cb.event {
            let mut c_event = blank_event(lc_event_kind::LC_EVENT_MESSAGE, c"", state.into());
            c_event.data = data;
            c_event.len = payload.len();
            c_event.is_text = text;
            // SAFETY: as above; the event and the payload outlive the call.
            unsafe { on_event(cb.event_data, &c_event) };
        }
    }
}

pub(crate) fn event_text(event: &Event) -> CString {
    let text = match event {
        Event::Connected { peer, .. } => peer.clone(),
        Event::Acknowledged { up_to } => format!("acknowledged up to message {up_to}"),
        Event::Disconnected { detail, .. } | Event::Error { detail, .. } => detail.clone(),
        Event::ReconnectScheduled { attempt, delay } => {
            format!("reconnect attempt {attempt} in {} ms", delay.as_millis())
        }
        Event::Message(_) | Event::Text(_) | Event::Labeled { .. } => String::new(),
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
        seq: 0,
        acknowledged: false,
        resumed: false,
        recovered: false,
        epoch: 0,
        server_index: 0,
        event_type: std::ptr::null(),
        event_id: std::ptr::null(),
    }
}

pub(crate) fn to_c_event(event: &Event, text: &CStr, state: lc_state) -> lc_event {
    let mut e = blank_event(lc_event_kind::LC_EVENT_CONNECTED, text, state);
    match event {
        Event::Connected { delivery, server_index, .. } => {
            e.server_index = u32::try_from(*server_index).unwrap_or(u32::MAX);
            e.acknowledged = delivery.acknowledged;
            e.resumed = delivery.resumed;
            e.recovered = delivery.recovered;
            e.epoch = delivery.epoch;
        }
        Event::Acknowledged { up_to } => {
            e.kind = lc_event_kind::LC_EVENT_ACKNOWLEDGED;
            e.seq = *up_to;
        }
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
        Event::Message(payload) | Event::Text(payload) | Event::Labeled { data: payload, .. } => {
            e.kind = lc_event_kind::LC_EVENT_MESSAGE;
            e.is_text = !matches!(event, Event::Message(_));
            if !payload.is_empty() {
                e.data = payload.as_ptr();
                e.len = payload.len();
            }
            if let Event::Labeled { label, .. } = event {
                e.event_type = label.event_type_with_nul().as_ptr().cast();
                e.event_id = label.id_with_nul().as_ptr().cast();
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
                ErrorKind::Unauthorized => lc_error_kind::LC_ERROR_UNAUTHORIZED,
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
    pub(crate) _event: Event,
    pub(crate) _text: Option<CString>,
}
