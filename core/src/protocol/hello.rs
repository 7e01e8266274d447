//! The hello exchange and the close payload of the longconn protocol.
//!
//! Each side opens with a HELLO frame: the protocol version (one byte) and a
//! UTF-8 peer name. A version 2 peer adds, after a NUL byte, an extension
//! block of `type: u8, length: u16 BE, value` fields ([`HelloExt`]). A version
//! 1 server reads the whole tail as the name and answers version 1, so a
//! version 2 client falls back without a second attempt. The client sends
//! first; the server answers once it has checked the client's. A CLOSE
//! payload is a u16 BE code and a UTF-8 reason.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Frame, FrameBatch, FrameType};

/// The version every peer speaks: version 1's hello byte.
pub const PROTOCOL_VERSION: u8 = 1;
/// Acknowledged delivery and resume; negotiated through the extension block.
pub const PROTOCOL_V2: u8 = 2;
/// Longest session id a server may choose.
pub const MAX_SESSION_ID: usize = 32;

const FIELD_MAX_VERSION: u8 = 0x01;
const FIELD_SESSION: u8 = 0x02;
const FIELD_RECEIVED: u8 = 0x03;
const FIELD_POSITION: u8 = 0x04;
const FIELD_RESUMED: u8 = 0x05;
const FIELD_RECOVERED: u8 = 0x06;
const FIELD_TOKEN: u8 = 0x07;

/// The longest token a hello carries.
pub const MAX_TOKEN: usize = 2048;

/// A place in a room's history: the epoch names the history (it changes
/// whenever history was lost), the offset the message within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomPosition {
    pub epoch: u64,
    pub offset: u64,
}

/// The version 2 fields of a hello.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HelloExt {
    /// The highest version the sender speaks.
    pub max_version: u8,
    /// The client's session to resume; the server's: the session in force.
    pub session: Option<Vec<u8>>,
    /// The highest data sequence number the sender received in order.
    pub received: u64,
    /// The client's: its last room position; the server's: the room position
    /// of the client's `received` message.
    pub position: Option<RoomPosition>,
    /// Server only: the session was found.
    pub resumed: bool,
    /// Server only: the stream continues without a gap.
    pub recovered: bool,
    /// Client only: a credential for servers that want one (at most
    /// [`MAX_TOKEN`] bytes), from the application's connect hook.
    pub token: Option<Vec<u8>>,
}

impl HelloExt {
    fn encode(&self, b: &mut BytesMut) {
        let mut field = |kind: u8, value: &[u8]| {
            b.put_u8(kind);
            b.put_u16(value.len() as u16);
            b.put_slice(value);
        };
        field(FIELD_MAX_VERSION, &[self.max_version]);
        if let Some(session) = &self.session {
            field(FIELD_SESSION, &session[..session.len().min(MAX_SESSION_ID)]);
        }
        field(FIELD_RECEIVED, &self.received.to_be_bytes());
        if let Some(p) = self.position {
            let mut value = [0u8; 16];
            value[..8].copy_from_slice(&p.epoch.to_be_bytes());
            value[8..].copy_from_slice(&p.offset.to_be_bytes());
            field(FIELD_POSITION, &value);
        }
        field(FIELD_RESUMED, &[self.resumed as u8]);
        field(FIELD_RECOVERED, &[self.recovered as u8]);
        if let Some(token) = &self.token {
            field(FIELD_TOKEN, &token[..token.len().min(MAX_TOKEN)]);
        }
    }

