//! Message framing: how a byte stream is cut into messages.
//!
//! Three framings are supported, all with a mandatory maximum frame size so a
//! peer cannot make us allocate unbounded buffers (the length field is checked
//! before any memory is reserved for the frame):
//!
//! * [`Framing::Longconn`]: the longconn protocol, typed frames (see `docs/PROTOCOL.md`).
//! * [`Framing::Length`]: plain 4-byte big-endian length prefix, then the payload.
//! * [`Framing::Line`]: newline-delimited messages (a trailing `\r` is stripped).
//!
//! The client and the bundled test server share this code.

mod length;
mod line;
pub mod longconn;

use std::fmt;
use std::io;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

pub use length::LengthCodec;
pub use line::LineCodec;
pub use longconn::{LongconnCodec, PROTOCOL_VERSION};

/// Default maximum payload size of one frame: 1 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 1024 * 1024;

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
}

/// Frame type; in the longconn protocol also its type byte. Values 0x06 to
/// 0x0f are reserved for acknowledgements and other additions of later
/// protocol versions. The plain framings only carry data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    Data = 0x01,
    Ping = 0x02,
    Pong = 0x03,
    Hello = 0x04,
    Close = 0x05,
    /// A WebSocket text message. Never on the longconn wire: it is sent there as DATA.
    Text = 0x81,
}

impl Frame {
    /// The frame's type and payload.
    pub fn parts(&self) -> (FrameType, &Bytes) {
        match self {
            Frame::Data(p) => (FrameType::Data, p),
            Frame::Text(p) => (FrameType::Text, p),
            Frame::Ping(p) => (FrameType::Ping, p),
            Frame::Pong(p) => (FrameType::Pong, p),
            Frame::Hello(p) => (FrameType::Hello, p),
            Frame::Close(p) => (FrameType::Close, p),
        }
    }

    pub fn new(kind: FrameType, payload: Bytes) -> Frame {
        match kind {
            FrameType::Data => Frame::Data(payload),
            FrameType::Ping => Frame::Ping(payload),
            FrameType::Pong => Frame::Pong(payload),
            FrameType::Hello => Frame::Hello(payload),
            FrameType::Close => Frame::Close(payload),
            FrameType::Text => Frame::Text(payload),
        }
    }
}

/// Where the next frame lies in a buffer, found without copying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHead {
    /// Bytes the whole frame occupies, header and delimiter included.
    pub len: usize,
    /// Where the payload lies within the frame.
    pub payload: std::ops::Range<usize>,
    pub kind: FrameType,
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
    /// The name used in URLs (`?framing=`) and on the server's command line.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Longconn => "longconn",
            Framing::Length => "length",
            Framing::Line => "line",
        }
    }

    pub fn from_name(name: &str) -> Option<Framing> {
        match name {
            "longconn" => Some(Framing::Longconn),
            "length" => Some(Framing::Length),
            "line" => Some(Framing::Line),
            _ => None,
        }
    }

    /// Bytes a data message occupies on the wire beyond its payload.
    pub fn data_overhead(self) -> usize {
        match self {
            Framing::Longconn => 5,
            Framing::Length => 4,
            Framing::Line => 1,
        }
    }

    /// Appends `payload` as a data frame to `dst`; the same bytes as
    /// [`Codec::encode_data`], for buffers that are plain vectors.
    #[inline]
    pub fn encode_data_into(self, payload: &[u8], dst: &mut Vec<u8>) {
        dst.reserve(payload.len() + self.data_overhead());
        match self {
            Framing::Longconn => {
                dst.extend_from_slice(&(payload.len() as u32 + 1).to_be_bytes());
                dst.push(FrameType::Data as u8);
                dst.extend_from_slice(payload);
            }
            Framing::Length => {
                dst.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                dst.extend_from_slice(payload);
            }
            Framing::Line => {
                dst.extend_from_slice(payload);
                dst.push(b'\n');
            }
        }
    }

    /// Checks that `payload` can be sent as one message in this framing.
    pub fn check_payload(self, payload: &[u8], max_frame_size: usize) -> Result<(), CodecError> {
        if payload.len() > max_frame_size {
            return Err(CodecError::FrameTooLarge { len: payload.len(), max: max_frame_size });
        }
        if self == Framing::Line && payload.contains(&b'\n') {
            return Err(CodecError::Malformed("a line-framed message cannot contain a newline"));
        }
        Ok(())
    }
}

/// Why a byte stream could not be framed.
#[derive(Debug)]
pub enum CodecError {
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

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Io(e) => write!(f, "i/o error: {e}"),
            CodecError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max} bytes")
            }
            CodecError::Malformed(what) => write!(f, "malformed frame: {what}"),
            CodecError::UnknownFrameType(t) => write!(f, "unknown frame type 0x{t:02x}"),
            CodecError::Protocol(why) => write!(f, "protocol error: {why}"),
            CodecError::TruncatedFrame { buffered } => {
                write!(f, "connection closed in the middle of a frame ({buffered} bytes buffered)")
            }
        }
    }
}

impl std::error::Error for CodecError {}

impl From<io::Error> for CodecError {
    fn from(e: io::Error) -> Self {
        CodecError::Io(e)
    }
}

/// A codec for one of the three framings, chosen at run time.
///
/// An enum rather than a trait object: the hot encode and decode paths stay
/// statically dispatched.
#[derive(Debug)]
pub enum Codec {
    Longconn(LongconnCodec),
    Length(LengthCodec),
    Line(LineCodec),
}

