//! What the delivery tests share: numbered message streams, a thread that
//! records what a client receives, exactly-once checks, and the server's
//! store read back.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use longconn_core::event::Delivery;
use longconn_core::policy::backoff::BackoffPolicy;
use longconn_core::policy::heartbeat::HeartbeatPolicy;
use longconn_core::policy::limits::OutboxLimits;
use longconn_core::{Client, ClientConfig, DisconnectReason, Event};

/// How long a chaos run may take to deliver everything after the last restart.
pub const SETTLE: Duration = Duration::from_secs(60);

/// A fresh directory for a server's store, removed when dropped.
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn new(name: &str) -> DataDir {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("longconn-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        DataDir(dir)
    }

    pub fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }

    pub fn wipe(&self) {
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
pub struct Random(u64);

impl Random {
    pub fn new() -> Random {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
        eprintln!("random seed {seed}");
        Random(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

pub fn config(url: &str) -> ClientConfig {
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

pub fn numbered(i: u64) -> Vec<u8> {
    format!("n{i:08}").into_bytes()
}

/// A numbered message padded to about `size` bytes, so a stalled
/// direction fills its buffers quickly.
pub fn padded(i: u64, size: usize) -> Vec<u8> {
    let mut message = format!("n{i:08}-").into_bytes();
    message.resize(size.max(message.len()), b'x');
    message
}

pub fn number_of(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?.rsplit(": ").next()?.strip_prefix('n')?;
    text.split('-').next()?.parse().ok()
}

/// What a receiving thread saw.
#[derive(Default)]
pub struct Seen {
    /// The numbers received, in order.
    pub numbers: Vec<u64>,
    pub connections: Vec<Delivery>,
    /// When each connected event arrived.
    pub connected_at: Vec<Instant>,
    pub heartbeat_timeouts: usize,
    /// When the last heartbeat timeout was reported.
    pub timed_out_at: Option<Instant>,
    pub acked: u64,
}

/// Polls `client` on a thread until `stop`, recording messages and events.
pub fn watch(
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
                Event::Connected { delivery, .. } => {
                    seen.connections.push(delivery);
                    seen.connected_at.push(Instant::now());
                }
                Event::Disconnected { reason: DisconnectReason::HeartbeatTimeout, .. } => {
                    seen.heartbeat_timeouts += 1;
                    seen.timed_out_at = Some(Instant::now());
                }
                Event::Acknowledged { up_to } => seen.acked = seen.acked.max(up_to),
                Event::Closed { .. } => return,
                _ => {}
            }
        }
    });
    (seen, count, thread)
}

/// Sends `total` numbered messages, waiting for outbox room when it is full.
pub fn send_all(client: Arc<Client>, total: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for i in 1..=total {
            let number = client.send_wait(&numbered(i), false, Duration::from_secs(120)).expect("queued");
            assert_eq!(number, i, "messages are numbered in the order they were queued");
        }
    })
}

/// Asserts `numbers` is exactly 1..=total.
pub fn assert_exactly_once(numbers: &[u64], total: u64, what: &str) {
    let dup_or_gap = numbers.iter().zip(1..).find(|(&got, want)| got != *want);
    if let Some((got, want)) = dup_or_gap {
        panic!("{what}: expected message {want}, got {got} (received {} in all)", numbers.len());
    }
    assert_eq!(numbers.len() as u64, total, "{what}: every message arrived");
}

/// Waits until `client` has made more than `connections` connections.
pub fn wait_reconnected(seen: &Mutex<Seen>, connections: usize, what: &str) {
    let deadline = Instant::now() + SETTLE;
    while seen.lock().unwrap().connections.len() <= connections {
        assert!(Instant::now() < deadline, "{what}: the client did not reconnect");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until `count` reaches `target` (bounded).
pub fn wait_count(count: &AtomicU64, target: u64) {
    let deadline = Instant::now() + SETTLE;
    while count.load(Ordering::Relaxed) < target && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `total` numbered messages of about `size` bytes, waiting for outbox room.
pub fn send_padded(client: Arc<Client>, total: u64, size: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for i in 1..=total {
            assert_eq!(client.send_wait(&padded(i, size), false, Duration::from_secs(120)).expect("queued"), i);
        }
    })
}

/// The message numbers of every client message in the server's store
/// (echo and sink modes, one session), in the order the store numbered
/// them; panics if the store's own numbering has a gap or an overlap.
pub fn stored_numbers(dir: &DataDir) -> Vec<u64> {
    let messages = longconn_server::store::inbound_messages(&dir.0.join("longconn.db")).expect("the store reads back");
    messages.iter().map(|m| number_of(m.parts().1).expect("a numbered message")).collect()
}
