//! The read path of the three framings and of WebSocket frames (as client
//! and as server, with and without longconn.v2): the first byte picks the
//! decoder, the maximum frame size and (WebSocket) whether permessage-deflate
//! was agreed, the next eight the sizes of the reads.

use longconn_core::protocol::websocket::Role;
use longconn_core::protocol::{Decoder, Framing};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&head, rest)) = data.split_first() else { return };
        let max = [0usize, 1, 5, 64, 1024][(head as usize / 7) % 5].max(1);
        let decoder = match head % 7 {
            pick @ 0..=2 => Decoder::new(Framing::ALL[pick as usize], max),
            pick => Decoder::websocket(if pick % 2 == 0 { Role::Client } else { Role::Server }, pick >= 5, max),
        };
        // The top bit: permessage-deflate agreed (WebSocket only).
        let deflate = head & 0x80 != 0;
        let (sizes, stream) = rest.split_at(rest.len().min(8));
        longconn_fuzz::read_frames(decoder, max, sizes, stream, deflate);
    });
}
