//! The durable outbox (`ClientConfig::outbox_path`), measured from outside
//! in one run on one machine: `MESSAGES` 64-byte messages sent as fast as
//! the outbox takes them (`send_wait`, up to 100,000 unacknowledged) to the
//! bundled sink server (its store in memory, so the client's file is what
//! differs), timed until the server acknowledged the last; the outbox in
//! memory only, then in a file synced on every send, within 10 ms, and
//! never (the kernel's writeback). Next to them Paho's C client at QoS 1
//! against Debian's mosquitto, with its file persistence on and off
//! (`benches/peers/mqtt_ack.c`, `MQTT_PERSIST_DIR`). Per message: the
//! client's CPU time and the bytes it wrote to storage
//! (`/proc/PID/io` `write_bytes`). Rounds interleaved, medians.
//!
//!   make bench-outbox                 (installs mosquitto and libpaho-mqtt-dev)
//!   ROUNDS=5 MESSAGES=100000 cargo bench --bench outbox
//!
//! A benchmark, not a test: it prints figures and asserts only that every
//! message was acknowledged.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use longconn_core::durable::OutboxSync;
use longconn_core::transport::proxy::ProxySetting;
use longconn_core::{Client, ClientConfig};

#[path = "support/mqtt.rs"]
mod mqtt;
use mqtt::build_mqtt_ack;
#[path = "support/process.rs"]
mod process;
use process::{cpu_ns, env_count, free_port, Process};
#[path = "../tests/common/server_binary.rs"]
mod server_binary;

const PATIENCE: Duration = Duration::from_secs(120);
const PAYLOAD: [u8; 64] = [b'x'; 64];

/// Bytes process `pid` caused to be written to storage so far.
fn write_bytes(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("write_bytes: ")?.trim().parse().ok()).unwrap_or(0)
}

fn start_sink() -> (Process, u16) {
    let mut child = Command::new(server_binary::server_binary())
        .args(["--mode", "sink", "--quiet", "--data-dir", "memory", "--longconn-port", "0"])
        .args(["--line-port", "off", "--length-port", "off", "--ws-port", "off"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start longconn-server");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut port = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("listening longconn ") {
            port = addr.rsplit(':').next().unwrap().parse().unwrap();
        }
        if line.starts_with("ready") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Process(child), port)
}

/// One longconn run: (messages per second, client CPU µs per message, bytes written per message).
fn longconn(sync: Option<OutboxSync>, messages: u64, scratch: &Path) -> (f64, f64, f64) {
    let (_server, port) = start_sink();
    let mut config = ClientConfig::new(&format!("tcp://127.0.0.1:{port}")).unwrap();
    config.proxy = ProxySetting::Off;
    config.outbox.max_messages = 100_000;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let file = scratch.join(format!("outbox-{nanos}"));
    if let Some(sync) = sync {
        config.outbox_path = Some(file.clone());
        config.outbox_sync = sync;
    }
    let client = Client::new(config).unwrap();
    client.connect().unwrap();
    let me = std::process::id();
    let (cpu, written, started) = (cpu_ns(me), write_bytes(me), Instant::now());
    for _ in 0..messages {
        client.send_wait(&PAYLOAD, false, PATIENCE).unwrap();
    }
    while client.stats().acked_number < messages {
        assert!(started.elapsed() < PATIENCE, "not acknowledged: {:?}", client.stats());
        std::thread::sleep(Duration::from_micros(200));
    }
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    let cpu = (cpu_ns(me) - cpu) as f64 / messages as f64 / 1e3;
    let written = (write_bytes(me) - written) as f64 / messages as f64;
    client.close(PATIENCE).unwrap();
    drop(client);
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(file.with_extension("lock"));
    (rate, cpu, written)
}

