//! A deterministic simulation of a protocol 2 client and the bundled
//! server over a faulty network: the real client session
//! (`longconn-core`, on a simulated runtime and clock through its dialer
//! and `on_current_runtime` seams) and the real server connection code and
//! store (`longconn-server`, its store as a task of the simulated host)
//! under turmoil, which runs every host on one thread with a seeded random
//! source, so a failing seed replays exactly.
//!
//! Each seed draws a schedule of faults while the client streams numbered
//! messages and the server echoes them: partitions both ways, one way only
//! (a half-open link, in either direction), held deliveries released
//! later, random latency that reorders deliveries between connections,
//! and server crashes with the store kept, each lasting shorter or longer
//! than the heartbeat timeout. Checked for every seed: the echoes arrive
//! exactly once and in order; the store holds every message exactly once
//! and in order; at every crash, the store already holds every message the
//! client had seen acknowledged; and every message ends acknowledged.
//!
//!   cargo test -p longconn-server --test simulation
//!   LONGCONN_SIM_SEEDS=5000 cargo test -p longconn-server --release --test simulation
//!   LONGCONN_SIM_SEED=1234 cargo test -p longconn-server --test simulation   (replays one seed)
//!
//! `make test` runs 200 seeds; CI sets `LONGCONN_SIM_SEEDS` higher.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use longconn_core::policy::backoff::BackoffPolicy;
use longconn_core::policy::heartbeat::HeartbeatPolicy;
use longconn_core::policy::limits::OutboxLimits;
use longconn_core::protocol::Framing;
use longconn_core::transport::dial::{CustomDialer, DialFuture, Dialer};
use longconn_core::transport::stream::ByteStream;
use longconn_core::{Client, ClientConfig, Error, Event};
use longconn_server::args::{Args, Command, Listener};
use longconn_server::store::inbound_messages;
use longconn_server::{open_room, peer, StoreRuns};

const PORT: u16 = 7070;
/// Messages each seed streams through the echo server.
const MESSAGES: u64 = 300;
/// Seeds `make test` runs; `LONGCONN_SIM_SEEDS` sets another count.
const DEFAULT_SEEDS: u64 = 200;
/// Simulated time one seed may take before it counts as stuck.
const SIM_LIMIT: Duration = Duration::from_secs(600);

/// Dials the simulated network.
struct SimDialer;

impl Dialer for SimDialer {
    fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect((host, port)).await?;
            Ok((ByteStream::Other(Box::new(stream)), format!("{host}:{port}")))
        })
    }
}

/// What the client saw, shared with the test's thread (the simulation
/// runs every host on that thread).
#[derive(Default)]
struct Seen {
    /// Echo numbers, in order of arrival.
    echoes: Vec<u64>,
    /// The client's acknowledged number when it last looked.
    acked: u64,
    /// Connected and disconnected events with the simulated time: two runs
    /// of one seed must give the same.
    trace: Vec<String>,
    /// An echo out of order or twice: the first one, with what was expected.
    broken: Option<String>,
    done: bool,
}

/// A small xorshift generator for the fault schedule.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// One fault, from now until `until` (simulated time). The network ones
/// hit the client's link to the proxy or the proxy's link to the server.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Nothing crosses either way.
    Partition,
    /// The server's side no longer reaches the client's; the other way
    /// still works (a half-open link).
    ServerToClientLost,
    /// The client's side no longer reaches the server's.
    ClientToServerLost,
    /// Deliveries wait, then all arrive at once.
    Hold,
    /// The server is down (its store kept on disk).
    Crash,
    /// The proxy stops forwarding what the server sends on the
    /// connections open now (so the server's writes stall once the
    /// buffers fill), keeps forwarding the client's, and closes nothing;
    /// later connections pass. At the end the held bytes go on.
    ProxyStallsDown,
    /// The proxy holds what the client sends on the connections open now
    /// and delivers it at the end, late: after the client has likely
    /// given up on that connection and resumed on another.
    ProxyStallsUp,
}

/// Fault kinds, for drawing one and for the tally.
const FAULTS: [Fault; 7] = [
    Fault::Partition,
    Fault::ServerToClientLost,
    Fault::ClientToServerLost,
    Fault::Hold,
    Fault::Crash,
    Fault::ProxyStallsDown,
    Fault::ProxyStallsUp,
];