impl Codec {
    pub fn new(framing: Framing, max_frame_size: usize) -> Codec {
        match framing {
            Framing::Longconn => Codec::Longconn(LongconnCodec::new(max_frame_size)),
            Framing::Length => Codec::Length(LengthCodec::new(max_frame_size)),
            Framing::Line => Codec::Line(LineCodec::new(max_frame_size)),
        }
    }

    /// Appends one frame to `dst`.
    pub fn encode(&self, frame: &Frame, dst: &mut BytesMut) {
        let (kind, payload) = frame.parts();
        self.encode_parts(kind, payload, dst);
    }

    /// Appends a frame of `kind` carrying `payload` to `dst`.
    ///
    /// In the plain framings, control frames are written as data messages with
    /// their payload; hello and close frames have no plain encoding and are skipped.
    pub fn encode_parts(&self, kind: FrameType, payload: &[u8], dst: &mut BytesMut) {
        match (self, kind) {
            (Codec::Longconn(c), FrameType::Text) => c.encode_typed(FrameType::Data, payload, dst),
            (Codec::Longconn(c), _) => c.encode_typed(kind, payload, dst),
            (_, FrameType::Hello | FrameType::Close) => {}
            (_, FrameType::Data | FrameType::Text | FrameType::Ping | FrameType::Pong) => {
                self.encode_data(payload, dst)
            }
        }
    }

    /// Appends one data message to `dst`; the hot path of every send.
    #[inline]
    pub fn encode_data(&self, payload: &[u8], dst: &mut BytesMut) {
        match self {
            Codec::Longconn(c) => c.encode_typed(FrameType::Data, payload, dst),
            Codec::Length(c) => c.encode(payload, dst),
            Codec::Line(c) => c.encode(payload, dst),
        }
    }
}

impl Codec {
    /// Finds the next frame at the start of `src` without consuming it.
    /// Rejects a frame above the maximum size from its header alone.
    #[inline]
    pub fn peek(&mut self, src: &[u8]) -> Result<Peeked, CodecError> {
        match self {
            Codec::Longconn(c) => c.peek(src),
            Codec::Length(c) => c.peek(src),
            Codec::Line(c) => c.peek(src),
        }
    }
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match self.peek(src)? {
            Peeked::Complete(head) => {
                let frame = src.split_to(head.len).freeze();
                Ok(Some(Frame::new(head.kind, frame.slice(head.payload))))
            }
            Peeked::Partial { needed } => {
                // `needed` passed the size check, so this reservation is bounded.
                src.reserve(needed.saturating_sub(src.len()));
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::TruncatedFrame { buffered: src.len() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut Codec, bytes: &[u8], chunk: usize) -> Result<Vec<Frame>, CodecError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(f) = codec.decode(&mut buf)? {
                out.push(f);
            }
        }
        if let Some(f) = codec.decode_eof(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    fn roundtrip(framing: Framing) {
        let codec = Codec::new(framing, 1024);
        let messages: Vec<Bytes> = vec![
            Bytes::from_static(b"hello"),
            Bytes::from_static(b""),
            Bytes::from(vec![b'x'; 1024]),
            Bytes::from_static(b"last"),
        ];
        let mut wire = BytesMut::new();
        for m in &messages {
            codec.encode_data(m, &mut wire);
        }
        // Every chunk size: split reads (1 byte at a time) up to merged reads.
        for chunk in [1, 2, 3, 5, 7, 64, wire.len()] {
            let mut c = Codec::new(framing, 1024);
            let frames = decode_all(&mut c, &wire, chunk).unwrap();
            let expected: Vec<Frame> = messages.iter().cloned().map(Frame::Data).collect();
            assert_eq!(frames, expected, "framing {framing:?}, chunk {chunk}");
        }
    }

    #[test]
    fn every_framing_survives_split_and_merged_reads() {
        roundtrip(Framing::Longconn);
        roundtrip(Framing::Length);
        roundtrip(Framing::Line);
    }

    #[test]
    fn eof_mid_frame_is_an_error_and_eof_on_empty_buffer_is_clean() {
        for framing in [Framing::Longconn, Framing::Length, Framing::Line] {
            let codec = Codec::new(framing, 1024);
            let mut wire = BytesMut::new();
            codec.encode_data(b"complete", &mut wire);
            let full = wire.len();
            codec.encode_data(b"cut short", &mut wire);
            let mut c = Codec::new(framing, 1024);
            let err = decode_all(&mut c, &wire[..wire.len() - 2], 4).unwrap_err();
            assert!(matches!(err, CodecError::TruncatedFrame { .. }), "{framing:?}: {err}");
            let mut c = Codec::new(framing, 1024);
            assert_eq!(decode_all(&mut c, &wire[..full], 4).unwrap().len(), 1);
        }
    }

    #[test]
    fn check_payload_enforces_size_and_line_rules() {
        assert!(Framing::Length.check_payload(&[0; 10], 10).is_ok());
        assert!(matches!(
            Framing::Length.check_payload(&[0; 11], 10),
            Err(CodecError::FrameTooLarge { len: 11, max: 10 })
        ));
        assert!(Framing::Line.check_payload(b"a\nb", 10).is_err());
        assert!(Framing::Longconn.check_payload(b"a\nb", 10).is_ok());
    }

    #[test]
    fn vector_encoding_matches_the_codec_and_its_overhead() {
        for framing in [Framing::Longconn, Framing::Length, Framing::Line] {
            let codec = Codec::new(framing, 1024);
            let mut wire = BytesMut::new();
            codec.encode_data(b"12345", &mut wire);
            let mut vec = Vec::new();
            framing.encode_data_into(b"12345", &mut vec);
            assert_eq!(&wire[..], &vec[..], "{framing:?}");
            assert_eq!(wire.len(), 5 + framing.data_overhead());
        }
    }
}
