//! Server nodes sharing sessions and the room through Redis
//! (`longconn-server --store redis://`), all real processes on loopback:
//! Debian's `redis-server` on a free port with its append-only file synced
//! on every write, and two or three nodes on free ports. A client's list of
//! servers drives its failover; nodes are killed, stopped and restarted,
//! Redis is killed and restarted (with its file, and empty), and a node's
//! link to Redis is stalled through a proxy in the test.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::streams::{
    assert_exactly_once, config, number_of, numbered, send_all, wait_count, wait_reconnected, watch, DataDir,
};
use common::{Ports, Server};
use longconn_core::{Client, Event};
use redis::Commands;

const WITHIN: Duration = Duration::from_secs(60);

/// A free port on loopback (taken again by whoever binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `redis-server` process: append-only file, `appendfsync always`, no snapshots.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: DataDir,
}

impl Redis {
    fn start() -> Redis {
        let mut redis = Redis { child: None, port: free_port(), dir: DataDir::new("redis") };
        redis.spawn();
        redis
    }

    /// Starts `redis-server` on the port and directory, and waits until it answers.
    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir", self.dir.arg()])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server (Debian's redis-server package)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = redis::Client::open(self.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not answer: {pong:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL, then the same port and directory again (`wipe`: emptied first).
    fn kill_and_restart(&mut self, wipe: bool) {
        self.kill();
        if wipe {
            self.dir.wipe();
        }
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node of `mode` on fixed ports (so it can be restarted where clients look).
struct Node {
    server: Option<Server>,
    mode: &'static str,
    ports: Ports,
    store: String,
}

impl Node {
    fn start(mode: &'static str, store: &str) -> Node {
        let ports = Ports { longconn: free_port(), ws: free_port(), ..Ports::default() };
        let mut node = Node { server: None, mode, ports, store: store.to_string() };
        node.restart();
        node
    }

    fn restart(&mut self) {
        self.server = None;
        let args = ["--quiet", "--store", &self.store, "--idle-timeout", "5"];
        self.server = Some(Server::start_on(self.mode, &args, self.ports, "127.0.0.1"));
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("the node runs")
    }

    fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    fn url(&self, scheme: &str) -> String {
        match scheme {
            "ws" => format!("ws://127.0.0.1:{}", self.ports.ws),
            _ => format!("tcp://127.0.0.1:{}", self.ports.longconn),
        }
    }
}

/// A client with every node in its list, in order.
fn client_of(nodes: &[Node], scheme: &str) -> Arc<Client> {
    let mut c = config(&nodes[0].url(scheme));
    for node in &nodes[1..] {
        c.add_server(&node.url(scheme)).unwrap();
    }
    let client = Arc::new(Client::new(c).unwrap());
    client.connect().unwrap();
    client
}

/// The one session's `received` and its stored inbound messages' numbers
/// (sink: all of them, in the store's order).
fn stored(redis: &Redis, mode: &str) -> (u64, Vec<u64>) {
    let mut con = redis.connection();
    let sessions: Vec<String> = con.keys(format!("longconn:{mode}:s:*")).unwrap();
    assert_eq!(sessions.len(), 1, "one session in Redis: {sessions:?}");
    let received: u64 = con.hget(&sessions[0], "received").unwrap();
    let inbound = sessions[0].replace(":s:", ":in:");
    let entries: redis::streams::StreamRangeReply = con.xrange_all(&inbound).unwrap();
    let mut numbers = Vec::new();
    for entry in entries.ids {
        let row: Vec<u8> = entry.get("r").unwrap();
        let mut at = 0;
        while at + 4 <= row.len() {
            let len = (u32::from_be_bytes(row[at..at + 4].try_into().unwrap()) & !(1 << 31)) as usize;
            numbers.push(number_of(&row[at + 4..at + 4 + len]).expect("a numbered message"));
            at += 4 + len;
        }
    }
    (received, numbers)
}

/// Closes `client` (after it delivered everything) and stops its watcher.
fn close_and_stop(client: &Client, stop: &AtomicBool, watcher: std::thread::JoinHandle<()>) {
    client.close(WITHIN).unwrap();
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
}

/// Messages streamed through one session while its node is killed, a node
/// is stopped (and continued once the client moved: it must be fenced, or
/// it would store what the next node also stores) and restarted, and two
/// nodes are killed one after the other while the third stays up. Echo:
/// every echo exactly once in order, and Redis' count of the session's
/// messages exact; sink: Redis holds every message exactly once in order.
fn nodes_fail_under_a_stream(mode: &'static str, scheme: &str) {
    let redis = Redis::start();
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::start(mode, &redis.url())).collect();
    let client = client_of(&nodes, scheme);
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, count, watcher) = watch(client.clone(), stop.clone());
    wait_reconnected(&seen, 0, "first connection");
    let total = 8_000u64;
    let sender = send_all(client.clone(), total);
    // Progress: echoes in echo mode, acknowledgements in sink mode.
    let progress = |at_least: u64| {
        let deadline = Instant::now() + WITHIN;
        loop {
            let done = if mode == "echo" { count.load(Ordering::Relaxed) } else { seen.lock().unwrap().acked };
            if done >= at_least {
                return;
            }
            assert!(Instant::now() < deadline, "stuck below {at_least}: {done}");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let current = || client.stats().server_index as usize;
    let connections = || seen.lock().unwrap().connections.len();

    // Killed, and restarted once the client moved.
    progress(1_000);
    let (on, before) = (current(), connections());
    nodes[on].kill();
    wait_reconnected(&seen, before, "after a kill");
    nodes[on].restart();

    // Stopped: the client's heartbeat gives up on it and the session moves;
    // continued afterwards, the stopped node must not store anything more.
    progress(3_000);
    let (on, before) = (current(), connections());
    nodes[on].server().signal("STOP");
    wait_reconnected(&seen, before, "after a stop");
    progress(3_500);
    nodes[on].server().signal("CONT");

    // Two nodes killed one after the other; the third carries on.
    progress(5_000);
    let (on, before) = (current(), connections());
    nodes[on].kill();
    wait_reconnected(&seen, before, "after the first of two kills");
    progress(5_500);
    let (next, before) = (current(), connections());
    assert_ne!(next, on);
    nodes[next].kill();
    wait_reconnected(&seen, before, "after the second of two kills");
    nodes[on].restart();
    nodes[next].restart();

    sender.join().unwrap();
    if mode == "echo" {
        wait_count(&count, total);
    }
    close_and_stop(&client, &stop, watcher);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.acked, total, "every message acknowledged");
    let moves = seen.connections.iter().skip(1);
    assert!(moves.clone().all(|d| d.resumed && d.recovered), "every move resumed: {:?}", seen.connections);
    let (received, numbers) = stored(&redis, mode);
    assert_eq!(received, total, "Redis counts every message once");
    if mode == "echo" {
        assert_exactly_once(&seen.numbers, total, "echoes");
    } else {
        assert_exactly_once(&numbers, total, "Redis' stored messages");
    }
}

#[test]
fn echo_over_tcp_survives_nodes_killed_stopped_and_restarted_exactly_once_both_ways() {
    nodes_fail_under_a_stream("echo", "tcp");
}

#[test]
fn echo_over_websocket_survives_nodes_killed_stopped_and_restarted_exactly_once_both_ways() {
    nodes_fail_under_a_stream("echo", "ws");
}

#[test]
fn sink_over_tcp_stores_every_message_once_in_order_across_node_failures() {
    nodes_fail_under_a_stream("sink", "tcp");
}

/// Collects the room lines `client` receives that carry a number, as
/// (line without the number's padding, number), until it has `count`.
fn room_lines(client: &Client, count: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let deadline = Instant::now() + WITHIN;
    while lines.len() < count {
        assert!(Instant::now() < deadline, "{} of {count} lines arrived", lines.len());
        // Text over WebSocket, binary over TCP.
        if let Some(Event::Message(m) | Event::Text(m)) = client.poll(Duration::from_millis(50)).unwrap() {
            let text = String::from_utf8_lossy(&m).to_string();
            if number_of(&m).is_some() {
                lines.push(text);
            }
        }
    }
    lines
}

#[test]
fn clients_on_two_nodes_share_one_room_in_one_order() {
    let redis = Redis::start();
    let nodes: Vec<Node> = (0..2).map(|_| Node::start("chat", &redis.url())).collect();
    let (a, b) = (client_of(&nodes[..1], "tcp"), client_of(&nodes[1..], "ws"));
    for client in [&a, &b] {
        common::wait_for(client, WITHIN, common::is_connected);
    }
    let each = 300u64;
    let senders: Vec<_> = [a.clone(), b.clone()].into_iter().map(|c| send_all(c, each)).collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let (seen_a, seen_b) = (room_lines(&a, 2 * each as usize), room_lines(&b, 2 * each as usize));
    assert_eq!(seen_a, seen_b, "both nodes show the room in one order");
    let speakers: std::collections::BTreeSet<&str> = seen_a.iter().filter_map(|l| l.split(": ").next()).collect();
    assert_eq!(speakers.len(), 2, "two speakers with names unique across nodes: {speakers:?}");
    for speaker in speakers {
        let numbers: Vec<u64> = seen_a
            .iter()
            .filter(|l| l.starts_with(&format!("{speaker}: ")))
            .filter_map(|l| number_of(l.as_bytes()))
            .collect();
        assert_exactly_once(&numbers, each, speaker);
    }
}

/// Redis killed (SIGKILL) under a stream and restarted on its own file:
/// the nodes stop acknowledging while it is gone, and nothing acknowledged
/// is lost.
#[test]
fn redis_killed_and_restarted_on_its_file_loses_nothing_acknowledged() {
    let mut redis = Redis::start();
    let nodes: Vec<Node> = (0..2).map(|_| Node::start("echo", &redis.url())).collect();
    let client = client_of(&nodes, "tcp");
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, count, watcher) = watch(client.clone(), stop.clone());
    wait_reconnected(&seen, 0, "first connection");
    let total = 6_000u64;
    let sender = send_all(client.clone(), total);
    for round in 1..=2 {
        wait_count(&count, round * 2_000);
        redis.kill_and_restart(false);
    }
    sender.join().unwrap();
    wait_count(&count, total);
    close_and_stop(&client, &stop, watcher);
    let seen = seen.lock().unwrap();
    assert_exactly_once(&seen.numbers, total, "echoes");
    assert_eq!(seen.acked, total);
    assert_eq!(stored(&redis, "echo").0, total, "Redis counts every message once");
    assert!(
        nodes.iter().any(|n| n.server().logged("Redis is unavailable", Duration::ZERO)),
        "a node said it stopped acknowledging"
    );
}

