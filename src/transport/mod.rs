//! Byte transports under the framing: how a connection is opened, read and written.
//!
//! The session sees only [`Reader`] and [`Writer`]; each transport adds a
//! variant, so new transports do not touch session, heartbeat or outbox logic.

pub mod tcp;

use std::io;

use crate::codec::{CodecError, Frame};
use crate::endpoint::{Endpoint, Scheme};
use crate::outbox::Batch;

pub struct ConnectOptions {
    pub max_frame_size: usize,
}

/// The receiving half of a connection.
pub enum Reader {
    Tcp(tcp::TcpReader),
}

/// The sending half of a connection.
pub enum Writer {
    Tcp(tcp::TcpWriter),
}

/// An open connection and a description of the peer for events and logs.
pub struct Connection {
    pub reader: Reader,
    pub writer: Writer,
    pub peer: String,
}

/// Opens a connection, resolving the host name anew.
pub async fn connect(endpoint: &Endpoint, options: &ConnectOptions) -> io::Result<Connection> {
    match endpoint.scheme {
        Scheme::Tcp => tcp::connect(endpoint, options).await,
    }
}

impl Reader {
    /// Reads until at least one frame is decoded; appends all frames decoded so far.
    /// Returns `Ok(false)` at a clean end of stream. Cancel-safe.
    pub async fn read_frames(&mut self, out: &mut Vec<Frame>) -> Result<bool, CodecError> {
        match self {
            Reader::Tcp(r) => r.read_frames(out).await,
        }
    }
}

impl Writer {
    /// Writes control frames, then the batch's unsent messages, in that order,
    /// marking in the batch each message once it has been handed to the socket.
    /// On error or cancellation, the unmarked messages are the ones to write again.
    pub async fn write(&mut self, control: &[Frame], batch: Option<&mut Batch>) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => w.write(control, batch).await,
        }
    }

    /// Finishes the sending direction (after a final close frame).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => w.shutdown().await,
        }
    }
}
