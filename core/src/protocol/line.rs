//! Newline-delimited framing: each message ends with `\n`; a `\r` before it is stripped.

use super::{FrameError, FrameHead, FrameType, Peeked};

/// Bytes a message occupies beyond its payload: the `\n`.
pub(super) const OVERHEAD: usize = 1;

#[inline]
pub(super) fn encode(payload: &[u8], dst: &mut Vec<u8>) {
    dst.reserve(payload.len() + 1);
    dst.extend_from_slice(payload);
    dst.push(b'\n');
}

#[derive(Debug)]
pub struct LineDecoder {
    /// Largest line accepted, excluding the line ending.
    max_payload: usize,
    /// How far the buffer has already been searched for `\n`, so a long line
    /// arriving in many reads is scanned once, not once per read.
    scanned: usize,
}

impl LineDecoder {
    pub fn new(max_payload: usize) -> Self {
        LineDecoder { max_payload, scanned: 0 }
    }

    /// The most bytes one line may occupy on the wire (`\r\n` included).
    pub fn frame_limit(&self) -> usize {
        self.max_payload + 2
    }

    pub fn peek(&mut self, src: &[u8]) -> Result<Peeked, FrameError> {
        let Some(offset) = src[self.scanned.min(src.len())..].iter().position(|&b| b == b'\n') else {
            self.scanned = src.len();
            // A line ending in `\r` still has one more byte (`\n`) to come.
            let pending = src.len() - usize::from(src.last() == Some(&b'\r'));
            if pending > self.max_payload {
                return Err(FrameError::FrameTooLarge { len: src.len(), max: self.max_payload });
            }
            return Ok(Peeked::Partial { needed: 0 });
        };
        let newline = self.scanned.min(src.len()) + offset;
        self.scanned = 0;
        let end = if newline > 0 && src[newline - 1] == b'\r' { newline - 1 } else { newline };
        if end > self.max_payload {
            return Err(FrameError::FrameTooLarge { len: end, max: self.max_payload });
        }
        Ok(Peeked::Complete(FrameHead { len: newline + 1, payload: 0..end, kind: FrameType::Data, compressed: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(wire: &[u8]) -> Vec<&[u8]> {
        let mut c = LineDecoder::new(16);
        let mut rest = wire;
        let mut out = Vec::new();
        while let Peeked::Complete(head) = c.peek(rest).unwrap() {
            out.push(&rest[head.payload.clone()]);
            rest = &rest[head.len..];
        }
        out
    }

    #[test]
    fn strips_crlf_and_keeps_empty_lines() {
        assert_eq!(lines(b"one\r\n\ntwo\nrest"), vec![&b"one"[..], b"", b"two"]);
    }

    #[test]
    fn an_endless_line_is_rejected_once_it_passes_the_maximum() {
        let mut c = LineDecoder::new(8);
        assert!(matches!(c.peek(b"12345678"), Ok(Peeked::Partial { .. })));
        assert!(matches!(c.peek(b"123456789"), Err(FrameError::FrameTooLarge { .. })));
    }
}
