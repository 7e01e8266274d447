//! The longconn protocol: length-prefixed typed frames.
//!
//! ```text
//! +----------------------+---------+-------------------+
//! | length: u32, BE      | type: u8| payload           |
//! +----------------------+---------+-------------------+
//! ```
//! `length` counts the type byte and the payload, so it is at least 1.

use bytes::{BufMut, Bytes, BytesMut};

use super::{CodecError, FrameHead, FrameType, Peeked};

/// The protocol version carried in the first byte of a hello payload.
pub const PROTOCOL_VERSION: u8 = 1;

const HEADER_LEN: usize = 4;

#[derive(Debug)]
pub struct LongconnCodec {
    /// Largest payload accepted, excluding the type byte.
    max_payload: usize,
}

impl LongconnCodec {
    pub fn new(max_payload: usize) -> Self {
        LongconnCodec { max_payload }
    }

    #[inline]
    pub fn encode_typed(&self, kind: FrameType, payload: &[u8], dst: &mut BytesMut) {
        dst.reserve(HEADER_LEN + 1 + payload.len());
        dst.put_u32(payload.len() as u32 + 1);
        dst.put_u8(kind as u8);
        dst.put_slice(payload);
    }

    pub fn peek(&mut self, src: &[u8]) -> Result<Peeked, CodecError> {
        if src.len() < HEADER_LEN {
            return Ok(Peeked::Partial { needed: HEADER_LEN });
        }
        let length = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if length == 0 {
            return Err(CodecError::Malformed("zero-length longconn frame has no type byte"));
        }
        let payload_len = length - 1;
        if payload_len > self.max_payload {
            return Err(CodecError::FrameTooLarge { len: payload_len, max: self.max_payload });
        }
        if src.len() < HEADER_LEN + length {
            return Ok(Peeked::Partial { needed: HEADER_LEN + length });
        }
        let kind = match src[HEADER_LEN] {
            0x01 => FrameType::Data,
            0x02 => FrameType::Ping,
            0x03 => FrameType::Pong,
            0x04 => FrameType::Hello,
            0x05 => FrameType::Close,
            other => return Err(CodecError::UnknownFrameType(other)),
        };
        Ok(Peeked::Complete(FrameHead { len: HEADER_LEN + length, payload: HEADER_LEN + 1..HEADER_LEN + length, kind }))
    }
}

/// Builds a hello payload: the protocol version, then a UTF-8 peer name.
pub fn hello_payload(name: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + name.len());
    b.put_u8(PROTOCOL_VERSION);
    b.put_slice(name.as_bytes());
    b.freeze()
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
    use crate::codec::{Codec, Frame, Framing};
    use tokio_util::codec::Decoder;

    #[test]
    fn typed_frames_roundtrip() {
        let mut c = Codec::new(Framing::Longconn, 64);
        let frames = [
            Frame::Data(Bytes::from_static(b"d")),
            Frame::Ping(Bytes::from_static(b"12345678")),
            Frame::Pong(Bytes::from_static(b"12345678")),
            Frame::Hello(hello_payload("client")),
            Frame::Close(close_payload(1000, "bye")),
        ];
        let mut wire = BytesMut::new();
        for f in &frames {
            c.encode(f, &mut wire);
        }
        for f in &frames {
            assert_eq!(c.decode(&mut wire).unwrap().as_ref(), Some(f));
        }
        assert!(wire.is_empty());
        assert_eq!(parse_close_payload(&close_payload(4001, "why")), (4001, "why".into()));
    }

    #[test]
    fn oversize_length_is_rejected_before_allocation() {
        let mut c = Codec::new(Framing::Longconn, 1024);
        let mut wire = BytesMut::new();
        wire.put_u32(u32::MAX);
        wire.put_u8(1);
        let cap_before = wire.capacity();
        assert!(matches!(c.decode(&mut wire), Err(CodecError::FrameTooLarge { .. })));
        assert_eq!(wire.capacity(), cap_before, "no buffer growth for a rejected frame");
        // Exactly the maximum is fine.
        let mut wire = BytesMut::new();
        c.encode_data(&[7; 1024], &mut wire);
        assert!(c.decode(&mut wire).unwrap().is_some());
    }

    #[test]
    fn unknown_type_and_zero_length_are_malformed() {
        let mut c = LongconnCodec::new(1024);
        assert!(matches!(c.peek(&[0, 0, 0, 1, 0x7f]), Err(CodecError::UnknownFrameType(0x7f))));
        assert!(matches!(c.peek(&[0, 0, 0, 0]), Err(CodecError::Malformed(_))));
    }
}
