//! The read path: bytes from a socket in, batches of frames out.
//!
//! [`ReadBuffer`] owns the bytes read but not yet cut into frames; a
//! transport reads into it ([`ReadBuffer::read_space`], then
//! [`ReadBuffer::record_read`]) and takes complete frames out
//! ([`ReadBuffer::take_frames`]). It does no I/O itself, so the code that
//! runs in production is tested here byte by byte.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::length::LengthDecoder;
use super::line::LineDecoder;
use super::longconn::LongconnDecoder;
use super::websocket::{Role, WsDecoder};
use super::{FrameError, FrameType, Framing, Peeked};

/// Largest read asked of the socket at once; frames larger than this grow
/// the buffer as needed, up to the maximum frame size.
const READ_CHUNK: usize = 64 * 1024;
/// Smallest read: a quiet connection holds a small buffer, and reads double
/// towards [`READ_CHUNK`] while each one fills what it was given.
const READ_MIN: usize = 4 * 1024;
/// Frames cut per call before handing them on, to bound latency.
const MAX_FRAMES_PER_READ: usize = 1024;

/// Finds frames of one framing in a buffer. An enum rather than a trait
/// object, so the hot path stays statically dispatched.
#[derive(Debug)]
pub enum Decoder {
    Longconn(LongconnDecoder),
    Length(LengthDecoder),
    Line(LineDecoder),
    WebSocket(WsDecoder),
}

impl Decoder {
    pub fn new(framing: Framing, max_frame_size: usize) -> Decoder {
        match framing {
            Framing::Longconn => Decoder::Longconn(LongconnDecoder::new(max_frame_size)),
            Framing::Length => Decoder::Length(LengthDecoder::new(max_frame_size)),
            Framing::Line => Decoder::Line(LineDecoder::new(max_frame_size)),
        }
    }

    /// WebSocket frames as `role` receives them; under longconn.v2 (`v2`)
    /// binary messages carry longconn frames.
    pub fn websocket(role: Role, v2: bool, max_frame_size: usize) -> Decoder {
        Decoder::WebSocket(WsDecoder::new(role, v2, max_frame_size))
    }

    /// The most bytes one frame (or fragmented message) may occupy on the
    /// wire: what a read buffer may have to hold at once.
    pub fn frame_limit(&self) -> usize {
        match self {
            Decoder::Longconn(d) => d.frame_limit(),
            Decoder::Length(d) => d.frame_limit(),
            Decoder::Line(d) => d.frame_limit(),
            Decoder::WebSocket(d) => d.frame_limit(),
        }
    }

    /// Finds the next frame at the start of `src` without consuming it.
    /// Rejects a frame above the maximum size from its header alone.
    /// WebSocket unmasks (and joins fragments) in place once a frame is
    /// complete, so a complete frame must be consumed before the next call.
    #[inline]
    pub fn peek(&mut self, src: &mut [u8]) -> Result<Peeked, FrameError> {
        match self {
            Decoder::Longconn(d) => d.peek(src),
            Decoder::Length(d) => d.peek(src),
            Decoder::Line(d) => d.peek(src),
            Decoder::WebSocket(d) => d.peek(src),
        }
    }
}

/// The frames of one read: one shared buffer and where each payload lies in
/// it, so a read of many small messages costs one reference count, not one each.
#[derive(Debug, Default, Clone)]
pub struct FrameBatch {
    pub chunk: Bytes,
    pub frames: Vec<(FrameType, Range<usize>)>,
    /// An event stream's: one per frame (all text); empty for the others.
    pub labels: Vec<super::sse::SseLabel>,
    /// WebSocket with permessage-deflate: the frames (their indexes) whose
    /// payload is a compressed message, with its opcode; the reader
    /// inflates them before the batch goes on.
    pub compressed: Vec<(usize, u8)>,
}

