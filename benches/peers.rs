//! longconn next to the clients a C or Rust programmer would otherwise use,
//! in one run, against the same `longconn-server` processes:
//!
//! - a raw tokio client (current-thread runtime, one task, length-prefixed
//!   frames written and read by hand) over TCP;
//! - a raw tokio-tungstenite client over WebSocket;
//! - the libwebsockets C client (`benches/peers/lws_rtt.c`, built here with
//!   `cc` and Debian's `libwebsockets-dev`), WebSocket round trips.
//!
//! longconn runs through its C ABI the way an application uses it: a round
//! trip is `lc_client_send` then `lc_client_poll` (poll), or the message
//! callback sending the next message (callback); nobody spins. Context
//! switches are the whole process's (`getrusage`) over the round trips,
//! divided by their number (longconn's include its I/O and callback threads).
//!
//!   cargo bench --bench peers                 (about 3 min)
//!   ROUNDS=5 ROUND_TRIPS=5000 ECHO=300000 SENDS=2000000 cargo bench --bench peers
//!   PART=tcp-rtt|ws-rtt|tcp-echo|ws-echo|send-wait cargo bench --bench peers
//!   PART=tcp-echo API=poll|callback|io-callback|poll-io cargo bench --bench peers
//!   PART=ws-echo PROTOCOL=1 cargo bench --bench peers   (longconn at protocol 1, like the peer)
//!   IO_THREADS=1 ... (longconn with one I/O thread)
//!
//! `API`, `PROTOCOL` and `IO_THREADS` are for profiling and A/B runs; the
//! figures recorded in docs/BENCHMARKS.md use none of them.
//! Each round measures every client once, in turn, each against a fresh
//! server; the ratio is the median of the per-round ratios. Prints figures;
//! asserts nothing but that every message came back.

use std::ffi::c_void;
use std::path::PathBuf;
use std::process::Command;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[path = "support/process.rs"]
mod process;
use process::{context_switches, env_count};
#[path = "support/server.rs"]
mod server;
#[path = "../tests/common/server_binary.rs"]
mod server_binary;
use server::Server;

use longconn::client::*;
use longconn::config::*;
use longconn::event::*;
use longconn::status::*;

const PAYLOAD: [u8; 64] = [b'x'; 64];
/// Echo: messages in flight at once.
const IN_FLIGHT: u64 = 1000;
/// Round trips before the timed ones.
const WARMUP: u64 = 1000;
/// Every wait in this file gives up after this long.
const PATIENCE: Duration = Duration::from_secs(60);

/// Round-trip figures of one run.
#[derive(Clone, Copy)]
struct Rtt {
    p50_us: f64,
    p99_us: f64,
    switches: f64,
}

impl Rtt {
    fn from_samples(mut samples: Vec<Duration>, switches: u64) -> Rtt {
        samples.sort_unstable();
        let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
        Rtt { p50_us: at(0.5), p99_us: at(0.99), switches: switches as f64 / samples.len() as f64 }
    }
}

/// The timed part of a round-trip run: a sample per round trip after
/// [`WARMUP`], and the context switches over those.
struct Timing {
    samples: Vec<Duration>,
    switches_at_warmup: u64,
}

impl Timing {
    fn new(n: u64) -> Timing {
        Timing { samples: Vec::with_capacity(n as usize), switches_at_warmup: 0 }
    }

    /// At the start of round trip `i`: its start time.
    fn begin(&mut self, i: u64) -> Instant {
        if i == WARMUP {
            self.switches_at_warmup = context_switches();
        }
        Instant::now()
    }

    /// Round trip `i`, begun at `start`, is done.
    fn end(&mut self, i: u64, start: Instant) {
        if i >= WARMUP {
            self.samples.push(start.elapsed());
        }
    }

