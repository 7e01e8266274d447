//! HTTP long connections against real processes on loopback: the bundled
//! server's room as Server-Sent Events (`/events`), resumed across a server
//! kill and restart with `Last-Event-ID` without a gap or a repeat; and
//! small HTTP servers of the test's own, which answer as a test needs:
//! 204 stops reconnecting, 404 is an error that stops, 503 with
//! `Retry-After` waits, a redirect is followed, `retry` is honoured within
//! the backoff's bounds, a lone CR and a CRLF split across writes, comments
//! as signs of life, and a stream gone silent ends by the heartbeat timeout.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::streams::DataDir;
use common::{is_connected, wait_for, Ports, Server};
use longconn_core::policy::backoff::BackoffPolicy;
use longconn_core::policy::heartbeat::HeartbeatPolicy;
use longconn_core::{Client, ClientConfig, ErrorKind, Event};

const WITHIN: Duration = Duration::from_secs(10);

fn config(url: &str) -> ClientConfig {
    let mut config = ClientConfig::new(url).unwrap();
    config.backoff = BackoffPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(300),
        ..BackoffPolicy::default()
    };
    config
}

/// The texts of the next `count` messages.
fn texts(client: &Client, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    wait_for(client, WITHIN, |e| {
        if let Some((m, true)) = e.as_message() {
            got.push(String::from_utf8_lossy(m).into_owned());
        }
        got.len() == count
    });
    got
}

/// The next `count` messages of an event stream: (type, id, data).
fn labeled(client: &Client, count: usize) -> Vec<(String, String, String)> {
    let mut got = Vec::new();
    wait_for(client, WITHIN, |e| {
        if let Event::Labeled { data, label } = e {
            let data = String::from_utf8_lossy(data).into_owned();
            got.push((label.event_type().to_string(), label.id().to_string(), data));
        }
        got.len() == count
    });
    got
}

/// Writes lines into the chat room over the line framing.
fn say(server: &Server, lines: &[String]) {
    let mut stream = TcpStream::connect(("127.0.0.1", server.ports.line)).unwrap();
    for line in lines {
        writeln!(stream, "{line}").unwrap();
    }
    stream.flush().unwrap();
    // The room tells the speaker's own lines to everyone else; closing at
    // once is fine: what was read is stored.
}

#[test]
fn the_room_as_server_sent_events_resumes_across_a_server_restart_without_gap_or_repeat() {
    let dir = DataDir::new("sse");
    let ports = Ports {
        ws: TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
        line: TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
        ..Ports::default()
    };
    let start = || Server::start_on("chat", &["--data-dir", dir.arg(), "--quiet"], ports, "127.0.0.1");
    let mut server = start();
    let client = Client::new(config(&format!("http://127.0.0.1:{}/events", ports.ws))).unwrap();
    client.connect().unwrap();
    wait_for(&client, WITHIN, is_connected);
    let first: Vec<String> = (1..=20).map(|i| format!("line {i}")).collect();
    say(&server, &first);
    let got: Vec<String> = texts(&client, 22).into_iter().filter(|t| t.contains("line ")).collect();
    assert_eq!(got.len(), 20, "{got:?}");
    assert!(got.iter().zip(&first).all(|(g, f)| g.ends_with(f.as_str())), "{got:?}");
    // The server dies; lines said after its restart, and the client must
    // read on from the last one it had: no gap, no repeat.
    server.kill();
    let server = start();
    let second: Vec<String> = (21..=40).map(|i| format!("line {i}")).collect();
    say(&server, &second);
    let events = wait_for(&client, WITHIN, is_connected);
    assert!(events.iter().any(|e| matches!(e, Event::Disconnected { .. })), "{events:?}");
    let mut lines: Vec<String> = Vec::new();
    wait_for(&client, WITHIN, |e| {
        if let Some((m, true)) = e.as_message() {
            let text = String::from_utf8_lossy(m).into_owned();
            if text.contains("line ") {
                lines.push(text);
            }
        }
        lines.iter().any(|l| l.ends_with("line 40"))
    });
    let numbers: Vec<u32> = lines.iter().map(|l| l.rsplit(' ').next().unwrap().parse().unwrap()).collect();
    assert_eq!(numbers, (21..=40).collect::<Vec<_>>(), "exactly the lines said while away, in order");
}