    /// Reads an extension block; unknown fields are skipped, so later
    /// versions can add some.
    fn parse(mut block: &[u8]) -> Result<HelloExt, HelloError> {
        let mut ext = HelloExt::default();
        while !block.is_empty() {
            if block.len() < 3 {
                return Err(HelloError::Extension("truncated field header"));
            }
            let kind = block[0];
            let len = u16::from_be_bytes([block[1], block[2]]) as usize;
            let value = block.get(3..3 + len).ok_or(HelloError::Extension("truncated field"))?;
            block = &block[3 + len..];
            let u64_of = |v: &[u8]| <[u8; 8]>::try_from(v).map(u64::from_be_bytes);
            match kind {
                FIELD_MAX_VERSION => ext.max_version = *value.first().ok_or(HelloError::Extension("empty version"))?,
                FIELD_SESSION if len <= MAX_SESSION_ID => ext.session = Some(value.to_vec()),
                FIELD_SESSION => return Err(HelloError::Extension("session id too long")),
                FIELD_RECEIVED => ext.received = u64_of(value).map_err(|_| HelloError::Extension("received"))?,
                FIELD_POSITION if len == 16 => {
                    ext.position = Some(RoomPosition {
                        epoch: u64_of(&value[..8]).expect("8 bytes"),
                        offset: u64_of(&value[8..]).expect("8 bytes"),
                    })
                }
                FIELD_POSITION => return Err(HelloError::Extension("room position")),
                FIELD_RESUMED => ext.resumed = value.first() == Some(&1),
                FIELD_RECOVERED => ext.recovered = value.first() == Some(&1),
                FIELD_TOKEN if len <= MAX_TOKEN => ext.token = Some(value.to_vec()),
                FIELD_TOKEN => return Err(HelloError::Extension("token too long")),
                _ => {}
            }
        }
        Ok(ext)
    }
}

/// Builds a hello payload: the version byte, the UTF-8 peer name, and for
/// version 2, a NUL and the extension block. A client always sends version
/// byte 1 (so that version 1 servers accept it); a version 2 server answers
/// with version byte 2.
pub fn hello_payload(version: u8, name: &str, ext: Option<&HelloExt>) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + name.len() + 64);
    b.put_u8(version);
    b.put_slice(name.replace('\0', " ").as_bytes());
    if let Some(ext) = ext {
        b.put_u8(0);
        ext.encode(&mut b);
    }
    b.freeze()
}

/// A version 1 hello frame, naming this peer.
pub fn hello_frame(name: &str) -> Frame {
    Frame::Hello(hello_payload(PROTOCOL_VERSION, name, None))
}

/// The peer's hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u8,
    /// The peer's name, with invalid UTF-8 replaced.
    pub name: String,
    /// The version 2 fields, if the peer sent them.
    pub ext: Option<HelloExt>,
}

impl Hello {
    /// Whether the peer offers version 2 (a client) or speaks it (a server).
    pub fn offers_v2(&self) -> bool {
        self.ext.as_ref().is_some_and(|ext| ext.max_version >= PROTOCOL_V2)
    }
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
    /// A version 2 extension block that does not parse.
    Extension(&'static str),
}

impl std::fmt::Display for HelloError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelloError::Missing => f.write_str("no hello frame"),
            HelloError::NotHello(kind) => write!(f, "expected a hello frame, got a {kind:?} frame"),
            HelloError::Version(version) => {
                write!(f, "the peer speaks protocol version {version:?}, this side speaks 1 and 2")
            }
            HelloError::Extension(what) => write!(f, "malformed hello extension: {what}"),
        }
    }
}

/// Parses a hello payload of version 1 or 2.
pub fn parse_hello(payload: &[u8]) -> Result<Hello, HelloError> {
    let (version, rest) = match payload.split_first() {
        Some((&v, rest)) if v == PROTOCOL_VERSION || v == PROTOCOL_V2 => (v, rest),
        other => return Err(HelloError::Version(other.map(|(v, _)| *v))),
    };
    let (name, ext) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], Some(HelloExt::parse(&rest[nul + 1..])?)),
        None if version == PROTOCOL_V2 => return Err(HelloError::Extension("version 2 without extension")),
        None => (rest, None),
    };
    Ok(Hello { version, name: String::from_utf8_lossy(name).into_owned(), ext })
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

/// Builds an ACK payload: the highest sequence number received, u64 BE.
pub fn ack_payload(received: u64) -> Bytes {
    Bytes::copy_from_slice(&received.to_be_bytes())
}

/// Reads an ACK payload; `None` if it is not 8 bytes.
pub fn parse_ack(payload: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(payload).ok().map(u64::from_be_bytes)
}

