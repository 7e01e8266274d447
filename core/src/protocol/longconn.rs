//! The longconn protocol: length-prefixed typed frames.
//!
//! ```text
//! +----------------------+---------+-------------------+
//! | length: u32, BE      | type: u8| payload           |
//! +----------------------+---------+-------------------+
//! ```
//! `length` counts the type byte and the payload, so it is at least 1.

use super::{FrameError, FrameHead, FrameType, Peeked};

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

    pub fn peek(&mut self, src: &[u8]) -> Result<Peeked, FrameError> {
        if src.len() < HEADER_LEN {
            return Ok(Peeked::Partial { needed: HEADER_LEN });
        }
        let length = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if length == 0 {
            return Err(FrameError::Malformed("zero-length longconn frame has no type byte"));
        }
        let payload_len = length - 1;
        if payload_len > self.max_payload {
            return Err(FrameError::FrameTooLarge { len: payload_len, max: self.max_payload });
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
            0x06 => FrameType::Ack,
            0x07 => FrameType::Text,
            other => return Err(FrameError::UnknownFrameType(other)),
        };
        Ok(Peeked::Complete(FrameHead { len: HEADER_LEN + length, payload: HEADER_LEN + 1..HEADER_LEN + length, kind }))
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
    fn oversize_length_is_rejected_from_the_header_alone() {
        let mut c = LongconnDecoder::new(1024);
        let mut header = u32::MAX.to_be_bytes().to_vec();
        header.push(1);
        assert!(matches!(c.peek(&header), Err(FrameError::FrameTooLarge { .. })));
    }
}
