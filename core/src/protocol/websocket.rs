//! WebSocket framing (RFC 6455, section 5), after the opening handshake:
//! the frames of a WebSocket connection cut out of the same [`ReadBuffer`]
//! as the other framings, and written by the same writers.
//!
//! ```text
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| length (7)  | length (16 or 64 bits, if 126 |
//! |I|S|S|S|  (4)  |A|             | or 127)                       |
//! |N|V|V|V|       |S|             | masking key (32 bits, if MASK)|
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! | payload (masked with the key, byte i with key[i % 4])         |
//! +---------------------------------------------------------------+
//! ```
//!
//! A client masks every frame it sends and a server none; each side refuses
//! frames masked the other way. No extension is ever negotiated, so the
//! reserved bits must be 0. A message may come in fragments (a first frame
//! without FIN, continuation frames, the last with FIN), with control
//! frames between them: the decoder leaves a fragmented message in the
//! buffer until its last fragment has arrived, moves each control frame
//! found inside it in front of it (so pings are answered while a large
//! message arrives), and then joins the fragments in place into one payload.
//!
//! Under the subprotocol `longconn.v2` (`v2`) a binary message carries one
//! longconn frame: its type byte, then its payload; text messages stay text
//! messages, and pings, pongs and the close handshake stay WebSocket's own.
//!
//! [`ReadBuffer`]: super::ReadBuffer

use super::{FrameError, FrameHead, FrameType, Peeked, CONTROL_PAYLOAD_FLOOR};

/// Which end of the connection this is: it decides who masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

/// The largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame header, read without touching the payload.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    /// RSV1 under permessage-deflate: the message is compressed.
    compressed: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Bytes of the header, masking key included.
    len: usize,
    payload_len: usize,
}

impl Header {
    /// Bytes the whole frame occupies.
    fn frame_len(&self) -> usize {
        self.len + self.payload_len
    }

    fn is_control(&self) -> bool {
        self.opcode >= OP_CLOSE
    }
}

/// Finds WebSocket frames at the front of a buffer (see the module's text).
#[derive(Debug)]
pub struct WsDecoder {
    role: Role,
    v2: bool,
    /// permessage-deflate agreed: RSV1 marks a compressed message.
    deflate: bool,
    /// Largest message accepted, excluding a longconn.v2 type byte.
    max_payload: usize,
    /// Control frames moved in front of the fragmented message now arriving.
    controls_inside: usize,
    /// Bytes of fragments those moves shifted: bounded, so control frames
    /// inside a message cost work linear in the message.
    moved_inside: usize,
    /// How far the fragmented message at the front of the buffer has been
    /// checked: where its next frame starts, and the payload bytes of the
    /// fragments before it. Each read then looks at the new bytes only,
    /// instead of every fragment again (a flood of tiny fragments was
    /// quadratic: 80,000 of them cost 1.6 s of CPU).
    scanned: Option<(usize, usize)>,
}

/// Control frames one fragmented message may carry: each costs a move of
/// the fragments before it, so a flood of them is refused.
const MAX_CONTROLS_INSIDE: usize = 1024;
/// Bytes of fragments those moves may shift in all, as a multiple of the
/// bytes a fragmented message may occupy: more is refused as a flood.
const MOVES_PER_MESSAGE: usize = 4;

impl WsDecoder {
    pub fn new(role: Role, v2: bool, max_payload: usize) -> WsDecoder {
        WsDecoder { role, v2, deflate: false, max_payload, controls_inside: 0, moved_inside: 0, scanned: None }
    }

    /// permessage-deflate was agreed: compressed messages (RSV1) are let
    /// through, whole, for the reader to inflate and then [`WsDecoder::classify`].
    pub fn accept_compressed(&mut self) {
        self.deflate = true;
    }

    /// The most payload bytes a whole message of `opcode` may have on the
    /// wire: the maximum for an application message; under longconn.v2 a
    /// binary message also carries the type byte, and the protocol's own
    /// frames may be as large as [`CONTROL_PAYLOAD_FLOOR`] (see
    /// [`WsDecoder::complete`] for the exact check once the type is known).
    fn message_limit(&self, opcode: u8) -> usize {
        match opcode {
            OP_BINARY | OP_CONTINUATION if self.v2 => self.max_payload.max(CONTROL_PAYLOAD_FLOOR) + 1,
            _ => self.max_payload,
        }
    }

