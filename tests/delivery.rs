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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::streams::*;
use common::{is_connected, receive_messages, wait_for, Ports, Server};
use longconn_core::{Client, CloseOutcome, Event};

const WITHIN: Duration = Duration::from_secs(10);
fn restarts() -> usize {
    std::env::var("LONGCONN_CHAOS_RESTARTS").ok().and_then(|v| v.parse().ok()).unwrap_or(6)
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

/// A TCP proxy whose connections can be cut (a network blip), or made
/// half-open: the server-to-client direction of every connection open
/// at that moment stops being read, nothing is closed, and the
/// client-to-server direction keeps flowing, as behind a stalled proxy or
/// load balancer. Connections made afterwards are forwarded normally.
struct Proxy {
    port: u16,
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// The downstream gates of the connections open now.
    gates: Arc<Mutex<Vec<Arc<Gate>>>>,
}

/// Whether one connection's server-to-client direction is held.
#[derive(Default)]
struct Gate {
    held: Mutex<bool>,
    changed: std::sync::Condvar,
}

impl Gate {
    /// Blocks while the gate is held, at most `HELD_AT_MOST`.
    fn pass(&self) {
        let held = self.held.lock().unwrap();
        let _unused = self.changed.wait_timeout_while(held, HELD_AT_MOST, |held| *held).unwrap();
    }

    fn set(&self, held: bool) {
        *self.held.lock().unwrap() = held;
        self.changed.notify_all();
    }
}

/// A held direction lets go by itself after this long, so no test can hang on it.
const HELD_AT_MOST: Duration = Duration::from_secs(120);

/// The receive buffer of the proxy's socket to the server: small, so the
/// server's writes stall soon after the proxy stops reading them.
const UPSTREAM_RECEIVE_BUFFER: usize = 16 * 1024;

impl Proxy {
    fn to(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let gates: Arc<Mutex<Vec<Arc<Gate>>>> = Arc::default();
        let (open2, gates2) = (open.clone(), gates.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { return };
                let Ok(outbound) = connect_upstream(target) else { continue };
                let gate = Arc::new(Gate::default());
                let mut list = open2.lock().unwrap();
                list.push(inbound.try_clone().unwrap());
                list.push(outbound.try_clone().unwrap());
                drop(list);
                gates2.lock().unwrap().push(gate.clone());
                let upstream = (inbound.try_clone().unwrap(), outbound.try_clone().unwrap(), None);
                for (mut from, mut to, gate) in [upstream, (outbound, inbound, Some(gate))] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            if let Some(gate) = &gate {
                                gate.pass();
                            }
                            match from.read(&mut buf) {
                                Ok(n) if n > 0 && to.write_all(&buf[..n]).is_ok() => {}
                                _ => break,
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, open, gates }
    }

    /// Cuts every connection through the proxy.
    fn cut(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Stops reading what the server sends on every connection open now,
    /// closing nothing; returns the held gates, for [`Proxy::release`].
    fn hold_downstream(&self) -> Vec<Arc<Gate>> {
        let gates: Vec<Arc<Gate>> = self.gates.lock().unwrap().drain(..).collect();
        for gate in &gates {
            gate.set(true);
        }
        gates
    }

    /// Lets held directions flow again.
    fn release(gates: &[Arc<Gate>]) {
        for gate in gates {
            gate.set(false);
        }
    }
}

fn connect_upstream(port: u16) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_recv_buffer_size(UPSTREAM_RECEIVE_BUFFER)?;
    socket.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    Ok(socket.into())
}

/// How long a client may take from declaring a half-open link dead to
/// being resumed on a new connection: its backoff (at most 200 ms here),
/// a connect and the hello, with the server's answer bounded by its own
/// state, never by the stuck connection (which used to cost 10 s).
const RESUME_BOUND: Duration = Duration::from_secs(2);

/// The first connection goes half-open (the server's writes stall, the
/// client's messages still arrive, nothing closes) while the client streams
/// numbered messages and the echoes stream back; the client declares the
/// link dead and resumes on a second connection. The resume must come
/// quickly, and each direction must hold every number exactly once, in
/// order: the echoes at the client, the messages in the server's store.
/// With `then_kill`, the stuck direction lets go afterwards and the server
/// is killed and restarted on the same data.
fn half_open(transport: &str, then_kill: bool) {
    let dir = DataDir::new("half-open");
    let (total, size) = (6_000u64, 1024);
    let start = |ports: Ports| {
        let mut extra = vec!["--quiet", "--data-dir", dir.arg(), "--history", "1000000"];
        let tls_port = ports.tls.to_string();
        if transport == "tls" {
            extra.extend(["--tls-port", &tls_port]);
        }
        Server::start_on("echo", &extra, ports, "127.0.0.1")
    };
    let mut server = start(Ports::default());
    let ports = server.ports;
    let proxy = Proxy::to(match transport {
        "tls" => ports.tls,
        "ws" => ports.ws,
        _ => ports.longconn,
    });
    let url = match transport {
        "tls" => format!("tls://127.0.0.1:{}", proxy.port),
        "ws" => format!("ws://127.0.0.1:{}/", proxy.port),
        _ => format!("tcp://127.0.0.1:{}", proxy.port),
    };
    let client = Arc::new(Client::new(config(&url)).unwrap());
    client.connect().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, count, watcher) = watch(client.clone(), stop.clone());
    wait_reconnected(&seen, 0, "first connection");
    let sender = send_padded(client.clone(), total, size);
    wait_count(&count, 100);
    let held = proxy.hold_downstream();
    wait_reconnected(&seen, 1, "after the link went half-open");
    let (timed_out, resumed_at) = {
        let seen = seen.lock().unwrap();
        (seen.timed_out_at.expect("the half-open link was declared dead"), seen.connected_at[1])
    };
    let took = resumed_at.saturating_duration_since(timed_out);
    eprintln!("{transport}: resumed {} ms after the half-open link was declared dead", took.as_millis());
    assert!(took < RESUME_BOUND, "{transport}: resumed after {took:?}, over {RESUME_BOUND:?}");
    if then_kill {
        Proxy::release(&held);
        let at = count.load(Ordering::Relaxed);
        wait_count(&count, (at + 500).min(total));
        let connections = seen.lock().unwrap().connections.len();
        server.kill();
        server = start(ports);
        wait_reconnected(&seen, connections, "after the restart");
    }
    sender.join().unwrap();
    wait_count(&count, total);
    assert_eq!(client.close(WITHIN).unwrap(), CloseOutcome::Flushed, "close waited for every acknowledgement");
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    server.kill();
    Proxy::release(&held);
    let seen = seen.lock().unwrap();
    assert_exactly_once(&seen.numbers, total, "echoes");
    assert_exactly_once(&stored_numbers(&dir), total, "messages in the server's store");
    assert!(seen.connections[1..].iter().all(|d| d.resumed && d.recovered), "{:?}", seen.connections);
    assert_eq!(client.stats().acked_number, total);
}

#[test]
fn a_half_open_link_resumes_at_once_exactly_once_over_tcp() {
    half_open("tcp", false);
}

#[test]
fn a_half_open_link_resumes_at_once_exactly_once_over_tls() {
    half_open("tls", false);
}

#[test]
fn a_half_open_link_resumes_at_once_exactly_once_over_websocket() {
    half_open("ws", false);
}

#[test]
fn a_half_open_link_then_a_server_kill_lose_nothing_over_tcp() {
    half_open("tcp", true);
}

#[test]
fn a_half_open_link_then_a_server_kill_lose_nothing_over_tls() {
    half_open("tls", true);
}

#[test]
fn a_half_open_link_then_a_server_kill_lose_nothing_over_websocket() {
    half_open("ws", true);
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

/// The maximum frame size is for application messages: at 16 bytes (a
/// protocol 2 hello is about 60) both sides still speak protocol 2, over
/// tcp, tls and ws, and a 16-byte message makes the round trip.
#[test]
fn a_small_message_limit_still_speaks_protocol_2() {
    let server = Server::start("echo", &["--quiet", "--max-frame", "16", "--tls-port", "0"]);
    let urls = [
        server.url("longconn"),
        format!("tls://127.0.0.1:{}", server.ports.tls),
        format!("ws://127.0.0.1:{}/", server.ports.ws),
    ];
    for url in urls {
        let mut c = config(&url);
        c.max_frame_size = 16;
        let client = Client::new(c).unwrap();
        client.connect().unwrap();
        let events = wait_for(&client, WITHIN, |e| matches!(e, Event::Connected { .. } | Event::Error { .. }));
        assert!(
            matches!(events.last(), Some(Event::Connected { delivery, .. }) if delivery.acknowledged),
            "{url}: {events:?}"
        );
        client.send(b"sixteen bytes!!!").unwrap();
        assert_eq!(receive_messages(&client, 1, WITHIN), vec![b"sixteen bytes!!!".to_vec()], "{url}");
        assert_eq!(client.close(WITHIN).unwrap(), CloseOutcome::Flushed, "{url}");
    }
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
