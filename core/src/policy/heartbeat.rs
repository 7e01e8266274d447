//! Heartbeat deadlines: when to send a ping and when to declare the link dead.
//!
//! A ping is sent when either direction has been idle for `interval` (nothing
//! arrived, or nothing was written) and no ping has been sent within the last
//! `interval`, so a client that only receives still shows the server it is
//! alive, and one that only sends still hears back. Any inbound frame proves
//! the peer alive: if nothing arrives for `timeout`, the peer is dead. A write
//! that makes no progress for `timeout` means a dead link too. Defaults: ping
//! after 5 s idle, dead after 15 s. An interval of zero turns heartbeats off.

use std::time::Duration;

// Tokio's clock: the same as std's in production, and the simulated one
// under a paused or simulated runtime (the deterministic simulation).
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatPolicy {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for HeartbeatPolicy {
    fn default() -> Self {
        HeartbeatPolicy { interval: Duration::from_secs(5), timeout: Duration::from_secs(15) }
    }
}

/// What the heartbeat loop knows of a connection's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// The last frame that arrived (or when watching began).
    pub last_inbound: Instant,
    /// The last write that completed (or when watching began).
    pub last_outbound: Instant,
    /// The last ping sent, if any since watching began.
    pub last_ping: Option<Instant>,
    /// When the write now in progress began, if one is.
    pub writing_since: Option<Instant>,
}

/// What the heartbeat loop should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatAction {
    SendPing,
    /// Nothing arrived for the timeout.
    PeerDead,
    /// A write has made no progress for the timeout.
    WriteStalled,
    /// Nothing to do before this instant.
    WaitUntil(Instant),
    /// Heartbeats are off.
    Disabled,
}

impl HeartbeatPolicy {
    pub fn enabled(&self) -> bool {
        !self.interval.is_zero()
    }

    pub fn validate(&self) -> Result<(), &'static str> {
        if self.enabled() && self.timeout <= self.interval {
            return Err("heartbeat timeout must be longer than the interval");
        }
        Ok(())
    }

    /// Decides the next step from the connection's traffic.
    pub fn next_action(&self, now: Instant, activity: Activity) -> HeartbeatAction {
        if !self.enabled() {
            return HeartbeatAction::Disabled;
        }
        let dead_at = activity.last_inbound + self.timeout;
        if now >= dead_at {
            return HeartbeatAction::PeerDead;
        }
        let stalled_at = activity.writing_since.map(|since| since + self.timeout);
        if stalled_at.is_some_and(|at| now >= at) {
            return HeartbeatAction::WriteStalled;
        }
        let idle_since = activity.last_inbound.min(activity.last_outbound);
        let since_ping = activity.last_ping.map_or(idle_since, |p| p.max(idle_since));
        let ping_at = since_ping + self.interval;
        if now >= ping_at {
            return HeartbeatAction::SendPing;
        }
        let mut next = ping_at.min(dead_at);
        if let Some(at) = stalled_at {
            next = next.min(at);
        }
        HeartbeatAction::WaitUntil(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Traffic in both directions last at `heard`, a ping at `ping`, no write pending.
    fn both(heard: Instant, ping: Option<Instant>) -> Activity {
        Activity { last_inbound: heard, last_outbound: heard, last_ping: ping, writing_since: None }
    }

    #[test]
    fn pings_after_interval_of_silence_and_declares_death_at_timeout() {
        let p = HeartbeatPolicy::default();
        let t0 = Instant::now();
        assert_eq!(p.next_action(t0, both(t0, None)), HeartbeatAction::WaitUntil(t0 + s(5)));
        assert_eq!(p.next_action(t0 + s(5), both(t0, None)), HeartbeatAction::SendPing);
        // After a ping at 5 s, the next one is due at 10 s.
        assert_eq!(p.next_action(t0 + s(6), both(t0, Some(t0 + s(5)))), HeartbeatAction::WaitUntil(t0 + s(10)));
        assert_eq!(p.next_action(t0 + s(10), both(t0, Some(t0 + s(5)))), HeartbeatAction::SendPing);
        assert_eq!(p.next_action(t0 + s(14), both(t0, Some(t0 + s(10)))), HeartbeatAction::WaitUntil(t0 + s(15)));
        assert_eq!(p.next_action(t0 + s(15), both(t0, Some(t0 + s(10)))), HeartbeatAction::PeerDead);
    }

    #[test]
    fn inbound_traffic_postpones_pings_and_death() {
        let p = HeartbeatPolicy::default();
        let t0 = Instant::now();
        let heard = t0 + s(12);
        assert_eq!(p.next_action(t0 + s(13), both(heard, Some(t0 + s(10)))), HeartbeatAction::WaitUntil(heard + s(5)));
        // Silent again since 12 s: ping due at 17 s, dead at 27 s.
        assert_eq!(p.next_action(t0 + s(20), both(heard, Some(t0 + s(10)))), HeartbeatAction::SendPing);
        assert_eq!(p.next_action(t0 + s(27), both(heard, Some(t0 + s(20)))), HeartbeatAction::PeerDead);
    }

    #[test]
    fn a_client_that_only_receives_still_pings() {
        let p = HeartbeatPolicy::default();
        let t0 = Instant::now();
        // Messages arrive all the time; nothing has been written since t0.
        let receiving = |now: Instant, ping| Activity {
            last_inbound: now,
            last_outbound: t0,
            last_ping: ping,
            writing_since: None,
        };
        assert_eq!(p.next_action(t0 + s(4), receiving(t0 + s(4), None)), HeartbeatAction::WaitUntil(t0 + s(5)));
        assert_eq!(p.next_action(t0 + s(5), receiving(t0 + s(5), None)), HeartbeatAction::SendPing);
        // The ping was the last write; the next is due an interval later.
        let after_ping = Activity { last_outbound: t0 + s(5), ..receiving(t0 + s(7), Some(t0 + s(5))) };
        assert_eq!(p.next_action(t0 + s(7), after_ping), HeartbeatAction::WaitUntil(t0 + s(10)));
    }

    #[test]
    fn a_write_without_progress_for_the_timeout_is_a_dead_link() {
        let p = HeartbeatPolicy::default();
        let t0 = Instant::now();
        let writing = |heard: Instant| Activity {
            last_inbound: heard,
            last_outbound: heard,
            last_ping: Some(heard),
            writing_since: Some(t0),
        };
        // The peer keeps talking, but our write has been stuck since t0.
        assert_eq!(p.next_action(t0 + s(14), writing(t0 + s(14))), HeartbeatAction::WaitUntil(t0 + s(15)));
        assert_eq!(p.next_action(t0 + s(15), writing(t0 + s(15))), HeartbeatAction::WriteStalled);
    }

    #[test]
    fn zero_interval_disables_and_validation_requires_timeout_above_interval() {
        let off = HeartbeatPolicy { interval: s(0), timeout: s(0) };
        let now = Instant::now();
        assert_eq!(off.next_action(now, both(now, None)), HeartbeatAction::Disabled);
        assert!(off.validate().is_ok());
        assert!(HeartbeatPolicy { interval: s(5), timeout: s(5) }.validate().is_err());
    }
}
