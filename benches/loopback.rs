//! Loopback benchmark: longconn through its C ABI next to plain tokio
//! clients speaking the same framing, against the same `longconn-server`
//! process, in one run. Prints figures and ratios; asserts nothing.
//!
//!   cargo bench --bench loopback      (MESSAGES=, ROUND_TRIPS=, RUNS= change the sizes)
//!
//! Two plain clients: tokio-util's `FramedWrite`/`FramedRead` used the usual
//! way (one message per `feed()`/`next()`), and a hand-batched client that
//! encodes into its own buffer and writes 256 KiB at a time.
//! `PART=lc-send|lc-send-batch|lc-ws-send|lc-receive|base-send|framed-send|v1-send|v2-send|
//! v2m-send|v1-receive|v2-receive|v2m-receive|v1-rtt|v2-rtt|v2m-rtt|lc-ws-rtt-p99|v2-ack|v2m-ack|
//! v2-ack-p99|v2m-ack-p99|v2-ack-1000|v2m-ack-1000` runs one
//! measurement alone, RUNS times, for profiling and A/B comparisons (v1/v2: the longconn
//! protocol at version 1 or 2 against a server whose store is on disk; v2m: version 2, the
//! store in memory; the round trips print their p50, `lc-ws-rtt-p99` longconn's WebSocket p99;
//! `-ack`: the time from send to the server's acknowledgement with one message in flight, p50
//! or p99; `-ack-1000`: messages acknowledged per second with at most 1,000 unacknowledged).
//!
//! Measured: messages per second sent through `lc_client_send` (64-byte
//! messages to a sink, until the last one is written), messages per second
//! received through the message callback (pipelined through an echo
//! server), and round-trip latency p50/p99 (one message in flight).

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
#[path = "support/process.rs"]
mod process;
use process::env_count;
#[path = "support/server.rs"]
mod server;
#[path = "../tests/common/server_binary.rs"]
mod server_binary;
use server::Server;
#[path = "support/lc.rs"]
mod lc;
use lc::{lc_ack_latency, lc_ack_window_rate, Lc, PAYLOAD};

use longconn::client::*;
use longconn::status::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

// ---- longconn through the C ABI ----

/// Counts received messages; wakes a blocked waiter once `target` is reached.
struct Counter {
    count: AtomicU64,
    target: AtomicU64,
    reached: Mutex<bool>,
    wake: Condvar,
}

impl Counter {
    fn new() -> Box<Counter> {
        Box::new(Counter {
            count: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            reached: Mutex::new(false),
            wake: Condvar::new(),
        })
    }

    fn user_data(&self) -> *mut c_void {
        self as *const Counter as *mut c_void
    }

    /// Blocks (no spinning, so the library's threads get the CPU) until `target`.
    fn block_until(&self, target: u64, within: Duration) {
        let mut reached = self.reached.lock().unwrap();
        *reached = false;
        self.target.store(target, Ordering::SeqCst);
        if self.count.load(Ordering::SeqCst) >= target {
            return;
        }
        let (guard, timeout) = self.wake.wait_timeout_while(reached, within, |r| !*r).unwrap();
        assert!(!timeout.timed_out(), "timed out at {} of {target}", self.count.load(Ordering::SeqCst));
        drop(guard);
    }
}

unsafe extern "C" fn count_message(user_data: *mut c_void, _data: *const u8, _len: usize, _text: bool) {
    // SAFETY: user_data is the Counter passed at registration, alive for the client's life.
    let counter = unsafe { &*(user_data as *const Counter) };
    let now = counter.count.fetch_add(1, Ordering::SeqCst) + 1;
    if now == counter.target.load(Ordering::SeqCst) {
        *counter.reached.lock().unwrap() = true;
        counter.wake.notify_all();
    }
}

fn spin_until(counter: &AtomicU64, target: u64, within: Duration) {
    let deadline = Instant::now() + within;
    while counter.load(Ordering::Acquire) < target {
        assert!(Instant::now() < deadline, "timed out at {} of {target}", counter.load(Ordering::Acquire));
        std::hint::spin_loop();
    }
}

fn lc_send_rate(url: &str, n: u64) -> f64 {
    lc_send_rate_v(url, n, 2)
}

