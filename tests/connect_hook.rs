//! The connect hook (`Client::set_connect_hook`, `lc_client_set_connect_callback`)
//! against real processes on loopback: a token the bundled server checks
//! (`--token-file`) is refreshed by the hook after the server's token
//! changed, and the protocol 2 session resumes with nothing lost; a hook
//! that fails or panics is reported and retried with backoff; the headers
//! and subprotocols it sets reach a WebSocket server.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::streams::{config, DataDir};
use common::{is_connected, receive_messages, wait_for, Ports, Server};
use longconn_core::hook::{ConnectInfo, ConnectRequest};
use longconn_core::{Client, ErrorKind, Event};

const WITHIN: Duration = Duration::from_secs(10);

fn is_error(e: &Event) -> bool {
    matches!(e, Event::Error { .. })
}

#[test]
fn an_expired_token_is_refreshed_on_the_next_connect_and_the_session_resumes() {
    let dir = DataDir::new("token");
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start = || {
        let ports = Ports { longconn: port, ..Ports::default() };
        let args = ["--data-dir", dir.arg(), "--token-file", token_file.to_str().unwrap()];
        Server::start_on("echo", &args, ports, "127.0.0.1")
    };
    let mut server = start();
    // The application's token source: what the hook hands out.
    let issued = Arc::new(Mutex::new("first-token".to_string()));
    let calls = Arc::new(Mutex::new(Vec::<ConnectInfo>::new()));
    let client = Client::new(config(&format!("tcp://127.0.0.1:{port}"))).unwrap();
    let (issued2, calls2) = (issued.clone(), calls.clone());
    client.set_connect_hook(Some(Arc::new(move |info: &ConnectInfo, request: &mut ConnectRequest| {
        calls2.lock().unwrap().push(info.clone());
        request.set_token(issued2.lock().unwrap().as_bytes())
    })));
    client.connect().unwrap();
    let events = wait_for(&client, WITHIN, is_connected);
    assert!(!events.iter().any(is_error), "{events:?}");
    client.send(b"n1").unwrap();
    assert_eq!(receive_messages(&client, 1, WITHIN), [b"n1".to_vec()]);

    // The token expires: the server now wants another, and restarts.
    std::fs::write(&token_file, "second-token").unwrap();
    server.kill();
    let _restarted = start();
    client.send(b"n2").unwrap();
    let events = wait_for(&client, WITHIN, |e| matches!(e, Event::Error { kind: ErrorKind::Unauthorized, .. }));
    let Some(Event::Error { detail, .. }) = events.last() else { unreachable!() };
    assert!(detail.contains("unauthorized: wrong token") && detail.contains("4004"), "{detail}");
    // Reconnection goes on; the hook hands out the fresh token.
    *issued.lock().unwrap() = "second-token".to_string();
    let events = wait_for(&client, WITHIN, is_connected);
    let Some(Event::Connected { delivery, .. }) = events.last() else { unreachable!() };
    assert!(delivery.resumed && delivery.recovered, "{delivery:?}");
    assert_eq!(receive_messages(&client, 1, WITHIN), [b"n2".to_vec()], "nothing lost, nothing twice");
    client.close(WITHIN).unwrap();
    let calls = calls.lock().unwrap();
    assert!(calls.len() >= 3, "a call per attempt: {calls:?}");
    assert!(calls.iter().all(|c| c.url == format!("tcp://127.0.0.1:{port}") && c.server_index == 0));
    assert_eq!(calls[0].attempt, 1);
    assert!(calls.windows(2).any(|w| w[1].attempt == w[0].attempt + 1), "attempts count up: {calls:?}");
}

#[test]
fn a_client_without_the_token_is_told_why() {
    let dir = DataDir::new("no-token");
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, "secret").unwrap();
    let server = Server::start("echo", &["--token-file", token_file.to_str().unwrap()]);
    let client = Client::new(config(&server.url("longconn"))).unwrap();
    client.connect().unwrap();
    let events = wait_for(&client, WITHIN, is_error);
    let Some(Event::Error { kind, detail }) = events.last() else { unreachable!() };
    assert_eq!(*kind, ErrorKind::Unauthorized, "{detail}");
    assert!(detail.contains("wants a token"), "{detail}");
    wait_for(&client, WITHIN, |e| matches!(e, Event::ReconnectScheduled { .. }));
}

#[test]
fn a_hook_that_fails_or_panics_is_reported_and_retried_with_backoff() {
    let server = Server::start("echo", &[]);
    let client = Client::new(config(&server.url("longconn"))).unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let calls2 = calls.clone();
    client.set_connect_hook(Some(Arc::new(move |_: &ConnectInfo, _: &mut ConnectRequest| {
        match calls2.fetch_add(1, Ordering::Relaxed) {
            0 => Err("the token service is down".to_string()),
            1 => panic!("a bug in the hook"),
            _ => Ok(()),
        }
    })));
    client.connect().unwrap();
    let events = wait_for(&client, WITHIN, is_connected);
    let errors: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Error { detail, .. } => Some(detail.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        ["the connect hook failed: the token service is down", "the connect hook failed: it panicked"],
        "{events:?}"
    );
    let backoffs = events.iter().filter(|e| matches!(e, Event::ReconnectScheduled { .. })).count();
    assert_eq!(backoffs, 2, "each failure is a backoff step: {events:?}");
    assert_eq!(calls.load(Ordering::Relaxed), 3);
}

#[test]
fn the_hook_s_headers_and_subprotocols_reach_the_websocket_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://127.0.0.1:{}/feed", listener.local_addr().unwrap().port());
    let mut config = config(&url);
    config.headers = vec![("Authorization".into(), "Bearer stale".into()), ("X-Kept".into(), "yes".into())];
    config.max_protocol = 1;
    let client = Client::new(config).unwrap();
    client.set_connect_hook(Some(Arc::new(|_: &ConnectInfo, request: &mut ConnectRequest| {
        request.set_header("authorization", "Bearer fresh")?;
        request.subprotocols = vec!["chat.v9".into()];
        Ok(())
    })));
    client.connect().unwrap();
    let (stream, _) = listener.accept().unwrap();
    let mut request = Vec::new();
    for line in BufReader::new(stream).lines() {
        let line = line.unwrap();
        if line.is_empty() {
            break;
        }
        request.push(line.to_ascii_lowercase());
    }
    assert!(request.contains(&"authorization: bearer fresh".to_string()), "{request:?}");
    assert!(!request.iter().any(|l| l.contains("stale")), "replaced, not added: {request:?}");
    assert!(request.contains(&"x-kept: yes".to_string()), "{request:?}");
    assert!(request.contains(&"sec-websocket-protocol: chat.v9".to_string()), "{request:?}");
    drop(client);
}
