//! Plain length-prefixed framing: a 4-byte big-endian length, then the payload.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::CodecError;

const HEADER_LEN: usize = 4;

#[derive(Debug)]
pub struct LengthCodec {
    /// Largest payload accepted.
    max_payload: usize,
}

impl LengthCodec {
    pub fn new(max_payload: usize) -> Self {
        LengthCodec { max_payload }
    }

    #[inline]
    pub fn encode(&self, payload: &[u8], dst: &mut BytesMut) {
        dst.reserve(HEADER_LEN + payload.len());
        dst.put_u32(payload.len() as u32);
        dst.put_slice(payload);
    }

    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_payload {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_payload,
            });
        }
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        Ok(Some(src.split_to(len).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_oversize_length_without_waiting_for_the_payload() {
        let mut c = LengthCodec::new(16);
        let mut wire = BytesMut::new();
        wire.put_u32(17);
        assert!(matches!(
            c.decode(&mut wire),
            Err(CodecError::FrameTooLarge { len: 17, max: 16 })
        ));
    }

    #[test]
    fn zero_length_message_is_allowed() {
        let mut c = LengthCodec::new(16);
        let mut wire = BytesMut::from(&[0, 0, 0, 0][..]);
        assert_eq!(c.decode(&mut wire).unwrap(), Some(Bytes::new()));
    }
}
