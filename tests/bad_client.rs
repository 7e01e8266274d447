//! A client that breaks protocol 2's rules, against the real server: it is
//! told why in a close frame (code 4002) and the connection ends, instead
//! of the server trusting it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;
use longconn_core::protocol::hello::{ack_payload, hello_payload, parse_close_payload, HelloExt, PROTOCOL_V2};
use longconn_core::protocol::{FrameType, Framing};

/// Reads longconn frames from `stream` until one of `kind` arrives; its payload.
fn read_until(stream: &mut TcpStream, kind: FrameType) -> Vec<u8> {
    let mut buffered = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while buffered.len() >= 5 {
            let len = u32::from_be_bytes(buffered[..4].try_into().unwrap()) as usize;
            if buffered.len() < 4 + len {
                break;
            }
            let frame: Vec<u8> = buffered.drain(..4 + len).collect();
            if frame[4] == kind as u8 {
                return frame[5..].to_vec();
            }
        }
        let n = stream.read(&mut chunk).unwrap_or_else(|e| panic!("the server answers: {e}; {buffered:?}"));
        assert!(n > 0, "the connection ended before a {kind:?} frame");
        buffered.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn an_acknowledgement_beyond_what_the_server_sent_ends_the_connection() {
    let server = Server::start("echo", &["--quiet"]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.ports.longconn)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let ext = HelloExt { max_version: PROTOCOL_V2, ..HelloExt::default() };
    let mut wire = Vec::new();
    Framing::Longconn.encode(FrameType::Hello, &hello_payload(1, "raw", Some(&ext)), &mut wire);
    stream.write_all(&wire).unwrap();
    read_until(&mut stream, FrameType::Hello);
    // Nothing was sent to this client, yet it acknowledges message 5.
    wire.clear();
    Framing::Longconn.encode(FrameType::Ack, &ack_payload(5), &mut wire);
    stream.write_all(&wire).unwrap();
    let (code, reason) = parse_close_payload(&read_until(&mut stream, FrameType::Close));
    assert_eq!(code, 4002, "{reason}");
    assert!(reason.contains("acknowledged message 5 but only 0 were sent"), "{reason}");
}