    /// Bytes a fragmented message may occupy with its headers: small
    /// fragments must not make a message much larger than its payload.
    fn region_limit(&self) -> usize {
        self.message_limit(OP_BINARY).saturating_mul(2).saturating_add(64 * 1024)
    }

    /// The most bytes one message (or its fragments, with the largest
    /// frame header behind them) may occupy on the wire.
    pub fn frame_limit(&self) -> usize {
        self.region_limit() + 14
    }

    /// The next frame (or whole message) at the start of `src`, without
    /// consuming it; a complete one is unmasked in place (and a fragmented
    /// message joined), so it must be consumed before `src` is looked at again.
    pub fn peek(&mut self, src: &mut [u8]) -> Result<Peeked, FrameError> {
        let Some(first) = self.header(src)? else { return Ok(Peeked::Partial { needed: 0 }) };
        if first.opcode == OP_CONTINUATION {
            return Err(protocol("a continuation frame with no message to continue"));
        }
        if src.len() < first.frame_len() && (first.fin || first.is_control()) {
            return Ok(Peeked::Partial { needed: first.frame_len() });
        }
        if first.fin || first.is_control() {
            let frame = &mut src[..first.frame_len()];
            if let Some(key) = first.mask {
                apply_mask(&mut frame[first.len..], key);
            }
            return self.complete_as(first.opcode, first.compressed, frame, first.len);
        }
        self.fragmented(src, first)
    }

    /// A message sent in fragments, starting with `first` at the front of
    /// `src`: a control frame inside it is moved in front of it and
    /// returned; once the last fragment is in, the fragments are joined.
    /// Fragments checked by an earlier call are not looked at again.
    fn fragmented(&mut self, src: &mut [u8], first: Header) -> Result<Peeked, FrameError> {
        if src.len() < first.frame_len() {
            return Ok(Peeked::Partial { needed: first.frame_len() });
        }
        let found = self.find_last_fragment(src, first);
        if !matches!(found, Ok(Found::Partial { .. })) {
            self.scanned = None;
        }
        let last = match found {
            Ok(Found::Last(last)) => last,
            Ok(Found::Partial { at, total, needed }) => {
                self.scanned = Some((at, total));
                return Ok(Peeked::Partial { needed });
            }
            Ok(Found::Control { at, total, header }) => {
                // The control frame goes first: the fragments before it move
                // behind it, where the next call finds them as they were.
                self.scanned = Some((at, total));
                let end = at + header.frame_len();
                src[..end].rotate_right(header.frame_len());
                let frame = &mut src[..header.frame_len()];
                if let Some(key) = header.mask {
                    apply_mask(&mut frame[header.len..], key);
                }
                return self.complete(header.opcode, frame, header.len);
            }
            Err(e) => {
                self.controls_inside = 0;
                self.moved_inside = 0;
                return Err(e);
            }
        };
        // Every fragment is in: unmask each and move its payload up behind the previous one.
        let mut read = 0;
        let mut write = first.len;
        while read < last {
            let h = self.header(&src[read..])?.expect("a fragment already parsed");
            let payload = read + h.len..read + h.frame_len();
            if let Some(key) = h.mask {
                apply_mask(&mut src[payload.clone()], key);
            }
            src.copy_within(payload.clone(), write);
            write += payload.len();
            read += h.frame_len();
        }
        self.controls_inside = 0;
        self.moved_inside = 0;
        let head = self.complete_as(first.opcode, first.compressed, &mut src[..write], first.len)?;
        Ok(match head {
            Peeked::Complete(head) => Peeked::Complete(FrameHead { len: last, ..head }),
            partial => partial,
        })
    }