/// Sends `n` messages and closes, which waits until all are written (best
/// effort) or acknowledged, that is stored by the server (protocol 2).
fn lc_send_rate_v(url: &str, n: u64, protocol: u32) -> f64 {
    let client = Lc::with_protocol(url, None, ptr::null_mut(), protocol);
    client.send(&PAYLOAD);
    client.wait_written(1);
    let start = Instant::now();
    for _ in 0..n {
        client.send(&PAYLOAD);
    }
    client.close(); // returns once everything is written
    n as f64 / start.elapsed().as_secs_f64()
}

/// Like [`lc_send_rate`], queuing 64 messages per lc_client_send_batch call.
fn lc_send_batch_rate(server: &Server, n: u64) -> f64 {
    const PER_CALL: usize = 64;
    let client = Lc::new(&server.url(), None, ptr::null_mut());
    client.send(&PAYLOAD);
    client.wait_written(1);
    let buffers = [lc_buffer { data: PAYLOAD.as_ptr(), len: PAYLOAD.len() }; PER_CALL];
    let start = Instant::now();
    let mut left = n as usize;
    while left > 0 {
        let this_call = left.min(PER_CALL);
        let mut queued = 0;
        // SAFETY: live client; `buffers` holds `this_call` valid buffers.
        let status = unsafe { lc_client_send_batch(client.0, buffers.as_ptr(), this_call, &mut queued) };
        match status {
            LC_STATUS_OK => {}
            LC_STATUS_QUEUE_FULL => std::thread::yield_now(),
            other => panic!("send batch failed: {other:?}"),
        }
        left -= queued;
    }
    client.close();
    n as f64 / start.elapsed().as_secs_f64()
}

fn lc_receive_rate(url: &str, n: u64) -> f64 {
    lc_receive_rate_v(url, n, 2)
}

fn lc_receive_rate_v(url: &str, n: u64, protocol: u32) -> f64 {
    let received = Counter::new();
    let client = Lc::with_protocol(url, Some(count_message), received.user_data(), protocol);
    client.send(&PAYLOAD);
    received.block_until(1, Duration::from_secs(10));
    let start = Instant::now();
    for _ in 0..n {
        client.send(&PAYLOAD);
    }
    received.block_until(n + 1, Duration::from_secs(120));
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(client);
    rate
}

fn lc_round_trips(url: &str, n: u64) -> Vec<Duration> {
    lc_round_trips_v(url, n, 2)
}

fn lc_round_trips_v(url: &str, n: u64, protocol: u32) -> Vec<Duration> {
    let received = Counter::new();
    let client = Lc::with_protocol(url, Some(count_message), received.user_data(), protocol);
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..n + 1000 {
        let start = Instant::now();
        client.send(&PAYLOAD);
        // Spinning here on purpose: this measures latency, not throughput.
        spin_until(&received.count, i + 1, Duration::from_secs(10));
        if i >= 1000 {
            samples.push(start.elapsed()); // the first 1000 warm up
        }
    }
    samples
}

// ---- the plain tokio baseline: tokio-util's LengthDelimitedCodec, the same 4-byte framing ----

fn baseline_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(1 << 20).new_codec()
}

fn encode(codec: &mut LengthDelimitedCodec, buf: &mut BytesMut) {
    codec.encode(Bytes::from_static(&PAYLOAD), buf).unwrap();
}

async fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

async fn tokio_send_rate(server: &Server, n: u64) -> f64 {
    let stream = connect(server).await;
    let start = Instant::now();
    let mut stream = write_batched(stream, n).await;
    stream.shutdown().await.unwrap();
    n as f64 / start.elapsed().as_secs_f64()
}

/// The same with tokio-util's `FramedWrite` sink, fed one message at a time
/// (it writes whenever its buffer passes 8 KiB) and flushed at the end.
async fn framed_send_rate(server: &Server, n: u64) -> f64 {
    use futures_util::SinkExt;
    let stream = connect(server).await;
    let mut sink = tokio_util::codec::FramedWrite::new(stream, baseline_codec());
    let start = Instant::now();
    for _ in 0..n {
        sink.feed(Bytes::from_static(&PAYLOAD)).await.unwrap();
    }
    SinkExt::<Bytes>::flush(&mut sink).await.unwrap();
    sink.get_mut().shutdown().await.unwrap();
    n as f64 / start.elapsed().as_secs_f64()
}

