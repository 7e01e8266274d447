//! Servers that flood the client faster than the application takes its
//! messages: the client's memory must stay bounded (peak RSS below 64 MiB
//! with default settings) and the connection must stay up.
//!
//! Each flood runs in a child process (this test binary, started again with
//! `LONGCONN_FLOOD` naming the flood), so its peak resident memory (VmHWM)
//! is its own. The hostile server is a thread of that child, writing a
//! prebuilt buffer of frames for as long as the socket takes it.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use longconn_core::{Client, ClientConfig, Event, EventHandler, State};

/// How long each flood runs before memory is read.
const FLOOD_FOR: Duration = Duration::from_secs(2);
/// The bound the issue sets, with default settings.
const PEAK_LIMIT_KIB: u64 = 64 * 1024;

/// A flood: what one connection's server writes, over and over.
#[derive(Clone, Copy, Debug)]
enum Flood {
    /// Empty DATA frames of the longconn protocol.
    Empty,
    /// DATA frames of one byte.
    Tiny,
    /// DATA frames of 64 KiB.
    Large,
    /// PING frames; the server reads the client's PONGs.
    Ping,
    /// Empty binary WebSocket messages.
    WsEmpty,
    /// WebSocket messages compressed (permessage-deflate) from 64 KiB of
    /// zeros to a few dozen bytes each: each read inflates to megabytes.
    WsDeflate,
}

impl Flood {
    fn from_name(name: &str) -> Flood {
        match name {
            "empty" => Flood::Empty,
            "tiny" => Flood::Tiny,
            "large" => Flood::Large,
            "ping" => Flood::Ping,
            "ws-empty" => Flood::WsEmpty,
            "ws-deflate" => Flood::WsDeflate,
            other => panic!("unknown flood {other}"),
        }
    }

    /// About 256 KiB of frames, written again and again.
    fn chunk(self) -> Vec<u8> {
        let one = match self {
            Flood::Empty => frame(0x01, b""),
            Flood::Tiny => frame(0x01, b"x"),
            Flood::Large => frame(0x01, &[b'L'; 64 * 1024]),
            Flood::Ping => frame(0x02, &[7; 8]),
            Flood::WsEmpty => vec![0x82, 0x00],
            Flood::WsDeflate => {
                let compressed = deflated(&[0u8; 64 * 1024]);
                let mut frame = vec![0xc2, 126];
                frame.extend_from_slice(&(compressed.len() as u16).to_be_bytes());
                frame.extend_from_slice(&compressed);
                frame
            }
        };
        one.repeat((256 * 1024 / one.len()).max(1))
    }
}