    /// Walks the fragments of the message that `first` opens, from where
    /// the last call stopped, to its last fragment, a control frame inside
    /// it, or the end of what has arrived; checks the message's size and
    /// the cost of control frames on the way.
    fn find_last_fragment(&mut self, src: &[u8], first: Header) -> Result<Found, FrameError> {
        let (mut at, mut total) = self.scanned.unwrap_or((first.frame_len(), first.payload_len));
        let region_limit = self.region_limit();
        loop {
            if at > region_limit {
                return Err(FrameError::FrameTooLarge { len: at, max: self.max_payload });
            }
            let Some(next) = self.header(&src[at.min(src.len())..])? else {
                return Ok(Found::Partial { at, total, needed: 0 });
            };
            let end = at + next.frame_len();
            if next.is_control() {
                if src.len() < end {
                    return Ok(Found::Partial { at, total, needed: end });
                }
                self.controls_inside += 1;
                self.moved_inside += at;
                if self.controls_inside > MAX_CONTROLS_INSIDE || self.moved_inside > region_limit * MOVES_PER_MESSAGE {
                    return Err(protocol("too many control frames inside one fragmented message"));
                }
                return Ok(Found::Control { at, total, header: next });
            }
            if next.opcode != OP_CONTINUATION {
                return Err(protocol("a new message began inside a fragmented one"));
            }
            let grown = total + next.payload_len;
            if grown > self.message_limit(first.opcode) {
                return Err(FrameError::FrameTooLarge { len: grown, max: self.max_payload });
            }
            if src.len() < end {
                return Ok(Found::Partial { at, total, needed: end });
            }
            (at, total) = (end, grown);
            if next.fin {
                return Ok(Found::Last(at));
            }
        }
    }

