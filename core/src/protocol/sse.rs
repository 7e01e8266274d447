//! Server-Sent Events: an event stream read as the WHATWG HTML standard's
//! "interpreting an event stream" says (section 9.2.6), fed the bytes of a
//! response body as they arrive, in pieces of any size.
//!
//! - One byte order mark at the start of the stream is dropped.
//! - Lines end with CRLF, LF or a lone CR, also when a CRLF is split
//!   between two pieces.
//! - Lines starting with `:` are comments (signs of life, nothing more).
//! - `field: value` (one space after the colon dropped), or a line that is
//!   all field name with an empty value. `data` lines are joined with LF;
//!   `event` sets the type (`message` when none); `id` sets the last event
//!   id unless its value holds a NUL, and an empty one resets it; `retry`
//!   counts only when it is all ASCII digits; other fields are ignored.
//! - A blank line dispatches: the last event id is updated first, so an
//!   id-only block moves it without an event; an event with no data is not
//!   delivered.
//! - An event not ended by a blank line when the stream ends is dropped.
//! - Bytes that are not UTF-8 become U+FFFD, never an error.
//!
//! One limit holds memory: no line, and no event's data, may exceed the
//! parser's maximum (the client's maximum message size); past it the
//! stream is refused with an error.

use std::fmt;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, or `message`.
    pub event_type: String,
    pub data: String,
    /// The last event id in force when it was dispatched (empty: none).
    pub id: String,
}

/// What an event stream said of one message: its event type and the last
/// event id when it was dispatched. They live in a buffer the labels of a
/// read share ([`SseLabels`]), each followed by a NUL, so a label costs a
/// count and C can read them in place.
#[derive(Debug, Clone)]
pub struct SseLabel {
    /// `type NUL id NUL` for this label, among others.
    text: std::sync::Arc<str>,
    start: u32,
    /// Where the id starts.
    id_at: u32,
    end: u32,
}

impl PartialEq for SseLabel {
    fn eq(&self, other: &SseLabel) -> bool {
        self.event_type() == other.event_type() && self.id() == other.id()
    }
}

impl Eq for SseLabel {}

impl SseLabel {
    /// A label of its own.
    pub fn new(event_type: &str, id: &str) -> SseLabel {
        let mut labels = SseLabels::default();
        labels.push(event_type, id);
        labels.finish().pop().expect("one was pushed")
    }

    pub fn event_type(&self) -> &str {
        &self.text[self.start as usize..self.id_at as usize - 1]
    }

    pub fn id(&self) -> &str {
        &self.text[self.id_at as usize..self.end as usize - 1]
    }

    /// The type's bytes with their NUL, for C.
    pub fn event_type_with_nul(&self) -> &[u8] {
        &self.text.as_bytes()[self.start as usize..self.id_at as usize]
    }

    /// The id's bytes with their NUL, for C.
    pub fn id_with_nul(&self) -> &[u8] {
        &self.text.as_bytes()[self.id_at as usize..self.end as usize]
    }
}

/// Labels being made for one read: their text goes into one buffer.
#[derive(Debug, Default)]
pub struct SseLabels {
    text: String,
    spans: Vec<(u32, u32, u32)>,
}

impl SseLabels {
    /// A NUL in the type (an id never holds one) becomes U+FFFD.
    pub fn push(&mut self, event_type: &str, id: &str) {
        let start = self.text.len() as u32;
        if event_type.contains('\0') {
            self.text.push_str(&event_type.replace('\0', "\u{FFFD}"));
        } else {
            self.text.push_str(event_type);
        }
        self.text.push('\0');
        let id_at = self.text.len() as u32;
        self.text.push_str(id);
        self.text.push('\0');
        self.spans.push((start, id_at, self.text.len() as u32));
    }

