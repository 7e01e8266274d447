//! The server's write deadline: a peer that keeps sending but stops
//! reading leaves the server's echo writes stuck; a write that has not
//! finished within the idle timeout ends the connection, instead of
//! holding it (and its session) forever.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

#[test]
fn a_peer_that_stops_reading_is_dropped_by_the_write_deadline() {
    let server = Server::start("echo", &["--idle-timeout", "2"]);
    let mut peer = TcpStream::connect(("127.0.0.1", server.ports.length)).unwrap();
    peer.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    // Length-framed messages of 64 KiB, echoed by the server and never read
    // here: once both sides' buffers are full the server's write is stuck,
    // then ours (bounded: at most 256 MiB, or until our write times out).
    let mut message = (64 * 1024u32).to_be_bytes().to_vec();
    message.resize(4 + 64 * 1024, b'x');
    let started = Instant::now();
    for _ in 0..4096 {
        if peer.write_all(&message).is_err() {
            break;
        }
    }
    assert!(
        server.logged("a write made no progress for 2 s", Duration::from_secs(20)),
        "the stuck connection was not ended: {:?}",
        server.log.lock().unwrap()
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2), "ended after {took:?}, before the deadline");
}
