//! A longconn client driven through the C ABI the way an application
//! drives it, shared by the benchmarks; and the acknowledgement
//! measurements of protocol 2 (one message in flight, or a window).

// Not every benchmark uses every helper.
#![allow(dead_code)]

use std::ffi::c_void;
use std::ptr;
use std::time::{Duration, Instant};

use longconn::client::*;
use longconn::config::*;
use longconn::event::*;
use longconn::status::*;

pub const PAYLOAD: [u8; 64] = [b'x'; 64];

pub struct Lc(pub *mut lc_client);

impl Lc {
    pub fn new(url: &str, on_message: lc_message_cb, user_data: *mut c_void) -> Lc {
        Lc::with_protocol(url, on_message, user_data, 2)
    }

    /// A client offering protocol `version` (1: best effort, 2: acknowledged).
    pub fn with_protocol(url: &str, on_message: lc_message_cb, user_data: *mut c_void, version: u32) -> Lc {
        let mut config = ptr::null_mut();
        let mut client = ptr::null_mut();
        // SAFETY: valid NUL-terminated URL and out-pointers; the handles are
        // used as the header documents and freed in Drop.
        unsafe {
            assert_eq!(lc_config_new(url.as_ptr().cast(), &mut config), LC_STATUS_OK);
            assert_eq!(lc_config_set_outbox_limits(config, 1 << 20, 256 << 20), LC_STATUS_OK);
            assert_eq!(lc_config_set_protocol_version(config, version), LC_STATUS_OK);
            assert_eq!(lc_client_new(config, &mut client), LC_STATUS_OK);
            lc_config_free(config);
            if on_message.is_some() {
                assert_eq!(lc_client_set_message_callback(client, on_message, user_data), LC_STATUS_OK);
            }
            assert_eq!(lc_client_connect(client), LC_STATUS_OK);
        }
        Lc(client)
    }

    pub fn send(&self, payload: &[u8]) {
        loop {
            // SAFETY: live client, valid buffer.
            match unsafe { lc_client_send(self.0, payload.as_ptr(), payload.len()) } {
                LC_STATUS_OK => return,
                LC_STATUS_QUEUE_FULL => std::thread::yield_now(),
                other => panic!("send failed: {other:?}"),
            }
        }
    }

    /// Waits until `n` messages have been written, so timing starts on a live connection.
    pub fn wait_written(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut stats = lc_stats::default();
            // SAFETY: live client, valid out-pointer.
            assert_eq!(unsafe { lc_client_stats(self.0, &mut stats) }, LC_STATUS_OK);
            if stats.messages_out >= n {
                return;
            }
            assert!(Instant::now() < deadline, "connection did not come up");
            std::thread::yield_now();
        }
    }

    /// The client's acknowledged number.
    pub fn acked(&self) -> u64 {
        let mut stats = lc_stats::default();
        // SAFETY: live client, valid out-pointer.
        assert_eq!(unsafe { lc_client_stats(self.0, &mut stats) }, LC_STATUS_OK);
        stats.acked_number
    }

    /// Spins until the server has acknowledged message `n` (latency, not throughput).
    pub fn spin_acked(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.acked() < n {
            assert!(Instant::now() < deadline, "message {n} was not acknowledged");
            std::hint::spin_loop();
        }
    }

    pub fn close(&self) {
        // SAFETY: live client.
        assert_eq!(unsafe { lc_client_close(self.0, 60_000, ptr::null_mut()) }, LC_STATUS_OK);
    }
}

impl Drop for Lc {
    fn drop(&mut self) {
        // SAFETY: created by lc_client_new, freed once.
        unsafe { lc_client_free(self.0) }
    }
}

/// Acknowledgement latency with one message in flight (protocol 2): send,
/// then wait until the server's ACK covers it (it is stored by then).
pub fn lc_ack_latency(url: &str, n: u64) -> Vec<Duration> {
    let client = Lc::with_protocol(url, None, ptr::null_mut(), 2);
    let mut samples = Vec::with_capacity(n as usize);
    for i in 1..=n + 100 {
        let start = Instant::now();
        client.send(&PAYLOAD);
        client.spin_acked(i);
        if i > 100 {
            samples.push(start.elapsed()); // the first 100 warm up
        }
    }
    samples
}

/// Messages per second acknowledged with at most `window` unacknowledged.
pub fn lc_ack_window_rate(url: &str, n: u64, window: u64) -> f64 {
    let client = Lc::with_protocol(url, None, ptr::null_mut(), 2);
    client.send(&PAYLOAD);
    client.spin_acked(1);
    let start = Instant::now();
    let mut acked = 1;
    for i in 2..=n + 1 {
        while i - acked > window {
            acked = client.acked();
            std::hint::spin_loop();
        }
        client.send(&PAYLOAD);
    }
    client.spin_acked(n + 1);
    n as f64 / start.elapsed().as_secs_f64()
}