/// A fault in force: its kind, when it ends, the link it hits (client
/// side first) and the proxy gates it holds.
type ActiveFault = (Fault, Duration, (&'static str, &'static str), Vec<Rc<Gate>>);

/// Whether one direction of one proxied connection is held.
#[derive(Default)]
struct Gate {
    held: std::cell::Cell<bool>,
    changed: tokio::sync::Notify,
}

impl Gate {
    async fn pass(&self) {
        while self.held.get() {
            self.changed.notified().await;
        }
    }

    fn set(&self, held: bool) {
        self.held.set(held);
        self.changed.notify_waiters();
    }
}

/// The gates of the proxy's connections open now: (client to server, server to client).
type Gates = Rc<RefCell<Vec<(std::rc::Weak<Gate>, std::rc::Weak<Gate>)>>>;

/// A TCP proxy between client and server: one upstream connection per
/// client connection, each direction forwarded through a gate.
async fn run_proxy(gates: Gates) -> turmoil::Result {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (inbound, _) = listener.accept().await?;
        let Ok(outbound) = turmoil::net::TcpStream::connect(("server", PORT)).await else { continue };
        let (up, down) = (Rc::new(Gate::default()), Rc::new(Gate::default()));
        gates.borrow_mut().push((Rc::downgrade(&up), Rc::downgrade(&down)));
        let (from_client, to_client) = inbound.into_split();
        let (from_server, to_server) = outbound.into_split();
        for (mut from, mut to, gate) in [(from_client, to_server, up), (from_server, to_client, down)] {
            tokio::task::spawn_local(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    gate.pass().await;
                    match from.read(&mut buf).await {
                        Ok(n) if n > 0 => {
                            gate.pass().await;
                            if to.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
                let _ = to.shutdown().await;
            });
        }
    }
}

fn numbered(i: u64) -> Vec<u8> {
    format!("n{i:08}").into_bytes()
}

fn number_of(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload).ok()?.strip_prefix('n')?.parse().ok()
}

fn server_args(dir: &Path) -> Arc<Args> {
    let dir = dir.to_str().expect("a UTF-8 path");
    let words = ["--mode", "echo", "--quiet", "--data-dir", dir, "--history", "10000000"];
    match Args::parse(words.iter().map(|w| w.to_string())) {
        Ok(Command::Serve(args)) => Arc::new(*args),
        other => panic!("server arguments: {other:?}"),
    }
}

fn client_config() -> ClientConfig {
    let mut config = ClientConfig::new(&format!("tcp://proxy:{PORT}")).expect("a valid URL");
    config.on_current_runtime = true;
    config.dialer = Some(CustomDialer(Arc::new(SimDialer)));
    config.heartbeat = HeartbeatPolicy { interval: Duration::from_millis(200), timeout: Duration::from_millis(800) };
    // No jitter: the seed alone decides the schedule.
    config.backoff = BackoffPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(400),
        jitter: 0.0,
        ..BackoffPolicy::default()
    };
    config.connect_timeout = Duration::from_secs(2);
    config.outbox = OutboxLimits { max_messages: 64, max_bytes: 1 << 20 };
    config
}

