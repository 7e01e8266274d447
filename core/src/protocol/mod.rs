//! The wire: frames, the three framings that cut a byte stream into them,
//! the read path, and the hello exchange. The client and the bundled server
//! share all of it.
//!
//! Every framing has a mandatory maximum frame size, so a peer cannot make
//! us allocate unbounded buffers (a length field is checked before any
//! memory is reserved for the frame):
//!
//! * [`Framing::Longconn`]: the longconn protocol, typed frames (see `docs/PROTOCOL.md`).
//! * [`Framing::Length`]: plain 4-byte big-endian length prefix, then the payload.
//! * [`Framing::Line`]: newline-delimited messages (a trailing `\r` is stripped).
//!
//! After its opening handshake a WebSocket connection runs on the same read
//! path and writers, with [`websocket`]'s frames in place of a framing.

pub mod deflate;
pub mod hello;
mod length;
mod line;
mod longconn;
pub mod read;
pub mod sse;
pub mod websocket;

use std::fmt;
use std::io;
use std::ops::Range;

use bytes::Bytes;

pub use hello::PROTOCOL_VERSION;
pub use read::{Decoder, FrameBatch, ReadBuffer};

/// Default maximum payload size of one frame: 1 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 1024 * 1024;

/// The protocol's own frames (hello, close, ping, pong, ack) may carry up
/// to this many payload bytes whatever the maximum frame size: that
/// maximum is for application messages, and a small one (16 bytes, say)
/// must not make the hello exchange impossible. A client's hello is its
/// name (at most [`MAX_CLIENT_NAME`] bytes) and an extension block of under
/// 100 bytes.
pub const CONTROL_PAYLOAD_FLOOR: usize = 4096;

/// The longest client name a hello carries.
pub const MAX_CLIENT_NAME: usize = 1024;

/// One unit on the wire.
///
/// The plain framings only carry [`Frame::Data`]; heartbeats there are data
/// messages whose payload is configured by the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data(Bytes),
    /// A WebSocket text message; a data message on the other transports.
    Text(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    Hello(Bytes),
    Close(Bytes),
    /// Protocol version 2: every data frame up to this sequence number arrived.
    Ack(Bytes),
}

/// Frame type; in the longconn protocol also its type byte. Values 0x08 to
/// 0x0f are reserved for later protocol versions. The plain framings only
/// carry data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    Data = 0x01,
    Ping = 0x02,
    Pong = 0x03,
    Hello = 0x04,
    Close = 0x05,
    /// Version 2: a cumulative acknowledgement (u64 BE sequence number).
    Ack = 0x06,
    /// A text message: a WebSocket text message, or over WebSocket with
    /// protocol version 2, a DATA_TEXT frame (which counts in the sequence
    /// like DATA). Over TCP it is sent as DATA.
    Text = 0x07,
}

impl Frame {
    /// A frame of `kind` carrying `payload`.
    pub fn new(kind: FrameType, payload: Bytes) -> Frame {
        match kind {
            FrameType::Data => Frame::Data(payload),
            FrameType::Ping => Frame::Ping(payload),
            FrameType::Pong => Frame::Pong(payload),
            FrameType::Hello => Frame::Hello(payload),
            FrameType::Close => Frame::Close(payload),
            FrameType::Ack => Frame::Ack(payload),
            FrameType::Text => Frame::Text(payload),
        }
    }

    /// The frame's type and payload.
    pub fn parts(&self) -> (FrameType, &Bytes) {
        match self {
            Frame::Data(p) => (FrameType::Data, p),
            Frame::Text(p) => (FrameType::Text, p),
            Frame::Ping(p) => (FrameType::Ping, p),
            Frame::Pong(p) => (FrameType::Pong, p),
            Frame::Hello(p) => (FrameType::Hello, p),
            Frame::Close(p) => (FrameType::Close, p),
            Frame::Ack(p) => (FrameType::Ack, p),
        }
    }
}

/// Where the next frame lies in a buffer, found without copying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHead {
    /// Bytes the whole frame occupies, header and delimiter included.
    pub len: usize,
    /// Where the payload lies within the frame.
    pub payload: Range<usize>,
    pub kind: FrameType,
    /// WebSocket with permessage-deflate: the message is compressed, and
    /// this is its opcode; `kind` says nothing until it is inflated.
    pub compressed: Option<u8>,
}

/// The outcome of looking for the next frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peeked {
    Complete(FrameHead),
    /// More bytes are needed; `needed` is the frame's full size when the header tells it, else 0.
    Partial {
        needed: usize,
    },
}

/// Which framing a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Longconn,
    Length,
    Line,
}

impl Framing {
    pub const ALL: [Framing; 3] = [Framing::Longconn, Framing::Length, Framing::Line];