/// Builds a close payload: a u16 BE code, then a UTF-8 reason.
pub fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(2 + reason.len());
    b.put_u16(code);
    b.put_slice(reason.as_bytes());
    b.freeze()
}

/// Close code of a server that refuses a client's hello for its token
/// (missing or wrong); the reason says which.
pub const CLOSE_UNAUTHORIZED: u16 = 4004;

/// Close code for a close frame that carries none (RFC 6455, 7.4.1).
pub const CLOSE_NO_STATUS: u16 = 1005;

/// Splits a close payload into code and reason; a payload too short for a
/// code reads as [`CLOSE_NO_STATUS`].
pub fn parse_close_payload(payload: &[u8]) -> (u16, String) {
    if payload.len() < 2 {
        return (CLOSE_NO_STATUS, String::new());
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
        FrameBatch { chunk: Bytes::from(chunk), frames: spans, ..FrameBatch::default() }
    }

    #[test]
    fn the_hello_is_taken_and_the_frames_behind_it_stay() {
        let hello = hello_payload(PROTOCOL_VERSION, "peer", None);
        let mut batch = batch_of(&[(FrameType::Hello, &hello), (FrameType::Data, b"early")]);
        assert_eq!(take_hello(&mut batch), Ok(Hello { version: 1, name: "peer".into(), ext: None }));
        assert_eq!(batch.iter().collect::<Vec<_>>(), vec![(FrameType::Data, &b"early"[..])]);
    }

    #[test]
    fn the_extension_round_trips_and_a_version_1_reader_sees_a_longer_name() {
        let ext = HelloExt {
            max_version: 2,
            session: Some(b"0123456789abcdef".to_vec()),
            received: 41,
            position: Some(RoomPosition { epoch: 7, offset: 1 << 40 }),
            resumed: true,
            recovered: false,
            token: Some(b"t\0ken".to_vec()),
        };
        let payload = hello_payload(PROTOCOL_VERSION, "cli\0ent", Some(&ext));
        let hello = parse_hello(&payload).unwrap();
        assert_eq!(hello.name, "cli ent", "a NUL in the name cannot split it");
        assert_eq!(hello.ext.as_ref(), Some(&ext));
        assert!(hello.offers_v2());
        // What a version 1 peer does: everything after the version byte is the name.
        assert_eq!(payload[0], PROTOCOL_VERSION);
        assert!(parse_hello(&hello_payload(PROTOCOL_V2, "s", None)).is_err(), "v2 needs its block");
    }

    #[test]
    fn unknown_fields_are_skipped_and_truncated_blocks_refused() {
        let mut payload =
            hello_payload(PROTOCOL_VERSION, "x", Some(&HelloExt { max_version: 2, ..HelloExt::default() })).to_vec();
        payload.extend_from_slice(&[0x7f, 0, 2, 9, 9]);
        assert_eq!(parse_hello(&payload).unwrap().ext.unwrap().max_version, 2);
        payload.extend_from_slice(&[0x03, 0, 8, 1]);
        assert_eq!(parse_hello(&payload), Err(HelloError::Extension("truncated field")));
        assert_eq!(parse_ack(&ack_payload(99)), Some(99));
        assert_eq!(parse_ack(b"short"), None);
    }

    #[test]
    fn other_frames_versions_and_empty_reads_are_refused() {
        assert_eq!(take_hello(&mut FrameBatch::default()), Err(HelloError::Missing));
        let mut data_first = batch_of(&[(FrameType::Data, b"x")]);
        assert_eq!(take_hello(&mut data_first), Err(HelloError::NotHello(FrameType::Data)));
        let mut v9 = batch_of(&[(FrameType::Hello, b"\x09name")]);
        assert_eq!(take_hello(&mut v9), Err(HelloError::Version(Some(9))));
        assert_eq!(parse_hello(b""), Err(HelloError::Version(None)));
        assert_eq!(parse_close_payload(b"x"), (CLOSE_NO_STATUS, String::new()));
    }
}
