//! The read path of the three framings: the first byte picks the framing
//! and the maximum frame size, the next eight the sizes of the reads.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&head, rest)) = data.split_first() else { return };
        let framing = longconn_core::protocol::Framing::ALL[(head % 3) as usize];
        let max = [0usize, 1, 5, 64, 1024][(head as usize / 3) % 5].max(1);
        let (sizes, stream) = rest.split_at(rest.len().min(8));
        longconn_fuzz::read_frames(framing, max, sizes, stream);
    });
}
