//! Server nodes on Redis, measured from outside in one run on one machine:
//!
//! - **Room throughput**: `MESSAGES` 64-byte chat messages from one
//!   protocol 2 client (tcp, as fast as its outbox takes them) to a member
//!   of the room, time from the first send to the member's last line:
//!   (embedded) both on one node whose store is SQLite on disk; (Redis) the
//!   sender on one node and the member on another, the room shared through
//!   Redis with `appendfsync always`, and again with `everysec`. Rounds
//!   interleaved, medians, the ratio to the embedded store, and the context
//!   switches of the server processes (and Redis) per message.
//! - **Failover time**: two echo nodes on one Redis; from the SIGKILL of
//!   the node a client is on to its connected event on the other, its
//!   session resumed, over `KILLS` kills (at least 20); the killed node is
//!   started again before the next kill.
//!
//!   make bench-fleet                  (installs redis-server)
//!   ROUNDS=5 MESSAGES=50000 KILLS=40 cargo bench --bench fleet
//!
//! A benchmark, not a test: it prints figures and asserts only that every
//! line arrived and every failover resumed the session.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use longconn_core::policy::backoff::BackoffPolicy;
use longconn_core::transport::proxy::ProxySetting;
use longconn_core::{Client, ClientConfig, Event};

#[path = "support/process.rs"]
mod process;
use process::{cpu_ns, env_count, free_port, Process};
#[path = "../tests/common/server_binary.rs"]
mod server_binary;

/// Every wait in this file gives up after this long.
const PATIENCE: Duration = Duration::from_secs(60);
const PAYLOAD: [u8; 64] = [b'x'; 64];

/// `redis-server` on a free port in `dir`, with `appendfsync`.
fn start_redis(dir: &Path, fsync: &str) -> (Process, String) {
    std::fs::create_dir_all(dir).unwrap();
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir", dir.to_str().unwrap()])
        .args(["--appendonly", "yes", "--appendfsync", fsync, "--save", ""])
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server (make bench-fleet installs it)");
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + PATIENCE;
    while redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_err()
    {
        assert!(Instant::now() < deadline, "redis-server did not answer");
        std::thread::sleep(Duration::from_millis(10));
    }
    (Process(child), url)
}

/// A node in `mode` on `port` with `store` (`--store URL` or `--data-dir DIR`).
fn start_node(mode: &str, port: u16, store: &[&str]) -> Process {
    let mut child = Command::new(server_binary::server_binary())
        .args(["--mode", mode, "--quiet", "--threads", "1"])
        .args(store)
        .args(["--longconn-port", &port.to_string(), "--line-port", "off", "--length-port", "off"])
        .args(["--ws-port", "off"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start longconn-server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.is_ok_and(|l| l.starts_with("ready"))), "the node did not start");
    // Keep reading its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Process(child)
}

fn client(urls: &[String]) -> Client {
    let mut config = ClientConfig::new(&urls[0]).unwrap();
    for url in &urls[1..] {
        config.add_server(url).unwrap();
    }
    config.proxy = ProxySetting::Off;
    let stable_after = Duration::from_millis(50);
    config.backoff = BackoffPolicy { initial: Duration::from_millis(20), stable_after, ..BackoffPolicy::default() };
    config.outbox.max_messages = 100_000;
    let client = Client::new(config).unwrap();
    client.connect().unwrap();
    wait_connected(&client);
    client
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

/// Sends `messages` from `sender` and times them to `member`'s last line;
/// returns messages per second.
fn room_throughput(sender: &Client, member: &Client, messages: u64) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        let sending = scope.spawn(|| {
            for _ in 0..messages {
                sender.send_wait(&PAYLOAD, false, PATIENCE).unwrap();
            }
        });
        let (mut got, deadline) = (0, Instant::now() + PATIENCE);
        while got < messages {
            let left = deadline.saturating_duration_since(Instant::now());
            match member.poll(left).unwrap() {
                Some(Event::Message(m)) if m.ends_with(&PAYLOAD) => got += 1,
                Some(_) => {}
                None => panic!("{got} of {messages} lines within {PATIENCE:?}"),
            }
        }
        sending.join().unwrap();
    });
    messages as f64 / started.elapsed().as_secs_f64()
}

