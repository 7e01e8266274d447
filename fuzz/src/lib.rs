//! What the fuzz targets share: running the read path over arbitrary bytes
//! cut into arbitrary reads.

use longconn_core::protocol::deflate::Inflater;
use longconn_core::protocol::{Decoder, FrameBatch, FrameType, ReadBuffer, CONTROL_PAYLOAD_FLOOR};

/// Feeds `data` to a [`ReadBuffer`] with `decoder` in reads whose sizes come
/// from `sizes` (cycled), taking frames after each read and once the stream
/// ends, and checks what the read path promises: every frame lies inside its
/// read's buffer and within the maximum size, and after an error no more
/// frames are asked for. With `deflate` (WebSocket), compressed messages
/// are let through and inflated as the stream reader inflates them: never
/// past the maximum, and text only when it is UTF-8.
pub fn read_frames(decoder: Decoder, max_frame_size: usize, sizes: &[u8], data: &[u8], deflate: bool) {
    let mut inflater = None;
    let mut decoder = decoder;
    if let (true, Decoder::WebSocket(ws)) = (deflate, &mut decoder) {
        ws.accept_compressed();
        inflater = Some(Inflater::new(false, max_frame_size));
    }
    let mut reader = ReadBuffer::with_decoder(decoder);
    let mut batch = FrameBatch::default();
    let mut rest = data;
    let mut turn = 0;
    while !rest.is_empty() {
        let size = (sizes.get(turn % sizes.len().max(1)).copied().unwrap_or(64) as usize).max(1);
        turn += 1;
        let (piece, after) = rest.split_at(size.min(rest.len()));
        rest = after;
        let (buf, room) = reader.read_space();
        buf.extend_from_slice(piece);
        reader.record_read(piece.len(), room);
        if !take_all(&mut reader, &mut batch, max_frame_size, &mut inflater) {
            return;
        }
    }
    if take_all(&mut reader, &mut batch, max_frame_size, &mut inflater) {
        let _ = reader.end_of_stream();
    }
}

/// Takes frames until none is complete; false after an error.
fn take_all(
    reader: &mut ReadBuffer,
    batch: &mut FrameBatch,
    max_frame_size: usize,
    inflater: &mut Option<Inflater>,
) -> bool {
    loop {
        match reader.take_frames(batch) {
            Ok(true) => {
                for &(at, opcode) in &batch.compressed {
                    let (Some(inflater), Decoder::WebSocket(ws)) = (inflater.as_mut(), reader.decoder()) else {
                        panic!("a compressed message with no extension agreed");
                    };
                    let mut out = Vec::new();
                    if inflater.inflate(&batch.chunk[batch.frames[at].1.clone()], &mut out).is_err() {
                        return false;
                    }
                    assert!(out.len() <= max_frame_size, "inflated past the maximum");
                    match ws.classify(opcode, &out) {
                        Ok((FrameType::Text, skip)) => assert!(std::str::from_utf8(&out[skip..]).is_ok()),
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
                for (kind, range) in &batch.frames {
                    assert!(range.end <= batch.chunk.len(), "a frame outside its read");
                    // Messages obey the maximum; the protocol's own frames may reach the floor.
                    let limit = match kind {
                        FrameType::Data | FrameType::Text => max_frame_size,
                        _ => max_frame_size.max(CONTROL_PAYLOAD_FLOOR),
                    };
                    assert!(range.len() <= limit, "a frame above the maximum");
                    if *kind == FrameType::Text {
                        assert!(std::str::from_utf8(&batch.chunk[range.clone()]).is_ok(), "text that is not UTF-8");
                    }
                }
            }
            Ok(false) => return true,
            Err(_) => return false,
        }
    }
}