/// `message` compressed as a permessage-deflate sender does: raw DEFLATE,
/// sync flush, the `00 00 FF FF` tail taken off.
fn deflated(message: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut deflate = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(message.len());
    deflate.compress_vec(message, &mut out, FlushCompress::Sync).unwrap();
    assert!(deflate.total_in() as usize == message.len() && out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    f.push(kind);
    f.extend_from_slice(payload);
    f
}

/// What a child reports.
#[derive(Debug)]
struct Report {
    peak_kib: u64,
    connected: bool,
    reconnects: u64,
    /// Messages taken after the flood, proving the connection still delivers.
    taken_after: u64,
}

/// Runs `flood` in a child process and returns its report.
fn run_child(flood: &str, callbacks: bool) -> Report {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["flood_child_process", "--exact", "--nocapture", "--test-threads=1"])
        .env("LONGCONN_FLOOD", flood)
        .env("LONGCONN_FLOOD_CALLBACKS", if callbacks { "1" } else { "0" })
        .output()
        .expect("start the flood child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "flood child failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let line = stdout
        .lines()
        .find_map(|l| l.find("flood-report ").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no report:\n{stdout}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    Report {
        peak_kib: field("peak_kib"),
        connected: field("connected") == 1,
        reconnects: field("reconnects"),
        taken_after: field("taken_after"),
    }
}

fn assert_bounded(flood: &str, callbacks: bool) {
    let report = run_child(flood, callbacks);
    println!("{flood} (callbacks {callbacks}): {report:?}");
    assert!(report.peak_kib < PEAK_LIMIT_KIB, "{flood}: peak RSS {} KiB", report.peak_kib);
    assert!(report.connected && report.reconnects == 0, "{flood}: the connection dropped: {report:?}");
    assert!(report.taken_after > 0, "{flood}: nothing arrived after the flood: {report:?}");
}

#[test]
fn a_flood_of_empty_frames_stays_bounded() {
    assert_bounded("empty", false);
}

#[test]
fn a_flood_of_one_byte_frames_stays_bounded() {
    assert_bounded("tiny", false);
}

#[test]
fn a_flood_of_64_kib_frames_stays_bounded() {
    assert_bounded("large", false);
}

#[test]
fn a_flood_of_empty_frames_into_slow_callbacks_stays_bounded() {
    assert_bounded("empty", true);
}

#[test]
fn a_ping_flood_stays_bounded() {
    let report = run_child("ping", false);
    println!("ping: {report:?}");
    assert!(report.peak_kib < PEAK_LIMIT_KIB, "ping: peak RSS {} KiB", report.peak_kib);
    assert!(report.connected && report.reconnects == 0, "ping: the connection dropped: {report:?}");
}

#[test]
fn a_flood_of_empty_websocket_messages_stays_bounded() {
    assert_bounded("ws-empty", false);
}

#[test]
fn a_flood_of_compressed_websocket_messages_stays_bounded_by_their_inflated_size() {
    assert_bounded("ws-deflate", false);
}

/// The child's side: only when started by [`run_child`].
#[test]
fn flood_child_process() {
    let Ok(name) = std::env::var("LONGCONN_FLOOD") else {
        return; // run by run_child only
    };
    let flood = Flood::from_name(&name);
    let callbacks = std::env::var("LONGCONN_FLOOD_CALLBACKS").as_deref() == Ok("1");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let deadline = Instant::now() + FLOOD_FOR;
    let server = std::thread::spawn(move || serve_flood(listener, flood, deadline + Duration::from_secs(5)));

    let url = match flood {
        Flood::WsEmpty | Flood::WsDeflate => format!("ws://127.0.0.1:{port}/"),
        _ => format!("tcp://127.0.0.1:{port}"),
    };
    let client = Client::new(ClientConfig::new(&url).unwrap()).unwrap();
    let delivered = Arc::new(AtomicU64::new(0));
    if callbacks {
        client.set_handler(Some(Arc::new(SlowHandler { delivered: delivered.clone() }))).unwrap();
    }
    client.connect().unwrap();
    // The flood runs for its fixed time while the application takes nothing.
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    let peak_kib = peak_rss_kib();
    let connected = client.state() == State::Connected;
    let before = client.stats().messages_in;
    let taken_after = if callbacks {
        let at = delivered.load(Ordering::Relaxed);
        wait_until(|| delivered.load(Ordering::Relaxed) > at + 1000);
        delivered.load(Ordering::Relaxed) - at
    } else {
        // Take what waits, and more arrives: reading resumed.
        let mut taken = 0u64;
        wait_until(|| {
            while let Ok(Some(n)) = client.poll_messages(Duration::from_millis(10), |_, _| true) {
                taken += n as u64;
                if n == 0 {
                    let _ = client.poll(Duration::ZERO);
                }
            }
            taken > 0 && client.stats().messages_in > before
        });
        taken
    };
    let stats = client.stats();
    println!(
        "flood-report peak_kib={peak_kib} connected={} reconnects={} taken_after={taken_after}",
        u8::from(connected),
        stats.reconnects
    );
    drop(client);
    server.join().unwrap();
}

/// Waits up to 10 s for `done`.
fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Callbacks that keep up with nothing: 1 ms per 100 messages.
struct SlowHandler {
    delivered: Arc<AtomicU64>,
}

impl EventHandler for SlowHandler {
    fn on_event(&self, _event: &Event, _state: State) {}

    fn on_message(&self, _payload: &[u8], _text: bool, _state: State) {
        if self.delivered.fetch_add(1, Ordering::Relaxed) % 100 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The peak resident memory of this process, from /proc.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Accepts one client, greets it, and floods it until `stop` or until the
/// client goes away; reads (and discards) whatever the client sends.
fn serve_flood(listener: TcpListener, flood: Flood, stop: Instant) {
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    match flood {
        Flood::WsEmpty | Flood::WsDeflate => {
            let extensions =
                matches!(flood, Flood::WsDeflate).then_some("permessage-deflate; server_no_context_takeover");
            common::accept_websocket_with(&mut stream, extensions);
            // The client offers longconn.v2 first; this server chooses no
            // subprotocol, so the client drops that connection and comes
            // straight back without the offer: serve the second one.
            let mut byte = [0u8; 1];
            stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            if matches!(stream.peek(&mut byte), Ok(0)) {
                stream = listener.accept().unwrap().0;
                stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                common::accept_websocket_with(&mut stream, extensions);
            }
        }
        _ => {
            let mut header = [0u8; 4];
            stream.read_exact(&mut header).unwrap();
            let mut hello = vec![0u8; u32::from_be_bytes(header) as usize];
            stream.read_exact(&mut hello).unwrap();
            stream.write_all(&frame(0x04, b"\x01flood-server")).unwrap();
        }
    }
    // The client's pongs and pings are read and thrown away, so only the
    // client's own memory can grow.
    let mut reader = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64 * 1024];
        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
    });
    stream.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let chunk = flood.chunk();
    while Instant::now() < stop {
        match stream.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break, // the client went away
        }
    }
}

