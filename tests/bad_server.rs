//! A server that breaks the rules: oversize and malformed frames must end
//! that connection with an error event and a reconnect, never a crash.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{is_connected, receive_messages, wait_for};
use longconn_core::policy::backoff::BackoffPolicy;
use longconn_core::{Client, ClientConfig, DisconnectReason, ErrorKind, Event};

const WITHIN: Duration = Duration::from_secs(10);

/// Serves connections one after another; each gets the next script.
fn serve(scripts: Vec<Vec<u8>>) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        for script in scripts {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(WITHIN)).unwrap();
            read_hello(&mut stream);
            stream.write_all(&script).unwrap();
            // Hold the connection until the client drops it.
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }
    });
    (port, handle)
}

fn read_hello(stream: &mut TcpStream) {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).unwrap();
    assert_eq!(body[0], 0x04, "the client opens with a hello frame");
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    f.push(kind);
    f.extend_from_slice(payload);
    f
}

fn hello() -> Vec<u8> {
    frame(0x04, b"\x01bad-server")
}

fn client(port: u16) -> Client {
    let mut c = ClientConfig::new(&format!("tcp://127.0.0.1:{port}")).unwrap();
    c.max_frame_size = 1024;
    c.backoff = BackoffPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
        ..BackoffPolicy::default()
    };
    let client = Client::new(c).unwrap();
    client.connect().unwrap();
    client
}

fn expect_error_then_disconnect(client: &Client, kind: ErrorKind, reason: DisconnectReason) {
    let events = wait_for(client, WITHIN, |e| matches!(e, Event::Disconnected { .. }));
    assert!(events.iter().any(|e| matches!(e, Event::Error { kind: k, .. } if *k == kind)), "{events:?}");
    assert!(matches!(events.last(), Some(Event::Disconnected { reason: r, .. }) if *r == reason), "{events:?}");
}

#[test]
fn oversize_frame_ends_the_connection_and_the_client_reconnects() {
    let mut oversize = hello();
    oversize.extend(frame(0x01, b"fine"));
    // Announces 1 GiB; the client must refuse it from the header alone.
    oversize.extend((1u32 << 30).to_be_bytes());
    oversize.push(0x01);
    let mut good = hello();
    good.extend(frame(0x01, b"after reconnect"));
    let (port, server) = serve(vec![oversize, good]);

    let client = client(port);
    assert_eq!(receive_messages(&client, 1, WITHIN), vec![b"fine".to_vec()]);
    expect_error_then_disconnect(&client, ErrorKind::FrameTooLarge, DisconnectReason::FrameTooLarge);
    wait_for(&client, WITHIN, is_connected);
    assert_eq!(receive_messages(&client, 1, WITHIN), vec![b"after reconnect".to_vec()]);
    drop(client);
    server.join().unwrap();
}

#[test]
fn unknown_frame_types_and_zero_lengths_are_protocol_errors() {
    let mut unknown = hello();
    unknown.extend(frame(0x7f, b"?"));
    let mut zero = hello();
    zero.extend(0u32.to_be_bytes());
    let mut good = hello();
    good.extend(frame(0x01, b"ok"));
    let (port, server) = serve(vec![unknown, zero, good]);

    let client = client(port);
    expect_error_then_disconnect(&client, ErrorKind::Protocol, DisconnectReason::Protocol);
    expect_error_then_disconnect(&client, ErrorKind::Protocol, DisconnectReason::Protocol);
    assert_eq!(receive_messages(&client, 1, WITHIN), vec![b"ok".to_vec()]);
    drop(client);
    server.join().unwrap();
}

#[test]
fn a_server_that_does_not_speak_the_protocol_fails_the_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
    });
    let client = client(port);
    let events = wait_for(&client, WITHIN, |e| matches!(e, Event::Error { .. }));
    assert!(
        matches!(events.last(), Some(Event::Error { kind: ErrorKind::HandshakeFailed, detail }) if detail.contains("hello")),
        "{events:?}"
    );
    server.join().unwrap();
}