#[test]
fn the_server_s_page_and_unknown_paths() {
    let server = Server::start("chat", &[]);
    let get = |path: &str| {
        let mut stream = TcpStream::connect(("127.0.0.1", server.ports.ws)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    assert!(get("/").starts_with("HTTP/1.1 200"));
    assert!(get("/nothing-here").starts_with("HTTP/1.1 404"), "an unknown path is 404, not the page");
}

/// A one-off HTTP server: each accepted connection gets the next answer
/// of `answers` (written in the pieces given, with a pause between), and
/// the request heads are sent back through the returned channel.
fn serve(answers: Vec<Vec<&'static [u8]>>) -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for answer in answers {
            let Ok((mut stream, _)) = listener.accept() else { return };
            let mut head = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let _ = tx.send(head);
            for piece in answer {
                if stream.write_all(piece).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // Held open, silent, longer than a test's heartbeat timeout
            // (150 ms); then closed: the stream ends.
            std::thread::sleep(Duration::from_millis(400));
        }
    });
    (port, rx)
}

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

/// One chunk of a chunked body.
fn chunk(body: &str) -> &'static [u8] {
    Box::leak(format!("{:x}\r\n{body}\r\n", body.len()).into_bytes().into_boxed_slice())
}

#[test]
fn last_event_id_retry_and_line_ends_split_across_writes() {
    let (port, heads) = serve(vec![
        vec![
            SSE_HEAD,
            chunk("retry: 150\r\nid: a1\r\ndata: one\r"),
            chunk("\n\r\n: comment\r\nid: a2\revent: tick\rdata: two\r\r"),
        ],
        vec![SSE_HEAD, chunk("data: three\n\n")],
    ]);
    let client = Client::new(config(&format!("http://127.0.0.1:{port}/feed"))).unwrap();
    client.connect().unwrap();
    let got = labeled(&client, 2);
    let expected = [("message", "a1", "one"), ("tick", "a2", "two")].map(|(t, i, d)| (t.into(), i.into(), d.into()));
    assert_eq!(got, expected, "types and ids reach the application with each message");
    let first_head = heads.recv_timeout(WITHIN).unwrap();
    assert!(first_head.starts_with("GET /feed HTTP/1.1"), "{first_head}");
    assert!(!first_head.to_ascii_lowercase().contains("last-event-id"), "none on the first request");
    let events = wait_for(&client, WITHIN, |e| matches!(e, Event::ReconnectScheduled { .. }));
    let Some(Event::ReconnectScheduled { delay, .. }) = events.last() else { unreachable!() };
    assert_eq!(*delay, Duration::from_millis(150), "the stream's retry, within the backoff's bounds");
    assert_eq!(labeled(&client, 1), [("message".into(), "a2".into(), "three".into())], "the id carried over");
    let second_head = heads.recv_timeout(WITHIN).unwrap().to_ascii_lowercase();
    assert!(second_head.contains("last-event-id: a2"), "{second_head}");
}

