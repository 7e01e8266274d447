//! Test support: the real `longconn-server` process on loopback, and event waiting.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use longconn_core::{Client, Event};

mod server_binary;
pub mod streams;
pub use server_binary::server_binary;

/// A running test server; killed when dropped.
pub struct Server {
    child: Child,
    pub ports: Ports,
    /// Every line the server printed so far.
    pub log: Arc<Mutex<Vec<String>>>,
    extra: Vec<String>,
    /// The self-signed certificate of the TLS listeners, if any.
    pub certificate: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Ports {
    pub longconn: u16,
    pub length: u16,
    pub line: u16,
    pub ws: u16,
    /// Only when started with `--tls-port` / `--wss-port`.
    pub tls: u16,
    pub wss: u16,
}

impl Server {
    /// Starts a server on free ports in `mode` with extra flags.
    pub fn start(mode: &str, extra: &[&str]) -> Server {
        Server::start_on(mode, extra, Ports::default(), "127.0.0.1")
    }

    pub fn start_on(mode: &str, extra: &[&str], ports: Ports, host: &str) -> Server {
        Server::start_in(None, mode, extra, ports, host)
    }

    /// Starts a server inside network namespace `netns` (made by the test;
    /// `ip netns exec` execs the server, so its pid is the server's).
    pub fn start_in(netns: Option<&str>, mode: &str, extra: &[&str], ports: Ports, host: &str) -> Server {
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !extra.iter().any(|a| a == "--data-dir" || a == "--store") {
            // Tests that restart on fixed ports would otherwise share a store under $HOME.
            extra.extend(["--data-dir".to_string(), "memory".to_string()]);
        }
        let mut command = match netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(server_binary());
                command
            }
            None => Command::new(server_binary()),
        };
        let mut child = command
            .args(["--mode", mode, "--host", host])
            .args(["--longconn-port", &ports.longconn.to_string()])
            .args(["--length-port", &ports.length.to_string()])
            .args(["--line-port", &ports.line.to_string()])
            .args(["--ws-port", &ports.ws.to_string()])
            .args(&extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start longconn-server");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in stdout.lines().map_while(Result::ok) {
                if line.starts_with("ready") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                log2.lock().unwrap().push(line);
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("server became ready");
        let mut found = Ports::default();
        for line in log.lock().unwrap().iter() {
            let mut parts = line.split_whitespace();
            if parts.next() != Some("listening") {
                continue;
            }
            let framing = parts.next().unwrap();
            let port: u16 = parts.next().unwrap().rsplit(':').next().unwrap().parse().unwrap();
            match framing {
                "longconn" => found.longconn = port,
                "length" => found.length = port,
                "line" => found.line = port,
                "ws" => found.ws = port,
                "tls" => found.tls = port,
                "wss" => found.wss = port,
                _ => {}
            }
        }
        let certificate =
            log.lock().unwrap().iter().find_map(|l| l.strip_prefix("tls certificate ").map(std::path::PathBuf::from));
        Server { child, ports: found, log, extra, certificate }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, framing: &str) -> String {
        match framing {
            "longconn" => format!("tcp://127.0.0.1:{}", self.ports.longconn),
            "length" => format!("tcp://127.0.0.1:{}?framing=length", self.ports.length),
            "line" => format!("tcp://127.0.0.1:{}?framing=line", self.ports.line),
            other => panic!("unknown framing {other}"),
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Sends a signal by name (STOP, CONT) with the kill command; for STOP,
    /// returns once the process is stopped (a signal takes effect when the
    /// process next runs, which on a busy machine can be after it handled
    /// what arrived meanwhile).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().unwrap();
        assert!(status.success());
        if name == "STOP" {
            let deadline = Instant::now() + Duration::from_secs(10);
            let state = || {
                let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
                stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
            };
            while state().as_deref() != Some("T") {
                assert!(Instant::now() < deadline, "the server did not stop");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Whether the server printed a line containing `needle`, waiting up to `within`.
    pub fn logged(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = Command::new("kill").arg("-CONT").arg(self.pid().to_string()).status();
        }
        self.kill();
    }
}

/// Polls `client` until `matches` accepts an event or `within` passes.
/// Returns every event seen, the matching one last.
pub fn wait_for(client: &Client, within: Duration, mut matches: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.poll(left).unwrap() {
            Some(event) => {
                let done = matches(&event);
                seen.push(event);
                if done {
                    return seen;
                }
            }
            None => panic!("no matching event within {within:?}; saw {seen:?}"),
        }
    }
}

/// Receives `count` messages (skipping other events) within `within`.
pub fn receive_messages(client: &Client, count: usize, within: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::with_capacity(count);
    if count == 0 {
        return got;
    }
    wait_for(client, within, |e| {
        if let Event::Message(m) = e {
            got.push(m.to_vec());
        }
        got.len() == count
    });
    got
}

pub fn is_connected(e: &Event) -> bool {
    matches!(e, Event::Connected { .. })
}

/// Waits until the server has acknowledged everything `client` wrote
/// (protocol version 2; at once under best effort).
pub fn wait_acknowledged(client: &Client, within: Duration) {
    let deadline = Instant::now() + within;
    while client.stats().queued_messages > 0 {
        assert!(Instant::now() < deadline, "not acknowledged within {within:?}: {:?}", client.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The server's half of a WebSocket handshake, for test servers of our own
/// making: answers without choosing a subprotocol. Returns whether the
/// client offered `longconn.v2` (it then drops this connection and comes
/// back without the offer).
pub fn accept_websocket(stream: &mut TcpStream) -> bool {
    accept_websocket_with(stream, None)
}

/// [`accept_websocket`], answering `Sec-WebSocket-Extensions` with `extensions`.
pub fn accept_websocket_with(stream: &mut TcpStream, extensions: Option<&str>) -> bool {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let (mut key, mut offered_v2) = (String::new(), false);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("sec-websocket-key:") {
            key = line[line.len() - value.len()..].trim().to_string();
        }
        offered_v2 |= lower.starts_with("sec-websocket-protocol:") && lower.contains("longconn.v2");
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let extensions = extensions.map_or(String::new(), |e| format!("Sec-WebSocket-Extensions: {e}\r\n"));
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extensions}\r\n"
    );
    stream.write_all(response.as_bytes()).unwrap();
    offered_v2
}
