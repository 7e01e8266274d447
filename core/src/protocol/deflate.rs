//! permessage-deflate (RFC 7692) on WebSocket: the negotiation in the
//! handshake's `Sec-WebSocket-Extensions`, and inflating the messages a
//! peer compressed (raw DEFLATE, the `00 00 FF FF` tail taken off by the
//! sender put back), with the inbound limit applied to the inflated size,
//! so a small compressed message that would inflate to gigabytes is a
//! clear error, not memory growth.
//!
//! A client compresses the messages it sends from [`MIN_COMPRESSED`] bytes
//! on (smaller ones go as they are, which RFC 7692 allows), with the
//! largest window, so it offers no window size of its own; it accepts
//! whatever window the server compresses with (an inflater with the
//! largest window reads all of them). The bundled server does not compress.

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::FrameError;

/// The extension's name, and a client's offer.
pub const OFFER: &str = "permessage-deflate";

/// What the handshake agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The server starts each message with an empty window.
    pub server_no_context_takeover: bool,
    /// The client starts each message with an empty window.
    pub client_no_context_takeover: bool,
}

/// A bad answer to the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The server's `Sec-WebSocket-Extensions` answer to our offer: what it
/// agreed to, `None` when it chose no extension. Anything we did not offer,
/// or a parameter RFC 7692 does not let it send, fails the handshake
/// (section 7.1: the client must fail the connection).
pub fn client_reads_answer(values: &[&str]) -> Result<Option<Agreed>, Refused> {
    let mut agreed = None;
    for extension in values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|e| !e.is_empty()) {
        let mut parts = extension.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        if !name.eq_ignore_ascii_case(OFFER) {
            return Err(Refused(format!("the server chose the extension {name:?}, which was not offered")));
        }
        if agreed.is_some() {
            return Err(Refused("the server chose permessage-deflate twice".into()));
        }
        let mut a = Agreed { server_no_context_takeover: false, client_no_context_takeover: false };
        for parameter in parts.filter(|p| !p.is_empty()) {
            let (key, value) = match parameter.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                None => (parameter, None),
            };
            match (key.to_ascii_lowercase().as_str(), value) {
                ("server_no_context_takeover", None) => a.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => a.client_no_context_takeover = true,
                ("server_max_window_bits", Some(bits)) if window_bits(bits).is_some() => {}
                // Only in answer to an offer of it, which we never make.
                ("client_max_window_bits", _) => {
                    return Err(Refused("the server set client_max_window_bits, which was not offered".into()))
                }
                _ => return Err(Refused(format!("the server answered permessage-deflate with {parameter:?}"))),
            }
        }
        agreed = Some(a);
    }
    Ok(agreed)
}

/// A server's choice among a client's `Sec-WebSocket-Extensions` offers:
/// the first permessage-deflate offer it can take, and the answer to send.
/// An offer it cannot take (an unknown or malformed parameter) is passed
/// over, as RFC 7692 says.
pub fn server_answers(values: &[&str]) -> Option<(Agreed, String)> {
    'offers: for offer in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        let mut parts = offer.split(';').map(str::trim);
        if !parts.next().is_some_and(|name| name.eq_ignore_ascii_case(OFFER)) {
            continue;
        }
        let mut client_no_context_takeover = false;
        for parameter in parts.filter(|p| !p.is_empty()) {
            let (key, value) = match parameter.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
                None => (parameter, None),
            };
            match (key.to_ascii_lowercase().as_str(), value) {
                ("client_no_context_takeover", None) => client_no_context_takeover = true,
                // We send uncompressed: what the client asks of our
                // compression holds trivially.
                ("server_no_context_takeover", None) => {}
                ("server_max_window_bits", Some(bits)) if window_bits(bits).is_some() => {}
                ("client_max_window_bits", None) => {}
                ("client_max_window_bits", Some(bits)) if window_bits(bits).is_some() => {}
                _ => continue 'offers,
            }
        }
        let answer =
            if client_no_context_takeover { format!("{OFFER}; client_no_context_takeover") } else { OFFER.to_string() };
        return Some((Agreed { server_no_context_takeover: false, client_no_context_takeover }, answer));
    }
    None
}

