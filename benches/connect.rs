//! The connect pipeline, measured from outside, in one run on one machine:
//!
//! - **Round trip through a proxy next to direct**: 64-byte messages echoed
//!   by `longconn-server` over tcp (protocol 2), one in flight, directly,
//!   through Debian's tinyproxy (HTTP CONNECT) and through microsocks
//!   (SOCKS5); routes interleaved per round, p50 and p99, the ratio to
//!   direct, and context switches per round trip of the bench process and
//!   of the proxy process (`/proc/PID/status`).
//! - **Failover time**: from a server's SIGKILL to the client's connected
//!   event on the next server of its list, over `KILLS` kills (at least 20):
//!   (hot) the next server already runs, with its own store: a new session;
//!   (cold) the next server is started on the same data directory right
//!   after the kill: the protocol 2 session resumes, and the figure
//!   includes that server's start (measured alone beside it) and the one
//!   backoff step (20 ms here, ±20 %) the client takes when its first try
//!   finds neither server listening yet.
//!
//!   make bench-connect                (installs tinyproxy and microsocks)
//!   ROUNDS=5 TRIPS=5000 KILLS=40 cargo bench --bench connect
//!
//! A benchmark, not a test: it prints figures and asserts only that every
//! echo came back and every failover connected.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use longconn_core::policy::backoff::BackoffPolicy;
use longconn_core::transport::proxy::ProxySetting;
use longconn_core::{Client, ClientConfig, Event};

#[path = "support/process.rs"]
mod process;
use process::{context_switches, env_count, free_port, Process};
#[path = "../tests/common/server_binary.rs"]
mod server_binary;

/// Every wait in this file gives up after this long.
const PATIENCE: Duration = Duration::from_secs(30);
const PAYLOAD: [u8; 64] = [b'x'; 64];

/// An echo server on `port`, its store in `data_dir` (or memory); returns
/// once it is ready, with the time its start took.
fn start_server(port: u16, data_dir: Option<&Path>) -> (Process, Duration) {
    let started = Instant::now();
    let store = data_dir.map_or("memory".to_string(), |d| d.display().to_string());
    let mut child = Command::new(server_binary::server_binary())
        .args(["--mode", "echo", "--quiet", "--threads", "1", "--data-dir", &store])
        .args(["--longconn-port", &port.to_string(), "--line-port", "off", "--length-port", "off"])
        .args(["--ws-port", "off"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start longconn-server");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.starts_with("ready"))), "the server did not start");
    let took = started.elapsed();
    // Keep reading its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Process(child), took)
}

/// A proxy process listening on `port` (`None` if it is not installed).
fn start_proxy(kind: &str, dir: &Path) -> Option<(Process, String)> {
    let port = free_port();
    let (mut command, url) = match kind {
        "http" => {
            let conf = dir.join("tinyproxy.conf");
            std::fs::write(
                &conf,
                format!(
                    "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\nLogLevel Critical\nMaxClients 20\n"
                ),
            )
            .unwrap();
            let mut command = Command::new("tinyproxy");
            command.args(["-d", "-c"]).arg(conf);
            (command, format!("http://127.0.0.1:{port}"))
        }
        _ => {
            let mut command = Command::new("microsocks");
            command.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
            (command, format!("socks5://127.0.0.1:{port}"))
        }
    };
    let child = match command.stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
        Ok(child) => Process(child),
        Err(_) => {
            let package = if kind == "http" { "tinyproxy" } else { "microsocks" };
            println!("{kind} proxy skipped: install it with `apt-get install {package}`");
            return None;
        }
    };
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the {kind} proxy did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    Some((child, url))
}

fn wait_connected(client: &Client) -> Event {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.poll(left).unwrap() {
            Some(event @ Event::Connected { .. }) => return event,
            Some(_) => {}
            None => panic!("not connected within {PATIENCE:?}"),
        }
    }
}

fn wait_message(client: &Client) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.poll(left).unwrap() {
            Some(Event::Message(_)) => return,
            Some(_) => {}
            None => panic!("no echo within {PATIENCE:?}"),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Round trips: p50 and p99 in µs, the bench process's and the proxy's
/// context switches per round trip.
fn round_trips(url: &str, proxy: Option<(&str, &Process)>, trips: u64) -> (f64, f64, f64, f64) {
    let mut config = ClientConfig::new(url).unwrap();
    config.proxy = match proxy {
        Some((proxy_url, _)) => ProxySetting::parse(proxy_url).unwrap(),
        None => ProxySetting::Off,
    };
    let client = Client::new(config).unwrap();
    client.connect().unwrap();
    wait_connected(&client);
    for _ in 0..200 {
        client.send(&PAYLOAD).unwrap();
        wait_message(&client);
    }
    let mut times = Vec::with_capacity(trips as usize);
    let (ours, theirs) = (context_switches(), proxy.map_or(0, |(_, p)| p.context_switches()));
    for _ in 0..trips {
        let start = Instant::now();
        client.send(&PAYLOAD).unwrap();
        wait_message(&client);
        times.push(start.elapsed());
    }
    let ours = (context_switches() - ours) as f64 / trips as f64;
    let theirs = proxy.map_or(0, |(_, p)| p.context_switches() - theirs) as f64 / trips as f64;
    client.close(PATIENCE).unwrap();
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(percentile(&times, 0.5)), us(percentile(&times, 0.99)), ours, theirs)
}

