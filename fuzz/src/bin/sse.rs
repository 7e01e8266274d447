//! The Server-Sent Events parser: any bytes, fed whole or cut into pieces
//! at points the input picks, give the same events, last event id and
//! retry, or the same refusal; no event's data exceeds the limit.

use longconn_core::protocol::sse::{SseEvent, SseParser};

const LIMIT: usize = 256;

fn parse(pieces: &[&[u8]]) -> (Result<Vec<SseEvent>, usize>, String, Option<u64>) {
    let mut parser = SseParser::new("start", LIMIT);
    let mut out = Vec::new();
    for piece in pieces {
        if parser.feed(piece, &mut out).is_err() {
            return (Err(out.len()), String::new(), None);
        }
    }
    let retry = parser.take_retry();
    (Ok(out), parser.last_event_id().to_string(), retry)
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&cuts, stream)) = data.split_first() else { return };
        let whole = parse(&[stream]);
        if let Ok(events) = &whole.0 {
            assert!(events.iter().all(|e| e.data.len() < LIMIT && !e.event_type.is_empty()));
        }
        // Pieces of 1 to 8 bytes, sizes taken from the first byte's bits.
        let mut pieces = Vec::new();
        let (mut rest, mut bits) = (stream, cuts as usize);
        while !rest.is_empty() {
            let size = (bits % 8 + 1).min(rest.len());
            bits = bits / 8 + size;
            let (piece, after) = rest.split_at(size);
            pieces.push(piece);
            rest = after;
        }
        let pieced = parse(&pieces);
        match (&whole.0, &pieced.0) {
            (Ok(_), Ok(_)) => assert_eq!(whole, pieced),
            // A refusal may come a piece earlier or later, never not at all.
            (Err(_), Err(_)) => {}
            _ => panic!("whole {:?} but in pieces {:?}", whole.0.is_ok(), pieced.0.is_ok()),
        }
    });
}