/// A window size parameter: 8 to 15.
fn window_bits(value: &str) -> Option<u8> {
    value.parse::<u8>().ok().filter(|bits| (8..=15).contains(bits) && !value.starts_with('0'))
}

/// Messages shorter than this go uncompressed: below it, deflate's block
/// overhead and the CPU outweigh what it saves.
pub const MIN_COMPRESSED: usize = 128;

/// Compresses the messages this side sends, keeping its window between
/// messages unless the peer asked for a fresh one each time.
pub struct Deflater {
    deflate: Compress,
    fresh_each: bool,
}

impl fmt::Debug for Deflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Deflater {{ fresh_each: {} }}", self.fresh_each)
    }
}

impl Deflater {
    pub fn new(fresh_each: bool) -> Deflater {
        Deflater { deflate: Compress::new(Compression::fast(), false), fresh_each }
    }

    /// Appends `message` compressed to `out`, as permessage-deflate sends
    /// it: raw DEFLATE flushed to a byte boundary, without the `00 00 FF FF`
    /// that flush ends with.
    pub fn deflate(&mut self, message: &[u8], out: &mut Vec<u8>) {
        let start_out = out.len();
        let start_in = self.deflate.total_in();
        loop {
            out.reserve(message.len() / 2 + 64);
            let done = (self.deflate.total_in() - start_in) as usize;
            // Compressing into a Vec with room cannot fail.
            let _ = self.deflate.compress_vec(&message[done..], out, FlushCompress::Sync);
            if (self.deflate.total_in() - start_in) as usize == message.len() && out.len() < out.capacity() {
                break;
            }
        }
        debug_assert!(out[start_out..].ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
        if self.fresh_each {
            self.deflate.reset();
        }
    }
}

/// Inflates a peer's compressed messages, keeping its window between
/// messages unless the peer agreed to start each afresh.
pub struct Inflater {
    inflate: Decompress,
    /// The peer starts each message with an empty window.
    fresh_each: bool,
    /// The most bytes one message may inflate to.
    limit: usize,
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Inflater {{ fresh_each: {}, limit: {} }}", self.fresh_each, self.limit)
    }
}

/// What a compressed message ends with once its sender's tail is back.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

impl Inflater {
    pub fn new(fresh_each: bool, limit: usize) -> Inflater {
        Inflater { inflate: Decompress::new(false), fresh_each, limit }
    }

    /// Appends the inflated `compressed` message to `out`; refuses one that
    /// inflates past the limit, or is not DEFLATE.
    pub fn inflate(&mut self, compressed: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        let start = out.len();
        let result = self.inflate_parts(&[compressed, &TAIL], out, start);
        if self.fresh_each || result.is_err() {
            self.inflate.reset(false);
        }
        result
    }

