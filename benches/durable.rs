//! Durable delivery: how soon a publisher learns its message is stored,
//! longconn protocol 2 next to the brokers that tell their publisher the
//! same thing, in one run on one machine, 64-byte messages over loopback:
//!
//! - longconn-server, store on disk (the inbound log: each commit synced
//!   with `fdatasync` before the ACK) and in memory; the client through the
//!   C ABI, waiting on `acked_number` (what `LC_EVENT_ACKNOWLEDGED` reports);
//! - Redis Streams (Debian's `redis-server`, the `redis` crate): XADD
//!   answered after the AOF write with `appendfsync always` (fsynced) and
//!   `everysec` (written, fsynced within a second);
//! - NATS JetStream (Debian's `nats-server -js`, the `async-nats` crate): the
//!   PubAck of a file-storage stream (written, fsynced on the server's timer);
//! - mosquitto QoS 1 (Debian's `mosquitto`, Paho's C client from
//!   `libpaho-mqtt-dev`, `benches/peers/mqtt_ack.c`): the PUBACK (in memory,
//!   saved on the broker's autosave timer).
//!
//! Measured per system: the time from send to acknowledgement with one
//! message in flight (p50, p99), and messages acknowledged per second with
//! at most 1, 100 and 1,000 unacknowledged and with no limit (everything
//! sent at once; Paho's in-flight limit, 65,535, bounds mosquitto's). Beside
//! each: the client process's context switches per message (`getrusage`,
//! every thread of the bench process, or of the Paho program) and the
//! bytes the broker process put on the storage layer per message
//! (`/proc/PID/io` `write_bytes`: counted when a page is dirtied, so a page
//! dirtied again before it was written counts once).
//!
//! For longconn also: `lc_client_close` called right after a send (`CLOSES`
//! clients), next to the ACK latency of one message.
//!
//! Each round starts every broker afresh and measures each in turn; figures
//! are medians over the rounds, ratios the median of per-round ratios.
//!
//!   make bench-durable                  (installs the brokers; about 3 min)
//!   ROUNDS=5 MESSAGES=200000 LATENCY=5000 cargo bench --bench durable
//!   ONLY=longconn-disk,redis-always cargo bench --bench durable
//!
//! A benchmark, not a test: it prints figures and asserts only that every
//! message was acknowledged. A broker that is not installed is skipped with
//! the command that installs it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};

#[path = "support/mqtt.rs"]
mod mqtt;
use mqtt::build_mqtt_ack;
#[path = "support/process.rs"]
mod process;
use process::{context_switches, env_count};
#[path = "support/server.rs"]
mod server;
#[path = "../tests/common/server_binary.rs"]
mod server_binary;
use server::Server;
#[path = "support/lc.rs"]
mod lc;
use lc::{Lc, PAYLOAD};

/// Every wait in this file gives up after this long.
const PATIENCE: Duration = Duration::from_secs(60);
/// Acknowledged messages before the timed ones.
const WARMUP: u64 = 100;
/// "No limit": everything in flight at once (Paho's own limit for mosquitto).
const UNBOUNDED: u64 = u64::MAX;
const WINDOWS: [u64; 4] = [1, 100, 1000, UNBOUNDED];