/// Writes `n` messages the hand-batched way (256 KiB per write); returns the half for closing later.
async fn write_batched<W: AsyncWriteExt + Unpin>(mut write_half: W, n: u64) -> W {
    let mut codec = baseline_codec();
    let mut buf = BytesMut::with_capacity(256 * 1024);
    for _ in 0..n {
        encode(&mut codec, &mut buf);
        if buf.len() >= 256 * 1024 {
            write_half.write_all(&buf).await.unwrap();
            buf.clear();
        }
    }
    write_half.write_all(&buf).await.unwrap();
    write_half
}

async fn tokio_receive_rate(server: &Server, n: u64) -> f64 {
    let (mut read_half, write_half) = connect(server).await.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(write_batched(write_half, n));
    let mut codec = baseline_codec();
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut received = 0;
    while received < n {
        while let Some(_message) = codec.decode(&mut buf).unwrap() {
            received += 1;
        }
        if received < n {
            buf.reserve(64 * 1024);
            assert!(read_half.read_buf(&mut buf).await.unwrap() > 0);
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(writer.await.unwrap());
    rate
}

/// The same with tokio-util's `FramedRead` stream, one message per `next()`.
async fn framed_receive_rate(server: &Server, n: u64) -> f64 {
    use futures_util::StreamExt;
    let (read_half, write_half) = connect(server).await.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(write_batched(write_half, n));
    let mut frames = tokio_util::codec::FramedRead::new(read_half, baseline_codec());
    let mut received = 0;
    while received < n {
        frames.next().await.unwrap().unwrap();
        received += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(writer.await.unwrap());
    rate
}

async fn tokio_round_trips(server: &Server, n: u64) -> Vec<Duration> {
    let mut stream = connect(server).await;
    let mut codec = baseline_codec();
    let mut out = BytesMut::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut samples = Vec::with_capacity(n as usize);
    for i in 0..n + 1000 {
        let start = Instant::now();
        encode(&mut codec, &mut out);
        stream.write_all(&out).await.unwrap();
        out.clear();
        loop {
            if codec.decode(&mut buf).unwrap().is_some() {
                break;
            }
            assert!(stream.read_buf(&mut buf).await.unwrap() > 0);
        }
        if i >= 1000 {
            samples.push(start.elapsed());
        }
    }
    samples
}

// ---- report ----

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p) as usize]
}

/// Median, minimum and maximum of repeated measurements.
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

fn spread(mut values: Vec<f64>) -> Spread {
    values.sort_by(f64::total_cmp);
    Spread { median: values[values.len() / 2], min: values[0], max: values[values.len() - 1] }
}

/// One table line: both sides' medians (min-max), then `compare`.
fn print_row(label: &str, base: &Spread, lc: &Spread, decimals: usize, compare: String) {
    let (b, l, p) = (base, lc, decimals);
    println!(
        "{label:<28} {:>12.p$} ({:>9.p$}-{:<9.p$}) {:>12.p$} ({:>9.p$}-{:<9.p$}) {compare}",
        b.median, b.min, b.max, l.median, l.min, l.max
    );
}

/// A throughput line; the ratio is the median of the per-run ratios, each
/// longconn run set against the baseline run of the same round, so drift in
/// the machine's speed over the whole benchmark cancels out.
fn row(label: &str, base: &[f64], lc: &[f64]) {
    let ratio = spread(base.iter().zip(lc).map(|(b, l)| l / b).collect()).median;
    print_row(label, &spread(base.to_vec()), &spread(lc.to_vec()), 0, format!("{:>8.1}%", 100.0 * ratio));
}

