//! What a client reports to the application: events, and received
//! messages that share one read buffer.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer closed the connection (end of stream or a close frame).
    PeerClosed,
    /// Reading or writing the socket failed.
    Io,
    /// No traffic from the peer within the heartbeat timeout.
    HeartbeatTimeout,
    /// The peer sent bytes that are not valid frames.
    Protocol,
    /// The peer sent a frame above the maximum frame size.
    FrameTooLarge,
    /// The application closed the client.
    ClosedByUser,
}

/// What went wrong, for error events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    ConnectFailed,
    HandshakeFailed,
    Protocol,
    FrameTooLarge,
    HeartbeatTimeout,
    Io,
    /// Reconnection stopped after the configured number of attempts.
    GaveUp,
    /// The server refused the client's credentials (a token from the
    /// connect hook, missing or wrong); reconnection goes on, so the hook
    /// can give a fresh one.
    Unauthorized,
}

/// The delivery guarantee a connection runs under, told by its connected event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivery {
    /// Protocol version 2: messages are acknowledged and the session
    /// resumes across reconnects, exactly once in both directions. `false`:
    /// best effort (a version 1 server, the plain framings, a WebSocket
    /// server without the `longconn.v2` subprotocol).
    pub acknowledged: bool,
    /// The server found this client's session: the streams continue.
    pub resumed: bool,
    /// Nothing the server sent is missing: the session resumed (or the
    /// client's room position was still in the server's history) with
    /// everything it missed still there, or this is the client's first
    /// session. `false`: messages were lost; resynchronise by other means.
    pub recovered: bool,
    /// The room history's epoch (0 if the server has no room for this
    /// client); it changes whenever the server's history was lost.
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected {
        peer: String,
        delivery: Delivery,
        /// The server's place in the config's list (0: the first URL).
        server_index: usize,
    },
    /// The server acknowledged every message up to this number (protocol
    /// version 2; only when `ClientConfig::ack_events` is set).
    Acknowledged {
        up_to: u64,
    },
    Disconnected {
        reason: DisconnectReason,
        detail: String,
    },
    ReconnectScheduled {
        attempt: u32,
        delay: Duration,
    },
    /// A received message (binary, on WebSocket).
    Message(Bytes),
    /// A received WebSocket text message (valid UTF-8).
    Text(Bytes),
    /// A received message of an event stream (Server-Sent Events, text),
    /// with its event type and event id.
    Labeled {
        data: Bytes,
        label: Label,
    },
    Error {
        kind: ErrorKind,
        detail: String,
    },
    /// The client stopped for good; `unsent` messages were still queued.
    Closed {
        unsent: u64,
    },
}

impl Event {
    /// The payload of a received message and whether it is text; `None`
    /// for every other event.
    pub fn as_message(&self) -> Option<(&Bytes, bool)> {
        match self {
            Event::Message(m) => Some((m, false)),
            Event::Text(m) => Some((m, true)),
            Event::Labeled { data, .. } => Some((data, true)),
            _ => None,
        }
    }
}

/// What an event stream said of a message: its event type (`message`
/// unless the stream named another) and the last event id in force.
pub type Label = crate::protocol::sse::SseLabel;

/// Received messages that share one buffer, in order.
#[derive(Debug, Clone)]
pub struct MessageBatch {
    chunk: Bytes,
    spans: Vec<Range<usize>>,
    /// Whether these are text messages (WebSocket); binary otherwise.
    text: bool,
    /// An event stream's labels, one per span; empty for other messages.
    labels: Vec<Label>,
    /// Index of the first message not yet delivered.
    next: usize,
    /// Payload bytes not yet delivered.
    bytes: usize,
}

impl MessageBatch {
    pub fn new(chunk: Bytes, spans: Vec<Range<usize>>) -> MessageBatch {
        Self::with_kind(chunk, spans, false)
    }

    /// Messages that are all text (`true`) or all binary.
    pub fn with_kind(chunk: Bytes, spans: Vec<Range<usize>>, text: bool) -> MessageBatch {
        let bytes = spans.iter().map(|r| r.len()).sum();
        MessageBatch { chunk, spans, text, labels: Vec::new(), next: 0, bytes }
    }

    /// Text messages of an event stream, with a label each.
    pub fn with_labels(chunk: Bytes, spans: Vec<Range<usize>>, labels: Vec<Label>) -> MessageBatch {
        debug_assert_eq!(spans.len(), labels.len());
        MessageBatch { labels, ..Self::with_kind(chunk, spans, true) }
    }

    /// Whether the messages carry an event stream's labels.
    pub fn has_labels(&self) -> bool {
        !self.labels.is_empty()
    }

    /// The messages not yet delivered with their labels, borrowed.
    pub fn iter_labeled(&self) -> impl Iterator<Item = (&[u8], Option<&Label>)> + '_ {
        let labels = self.labels.get(self.next..).unwrap_or_default();
        self.iter().zip(labels.iter().map(Some).chain(std::iter::repeat(None)))
    }

    /// Takes the oldest message as an event of its own.
    pub(crate) fn pop_event(&mut self) -> Option<Event> {
        let label = self.labels.get(self.next).cloned();
        let data = self.pop_front()?;
        Some(match label {
            Some(label) => Event::Labeled { data, label },
            None if self.text => Event::Text(data),
            None => Event::Message(data),
        })
    }

    /// Whether these are text messages.
    pub fn is_text(&self) -> bool {
        self.text
    }

    /// Payload bytes not yet delivered.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.spans.len() - self.next
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The messages not yet delivered, borrowed.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.spans[self.next..].iter().map(|r| &self.chunk[r.clone()])
    }

    /// The oldest message not yet delivered, borrowed.
    pub(crate) fn front(&self) -> Option<&[u8]> {
        self.spans.get(self.next).map(|r| &self.chunk[r.clone()])
    }

    /// Drops the oldest message not yet delivered.
    pub(crate) fn advance(&mut self) {
        if let Some(span) = self.spans.get(self.next) {
            self.bytes -= span.len();
            self.next += 1;
        }
    }

    /// Takes the oldest message as its own buffer.
    pub(crate) fn pop_front(&mut self) -> Option<Bytes> {
        let span = self.spans.get(self.next)?.clone();
        self.next += 1;
        self.bytes -= span.len();
        Some(self.chunk.slice(span))
    }
}
