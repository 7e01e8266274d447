//! Newline-delimited framing: each message ends with `\n`; a `\r` before it is stripped.

use bytes::{BufMut, Bytes, BytesMut};

use super::CodecError;

#[derive(Debug)]
pub struct LineCodec {
    /// Largest line accepted, excluding the line ending.
    max_payload: usize,
    /// How far the buffer has already been searched for `\n`, so a long line
    /// arriving in many reads is scanned once, not once per read.
    scanned: usize,
}

impl LineCodec {
    pub fn new(max_payload: usize) -> Self {
        LineCodec {
            max_payload,
            scanned: 0,
        }
    }

    #[inline]
    pub fn encode(&self, payload: &[u8], dst: &mut BytesMut) {
        dst.reserve(payload.len() + 1);
        dst.put_slice(payload);
        dst.put_u8(b'\n');
    }

    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        let Some(offset) = src[self.scanned..].iter().position(|&b| b == b'\n') else {
            self.scanned = src.len();
            // A line ending in `\r` still has one more byte (`\n`) to come.
            let pending = src.len() - usize::from(src.last() == Some(&b'\r'));
            if pending > self.max_payload {
                return Err(CodecError::FrameTooLarge {
                    len: src.len(),
                    max: self.max_payload,
                });
            }
            return Ok(None);
        };
        let newline = self.scanned + offset;
        self.scanned = 0;
        let mut line = src.split_to(newline + 1);
        line.truncate(newline);
        if line.last() == Some(&b'\r') {
            line.truncate(newline - 1);
        }
        if line.len() > self.max_payload {
            return Err(CodecError::FrameTooLarge {
                len: line.len(),
                max: self.max_payload,
            });
        }
        Ok(Some(line.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_crlf_and_keeps_empty_lines() {
        let mut c = LineCodec::new(16);
        let mut wire = BytesMut::from(&b"one\r\n\ntwo\n"[..]);
        assert_eq!(c.decode(&mut wire).unwrap().unwrap(), "one");
        assert_eq!(c.decode(&mut wire).unwrap().unwrap(), "");
        assert_eq!(c.decode(&mut wire).unwrap().unwrap(), "two");
        assert!(c.decode(&mut wire).unwrap().is_none());
    }

    #[test]
    fn an_endless_line_is_rejected_once_it_passes_the_maximum() {
        let mut c = LineCodec::new(8);
        let mut wire = BytesMut::from(&b"12345678"[..]);
        assert!(c.decode(&mut wire).unwrap().is_none());
        wire.extend_from_slice(b"9");
        assert!(matches!(
            c.decode(&mut wire),
            Err(CodecError::FrameTooLarge { .. })
        ));
    }
}
