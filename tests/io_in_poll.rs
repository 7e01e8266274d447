//! Clients that do their I/O in `poll` (`ClientConfig::io_in_poll`), against
//! the real server: everything happens on the polling thread, in order, and
//! the connection lives (heartbeats included) while the application polls.

mod common;

use std::time::{Duration, Instant};

use common::{is_connected, receive_messages, wait_for, Server};
use longconn_core::policy::heartbeat::HeartbeatPolicy;
use longconn_core::policy::limits::OutboxLimits;
use longconn_core::{Client, ClientConfig, CloseOutcome, Error, Event, State};

const WITHIN: Duration = Duration::from_secs(20);

fn io_in_poll(url: &str) -> ClientConfig {
    let mut config = ClientConfig::new(url).unwrap();
    config.io_in_poll = true;
    config
}

fn echoes_every_message_in_order(url: &str) {
    let client = Client::new(io_in_poll(url)).unwrap();
    client.connect().unwrap();
    wait_for(&client, WITHIN, is_connected);
    let sent: Vec<Vec<u8>> = (0..2000).map(|i| format!("message {i}").into_bytes()).collect();
    // One echo taken for every two sends, then the rest: all in order.
    let mut received = Vec::new();
    for (i, message) in sent.iter().enumerate() {
        client.send(message).unwrap();
        if i % 2 == 1 {
            received.extend(receive_messages(&client, 1, WITHIN));
        }
    }
    received.extend(receive_messages(&client, sent.len() - received.len(), WITHIN));
    assert_eq!(received, sent);
    assert_eq!(client.close(Duration::from_secs(5)).unwrap(), CloseOutcome::Flushed);
    assert_eq!(client.state(), State::Closed);
}

#[test]
fn the_polling_thread_connects_sends_and_receives_in_order_over_each_transport() {
    let server = Server::start("echo", &[]);
    echoes_every_message_in_order(&server.url("longconn"));
    echoes_every_message_in_order(&server.url("length"));
    echoes_every_message_in_order(&format!("ws://127.0.0.1:{}/", server.ports.ws));
}

#[test]
fn heartbeats_keep_a_quiet_connection_while_the_application_polls() {
    // The server drops a client silent for 1 s; the client pings every 200 ms.
    let server = Server::start("echo", &["--idle-timeout", "1", "--quiet"]);
    let mut config = io_in_poll(&server.url("longconn"));
    config.heartbeat = HeartbeatPolicy { interval: Duration::from_millis(200), timeout: Duration::from_millis(1000) };
    let client = Client::new(config).unwrap();
    client.connect().unwrap();
    wait_for(&client, WITHIN, is_connected);
    // Three idle seconds spent inside poll: no event may be a disconnection.
    let quiet_until = Instant::now() + Duration::from_secs(3);
    while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
        if let Some(event) = client.poll(left).unwrap() {
            assert!(!matches!(event, Event::Disconnected { .. }), "dropped while polling: {event:?}");
        }
    }
    assert_eq!(client.state(), State::Connected);
    assert!(client.stats().last_rtt_us > 0, "a ping was answered in poll: {:?}", client.stats());
    client.send(b"still here").unwrap();
    assert_eq!(receive_messages(&client, 1, WITHIN), [b"still here".to_vec()]);
}

#[test]
fn such_a_client_takes_no_callbacks_and_send_wait_does_not_wait() {
    let server = Server::start("sink", &[]);
    let mut config = io_in_poll(&server.url("longconn"));
    config.outbox = OutboxLimits { max_messages: 4, max_bytes: 1 << 20 };
    let client = Client::new(config).unwrap();
    struct Ignore;
    impl longconn_core::EventHandler for Ignore {
        fn on_event(&self, _: &Event, _: State) {}
    }
    assert!(matches!(client.set_handler(Some(std::sync::Arc::new(Ignore))), Err(Error::InvalidArgument(_))));
    assert!(matches!(client.event_fd(), Err(Error::InvalidArgument(_))), "no descriptor to wait on");
    client.connect().unwrap();
    // Not polled: nothing is written, so the outbox fills.
    for _ in 0..4 {
        client.send(b"x").unwrap();
    }
    let started = Instant::now();
    assert!(matches!(client.send_wait(b"x", false, Duration::from_secs(5)), Err(Error::QueueFull { .. })));
    assert!(started.elapsed() < Duration::from_secs(2), "send_wait waited: {:?}", started.elapsed());
    // Polling connects and writes them; close flushes.
    wait_for(&client, WITHIN, is_connected);
    assert_eq!(client.close(Duration::from_secs(5)).unwrap(), CloseOutcome::Flushed);
}

#[test]
fn a_client_dropped_without_close_while_connected_goes_away() {
    let server = Server::start("echo", &[]);
    let client = Client::new(io_in_poll(&server.url("longconn"))).unwrap();
    client.connect().unwrap();
    wait_for(&client, WITHIN, is_connected);
    client.send(b"left behind").unwrap();
    drop(client);
    // The server sees the connection end: dropping closed it.
    assert!(server.logged("disconnect ", WITHIN), "the dropped client's connection stayed open");
    // And a new one on the same thread works.
    echoes_every_message_in_order(&server.url("longconn"));
}

#[test]
fn polls_that_never_wait_still_carry_the_connection() {
    let server = Server::start("echo", &[]);
    let client = Client::new(io_in_poll(&server.url("longconn"))).unwrap();
    client.connect().unwrap();
    // A loop of polls with no timeout, as in a game loop, bounded by a deadline.
    let deadline = Instant::now() + WITHIN;
    let mut sent = false;
    let mut echoed = false;
    while !echoed {
        assert!(Instant::now() < deadline, "no echo through polls without a timeout");
        match client.poll(Duration::ZERO).unwrap() {
            Some(event) if is_connected(&event) => {
                client.send(b"spin").unwrap();
                sent = true;
            }
            Some(Event::Message(m)) => {
                assert!(sent);
                assert_eq!(&m[..], b"spin");
                echoed = true;
            }
            _ => std::thread::yield_now(),
        }
    }
}
