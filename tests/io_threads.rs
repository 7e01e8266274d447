//! Where connections run: each on one I/O thread for its whole life, spread
//! over the I/O threads by how many each holds. Its own test binary, so the
//! process's I/O threads hold only these clients.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use common::Server;
use longconn_core::{Client, ClientConfig, Event, EventHandler, State};

const CLIENTS: usize = 4;
const MESSAGES: usize = 50;

/// Records the thread of every callback of one client.
#[derive(Default)]
struct Threads {
    seen: Mutex<(Vec<(ThreadId, String)>, usize)>,
    changed: Condvar,
}

impl EventHandler for Threads {
    fn on_event(&self, _event: &Event, _state: State) {
        self.record(false);
    }

    fn on_message(&self, _payload: &[u8], _text: bool, _state: State) {
        self.record(true);
    }
}

impl Threads {
    fn record(&self, message: bool) {
        let thread = std::thread::current();
        let mut seen = self.seen.lock().unwrap();
        seen.0.push((thread.id(), thread.name().unwrap_or("").to_string()));
        seen.1 += usize::from(message);
        self.changed.notify_all();
    }

    /// Waits (bounded) until `count` messages were delivered; the threads seen.
    fn wait_messages(&self, count: usize) -> Vec<(ThreadId, String)> {
        let seen = self.seen.lock().unwrap();
        let (seen, timeout) = self.changed.wait_timeout_while(seen, Duration::from_secs(20), |s| s.1 < count).unwrap();
        assert!(!timeout.timed_out(), "only {} of {count} echoes arrived", seen.1);
        seen.0.clone()
    }
}

#[test]
fn each_connection_stays_on_one_io_thread_and_they_spread_over_the_threads() {
    let server = Server::start("echo", &[]);
    let mut clients = Vec::new();
    let mut thread_of = Vec::new();
    for _ in 0..CLIENTS {
        let mut config = ClientConfig::new(&server.url("longconn")).unwrap();
        config.callbacks_on_io_thread = true;
        let client = Client::new(config).unwrap();
        let threads = Arc::new(Threads::default());
        client.set_handler(Some(threads.clone())).unwrap();
        client.connect().unwrap();
        // One at a time: each echo is a read of its own, whose callbacks run
        // where it was read unless the callback thread is busy with this
        // client just then (it is, briefly, once the handler is registered).
        for i in 0..MESSAGES {
            client.send(format!("message {i}").as_bytes()).unwrap();
            threads.wait_messages(i + 1);
        }
        let seen = threads.wait_messages(MESSAGES);
        // A callback finds the callback thread busy with this client now and
        // then (registering the handler schedules it once) and runs there:
        // the rule is about the I/O threads.
        let on_io: Vec<&ThreadId> = seen.iter().filter(|(_, name)| name == "longconn-io").map(|(id, _)| id).collect();
        assert!(!on_io.is_empty(), "callbacks on an I/O thread: {seen:?}");
        let distinct: HashSet<&ThreadId> = on_io.iter().copied().collect();
        assert_eq!(distinct.len(), 1, "one client's callbacks ran on {} I/O threads: {seen:?}", distinct.len());
        thread_of.push(*on_io[0]);
        clients.push(client);
    }
    let mut per_thread: HashMap<ThreadId, usize> = HashMap::new();
    for id in &thread_of {
        *per_thread.entry(*id).or_default() += 1;
    }
    // The default two I/O threads, each given every other client.
    assert_eq!(per_thread.len(), 2, "clients per thread: {per_thread:?}");
    assert!(per_thread.values().all(|&n| n == CLIENTS / 2), "clients per thread: {per_thread:?}");
    assert_ne!(thread_of[0], thread_of[1], "the second client goes to the emptier thread");
}
