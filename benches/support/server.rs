//! The `longconn-server` process the benchmarks measure against: a fresh
//! one per measurement, on ports the kernel picks, stopped by its pid when
//! dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::server_binary;

pub struct Server {
    child: Child,
    pub port: u16,
    pub ws_port: u16,
    /// The longconn protocol's port (versions 1 and 2).
    pub lc_port: u16,
    /// The store's directory, removed with the server.
    data_dir: Option<std::path::PathBuf>,
}

// Not every benchmark uses every URL.
#[allow(dead_code)]
impl Server {
    pub fn start(mode: &str) -> Server {
        Server::start_with_store(mode, false)
    }

    /// A server whose store is a SQLite file on disk (`durable`) or in memory.
    pub fn start_with_store(mode: &str, durable: bool) -> Server {
        let data_dir = durable.then(|| {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            std::env::temp_dir().join(format!("longconn-bench-{}-{nanos}", std::process::id()))
        });
        let store = data_dir.as_ref().map_or("memory".to_string(), |d| d.display().to_string());
        let mut child = Command::new(server_binary::server_binary())
            .args(["--mode", mode, "--quiet", "--threads", "1", "--data-dir", &store])
            .args(["--longconn-port", "0", "--line-port", "off", "--length-port", "0", "--ws-port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start longconn-server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut port, mut ws_port, mut lc_port) = (0, 0, 0);
        for line in lines.by_ref() {
            let line = line.unwrap();
            let port_of = |addr: &str| addr.rsplit(':').next().unwrap().parse().unwrap();
            if let Some(addr) = line.strip_prefix("listening length ") {
                port = port_of(addr);
            }
            if let Some(addr) = line.strip_prefix("listening ws ") {
                ws_port = port_of(addr);
            }
            if let Some(addr) = line.strip_prefix("listening longconn ") {
                lc_port = port_of(addr);
            }
            if line.starts_with("ready") {
                break;
            }
        }
        Server { child, port, ws_port, lc_port, data_dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the server process has used so far (user + system), from /proc.
    pub fn cpu_time(&self) -> std::time::Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // After the command name in parentheses: the state, ..., utime (12th), stime (13th).
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        std::time::Duration::from_secs_f64((field(11) + field(12)) as f64 / hz)
    }

    pub fn lc_url(&self) -> String {
        format!("tcp://127.0.0.1:{}\0", self.lc_port)
    }

    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}?framing=length\0", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/\0", self.ws_port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