/// A latency line in microseconds, with the difference of the medians.
fn row_us(label: &str, base: &Spread, lc: &Spread) {
    print_row(label, base, lc, 1, format!("{:>+8.1}", lc.median - base.median));
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("loopback benchmark: skipped (run it with `cargo bench --bench loopback`)");
        return;
    }
    let messages = env_count("MESSAGES", 2_000_000);
    let round_trips = env_count("ROUND_TRIPS", 10_000);
    let runs = env_count("RUNS", 5).max(1) as usize;
    // The baseline gets the same number of I/O threads as longconn's runtime.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // PART=... runs one measurement alone, RUNS times, each against a fresh server.
    if let Ok(part) = std::env::var("PART") {
        let measure: Box<dyn Fn() -> f64> = match part.as_str() {
            "lc-send" => Box::new(|| lc_send_rate(&Server::start("sink").url(), messages)),
            "lc-send-batch" => Box::new(|| lc_send_batch_rate(&Server::start("sink"), messages)),
            "lc-ws-send" => Box::new(|| lc_send_rate(&Server::start("sink").ws_url(), messages)),
            "lc-receive" => Box::new(|| lc_receive_rate(&Server::start("echo").url(), messages)),
            "framed-send" => Box::new(|| rt.block_on(framed_send_rate(&Server::start("sink"), messages))),
            "base-send" => Box::new(|| rt.block_on(tokio_send_rate(&Server::start("sink"), messages))),
            "v1-send" => Box::new(|| lc_send_rate_v(&Server::start_with_store("sink", true).lc_url(), messages, 1)),
            "v2-send" => Box::new(|| lc_send_rate_v(&Server::start_with_store("sink", true).lc_url(), messages, 2)),
            "v2m-send" => Box::new(|| lc_send_rate_v(&Server::start_with_store("sink", false).lc_url(), messages, 2)),
            "v2m-receive" => {
                Box::new(|| lc_receive_rate_v(&Server::start_with_store("echo", false).lc_url(), messages, 2))
            }
            "v1-receive" => {
                Box::new(|| lc_receive_rate_v(&Server::start_with_store("echo", true).lc_url(), messages, 1))
            }
            "v2-receive" => {
                Box::new(|| lc_receive_rate_v(&Server::start_with_store("echo", true).lc_url(), messages, 2))
            }
            "v1-rtt" | "v2-rtt" | "v2m-rtt" => {
                let version = if part == "v1-rtt" { 1 } else { 2 };
                let durable = part != "v2m-rtt";
                Box::new(move || {
                    let server = Server::start_with_store("echo", durable);
                    let mut samples = lc_round_trips_v(&server.lc_url(), round_trips, version);
                    percentile(&mut samples, 0.5).as_secs_f64() * 1e6
                })
            }
            "v2-ack" | "v2m-ack" | "v2-ack-p99" | "v2m-ack-p99" => {
                let durable = part.starts_with("v2-");
                let p = if part.ends_with("p99") { 0.99 } else { 0.5 };
                Box::new(move || {
                    let server = Server::start_with_store("sink", durable);
                    let mut samples = lc_ack_latency(&server.lc_url(), round_trips);
                    percentile(&mut samples, p).as_secs_f64() * 1e6
                })
            }
            "v2-ack-1000" | "v2m-ack-1000" => {
                let durable = part.starts_with("v2-");
                Box::new(move || {
                    lc_ack_window_rate(&Server::start_with_store("sink", durable).lc_url(), messages, 1000)
                })
            }
            "lc-ws-rtt-p99" => Box::new(move || {
                let server = Server::start("echo");
                let mut samples = lc_round_trips(&server.ws_url(), round_trips);
                percentile(&mut samples, 0.99).as_secs_f64() * 1e6
            }),
            other => panic!("unknown PART {other:?}"),
        };
        let unit = if part.contains("rtt") || (part.contains("-ack") && !part.ends_with("-1000")) {
            "us"
        } else {
            "messages/s"
        };
        for _ in 0..runs {
            println!("{:.0} {unit}", measure());
        }
        return;
    }
    println!(
        "loopback benchmark: {messages} x 64-byte messages, {round_trips} round trips, length framing, \
         {runs} runs each (baseline and longconn alternating); median (min-max)"
    );
    // Every measurement gets a fresh server process: a sink still draining
    // the previous run's socket buffers would take CPU from the next run.
    let sink = |f: &dyn Fn(&Server) -> f64| f(&Server::start("sink"));
    let echo = |f: &dyn Fn(&Server) -> f64| f(&Server::start("echo"));
    let (mut base_send, mut lc_send, mut lc_send_batch) = (vec![], vec![], vec![]);
    let (mut base_recv, mut lc_recv) = (vec![], vec![]);
    let (mut framed_send, mut framed_recv) = (vec![], vec![]);
    let (mut b50, mut b99, mut l50, mut l99) = (vec![], vec![], vec![], vec![]);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ws_messages = env_count("WS_MESSAGES", 500_000);
    let mut ws = WsFigures::default();
    let mut v2 = V2Figures::default();
    for _ in 0..runs {
        // Protocol 2 (acknowledged, the server's store on disk) next to protocol 1, same server build.
        let durable_sink = |p: u32| lc_send_rate_v(&Server::start_with_store("sink", true).lc_url(), messages, p);
        let durable_echo = |p: u32| lc_receive_rate_v(&Server::start_with_store("echo", true).lc_url(), messages, p);
        let memory_sink = |p: u32| lc_send_rate_v(&Server::start_with_store("sink", false).lc_url(), messages, p);
        let memory_echo = |p: u32| lc_receive_rate_v(&Server::start_with_store("echo", false).lc_url(), messages, p);
        v2.v1_send.push(durable_sink(1));
        v2.v2_send.push(durable_sink(2));
        v2.v2_memory_send.push(memory_sink(2));
        v2.v1_recv.push(durable_echo(1));
        v2.v2_recv.push(durable_echo(2));
        v2.v2_memory_recv.push(memory_echo(2));
        let server = Server::start_with_store("echo", true);
        let mut v1 = lc_round_trips_v(&server.lc_url(), round_trips, 1);
        let mut two = lc_round_trips_v(&server.lc_url(), round_trips, 2);
        v2.v1_p50.push(us(percentile(&mut v1, 0.50)));
        v2.v2_p50.push(us(percentile(&mut two, 0.50)));
        base_send.push(sink(&|s| rt.block_on(tokio_send_rate(s, messages))));
        lc_send.push(sink(&|s| lc_send_rate(&s.url(), messages)));
        lc_send_batch.push(sink(&|s| lc_send_batch_rate(s, messages)));
        base_recv.push(echo(&|s| rt.block_on(tokio_receive_rate(s, messages))));
        lc_recv.push(echo(&|s| lc_receive_rate(&s.url(), messages)));
        framed_send.push(sink(&|s| rt.block_on(framed_send_rate(s, messages))));
        framed_recv.push(echo(&|s| rt.block_on(framed_receive_rate(s, messages))));
        let server = Server::start("echo");
        let mut base = rt.block_on(tokio_round_trips(&server, round_trips));
        let mut lc = lc_round_trips(&server.url(), round_trips);
        b50.push(us(percentile(&mut base, 0.50)));
        b99.push(us(percentile(&mut base, 0.99)));
        l50.push(us(percentile(&mut lc, 0.50)));
        l99.push(us(percentile(&mut lc, 0.99)));
        // WebSocket: the same against tokio-tungstenite.
        ws.base_send.push(sink(&|s| rt.block_on(ws_baseline::send_rate(s.ws_port, ws_messages))));
        ws.lc_send.push(sink(&|s| lc_send_rate(&s.ws_url(), ws_messages)));
        ws.base_recv.push(echo(&|s| rt.block_on(ws_baseline::receive_rate(s.ws_port, ws_messages))));
        ws.lc_recv.push(echo(&|s| lc_receive_rate(&s.ws_url(), ws_messages)));
        let mut base = rt.block_on(ws_baseline::round_trips(server.ws_port, round_trips));
        let mut lc = lc_round_trips(&server.ws_url(), round_trips);
        ws.b50.push(us(percentile(&mut base, 0.50)));
        ws.b99.push(us(percentile(&mut base, 0.99)));
        ws.l50.push(us(percentile(&mut lc, 0.50)));
        ws.l99.push(us(percentile(&mut lc, 0.99)));
    }
    println!();
    println!("Next to tokio-util's FramedWrite / FramedRead, one message per feed() / next():");
    println!("{:<28} {:>34} {:>34} {:>9}", "", "tokio-util Framed", "longconn", "ratio");
    row("send, messages/s", &framed_send, &lc_send);
    row("receive (echo), messages/s", &framed_recv, &lc_recv);
    println!();
    println!("Next to a hand-batched tokio client (encodes into a buffer, one write per 256 KiB):");
    println!("{:<28} {:>34} {:>34} {:>9}", "", "hand-batched tokio", "longconn", "ratio");
    row("send, messages/s", &base_send, &lc_send);
    row("send, batches of 64", &base_send, &lc_send_batch);
    row("receive (echo), messages/s", &base_recv, &lc_recv);
    println!("{:<28} {:>34} {:>34} {:>9}", "", "", "", "diff");
    row_us("round trip p50, us", &spread(b50), &spread(l50));
    row_us("round trip p99, us", &spread(b99), &spread(l99));
    println!();
    println!("Protocol 2 (acknowledged; the server stores every message in SQLite on disk before acknowledging)");
    println!("next to protocol 1 (best effort), longconn framing, same server; send counts until close returns,");
    println!("which under protocol 2 is when the server has stored and acknowledged every message:");
    println!("{:<28} {:>34} {:>34} {:>9}", "", "protocol 1", "protocol 2", "ratio");
    row("send (sink), messages/s", &v2.v1_send, &v2.v2_send);
    row("receive (echo), messages/s", &v2.v1_recv, &v2.v2_recv);
    println!("protocol 2 with the server's store in memory (the protocol's cost without the disk's):");
    row("send (sink), messages/s", &v2.v1_send, &v2.v2_memory_send);
    row("receive (echo), messages/s", &v2.v1_recv, &v2.v2_memory_recv);
    println!("{:<28} {:>34} {:>34} {:>9}", "", "", "", "diff");
    row_us("round trip p50, us", &spread(v2.v1_p50), &spread(v2.v2_p50));
    println!();
    println!("WebSocket: {ws_messages} x 64-byte binary messages, same server, next to tokio-tungstenite");
    println!("{:<28} {:>34} {:>34} {:>9}", "", "tokio-tungstenite", "longconn", "ratio");
    row("ws send, messages/s", &ws.base_send, &ws.lc_send);
    row("ws receive (echo), msgs/s", &ws.base_recv, &ws.lc_recv);
    println!("{:<28} {:>34} {:>34} {:>9}", "", "", "", "diff");
    row_us("ws round trip p50, us", &spread(ws.b50), &spread(ws.l50));
    row_us("ws round trip p99, us", &spread(ws.b99), &spread(ws.l99));
}