    fn finish(self) -> Rtt {
        Rtt::from_samples(self.samples, context_switches() - self.switches_at_warmup)
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

// ---- raw tokio over TCP (length-prefixed frames) ----

mod raw_tcp {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn frame() -> Vec<u8> {
        let mut f = (PAYLOAD.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&PAYLOAD);
        f
    }

    async fn connect(port: u16) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    pub fn round_trips(port: u16, n: u64) -> Rtt {
        current_thread().block_on(async {
            let mut stream = connect(port).await;
            let frame = frame();
            let mut reply = vec![0u8; frame.len()];
            let mut timing = Timing::new(n);
            for i in 0..WARMUP + n {
                let start = timing.begin(i);
                stream.write_all(&frame).await.unwrap();
                stream.read_exact(&mut reply).await.unwrap();
                timing.end(i, start);
            }
            timing.finish()
        })
    }

    /// Messages per second through the echo server, [`IN_FLIGHT`] at a time:
    /// each read's echoes are counted and answered with as many new messages,
    /// written together.
    pub fn echo(port: u16, n: u64) -> f64 {
        current_thread().block_on(async {
            let mut stream = connect(port).await;
            let frame = frame();
            let start = Instant::now();
            let mut out = Vec::with_capacity(frame.len() * IN_FLIGHT as usize);
            for _ in 0..IN_FLIGHT.min(n) {
                out.extend_from_slice(&frame);
            }
            let mut sent = IN_FLIGHT.min(n);
            stream.write_all(&out).await.unwrap();
            let (mut buf, mut filled, mut received) = (vec![0u8; 256 * 1024], 0, 0);
            while received < n {
                let read = stream.read(&mut buf[filled..]).await.unwrap();
                assert!(read > 0, "the echo server closed");
                filled += read;
                let mut at = 0;
                out.clear();
                while filled - at >= 4 {
                    let len = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                    if filled - at < 4 + len {
                        break;
                    }
                    at += 4 + len;
                    received += 1;
                    if sent < n {
                        out.extend_from_slice(&frame);
                        sent += 1;
                    }
                }
                buf.copy_within(at..filled, 0);
                filled -= at;
                if !out.is_empty() {
                    stream.write_all(&out).await.unwrap();
                }
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
    }
}

// ---- raw tokio-tungstenite over WebSocket ----

mod raw_ws {
    use super::*;
    use bytes::Bytes;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

    async fn connect(port: u16) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/")).await.unwrap();
        ws
    }

    async fn next_binary(ws: &mut Ws) {
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(_))) => return,
                Some(Ok(_)) => {}
                other => panic!("the echo server ended: {other:?}"),
            }
        }
    }

    pub fn round_trips(port: u16, n: u64) -> Rtt {
        current_thread().block_on(async {
            let mut ws = connect(port).await;
            let mut timing = Timing::new(n);
            for i in 0..WARMUP + n {
                let start = timing.begin(i);
                ws.send(Message::binary(Bytes::from_static(&PAYLOAD))).await.unwrap();
                next_binary(&mut ws).await;
                timing.end(i, start);
            }
            timing.finish()
        })
    }

    /// Like [`raw_tcp::echo`]: each echo is answered with a new message,
    /// flushed every 32 messages (and at the end), [`IN_FLIGHT`] in flight.
    pub fn echo(port: u16, n: u64) -> f64 {
        current_thread().block_on(async {
            let mut ws = connect(port).await;
            let start = Instant::now();
            let mut sent = 0;
            while sent < IN_FLIGHT.min(n) {
                ws.feed(Message::binary(Bytes::from_static(&PAYLOAD))).await.unwrap();
                sent += 1;
            }
            ws.flush().await.unwrap();
            let mut received = 0;
            while received < n {
                next_binary(&mut ws).await;
                received += 1;
                if sent < n {
                    ws.feed(Message::binary(Bytes::from_static(&PAYLOAD))).await.unwrap();
                    sent += 1;
                    if sent % 32 == 0 || sent == n {
                        ws.flush().await.unwrap();
                    }
                }
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
    }
}

// ---- libwebsockets, a C program in a child process ----

/// Builds `benches/peers/lws_rtt.c` once; `None` (with the reason printed)
/// if libwebsockets is not installed.
fn build_lws() -> Option<PathBuf> {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lws_rtt");
    let flags = Command::new("pkg-config").args(["--cflags", "--libs", "libwebsockets"]).output().ok()?;
    if !flags.status.success() {
        println!("libwebsockets rows skipped: no libwebsockets-dev (apt-get install libwebsockets-dev)");
        return None;
    }
    let flags = String::from_utf8(flags.stdout).unwrap();
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-O2", "-Wall", "-Wextra", "-Werror", concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/lws_rtt.c")])
        .args(flags.split_whitespace())
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run cc");
    assert!(status.success(), "building lws_rtt.c failed");
    Some(out)
}

