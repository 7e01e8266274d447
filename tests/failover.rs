//! A client with a list of servers (`ClientConfig::add_server`,
//! `lc_config_add_server`) against real processes on loopback: servers that
//! refuse connections or never answer are passed over at once within a
//! round, a full round of failures is one backoff step, and a protocol 2
//! session moves between servers that share its data directory with
//! nothing lost.

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::streams::{assert_exactly_once, numbered, stored_numbers, wait_count, wait_reconnected, watch, DataDir};
use common::{is_connected, receive_messages, wait_for, Ports, Server};
use longconn_core::policy::backoff::BackoffPolicy;
use longconn_core::{Client, ClientConfig, Event};

const WITHIN: Duration = Duration::from_secs(10);

/// A loopback port nothing listens on (bound, then let go).
fn refusing_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn servers_that_refuse_or_never_answer_are_passed_over_within_one_round() {
    let live = Server::start("echo", &[]);
    // Accepts connections (the kernel completes them) but never reads or answers the hello.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = ClientConfig::new(&format!("tcp://127.0.0.1:{}", refusing_port())).unwrap();
    config.add_server(&format!("tcp://127.0.0.1:{}", silent.local_addr().unwrap().port())).unwrap();
    config.add_server(&live.url("longconn")).unwrap();
    config.connect_timeout = Duration::from_millis(300);
    // A first backoff step far longer than the test waits: reaching the
    // live server in time shows no step was taken within the round.
    config.backoff =
        BackoffPolicy { initial: Duration::from_secs(30), max: Duration::from_secs(30), ..BackoffPolicy::default() };
    let client = Client::new(config).unwrap();
    let start = Instant::now();
    client.connect().unwrap();
    let events = wait_for(&client, Duration::from_secs(5), is_connected);
    assert!(start.elapsed() < Duration::from_secs(5));
    let errors: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Error { detail, .. } => Some(detail),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 2, "one failure per dead server: {events:?}");
    assert!(errors[1].contains("timed out"), "{}", errors[1]);
    assert!(
        !events.iter().any(|e| matches!(e, Event::ReconnectScheduled { .. })),
        "no backoff within a round: {events:?}"
    );
    let Some(Event::Connected { peer, server_index, .. }) = events.last() else { unreachable!() };
    assert!(peer.ends_with(&format!(":{}", live.url("longconn").rsplit(':').next().unwrap())), "{peer}");
    assert_eq!((*server_index, client.stats().server_index), (2, 2), "the event and the stats name the third");
    client.send(b"through the third").unwrap();
    assert_eq!(receive_messages(&client, 1, WITHIN), [b"through the third".to_vec()]);
}

#[test]
fn a_full_round_of_failures_is_one_backoff_step() {
    let mut config = ClientConfig::new(&format!("tcp://127.0.0.1:{}", refusing_port())).unwrap();
    config.add_server(&format!("tls://127.0.0.1:{}", refusing_port())).unwrap();
    config.add_server(&format!("tcp://localhost:{}", refusing_port())).unwrap();
    config.backoff = BackoffPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(40),
        ..BackoffPolicy::default()
    };
    let client = Client::new(config).unwrap();
    client.connect().unwrap();
    let mut steps = 0;
    let events = wait_for(&client, WITHIN, |e| {
        steps += matches!(e, Event::ReconnectScheduled { .. }) as usize;
        steps == 3
    });
    // Between backoff steps, one error per server of the list.
    let kinds: Vec<char> = events
        .iter()
        .filter_map(|e| match e {
            Event::Error { .. } => Some('e'),
            Event::ReconnectScheduled { .. } => Some('R'),
            _ => None,
        })
        .collect();
    assert_eq!(kinds.iter().collect::<String>(), "eeeReeeReeeR", "{events:?}");
}

