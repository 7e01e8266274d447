//! A server that breaks the rules (longconn frames or WebSocket frames):
//! oversize and malformed frames must end
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
    client_at(&format!("tcp://127.0.0.1:{port}"))
}

/// A client of `url` with a 1,024-byte maximum frame and quick reconnects.
fn client_at(url: &str) -> Client {
    let mut c = ClientConfig::new(url).unwrap();
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

/// Text is text: a DATA_TEXT frame that is not UTF-8 (`00 00 00 02 07 ff`,
/// with and without protocol 2) is a protocol error, never a text message.
#[test]
fn text_that_is_not_utf8_is_a_protocol_error_with_and_without_protocol_2() {
    let bad_text = frame(0x07, &[0xff]);
    let scripts = vec![
        [hello(), bad_text.clone()].concat(),
        [hello_v2(0, false), bad_text].concat(),
        [hello(), frame(0x07, "é".as_bytes())].concat(),
    ];
    let (port, server) = serve(scripts);
    let client = client(port);
    expect_error_then_disconnect(&client, ErrorKind::Protocol, DisconnectReason::Protocol);
    expect_error_then_disconnect(&client, ErrorKind::Protocol, DisconnectReason::Protocol);
    let events = wait_for(&client, WITHIN, |e| matches!(e, Event::Text(_)));
    assert!(
        matches!(events.last(), Some(Event::Text(t)) if t == "é".as_bytes()),
        "valid text still arrives: {events:?}"
    );
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

/// A WebSocket server frame: `fin`, `opcode`, unmasked unless `key` is given.
fn ws_frame(fin: bool, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | opcode];
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(mask_bit | n as u8),
        n => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    let mut body = payload.to_vec();
    if let Some(key) = key {
        f.extend_from_slice(&key);
        for (i, b) in body.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    f.extend(body);
    f
}

/// Like [`serve`], over WebSocket: each connection that did not offer
/// longconn.v2 gets the next script after the handshake.
fn serve_websocket(scripts: Vec<Vec<u8>>) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut scripts = scripts.into_iter().peekable();
        while let Some(script) = scripts.peek() {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(WITHIN)).unwrap();
            if common::accept_websocket(&mut stream) {
                continue; // the client drops this one and comes back without the offer
            }
            stream.write_all(script).unwrap();
            scripts.next();
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }
    });
    (port, handle)
}

#[test]
fn a_websocket_server_breaking_the_frame_rules_gets_errors_and_reconnects_and_fragments_are_joined() {
    let mut oversize = ws_frame(true, 0x2, b"fine", None);
    // Announces 2^40 bytes: refused from the header alone.
    oversize.extend([0x82, 0x7f]);
    oversize.extend((1u64 << 40).to_be_bytes());
    let masked = ws_frame(true, 0x2, b"masked by a server", Some([1, 2, 3, 4]));
    // Fragments of 600 bytes each: the message passes the 1,024-byte maximum at the second.
    let mut too_long = ws_frame(false, 0x2, &[b'a'; 600], None);
    too_long.extend(ws_frame(true, 0x0, &[b'b'; 600], None));
    let mut good = ws_frame(false, 0x2, b"after ", None);
    good.extend(ws_frame(true, 0x9, b"ping between fragments", None));
    good.extend(ws_frame(true, 0x0, b"reconnect", None));
    let (port, server) = serve_websocket(vec![oversize, masked, too_long, good]);

    let client = client_at(&format!("ws://127.0.0.1:{port}/"));
    assert_eq!(receive_messages(&client, 1, WITHIN), vec![b"fine".to_vec()]);
    expect_error_then_disconnect(&client, ErrorKind::FrameTooLarge, DisconnectReason::FrameTooLarge);
    expect_error_then_disconnect(&client, ErrorKind::Protocol, DisconnectReason::Protocol);
    expect_error_then_disconnect(&client, ErrorKind::FrameTooLarge, DisconnectReason::FrameTooLarge);
    assert_eq!(receive_messages(&client, 1, WITHIN), vec![b"after reconnect".to_vec()]);
    drop(client);
    server.join().unwrap();
}

/// A protocol 2 hello from the server for session `s1`.
fn hello_v2(received: u64, resumed: bool) -> Vec<u8> {
    use longconn_core::protocol::hello::{hello_payload, HelloExt, PROTOCOL_V2};
    let ext = HelloExt {
        max_version: PROTOCOL_V2,
        session: Some(b"s1".to_vec()),
        received,
        position: None,
        resumed,
        recovered: true,
        token: None,
    };
    frame(0x04, &hello_payload(PROTOCOL_V2, "bad-server", Some(&ext)))
}

fn ack(number: u64) -> Vec<u8> {
    frame(0x06, &number.to_be_bytes())
}

/// A server that acknowledges more than it was sent is refused (an error
/// naming both numbers, the connection ends) instead of trusted, which
/// would drop messages it never had: the queued message is still there,
/// and an honest acknowledgement on the next connection frees it.
#[test]
fn an_acknowledgement_beyond_what_was_sent_is_a_protocol_error_and_loses_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _server = std::thread::spawn(move || {
        // The resumed hello itself claims 7 received: refused the same way.
        for script in [[hello_v2(0, false), ack(5)].concat(), hello_v2(7, true)] {
            let (mut stream, _) = listener.accept().unwrap();
            read_hello(&mut stream);
            stream.write_all(&script).unwrap();
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }
        // An honest server: the message arrives, then its acknowledgement.
        let (mut stream, _) = listener.accept().unwrap();
        read_hello(&mut stream);
        stream.write_all(&hello_v2(0, true)).unwrap();
        let mut header = [0u8; 5];
        stream.read_exact(&mut header).unwrap();
        let mut message = vec![0u8; u32::from_be_bytes(header[..4].try_into().unwrap()) as usize - 1];
        stream.read_exact(&mut message).unwrap();
        assert_eq!((header[4], &message[..]), (0x01, &b"only one"[..]), "the message comes again");
        stream.write_all(&ack(1)).unwrap();
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    });
    let mut c = ClientConfig::new(&format!("tcp://127.0.0.1:{port}")).unwrap();
    c.backoff = BackoffPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
        ..BackoffPolicy::default()
    };
    c.ack_events = true;
    let client = Client::new(c).unwrap();
    client.send(b"only one").unwrap();
    client.connect().unwrap();
    for claimed in [5, 7] {
        let events = wait_for(&client, WITHIN, |e| matches!(e, Event::Error { kind: ErrorKind::Protocol, .. }));
        let Some(Event::Error { detail, .. }) = events.last() else { unreachable!() };
        assert!(detail.contains(&format!("acknowledged message {claimed} but only")), "{detail}");
        assert!(!events.iter().any(|e| matches!(e, Event::Acknowledged { .. })), "{events:?}");
        assert_eq!(client.stats().acked_number, 0, "nothing was taken as acknowledged");
    }
    wait_for(&client, WITHIN, |e| matches!(e, Event::Acknowledged { up_to: 1 }));
    assert_eq!(client.stats().unacked_messages, 0);
}