fn lws_round_trips(program: &PathBuf, port: u16, n: u64) -> Rtt {
    let output = Command::new(program).args([port.to_string(), n.to_string(), WARMUP.to_string()]).output().unwrap();
    assert!(output.status.success(), "lws_rtt failed: {}", String::from_utf8_lossy(&output.stderr));
    let line = String::from_utf8(output.stdout).unwrap();
    let fields: Vec<f64> = line.split_whitespace().map(|f| f.parse().unwrap()).collect();
    Rtt { p50_us: fields[0] / 1e3, p99_us: fields[1] / 1e3, switches: fields[2] }
}

// ---- longconn through the C ABI ----

struct Lc(*mut lc_client);

/// How the application takes its messages.
#[derive(Clone, Copy, PartialEq)]
enum Api {
    Poll,
    Callback,
    /// The message callback, run on the I/O thread (`lc_config_set_callbacks_on_io_thread`).
    IoCallback,
    /// `lc_client_poll` on a client that does its I/O in poll (`lc_config_set_io_in_poll`).
    PollIo,
}

/// Every API, with its name in the tables.
const APIS: [(Api, &str); 4] = [
    (Api::Poll, "lc_client_poll"),
    (Api::Callback, "message callback"),
    (Api::IoCallback, "message callback on the I/O thread"),
    (Api::PollIo, "lc_client_poll, I/O in poll"),
];

impl Api {
    /// `API=poll|callback|io-callback|poll-io` runs only that API's echo (to profile it).
    fn wanted(self) -> bool {
        let name = match self {
            Api::Poll => "poll",
            Api::PollIo => "poll-io",
            Api::Callback => "callback",
            Api::IoCallback => "io-callback",
        };
        std::env::var("API").map_or(true, |only| only == name)
    }
}

impl Lc {
    fn new(url: &str, callback: lc_message_cb, user_data: *mut c_void) -> Lc {
        Lc::with_api(url, callback, user_data, Api::Callback)
    }

    fn with_api(url: &str, callback: lc_message_cb, user_data: *mut c_void, api: Api) -> Lc {
        let url = format!("{url}\0");
        let mut config = ptr::null_mut();
        let mut client = ptr::null_mut();
        // SAFETY: valid NUL-terminated URL and out-pointers; the handles are
        // used as the header documents and freed in Drop.
        unsafe {
            assert_eq!(lc_config_new(url.as_ptr().cast(), &mut config), LC_STATUS_OK);
            assert_eq!(lc_config_set_outbox_limits(config, 1 << 22, 1 << 30), LC_STATUS_OK);
            assert_eq!(lc_config_set_callbacks_on_io_thread(config, api == Api::IoCallback), LC_STATUS_OK);
            assert_eq!(lc_config_set_io_in_poll(config, api == Api::PollIo), LC_STATUS_OK);
            if let Some(version) = std::env::var("PROTOCOL").ok().and_then(|v| v.parse().ok()) {
                assert_eq!(lc_config_set_protocol_version(config, version), LC_STATUS_OK);
            }
            assert_eq!(lc_client_new(config, &mut client), LC_STATUS_OK);
            lc_config_free(config);
            if callback.is_some() {
                assert_eq!(lc_client_set_message_callback(client, callback, user_data), LC_STATUS_OK);
            }
            assert_eq!(lc_client_connect(client), LC_STATUS_OK);
        }
        Lc(client)
    }

    fn send(&self) {
        // SAFETY: live client, valid buffer.
        let status = unsafe { lc_client_send(self.0, PAYLOAD.as_ptr(), PAYLOAD.len()) };
        assert_eq!(status, LC_STATUS_OK);
    }

