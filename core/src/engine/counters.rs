//! Traffic counters: bumped by the session's loops, read by `stats`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters since the client was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages_out: u64,
    pub bytes_out: u64,
    pub messages_in: u64,
    pub bytes_in: u64,
    /// Connections established after the first one.
    pub reconnects: u64,
    /// Messages waiting to be written, including a batch being written.
    pub queued_messages: u64,
    pub queued_bytes: u64,
    /// Round-trip time of the last answered ping, in microseconds (0 if none yet).
    pub last_rtt_us: u64,
    /// Every message up to this number (see `send_numbered`) is done with:
    /// acknowledged by the server (protocol version 2), or handed to the
    /// socket (best effort).
    pub acked_number: u64,
    /// Written messages still waiting for the server's acknowledgement;
    /// they count in `queued_messages` too.
    pub unacked_messages: u64,
    /// The server of the current connection, or of the last one: its
    /// place in the config's list (0: the first URL).
    pub server_index: u64,
    /// With an outbox file: the highest message number it held when the
    /// client was created (the numbering goes on after it); 0 otherwise.
    pub restored_number: u64,
}

#[derive(Debug, Default)]
pub struct Counters {
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    connections: AtomicU64,
    last_rtt_us: AtomicU64,
    server_index: AtomicU64,
}

impl Counters {
    pub fn sent(&self, messages: usize, bytes: usize) {
        self.messages_out.fetch_add(messages as u64, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn received(&self, messages: usize, bytes: usize) {
        self.messages_in.fetch_add(messages as u64, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A connection to the server at `server_index` in the list.
    pub fn connected(&self, server_index: usize) {
        self.server_index.store(server_index as u64, Ordering::Relaxed);
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rtt(&self, micros: u64) {
        self.last_rtt_us.store(micros, Ordering::Relaxed);
    }

    /// The counters, with the outbox's figures (from `Sending::figures`) filled in by the caller.
    pub fn snapshot(&self, (queued_messages, queued_bytes, acked, unacked): (usize, usize, u64, usize)) -> Stats {
        Stats {
            messages_out: self.messages_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            reconnects: self.connections.load(Ordering::Relaxed).saturating_sub(1),
            queued_messages: queued_messages as u64,
            queued_bytes: queued_bytes as u64,
            last_rtt_us: self.last_rtt_us.load(Ordering::Relaxed),
            acked_number: acked,
            unacked_messages: unacked as u64,
            server_index: self.server_index.load(Ordering::Relaxed),
            restored_number: 0,
        }
    }
}
