//! The durable outbox's file format: any bytes are read without a panic,
//! behind a valid header too; what is read holds together (the messages
//! kept are exactly those after the acknowledged number, up to the last);
//! a compacted file of it reads back the same; and any cut of the input
//! reads no further than the whole.

use longconn_core::durable::format::{self, compacted, read, HEADER_LEN};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = read(data);
        let mut file = format::header(2).to_vec();
        file.extend_from_slice(data);
        let contents = read(&file).expect("a valid header is always read");
        assert!(contents.intact >= HEADER_LEN && contents.intact <= file.len());
        assert_eq!(contents.dropped.is_some(), contents.intact < file.len());
        let numbers: Vec<u64> = contents.messages.iter().map(|m| m.number).collect();
        let expected: Vec<u64> = (contents.acked + 1..=contents.last_number).collect();
        assert_eq!(numbers, expected, "kept messages follow the acknowledged one");
        let again = read(&compacted(&contents)).expect("a compacted file reads");
        assert_eq!(again.dropped, None);
        assert_eq!(
            (&again.session, again.acked, again.last_number, &again.messages),
            (&contents.session, contents.acked, contents.last_number, &contents.messages)
        );
        let cut = HEADER_LEN + data.len() / 2;
        let shorter = read(&file[..cut]).expect("a valid header is always read");
        assert!(shorter.intact <= cut);
        if cut >= contents.intact {
            assert_eq!((shorter.acked, shorter.last_number), (contents.acked, contents.last_number));
        } else {
            assert!(shorter.acked <= contents.acked && shorter.last_number <= contents.last_number);
        }
    });
}