fn proxy_round_trips(rounds: usize, trips: u64, scratch: &Path) {
    println!("\nround trip through a proxy: 64-byte echoes over tcp (protocol 2), one in flight, {trips} per route and round, {rounds} rounds, medians");
    println!(
        "{:<22} {:>8} {:>8} {:>9} {:>9} {:>12}",
        "route", "p50 us", "p99 us", "p50/direct", "sw/rt", "proxy sw/rt"
    );
    let server_port = free_port();
    let (_server, _) = start_server(server_port, None);
    let url = format!("tcp://127.0.0.1:{server_port}");
    let http = start_proxy("http", scratch);
    let socks = start_proxy("socks5", scratch);
    let routes: Vec<(&str, Option<(String, &Process)>)> = [
        Some(("direct", None)),
        http.as_ref().map(|(p, u)| ("tinyproxy (CONNECT)", Some((u.clone(), p)))),
        socks.as_ref().map(|(p, u)| ("microsocks (SOCKS5)", Some((u.clone(), p)))),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut figures: Vec<Vec<(f64, f64, f64, f64)>> = vec![Vec::new(); routes.len()];
    for _ in 0..rounds {
        for (i, (_, proxy)) in routes.iter().enumerate() {
            let proxy = proxy.as_ref().map(|(u, p)| (u.as_str(), *p));
            figures[i].push(round_trips(&url, proxy, trips));
        }
    }
    let direct: Vec<f64> = figures[0].iter().map(|f| f.0).collect();
    for (i, (name, _)) in routes.iter().enumerate() {
        let f = &figures[i];
        let ratio = median(f.iter().zip(&direct).map(|(f, d)| f.0 / d).collect());
        println!(
            "{:<22} {:>8.0} {:>8.0} {:>9.2}x {:>9.1} {:>12.1}",
            name,
            median(f.iter().map(|f| f.0).collect()),
            median(f.iter().map(|f| f.1).collect()),
            ratio,
            median(f.iter().map(|f| f.2).collect()),
            median(f.iter().map(|f| f.3).collect()),
        );
    }
}

/// Failover times over `kills` kills; `cold`: the next server starts on
/// the same data directory after the kill (the session resumes), else it
/// already runs with its own store.
fn failover(kills: usize, cold: bool, scratch: &Path) -> (Vec<Duration>, Vec<Duration>) {
    let ports = [free_port(), free_port()];
    let data_dir: Option<PathBuf> = cold.then(|| scratch.join("store"));
    let start = |i: usize| start_server(ports[i], data_dir.as_deref());
    let mut servers: [Option<Process>; 2] = [Some(start(0).0), if cold { None } else { Some(start(1).0) }];
    let mut config = ClientConfig::new(&format!("tcp://127.0.0.1:{}", ports[0])).unwrap();
    config.add_server(&format!("tcp://127.0.0.1:{}", ports[1])).unwrap();
    config.proxy = ProxySetting::Off;
    let stable_after = Duration::from_millis(50);
    config.backoff = BackoffPolicy { initial: Duration::from_millis(20), stable_after, ..BackoffPolicy::default() };
    let client = Client::new(config).unwrap();
    client.connect().unwrap();
    let Event::Connected { mut server_index, .. } = wait_connected(&client) else { unreachable!() };
    let (mut times, mut starts) = (Vec::new(), Vec::new());
    for _ in 0..kills {
        // On a live, stable connection: an echo, then past stable_after.
        client.send(&PAYLOAD).unwrap();
        wait_message(&client);
        std::thread::sleep(stable_after + Duration::from_millis(10));
        let next = 1 - server_index;
        let killed_at = Instant::now();
        drop(servers[server_index].take());
        if cold {
            let (process, took) = start(next);
            servers[next] = Some(process);
            starts.push(took);
        }
        let event = wait_connected(&client);
        times.push(killed_at.elapsed());
        let Event::Connected { server_index: now_on, delivery, .. } = event else { unreachable!() };
        assert_eq!(now_on, next, "moved to the other server");
        assert!(!cold || (delivery.resumed && delivery.recovered), "the session resumed: {delivery:?}");
        server_index = now_on;
        if !cold {
            servers[1 - server_index] = Some(start(1 - server_index).0);
        }
    }
    client.close(PATIENCE).unwrap();
    times.sort();
    starts.sort();
    (times, starts)
}

/// A row of sorted times: p50, p99 and max in milliseconds.
fn print_times(label: &str, sorted: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, p99, max) = (percentile(sorted, 0.5), percentile(sorted, 0.99), sorted[sorted.len() - 1]);
    println!("{label:<58} {:>8.2} {:>8.2} {:>8.2}", ms(p50), ms(p99), ms(max));
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("connect benchmark: skipped (run it with `cargo bench --bench connect`)");
        return;
    }
    let rounds = env_count("ROUNDS", 3).max(1) as usize;
    let trips = env_count("TRIPS", 2_000).max(100);
    let kills = env_count("KILLS", 30).max(20) as usize;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let scratch = std::env::temp_dir().join(format!("longconn-bench-connect-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    proxy_round_trips(rounds, trips, &scratch);
    println!("\nfailover: SIGKILL of the server a client is on, to the connected event on the next of its two servers; {kills} kills each");
    println!("{:<58} {:>8} {:>8} {:>8}", "next server", "p50 ms", "p99 ms", "max ms");
    let (hot, _) = failover(kills, false, &scratch);
    print_times("already running, own store (new session)", &hot);
    let (cold, starts) = failover(kills, true, &scratch);
    print_times("started after the kill on the same store (session resumed)", &cold);
    print_times("  of which the server's start (spawn to ready)", &starts);
    let _ = std::fs::remove_dir_all(&scratch);
}