    fn inflate_parts(&mut self, parts: &[&[u8]], out: &mut Vec<u8>, start: usize) -> Result<(), FrameError> {
        let too_large = |len| FrameError::FrameTooLarge { len, max: self.limit };
        for part in parts {
            let mut input = *part;
            loop {
                let produced = out.len() - start;
                if produced > self.limit {
                    return Err(too_large(produced));
                }
                // Room for a little more than the limit, so passing it shows.
                let room = (self.limit + 1 - produced).min(64 * 1024);
                out.reserve(room);
                let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
                let status = self
                    .inflate
                    .decompress_vec(input, out, FlushDecompress::Sync)
                    .map_err(|e| FrameError::Protocol(format!("a compressed message that does not inflate: {e}")))?;
                let consumed = (self.inflate.total_in() - before_in) as usize;
                let made = (self.inflate.total_out() - before_out) as usize;
                input = &input[consumed..];
                if status == Status::StreamEnd {
                    return Err(FrameError::Protocol("a compressed message with a final block".into()));
                }
                if input.is_empty() && made < room {
                    break;
                }
                if consumed == 0 && made == 0 {
                    return Err(FrameError::Protocol("a compressed message that does not inflate".into()));
                }
            }
        }
        let produced = out.len() - start;
        if produced > self.limit {
            return Err(too_large(produced));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// Compresses as a peer does: raw DEFLATE, sync flush, tail removed.
    fn compress(deflate: &mut Compress, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let start = deflate.total_in();
        loop {
            out.reserve(64 * 1024);
            let done = (deflate.total_in() - start) as usize;
            deflate.compress_vec(&message[done..], &mut out, FlushCompress::Sync).unwrap();
            if (deflate.total_in() - start) as usize == message.len() && out.len() < out.capacity() {
                break;
            }
        }
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn messages_inflate_with_and_without_the_window_kept() {
        for fresh_each in [false, true] {
            let mut deflate = Compress::new(Compression::default(), false);
            let mut inflater = Inflater::new(fresh_each, 1 << 20);
            for round in 0..3 {
                let message = format!("{{\"round\":{round},\"text\":\"{}\"}}", "repeat ".repeat(200));
                if fresh_each {
                    deflate.reset();
                }
                let compressed = compress(&mut deflate, message.as_bytes());
                assert!(compressed.len() < message.len() / 4, "it compresses");
                let mut out = b"before".to_vec();
                inflater.inflate(&compressed, &mut out).unwrap();
                assert_eq!(&out[6..], message.as_bytes(), "fresh_each {fresh_each}, round {round}");
            }
        }
    }

    #[test]
    fn a_bomb_is_refused_at_the_limit_without_inflating_it_all() {
        let mut deflate = Compress::new(Compression::best(), false);
        let zeros = vec![0u8; 16 << 20];
        let compressed = compress(&mut deflate, &zeros);
        assert!(compressed.len() < 64 * 1024, "{} bytes", compressed.len());
        let mut inflater = Inflater::new(false, 1 << 20);
        let mut out = Vec::new();
        let error = inflater.inflate(&compressed, &mut out).unwrap_err();
        assert!(matches!(error, FrameError::FrameTooLarge { max: 1_048_576, .. }), "{error:?}");
        assert!(out.capacity() <= (2 << 20) + (64 << 10), "memory stays near the limit: {}", out.capacity());
        assert!(inflater.inflate(b"\xff\xff\xff", &mut Vec::new()).is_err(), "garbage is refused");
    }

    #[test]
    fn answers_are_read_and_offers_chosen_as_rfc_7692_says() {
        assert_eq!(client_reads_answer(&[]), Ok(None));
        let a = client_reads_answer(&["permessage-deflate; server_no_context_takeover; server_max_window_bits=10"]);
        assert_eq!(a, Ok(Some(Agreed { server_no_context_takeover: true, client_no_context_takeover: false })));
        for bad in [
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=015",
            "permessage-deflate; color=red",
            "x-webkit-deflate-frame",
            "permessage-deflate, permessage-deflate",
        ] {
            assert!(client_reads_answer(&[bad]).is_err(), "{bad}");
        }
        let (agreed, answer) = server_answers(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!((agreed.client_no_context_takeover, answer.as_str()), (false, "permessage-deflate"));
        let (agreed, answer) = server_answers(&[
            "x-custom, permessage-deflate; color=red",
            "permessage-deflate; client_no_context_takeover",
        ])
        .unwrap();
        assert_eq!(
            (agreed.client_no_context_takeover, answer.as_str()),
            (true, "permessage-deflate; client_no_context_takeover")
        );
        assert_eq!(server_answers(&["x-custom"]), None);
    }
}