#[derive(Default)]
struct V2Figures {
    v1_send: Vec<f64>,
    v2_send: Vec<f64>,
    v2_memory_send: Vec<f64>,
    v2_memory_recv: Vec<f64>,
    v1_recv: Vec<f64>,
    v2_recv: Vec<f64>,
    v1_p50: Vec<f64>,
    v2_p50: Vec<f64>,
}

#[derive(Default)]
struct WsFigures {
    base_send: Vec<f64>,
    lc_send: Vec<f64>,
    base_recv: Vec<f64>,
    lc_recv: Vec<f64>,
    b50: Vec<f64>,
    b99: Vec<f64>,
    l50: Vec<f64>,
    l99: Vec<f64>,
}

/// The WebSocket baseline: a plain tokio-tungstenite client.
mod ws_baseline {
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::connect_async;
    use tokio_tungstenite::tungstenite::Message;

    use super::PAYLOAD;

    async fn connect(
        port: u16,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
        connect_async(format!("ws://127.0.0.1:{port}/")).await.expect("WebSocket connect").0
    }

    pub async fn send_rate(port: u16, n: u64) -> f64 {
        let mut ws = connect(port).await;
        let start = Instant::now();
        for _ in 0..n {
            ws.feed(Message::binary(Bytes::from_static(&PAYLOAD))).await.unwrap();
        }
        ws.flush().await.unwrap();
        let rate = n as f64 / start.elapsed().as_secs_f64();
        let _ = ws.close(None).await;
        rate
    }

    pub async fn receive_rate(port: u16, n: u64) -> f64 {
        let (mut sink, mut stream) = connect(port).await.split();
        let start = Instant::now();
        let writer = tokio::spawn(async move {
            for _ in 0..n {
                sink.feed(Message::binary(Bytes::from_static(&PAYLOAD))).await.unwrap();
            }
            sink.flush().await.unwrap();
            sink
        });
        let mut received = 0;
        while received < n {
            if let Some(Ok(Message::Binary(_))) = stream.next().await {
                received += 1;
            }
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        drop(writer.await.unwrap());
        rate
    }

    pub async fn round_trips(port: u16, n: u64) -> Vec<Duration> {
        let mut ws = connect(port).await;
        let mut samples = Vec::with_capacity(n as usize);
        for i in 0..n + 1000 {
            let start = Instant::now();
            ws.send(Message::binary(Bytes::from_static(&PAYLOAD))).await.unwrap();
            while !matches!(ws.next().await, Some(Ok(Message::Binary(_)))) {}
            if i >= 1000 {
                samples.push(start.elapsed());
            }
        }
        samples
    }
}
