//! HTTP long connections measured: Server-Sent Events received per second
//! by longconn next to a plain hyper client reading the same stream, in one
//! run on one machine.
//!
//! The stream: `longconn-server`'s room at `/events`, filled first with
//! `EVENTS` lines of 64 bytes (through the line framing), then read from
//! its start (`Last-Event-ID` of another epoch) by each client in turn,
//! `ROUNDS` rounds, medians. longconn: the core API with a batch handler
//! that counts messages (each parsed, labelled with its type and id, and
//! queued for the application, as an application gets them). hyper: an
//! HTTP/1 client connection on a current-thread runtime that counts the
//! blank lines that end events in the body, parsing nothing else. Beside
//! each: the bench process's context switches per 1,000 events.
//!
//!   cargo build --release -p longconn-server && cargo bench --bench http
//!   EVENTS=500000 ROUNDS=5 cargo bench --bench http
//!
//! A benchmark, not a test: it prints figures and asserts only that every
//! event arrived.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use longconn_core::hook::{ConnectInfo, ConnectRequest};
use longconn_core::{Client, ClientConfig, Event, EventHandler, State};

#[path = "support/process.rs"]
mod process;
use process::{context_switches, env_count};
#[path = "../tests/common/server_binary.rs"]
mod server_binary;

const PATIENCE: Duration = Duration::from_secs(120);

struct Server {
    child: Child,
    line_port: u16,
    ws_port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(history: u64) -> Server {
    let mut child = Command::new(server_binary::server_binary())
        .args(["--mode", "chat", "--quiet", "--threads", "1", "--data-dir", "memory"])
        .args(["--history", &history.to_string(), "--history-bytes", &(history * 512).to_string()])
        .args(["--longconn-port", "off", "--length-port", "off", "--line-port", "0", "--ws-port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start longconn-server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut line_port, mut ws_port) = (0, 0);
    for line in lines.by_ref() {
        let line = line.unwrap();
        let port_of = |addr: &str| addr.rsplit(':').next().unwrap().parse().unwrap();
        if let Some(addr) = line.strip_prefix("listening line ") {
            line_port = port_of(addr);
        }
        if let Some(addr) = line.strip_prefix("listening ws ") {
            ws_port = port_of(addr);
        }
        if line.starts_with("ready") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Server { child, line_port, ws_port }
}

/// Says `count` lines of 64 bytes in the room, and waits until the room
/// holds them (a plain read of the stream counts them).
fn fill(server: &Server, count: u64) {
    let mut stream = TcpStream::connect(("127.0.0.1", server.line_port)).unwrap();
    let mut batch = Vec::with_capacity(1 << 20);
    for i in 0..count {
        writeln!(batch, "{:063}", i).unwrap();
        if batch.len() > (1 << 20) - 128 {
            stream.write_all(&batch).unwrap();
            batch.clear();
        }
    }
    stream.write_all(&batch).unwrap();
    stream.flush().unwrap();
    // The speaker's join notice comes first: count + 1 events once all are in.
    let deadline = Instant::now() + PATIENCE;
    while hyper_read(server.ws_port, count + 1).is_none() {
        assert!(Instant::now() < deadline, "the room did not fill");
    }
    drop(stream);
}

/// Reads `/events` from the start with a plain hyper client until `events`
/// blank lines came; `None` if the stream ended first (seconds taken otherwise).
fn hyper_read(port: u16, events: u64) -> Option<f64> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let started = Instant::now();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let request = http::Request::get("/events")
            .header("host", "127.0.0.1")
            .header("last-event-id", "0-0")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut body = sender.send_request(request).await.unwrap().into_body();
        let (mut seen, mut last_newline) = (0u64, false);
        let quiet = Duration::from_millis(500);
        while seen < events {
            let frame = match tokio::time::timeout(quiet, body.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                _ => return None,
            };
            let Ok(data) = frame.into_data() else { continue };
            for &b in data.iter() {
                if b == b'\n' {
                    if last_newline {
                        seen += 1;
                    }
                    last_newline = true;
                } else {
                    last_newline = false;
                }
            }
        }
        // The stream opens with `retry: 1000` and a blank line: one more than the events.
        Some(started.elapsed().as_secs_f64()).filter(|_| seen >= events)
    })
}

/// Counts messages, a batch at a time, and wakes the bench at the target.
struct Counter {
    seen: AtomicU64,
    target: u64,
    done: (Mutex<bool>, Condvar),
}

impl EventHandler for Counter {
    fn on_event(&self, event: &Event, _: State) {
        if event.as_message().is_some() {
            self.add(1);
        }
    }