/// Redis restarted empty: the nodes notice (no epoch) and begin a new one;
/// a resuming client is told its session did not recover, and the room
/// goes on in the new epoch.
#[test]
fn redis_restarted_empty_begins_a_new_epoch_and_clients_are_told() {
    let redis = Redis::start();
    let node = Node::start("chat", &redis.url());
    let client = client_of(std::slice::from_ref(&node), "tcp");
    let events = common::wait_for(&client, WITHIN, common::is_connected);
    let Some(Event::Connected { delivery, .. }) = events.last() else { panic!("{events:?}") };
    assert!(delivery.acknowledged && delivery.recovered);
    client.send(&numbered(1)).unwrap();
    common::wait_acknowledged(&client, WITHIN);
    let epoch_before: String = redis.connection().hget("longconn:chat:meta", "epoch").unwrap();

    let mut redis = redis;
    redis.kill_and_restart(true);
    // The next message finds no epoch: the node starts a new one and lets
    // its sessions go; the client resumes into a new session.
    client.send(&numbered(2)).unwrap();
    let events = common::wait_for(&client, WITHIN, common::is_connected);
    let Some(Event::Connected { delivery, .. }) = events.last() else { panic!("{events:?}") };
    assert!(!delivery.resumed && !delivery.recovered, "told it did not recover: {delivery:?}");
    let epoch_after: String = redis.connection().hget("longconn:chat:meta", "epoch").unwrap();
    assert_ne!(epoch_before, epoch_after, "a new epoch");
    // The room goes on: a line sent now reaches a new member of the room.
    let other = client_of(std::slice::from_ref(&node), "ws");
    common::wait_for(&other, WITHIN, common::is_connected);
    client.send(&numbered(3)).unwrap();
    // (Message 2, never acknowledged, is sent again in the new session: it may come first.)
    let mut lines = room_lines(&other, 1);
    if lines[0].ends_with("n00000002") {
        lines = room_lines(&other, 1);
    }
    assert!(lines[0].ends_with("n00000003"), "{lines:?}");
}

