//! Heartbeats in both directions: a client that only receives is not evicted
//! by the server's idle timeout, and a write that makes no progress is a
//! dead link even while the peer keeps talking.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{is_connected, wait_for, Server};
use longconn_core::policy::heartbeat::HeartbeatPolicy;
use longconn_core::policy::limits::OutboxLimits;
use longconn_core::{Client, ClientConfig, DisconnectReason, ErrorKind, Event};

const WITHIN: Duration = Duration::from_secs(10);

/// Pings after 0.5 s idle, dead after 1.5 s: well inside the server's 2 s.
fn c_with_heartbeat(url: &str) -> ClientConfig {
    let mut c = ClientConfig::new(url).unwrap();
    c.heartbeat = HeartbeatPolicy { interval: Duration::from_millis(500), timeout: Duration::from_millis(1500) };
    c
}

#[test]
fn a_client_that_only_listens_is_never_evicted() {
    // The server drops clients it has not heard from for 2 s.
    let server = Server::start("chat", &["--idle-timeout", "2", "--quiet"]);
    let listener = Client::new(c_with_heartbeat(&server.url("longconn"))).unwrap();
    listener.connect().unwrap();
    wait_for(&listener, WITHIN, is_connected);
    let talker = Client::new(c_with_heartbeat(&server.url("longconn"))).unwrap();
    talker.connect().unwrap();
    wait_for(&talker, WITHIN, is_connected);
    // Both are in the room once a probe from the talker reaches the listener.
    let deadline = Instant::now() + WITHIN;
    'probing: while Instant::now() < deadline {
        talker.send(b"probe").unwrap();
        while let Some(event) = listener.poll(Duration::from_millis(100)).unwrap() {
            if matches!(&event, Event::Message(m) if m.ends_with(b": probe")) {
                break 'probing;
            }
        }
    }

    // The talker speaks every 0.2 s for 6 s: the listener's inbound side is
    // never idle, so only pings on its quiet outbound side keep it in.
    let lines = 30;
    for i in 0..lines {
        talker.send(format!("line {i}").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(200)); // the pace of the conversation
    }
    let mut heard = Vec::new();
    let deadline = Instant::now() + WITHIN;
    while heard.len() < lines && Instant::now() < deadline {
        match listener.poll(Duration::from_millis(100)).unwrap() {
            Some(Event::Message(m)) if m.ends_with(b"probe") => {}
            Some(Event::Message(m)) => heard.push(String::from_utf8_lossy(&m).into_owned()),
            Some(Event::Disconnected { detail, .. }) => panic!("the listener was disconnected: {detail}"),
            _ => {}
        }
    }
    let talker_name = heard.first().and_then(|l| l.split(": ").next()).unwrap_or_default().to_string();
    let expected: Vec<String> = (0..lines).map(|i| format!("{talker_name}: line {i}")).collect();
    assert_eq!(heard, expected, "every line, in order, from one talker that stayed in the room");
    assert_eq!(listener.stats().reconnects, 0);
}

#[test]
fn a_write_that_makes_no_progress_is_a_dead_link() {
    // A server that greets, then talks every 50 ms and never reads: inbound
    // traffic never stops, but our writes fill the socket buffers and stall.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).unwrap();
        let mut hello = vec![0u8; u32::from_be_bytes(header) as usize];
        stream.read_exact(&mut hello).unwrap();
        let hello = b"\x04\x01deaf-server";
        let mut greeting = (hello.len() as u32).to_be_bytes().to_vec();
        greeting.extend_from_slice(hello);
        stream.write_all(&greeting).unwrap();
        let deadline = Instant::now() + WITHIN;
        while Instant::now() < deadline {
            if stream.write_all(b"\x00\x00\x00\x03\x01hi").is_err() {
                break; // the client gave up on us
            }
            std::thread::sleep(Duration::from_millis(50)); // the server's pace
        }
    });
    let mut c = ClientConfig::new(&format!("tcp://127.0.0.1:{port}")).unwrap();
    c.heartbeat = HeartbeatPolicy { interval: Duration::from_millis(200), timeout: Duration::from_millis(1000) };
    c.outbox = OutboxLimits { max_messages: 100_000, max_bytes: 64 * 1024 * 1024 };
    c.auto_reconnect = false;
    let client = Client::new(c).unwrap();
    client.connect().unwrap();
    let chunk = vec![b'w'; 64 * 1024];
    // 48 MiB: far more than the socket buffers of both ends hold.
    for _ in 0..768 {
        client.send(&chunk).unwrap();
    }
    let started = Instant::now();
    let events = wait_for(&client, WITHIN, |e| matches!(e, Event::Disconnected { .. }));
    assert!(
        events.iter().any(|e| matches!(e, Event::Error { kind: ErrorKind::HeartbeatTimeout, detail } if detail.contains("no progress"))),
        "{events:?}"
    );
    assert!(matches!(events.last(), Some(Event::Disconnected { reason: DisconnectReason::HeartbeatTimeout, .. })));
    assert!(started.elapsed() < Duration::from_secs(8), "noticed within a few timeouts: {:?}", started.elapsed());
    drop(client);
    server.join().unwrap();
}
