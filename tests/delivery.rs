//! Acknowledged delivery (protocol version 2) against the real server:
//! nothing lost and nothing twice across server kills, frozen servers,
//! network cuts and restarts, in both directions; `recovered = false` when
//! the server's data is gone; best effort against version 1 peers.
//!
//! `LONGCONN_CHAOS_RESTARTS` sets how many times the chaos tests kill the
//! server (default 6; CI's full run uses 100).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{is_connected, receive_messages, wait_for, Ports, Server};
use longconn_core::event::Delivery;
use longconn_core::policy::backoff::BackoffPolicy;
use longconn_core::policy::heartbeat::HeartbeatPolicy;
use longconn_core::policy::limits::OutboxLimits;
use longconn_core::{Client, ClientConfig, CloseOutcome, DisconnectReason, Event};

const WITHIN: Duration = Duration::from_secs(10);
/// How long a chaos run may take to deliver everything after the last restart.
const SETTLE: Duration = Duration::from_secs(60);

fn restarts() -> usize {
    std::env::var("LONGCONN_CHAOS_RESTARTS").ok().and_then(|v| v.parse().ok()).unwrap_or(6)
}

/// A fresh directory for a server's store, removed when dropped.
struct DataDir(PathBuf);

impl DataDir {
    fn new(name: &str) -> DataDir {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("longconn-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        DataDir(dir)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn wipe(&self) {
        std::fs::remove_dir_all(&self.0).unwrap();
        std::fs::create_dir_all(&self.0).unwrap();
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small xorshift generator, seeded from the clock; the seed is printed
/// so a failing run can be told apart.
struct Random(u64);

impl Random {
    fn new() -> Random {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
        eprintln!("random seed {seed}");
        Random(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn config(url: &str) -> ClientConfig {
    let mut c = ClientConfig::new(url).unwrap();
    c.backoff = BackoffPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        ..BackoffPolicy::default()
    };
    c.heartbeat = HeartbeatPolicy { interval: Duration::from_millis(200), timeout: Duration::from_millis(800) };
    c.outbox = OutboxLimits { max_messages: 20_000, max_bytes: 8 * 1024 * 1024 };
    c.tls.dangerous_skip_verification = true;
    c.ack_events = true;
    c
}

fn numbered(i: u64) -> Vec<u8> {
    format!("n{i:08}").into_bytes()
}

fn number_of(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload).ok()?.rsplit(": ").next()?.strip_prefix('n')?.parse().ok()
}

/// What a receiving thread saw.
#[derive(Default)]
struct Seen {
    /// The numbers received, in order.
    numbers: Vec<u64>,
    connections: Vec<Delivery>,
    heartbeat_timeouts: usize,
    acked: u64,
}

/// Polls `client` on a thread until `stop`, recording messages and events.
fn watch(
    client: Arc<Client>,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Seen>>, Arc<AtomicU64>, std::thread::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let count = Arc::new(AtomicU64::new(0));
    let (seen2, count2) = (seen.clone(), count.clone());
    let thread = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Some(event) = client.poll(Duration::from_millis(50)).unwrap() else { continue };
            let mut seen = seen2.lock().unwrap();
            match event {
                Event::Message(m) => {
                    if let Some(n) = number_of(&m) {
                        seen.numbers.push(n);
                        count2.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Event::Connected { delivery, .. } => seen.connections.push(delivery),
                Event::Disconnected { reason: DisconnectReason::HeartbeatTimeout, .. } => seen.heartbeat_timeouts += 1,
                Event::Acknowledged { up_to } => seen.acked = seen.acked.max(up_to),
                Event::Closed { .. } => return,
                _ => {}
            }
        }
    });
    (seen, count, thread)
}

/// Sends `total` numbered messages, waiting for outbox room when it is full.
fn send_all(client: Arc<Client>, total: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for i in 1..=total {
            let number = client.send_wait(&numbered(i), false, Duration::from_secs(120)).expect("queued");
            assert_eq!(number, i, "messages are numbered in the order they were queued");
        }
    })
}

/// Asserts `numbers` is exactly 1..=total.
fn assert_exactly_once(numbers: &[u64], total: u64, what: &str) {
    let dup_or_gap = numbers.iter().zip(1..).find(|(&got, want)| got != *want);
    if let Some((got, want)) = dup_or_gap {
        panic!("{what}: expected message {want}, got {got} (received {} in all)", numbers.len());
    }
    assert_eq!(numbers.len() as u64, total, "{what}: every message arrived");
}

/// How the chaos test breaks the server.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// SIGKILL at a random moment.
    Kill,
    /// SIGSTOP until the client declares the link dead, then SIGKILL: a
    /// link gone without a FIN.
    Freeze,
}

