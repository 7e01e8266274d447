//! Byte transports under the framing: how a connection is opened, read and written.
//!
//! The session sees only [`Reader`] and [`Writer`]; each transport adds a
//! variant, so new transports do not touch session, heartbeat or outbox logic.

pub mod tcp;
pub mod ws;

use std::io;

use std::ops::Range;

use bytes::Bytes;

use crate::codec::{CodecError, Frame, FrameType};
use crate::endpoint::{Endpoint, Scheme};
use crate::outbox::Batch;

pub struct ConnectOptions {
    pub max_frame_size: usize,
    /// Extra request headers for the WebSocket handshake (name, value).
    pub headers: Vec<(String, String)>,
    /// WebSocket subprotocols to offer, most preferred first.
    pub subprotocols: Vec<String>,
    /// TLS, for `tls://` and `wss://` URLs.
    pub tls: Option<crate::tls::Tls>,
}

/// The receiving half of a connection.
pub enum Reader {
    Tcp(tcp::TcpReader),
    Ws(ws::WsReader),
}

/// The sending half of a connection.
pub enum Writer {
    Tcp(tcp::TcpWriter),
    Ws(ws::WsWriter),
}

/// An open connection and a description of the peer for events and logs.
pub struct Connection {
    pub reader: Reader,
    pub writer: Writer,
    pub peer: String,
}

/// Opens a connection, resolving the host name anew.
pub async fn connect(endpoint: &Endpoint, options: &ConnectOptions) -> io::Result<Connection> {
    match (endpoint.scheme, endpoint.framing) {
        (Scheme::Tcp | Scheme::Tls, Some(framing)) => tcp::connect(endpoint, framing, options).await,
        (Scheme::Tcp | Scheme::Tls, None) => unreachable!("the URL parser gives every tcp URL a framing"),
        (Scheme::Ws | Scheme::Wss, _) => ws::connect(endpoint, options).await,
    }
}

/// The frames of one read: one shared buffer and where each payload lies in
/// it, so a read of many small messages costs one reference count, not one each.
#[derive(Debug, Default, Clone)]
pub struct FrameBatch {
    pub chunk: Bytes,
    pub frames: Vec<(FrameType, Range<usize>)>,
}

impl FrameBatch {
    pub fn clear(&mut self) {
        self.chunk = Bytes::new();
        self.frames.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The payload of frame `range` as its own reference-counted buffer.
    pub fn payload(&self, range: &Range<usize>) -> Bytes {
        self.chunk.slice(range.clone())
    }
}

impl Reader {
    /// Reads until at least one frame is complete; replaces `batch` with the
    /// frames read. Returns `Ok(false)` at a clean end of stream. Cancel-safe.
    pub async fn read_batch(&mut self, batch: &mut FrameBatch) -> Result<bool, CodecError> {
        match self {
            Reader::Tcp(r) => r.read_batch(batch).await,
            Reader::Ws(r) => r.read_batch(batch).await,
        }
    }
}

impl Writer {
    /// Writes control frames, then the next chunk (about 256 KiB) of the
    /// batch's unsent messages, in that order, marking in the batch each
    /// message once it has been handed to the socket. Called again until the
    /// batch is done, so control frames never wait behind a large batch and
    /// progress can be recorded per chunk. On error or cancellation, the
    /// unmarked messages are the ones to write again.
    pub async fn write(&mut self, control: &[Frame], batch: Option<&mut Batch>) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => w.write(control, batch).await,
            Writer::Ws(w) => w.write(control, batch).await,
        }
    }

    /// Finishes the sending direction (after a final close frame).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => w.shutdown().await,
            Writer::Ws(w) => w.shutdown().await,
        }
    }
}
