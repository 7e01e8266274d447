//! The chat room's history: every line in order, each at an offset, within
//! a window bounded by count, bytes and age. Members read it through their
//! own cursor, so one slow member never holds up another, and a member that
//! reconnects reads on from where it stopped.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// How much history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub messages: usize,
    pub bytes: usize,
    pub age: Duration,
}

impl Default for Window {
    fn default() -> Self {
        Window { messages: 100_000, bytes: 64 * 1024 * 1024, age: Duration::from_secs(24 * 3600) }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    /// The connection or session that wrote the line (0: the server).
    pub author: u64,
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub line: Bytes,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Debug)]
pub struct History {
    /// Names this history; a new one (a wiped data directory) gets a new epoch.
    pub epoch: u64,
    /// The offset of `entries[0]`; offsets start at 1.
    first: u64,
    entries: VecDeque<Entry>,
    bytes: usize,
    window: Window,
}

impl History {
    /// A history whose next line gets offset `next`.
    pub fn new(epoch: u64, next: u64, window: Window) -> History {
        History { epoch, first: next.max(1), entries: VecDeque::new(), bytes: 0, window }
    }

    /// Starts over as history `epoch` whose next line gets offset `next`
    /// (the store's history was replaced), keeping the window.
    pub fn restart(&mut self, epoch: u64, next: u64) {
        *self = History::new(epoch, next, self.window);
    }

    /// The offset the next line gets.
    pub fn next_offset(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// The oldest offset still held.
    pub fn first_offset(&self) -> u64 {
        self.first
    }

    /// Appends a line at `offset` (the next one), then trims to the window.
    pub fn push(&mut self, offset: u64, entry: Entry) {
        debug_assert_eq!(offset, self.next_offset());
        self.bytes += entry.line.len();
        self.entries.push_back(entry);
        self.trim(unix_now());
    }

    /// Drops lines beyond the window, oldest first; the newest always stays.
    pub fn trim(&mut self, now: u64) {
        let oldest_allowed = now.saturating_sub(self.window.age.as_secs());
        while self.entries.len() > 1
            && (self.entries.len() > self.window.messages
                || self.bytes > self.window.bytes
                || self.entries.front().is_some_and(|e| e.at < oldest_allowed))
        {
            let gone = self.entries.pop_front().expect("not empty");
            self.bytes -= gone.line.len();
            self.first += 1;
        }
    }

    /// Up to `max` lines from `offset` on, with their offsets; empty if
    /// `offset` is past the end or before the window.
    pub fn read(&self, offset: u64, max: usize) -> impl Iterator<Item = (u64, &Entry)> + '_ {
        let skip = offset.saturating_sub(self.first) as usize;
        let valid = offset >= self.first;
        self.entries
            .iter()
            .skip(skip)
            .take(if valid { max } else { 0 })
            .enumerate()
            .map(move |(i, e)| (offset + i as u64, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: &'static str, at: u64) -> Entry {
        Entry { author: 1, at, line: Bytes::from_static(line.as_bytes()) }
    }

    #[test]
    fn offsets_continue_and_the_window_trims_by_count_bytes_and_age() {
        let now = unix_now();
        let mut h = History::new(7, 10, Window { messages: 3, bytes: 10, age: Duration::from_secs(60) });
        for (i, line) in ["a", "b", "c", "d"].into_iter().enumerate() {
            h.push(10 + i as u64, entry(line, now));
        }
        assert_eq!((h.first_offset(), h.next_offset()), (11, 14), "count");
        let lines: Vec<_> = h.read(12, 10).map(|(o, e)| (o, e.line.clone())).collect();
        assert_eq!(lines, vec![(12, Bytes::from("c")), (13, Bytes::from("d"))]);
        assert_eq!(h.read(5, 10).count(), 0, "before the window");
        h.push(14, entry("0123456789", now));
        assert_eq!(h.first_offset(), 14, "bytes: only the newest fits");
        h.push(15, entry("x", now - 3600));
        h.trim(now);
        assert_eq!(h.first_offset(), 15, "age, but the newest line always stays");
    }
}
