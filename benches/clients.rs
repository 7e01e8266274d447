//! Many connections in one process: what each one costs in memory and file
//! descriptors, how many threads the process runs, and how long connecting
//! all of them and one echo round over all of them take, for longconn
//! clients (through the C ABI) next to plain tokio connections (tokio-util's
//! `Framed`, one task each) against the same `longconn-server`. Prints
//! figures and ratios; asserts nothing.
//!
//!   cargo bench --bench clients      (CLIENTS= sets the count, default 10,000; RUNS= the repetitions)
//!   TRANSPORT=ws cargo bench --bench clients   (WebSocket: longconn's ws:// next to tokio-tungstenite)
//!   IO_THREADS=N cargo bench --bench clients   (longconn with N I/O threads instead of 2)
//!
//! After the echo, every connection stays idle for `IDLE_SECONDS` (default
//! 10). Over WebSocket both sides ping every second in that window
//! (longconn's heartbeat at a 1 s interval; on the tokio side a ping a
//! second from each task), and the CPU time the process uses in it is
//! reported per connection and second. (Length framing has no ping.)
//!
//! Each side runs in a fresh process (this program started again), so memory
//! one side freed cannot hide what the other uses. Memory is the growth of
//! the resident set (VmRSS) from before the first connection to when every
//! connection is up and has echoed one message.

use std::ffi::c_void;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
#[path = "support/process.rs"]
mod process;
use process::env_count;
#[path = "../tests/common/server_binary.rs"]
mod server_binary;

use longconn::client::*;
use longconn::config::*;
use longconn::event::*;
use longconn::status::*;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const PAYLOAD: [u8; 64] = [b'x'; 64];
const WITHIN: Duration = Duration::from_secs(120);

/// Resident memory of this process in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

fn threads() -> u64 {
    std::fs::read_dir("/proc/self/task").unwrap().count() as u64
}

/// Raises the soft descriptor limit to the hard one; returns it.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid struct pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur
}

/// Waits (polling a counter, with a deadline) until it reaches `target`.
fn wait_for(counter: &AtomicU64, target: u64, what: &str) {
    let deadline = Instant::now() + WITHIN;
    while counter.load(Ordering::Acquire) < target {
        assert!(Instant::now() < deadline, "{what}: {} of {target}", counter.load(Ordering::Acquire));
        std::thread::sleep(Duration::from_millis(1)); // polling interval
    }
}

/// CPU time (user and system) this process has used, in microseconds.
fn cpu_us() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage struct.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

fn idle_window() -> Duration {
    Duration::from_secs(env_count("IDLE_SECONDS", 10))
}

/// Whether the connections are WebSocket ones (`TRANSPORT=ws`).
fn websocket() -> bool {
    std::env::var("TRANSPORT").is_ok_and(|t| t == "ws")
}

/// What one side measured.
struct Figures {
    rss_kib: u64,
    fds: u64,
    threads: u64,
    connect: Duration,
    round: Duration,
    /// CPU time used over the idle window with heartbeats.
    idle_cpu: Duration,
}

impl Figures {
    fn print(&self) {
        println!(
            "figures {} {} {} {} {} {}",
            self.rss_kib,
            self.fds,
            self.threads,
            self.connect.as_micros(),
            self.round.as_micros(),
            self.idle_cpu.as_micros()
        );
    }

    fn parse(line: &str) -> Figures {
        let v: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
        Figures {
            rss_kib: v[0],
            fds: v[1],
            threads: v[2],
            connect: Duration::from_micros(v[3]),
            round: Duration::from_micros(v[4]),
            idle_cpu: Duration::from_micros(v[5]),
        }
    }
}

// ---- longconn through the C ABI ----

#[derive(Default)]
struct Counts {
    connected: AtomicU64,
    messages: AtomicU64,
}

unsafe extern "C" fn on_event(user_data: *mut c_void, event: *const lc_event) {
    // SAFETY: user_data is the Counts registered with the callback, alive
    // until every client is freed; the event is valid for the call.
    let (counts, event) = unsafe { (&*(user_data as *const Counts), &*event) };
    match event.kind {
        lc_event_kind::LC_EVENT_CONNECTED => counts.connected.fetch_add(1, Ordering::Release),
        lc_event_kind::LC_EVENT_MESSAGE => counts.messages.fetch_add(1, Ordering::Release),
        _ => 0,
    };
}