    /// The name used in URLs (`?framing=`) and on the server's command line.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Longconn => "longconn",
            Framing::Length => "length",
            Framing::Line => "line",
        }
    }

    pub fn from_name(name: &str) -> Option<Framing> {
        Framing::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether this is a plain framing (length or line), with no control
    /// frames: heartbeats are data messages there.
    pub fn is_plain(self) -> bool {
        self != Framing::Longconn
    }

    /// Bytes a data message occupies on the wire beyond its payload.
    #[inline]
    pub fn data_overhead(self) -> usize {
        match self {
            Framing::Longconn => longconn::OVERHEAD,
            Framing::Length => length::OVERHEAD,
            Framing::Line => line::OVERHEAD,
        }
    }

    /// Appends a frame of `kind` carrying `payload` to `dst`: the one
    /// encoder, used by the outbox and by every writer.
    ///
    /// In the plain framings, control frames are written as data messages
    /// with their payload; hello, close and ack frames have no plain
    /// encoding and are skipped. In the longconn protocol a text message is a data frame.
    /// Always inlined: with the framing known at the call site, it is a few
    /// stores and a copy, and every send runs it.
    #[inline(always)]
    pub fn encode(self, kind: FrameType, payload: &[u8], dst: &mut Vec<u8>) {
        match (self, kind) {
            (Framing::Longconn, FrameType::Text) => longconn::encode(FrameType::Data, payload, dst),
            (Framing::Longconn, _) => longconn::encode(kind, payload, dst),
            (_, FrameType::Hello | FrameType::Close | FrameType::Ack) => {}
            (Framing::Length, _) => length::encode(payload, dst),
            (Framing::Line, _) => line::encode(payload, dst),
        }
    }

    /// Appends one data message to `dst`; the hot path of every send.
    #[inline(always)]
    pub fn encode_data(self, payload: &[u8], dst: &mut Vec<u8>) {
        self.encode(FrameType::Data, payload, dst)
    }

    /// Checks that `payload` can be sent as one message in this framing.
    pub fn check_payload(self, payload: &[u8], max_frame_size: usize) -> Result<(), FrameError> {
        if payload.len() > max_frame_size {
            return Err(FrameError::FrameTooLarge { len: payload.len(), max: max_frame_size });
        }
        if self == Framing::Line && payload.contains(&b'\n') {
            return Err(FrameError::Malformed("a line-framed message cannot contain a newline"));
        }
        Ok(())
    }
}

/// How a connection's writer puts frames on the wire: in one of the
/// framings, or as WebSocket frames.
#[derive(Debug, Clone, Copy)]
pub enum Encoder {
    Framed(Framing),
    WebSocket(websocket::WsEncoder),
}

impl Encoder {
    /// Appends a frame of `kind` carrying `payload` to `dst`.
    #[inline]
    pub fn encode(&self, kind: FrameType, payload: &[u8], dst: &mut Vec<u8>) {
        match self {
            Encoder::Framed(framing) => framing.encode(kind, payload, dst),
            Encoder::WebSocket(ws) => ws.encode(kind, payload, dst),
        }
    }

    /// Appends one message the application sent (a text one already checked to be UTF-8).
    #[inline]
    pub fn encode_message(&self, text: bool, payload: &[u8], dst: &mut Vec<u8>) {
        match self {
            Encoder::Framed(framing) => framing.encode_data(payload, dst),
            Encoder::WebSocket(ws) => ws.encode_message(text, payload, dst),
        }
    }

    /// The framing, if this is one (not WebSocket).
    pub fn framing(&self) -> Option<Framing> {
        match self {
            Encoder::Framed(framing) => Some(*framing),
            Encoder::WebSocket(_) => None,
        }
    }
}

/// Why a byte stream could not be cut into frames.
#[derive(Debug)]
pub enum FrameError {
    Io(io::Error),
    /// A frame announced (or accumulated) more than the maximum payload size.
    FrameTooLarge {
        len: usize,
        max: usize,
    },
    /// The bytes do not follow the framing's rules.
    Malformed(&'static str),
    /// A longconn frame with a type this version does not know.
    UnknownFrameType(u8),
    /// The stream ended in the middle of a frame.
    TruncatedFrame {
        buffered: usize,
    },
    /// The peer broke a transport's protocol rules (for example WebSocket's).
    Protocol(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
            FrameError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max} bytes")
            }
            FrameError::Malformed(what) => write!(f, "malformed frame: {what}"),
            FrameError::UnknownFrameType(t) => write!(f, "unknown frame type 0x{t:02x}"),
            FrameError::Protocol(why) => write!(f, "protocol error: {why}"),
            FrameError::TruncatedFrame { buffered } => {
                write!(f, "connection closed in the middle of a frame ({buffered} bytes buffered)")
            }
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for framing in Framing::ALL {
            assert_eq!(Framing::from_name(framing.name()), Some(framing));
        }
        assert_eq!(Framing::from_name("xml"), None);
    }

    #[test]
    fn check_payload_enforces_size_and_line_rules() {
        assert!(Framing::Length.check_payload(&[0; 10], 10).is_ok());
        assert!(matches!(
            Framing::Length.check_payload(&[0; 11], 10),
            Err(FrameError::FrameTooLarge { len: 11, max: 10 })
        ));
        assert!(Framing::Line.check_payload(b"a\nb", 10).is_err());
        assert!(Framing::Longconn.check_payload(b"a\nb", 10).is_ok());
    }

    #[test]
    fn data_frames_cost_their_stated_overhead() {
        for framing in Framing::ALL {
            let mut wire = Vec::new();
            framing.encode_data(b"12345", &mut wire);
            assert_eq!(wire.len(), 5 + framing.data_overhead(), "{framing:?}");
        }
    }

    #[test]
    fn plain_framings_carry_control_payloads_as_data_and_skip_hello_and_close() {
        let mut wire = Vec::new();
        Framing::Length.encode(FrameType::Ping, b"ping", &mut wire);
        Framing::Length.encode(FrameType::Hello, b"x", &mut wire);
        Framing::Length.encode(FrameType::Close, b"x", &mut wire);
        assert_eq!(wire, b"\0\0\0\x04ping");
        let mut wire = Vec::new();
        Framing::Longconn.encode(FrameType::Text, b"t", &mut wire);
        assert_eq!(wire, b"\0\0\0\x02\x01t", "text travels as data");
    }
}