    /// Polls until a message arrives (other events are skipped).
    fn poll_message(&self) {
        let mut deadline = None;
        loop {
            let mut event = std::mem::MaybeUninit::<lc_event>::uninit();
            // SAFETY: live client, valid out-pointer.
            let status = unsafe { lc_client_poll(self.0, 1000, event.as_mut_ptr()) };
            assert!(status == LC_STATUS_OK || status == LC_STATUS_TIMEOUT, "poll failed: {status:?}");
            // SAFETY: lc_client_poll filled the event when it returned LC_STATUS_OK.
            if status == LC_STATUS_OK && unsafe { event.assume_init_ref() }.kind == lc_event_kind::LC_EVENT_MESSAGE {
                return;
            }
            // The clock only after a poll that found no message: a read per
            // message would be the benchmark's cost counted as longconn's.
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + PATIENCE);
            assert!(Instant::now() < deadline, "no message came back");
        }
    }

    fn close(&self) {
        // SAFETY: live client.
        assert_eq!(unsafe { lc_client_close(self.0, 10_000, ptr::null_mut()) }, LC_STATUS_OK);
    }
}

impl Drop for Lc {
    fn drop(&mut self) {
        // SAFETY: created by lc_client_new, freed once.
        unsafe { lc_client_free(self.0) }
    }
}

/// What the message callback of a round-trip or echo run shares with the
/// thread that waits for the end of the run.
struct Run {
    client: AtomicU64,
    /// Echo: messages sent and received; round trips: round trips done.
    sent: AtomicU64,
    received: AtomicU64,
    total: u64,
    /// Round trips: when the message in flight was sent, in ns since `base`.
    sent_at: AtomicU64,
    base: Instant,
    samples: Mutex<Vec<Duration>>,
    switches_at_warmup: AtomicU64,
    round_trips: bool,
    done: Mutex<bool>,
    wake: Condvar,
    failed: AtomicBool,
}

impl Run {
    fn new(total: u64, round_trips: bool) -> Box<Run> {
        Box::new(Run {
            client: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            total,
            sent_at: AtomicU64::new(0),
            base: Instant::now(),
            samples: Mutex::new(Vec::with_capacity(total as usize)),
            switches_at_warmup: AtomicU64::new(0),
            round_trips,
            done: Mutex::new(false),
            wake: Condvar::new(),
            failed: AtomicBool::new(false),
        })
    }