#[test]
fn a_204_stops_reconnecting_and_a_404_is_an_error_that_stops() {
    for (answer, status) in [
        (&b"HTTP/1.1 204 No Content\r\n\r\n"[..], "204"),
        (&b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"[..], "404"),
    ] {
        let (port, _) = serve(vec![vec![answer]]);
        let client = Client::new(config(&format!("http://127.0.0.1:{port}/"))).unwrap();
        client.connect().unwrap();
        let events = wait_for(&client, WITHIN, |e| matches!(e, Event::Closed { .. }));
        let error = events.iter().find_map(|e| match e {
            Event::Error { kind, detail } => Some((*kind, detail.clone())),
            _ => None,
        });
        let (kind, detail) = error.expect("an error event first");
        assert_eq!(kind, ErrorKind::GaveUp, "{detail}");
        assert!(detail.contains(status), "{detail}");
        assert!(!events.iter().any(|e| matches!(e, Event::ReconnectScheduled { .. })), "{events:?}");
    }
}

#[test]
fn a_503_with_retry_after_waits_and_a_redirect_is_followed() {
    let (target, _) = serve(vec![vec![SSE_HEAD, chunk("data: after the redirect\n\n")]]);
    let redirect: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{target}/moved\r\ncontent-length: 0\r\n\r\n"
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let (port, heads) = serve(vec![
        vec![b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n"],
        vec![redirect],
    ]);
    let mut config = config(&format!("http://127.0.0.1:{port}/"));
    config.backoff.max = Duration::from_secs(5);
    let client = Client::new(config).unwrap();
    client.connect().unwrap();
    let events = wait_for(&client, WITHIN, |e| matches!(e, Event::ReconnectScheduled { .. }));
    let Some(Event::ReconnectScheduled { delay, .. }) = events.last() else { unreachable!() };
    assert_eq!(*delay, Duration::from_secs(1), "Retry-After: 1, longer than the schedule's 20 ms");
    assert!(events.iter().any(|e| matches!(e, Event::Error { detail, .. } if detail.contains("503"))));
    assert_eq!(texts(&client, 1), ["after the redirect"]);
    assert_eq!(heads.iter().take(2).count(), 2);
}

#[test]
fn a_silent_stream_ends_by_the_heartbeat_timeout_and_comments_keep_it_alive() {
    // Comments every 20 ms for 300 ms, then silence (the server holds the
    // connection open, 400 ms).
    let comments: Vec<&'static [u8]> =
        std::iter::once(SSE_HEAD).chain((0..15).map(|_| chunk(": still here\n"))).collect();
    let (port, _) = serve(vec![comments]);
    let mut config = config(&format!("http://127.0.0.1:{port}/"));
    config.heartbeat = HeartbeatPolicy { interval: Duration::from_millis(50), timeout: Duration::from_millis(150) };
    let client = Client::new(config).unwrap();
    client.connect().unwrap();
    wait_for(&client, WITHIN, is_connected);
    let connected_at = Instant::now();
    let events = wait_for(&client, WITHIN, |e| matches!(e, Event::Disconnected { .. }));
    let lasted = connected_at.elapsed();
    assert!(lasted >= Duration::from_millis(300), "the comments kept it alive past the timeout: {lasted:?}");
    assert!(
        events.iter().any(|e| matches!(e, Event::Error { kind: ErrorKind::HeartbeatTimeout, .. })),
        "the silence after them ended it: {events:?}"
    );
}

#[test]
fn newline_delimited_streams() {
    let (port, _) = serve(vec![vec![
        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n",
        chunk("{\"n\":1}\n{\"n\""),
        chunk(":2}\r\n\n"),
    ]]);
    let client = Client::new(config(&format!("http://127.0.0.1:{port}/stream"))).unwrap();
    client.connect().unwrap();
    assert_eq!(texts(&client, 2), ["{\"n\":1}", "{\"n\":2}"]);
}

#[test]
fn the_room_as_newline_delimited_json() {
    let server = Server::start("chat", &[]);
    let client = Client::new(config(&format!("http://127.0.0.1:{}/stream", server.ports.ws))).unwrap();
    client.connect().unwrap();
    wait_for(&client, WITHIN, is_connected);
    say(&server, &["a \"quoted\" line".to_string()]);
    let lines = texts(&client, 2);
    assert!(lines[0].starts_with("{\"id\":\"") && lines[0].contains("joined"), "{lines:?}");
    assert!(lines[1].ends_with(": a \\\"quoted\\\" line\"}"), "{lines:?}");
    // Resumed after the first line: the second comes again, and only it.
    let id = lines[0].split('"').nth(3).unwrap();
    let again = Client::new(config(&format!("http://127.0.0.1:{}/stream?after={id}", server.ports.ws))).unwrap();
    again.connect().unwrap();
    assert_eq!(texts(&again, 1)[0], lines[1]);
}

/// POSTs a message with an idempotency key by hand; the status and body.
fn post(port: u16, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let key = key.map_or(String::new(), |k| format!("idempotency-key: \"{k}\"\r\n"));
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n{key}\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, answer.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

#[test]
fn a_post_with_a_key_is_stored_once_and_a_gap_is_refused() {
    let server = Server::start("chat", &[]);
    let port = server.ports.ws;
    let sender = "0123456789abcdef0123456789abcdef";
    assert_eq!(post(port, "/messages", Some(&format!("{sender}:1")), "first").0, 200);
    let (status, body) = post(port, "/messages", Some(&format!("{sender}:1")), "first");
    assert_eq!((status, body.contains("duplicate")), (200, true), "{body}");
    let (status, body) = post(port, "/messages", Some(&format!("{sender}:3")), "third");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("message 3 arrived while 2 was expected"), "{body}");
    assert_eq!(post(port, "/messages", Some("not-a-key:1"), "x").0, 400);
    assert_eq!(post(port, "/messages", None, "keyless").0, 202);
    // The room holds "first" once.
    let reader = Client::new(config(&format!("http://127.0.0.1:{port}/stream?after=0-0"))).unwrap();
    reader.connect().unwrap();
    let lines = texts(&reader, 2);
    assert!(lines[0].ends_with(": first\"}") && lines[1].ends_with("http: keyless\"}"), "{lines:?}");
}

#[test]
fn messages_sent_by_post_reach_the_room_exactly_once_across_server_kills() {
    let dir = DataDir::new("sse-post");
    let ports =
        Ports { ws: TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(), ..Ports::default() };
    let start = || Server::start_on("chat", &["--data-dir", dir.arg(), "--quiet"], ports, "127.0.0.1");
    let mut server = start();
    let mut config = config(&format!("http://127.0.0.1:{}/events", ports.ws));
    config.http_send_to =
        Some(longconn_core::endpoint::Endpoint::parse(&format!("http://127.0.0.1:{}/messages", ports.ws)).unwrap());
    let client = Client::new(config).unwrap();
    client.connect().unwrap();
    wait_for(&client, WITHIN, is_connected);
    let total = 600u64;
    for i in 1..=total {
        client.send(format!("n{i}").as_bytes()).unwrap();
    }
    // Every message comes back through the stream (the room shows everyone's
    // lines); the server is killed, with POSTs in flight, when 150 and 350
    // came back, and starts again on the same data directory.
    let mut numbers = Vec::new();
    let mut kills = 0;
    let mut kill_at = [150, 350].into_iter().peekable();
    while numbers.last() != Some(&total) {
        wait_for(&client, Duration::from_secs(60), |e| {
            if let Some((m, true)) = e.as_message() {
                if let Some(n) = String::from_utf8_lossy(m).rsplit(": n").next().and_then(|n| n.parse::<u64>().ok()) {
                    numbers.push(n);
                }
            }
            numbers.last() == Some(&total) || kill_at.peek().is_some_and(|at| numbers.len() == *at)
        });
        if kill_at.peek().is_some_and(|at| numbers.len() == *at) {
            kill_at.next();
            server.kill();
            server = start();
            kills += 1;
        }
    }
    assert_eq!(kills, 2);
    // Read the room from its start on a fresh stream: each number exactly once, in order.
    let reader = Client::new(config_for_reading(ports.ws)).unwrap();
    reader.connect().unwrap();
    let mut stored = Vec::new();
    wait_for(&reader, Duration::from_secs(30), |e| {
        if let Some((m, true)) = e.as_message() {
            if let Some(n) = String::from_utf8_lossy(m)
                .rsplit(": n")
                .next()
                .and_then(|n| n.trim_end_matches("\"}").parse::<u64>().ok())
            {
                stored.push(n);
            }
        }
        stored.last() == Some(&total)
    });
    assert_eq!(stored, (1..=total).collect::<Vec<_>>(), "the room holds every message once, in order");
    drop(server);
}

fn config_for_reading(port: u16) -> ClientConfig {
    config(&format!("http://127.0.0.1:{port}/stream?after=0-0"))
}