/// The client: streams the numbered messages a few at a time, takes every
/// event, and checks the echoes as they come.
async fn run_client(seen: Rc<RefCell<Seen>>, burst: u64) -> turmoil::Result {
    let client = Client::new(client_config())?;
    client.connect()?;
    let mut next = 1;
    loop {
        for _ in 0..burst {
            if next > MESSAGES {
                break;
            }
            match client.send(&numbered(next)) {
                Ok(()) => next += 1,
                Err(Error::QueueFull { .. }) => break,
                Err(e) => return Err(e.into()),
            }
        }
        while let Some(event) = client.poll(Duration::ZERO)? {
            let mut seen = seen.borrow_mut();
            let at = turmoil::elapsed().as_millis();
            match event {
                Event::Message(m) => {
                    let number = number_of(&m).unwrap_or(0);
                    let expected = seen.echoes.len() as u64 + 1;
                    if number != expected && seen.broken.is_none() {
                        seen.broken = Some(format!("echo {number} arrived when {expected} was expected, at {at} ms"));
                    }
                    seen.echoes.push(number);
                }
                Event::Connected { delivery, .. } => seen
                    .trace
                    .push(format!("{at} connected resumed={} recovered={}", delivery.resumed, delivery.recovered)),
                Event::Disconnected { reason, .. } => seen.trace.push(format!("{at} disconnected {reason:?}")),
                _ => {}
            }
        }
        let acked = client.stats().acked_number;
        let finished = {
            let mut shared = seen.borrow_mut();
            shared.acked = acked;
            shared.done = shared.broken.is_some() || (shared.echoes.len() as u64 >= MESSAGES && acked == MESSAGES);
            shared.done
        };
        if finished {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The server: the real connection code over simulated TCP, its store on
/// disk in `dir` (kept across crashes).
async fn run_server(dir: PathBuf) -> turmoil::Result {
    let args = server_args(&dir);
    let (room, _) = open_room(&args, StoreRuns::AsLocalTask)?;
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (stream, from) = listener.accept().await?;
        let (args, room) = (args.clone(), room.clone());
        tokio::task::spawn_local(async move {
            let stream = ByteStream::Other(Box::new(stream));
            peer::serve_stream(stream, &from.to_string(), Listener::Tcp(Framing::Longconn), args, room).await
        });
    }
}

/// Every client message number in the store, in the store's order.
fn stored_numbers(dir: &Path) -> Result<Vec<u64>, String> {
    let messages = inbound_messages(&dir.join("longconn.db"))?;
    Ok(messages.iter().map(|m| number_of(m.parts().1).unwrap_or(0)).collect())
}

fn exactly_once_in_order(numbers: &[u64]) -> Result<(), String> {
    match numbers.iter().zip(1..).find(|(&got, want)| got != *want) {
        Some((got, want)) => Err(format!("expected {want}, found {got} ({} in all)", numbers.len())),
        None => Ok(()),
    }
}

/// A directory for one seed's store, on tmpfs when there is one (commits
/// fsync), removed when dropped.
struct DataDir(PathBuf);

impl DataDir {
    fn new(seed: u64) -> DataDir {
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = base.join(format!("longconn-sim-{}-{seed}-{run}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("make the data directory");
        DataDir(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one seed went through.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    faults: [u64; FAULTS.len()],
    connections: u64,
}

/// Runs one seed; returns its trace, or what went wrong.
fn run_seed(seed: u64) -> Result<Vec<String>, String> {
    run_seed_counting(seed, &mut Tally::default())
}

fn run_seed_counting(seed: u64, tally: &mut Tally) -> Result<Vec<String>, String> {
    let dir = DataDir::new(seed);
    let mut random = Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(SIM_LIMIT)
        .min_message_latency(Duration::from_micros(100))
        .max_message_latency(Duration::from_millis(1 + random.below(30)))
        .enable_random_order()
        .build();
    let server_dir = dir.0.clone();
    sim.host("server", move || run_server(server_dir.clone()));
    let gates: Gates = Rc::default();
    let proxy_gates = gates.clone();
    sim.host("proxy", move || run_proxy(proxy_gates.clone()));
    let seen = Rc::new(RefCell::new(Seen::default()));
    sim.client("client", run_client(seen.clone(), 1 + random.below(4)));
    // Faults come one at a time, each 20 to 400 ms after the last one
    // ended, and last from 50 ms to 3 s: shorter and longer than the
    // client's 800 ms heartbeat timeout.
    let mut fault: Option<ActiveFault> = None;
    let mut next_fault = Duration::from_millis(20 + random.below(380));
    let mut crashes = 0;
    loop {
        let finished = sim.step().map_err(|e| format!("the simulation failed: {e}"))?;
        if let Some(broken) = seen.borrow().broken.clone() {
            return Err(broken);
        }
        if finished {
            break;
        }
        let now = sim.elapsed();
        match &fault {
            Some((kind, until, (a, b), held)) if now >= *until => {
                match kind {
                    Fault::Partition | Fault::ServerToClientLost | Fault::ClientToServerLost => sim.repair(*a, *b),
                    Fault::Hold => sim.release(*a, *b),
                    Fault::Crash => sim.bounce("server"),
                    Fault::ProxyStallsDown | Fault::ProxyStallsUp => held.iter().for_each(|gate| gate.set(false)),
                }
                fault = None;
                next_fault = now + Duration::from_millis(20 + random.below(380));
            }
            None if !seen.borrow().done && now >= next_fault => {
                let kind = FAULTS[random.below(FAULTS.len() as u64) as usize];
                tally.faults[kind as usize] += 1;
                // Client side first, server side second.
                let link = if random.below(2) == 0 { ("client", "proxy") } else { ("proxy", "server") };
                let mut held = Vec::new();
                match kind {
                    Fault::Partition => sim.partition(link.0, link.1),
                    Fault::ServerToClientLost => sim.partition_oneway(link.1, link.0),
                    Fault::ClientToServerLost => sim.partition_oneway(link.0, link.1),
                    Fault::Hold => sim.hold(link.0, link.1),
                    Fault::Crash => {
                        let acked = seen.borrow().acked;
                        sim.crash("server");
                        crashes += 1;
                        // Everything the client saw acknowledged is in the store.
                        let stored = stored_numbers(&dir.0)?;
                        exactly_once_in_order(&stored).map_err(|e| format!("store at crash {crashes}: {e}"))?;
                        if (stored.len() as u64) < acked {
                            return Err(format!(
                                "crash {crashes}: the client saw {acked} acknowledged, the store holds {}",
                                stored.len()
                            ));
                        }
                    }
                    Fault::ProxyStallsDown | Fault::ProxyStallsUp => {
                        let up = matches!(kind, Fault::ProxyStallsUp);
                        for (client_to_server, server_to_client) in gates.borrow_mut().drain(..) {
                            let gate = if up { client_to_server } else { server_to_client };
                            if let Some(gate) = gate.upgrade() {
                                gate.set(true);
                                held.push(gate);
                            }
                        }
                    }
                }
                fault = Some((kind, now + Duration::from_millis(50 + random.below(2950)), link, held));
            }
            _ => {}
        }
    }
    let seen = seen.borrow();
    tally.connections += seen.trace.iter().filter(|t| t.contains(" connected ")).count() as u64;
    exactly_once_in_order(&seen.echoes).map_err(|e| format!("echoes: {e}"))?;
    if seen.echoes.len() as u64 != MESSAGES || seen.acked != MESSAGES {
        return Err(format!("{} echoes, {} acknowledged of {MESSAGES}", seen.echoes.len(), seen.acked));
    }
    drop(sim); // the server's store closes with its host
    let stored = stored_numbers(&dir.0)?;
    exactly_once_in_order(&stored).map_err(|e| format!("store: {e}"))?;
    if stored.len() as u64 != MESSAGES {
        return Err(format!("the store holds {} of {MESSAGES}", stored.len()));
    }
    Ok(seen.trace.clone())
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("LONGCONN_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    let count = std::env::var("LONGCONN_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_SEEDS);
    (1..=count).collect()
}

#[test]
fn nothing_lost_nothing_twice_under_seeded_network_faults_and_server_crashes() {
    let seeds = seeds();
    let mut failures = Vec::new();
    let mut tally = Tally::default();
    for &seed in &seeds {
        if let Err(why) = run_seed_counting(seed, &mut tally) {
            eprintln!("seed {seed} FAILED: {why} (replay: LONGCONN_SIM_SEED={seed})");
            failures.push(seed);
        }
    }
    assert!(failures.is_empty(), "{} of {} seeds failed: {failures:?}", failures.len(), seeds.len());
    let [partitions, lost_down, lost_up, holds, crashes, stalls_down, stalls_up] = tally.faults;
    println!(
        "simulation: {} seeds, each {MESSAGES} messages, exactly once both ways; faults: {partitions} \
         partitions, {lost_down} server-to-client and {lost_up} client-to-server one-way losses, {holds} \
         holds, {crashes} server crashes, {stalls_down} proxy stalls of the server's writes and {stalls_up} \
         of the client's (delivered late); {} connections",
        seeds.len(),
        tally.connections
    );
}

#[test]
fn a_seed_replays_exactly() {
    let seed = seeds()[0];
    let first = run_seed(seed).expect("the seed passes");
    let again = run_seed(seed).expect("the seed passes again");
    assert!(first.len() > 1, "seed {seed}'s faults made the client reconnect: {first:?}");
    assert_eq!(first, again, "seed {seed} gave two different runs");
}