    fn user_data(&self) -> *mut c_void {
        self as *const Run as *mut c_void
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn send(&self) {
        let client = self.client.load(Ordering::Acquire) as *const lc_client;
        // SAFETY: the client outlives the run; lc_client_send may be called from callbacks.
        if unsafe { lc_client_send(client, PAYLOAD.as_ptr(), PAYLOAD.len()) } != LC_STATUS_OK {
            self.failed.store(true, Ordering::Relaxed);
        }
    }

    fn finish(&self) {
        *self.done.lock().unwrap() = true;
        self.wake.notify_all();
    }

    fn wait(&self) {
        let done = self.done.lock().unwrap();
        let (_done, timeout) = self.wake.wait_timeout_while(done, PATIENCE, |d| !*d).unwrap();
        assert!(!timeout.timed_out(), "the run did not finish: {} received", self.received.load(Ordering::Relaxed));
        assert!(!self.failed.load(Ordering::Relaxed), "a send from the callback failed");
    }
}

unsafe extern "C" fn on_message(user_data: *mut c_void, _data: *const u8, _len: usize, _text: bool) {
    // SAFETY: user_data is the Run passed at registration, alive until the client is freed.
    let run = unsafe { &*(user_data as *const Run) };
    let received = run.received.fetch_add(1, Ordering::Relaxed) + 1;
    if run.round_trips {
        let now = run.now_ns();
        if received > WARMUP {
            let took = now - run.sent_at.load(Ordering::Relaxed);
            run.samples.lock().unwrap().push(Duration::from_nanos(took));
        } else if received == WARMUP {
            run.switches_at_warmup.store(context_switches(), Ordering::Relaxed);
        }
        if received == run.total {
            return run.finish();
        }
        run.sent_at.store(run.now_ns(), Ordering::Relaxed);
        run.send();
    } else {
        if run.sent.load(Ordering::Relaxed) < run.total {
            run.sent.fetch_add(1, Ordering::Relaxed);
            run.send();
        }
        if received == run.total {
            run.finish();
        }
    }
}

fn lc_round_trips(url: &str, n: u64, api: Api) -> Rtt {
    match api {
        Api::Poll | Api::PollIo => {
            let lc = Lc::with_api(url, None, ptr::null_mut(), api);
            let mut timing = Timing::new(n);
            for i in 0..WARMUP + n {
                let start = timing.begin(i);
                lc.send();
                lc.poll_message();
                timing.end(i, start);
            }
            let rtt = timing.finish();
            lc.close();
            rtt
        }
        Api::Callback | Api::IoCallback => {
            let run = Run::new(WARMUP + n, true);
            let lc = Lc::with_api(url, Some(on_message), run.user_data(), api);
            run.client.store(lc.0 as u64, Ordering::Release);
            run.sent_at.store(run.now_ns(), Ordering::Relaxed);
            run.send();
            run.wait();
            let switches = context_switches() - run.switches_at_warmup.load(Ordering::Relaxed);
            let samples = std::mem::take(&mut *run.samples.lock().unwrap());
            lc.close();
            drop(lc);
            Rtt::from_samples(samples, switches)
        }
    }
}

fn lc_echo(url: &str, n: u64, api: Api) -> f64 {
    match api {
        Api::Poll | Api::PollIo => {
            let lc = Lc::with_api(url, None, ptr::null_mut(), api);
            let start = Instant::now();
            let mut sent = IN_FLIGHT.min(n);
            for _ in 0..sent {
                lc.send();
            }
            for _ in 0..n {
                lc.poll_message();
                if sent < n {
                    lc.send();
                    sent += 1;
                }
            }
            let rate = n as f64 / start.elapsed().as_secs_f64();
            lc.close();
            rate
        }
        Api::Callback | Api::IoCallback => {
            let run = Run::new(n, false);
            let lc = Lc::with_api(url, Some(on_message), run.user_data(), api);
            run.client.store(lc.0 as u64, Ordering::Release);
            let start = Instant::now();
            let first = IN_FLIGHT.min(n);
            run.sent.store(first, Ordering::Relaxed);
            for _ in 0..first {
                run.send();
            }
            run.wait();
            let rate = n as f64 / start.elapsed().as_secs_f64();
            lc.close();
            drop(lc);
            rate
        }
    }
}

/// Messages per second handed to `lc_client_send` (or, with `wait`,
/// `lc_client_send_wait` with a 1 s timeout), until all are written.
fn lc_send_rate(url: &str, n: u64, wait: bool) -> f64 {
    let lc = Lc::new(url, None, ptr::null_mut());
    let start = Instant::now();
    for _ in 0..n {
        let status = if wait {
            // SAFETY: live client, valid buffer.
            unsafe { lc_client_send_wait(lc.0, PAYLOAD.as_ptr(), PAYLOAD.len(), false, 1000) }
        } else {
            // SAFETY: as above.
            unsafe { lc_client_send(lc.0, PAYLOAD.as_ptr(), PAYLOAD.len()) }
        };
        assert_eq!(status, LC_STATUS_OK);
    }
    lc.close();
    n as f64 / start.elapsed().as_secs_f64()
}

// ---- report ----

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One line: the peer's median, longconn's median, the median of the
/// per-round ratios (longconn / peer), and the target.
fn line(label: &str, peer: &[f64], lc: &[f64], unit: &str, target: &str) {
    let ratio = median(peer.iter().zip(lc).map(|(p, l)| l / p).collect());
    println!(
        "{label:<64} {:>12.1} {:>12.1} {unit:<6} {ratio:>7.2}x   {target}",
        median(peer.to_vec()),
        median(lc.to_vec())
    );
}

fn rtt_lines(label: &str, peer: &[Rtt], lc: &[Rtt], p50_target: &str) {
    let pick = |runs: &[Rtt], f: fn(&Rtt) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    line(&format!("{label}, p50"), &pick(peer, |r| r.p50_us), &pick(lc, |r| r.p50_us), "us", p50_target);
    line(&format!("{label}, p99"), &pick(peer, |r| r.p99_us), &pick(lc, |r| r.p99_us), "us", "<= 1.50x");
    println!(
        "{:<64} {:>12.2} {:>12.2} {:<6}            longconn <= 2",
        format!("{label}, context switches per round trip"),
        median(pick(peer, |r| r.switches)),
        median(pick(lc, |r| r.switches)),
        "/rt"
    );
}

/// One echo table: per round, a fresh echo server, the peer, then longconn
/// through each API; `lc` gives longconn's URL and message count.
fn echo_table(
    title: &str,
    prefix: &str,
    rounds: usize,
    peer: impl Fn(&Server) -> f64,
    lc: impl Fn(&Server) -> (String, u64),
) {
    let apis = APIS;
    // Each run's rate, this process's context switches per 1,000 messages,
    // and CPU time per message (this process's, and the server's).
    let counted = |s: &Server, n: u64, run: &dyn Fn() -> f64| {
        let (switches, cpu, server_cpu) = (context_switches(), cpu_time(), s.cpu_time());
        let rate = run();
        let per_message = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        EchoRun {
            rate,
            switches: (context_switches() - switches) as f64 * 1000.0 / n as f64,
            cpu_us: per_message(cpu_time() - cpu),
            server_cpu_us: per_message(s.cpu_time() - server_cpu),
        }
    };
    let (mut peer_runs, mut lc_runs) = (vec![], [vec![], vec![], vec![], vec![]]);
    for _ in 0..rounds {
        let s = Server::start("echo");
        let (url, n) = lc(&s);
        peer_runs.push(counted(&s, n, &|| peer(&s)));
        for (runs, (api, _)) in lc_runs.iter_mut().zip(apis) {
            if api.wanted() {
                runs.push(counted(&s, n, &|| lc_echo(&url, n, api)));
            }
        }
    }
    header(title);
    let pick = |runs: &[EchoRun], f: fn(&EchoRun) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    for (runs, (api, name)) in lc_runs.iter().zip(apis) {
        if !api.wanted() {
            continue;
        }
        line(&format!("{prefix}{name}"), &pick(&peer_runs, |r| r.rate), &pick(runs, |r| r.rate), "msg/s", ">= 0.90x");
        let figures: [(&str, EchoFigure, &str); 3] = [
            ("context switches per 1,000 messages", |r| r.switches, "/1000"),
            ("client CPU per message", |r| r.cpu_us, "us"),
            ("server CPU per message", |r| r.server_cpu_us, "us"),
        ];
        for (what, f, unit) in figures {
            println!(
                "{:<64} {:>12.2} {:>12.2} {unit:<6}",
                format!("  {what}"),
                median(pick(&peer_runs, f)),
                median(pick(runs, f)),
            );
        }
    }
}

/// Reads one figure of an [`EchoRun`].
type EchoFigure = fn(&EchoRun) -> f64;

/// One echo run's figures.
struct EchoRun {
    rate: f64,
    switches: f64,
    cpu_us: f64,
    server_cpu_us: f64,
}

/// CPU time this process has used so far (user + system, all threads).
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage struct.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

fn header(title: &str) {
    println!("\n{title}");
    println!("{:<64} {:>12} {:>12} {:<6} {:>8}   target", "", "peer", "longconn", "", "ratio");
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("peers benchmark: skipped (run it with `cargo bench --bench peers`)");
        return;
    }
    let rounds = env_count("ROUNDS", 3) as usize;
    let round_trips = env_count("ROUND_TRIPS", 5000);
    let echo_n = env_count("ECHO", 200_000);
    let sends = env_count("SENDS", 2_000_000);
    if let Some(workers) = std::env::var("IO_THREADS").ok().and_then(|v| v.parse().ok()) {
        // Before the first client: the I/O thread count (profiling aid).
        assert_eq!(longconn::runtime::lc_runtime_configure(workers, 1), LC_STATUS_OK);
    }
    let part = std::env::var("PART").ok();
    let wants = |name: &str| part.as_deref().map_or(true, |p| p == name);
    println!(
        "longconn against peers: {rounds} rounds, {round_trips} round trips after {WARMUP} warm-up, \
         echo of {echo_n} with {IN_FLIGHT} in flight, {sends} sends; 64-byte messages, 127.0.0.1"
    );

