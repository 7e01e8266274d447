//! The durable outbox (`ClientConfig::outbox_path`) against real processes:
//! a client process streaming numbered messages to the bundled sink
//! server is SIGKILLed at random moments and started again on the same
//! path, while the server is also killed and restarted at other moments;
//! at the end the server's store must hold every number exactly once and
//! in order. `LONGCONN_OUTBOX_KILLS` sets the client kills (8 by default,
//! 50 in CI). The client process is this test binary running the ignored
//! test `outbox_child`. Each kill comes once the file shows the stream a
//! random stretch further (or, one in five, while the client starts), so
//! every kill lands in the middle of the stream whatever the disk's speed.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::streams::{assert_exactly_once, config, numbered, stored_numbers, DataDir, Random};
use common::{Ports, Server};
use longconn_core::durable::{format, OutboxSync};
use longconn_core::{Client, Error};

/// Messages the stream holds beyond what the kills' stretches use up.
const SPARE: u64 = 5_000;
/// The longest stretch of the stream between two kills.
const STRETCH: u64 = 1_500;

/// The client process: sends what its outbox file says is left, then waits
/// until the server acknowledged everything.
#[test]
#[ignore = "run by the other tests as their client process"]
fn outbox_child() {
    let (Ok(url), Ok(path), Ok(total)) =
        (std::env::var("OUTBOX_URL"), std::env::var("OUTBOX_PATH"), std::env::var("OUTBOX_TOTAL"))
    else {
        return;
    };
    let total: u64 = total.parse().unwrap();
    let mut c = config(&url);
    c.outbox_path = Some(path.into());
    c.outbox_sync = OutboxSync::EverySend;
    let client = Client::new(c).unwrap();
    client.connect().unwrap();
    let from = client.stats().restored_number + 1;
    for i in from..=total {
        assert_eq!(client.send_wait(&numbered(i), false, Duration::from_secs(60)).unwrap(), i);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.stats().acked_number < total {
        assert!(Instant::now() < deadline, "not acknowledged: {:?}", client.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    client.close(Duration::from_secs(10)).unwrap();
}

/// The highest message number the outbox file at `path` holds.
fn held(path: &Path) -> u64 {
    format::read(&std::fs::read(path).unwrap_or_default()).map_or(0, |c| c.last_number)
}

fn start_child(url: &str, path: &Path, total: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "outbox_child", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("OUTBOX_URL", url)
        .env("OUTBOX_PATH", path)
        .env("OUTBOX_TOTAL", total.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_client_killed_and_restarted_on_its_outbox_file_delivers_every_message_exactly_once() {
    let kills: usize = std::env::var("LONGCONN_OUTBOX_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let store = DataDir::new("outbox-server");
    let files = DataDir::new("outbox-client");
    let path = files.0.join("outbox");
    let mut server = Server::start("sink", &["--quiet", "--data-dir", store.arg()]);
    let ports = Ports { longconn: server.ports.longconn, ..Ports::default() };
    let url = server.url("longconn");
    let total = SPARE + kills as u64 * STRETCH;
    let mut random = Random::new();
    let mut midway = 0;
    for kill in 0..kills {
        let mut child = start_child(&url, &path, total);
        if kill % 5 == 0 {
            // While it starts: restoring, connecting, resending.
            std::thread::sleep(Duration::from_millis(random.below(30)));
        } else {
            let target = held(&path) + 1 + random.below(STRETCH);
            let deadline = Instant::now() + Duration::from_secs(60);
            while held(&path) < target && child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "the stream did not reach {target}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let now = held(&path);
        midway += usize::from(now > 0 && now < total);
        if kill % 3 == 1 {
            server.kill();
            std::thread::sleep(Duration::from_millis(random.below(100)));
            server = Server::start_on("sink", &["--quiet", "--data-dir", store.arg()], ports, "127.0.0.1");
        }
    }
    let mut last = start_child(&url, &path, total);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = last.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the last client did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "the last client failed: {status}");
    server.kill();
    assert_exactly_once(&stored_numbers(&store), total, "the server's store");
    assert!(midway * 5 >= kills * 4, "only {midway} of {kills} kills came in the middle of the stream");
}

#[test]
fn a_second_process_on_the_same_outbox_is_refused_and_a_foreign_file_left_alone() {
    let files = DataDir::new("outbox-lock");
    let path = files.0.join("outbox");
    let mut c = config("tcp://127.0.0.1:1");
    c.outbox_path = Some(path.clone());
    let first = Client::new(c.clone()).unwrap();
    match Client::new(c.clone()) {
        Err(Error::Storage(why)) => assert!(why.contains("in use by another process"), "{why}"),
        other => panic!("a second client on the same file: {:?}", other.map(|_| ())),
    }
    drop(first);
    assert!(Client::new(c.clone()).is_ok(), "free again once the first is gone");

    let foreign = files.0.join("notes.txt");
    std::fs::write(&foreign, "not an outbox").unwrap();
    c.outbox_path = Some(foreign.clone());
    match Client::new(c) {
        Err(Error::Storage(why)) => assert!(why.contains("not a longconn outbox file"), "{why}"),
        other => panic!("a foreign file: {:?}", other.map(|_| ())),
    }
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "not an outbox");
}

/// Messages kept in a file (no server reachable), the file then cut at
/// random places or given random bytes, as a crash mid-write or damage
/// would: a client started on it reports what it dropped in an error event,
/// and sends exactly the intact prefix, in order, each message whole.
#[test]
fn a_torn_or_damaged_file_sends_its_intact_prefix_and_reports_the_rest() {
    let files = DataDir::new("outbox-torn");
    let server = Server::start("echo", &["--quiet"]);
    let mut random = Random::new();
    for round in 0..6 {
        let path = files.0.join(format!("outbox-{round}"));
        {
            let mut c = config("tcp://127.0.0.1:1");
            c.outbox_path = Some(path.clone());
            let client = Client::new(c).unwrap();
            for i in 1..=50 {
                client.send(&numbered(i)).unwrap();
            }
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let at = format::HEADER_LEN + random.below((bytes.len() - format::HEADER_LEN) as u64) as usize;
        if round % 2 == 0 {
            bytes.truncate(at);
        } else {
            let end = (at + 8).min(bytes.len());
            for byte in &mut bytes[at..end] {
                *byte = random.below(256) as u8;
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let intact = format::read(&bytes).unwrap();
        let kept = intact.last_number;

        let mut c = config(&server.url("longconn"));
        c.outbox_path = Some(path.clone());
        let client = Client::new(c).unwrap();
        assert_eq!(client.stats().restored_number, kept);
        client.connect().unwrap();
        let mut reported = false;
        let mut echoed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while (echoed.len() as u64) < kept || (intact.dropped.is_some() && !reported) {
            assert!(Instant::now() < deadline, "round {round}: {} of {kept} echoes, reported {reported}", echoed.len());
            match client.poll(Duration::from_millis(50)).unwrap() {
                Some(longconn_core::Event::Message(m)) => echoed.push(m.to_vec()),
                Some(longconn_core::Event::Error { detail, .. }) if detail.contains("outbox file was cut short") => {
                    reported = true
                }
                _ => {}
            }
        }
        let expected: Vec<Vec<u8>> = (1..=kept).map(numbered).collect();
        assert_eq!(echoed, expected, "round {round}: the intact prefix, whole and in order");
        client.close(Duration::from_secs(5)).unwrap();
    }
}
