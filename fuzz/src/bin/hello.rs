//! The hello and close payload parsers, alone and on a first read.

use bytes::Bytes;
use longconn_core::protocol::hello::{parse_close_payload, parse_hello, take_hello, CLOSE_NO_STATUS};
use longconn_core::protocol::{FrameBatch, FrameType};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = parse_hello(data);
        let (code, reason) = parse_close_payload(data);
        assert!(data.len() >= 2 || (code == CLOSE_NO_STATUS && reason.is_empty()));
        // The same bytes as a first read: a hello, then a data frame behind it.
        let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
        let mut batch = FrameBatch {
            chunk: Bytes::copy_from_slice(data),
            frames: vec![(FrameType::Hello, 0..split), (FrameType::Data, split..data.len())],
            ..FrameBatch::default()
        };
        if take_hello(&mut batch).is_ok() {
            assert_eq!(batch.frames.len(), 1, "the frame behind the hello stays");
        }
    });
}