    let echo_server = || Server::start("echo");
    if wants("tcp-rtt") {
        let apis = APIS.map(|(api, _)| api);
        let (mut raw, mut length, mut v2) = (vec![], [(); 4].map(|_| vec![]), [(); 4].map(|_| vec![]));
        for _ in 0..rounds {
            let s = echo_server();
            raw.push(raw_tcp::round_trips(s.port, round_trips));
            for (i, api) in apis.into_iter().enumerate() {
                let url = format!("tcp://127.0.0.1:{}?framing=length", s.port);
                length[i].push(lc_round_trips(&url, round_trips, api));
                v2[i].push(lc_round_trips(&format!("tcp://127.0.0.1:{}", s.lc_port), round_trips, api));
            }
        }
        header("TCP round trip, one in flight (peer: raw tokio client, length framing)");
        for (framing, runs) in [("length framing", &length), ("protocol 2", &v2)] {
            for ((_, name), runs) in APIS.iter().zip(runs.iter()) {
                rtt_lines(&format!("{framing}, {name}"), &raw, runs, "<= 1.15x");
            }
        }
    }
    if wants("ws-rtt") {
        let lws = build_lws();
        let (mut lws_runs, mut raw, mut lc) = (vec![], vec![], [(); 4].map(|_| vec![]));
        for _ in 0..rounds {
            let s = echo_server();
            if let Some(program) = &lws {
                lws_runs.push(lws_round_trips(program, s.ws_port, round_trips));
            }
            raw.push(raw_ws::round_trips(s.ws_port, round_trips));
            let url = format!("ws://127.0.0.1:{}/", s.ws_port);
            for (i, (api, _)) in APIS.into_iter().enumerate() {
                lc[i].push(lc_round_trips(&url, round_trips, api));
            }
        }
        let peers: Vec<(&str, &[Rtt], &str)> = if lws.is_some() {
            vec![("libwebsockets C client", &lws_runs, "<= 1.00x"), ("raw tokio-tungstenite", &raw, "")]
        } else {
            vec![("raw tokio-tungstenite", &raw, "")]
        };
        for (peer, peer_runs, target) in peers {
            header(&format!("WebSocket round trip, one in flight (peer: {peer})"));
            for ((_, name), runs) in APIS.iter().zip(lc.iter()) {
                rtt_lines(&format!("protocol 2 (longconn.v2), {name}"), peer_runs, runs, target);
            }
        }
    }
    if wants("tcp-echo") {
        echo_table(
            "TCP echo, 1,000 in flight, messages/s (peer: raw tokio client, length framing)",
            "",
            rounds,
            |s| raw_tcp::echo(s.port, echo_n),
            |s| (format!("tcp://127.0.0.1:{}?framing=length", s.port), echo_n),
        );
    }
    if wants("ws-echo") {
        echo_table(
            "WebSocket echo, 1,000 in flight, messages/s (peer: raw tokio-tungstenite)",
            if std::env::var("PROTOCOL").as_deref() == Ok("1") { "protocol 1, " } else { "protocol 2 (longconn.v2), " },
            rounds,
            |s| raw_ws::echo(s.ws_port, echo_n),
            |s| (format!("ws://127.0.0.1:{}/", s.ws_port), echo_n),
        );
    }
    if wants("send-wait") {
        let (mut send, mut send_wait) = (vec![], vec![]);
        for _ in 0..rounds {
            let s = Server::start("sink");
            let url = format!("tcp://127.0.0.1:{}?framing=length", s.port);
            send.push(lc_send_rate(&url, sends, false));
            send_wait.push(lc_send_rate(&url, sends, true));
        }
        header("lc_client_send_wait with room, messages/s (peer: lc_client_send)");
        line("2,000,000 x 64 B to the sink", &send, &send_wait, "msg/s", ">= 0.95x");
    }
}