/// Bytes process `pid` has caused to be written to storage (`/proc/PID/io`).
fn storage_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn scratch_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("longconn-durable-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A broker process: stopped by its pid and its directory removed on drop.
struct Broker {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Broker {
    /// Starts `command` and waits for a line containing `ready` on its
    /// stdout or stderr (both read to the end by threads of their own, so a
    /// chatty broker never blocks on a full pipe).
    fn start(mut command: Command, port: u16, dir: PathBuf, ready: &'static str) -> Broker {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the broker");
        let (tx, rx) = std::sync::mpsc::channel();
        let outputs: [Box<dyn Read + Send>; 2] =
            [Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
        for output in outputs {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(ready) => break,
                Ok(line) => seen.push(line),
                Err(_) => panic!("the broker did not start: {seen:?}"),
            }
        }
        Broker { child, port, dir }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one system gave in one round.
#[derive(Default, Clone)]
struct Figures {
    p50_us: f64,
    p99_us: f64,
    latency_switches: f64,
    /// Messages per second and switches per message, for each of [`WINDOWS`].
    rates: Vec<(f64, f64)>,
    /// Storage bytes per message with one in flight, and with no limit.
    bytes_one: f64,
    bytes_unbounded: f64,
    /// longconn only: `lc_client_close` right after a send, p50, and one
    /// message's acknowledgement on equally fresh connections.
    close_us: f64,
    fresh_ack_us: f64,
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6
}

/// How one system is driven: one message in flight `n` times after the
/// warm-up (the samples), and `n` messages with at most `window` in flight
/// (the seconds they took).
trait Publisher {
    fn latency(&mut self, n: u64) -> Vec<Duration>;
    fn window(&mut self, window: u64, n: u64) -> Duration;
}

/// Runs every measurement of one system against a broker whose process is
/// `pid`.
fn measure(publisher: &mut dyn Publisher, pid: u32, samples: u64, messages: u64) -> Figures {
    let mut figures = Figures::default();
    let (switches, bytes) = (context_switches(), storage_bytes(pid));
    let mut latency = publisher.latency(samples);
    figures.bytes_one = (storage_bytes(pid) - bytes) as f64 / (samples + WARMUP) as f64;
    figures.latency_switches = (context_switches() - switches) as f64 / (samples + WARMUP) as f64;
    figures.p50_us = percentile(&mut latency, 0.5);
    figures.p99_us = percentile(&mut latency, 0.99);
    for window in WINDOWS {
        let n = if window == 1 { samples } else { messages };
        let (switches, bytes) = (context_switches(), storage_bytes(pid));
        let took = publisher.window(window, n);
        if window == UNBOUNDED {
            figures.bytes_unbounded = (storage_bytes(pid) - bytes) as f64 / n as f64;
        }
        figures.rates.push((n as f64 / took.as_secs_f64(), (context_switches() - switches) as f64 / n as f64));
    }
    figures
}

// ---- longconn ----

struct Longconn(Lc);

impl Publisher for Longconn {
    fn latency(&mut self, n: u64) -> Vec<Duration> {
        let first = self.0.acked();
        let mut samples = Vec::with_capacity(n as usize);
        for i in 1..=n + WARMUP {
            let start = Instant::now();
            self.0.send(&PAYLOAD);
            self.0.spin_acked(first + i);
            if i > WARMUP {
                samples.push(start.elapsed());
            }
        }
        samples
    }

    fn window(&mut self, window: u64, n: u64) -> Duration {
        let first = self.0.acked();
        let start = Instant::now();
        let mut acked = first;
        for i in first + 1..=first + n {
            while i - acked > window {
                assert!(start.elapsed() < PATIENCE, "stuck at {acked} acknowledged");
                acked = self.0.acked();
                std::hint::spin_loop();
            }
            self.0.send(&PAYLOAD);
        }
        self.0.spin_acked(first + n);
        start.elapsed()
    }
}

fn longconn(durable: bool, samples: u64, messages: u64, closes: u64) -> Figures {
    let server = Server::start_with_store("sink", durable);
    let client = Lc::with_protocol(&server.lc_url(), None, std::ptr::null_mut(), 2);
    client.send(&PAYLOAD);
    client.spin_acked(1);
    let mut figures = measure(&mut Longconn(client), server.pid(), samples, messages);
    (figures.close_us, figures.fresh_ack_us) = close_latency(&server, closes);
    figures
}

/// `lc_client_close` right after a send, on a connected client whose
/// earlier messages are all acknowledged: it returns once the last one is
/// (a round trip and the commit of one message, at best). Each of `n` fresh
/// clients first times one message's acknowledgement the same way (send,
/// then wait), so the two compare on connections equally fresh. p50s.
fn close_latency(server: &Server, n: u64) -> (f64, f64) {
    let (mut closes, mut acks) = (Vec::with_capacity(n as usize), Vec::with_capacity(n as usize));
    for _ in 0..n {
        let client = Lc::with_protocol(&server.lc_url(), None, std::ptr::null_mut(), 2);
        client.send(&PAYLOAD);
        client.spin_acked(1);
        let start = Instant::now();
        client.send(&PAYLOAD);
        client.spin_acked(2);
        acks.push(start.elapsed());
        client.send(&PAYLOAD);
        let start = Instant::now();
        client.close();
        closes.push(start.elapsed());
        assert_eq!(client.acked(), 3, "close returned before the last message was acknowledged");
    }
    (percentile(&mut closes, 0.5), percentile(&mut acks, 0.5))
}

// ---- Redis Streams ----

struct Redis {
    rt: tokio::runtime::Runtime,
    connection: redis::aio::MultiplexedConnection,
}

async fn xadd(mut connection: redis::aio::MultiplexedConnection) {
    let id: String = redis::cmd("XADD")
        .arg("bench")
        .arg("*")
        .arg("m")
        .arg(&PAYLOAD[..])
        .query_async(&mut connection)
        .await
        .expect("XADD");
    assert!(!id.is_empty());
}

impl Publisher for Redis {
    fn latency(&mut self, n: u64) -> Vec<Duration> {
        let connection = self.connection.clone();
        self.rt.block_on(async move {
            let mut samples = Vec::with_capacity(n as usize);
            for i in 0..n + WARMUP {
                let start = Instant::now();
                xadd(connection.clone()).await;
                if i >= WARMUP {
                    samples.push(start.elapsed());
                }
            }
            samples
        })
    }

    fn window(&mut self, window: u64, n: u64) -> Duration {
        let connection = self.connection.clone();
        self.rt.block_on(async move {
            let start = Instant::now();
            let mut in_flight = FuturesOrdered::new();
            for _ in 0..n {
                if in_flight.len() as u64 >= window {
                    in_flight.next().await;
                }
                in_flight.push_back(xadd(connection.clone()));
            }
            while in_flight.next().await.is_some() {}
            start.elapsed()
        })
    }
}

fn redis(fsync: &str, samples: u64, messages: u64) -> Option<Figures> {
    if !installed("redis-server") {
        return None;
    }
    let (port, dir) = (free_port(), scratch_dir("redis"));
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
        .args(["--appendfsync", fsync, "--protected-mode", "no", "--dir"])
        .arg(&dir);
    let broker = Broker::start(command, port, dir, "Ready to accept connections");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", broker.port)).unwrap();
    let connection = rt.block_on(client.get_multiplexed_async_connection()).expect("connect to Redis");
    Some(measure(&mut Redis { rt, connection }, broker.pid(), samples, messages))
}

// ---- NATS JetStream ----

struct Nats {
    rt: tokio::runtime::Runtime,
    client: async_nats::Client,
}

impl Nats {
    /// A JetStream context that lets `window` acknowledgements be awaited at once.
    fn context(&self, window: u64) -> async_nats::jetstream::Context {
        // It spawns its acknowledgement task on the runtime.
        let _runtime = self.rt.enter();
        async_nats::jetstream::context::ContextBuilder::new()
            .max_ack_inflight(window.clamp(1, 1 << 24) as usize)
            .build(self.client.clone())
    }
}

async fn publish(context: &async_nats::jetstream::Context) -> async_nats::jetstream::context::PublishAckFuture {
    context.publish("bench", Bytes::from_static(&PAYLOAD)).await.expect("publish")
}

impl Publisher for Nats {
    fn latency(&mut self, n: u64) -> Vec<Duration> {
        let context = self.context(1);
        self.rt.block_on(async move {
            let mut samples = Vec::with_capacity(n as usize);
            for i in 0..n + WARMUP {
                let start = Instant::now();
                publish(&context).await.await.expect("PubAck");
                if i >= WARMUP {
                    samples.push(start.elapsed());
                }
            }
            samples
        })
    }

    fn window(&mut self, window: u64, n: u64) -> Duration {
        let context = self.context(window.min(n));
        self.rt.block_on(async move {
            let start = Instant::now();
            let mut in_flight = VecDeque::new();
            for _ in 0..n {
                if in_flight.len() as u64 >= window {
                    let ack: async_nats::jetstream::context::PublishAckFuture = in_flight.pop_front().unwrap();
                    ack.await.expect("PubAck");
                }
                in_flight.push_back(publish(&context).await);
            }
            for ack in in_flight {
                ack.await.expect("PubAck");
            }
            start.elapsed()
        })
    }
}

fn nats(samples: u64, messages: u64) -> Option<Figures> {
    if !installed("nats-server") {
        return None;
    }
    let (port, dir) = (free_port(), scratch_dir("nats"));
    let mut command = Command::new("nats-server");
    command.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"]).arg(&dir);
    let broker = Broker::start(command, port, dir, "Server is ready");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = rt.block_on(async_nats::connect(format!("127.0.0.1:{}", broker.port))).expect("connect to NATS");
    let nats = Nats { rt, client };
    let context = nats.context(1);
    nats.rt
        .block_on(context.create_stream(async_nats::jetstream::stream::Config {
            name: "bench".into(),
            subjects: vec!["bench".into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        }))
        .expect("create the stream");
    let mut nats = nats;
    Some(measure(&mut nats, broker.pid(), samples, messages))
}

// ---- mosquitto, through Paho's C client in a child process ----

/// Runs the Paho program; its output's numbers.
fn paho(program: &Path, args: &[String]) -> Vec<f64> {
    let output = Command::new(program).args(args).output().expect("run mqtt_ack");
    assert!(output.status.success(), "mqtt_ack failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().split_whitespace().map(|f| f.parse().unwrap()).collect()
}

fn mosquitto(program: &Path, samples: u64, messages: u64) -> Option<Figures> {
    if !installed("mosquitto") {
        return None;
    }
    let (port, dir) = (free_port(), scratch_dir("mosquitto"));
    let config = dir.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut command = Command::new("mosquitto");
    command.arg("-c").arg(&config);
    let broker = Broker::start(command, port, dir, "running");
    let port = broker.port.to_string();
    let mut figures = Figures::default();
    let bytes = storage_bytes(broker.pid());
    let latency = paho(program, &[port.clone(), "latency".into(), samples.to_string()]);
    figures.bytes_one = (storage_bytes(broker.pid()) - bytes) as f64 / (samples + WARMUP) as f64;
    (figures.p50_us, figures.p99_us, figures.latency_switches) = (latency[0] / 1e3, latency[1] / 1e3, latency[2]);
    for window in WINDOWS {
        let n = if window == 1 { samples } else { messages };
        let bytes = storage_bytes(broker.pid());
        let window = window.min(65_535);
        let rate = paho(program, &[port.clone(), "window".into(), window.to_string(), n.to_string()]);
        if window == 65_535 {
            figures.bytes_unbounded = (storage_bytes(broker.pid()) - bytes) as f64 / n as f64;
        }
        figures.rates.push((rate[0], rate[1]));
    }
    Some(figures)
}

fn installed(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        println!("{program} skipped: not installed (make bench-durable installs it)");
    }
    found
}

// ---- the table ----

const SYSTEMS: [(&str, &str, &str); 6] = [
    ("longconn-disk", "longconn, store on disk", "fsynced (the inbound log, fdatasync per commit)"),
    ("longconn-memory", "longconn, store in memory", "in memory"),
    ("redis-always", "Redis Streams, AOF always", "fsynced (AOF appendfsync always)"),
    ("redis-everysec", "Redis Streams, AOF everysec", "written, fsynced within 1 s"),
    ("nats", "NATS JetStream, file storage", "written, fsynced on the server's timer"),
    ("mosquitto", "mosquitto QoS 1, persistence on", "in memory, saved on autosave"),
];

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The median of the per-round ratios `lc / peer` of one figure.
fn ratio(lc: &[Figures], peer: &[Figures], figure: fn(&Figures) -> f64) -> f64 {
    median(lc.iter().zip(peer).map(|(l, p)| figure(l) / figure(p)).collect())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("durable benchmark: skipped (run it with `cargo bench --bench durable`)");
        return;
    }
    let rounds = env_count("ROUNDS", 3).max(1) as usize;
    let messages = env_count("MESSAGES", 100_000);
    let samples = env_count("LATENCY", 2_000);
    let closes = env_count("CLOSES", 100);
    let only = std::env::var("ONLY").ok();
    let wanted = |name: &str| only.as_deref().map_or(true, |o| o.split(',').any(|w| w == name));
    let paho_program = build_mqtt_ack();
    println!(
        "durable delivery: 64-byte messages over loopback; one in flight {samples} times, windows of \
         {messages} messages (window 1: {samples}); {rounds} rounds, systems in turn; medians"
    );
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); SYSTEMS.len()];
    for round in 0..rounds {
        for (i, (name, _, _)) in SYSTEMS.iter().enumerate() {
            if !wanted(name) {
                continue;
            }
            let figures = match *name {
                "longconn-disk" => Some(longconn(true, samples, messages, closes)),
                "longconn-memory" => Some(longconn(false, samples, messages, closes)),
                "redis-always" => redis("always", samples, messages),
                "redis-everysec" => redis("everysec", samples, messages),
                "nats" => nats(samples, messages),
                "mosquitto" => paho_program.as_deref().and_then(|p| mosquitto(p, samples, messages)),
                _ => unreachable!(),
            };
            if let Some(figures) = figures {
                eprintln!("round {} {name}: p50 {:.0} us", round + 1, figures.p50_us);
                runs[i].push(figures);
            }
        }
    }
    println!(
        "\n{:<34} {:>8} {:>8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}   durability at the ACK",
        "system", "p50 us", "p99 us", "sw/msg", "w=1/s", "w=100/s", "w=1000/s", "all/s", "B/msg w1", "B/msg all"
    );
    for (i, (_, label, durability)) in SYSTEMS.iter().enumerate() {
        let figures = &runs[i];
        if figures.is_empty() {
            continue;
        }
        let m = |f: fn(&Figures) -> f64| median(figures.iter().map(f).collect());
        let rate = |w: usize| median(figures.iter().map(|f| f.rates[w].0).collect());
        println!(
            "{label:<34} {:>8.0} {:>8.0} {:>6.1} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>9.0} {:>9.0}   {durability}",
            m(|f| f.p50_us),
            m(|f| f.p99_us),
            m(|f| f.latency_switches),
            rate(0),
            rate(1),
            rate(2),
            rate(3),
            m(|f| f.bytes_one),
            m(|f| f.bytes_unbounded),
        );
    }
    println!("\ncontext switches per message with each window (client process):");
    for (i, (_, label, _)) in SYSTEMS.iter().enumerate() {
        if let Some(first) = runs[i].first() {
            let per: Vec<String> = (0..first.rates.len())
                .map(|w| format!("{:.2}", median(runs[i].iter().map(|f| f.rates[w].1).collect())))
                .collect();
            println!("  {label:<34} {}", per.join(" / "));
        }
    }
    println!("\nlc_client_close right after a send ({closes} fresh clients, p50), next to a send's ACK on each:");
    for (figures, label) in [(&runs[0], "store on disk"), (&runs[1], "store in memory")] {
        if !figures.is_empty() {
            println!(
                "  {label:<34} close {:>6.0} us   ACK {:>6.0} us   {:>5.2}x   target: a round trip plus a commit",
                median(figures.iter().map(|f| f.close_us).collect()),
                median(figures.iter().map(|f| f.fresh_ack_us).collect()),
                median(figures.iter().map(|f| f.close_us / f.fresh_ack_us).collect()),
            );
        }
    }
    let (disk, memory, always, nats) = (&runs[0], &runs[1], &runs[2], &runs[4]);
    println!("\ntargets (median of per-round ratios, longconn / peer):");
    type Target<'a> = (&'a str, &'a [Figures], &'a [Figures], fn(&Figures) -> f64, &'a str);
    let rows: [Target; 4] = [
        ("ack p50, disk / Redis always", disk, always, |f| f.p50_us, "<= 1.00x"),
        ("ack p50, memory / NATS JetStream", memory, nats, |f| f.p50_us, "<= 1.00x"),
        ("1,000 in flight, disk / Redis always", disk, always, |f| f.rates[2].0, ">= 1.00x"),
        ("1,000 in flight, memory / NATS JetStream", memory, nats, |f| f.rates[2].0, ">= 1.00x"),
    ];
    for (label, lc, peer, figure, target) in rows {
        if lc.len() == peer.len() && !lc.is_empty() {
            println!("  {label:<44} {:>6.2}x   target {target}", ratio(lc, peer, figure));
        }
    }
}