impl FrameBatch {
    pub fn clear(&mut self) {
        self.chunk = Bytes::new();
        self.frames.clear();
        self.labels.clear();
        self.compressed.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The payload of frame `range` as its own reference-counted buffer.
    pub fn payload(&self, range: &Range<usize>) -> Bytes {
        self.chunk.slice(range.clone())
    }

    /// The frames with their payloads, borrowed.
    pub fn iter(&self) -> impl Iterator<Item = (FrameType, &[u8])> + '_ {
        self.frames.iter().map(|(kind, range)| (*kind, &self.chunk[range.clone()]))
    }
}

/// Bytes read and not yet cut into frames, for one connection.
#[derive(Debug)]
pub struct ReadBuffer {
    decoder: Decoder,
    /// Bytes read but not yet cut into frames.
    buf: BytesMut,
    /// Bytes the incomplete frame at the front needs in all, when its header
    /// says (0 when it does not, or nothing is buffered).
    needed: usize,
    /// Room to make for the next read: doubles while reads fill it, halves
    /// while they use less than a quarter, between READ_MIN and READ_CHUNK.
    read_size: usize,
    /// A decoding error met after good frames; reported on the next call so
    /// the frames before it are delivered first.
    deferred_error: Option<FrameError>,
}

impl ReadBuffer {
    /// The decoder, for a transport that finishes what it found (the
    /// WebSocket reader inflates compressed messages, then classifies them).
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The decoder, to change what it accepts once a handshake agreed on it.
    pub fn decoder_mut(&mut self) -> &mut Decoder {
        &mut self.decoder
    }

    pub fn new(framing: Framing, max_frame_size: usize) -> ReadBuffer {
        ReadBuffer::with_decoder(Decoder::new(framing, max_frame_size))
    }

    pub fn with_decoder(decoder: Decoder) -> ReadBuffer {
        ReadBuffer { decoder, buf: BytesMut::new(), needed: 0, read_size: READ_MIN, deferred_error: None }
    }