/// With permessage-deflate agreed, a long message goes compressed (RSV1
/// set, far smaller on the wire, inflating back to itself) and a short one
/// as it is: read off the wire by a server of the test's own.
#[test]
fn long_messages_are_sent_compressed_and_short_ones_not() {
    use flate2::{Decompress, FlushDecompress};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://127.0.0.1:{}/", listener.local_addr().unwrap().port());
    let mut config = ClientConfig::new(&url).unwrap();
    config.max_protocol = 1;
    let client = Client::new(config).unwrap();
    client.connect().unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    common::accept_websocket_with(&mut stream, Some("permessage-deflate"));
    let long = "compressible text ".repeat(1000);
    client.send_text(&long).unwrap();
    client.send_text("short").unwrap();
    // Reads one client frame: (RSV1, opcode, unmasked payload).
    let mut read_frame = || {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).unwrap();
        let len = match head[1] & 0x7f {
            126 => {
                let mut n = [0u8; 2];
                stream.read_exact(&mut n).unwrap();
                u16::from_be_bytes(n) as usize
            }
            127 => panic!("too long for this test"),
            n => n as usize,
        };
        let mut key = [0u8; 4];
        stream.read_exact(&mut key).unwrap();
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).unwrap();
        payload.iter_mut().enumerate().for_each(|(i, b)| *b ^= key[i % 4]);
        (head[0] & 0x40 != 0, head[0] & 0x0f, payload)
    };
    let (compressed, opcode, mut payload) = read_frame();
    assert!(compressed && opcode == 1, "a long text message goes compressed");
    assert!(payload.len() < long.len() / 10, "{} bytes for {}", payload.len(), long.len());
    let mut inflate = Decompress::new(false);
    let mut out = Vec::with_capacity(long.len() + 64);
    payload.extend_from_slice(&[0, 0, 0xff, 0xff]);
    inflate.decompress_vec(&payload, &mut out, FlushDecompress::Sync).unwrap();
    assert_eq!(out, long.as_bytes());
    let (compressed, opcode, payload) = read_frame();
    assert!(!compressed && opcode == 1 && payload == b"short", "a short one goes as it is");
}

/// Short messages (written at once from the sending thread) and long ones
/// (compressed by the I/O thread) sent back to back reach the bundled echo
/// server, and come back, in order and exactly once.
#[test]
fn short_and_compressed_messages_keep_their_order() {
    let server = common::Server::start("echo", &[]);
    let client = Client::new(ClientConfig::new(&format!("ws://127.0.0.1:{}/", server.ports.ws)).unwrap()).unwrap();
    client.connect().unwrap();
    common::wait_for(&client, Duration::from_secs(10), common::is_connected);
    let total = 400;
    let message = |i: usize| if i % 3 == 0 { format!("{i}:{}", "x".repeat(600)) } else { format!("{i}") };
    for i in 0..total {
        client.send_text(&message(i)).unwrap();
    }
    let mut got = Vec::new();
    common::wait_for(&client, Duration::from_secs(10), |e| {
        if let Some((m, _)) = e.as_message() {
            got.push(String::from_utf8_lossy(m).into_owned());
        }
        got.len() == total
    });
    let expected: Vec<String> = (0..total).map(message).collect();
    assert_eq!(got, expected);
}
