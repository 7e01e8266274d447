//! The hello exchange and the close payload of the longconn protocol.
//!
//! Each side opens with a HELLO frame whose payload is the protocol version
//! (one byte) and a UTF-8 peer name. The client sends first; the server
//! answers once it has checked the client's. A CLOSE payload is a u16 BE
//! code and a UTF-8 reason.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Frame, FrameBatch, FrameType};

/// The protocol version carried in the first byte of a hello payload.
pub const PROTOCOL_VERSION: u8 = 1;

/// Builds a hello payload: the protocol version, then a UTF-8 peer name.
pub fn hello_payload(name: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + name.len());
    b.put_u8(PROTOCOL_VERSION);
    b.put_slice(name.as_bytes());
    b.freeze()
}

/// Our hello frame, naming this peer.
pub fn hello_frame(name: &str) -> Frame {
    Frame::Hello(hello_payload(name))
}

/// The peer's hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u8,
    /// The peer's name, with invalid UTF-8 replaced.
    pub name: String,
}

/// Why a peer's hello was refused; the text names what came instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloError {
    /// The read held no frame at all.
    Missing,
    /// The first frame was not a hello.
    NotHello(FrameType),
    /// A hello without its version byte, or of another version.
    Version(Option<u8>),
}

impl std::fmt::Display for HelloError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelloError::Missing => f.write_str("no hello frame"),
            HelloError::NotHello(kind) => write!(f, "expected a hello frame, got a {kind:?} frame"),
            HelloError::Version(version) => {
                write!(f, "the peer speaks protocol version {version:?}, this side speaks {PROTOCOL_VERSION}")
            }
        }
    }
}

/// Parses a hello payload of our version.
pub fn parse_hello(payload: &[u8]) -> Result<Hello, HelloError> {
    match payload.split_first() {
        Some((&PROTOCOL_VERSION, name)) => {
            Ok(Hello { version: PROTOCOL_VERSION, name: String::from_utf8_lossy(name).into_owned() })
        }
        other => Err(HelloError::Version(other.map(|(v, _)| *v))),
    }
}

/// Takes the peer's hello from the front of the first read; the frames that
/// arrived right behind it stay in `batch`, so none is lost.
pub fn take_hello(batch: &mut FrameBatch) -> Result<Hello, HelloError> {
    let (kind, range) = batch.frames.first().cloned().ok_or(HelloError::Missing)?;
    if kind != FrameType::Hello {
        return Err(HelloError::NotHello(kind));
    }
    let hello = parse_hello(&batch.chunk[range])?;
    batch.frames.remove(0);
    Ok(hello)
}

/// Builds a close payload: a u16 BE code, then a UTF-8 reason.
pub fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(2 + reason.len());
    b.put_u16(code);
    b.put_slice(reason.as_bytes());
    b.freeze()
}

/// Splits a close payload into code and reason; a short payload reads as code 0.
pub fn parse_close_payload(payload: &[u8]) -> (u16, String) {
    if payload.len() < 2 {
        return (0, String::new());
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8_lossy(&payload[2..]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_of(frames: &[(FrameType, &[u8])]) -> FrameBatch {
        let mut chunk = Vec::new();
        let mut spans = Vec::new();
        for (kind, payload) in frames {
            spans.push((*kind, chunk.len()..chunk.len() + payload.len()));
            chunk.extend_from_slice(payload);
        }
        FrameBatch { chunk: Bytes::from(chunk), frames: spans }
    }

    #[test]
    fn the_hello_is_taken_and_the_frames_behind_it_stay() {
        let hello = hello_payload("peer");
        let mut batch = batch_of(&[(FrameType::Hello, &hello), (FrameType::Data, b"early")]);
        assert_eq!(take_hello(&mut batch), Ok(Hello { version: PROTOCOL_VERSION, name: "peer".into() }));
        assert_eq!(batch.iter().collect::<Vec<_>>(), vec![(FrameType::Data, &b"early"[..])]);
    }

    #[test]
    fn other_frames_versions_and_empty_reads_are_refused() {
        assert_eq!(take_hello(&mut FrameBatch::default()), Err(HelloError::Missing));
        let mut data_first = batch_of(&[(FrameType::Data, b"x")]);
        assert_eq!(take_hello(&mut data_first), Err(HelloError::NotHello(FrameType::Data)));
        let mut v9 = batch_of(&[(FrameType::Hello, b"\x09name")]);
        assert_eq!(take_hello(&mut v9), Err(HelloError::Version(Some(9))));
        assert_eq!(parse_hello(b""), Err(HelloError::Version(None)));
        assert_eq!(parse_close_payload(b"x"), (0, String::new()));
    }
}
