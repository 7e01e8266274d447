//! Plain length-prefixed framing: a 4-byte big-endian length, then the payload.

use super::{FrameError, FrameHead, FrameType, Peeked};

const HEADER_LEN: usize = 4;
/// Bytes a message occupies beyond its payload.
pub(super) const OVERHEAD: usize = HEADER_LEN;

#[inline]
pub(super) fn encode(payload: &[u8], dst: &mut Vec<u8>) {
    dst.reserve(HEADER_LEN + payload.len());
    dst.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    dst.extend_from_slice(payload);
}

#[derive(Debug)]
pub struct LengthDecoder {
    /// Largest payload accepted.
    max_payload: usize,
}

impl LengthDecoder {
    pub fn new(max_payload: usize) -> Self {
        LengthDecoder { max_payload }
    }

    /// The most bytes one frame may occupy on the wire.
    pub fn frame_limit(&self) -> usize {
        self.max_payload + 4
    }

    pub fn peek(&mut self, src: &[u8]) -> Result<Peeked, FrameError> {
        if src.len() < HEADER_LEN {
            return Ok(Peeked::Partial { needed: HEADER_LEN });
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_payload {
            return Err(FrameError::FrameTooLarge { len, max: self.max_payload });
        }
        if src.len() < HEADER_LEN + len {
            return Ok(Peeked::Partial { needed: HEADER_LEN + len });
        }
        Ok(Peeked::Complete(FrameHead {
            compressed: None,
            len: HEADER_LEN + len,
            payload: HEADER_LEN..HEADER_LEN + len,
            kind: FrameType::Data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_oversize_length_without_waiting_for_the_payload() {
        let mut c = LengthDecoder::new(16);
        assert!(matches!(c.peek(&17u32.to_be_bytes()), Err(FrameError::FrameTooLarge { len: 17, max: 16 })));
    }

    #[test]
    fn zero_length_message_is_allowed_and_partial_frames_say_what_they_need() {
        let mut c = LengthDecoder::new(16);
        assert!(matches!(c.peek(&[0, 0, 0, 0]), Ok(Peeked::Complete(FrameHead { len: 4, .. }))));
        assert!(matches!(c.peek(&[0, 0, 0, 9, 1]), Ok(Peeked::Partial { needed: 13 })));
    }
}