    /// A frame's header at the front of `src` if all of it is there, checked
    /// against the rules that need no payload.
    fn header(&self, src: &[u8]) -> Result<Option<Header>, FrameError> {
        let [b0, b1, ..] = *src else { return Ok(None) };
        let opcode = b0 & 0x0f;
        let compressed = b0 & 0x40 != 0;
        if b0 & 0x30 != 0 || (compressed && !self.deflate) {
            return Err(protocol("reserved bits set with no extension negotiated"));
        }
        if compressed && !matches!(opcode, OP_TEXT | OP_BINARY) {
            return Err(protocol("RSV1 (compressed) set on a control or continuation frame"));
        }
        if !matches!(opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
            return Err(protocol("a reserved opcode"));
        }
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Client, true) => return Err(protocol("a masked frame from the server")),
            (Role::Server, false) => return Err(protocol("an unmasked frame from the client")),
            _ => {}
        }
        let (extended, short) = match b1 & 0x7f {
            126 => (2, None),
            127 => (8, None),
            short => (0, Some(short as usize)),
        };
        let len = 2 + extended + if masked { 4 } else { 0 };
        if src.len() < len {
            return Ok(None);
        }
        let payload_len = match short {
            Some(short) => short,
            None if extended == 2 => u16::from_be_bytes([src[2], src[3]]) as usize,
            None => {
                let long = u64::from_be_bytes(src[2..10].try_into().expect("8 bytes"));
                if long >> 63 != 0 {
                    return Err(protocol("a 64-bit length with its top bit set"));
                }
                usize::try_from(long).unwrap_or(usize::MAX)
            }
        };
        if opcode >= OP_CLOSE && (!fin || payload_len > MAX_CONTROL_PAYLOAD) {
            return Err(protocol("a fragmented or oversize control frame"));
        }
        if payload_len > self.message_limit(opcode) {
            return Err(FrameError::FrameTooLarge { len: payload_len, max: self.max_payload });
        }
        let mask = masked.then(|| src[len - 4..len].try_into().expect("4 bytes"));
        Ok(Some(Header { fin, compressed, opcode, mask, len, payload_len }))
    }

    /// What a whole unmasked message or control frame in `frame` (its
    /// payload from `start`) is, checked as its kind requires.
    fn complete(&self, opcode: u8, frame: &mut [u8], start: usize) -> Result<Peeked, FrameError> {
        self.complete_as(opcode, false, frame, start)
    }

    /// [`WsDecoder::complete`], or for a compressed message, its place only.
    fn complete_as(&self, opcode: u8, compressed: bool, frame: &mut [u8], start: usize) -> Result<Peeked, FrameError> {
        if compressed {
            let head = FrameHead {
                len: frame.len(),
                payload: start..frame.len(),
                kind: FrameType::Data,
                compressed: Some(opcode),
            };
            return Ok(Peeked::Complete(head));
        }
        let (kind, skip) = self.classify(opcode, &frame[start..])?;
        Ok(Peeked::Complete(FrameHead { len: frame.len(), payload: start + skip..frame.len(), kind, compressed: None }))
    }

    /// What a whole message's `payload` of `opcode` is (for an inflated
    /// one too), checked as its kind requires; and how many bytes in front
    /// of the payload proper (a longconn.v2 type byte) to skip.
    pub fn classify(&self, opcode: u8, payload: &[u8]) -> Result<(FrameType, usize), FrameError> {
        let (kind, skip) = match opcode {
            OP_BINARY if self.v2 => {
                let kind = match payload.first() {
                    Some(0x01) => FrameType::Data,
                    Some(0x02) => FrameType::Ping,
                    Some(0x03) => FrameType::Pong,
                    Some(0x04) => FrameType::Hello,
                    Some(0x05) => FrameType::Close,
                    Some(0x06) => FrameType::Ack,
                    Some(0x07) => FrameType::Text,
                    Some(&other) => return Err(FrameError::UnknownFrameType(other)),
                    None => return Err(FrameError::Malformed("an empty binary message under longconn.v2")),
                };
                let body = &payload[1..];
                if matches!(kind, FrameType::Data | FrameType::Text) && body.len() > self.max_payload {
                    return Err(FrameError::FrameTooLarge { len: body.len(), max: self.max_payload });
                }
                if kind == FrameType::Text && std::str::from_utf8(body).is_err() {
                    return Err(protocol("a text message (longconn.v2) that is not UTF-8"));
                }
                (kind, 1)
            }
            OP_BINARY => (FrameType::Data, 0),
            OP_TEXT => {
                if std::str::from_utf8(payload).is_err() {
                    return Err(protocol("a text message that is not UTF-8"));
                }
                (FrameType::Text, 0)
            }
            OP_PING => (FrameType::Ping, 0),
            OP_PONG => (FrameType::Pong, 0),
            _ => {
                if payload.len() == 1 || std::str::from_utf8(payload.get(2..).unwrap_or_default()).is_err() {
                    return Err(protocol("a close frame with a one-byte or non-UTF-8 payload"));
                }
                (FrameType::Close, 0)
            }
        };
        Ok((kind, skip))
    }
}

/// Where [`WsDecoder::find_last_fragment`] stopped.
enum Found {
    /// The message's last fragment ends here.
    Last(usize),
    /// More must arrive: the next frame starts at `at`, after fragments of
    /// `total` payload bytes; `needed` bytes in all, when known.
    Partial { at: usize, total: usize, needed: usize },
    /// A control frame inside the message starts at `at`.
    Control { at: usize, total: usize, header: Header },
}

fn protocol(why: &str) -> FrameError {
    FrameError::Protocol(format!("WebSocket: {why}"))
}

/// XORs `data` with the masking key, byte `i` with `key[i % 4]`; masking
/// and unmasking are the same operation. Eight bytes at a time.
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// Writes WebSocket frames: one per frame handed to it.
#[derive(Debug, Clone, Copy)]
pub struct WsEncoder {
    role: Role,
    v2: bool,
}

impl WsEncoder {
    pub fn new(role: Role, v2: bool) -> WsEncoder {
        WsEncoder { role, v2 }
    }