/// Echo servers on three ports, one process at a time on one data
/// directory: each is killed while numbered messages and their echoes are
/// in flight, and the next is started on the next port, so the client's
/// attempts at the dead one are refused and it moves along its list. Both
/// directions must hold every number exactly once, and the store too.
#[test]
fn a_protocol_2_session_moves_along_the_list_exactly_once_both_ways() {
    let dir = DataDir::new("failover");
    let ports: Vec<u16> = (0..3).map(|_| refusing_port()).collect();
    let start = |i: usize| {
        let ports = Ports { longconn: ports[i % 3], ..Ports::default() };
        Server::start_on("echo", &["--quiet", "--data-dir", dir.arg()], ports, "127.0.0.1")
    };
    let mut config = ClientConfig::new(&format!("tcp://127.0.0.1:{}", ports[0])).unwrap();
    for port in &ports[1..] {
        config.add_server(&format!("tcp://127.0.0.1:{port}")).unwrap();
    }
    config.backoff = BackoffPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        ..BackoffPolicy::default()
    };
    let mut server = start(0);
    let client = Arc::new(Client::new(config).unwrap());
    client.connect().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, count, watcher) = watch(client.clone(), stop.clone());
    wait_reconnected(&seen, 0, "first connection");
    let (burst, moves) = (2_000u64, 4);
    let mut sent = 0;
    for i in 1..=moves {
        for _ in 0..burst {
            sent += 1;
            assert_eq!(client.send_wait(&numbered(sent), false, WITHIN).unwrap(), sent);
        }
        wait_count(&count, sent - burst / 2);
        let connections = seen.lock().unwrap().connections.len();
        server.kill();
        server = start(i);
        wait_reconnected(&seen, connections, &format!("move {i}"));
    }
    wait_count(&count, sent);
    client.close(WITHIN).unwrap();
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let seen = seen.lock().unwrap();
    assert_exactly_once(&seen.numbers, sent, "echoes");
    let resumed = seen.connections.iter().skip(1).filter(|d| d.resumed && d.recovered).count();
    assert_eq!(resumed, moves, "every move resumed the session: {:?}", seen.connections);
    drop(server);
    assert_exactly_once(&stored_numbers(&dir), sent, "the store");
}

#[test]
fn a_random_start_spreads_clients_over_the_list() {
    use longconn_core::policy::failover::ServerOrder;
    let live = Server::start("echo", &[]);
    let mut errors_before_connecting = std::collections::HashSet::new();
    // Twelve clients: that all start at the same one of three servers has a chance of 3 in 3^12.
    for _ in 0..12 {
        let mut config = ClientConfig::new(&format!("tcp://127.0.0.1:{}", refusing_port())).unwrap();
        config.add_server(&format!("tcp://127.0.0.1:{}", refusing_port())).unwrap();
        config.add_server(&live.url("longconn")).unwrap();
        config.server_order = ServerOrder::RandomStart;
        let client = Client::new(config).unwrap();
        client.connect().unwrap();
        let events = wait_for(&client, WITHIN, is_connected);
        errors_before_connecting.insert(events.iter().filter(|e| matches!(e, Event::Error { .. })).count());
    }
    assert!(
        errors_before_connecting.len() > 1,
        "every client started at the same server: {errors_before_connecting:?}"
    );
}

/// A connection that was up long enough to count as stable, and then ends
/// (its server killed), moves to the next server at once: no backoff step
/// (a first step of 30 s would fail the test), and the connected event
/// names the second server.
#[test]
fn a_stable_connection_that_ends_moves_to_the_next_server_at_once() {
    let (mut first, second) = (Server::start("echo", &[]), Server::start("echo", &[]));
    let mut config = ClientConfig::new(&first.url("longconn")).unwrap();
    config.add_server(&second.url("longconn")).unwrap();
    let stable_after = Duration::from_millis(100);
    config.backoff = BackoffPolicy {
        initial: Duration::from_secs(30),
        max: Duration::from_secs(30),
        stable_after,
        ..BackoffPolicy::default()
    };
    let client = Client::new(config).unwrap();
    client.connect().unwrap();
    let events = wait_for(&client, WITHIN, is_connected);
    let Some(Event::Connected { server_index: 0, .. }) = events.last() else { panic!("{events:?}") };
    let connected_at = Instant::now();
    client.send(b"on the first").unwrap();
    assert_eq!(receive_messages(&client, 1, WITHIN), [b"on the first".to_vec()]);
    // The connection's age is the condition: wait until it counts as stable.
    std::thread::sleep(stable_after.saturating_sub(connected_at.elapsed()) + Duration::from_millis(20));
    let killed_at = Instant::now();
    first.kill();
    let events = wait_for(&client, Duration::from_secs(5), is_connected);
    assert!(!events.iter().any(|e| matches!(e, Event::ReconnectScheduled { .. })), "no backoff step: {events:?}");
    let Some(Event::Connected { server_index, .. }) = events.last() else { unreachable!() };
    assert_eq!(*server_index, 1, "{events:?}");
    assert!(killed_at.elapsed() < Duration::from_secs(5));
    client.send(b"on the second").unwrap();
    assert_eq!(receive_messages(&client, 1, WITHIN), [b"on the second".to_vec()]);
}