    /// Whether the last label pushed is `event_type` and `id`.
    pub fn last_is(&self, event_type: &str, id: &str) -> bool {
        self.spans.last().is_some_and(|&(start, id_at, end)| {
            &self.text[start as usize..id_at as usize - 1] == event_type
                && &self.text[id_at as usize..end as usize - 1] == id
        })
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The labels, sharing one buffer; empties `self` for the next read.
    pub fn finish(&mut self) -> Vec<SseLabel> {
        let text: std::sync::Arc<str> = std::mem::take(&mut self.text).into();
        self.spans.drain(..).map(|(start, id_at, end)| SseLabel { text: text.clone(), start, id_at, end }).collect()
    }
}

/// A line or an event's data over the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseTooLarge {
    pub limit: usize,
}

impl fmt::Display for SseTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an event stream line or event over the {}-byte limit", self.limit)
    }
}

impl std::error::Error for SseTooLarge {}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The incremental parser of one stream (a new one per connection; the
/// last event id is carried over by the caller).
#[derive(Debug)]
pub struct SseParser {
    /// The line read so far (without its end).
    line: Vec<u8>,
    /// The last piece ended with CR: an LF first in the next one belongs to it.
    after_cr: bool,
    /// Bytes at the stream's start held back until the BOM check is done.
    start: Option<Vec<u8>>,
    data: String,
    event_type: String,
    /// The last event id buffer.
    id: String,
    /// The newest valid `retry`, until taken.
    retry: Option<u64>,
    limit: usize,
}

impl SseParser {
    /// A parser for a new stream, starting with `last_event_id` (the one a
    /// previous stream ended with) and refusing lines or data over `limit` bytes.
    pub fn new(last_event_id: &str, limit: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            start: Some(Vec::new()),
            data: String::new(),
            event_type: String::new(),
            id: last_event_id.to_string(),
            retry: None,
            limit: limit.max(1),
        }
    }

    /// The last event id: what a reconnection sends as `Last-Event-ID`
    /// (when not empty).
    pub fn last_event_id(&self) -> &str {
        &self.id
    }

    /// The reconnection time the stream asked for, in milliseconds, once.
    pub fn take_retry(&mut self) -> Option<u64> {
        self.retry.take()
    }

    /// Reads one piece of the stream; events it completes are added to `out`.
    pub fn feed(&mut self, piece: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseTooLarge> {
        self.feed_with(piece, &mut |event_type, data, id| {
            out.push(SseEvent { event_type: event_type.into(), data: data.into(), id: id.into() })
        })
    }

    /// Reads one piece of the stream, handing each event it completes to
    /// `sink` as (type, data, id), borrowed: nothing is allocated per event.
    pub fn feed_with(&mut self, piece: &[u8], sink: &mut dyn FnMut(&str, &str, &str)) -> Result<(), SseTooLarge> {
        let Some(start) = &mut self.start else { return self.feed_lines(piece, sink) };
        // The BOM may come split over pieces: hold the first bytes until
        // three are in, or the stream shows it cannot be one.
        start.extend_from_slice(piece);
        if start.len() < BOM.len() && BOM.starts_with(start) {
            return Ok(());
        }
        let held = self.start.take().unwrap_or_default();
        self.feed_lines(held.strip_prefix(BOM).unwrap_or(&held), sink)
    }

    fn feed_lines(&mut self, mut piece: &[u8], sink: &mut dyn FnMut(&str, &str, &str)) -> Result<(), SseTooLarge> {
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = piece.strip_prefix(b"\n") {
                piece = rest;
            }
        }
        while let Some(end) = piece.iter().position(|&b| b == b'\n' || b == b'\r') {
            if self.line.is_empty() && end > self.limit {
                return Err(SseTooLarge { limit: self.limit });
            }
            if self.line.is_empty() {
                // The common case: the whole line is in this piece, no copy.
                self.process(&piece[..end], sink)?;
            } else {
                self.extend_line(&piece[..end])?;
                let line = std::mem::take(&mut self.line);
                self.process(&line, sink)?;
                self.line = line;
                self.line.clear();
            }
            if piece[end] == b'\r' {
                match piece.get(end + 1) {
                    Some(b'\n') => piece = &piece[end + 2..],
                    Some(_) => piece = &piece[end + 1..],
                    None => {
                        self.after_cr = true;
                        piece = &[];
                    }
                }
            } else {
                piece = &piece[end + 1..];
            }
        }
        self.extend_line(piece)
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseTooLarge> {
        if self.line.len() + bytes.len() > self.limit {
            return Err(SseTooLarge { limit: self.limit });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// One complete line.
    fn process(&mut self, line: &[u8], sink: &mut dyn FnMut(&str, &str, &str)) -> Result<(), SseTooLarge> {
        if line.is_empty() {
            self.dispatch(sink);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        // Checked first the fast way: nearly every line is valid UTF-8.
        let line = match std::str::from_utf8(line) {
            Ok(line) => std::borrow::Cow::Borrowed(line),
            Err(_) => String::from_utf8_lossy(line),
        };
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event_type),
            "data" => {
                if self.data.len() + value.len() + 1 > self.limit {
                    return Err(SseTooLarge { limit: self.limit });
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.id),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // All digits, so only an overflow fails: the longest wait then.
                self.retry = Some(value.parse().unwrap_or(u64::MAX));
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, sink: &mut dyn FnMut(&str, &str, &str)) {
        if !self.data.is_empty() {
            let event_type = if self.event_type.is_empty() { "message" } else { &self.event_type };
            // Without the LF after the last data line.
            sink(event_type, &self.data[..self.data.len() - 1], &self.id);
        }
        self.data.clear();
        self.event_type.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_pieces(pieces: &[&[u8]]) -> (Vec<SseEvent>, SseParser) {
        let mut parser = SseParser::new("", 1 << 20);
        let mut out = Vec::new();
        for piece in pieces {
            parser.feed(piece, &mut out).unwrap();
        }
        (out, parser)
    }

    fn events(stream: &str) -> Vec<(String, String, String)> {
        parse_pieces(&[stream.as_bytes()]).0.into_iter().map(|e| (e.event_type, e.data, e.id)).collect()
    }

    fn event(t: &str, data: &str, id: &str) -> (String, String, String) {
        (t.into(), data.into(), id.into())
    }

    #[test]
    fn the_standard_s_examples() {
        // The four examples of section 9.2.6 (event stream interpretation).
        assert_eq!(events("data: YHOO\ndata: +2\ndata: 10\n\n"), [event("message", "YHOO\n+2\n10", "")]);
        assert_eq!(
            events(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"),
            [
                event("message", "first event", "1"),
                event("message", "second event", ""),
                event("message", " third event", "")
            ]
        );
        assert_eq!(events("data\n\ndata\ndata\n\ndata:"), [event("message", "", ""), event("message", "\n", "")]);
        assert_eq!(events("data:test\n\ndata: test\n\n"), [event("message", "test", ""), event("message", "test", "")]);
    }

    #[test]
    fn every_line_end_counts_and_a_crlf_split_across_pieces_is_one() {
        for stream in ["data: a\r\n\r\ndata: b\r\n\r\n", "data: a\r\rdata: b\r\r", "data: a\n\ndata: b\r\n\r"] {
            assert_eq!(events(stream), [event("message", "a", ""), event("message", "b", "")], "{stream:?}");
        }
        // Every split of a CRLF stream gives the same events as the whole.
        let stream = b"id: 7\r\ndata: x\r\n\r\ndata: y\r\r";
        let whole = parse_pieces(&[stream]).0;
        for at in 0..=stream.len() {
            let (split, parser) = parse_pieces(&[&stream[..at], &stream[at..]]);
            assert_eq!(split, whole, "split at {at}");
            assert_eq!(parser.last_event_id(), "7");
        }
        // A lone CR then a line: not an LF-eaten line.
        assert_eq!(events("data: a\r\ndata: b\n\n"), [event("message", "a\nb", "")]);
    }

    #[test]
    fn a_bom_is_dropped_once_even_when_split() {
        let stream = b"\xEF\xBB\xBFdata: a\n\n";
        for at in 0..=4 {
            assert_eq!(parse_pieces(&[&stream[..at], &stream[at..]]).0[0].data, "a", "split at {at}");
        }
        let twice = events("\u{FEFF}\u{FEFF}data: a\n\n");
        assert!(twice.is_empty(), "a second BOM makes the field name another: {twice:?}");
        assert_eq!(parse_pieces(&[b"\xEF", b"\xBBx\n"]).0, [], "a BOM's start that is not one is kept");
    }

    #[test]
    fn ids_retry_types_and_comments() {
        let (out, mut parser) = parse_pieces(&[b"id: 1\n\nid\0: x\nid: a\0b\ndata: d\nevent: tick\n\n"]);
        assert_eq!(
            out,
            [SseEvent { event_type: "tick".into(), data: "d".into(), id: "1".into() }],
            "an id with NUL is ignored"
        );
        assert_eq!(parser.last_event_id(), "1", "an id-only block moved it");
        let mut more = Vec::new();
        parser.feed(b"id:\ndata: e\n\nretry: 1500\nretry: 15x\nretry: -1\n: a comment\n\n", &mut more).unwrap();
        assert_eq!(more[0].id, "", "an empty id resets it");
        assert_eq!(more[0].event_type, "message", "the type is per event");
        assert_eq!(parser.take_retry(), Some(1500), "only all-digit values count");
        assert_eq!(parser.take_retry(), None);
        parser.feed(b"retry: 99999999999999999999999\n", &mut more).unwrap();
        assert_eq!(parser.take_retry(), Some(u64::MAX));
        parser.feed(b"retry:\n", &mut more).unwrap();
        assert_eq!(parser.take_retry(), None, "an empty retry is not a number");
        let mut resumed = SseParser::new("41", 100);
        let mut out = Vec::new();
        resumed.feed(b"data: x\n\n", &mut out).unwrap();
        assert_eq!(out[0].id, "41", "a new stream starts from the id it is given");
    }

    #[test]
    fn an_unfinished_event_is_dropped_and_bad_utf8_replaced() {
        assert_eq!(events("data: complete\n\ndata: cut off"), [event("message", "complete", "")]);
        assert_eq!(events("data: cut off\n"), []);
        let (out, _) = parse_pieces(&[b"data: caf\xC3", b"\xA9 \xFF\n\n"]);
        assert_eq!(out[0].data, "caf\u{e9} \u{FFFD}", "a character split across pieces survives");
        assert_eq!(events("unknown: x\ndata: y\n\n"), [event("message", "y", "")]);
        assert_eq!(events("data:a:b\n\n"), [event("message", "a:b", "")]);
    }

    #[test]
    fn a_label_holds_type_and_id_each_ended_by_a_nul() {
        let label = SseLabel::new("tick", "7-41");
        assert_eq!((label.event_type(), label.id()), ("tick", "7-41"));
        assert_eq!((label.event_type_with_nul(), label.id_with_nul()), (&b"tick\0"[..], &b"7-41\0"[..]));
        let label = SseLabel::new("a\0b", "");
        assert_eq!((label.event_type(), label.id()), ("a\u{FFFD}b", ""));
    }

    #[test]
    fn lines_and_data_over_the_limit_are_refused() {
        let mut parser = SseParser::new("", 16);
        let mut out = Vec::new();
        assert_eq!(parser.feed(&[b'x'; 17], &mut out), Err(SseTooLarge { limit: 16 }));
        let mut parser = SseParser::new("", 16);
        assert!(parser.feed(b"data: 0123456789\n", &mut out).is_ok());
        assert!(parser.feed(b"data: 0123456789\n", &mut out).is_err(), "the event's data grows past it");
        let mut parser = SseParser::new("", 16);
        for _ in 0..1000 {
            parser.feed(b": keepalive comment\n"[..15].as_ref(), &mut out).unwrap();
            parser.feed(b"\n", &mut out).unwrap();
        }
    }
}
