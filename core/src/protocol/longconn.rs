//! The longconn protocol: length-prefixed typed frames.
//!
//! ```text
//! +----------------------+---------+-------------------+
//! | length: u32, BE      | type: u8| payload           |
//! +----------------------+---------+-------------------+
//! ```
//! `length` counts the type byte and the payload, so it is at least 1.

use super::{FrameError, FrameHead, FrameType, Peeked, CONTROL_PAYLOAD_FLOOR};

const HEADER_LEN: usize = 4;
/// Bytes a frame occupies beyond its payload: the length and the type byte.
pub(super) const OVERHEAD: usize = HEADER_LEN + 1;

#[inline]
pub(super) fn encode(kind: FrameType, payload: &[u8], dst: &mut Vec<u8>) {
    dst.reserve(OVERHEAD + payload.len());
    dst.extend_from_slice(&(payload.len() as u32 + 1).to_be_bytes());
    dst.push(kind as u8);
    dst.extend_from_slice(payload);
}

#[derive(Debug)]
pub struct LongconnDecoder {
    /// Largest payload accepted, excluding the type byte.
    max_payload: usize,
}

impl LongconnDecoder {
    pub fn new(max_payload: usize) -> Self {
        LongconnDecoder { max_payload }
    }

    /// The most bytes one frame may occupy on the wire.
    pub fn frame_limit(&self) -> usize {
        self.max_payload.max(CONTROL_PAYLOAD_FLOOR) + OVERHEAD
    }

    /// The next frame at the start of `src`. Data and text frames may
    /// carry `max_payload` bytes, the protocol's own frames at least
    /// [`CONTROL_PAYLOAD_FLOOR`]; a text frame must be UTF-8.
    pub fn peek(&mut self, src: &[u8]) -> Result<Peeked, FrameError> {
        if src.len() < HEADER_LEN {
            return Ok(Peeked::Partial { needed: HEADER_LEN });
        }
        let length = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if length == 0 {
            return Err(FrameError::Malformed("zero-length longconn frame has no type byte"));
        }
        let Some(&type_byte) = src.get(HEADER_LEN) else {
            return Ok(Peeked::Partial { needed: OVERHEAD });
        };
        let kind = match type_byte {
            0x01 => FrameType::Data,
            0x02 => FrameType::Ping,
            0x03 => FrameType::Pong,
            0x04 => FrameType::Hello,
            0x05 => FrameType::Close,
            0x06 => FrameType::Ack,
            0x07 => FrameType::Text,
            other => return Err(FrameError::UnknownFrameType(other)),
        };
        let payload_len = length - 1;
        let allowed = match kind {
            FrameType::Data | FrameType::Text => self.max_payload,
            _ => self.max_payload.max(CONTROL_PAYLOAD_FLOOR),
        };
        if payload_len > allowed {
            return Err(FrameError::FrameTooLarge { len: payload_len, max: allowed });
        }
        if src.len() < HEADER_LEN + length {
            return Ok(Peeked::Partial { needed: HEADER_LEN + length });
        }
        let payload = HEADER_LEN + 1..HEADER_LEN + length;
        if kind == FrameType::Text && std::str::from_utf8(&src[payload.clone()]).is_err() {
            return Err(FrameError::Protocol("a text frame that is not UTF-8".into()));
        }
        Ok(Peeked::Complete(FrameHead { len: HEADER_LEN + length, payload, kind, compressed: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_type_and_zero_length_are_malformed() {
        let mut c = LongconnDecoder::new(1024);
        assert!(matches!(c.peek(&[0, 0, 0, 1, 0x7f]), Err(FrameError::UnknownFrameType(0x7f))));
        assert!(matches!(c.peek(&[0, 0, 0, 0]), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn text_must_be_utf8_and_the_protocols_own_frames_fit_under_a_small_maximum() {
        let mut c = LongconnDecoder::new(16);
        assert!(matches!(c.peek(&[0, 0, 0, 2, 0x07, 0xff]), Err(FrameError::Protocol(_))), "a lone 0xff is not text");
        assert!(matches!(c.peek(&[0, 0, 0, 3, 0x07, 0xc3, 0xa9]), Ok(Peeked::Complete(_))), "é is");
        let mut hello = 61u32.to_be_bytes().to_vec();
        hello.push(0x04);
        hello.extend_from_slice(&[b'h'; 60]);
        assert!(matches!(c.peek(&hello), Ok(Peeked::Complete(_))), "a 60-byte hello under a 16-byte maximum");
        hello[4] = 0x01;
        assert!(matches!(c.peek(&hello), Err(FrameError::FrameTooLarge { len: 60, max: 16 })), "not as data");
    }

    #[test]
    fn oversize_length_is_rejected_from_the_header_alone() {
        let mut c = LongconnDecoder::new(1024);
        let mut header = u32::MAX.to_be_bytes().to_vec();
        header.push(1);
        assert!(matches!(c.peek(&header), Err(FrameError::FrameTooLarge { .. })));
    }
}