/// One round of a setup: messages per second, then per message: context
/// switches of the servers and Redis, their CPU time and the clients' (this
/// process), in µs.
fn room_round(setup: &str, messages: u64, scratch: &Path) -> [f64; 4] {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = scratch.join(format!("{setup}-{nanos}"));
    let (ports, mut processes) = ([free_port(), free_port()], Vec::new());
    let urls: Vec<String> = ports.iter().map(|p| format!("tcp://127.0.0.1:{p}")).collect();
    let (sender_url, member_url) = match setup {
        "embedded" => {
            let store = dir.join("store");
            processes.push(start_node("chat", ports[0], &["--data-dir", store.to_str().unwrap()]));
            (&urls[0], &urls[0])
        }
        fsync => {
            let (redis, url) = start_redis(&dir.join("redis"), fsync);
            processes.push(redis);
            for port in ports {
                processes.push(start_node("chat", port, &["--store", &url]));
            }
            (&urls[0], &urls[1])
        }
    };
    let (member, sender) = (client(std::slice::from_ref(member_url)), client(std::slice::from_ref(sender_url)));
    let before: u64 = processes.iter().map(Process::context_switches).sum();
    let cpu_before: u64 = processes.iter().map(Process::cpu_ns).sum();
    let own_before = cpu_ns(std::process::id());
    let rate = room_throughput(&sender, &member, messages);
    let own = cpu_ns(std::process::id()) - own_before;
    let cpu = processes.iter().map(Process::cpu_ns).sum::<u64>() - cpu_before;
    let switches = processes.iter().map(Process::context_switches).sum::<u64>() - before;
    sender.close(PATIENCE).unwrap();
    member.close(PATIENCE).unwrap();
    // Nodes first, then Redis (whose loss the nodes would report).
    while let Some(process) = processes.pop() {
        drop(process);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let per_message = |n: u64| n as f64 / messages as f64;
    [rate, per_message(switches), per_message(cpu) / 1e3, per_message(own) / 1e3]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Failover times over `kills` kills between two echo nodes on one Redis.
fn failover(kills: usize, scratch: &Path) -> Vec<Duration> {
    let (_redis, url) = start_redis(&scratch.join("failover-redis"), "always");
    let ports = [free_port(), free_port()];
    let start = |i: usize| start_node("echo", ports[i], &["--store", &url]);
    let mut nodes = [Some(start(0)), Some(start(1))];
    let urls: Vec<String> = ports.iter().map(|p| format!("tcp://127.0.0.1:{p}")).collect();
    let client = client(&urls);
    let mut on = client.stats().server_index as usize;
    let mut times = Vec::new();
    for _ in 0..kills {
        // On a live, stable connection: an echo, then past stable_after.
        client.send(&PAYLOAD).unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !matches!(
            client.poll(deadline.saturating_duration_since(Instant::now())).unwrap(),
            Some(Event::Message(_))
        ) {
            assert!(Instant::now() < deadline, "no echo");
        }
        std::thread::sleep(Duration::from_millis(60));
        let killed_at = Instant::now();
        drop(nodes[on].take());
        let event = wait_connected(&client);
        times.push(killed_at.elapsed());
        let Event::Connected { server_index, delivery, .. } = event else { unreachable!() };
        assert_eq!(server_index, 1 - on, "moved to the other node");
        assert!(delivery.resumed && delivery.recovered, "the session resumed: {delivery:?}");
        nodes[on] = Some(start(on));
        on = server_index;
    }
    client.close(PATIENCE).unwrap();
    times.sort();
    times
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("fleet benchmark: skipped (run it with `cargo bench --bench fleet`)");
        return;
    }
    let rounds = env_count("ROUNDS", 3).max(1) as usize;
    let messages = env_count("MESSAGES", 20_000).max(1_000);
    let kills = env_count("KILLS", 30).max(20) as usize;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let scratch: PathBuf = std::env::temp_dir().join(format!("longconn-bench-fleet-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();

    println!(
        "room throughput: {messages} messages of 64 bytes, sender to a member, {rounds} rounds interleaved (medians)"
    );
    let setups = ["embedded", "always", "everysec"];
    let mut results: Vec<[Vec<f64>; 4]> = vec![Default::default(); setups.len()];
    for _ in 0..rounds {
        for (setup, result) in setups.iter().zip(&mut results) {
            for (figure, values) in room_round(setup, messages, &scratch).into_iter().zip(result.iter_mut()) {
                values.push(figure);
            }
        }
    }
    let embedded = median(results[0][0].clone());
    println!(
        "{:<62} {:>10} {:>9} {:>11} {:>12} {:>12}",
        "setup", "msg/s", "ratio", "srv sw/msg", "srv CPU µs", "client CPU µs"
    );
    for (setup, [rates, switches, cpu, own]) in setups.iter().zip(results) {
        let label = match *setup {
            "embedded" => "one node, embedded store (SQLite on disk, synchronous=FULL)".to_string(),
            fsync => format!("two nodes on Redis (appendonly yes, appendfsync {fsync})"),
        };
        let rate = median(rates);
        println!(
            "{label:<62} {rate:>10.0} {:>8.2}x {:>11.2} {:>12.2} {:>12.2}",
            rate / embedded,
            median(switches),
            median(cpu),
            median(own)
        );
    }

    println!("\nfailover: SIGKILL of the node a client is on, to its connected event on the other node of the same Redis (appendfsync always), session resumed; {kills} kills");
    let times = failover(kills, &scratch);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times[times.len() - 1])
    );
    let _ = std::fs::remove_dir_all(&scratch);
}