/// One Paho run against a fresh mosquitto: (messages per second, client CPU
/// µs per message, bytes written per message).
fn paho(program: &Path, persist: bool, messages: u64, scratch: &Path) -> (f64, f64, f64) {
    let port = free_port();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = scratch.join(format!("mosquitto-{nanos}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mosquitto.conf");
    std::fs::write(&config, format!("listener {port} 127.0.0.1\nallow_anonymous true\n")).unwrap();
    let _broker =
        Process(Command::new("mosquitto").arg("-c").arg(&config).stderr(Stdio::null()).spawn().expect("mosquitto"));
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut command = Command::new(program);
    command.args([port.to_string(), "window".into(), "65535".into(), messages.to_string()]);
    if persist {
        let store = dir.join("paho");
        std::fs::create_dir_all(&store).unwrap();
        command.env("MQTT_PERSIST_DIR", &store);
    }
    let child = command.stdout(Stdio::piped()).spawn().expect("run mqtt_ack");
    let pid = child.id();
    let (mut cpu, mut written) = (0, 0);
    // Sample the child while it runs (its /proc entries go with it).
    let output = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| child.wait_with_output().expect("mqtt_ack"));
        while !waiting.is_finished() {
            (cpu, written) = (cpu_ns(pid).max(cpu), write_bytes(pid).max(written));
            std::thread::sleep(Duration::from_millis(2));
        }
        waiting.join().unwrap()
    });
    assert!(output.status.success(), "mqtt_ack failed");
    let rate: f64 = String::from_utf8(output.stdout).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (rate, cpu as f64 / messages as f64 / 1e3, written as f64 / messages as f64)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("outbox benchmark: skipped (run it with `cargo bench --bench outbox`)");
        return;
    }
    let rounds = env_count("ROUNDS", 3).max(1) as usize;
    let messages = env_count("MESSAGES", 50_000).max(1_000);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let scratch = std::env::temp_dir().join(format!("longconn-bench-outbox-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mosquitto = Command::new("mosquitto").arg("-h").output().is_ok();
    if !mosquitto {
        println!("Paho skipped: no mosquitto (make bench-outbox installs it)");
    }
    let paho_program = build_mqtt_ack().filter(|_| mosquitto);
    let setups: Vec<(&str, Option<OutboxSync>)> = vec![
        ("longconn, outbox in memory only", None),
        ("longconn, outbox file, synced every send", Some(OutboxSync::EverySend)),
        ("longconn, outbox file, synced within 10 ms", Some(OutboxSync::Within(Duration::from_millis(10)))),
        ("longconn, outbox file, never synced (kernel writeback)", Some(OutboxSync::Never)),
    ];
    let mut results: Vec<[Vec<f64>; 3]> = vec![Default::default(); setups.len() + 2];
    for _ in 0..rounds {
        for (i, (_, sync)) in setups.iter().enumerate() {
            let (rate, cpu, written) = longconn(*sync, messages, &scratch);
            for (values, figure) in results[i].iter_mut().zip([rate, cpu, written]) {
                values.push(figure);
            }
        }
        if let Some(program) = &paho_program {
            for (j, persist) in [true, false].into_iter().enumerate() {
                let (rate, cpu, written) = paho(program, persist, messages, &scratch);
                for (values, figure) in results[setups.len() + j].iter_mut().zip([rate, cpu, written]) {
                    values.push(figure);
                }
            }
        }
    }
    println!("{messages} messages of 64 bytes, acknowledged; {rounds} rounds interleaved (medians)");
    println!("{:<58} {:>10} {:>9} {:>13} {:>14}", "setup", "msg/s", "/ memory", "client CPU µs", "written B/msg");
    let memory = median(results[0][0].clone());
    let labels = setups.iter().map(|(label, _)| label.to_string()).chain([
        "Paho C, QoS 1, mosquitto, file persistence".into(),
        "Paho C, QoS 1, mosquitto, no persistence".into(),
    ]);
    for (label, [rates, cpu, written]) in labels.zip(results) {
        if rates.is_empty() {
            continue;
        }
        let rate = median(rates);
        println!("{label:<58} {rate:>10.0} {:>8.2}x {:>13.2} {:>14.0}", rate / memory, median(cpu), median(written));
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