    fn takes_batches(&self) -> bool {
        true
    }

    fn on_messages(&self, messages: &longconn_core::event::MessageBatch, _: State) {
        self.add(messages.len() as u64);
    }
}

impl Counter {
    fn add(&self, n: u64) {
        if self.seen.fetch_add(n, Ordering::Relaxed) + n >= self.target {
            *self.done.0.lock().unwrap() = true;
            self.done.1.notify_all();
        }
    }
}

fn longconn_read(port: u16, events: u64, on_io_thread: bool) -> f64 {
    let mut config = ClientConfig::new(&format!("http://127.0.0.1:{port}/events")).unwrap();
    config.callbacks_on_io_thread = on_io_thread;
    config.max_frame_size = 1 << 20;
    config.inbox = longconn_core::policy::limits::InboxLimits { max_messages: 1 << 20, max_bytes: 256 << 20 };
    let client = Client::new(config).unwrap();
    client.set_connect_hook(Some(Arc::new(|_: &ConnectInfo, request: &mut ConnectRequest| {
        request.set_header("last-event-id", "0-0")
    })));
    let counter = Arc::new(Counter { seen: AtomicU64::new(0), target: events, done: Default::default() });
    client.set_handler(Some(counter.clone())).unwrap();
    let started = Instant::now();
    client.connect().unwrap();
    let (lock, changed) = &counter.done;
    let (done, timeout) = changed.wait_timeout_while(lock.lock().unwrap(), PATIENCE, |done| !*done).unwrap();
    assert!(*done && !timeout.timed_out(), "longconn did not receive every event");
    let took = started.elapsed().as_secs_f64();
    drop(done);
    let _ = client.close(Duration::from_secs(1));
    took
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("http benchmark: skipped (run it with `cargo bench --bench http`)");
        return;
    }
    let events = env_count("EVENTS", 200_000).max(1000);
    let rounds = env_count("ROUNDS", 3).max(1) as usize;
    let server = start_server(events + 10);
    fill(&server, events);
    // The join notice and the lines: every event of the history.
    let total = events + 1;
    println!("Server-Sent Events: {total} events of 64-byte lines from longconn-server's /events, read from the start; {rounds} rounds, medians");
    let (mut ours, mut theirs, mut our_switches, mut their_switches) = (vec![], vec![], vec![], vec![]);
    let (mut inline, mut inline_switches) = (vec![], vec![]);
    for _ in 0..rounds {
        let before = context_switches();
        ours.push(total as f64 / longconn_read(server.ws_port, total, false));
        our_switches.push((context_switches() - before) as f64 * 1000.0 / total as f64);
        let before = context_switches();
        inline.push(total as f64 / longconn_read(server.ws_port, total, true));
        inline_switches.push((context_switches() - before) as f64 * 1000.0 / total as f64);
        let before = context_switches();
        theirs.push(total as f64 / hyper_read(server.ws_port, total).expect("hyper read every event"));
        their_switches.push((context_switches() - before) as f64 * 1000.0 / total as f64);
    }
    let ratio = median(ours.iter().zip(&theirs).map(|(o, t)| o / t).collect());
    let inline_ratio = median(inline.iter().zip(&theirs).map(|(o, t)| o / t).collect());
    println!("{:<44} {:>12} {:>14}", "client", "events/s", "sw/1000 events");
    println!("{:<44} {:>12.0} {:>14.1}", "longconn (SSE parsed, labelled)", median(ours), median(our_switches));
    println!(
        "{:<44} {:>12.0} {:>14.1}",
        "longconn, callbacks on the I/O thread",
        median(inline),
        median(inline_switches)
    );
    println!("{:<44} {:>12.0} {:>14.1}", "hyper (blank lines counted)", median(theirs), median(their_switches));
    println!(
        "longconn / hyper: {ratio:.2}x; with callbacks on the I/O thread {inline_ratio:.2}x (target: at least 0.90x)"
    );
}