/// Redis restarted without its newest writes (an older copy of its file,
/// as `appendfsync everysec` can leave after a power loss): the room's top
/// is below lines the node has shown. The node begins a new epoch rather
/// than give those offsets to other lines under the same one, and the
/// client is told it did not recover.
#[test]
fn redis_restarted_without_its_newest_writes_begins_a_new_epoch() {
    let mut redis = Redis::start();
    let node = Node::start("chat", &redis.url());
    let client = client_of(std::slice::from_ref(&node), "tcp");
    common::wait_for(&client, WITHIN, common::is_connected);
    for i in 1..=3 {
        client.send(&numbered(i)).unwrap();
    }
    common::wait_acknowledged(&client, WITHIN);
    let older = DataDir::new("redis-older");
    let copy = |from: &DataDir, to: &DataDir| {
        let status = Command::new("cp").arg("-a").arg(from.0.join(".")).arg(&to.0).status().unwrap();
        assert!(status.success());
    };
    copy(&redis.dir, &older);
    for i in 4..=10 {
        client.send(&numbered(i)).unwrap();
    }
    common::wait_acknowledged(&client, WITHIN);
    while !room_lines(&client, 1)[0].ends_with("n00000010") {}
    let epoch_before: String = redis.connection().hget("longconn:chat:meta", "epoch").unwrap();

    redis.kill();
    redis.dir.wipe();
    copy(&older, &redis.dir);
    redis.spawn();
    assert!(node.server().logged("Redis lost room lines", WITHIN), "the node noticed");
    let events = common::wait_for(&client, WITHIN, common::is_connected);
    let Some(Event::Connected { delivery, .. }) = events.last() else { panic!("{events:?}") };
    assert!(!delivery.recovered, "told it did not recover: {delivery:?}");
    let epoch_after: String = redis.connection().hget("longconn:chat:meta", "epoch").unwrap();
    assert_ne!(epoch_before, epoch_after, "a new epoch");
}