fn longconn_side(port: u16, n: u64) -> Figures {
    if let Some(threads) = std::env::var("IO_THREADS").ok().and_then(|v| v.parse().ok()) {
        // Before the first client: the I/O thread count (profiling aid).
        assert_eq!(longconn::runtime::lc_runtime_configure(threads, 1), LC_STATUS_OK);
    }
    let (rss0, fds0, threads0) = (rss_kib(), open_fds(), threads());
    let counts = Box::new(Counts::default());
    let user_data = &*counts as *const Counts as *mut c_void;
    let url = if websocket() {
        format!("ws://127.0.0.1:{port}/\0")
    } else {
        format!("tcp://127.0.0.1:{port}?framing=length\0")
    };
    let mut config = ptr::null_mut();
    // SAFETY: NUL-terminated URL, valid out-pointer; freed below.
    unsafe {
        assert_eq!(lc_config_new(url.as_ptr().cast(), &mut config), LC_STATUS_OK);
        assert_eq!(lc_config_set_heartbeat(config, 1000, 30_000), LC_STATUS_OK);
    }
    let start = Instant::now();
    let clients: Vec<*mut lc_client> = (0..n)
        .map(|_| {
            let mut client = ptr::null_mut();
            // SAFETY: live config, valid out-pointer; `counts` outlives the clients.
            unsafe {
                assert_eq!(lc_client_new(config, &mut client), LC_STATUS_OK);
                assert_eq!(lc_client_set_event_callback(client, Some(on_event), user_data), LC_STATUS_OK);
                assert_eq!(lc_client_connect(client), LC_STATUS_OK);
            }
            client
        })
        .collect();
    wait_for(&counts.connected, n, "connected");
    let connect = start.elapsed();
    let start = Instant::now();
    for &client in &clients {
        // SAFETY: live client, valid buffer.
        assert_eq!(unsafe { lc_client_send(client, PAYLOAD.as_ptr(), PAYLOAD.len()) }, LC_STATUS_OK);
    }
    wait_for(&counts.messages, n, "echoes");
    let round = start.elapsed();
    let (rss, fds, threads) = (rss_kib() - rss0, open_fds() - fds0, threads() - threads0);
    let cpu0 = cpu_us();
    std::thread::sleep(idle_window()); // the window itself is the measurement
    let idle_cpu = Duration::from_micros(cpu_us() - cpu0);
    let figures = Figures { rss_kib: rss, fds, threads, connect, round, idle_cpu };
    for client in clients {
        // SAFETY: created above, freed once.
        unsafe { lc_client_free(client) };
    }
    // SAFETY: created above, freed once.
    unsafe { lc_config_free(config) };
    figures
}

// ---- plain tokio: one task per connection, tokio-util Framed ----

fn tokio_side(port: u16, n: u64) -> Figures {
    let (rss0, fds0, threads0) = (rss_kib(), open_fds(), threads());
    // The same number of I/O threads as longconn's default runtime.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let connected = std::sync::Arc::new(AtomicU64::new(0));
    let echoed = std::sync::Arc::new(AtomicU64::new(0));
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    // One go signal per connection, given one after the other like the
    // longconn side's sends, not all at once.
    let go: Vec<_> = (0..n).map(|_| std::sync::Arc::new(tokio::sync::Notify::new())).collect();
    let start = Instant::now();
    let tasks: Vec<_> = go
        .iter()
        .map(|go| {
            let (connected, echoed, go, stop) = (connected.clone(), echoed.clone(), go.clone(), stop.clone());
            rt.spawn(async move {
                let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                stream.set_nodelay(true).unwrap();
                if websocket() {
                    ws_connection(stream, port, &connected, &echoed, &go, &stop).await;
                    return;
                }
                let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
                connected.fetch_add(1, Ordering::Release);
                go.notified().await;
                framed.send(Bytes::from_static(&PAYLOAD)).await.unwrap();
                framed.next().await.unwrap().unwrap();
                echoed.fetch_add(1, Ordering::Release);
                // Stay connected, reading, until told to stop.
                tokio::select! {
                    _ = framed.next() => {}
                    _ = stop.notified() => {}
                }
            })
        })
        .collect();
    wait_for(&connected, n, "connected");
    let connect = start.elapsed();
    let start = Instant::now();
    for go in &go {
        go.notify_one(); // stored if the task is not waiting yet
    }
    wait_for(&echoed, n, "echoes");
    let round = start.elapsed();
    let (rss, fds, threads) = (rss_kib() - rss0, open_fds() - fds0, threads() - threads0);
    let cpu0 = cpu_us();
    std::thread::sleep(idle_window()); // the window itself is the measurement
    let idle_cpu = Duration::from_micros(cpu_us() - cpu0);
    let figures = Figures { rss_kib: rss, fds, threads, connect, round, idle_cpu };
    // A task busy sending its ping misses the notification: abort those.
    stop.notify_waiters();
    for task in tasks {
        task.abort();
        let _ = rt.block_on(task);
    }
    figures
}

