//! Paho's C client program the benchmarks run against mosquitto
//! (`benches/peers/mqtt_ack.c`), built once per run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `benches/peers/mqtt_ack.c`; `None` (said on stdout) if Debian's
/// libpaho-mqtt-dev is not installed.
pub fn build_mqtt_ack() -> Option<PathBuf> {
    if !Path::new("/usr/include/MQTTAsync.h").exists() {
        println!("mosquitto skipped: no libpaho-mqtt-dev (apt-get install mosquitto libpaho-mqtt-dev)");
        return None;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mqtt_ack");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-O2", "-Wall", "-Wextra", "-Werror", concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/mqtt_ack.c")])
        .args(["-lpaho-mqtt3a", "-lpthread", "-o"])
        .arg(&out)
        .status()
        .expect("run cc");
    assert!(status.success(), "building mqtt_ack.c failed");
    Some(out)
}
