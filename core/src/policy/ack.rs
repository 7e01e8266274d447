//! When a protocol 2 receiver acknowledges what it has, on both sides of a
//! connection: the client acknowledges the messages it received
//! (`session/link.rs`), the server the messages it stored (the bundled
//! server's `peer.rs`).
//!
//! An acknowledgement goes out at once when the receiver writes anyway (it
//! rides along: no extra write) or when the sender is waiting on it (the
//! receiver has written it nothing since the last one); otherwise it is held
//! for a write to ride with, at most [`HOLD`]. A lone ACK after every message
//! costs a request/reply round trip a wake-up on each side (15-30 µs on
//! these machines). Past [`EVERY_FRAMES`] frames or [`EVERY_BYTES`] bytes
//! unacknowledged, the client acknowledges without waiting, so a sender's
//! outbox never holds more than that for an acknowledgement.

use std::time::Duration;

// Tokio's clock: the simulated one under the deterministic simulation.
use tokio::time::Instant;

/// How long an acknowledgement may wait for a write to ride with.
pub const HOLD: Duration = Duration::from_millis(1);
/// Frames received since the last acknowledgement past which one goes at once.
pub const EVERY_FRAMES: u64 = 1024;
/// Payload bytes received since the last acknowledgement past which one goes at once.
pub const EVERY_BYTES: usize = 256 * 1024;

/// Whether this much unacknowledged data is acknowledged without waiting.
pub fn due_by_volume(frames: u64, bytes: usize) -> bool {
    frames >= EVERY_FRAMES || bytes >= EVERY_BYTES
}

/// A receiver's acknowledgement hold: whether the newest acknowledgeable
/// number goes out now, and until when it may wait.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AckHold {
    /// Data was written to the peer since the last acknowledgement, so the
    /// next one may ride with the next such write.
    fed_since_ack: bool,
    /// When a held acknowledgement goes out alone.
    until: Option<Instant>,
    /// A hold ran out before anything was acknowledgeable: the next
    /// acknowledgeable number goes at once.
    overdue: bool,
}

/// What the receiver knows at one turn of its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckTurn {
    pub now: Instant,
    /// The highest number that may be acknowledged (stored, or received).
    pub acknowledgeable: u64,
    /// The highest number taken in, acknowledgeable or not yet.
    pub taken: u64,
    /// The number last acknowledged.
    pub acknowledged: u64,
    /// This turn writes to the peer anyway.
    pub writing: bool,
    /// This turn writes the peer data (not only control frames).
    pub feeding: bool,
}

impl AckHold {
    /// Decides one turn: returns the number to acknowledge now, if any,
    /// and updates the hold.
    pub fn turn(&mut self, turn: AckTurn) -> Option<u64> {
        if self.until.is_some_and(|until| turn.now >= until) {
            // The hold ran out: acknowledge as soon as there is something.
            self.until = None;
            self.overdue = true;
        }
        let mut acknowledged = turn.acknowledged;
        let mut send = None;
        if turn.acknowledgeable > acknowledged && (turn.writing || !self.fed_since_ack || self.overdue) {
            send = Some(turn.acknowledgeable);
            acknowledged = turn.acknowledgeable;
            *self = AckHold::default();
        }
        self.fed_since_ack |= turn.feeding;
        if turn.taken == acknowledged {
            (self.until, self.overdue) = (None, false);
        } else if self.fed_since_ack && !self.overdue && self.until.is_none() {
            self.until = Some(turn.now + HOLD);
        }
        send
    }

    /// When a held acknowledgement goes out alone, if one is held.
    pub fn due(&self) -> Option<Instant> {
        self.until
    }

    /// Whether an acknowledgement is being held (the receiver's loop then
    /// needs waking at [`AckHold::due`], not on every new acknowledgeable number).
    pub fn holding(&self) -> bool {
        self.until.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(now: Instant, acknowledgeable: u64, taken: u64, acknowledged: u64, writing: bool) -> AckTurn {
        AckTurn { now, acknowledgeable, taken, acknowledged, writing, feeding: writing }
    }

    #[test]
    fn a_waiting_sender_is_acknowledged_at_once() {
        let now = Instant::now();
        let mut hold = AckHold::default();
        assert_eq!(hold.turn(turn(now, 3, 3, 0, false)), Some(3));
        assert!(!hold.holding());
    }

    #[test]
    fn a_fed_peer_waits_for_the_next_write_at_most_the_hold() {
        let now = Instant::now();
        let mut hold = AckHold::default();
        // Data written, message 1 taken but not yet acknowledgeable: the hold starts.
        assert_eq!(hold.turn(turn(now, 0, 1, 0, true)), None);
        assert_eq!(hold.due(), Some(now + HOLD));
        // Now acknowledgeable, but nothing to ride with: held.
        assert_eq!(hold.turn(turn(now, 1, 1, 0, false)), None);
        // The next write takes it along.
        assert_eq!(hold.turn(turn(now, 1, 2, 0, true)), Some(1));
        // The hold ran out before 2 was acknowledgeable: 2 goes as soon as it is.
        let late = now + HOLD * 3;
        assert_eq!(hold.turn(turn(late, 1, 2, 1, false)), None);
        assert!(!hold.holding());
        assert_eq!(hold.turn(turn(late, 2, 2, 1, false)), Some(2));
    }

    #[test]
    fn nothing_taken_beyond_the_acknowledged_clears_the_hold() {
        let now = Instant::now();
        let mut hold = AckHold::default();
        assert_eq!(hold.turn(turn(now, 0, 1, 0, true)), None);
        assert!(hold.holding());
        assert_eq!(hold.turn(turn(now, 1, 1, 0, true)), Some(1));
        assert!(!hold.holding());
        assert_eq!(hold.turn(turn(now, 1, 1, 1, true)), None);
        assert!(!hold.holding(), "nothing is waiting for an acknowledgement");
    }

    #[test]
    fn volume_thresholds() {
        assert!(!due_by_volume(EVERY_FRAMES - 1, EVERY_BYTES - 1));
        assert!(due_by_volume(EVERY_FRAMES, 0));
        assert!(due_by_volume(1, EVERY_BYTES));
    }
}