/// Bytes between a node and Redis, which the test can stall in both
/// directions without closing anything.
struct StallingProxy {
    port: u16,
    stalled: Arc<(Mutex<bool>, Condvar)>,
    stop: Arc<AtomicBool>,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl StallingProxy {
    fn start(to: u16) -> StallingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = Arc::new((Mutex::new(false), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (gate, stopping) = (stalled.clone(), stop.clone());
        let accepting = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((down, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                down.set_nonblocking(false).unwrap();
                let Ok(up) = TcpStream::connect(("127.0.0.1", to)) else { continue };
                for (mut from, mut to) in [(down.try_clone().unwrap(), up.try_clone().unwrap()), (up, down)] {
                    let gate = gate.clone();
                    std::thread::spawn(move || {
                        let mut buffer = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = from.read(&mut buffer) {
                            let (lock, opened) = &*gate;
                            drop(opened.wait_while(lock.lock().unwrap(), |stalled| *stalled).unwrap());
                            if to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        StallingProxy { port, stalled, stop, accepting: Some(accepting) }
    }

    fn stall(&self, stalled: bool) {
        let (lock, changed) = &*self.stalled;
        *lock.lock().unwrap() = stalled;
        changed.notify_all();
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.stall(false);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.accepting.take() {
            let _ = thread.join();
        }
    }
}

/// The node's link to Redis stalls (nothing closes): the node stops
/// acknowledging and says so; when the link flows again it goes on, with
/// nothing acknowledged lost and nothing twice.
#[test]
fn a_node_cut_off_from_redis_stops_acknowledging_and_recovers() {
    let redis = Redis::start();
    let proxy = StallingProxy::start(redis.port);
    let node = Node::start("echo", &format!("redis://127.0.0.1:{}", proxy.port));
    let client = client_of(std::slice::from_ref(&node), "tcp");
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, count, watcher) = watch(client.clone(), stop.clone());
    wait_reconnected(&seen, 0, "first connection");
    let total = 4_000u64;
    let sender = send_all(client.clone(), total);
    wait_count(&count, 1_000);
    proxy.stall(true);
    assert!(node.server().logged("Redis is unavailable", WITHIN), "the node says it stopped acknowledging");
    // Nothing is acknowledged while the link is stalled.
    let acked = seen.lock().unwrap().acked;
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(seen.lock().unwrap().acked, acked, "no acknowledgement without Redis");
    assert!(acked < total);
    proxy.stall(false);
    assert!(node.server().logged("Redis answers again", WITHIN));
    sender.join().unwrap();
    wait_count(&count, total);
    close_and_stop(&client, &stop, watcher);
    let seen = seen.lock().unwrap();
    assert_exactly_once(&seen.numbers, total, "echoes");
    assert_eq!(seen.acked, total);
    drop(proxy);
    assert_eq!(stored(&redis, "echo").0, total);
}