/// The WebSocket side of one tokio connection: tokio-tungstenite with its
/// defaults, one echo, then a WebSocket ping a second until told to stop.
async fn ws_connection(
    stream: TcpStream,
    port: u16,
    connected: &AtomicU64,
    echoed: &AtomicU64,
    go: &tokio::sync::Notify,
    stop: &tokio::sync::Notify,
) {
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/"), stream).await.unwrap();
    connected.fetch_add(1, Ordering::Release);
    go.notified().await;
    ws.send(Message::binary(Bytes::from_static(&PAYLOAD))).await.unwrap();
    while !matches!(ws.next().await, Some(Ok(Message::Binary(_)))) {}
    echoed.fetch_add(1, Ordering::Release);
    let mut ping = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ws.next() => {}
            _ = ping.tick() => ws.send(Message::Ping(Bytes::new())).await.unwrap(),
            _ = stop.notified() => return,
        }
    }
}

// ---- driver ----

struct Server(Child, u16);

impl Server {
    fn start() -> Server {
        let mut child = Command::new(server_binary::server_binary())
            .args(["--mode", "echo", "--quiet", "--threads", "1", "--idle-timeout", "0"])
            .args(["--longconn-port", "off", "--line-port", "off", "--length-port", "0", "--ws-port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start longconn-server");
        let mut port = 0;
        let listener = if websocket() { "listening ws " } else { "listening length " };
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(addr) = line.strip_prefix(listener) {
                port = addr.rsplit(':').next().unwrap().parse().unwrap();
            }
            if line.starts_with("ready") {
                break;
            }
        }
        Server(child, port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_side(side: &str, port: u16, n: u64) -> Figures {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--bench")
        .env("CLIENTS_SIDE", side)
        .env("CLIENTS_PORT", port.to_string())
        .env("CLIENTS", n.to_string())
        .output()
        .expect("run a side");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("figures ")).unwrap_or_else(|| {
        panic!("{side} side failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    });
    Figures::parse(line)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("clients benchmark: skipped (run it with `cargo bench --bench clients`)");
        return;
    }
    let limit = raise_fd_limit();
    let n = env_count("CLIENTS", 10_000);
    if let Ok(side) = std::env::var("CLIENTS_SIDE") {
        let port = env_count("CLIENTS_PORT", 0) as u16;
        let figures = if side == "longconn" { longconn_side(port, n) } else { tokio_side(port, n) };
        return figures.print();
    }
    // Each process (this one's sides, and the server) holds a descriptor per connection.
    assert!(n + 200 <= limit, "CLIENTS={n} needs more descriptors than the limit of {limit}");
    let runs = env_count("RUNS", 3).max(1);
    let (transport, peer) =
        if websocket() { ("ws://", "tokio-tungstenite") } else { ("length framing", "tokio Framed") };
    println!(
        "clients benchmark: {n} connections, one 64-byte echo each, {transport}, {runs} runs each (alternating), \
         then {} s idle with a heartbeat a second",
        idle_window().as_secs()
    );
    let (mut base, mut lc) = (vec![], vec![]);
    for _ in 0..runs {
        let server = Server::start();
        base.push(run_side("tokio", server.1, n));
        drop(server);
        let server = Server::start();
        lc.push(run_side("longconn", server.1, n));
    }
    let per = |v: &[Figures], f: &dyn Fn(&Figures) -> f64| median(v.iter().map(f).collect());
    println!();
    println!("{:<34} {:>16} {:>16} {:>9}", "medians", peer, "longconn", "ratio");
    let row = |label: &str, f: &dyn Fn(&Figures) -> f64| {
        let (b, l) = (per(&base, f), per(&lc, f));
        println!("{label:<34} {b:>16.1} {l:>16.1} {:>8.2}x", l / b);
    };
    row("memory per connection, KiB", &|f| f.rss_kib as f64 / n as f64);
    row("descriptors per connection", &|f| f.fds as f64 / n as f64);
    row("threads added", &|f| f.threads as f64);
    row("connect all, ms", &|f| f.connect.as_secs_f64() * 1e3);
    row("one echo on every connection, ms", &|f| f.round.as_secs_f64() * 1e3);
    if websocket() {
        let idle = idle_window().as_secs_f64();
        row("heartbeat CPU per connection, us/s", &|f| f.idle_cpu.as_secs_f64() * 1e6 / n as f64 / idle);
    }
}