    /// Appends `payload` as a frame of `kind` to `dst`. Under longconn.v2,
    /// data, text, hello and ack frames are binary messages led by their
    /// type byte; without it hello and ack have no WebSocket form and are
    /// skipped, and text that is not UTF-8 is sent with its bad bytes
    /// replaced. Control payloads are cut to 125 bytes (a close reason at a
    /// character boundary).
    pub fn encode(&self, kind: FrameType, payload: &[u8], dst: &mut Vec<u8>) {
        match kind {
            FrameType::Data | FrameType::Text | FrameType::Hello | FrameType::Ack if self.v2 => {
                self.frame(OP_BINARY, Some(kind as u8), payload, dst)
            }
            FrameType::Hello | FrameType::Ack => {}
            FrameType::Data => self.frame(OP_BINARY, None, payload, dst),
            FrameType::Text => match std::str::from_utf8(payload) {
                Ok(_) => self.frame(OP_TEXT, None, payload, dst),
                Err(_) => self.frame(OP_TEXT, None, String::from_utf8_lossy(payload).as_bytes(), dst),
            },
            FrameType::Ping => self.frame(OP_PING, None, &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)], dst),
            FrameType::Pong => self.frame(OP_PONG, None, &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)], dst),
            FrameType::Close => self.frame(OP_CLOSE, None, close_cut(payload), dst),
        }
    }

    /// Appends one message the application sent (text already checked to be UTF-8).
    #[inline]
    pub fn encode_message(&self, text: bool, payload: &[u8], dst: &mut Vec<u8>) {
        match (self.v2, text) {
            (true, _) => {
                let kind = if text { FrameType::Text } else { FrameType::Data };
                self.frame(OP_BINARY, Some(kind as u8), payload, dst)
            }
            (false, true) => self.frame(OP_TEXT, None, payload, dst),
            (false, false) => self.frame(OP_BINARY, None, payload, dst),
        }
    }

    /// Appends a message as [`WsEncoder::encode_message`] does, compressed
    /// by `deflater` (permessage-deflate: RSV1 set) when it is long enough;
    /// `scratch` holds the message before it is compressed.
    pub fn encode_compressed(
        &self,
        deflater: &mut super::deflate::Deflater,
        text: bool,
        payload: &[u8],
        scratch: &mut Vec<u8>,
        dst: &mut Vec<u8>,
    ) {
        if payload.len() < super::deflate::MIN_COMPRESSED {
            return self.encode_message(text, payload, dst);
        }
        let (opcode, lead) = match (self.v2, text) {
            (true, _) => (OP_BINARY, Some(if text { FrameType::Text } else { FrameType::Data } as u8)),
            (false, true) => (OP_TEXT, None),
            (false, false) => (OP_BINARY, None),
        };
        scratch.clear();
        match lead {
            Some(lead) => {
                // The type byte is part of the message, so it is compressed with it.
                let mut message = Vec::with_capacity(payload.len() + 1);
                message.push(lead);
                message.extend_from_slice(payload);
                deflater.deflate(&message, scratch);
            }
            None => deflater.deflate(payload, scratch),
        }
        let at = dst.len();
        self.frame(opcode, None, scratch, dst);
        dst[at] |= 0x40; // RSV1: compressed
    }

    /// One unfragmented frame: the header, then `lead` and `payload`, masked if a client sends it.
    #[inline]
    fn frame(&self, opcode: u8, lead: Option<u8>, payload: &[u8], dst: &mut Vec<u8>) {
        let len = payload.len() + usize::from(lead.is_some());
        let client = self.role == Role::Client;
        let mask_bit = if client { 0x80 } else { 0 };
        // The header is built on the stack and appended at once.
        let mut head = [0u8; 14];
        head[0] = 0x80 | opcode;
        let mut at = if len < 126 {
            head[1] = mask_bit | len as u8;
            2
        } else if let Ok(short) = u16::try_from(len) {
            head[1] = mask_bit | 126;
            head[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            head[1] = mask_bit | 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        let key = client.then(rand::random::<[u8; 4]>);
        if let Some(key) = key {
            head[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        dst.reserve(at + len);
        dst.extend_from_slice(&head[..at]);
        let start = dst.len();
        if let Some(lead) = lead {
            dst.push(lead);
        }
        dst.extend_from_slice(payload);
        if let Some(key) = key {
            apply_mask(&mut dst[start..], key);
        }
    }
}

/// A close payload cut to what a control frame holds, the reason at a character boundary.
fn close_cut(payload: &[u8]) -> &[u8] {
    if payload.len() <= MAX_CONTROL_PAYLOAD {
        return payload;
    }
    let mut end = MAX_CONTROL_PAYLOAD;
    while end > 2 && std::str::from_utf8(&payload[2..end]).is_err() {
        end -= 1;
    }
    &payload[..end]
}

/// A frame as a peer would write it: `fin`, `opcode`, masked with `key`
/// if given (for the tests of this module and of the read path).
#[cfg(test)]
pub(crate) fn raw(fin: bool, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mut body = payload.to_vec();
    if let Some(key) = key {
        out.extend_from_slice(&key);
        apply_mask(&mut body, key);
    }
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame `decoder` takes from the front of `wire`, in order.
    fn decode_all(decoder: &mut WsDecoder, wire: &mut [u8]) -> Result<Vec<(FrameType, Vec<u8>)>, FrameError> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < wire.len() {
            match decoder.peek(&mut wire[at..])? {
                Peeked::Complete(head) => {
                    out.push((head.kind, wire[at + head.payload.start..at + head.payload.end].to_vec()));
                    at += head.len;
                }
                Peeked::Partial { .. } => break,
            }
        }
        Ok(out)
    }

    #[test]
    fn masking_twice_gives_the_bytes_back_at_every_length_and_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut masked = data.clone();
            apply_mask(&mut masked, key);
            for (i, (m, d)) in masked.iter().zip(&data).enumerate() {
                assert_eq!(*m, d ^ key[i % 4], "byte {i} of {len}");
            }
            apply_mask(&mut masked, key);
            assert_eq!(masked, data);
        }
    }

    #[test]
    fn what_one_side_encodes_the_other_decodes_at_every_length_class() {
        for v2 in [false, true] {
            for (writer, reader) in [(Role::Client, Role::Server), (Role::Server, Role::Client)] {
                let encoder = WsEncoder::new(writer, v2);
                let mut wire = Vec::new();
                let sizes = [0usize, 1, 125, 126, 65_535, 65_536, 70_000];
                for &n in &sizes {
                    encoder.encode(FrameType::Data, &vec![n as u8; n], &mut wire);
                }
                encoder.encode_message(true, "text é".as_bytes(), &mut wire);
                encoder.encode(FrameType::Ping, b"12345678", &mut wire);
                encoder.encode(FrameType::Close, &[0x03, 0xe8, b'b', b'y', b'e'], &mut wire);
                let got = decode_all(&mut WsDecoder::new(reader, v2, 1 << 20), &mut wire).unwrap();
                let mut expected: Vec<(FrameType, Vec<u8>)> =
                    sizes.iter().map(|&n| (FrameType::Data, vec![n as u8; n])).collect();
                expected.push((FrameType::Text, "text é".as_bytes().to_vec()));
                expected.push((FrameType::Ping, b"12345678".to_vec()));
                expected.push((FrameType::Close, vec![0x03, 0xe8, b'b', b'y', b'e']));
                assert_eq!(got, expected, "{writer:?} to {reader:?}, v2 {v2}");
            }
        }
    }

    #[test]
    fn the_rfc_examples_decode() {
        // RFC 6455, 5.7: "Hello" unmasked from a server, and masked from a client.
        let mut from_server = vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let mut from_client = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let hello = vec![(FrameType::Text, b"Hello".to_vec())];
        assert_eq!(decode_all(&mut WsDecoder::new(Role::Client, false, 64), &mut from_server).unwrap(), hello);
        assert_eq!(decode_all(&mut WsDecoder::new(Role::Server, false, 64), &mut from_client).unwrap(), hello);
        // A fragmented text message: "Hel", then "lo".
        let mut fragments = vec![0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(decode_all(&mut WsDecoder::new(Role::Client, false, 64), &mut fragments).unwrap(), hello);
    }

    #[test]
    fn fragments_are_joined_and_a_ping_inside_them_comes_first() {
        let key = Some([1, 2, 3, 4]);
        let mut wire = raw(false, OP_BINARY, b"one ", key);
        wire.extend(raw(false, OP_CONTINUATION, b"two ", key));
        wire.extend(raw(true, OP_PING, b"p", key));
        wire.extend(raw(true, OP_CONTINUATION, b"three", key));
        wire.extend(raw(true, OP_BINARY, b"next", key));
        let got = decode_all(&mut WsDecoder::new(Role::Server, false, 64), &mut wire).unwrap();
        assert_eq!(
            got,
            vec![
                (FrameType::Ping, b"p".to_vec()),
                (FrameType::Data, b"one two three".to_vec()),
                (FrameType::Data, b"next".to_vec())
            ]
        );
    }

    #[test]
    fn a_fragmented_message_waits_for_its_last_fragment_at_every_cut() {
        let mut wire = raw(false, OP_TEXT, b"ab", None);
        wire.extend(raw(true, OP_PONG, b"", None));
        wire.extend(raw(true, OP_CONTINUATION, b"cd", None));
        for cut in 0..wire.len() {
            let mut part = wire[..cut].to_vec();
            let mut decoder = WsDecoder::new(Role::Client, false, 64);
            let got = decode_all(&mut decoder, &mut part).unwrap();
            assert!(got.iter().all(|(kind, _)| *kind == FrameType::Pong), "cut {cut}: {got:?}");
        }
        let got = decode_all(&mut WsDecoder::new(Role::Client, false, 64), &mut wire).unwrap();
        assert_eq!(got, vec![(FrameType::Pong, vec![]), (FrameType::Text, b"abcd".to_vec())]);
    }

    #[test]
    fn broken_rules_are_errors() {
        let cases: Vec<(Role, Vec<u8>, &str)> = vec![
            (Role::Client, raw(true, OP_BINARY, b"x", Some([1, 1, 1, 1])), "masked from the server"),
            (Role::Server, raw(true, OP_BINARY, b"x", None), "unmasked from the client"),
            (Role::Client, vec![0xc2, 0x00], "reserved bit"),
            (Role::Client, vec![0x83, 0x00], "reserved opcode"),
            (Role::Client, raw(true, OP_CONTINUATION, b"x", None), "continuation first"),
            (Role::Client, raw(false, OP_PING, b"x", None), "fragmented control"),
            (Role::Client, raw(true, OP_PING, &[0; 126], None), "oversize control"),
            (Role::Client, raw(true, OP_TEXT, &[0xff, 0xfe], None), "bad UTF-8"),
            (Role::Client, raw(true, OP_CLOSE, &[3], None), "one-byte close"),
            (Role::Client, [raw(false, OP_TEXT, b"a", None), raw(true, OP_TEXT, b"b", None)].concat(), "new message"),
            (Role::Client, vec![0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0], "64-bit top bit"),
        ];
        for (role, mut wire, what) in cases {
            let result = decode_all(&mut WsDecoder::new(role, false, 64), &mut wire);
            assert!(matches!(result, Err(FrameError::Protocol(_))), "{what}: {result:?}");
        }
    }

    #[test]
    fn sizes_are_checked_from_headers_and_across_fragments() {
        let mut decoder = WsDecoder::new(Role::Client, false, 64);
        // A header announcing 2^40 bytes: refused before any payload.
        let mut huge = vec![0x82, 0x7f];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert!(matches!(decoder.peek(&mut huge), Err(FrameError::FrameTooLarge { max: 64, .. })));
        let mut at_max = raw(true, OP_BINARY, &[7; 64], None);
        assert!(matches!(decoder.peek(&mut at_max), Ok(Peeked::Complete(_))));
        let mut over = raw(false, OP_BINARY, &[7; 40], None);
        over.extend(raw(false, OP_CONTINUATION, &[7; 25], None));
        assert!(matches!(decoder.peek(&mut over), Err(FrameError::FrameTooLarge { .. })));
        // Fragments of nothing, endlessly: bounded by their headers.
        let mut empty = raw(false, OP_BINARY, b"", None);
        for _ in 0..40_000 {
            empty.extend(raw(false, OP_CONTINUATION, b"", None));
        }
        assert!(matches!(decoder.peek(&mut empty), Err(FrameError::FrameTooLarge { .. })));
    }

    #[test]
    fn v2_binary_messages_carry_a_type_byte_and_plain_text_stays_text() {
        let encoder = WsEncoder::new(Role::Server, true);
        let mut wire = Vec::new();
        encoder.encode(FrameType::Hello, b"h", &mut wire);
        encoder.encode(FrameType::Ack, &[0; 8], &mut wire);
        encoder.encode_message(false, &[9; 64], &mut wire);
        let got = decode_all(&mut WsDecoder::new(Role::Client, true, 64), &mut wire).unwrap();
        assert_eq!(
            got,
            vec![(FrameType::Hello, b"h".to_vec()), (FrameType::Ack, vec![0; 8]), (FrameType::Data, vec![9; 64])]
        );
        let mut unknown = raw(true, OP_BINARY, &[0x7f], None);
        let decoded = WsDecoder::new(Role::Client, true, 64).peek(&mut unknown);
        assert!(matches!(decoded, Err(FrameError::UnknownFrameType(0x7f))));
        let mut plain = Vec::new();
        WsEncoder::new(Role::Server, false).encode(FrameType::Ack, &[0; 8], &mut plain);
        assert!(plain.is_empty(), "no acknowledgements without longconn.v2");
    }

    #[test]
    fn the_maximum_counts_the_message_the_same_whole_or_in_fragments() {
        // Under longconn.v2 with a maximum of 1: "x" as DATA, whole and in two fragments.
        let whole = vec![0x82, 0x02, 0x01, b'x'];
        let fragments = vec![0x02, 0x00, 0x80, 0x02, 0x01, b'x'];
        let over = [0x02, 0x01, 0x01, 0x80, 0x02, b'x', b'y'];
        for mut wire in [whole, fragments] {
            let got = decode_all(&mut WsDecoder::new(Role::Client, true, 1), &mut wire).unwrap();
            assert_eq!(got, vec![(FrameType::Data, b"x".to_vec())], "{wire:x?}");
        }
        let refused = decode_all(&mut WsDecoder::new(Role::Client, true, 1), &mut over.to_vec());
        assert!(matches!(refused, Err(FrameError::FrameTooLarge { len: 2, max: 1 })), "{refused:?}");
        let mut whole_over = vec![0x82, 0x03, 0x01, b'x', b'y'];
        let refused = decode_all(&mut WsDecoder::new(Role::Client, true, 1), &mut whole_over);
        assert!(matches!(refused, Err(FrameError::FrameTooLarge { len: 2, max: 1 })), "{refused:?}");
    }

    #[test]
    fn v2_text_must_be_utf8_and_the_protocols_own_frames_fit_under_a_small_maximum() {
        let mut bad_text = raw(true, OP_BINARY, &[0x07, 0xff], None);
        let decoded = decode_all(&mut WsDecoder::new(Role::Client, true, 64), &mut bad_text);
        assert!(matches!(decoded, Err(FrameError::Protocol(_))), "{decoded:?}");
        let mut hello = vec![0x04];
        hello.extend_from_slice(&[b'h'; 60]);
        let mut wire = raw(true, OP_BINARY, &hello, Some([9, 8, 7, 6]));
        let got = decode_all(&mut WsDecoder::new(Role::Server, true, 16), &mut wire).unwrap();
        assert_eq!(got, vec![(FrameType::Hello, vec![b'h'; 60])], "a 60-byte hello under a 16-byte maximum");
    }

    #[test]
    fn bad_text_and_long_close_reasons_are_made_sendable() {
        let encoder = WsEncoder::new(Role::Server, false);
        let mut wire = Vec::new();
        encoder.encode(FrameType::Text, &[b'a', 0xff], &mut wire);
        let mut reason = vec![0x0f, 0xa0];
        reason.extend("é".repeat(100).as_bytes());
        encoder.encode(FrameType::Close, &reason, &mut wire);
        let got = decode_all(&mut WsDecoder::new(Role::Client, false, 1024), &mut wire).unwrap();
        assert_eq!(got[0], (FrameType::Text, "a\u{fffd}".as_bytes().to_vec()));
        assert_eq!(got[1].1.len(), 124, "2 code bytes and 61 two-byte characters");
    }
}