fn start(mode: &str, dir: &DataDir, tls: bool, ports: Ports) -> Server {
    let mut extra = vec!["--quiet", "--data-dir", dir.arg()];
    let tls_port = ports.tls.to_string();
    if tls {
        extra.extend(["--tls-port", if ports.tls == 0 { "0" } else { &tls_port }]);
    }
    Server::start_on(mode, &extra, ports, "127.0.0.1")
}

/// Waits until `client` has made more than `connections` connections.
fn wait_reconnected(seen: &Mutex<Seen>, connections: usize, what: &str) {
    let deadline = Instant::now() + SETTLE;
    while seen.lock().unwrap().connections.len() <= connections {
        assert!(Instant::now() < deadline, "{what}: the client did not reconnect");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until `count` reaches `target` (bounded).
fn wait_count(count: &AtomicU64, target: u64) {
    let deadline = Instant::now() + SETTLE;
    while count.load(Ordering::Relaxed) < target && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Echo server, one client streaming numbered messages while the echoes
/// stream back; the server is broken and restarted on the same port and
/// data directory again and again, each time at a random point of a burst
/// of messages, so data is in flight both ways. At the end, each direction
/// must hold every number exactly once, in order: an echo is sent for each
/// stored message, so a loss or a duplicate on either way shows in the echoes.
fn chaos(fault: Fault, transport: &str) {
    let dir = DataDir::new("chaos");
    let tls = transport == "tls";
    let mut server = start("echo", &dir, tls, Ports::default());
    let ports = server.ports;
    let url = match transport {
        "tls" => format!("tls://127.0.0.1:{}", ports.tls),
        "ws" => format!("ws://127.0.0.1:{}/", ports.ws),
        _ => server.url("longconn"),
    };
    let rounds = restarts();
    let burst = 2_000u64;
    let client = Arc::new(Client::new(config(&url)).unwrap());
    client.connect().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, count, watcher) = watch(client.clone(), stop.clone());
    wait_reconnected(&seen, 0, "first connection");
    let mut random = Random::new();
    let mut sent = 0u64;
    for round in 0..rounds {
        for _ in 0..burst {
            sent += 1;
            assert_eq!(client.send_wait(&numbered(sent), false, WITHIN).unwrap(), sent);
        }
        // Break it somewhere in this burst's echoes.
        wait_count(&count, sent - burst + random.below(burst));
        let connections = seen.lock().unwrap().connections.len();
        if fault == Fault::Freeze {
            let timeouts = seen.lock().unwrap().heartbeat_timeouts;
            server.signal("STOP");
            let deadline = Instant::now() + WITHIN;
            while seen.lock().unwrap().heartbeat_timeouts == timeouts {
                assert!(Instant::now() < deadline, "round {round}: the frozen server was never declared dead");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        server.kill();
        server = start("echo", &dir, tls, ports);
        wait_reconnected(&seen, connections, &format!("round {round}"));
    }
    wait_count(&count, sent);
    assert_eq!(client.close(WITHIN).unwrap(), CloseOutcome::Flushed, "close waited for every acknowledgement");
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let seen = seen.lock().unwrap();
    assert_exactly_once(&seen.numbers, sent, "echoes");
    assert!(seen.connections.iter().all(|d| d.acknowledged), "acknowledged delivery throughout");
    let resumed = seen.connections.iter().skip(1).filter(|d| d.resumed && d.recovered).count();
    assert_eq!(resumed, rounds, "every restart resumed the session with nothing missing: {:?}", seen.connections);
    assert_eq!(seen.acked, sent, "every message acknowledged");
    assert_eq!(client.stats().acked_number, sent);
}

#[test]
fn nothing_lost_or_doubled_across_server_kills_over_tcp() {
    chaos(Fault::Kill, "tcp");
}

#[test]
fn nothing_lost_or_doubled_across_server_kills_over_tls() {
    chaos(Fault::Kill, "tls");
}

#[test]
fn nothing_lost_or_doubled_across_server_kills_over_websocket() {
    chaos(Fault::Kill, "ws");
}

#[test]
fn nothing_lost_or_doubled_when_the_server_freezes_without_a_fin() {
    chaos(Fault::Freeze, "tcp");
}

/// The room: one member streams numbered lines, another receives them,
/// while the server is killed and restarted; the receiver gets each line
/// exactly once, in order, and so does the sender (members of a session
/// receive the whole room, their own lines included).
#[test]
fn chat_lines_reach_every_member_exactly_once_across_server_kills() {
    let dir = DataDir::new("chat-chaos");
    let mut server = start("chat", &dir, false, Ports::default());
    let ports = server.ports;
    let total = 10_000u64;
    let producer = Arc::new(Client::new(config(&server.url("longconn"))).unwrap());
    let consumer = Arc::new(Client::new(config(&server.url("longconn"))).unwrap());
    consumer.connect().unwrap();
    wait_for(&consumer, WITHIN, is_connected);
    producer.connect().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (heard, count, listener) = watch(consumer.clone(), stop.clone());
    let (own, own_count, own_listener) = watch(producer.clone(), stop.clone());
    let sender = send_all(producer.clone(), total);
    let mut random = Random::new();
    let rounds = restarts().min(20);
    for _ in 0..rounds {
        let target = (count.load(Ordering::Relaxed) + 1 + random.below(total / rounds as u64)).min(total - 1);
        let deadline = Instant::now() + SETTLE;
        while count.load(Ordering::Relaxed) < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        server.kill();
        server = start("chat", &dir, false, ports);
    }
    sender.join().unwrap();
    wait_count(&count, total);
    wait_count(&own_count, total);
    assert_eq!(producer.close(WITHIN).unwrap(), CloseOutcome::Flushed);
    assert_eq!(consumer.close(WITHIN).unwrap(), CloseOutcome::Flushed);
    stop.store(true, Ordering::Relaxed);
    listener.join().unwrap();
    own_listener.join().unwrap();
    assert_exactly_once(&heard.lock().unwrap().numbers, total, "the other member");
    assert_exactly_once(&own.lock().unwrap().numbers, total, "the sender's own lines");
    let heard = heard.lock().unwrap();
    assert!(heard.connections.iter().skip(1).all(|d| d.resumed && d.recovered), "{:?}", heard.connections);
}

/// A TCP proxy whose connections can be cut, for network blips.
struct Proxy {
    port: u16,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn to(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let open2 = open.clone();
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { return };
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let mut list = open2.lock().unwrap();
                list.push(inbound.try_clone().unwrap());
                list.push(outbound.try_clone().unwrap());
                drop(list);
                for (mut from, mut to) in
                    [(inbound.try_clone().unwrap(), outbound.try_clone().unwrap()), (outbound, inbound)]
                {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, open }
    }

    /// Cuts every connection through the proxy.
    fn cut(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

#[test]
fn a_network_blip_resumes_the_session_and_replays_nothing_already_delivered() {
    let server = Server::start("echo", &["--quiet"]);
    let proxy = Proxy::to(server.ports.longconn);
    let client = Arc::new(Client::new(config(&format!("tcp://127.0.0.1:{}", proxy.port))).unwrap());
    client.connect().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, count, watcher) = watch(client.clone(), stop.clone());
    wait_reconnected(&seen, 0, "first connection");
    let (burst, blips) = (5_000u64, 4);
    let mut sent = 0;
    for blip in 0..blips {
        for _ in 0..burst {
            sent += 1;
            client.send_wait(&numbered(sent), false, WITHIN).unwrap();
        }
        wait_count(&count, sent - burst / 2);
        let connections = seen.lock().unwrap().connections.len();
        proxy.cut();
        wait_reconnected(&seen, connections, &format!("blip {blip}"));
    }
    wait_count(&count, sent);
    assert_eq!(client.close(WITHIN).unwrap(), CloseOutcome::Flushed);
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let seen = seen.lock().unwrap();
    assert_exactly_once(&seen.numbers, sent, "echoes");
    assert_eq!(seen.connections.len(), blips + 1, "{:?}", seen.connections);
    assert!(seen.connections[1..].iter().all(|d| d.acknowledged && d.resumed && d.recovered), "{:?}", seen.connections);
}

#[test]
fn a_wiped_data_directory_means_a_new_epoch_and_recovered_false() {
    let dir = DataDir::new("wiped");
    let mut server = start("chat", &dir, false, Ports::default());
    let ports = server.ports;
    let client = Client::new(config(&server.url("longconn"))).unwrap();
    client.connect().unwrap();
    let first = wait_for(&client, WITHIN, is_connected);
    let Some(Event::Connected { delivery: before, .. }) = first.last().cloned() else { unreachable!() };
    assert!(before.acknowledged && !before.resumed && before.recovered, "{before:?}");
    client.send(b"n00000001").unwrap();
    wait_for(&client, WITHIN, |e| matches!(e, Event::Message(m) if m.ends_with(b": n00000001")));
    // Killed and restarted on the same data: resumed, nothing missing.
    server.kill();
    server = start("chat", &dir, false, ports);
    let again = wait_for(&client, WITHIN, is_connected);
    let Some(Event::Connected { delivery, .. }) = again.last().cloned() else { unreachable!() };
    assert!(delivery.resumed && delivery.recovered && delivery.epoch == before.epoch, "{delivery:?}");
    // Killed, data wiped, restarted: a new history.
    server.kill();
    dir.wipe();
    let _server = start("chat", &dir, false, ports);
    let wiped = wait_for(&client, WITHIN, is_connected);
    let Some(Event::Connected { delivery, .. }) = wiped.last().cloned() else { unreachable!() };
    assert!(delivery.acknowledged && !delivery.resumed && !delivery.recovered, "{delivery:?}");
    assert_ne!(delivery.epoch, before.epoch, "a new epoch");
    client.send(b"n00000002").unwrap();
    wait_for(&client, WITHIN, |e| matches!(e, Event::Message(m) if m.ends_with(b": n00000002")));
}

#[test]
fn version_1_peers_are_served_best_effort() {
    let v1 = Server::start("echo", &["--quiet", "--protocol", "1"]);
    for url in [v1.url("longconn"), v1.url("length")] {
        let client = Client::new(config(&url)).unwrap();
        client.connect().unwrap();
        let events = wait_for(&client, WITHIN, is_connected);
        assert!(matches!(events.last(), Some(Event::Connected { delivery, .. }) if !delivery.acknowledged), "{url}");
        client.send(b"n00000001").unwrap();
        assert_eq!(receive_messages(&client, 1, WITHIN), vec![b"n00000001".to_vec()]);
        assert_eq!(client.close(WITHIN).unwrap(), CloseOutcome::Flushed);
        assert_eq!(client.stats().unacked_messages, 0);
    }
    // A version 1 client of a version 2 server is served version 1.
    let v2 = Server::start("echo", &["--quiet"]);
    let mut c = config(&v2.url("longconn"));
    c.max_protocol = 1;
    let client = Client::new(c).unwrap();
    client.connect().unwrap();
    let events = wait_for(&client, WITHIN, is_connected);
    assert!(matches!(events.last(), Some(Event::Connected { delivery, .. }) if !delivery.acknowledged));
    client.send(b"x").unwrap();
    assert_eq!(receive_messages(&client, 1, WITHIN), vec![b"x".to_vec()]);
}

#[test]
fn close_reports_messages_the_server_never_acknowledged() {
    let server = Server::start("sink", &["--quiet"]);
    let client = Client::new(config(&server.url("longconn"))).unwrap();
    client.connect().unwrap();
    wait_for(&client, WITHIN, is_connected);
    for i in 1..=100 {
        client.send(&numbered(i)).unwrap();
    }
    wait_for(&client, WITHIN, |e| matches!(e, Event::Acknowledged { up_to: 100 }));
    assert_eq!(client.stats().unacked_messages, 0);
    // Frozen: what is sent now is written but never acknowledged.
    server.signal("STOP");
    for i in 101..=150 {
        client.send(&numbered(i)).unwrap();
    }
    let outcome = client.close(Duration::from_millis(300)).unwrap();
    assert_eq!(outcome, CloseOutcome::Unsent(50), "close counts the unacknowledged as not delivered");
    server.signal("CONT");
}