    /// Replaces `batch` with the complete frames buffered, up to 1024;
    /// `Ok(false)` if none is complete yet (read more). A bad frame after
    /// good ones is reported on the next call, so the good ones come first.
    pub fn take_frames(&mut self, batch: &mut FrameBatch) -> Result<bool, FrameError> {
        batch.clear();
        if let Some(e) = self.deferred_error.take() {
            return Err(e);
        }
        let mut offset = 0;
        let mut error = None;
        self.needed = 0;
        while batch.frames.len() < MAX_FRAMES_PER_READ {
            match self.decoder.peek(&mut self.buf[offset..]) {
                Ok(Peeked::Complete(head)) => {
                    if let Some(opcode) = head.compressed {
                        batch.compressed.push((batch.frames.len(), opcode));
                    }
                    batch.frames.push((head.kind, offset + head.payload.start..offset + head.payload.end));
                    offset += head.len;
                }
                Ok(Peeked::Partial { needed }) => {
                    self.needed = offset + needed;
                    break;
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if offset > 0 {
            self.deferred_error = error;
            self.needed = self.needed.saturating_sub(offset);
            batch.chunk = self.buf.split_to(offset).freeze();
            return Ok(true);
        }
        match error {
            Some(e) => Err(e),
            None => Ok(false),
        }
    }

    /// Lets go of the buffer if it holds nothing, so a connection waiting
    /// for data holds no read buffer; the next [`ReadBuffer::read_space`]
    /// makes one.
    pub fn release_if_empty(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// The buffer to read into, with room made for the next read; also
    /// returns that room, for [`ReadBuffer::record_read`].
    ///
    /// Memory: the buffer never holds more than the decoder's frame limit
    /// (the most one frame may occupy) plus one read of [`READ_CHUNK`].
    /// Growing doubles the bytes buffered (so a large frame arriving in
    /// small reads is copied a few times, not once per read) up to that
    /// bound, in a new buffer without the bytes already cut out in front
    /// (`BytesMut::reserve` kept them: a line framing's buffer reached 3.65
    /// times its maximum), unless the old buffer can take it in place.
    pub fn read_space(&mut self) -> (&mut BytesMut, usize) {
        let len = self.buf.len();
        let want = self.needed.saturating_sub(len).max(self.read_size);
        if self.buf.capacity() - len < want && !self.buf.try_reclaim(want) {
            let bound = self.decoder.frame_limit().saturating_add(READ_CHUNK);
            let size = (2 * len).min(bound).max(len + want);
            let mut grown = BytesMut::with_capacity(size);
            grown.extend_from_slice(&self.buf);
            self.buf = grown;
        }
        let room = self.buf.capacity() - self.buf.len();
        (&mut self.buf, room)
    }

    /// Adapts the next read's size after a read of `read` bytes into `room`.
    pub fn record_read(&mut self, read: usize, room: usize) {
        self.read_size = if read == room {
            (self.read_size * 2).min(READ_CHUNK)
        } else if read < self.read_size / 4 {
            (self.read_size / 2).max(READ_MIN)
        } else {
            self.read_size
        };
    }

    /// The stream ended: fine between frames, an error inside one.
    pub fn end_of_stream(&self) -> Result<(), FrameError> {
        match self.buf.len() {
            0 => Ok(()),
            buffered => Err(FrameError::TruncatedFrame { buffered }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::hello::{close_payload, hello_payload, parse_close_payload};
    use crate::protocol::Frame;

    /// Feeds `wire` in reads of `chunk` bytes, as a socket would, then ends
    /// the stream; every frame taken, or the first error.
    fn read_all(framing: Framing, max: usize, wire: &[u8], chunk: usize) -> Result<Vec<Frame>, FrameError> {
        let mut reader = ReadBuffer::new(framing, max);
        let mut batch = FrameBatch::default();
        let mut frames = Vec::new();
        let mut collect = |reader: &mut ReadBuffer, frames: &mut Vec<Frame>| -> Result<(), FrameError> {
            while reader.take_frames(&mut batch)? {
                frames.extend(batch.frames.iter().map(|(kind, range)| Frame::new(*kind, batch.payload(range))));
            }
            Ok(())
        };
        for piece in wire.chunks(chunk.max(1)) {
            feed(&mut reader, piece);
            collect(&mut reader, &mut frames)?;
        }
        collect(&mut reader, &mut frames)?;
        reader.end_of_stream()?;
        Ok(frames)
    }

    /// One read of `bytes` into `reader`, as a socket would deliver it.
    fn feed(reader: &mut ReadBuffer, bytes: &[u8]) {
        let (buf, room) = reader.read_space();
        buf.extend_from_slice(bytes);
        reader.record_read(bytes.len(), room);
    }

    fn wire_of(framing: Framing, frames: &[Frame]) -> Vec<u8> {
        let mut wire = Vec::new();
        for frame in frames {
            let (kind, payload) = frame.parts();
            framing.encode(kind, payload, &mut wire);
        }
        wire
    }

    fn data(payloads: &[&[u8]]) -> Vec<Frame> {
        payloads.iter().map(|p| Frame::Data(Bytes::copy_from_slice(p))).collect()
    }

    #[test]
    fn every_framing_survives_split_and_merged_reads() {
        let big = vec![b'x'; 1024];
        let messages = data(&[b"hello", b"", &big, b"last"]);
        for framing in Framing::ALL {
            let wire = wire_of(framing, &messages);
            // Every chunk size: split reads (1 byte at a time) up to merged reads.
            for chunk in [1, 2, 3, 5, 7, 64, wire.len()] {
                assert_eq!(read_all(framing, 1024, &wire, chunk).unwrap(), messages, "{framing:?}, chunk {chunk}");
            }
        }
    }

    #[test]
    fn a_frame_of_exactly_the_maximum_passes_and_one_byte_more_fails() {
        for framing in Framing::ALL {
            let at_max = vec![b'm'; 64];
            let wire = wire_of(framing, &data(&[&at_max]));
            assert_eq!(read_all(framing, 64, &wire, 7).unwrap(), data(&[&at_max]), "{framing:?}");
            let over = vec![b'm'; 65];
            let wire = wire_of(framing, &data(&[&over]));
            let err = read_all(framing, 64, &wire, 7).unwrap_err();
            assert!(matches!(err, FrameError::FrameTooLarge { max: 64, .. }), "{framing:?}: {err}");
        }
    }

    #[test]
    fn an_oversize_header_fails_before_its_payload_arrives_or_memory_is_reserved() {
        let mut reader = ReadBuffer::new(Framing::Longconn, 1024);
        feed(&mut reader, &[0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(matches!(reader.take_frames(&mut FrameBatch::default()), Err(FrameError::FrameTooLarge { .. })));
        assert!(reader.read_space().0.capacity() <= 2 * READ_MIN, "no room made for the announced 4 GiB frame");
    }

    #[test]
    fn eof_mid_frame_is_an_error_and_eof_between_frames_is_clean() {
        for framing in Framing::ALL {
            let wire = wire_of(framing, &data(&[b"complete", b"cut short"]));
            let first = wire_of(framing, &data(&[b"complete"])).len();
            let err = read_all(framing, 1024, &wire[..wire.len() - 2], 4).unwrap_err();
            assert!(matches!(err, FrameError::TruncatedFrame { .. }), "{framing:?}: {err}");
            assert_eq!(read_all(framing, 1024, &wire[..first], 4).unwrap().len(), 1, "{framing:?}");
            assert_eq!(read_all(framing, 1024, &[], 4).unwrap(), vec![], "{framing:?}: empty stream");
        }
    }

    #[test]
    fn frames_before_a_bad_one_are_delivered_first() {
        let mut wire = wire_of(Framing::Longconn, &data(&[b"good"]));
        wire.extend_from_slice(&[0, 0, 0, 1, 0x7f]);
        let mut reader = ReadBuffer::new(Framing::Longconn, 1024);
        feed(&mut reader, &wire);
        let mut batch = FrameBatch::default();
        assert!(reader.take_frames(&mut batch).unwrap());
        assert_eq!(batch.iter().collect::<Vec<_>>(), vec![(FrameType::Data, &b"good"[..])]);
        assert!(matches!(reader.take_frames(&mut batch), Err(FrameError::UnknownFrameType(0x7f))));
    }

    #[test]
    fn typed_frames_round_trip_in_the_longconn_protocol() {
        let frames = vec![
            Frame::Data(Bytes::from_static(b"d")),
            Frame::Ping(Bytes::from_static(b"12345678")),
            Frame::Pong(Bytes::from_static(b"12345678")),
            Frame::Hello(hello_payload(1, "client", None)),
            Frame::Close(close_payload(1000, "bye")),
        ];
        let wire = wire_of(Framing::Longconn, &frames);
        assert_eq!(read_all(Framing::Longconn, 64, &wire, 3).unwrap(), frames);
        assert_eq!(parse_close_payload(&close_payload(4001, "why")), (4001, "why".into()));
    }

    #[test]
    fn a_read_hands_over_at_most_1024_frames_and_keeps_the_rest() {
        let messages: Vec<Frame> = (0..1500u32).map(|i| Frame::Data(Bytes::from(i.to_be_bytes().to_vec()))).collect();
        let wire = wire_of(Framing::Length, &messages);
        let mut reader = ReadBuffer::new(Framing::Length, 1024);
        feed(&mut reader, &wire);
        let mut batch = FrameBatch::default();
        assert!(reader.take_frames(&mut batch).unwrap());
        assert_eq!(batch.frames.len(), MAX_FRAMES_PER_READ);
        assert!(reader.take_frames(&mut batch).unwrap());
        assert_eq!(batch.frames.len(), 1500 - MAX_FRAMES_PER_READ);
        assert!(!reader.take_frames(&mut batch).unwrap());
    }

    /// Seconds `decoder` takes to read `wire` in reads of `chunk` bytes,
    /// taking frames after every read as a connection does, until the end
    /// or the first error.
    fn read_time(decoder: Decoder, wire: &[u8], chunk: usize) -> f64 {
        let started = std::time::Instant::now();
        let mut reader = ReadBuffer::with_decoder(decoder);
        let mut batch = FrameBatch::default();
        'reads: for piece in wire.chunks(chunk) {
            feed(&mut reader, piece);
            loop {
                match reader.take_frames(&mut batch) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(_) => break 'reads,
                }
            }
        }
        started.elapsed().as_secs_f64()
    }

    /// Every decoder's work is linear in the bytes it receives, however
    /// they are cut: a flood of empty WebSocket fragments (both roles), a
    /// long line in 1-byte reads, many tiny frames, and length headers split
    /// byte by byte each take a small multiple of the time of the same
    /// number of bytes in one frame. The fragment flood was quadratic: 2.2
    /// MB of it cost about 35 s of CPU.
    #[test]
    fn every_decoder_does_linear_work_however_the_bytes_are_cut() {
        let max = 1 << 20;
        let key = Some([1, 2, 3, 4]);
        let mut floods: Vec<(&str, Decoder, Vec<u8>, usize)> = Vec::new();
        for (role, key) in [(Role::Server, key), (Role::Client, None)] {
            let mut wire = crate::protocol::websocket::raw(false, 0x2, b"", key);
            while wire.len() < max / 2 {
                wire.extend(crate::protocol::websocket::raw(false, 0x0, b"", key));
            }
            floods.push(("websocket fragments", Decoder::websocket(role, false, max), wire, 64));
        }
        floods.push(("a long line", Decoder::new(Framing::Line, max), vec![b'l'; max - 1], 1));
        let tiny: Vec<u8> = wire_of(Framing::Length, &data(&vec![&b"t"[..]; 200_000]));
        floods.push(("tiny frames", Decoder::new(Framing::Length, max), tiny, 7));
        let split = wire_of(Framing::Longconn, &data(&vec![&b"s"[..]; 100_000]));
        floods.push(("split headers", Decoder::new(Framing::Longconn, max), split, 1));
        for (what, decoder, wire, chunk) in floods {
            let whole = wire_of(Framing::Length, &data(&[&vec![b'w'; wire.len().min(max)]]));
            let baseline =
                read_time(Decoder::new(Framing::Length, max), &whole, 64) * wire.len() as f64 / whole.len() as f64;
            let took = read_time(decoder, &wire, chunk);
            eprintln!(
                "{what}: {:.1} ms for {} bytes (one frame of as many bytes: {:.1} ms)",
                took * 1e3,
                wire.len(),
                baseline * 1e3
            );
            // 1-byte reads cost a call each: compare with the same reads of one frame.
            let floor = if chunk == 1 { read_time(Decoder::new(Framing::Length, max), &whole, 1) } else { baseline };
            assert!(
                took < 20.0 * floor + 0.5,
                "{what}: {took:.3} s against {floor:.3} s for one frame of as many bytes"
            );
        }
    }

    /// A buffer never holds much more than the largest frame and one read:
    /// the line framing's reached 3.65 times (maximum + 64 KiB), because
    /// growing kept the bytes already cut out in front.
    #[test]
    fn buffered_memory_stays_within_the_maximum_and_one_read() {
        let max = 256 * 1024;
        for framing in Framing::ALL {
            let mut reader = ReadBuffer::new(framing, max);
            let mut batch = FrameBatch::default();
            let mut kept = Vec::new();
            let message = vec![b'm'; max - 1];
            let wire = wire_of(framing, &data(&[&message, &message, &message, &message]));
            let mut largest = 0;
            for piece in wire.chunks(3000) {
                feed(&mut reader, piece);
                while reader.take_frames(&mut batch).unwrap() {
                    // The application holds on to what it received, as the inbox may.
                    kept.push(batch.chunk.clone());
                }
                largest = largest.max(reader.buf.capacity());
            }
            assert_eq!(kept.iter().map(|c| c.len()).sum::<usize>(), wire.len(), "{framing:?}");
            let bound = reader.decoder.frame_limit() + READ_CHUNK;
            assert!(largest <= bound, "{framing:?}: {largest} bytes, over {bound} for a maximum of {max}");
        }
    }

    #[test]
    fn reads_grow_while_they_fill_and_shrink_while_they_do_not() {
        let mut reader = ReadBuffer::new(Framing::Length, 1 << 20);
        let (_, room) = reader.read_space();
        assert!(room >= READ_MIN);
        reader.record_read(room, room);
        assert_eq!(reader.read_size, READ_MIN * 2);
        reader.record_read(1, room);
        assert_eq!(reader.read_size, READ_MIN);
    }
}
