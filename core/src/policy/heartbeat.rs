//! Heartbeat deadlines: when to send a ping and when to declare the peer dead.
//!
//! A ping is sent when nothing has arrived for `interval` and no ping has been
//! sent within the last `interval`. Any inbound frame proves the peer alive.
//! If nothing arrives for `timeout`, the peer is dead. Defaults: ping after
//! 5 s of silence, dead after 15 s. An interval of zero turns heartbeats off.

use std::time::{Duration, Instant};

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

/// What the heartbeat loop should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatAction {
    SendPing,
    PeerDead,
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

    /// Decides the next step from the last inbound frame and the last ping sent.
    pub fn next_action(&self, now: Instant, last_inbound: Instant, last_ping: Option<Instant>) -> HeartbeatAction {
        if !self.enabled() {
            return HeartbeatAction::Disabled;
        }
        let dead_at = last_inbound + self.timeout;
        if now >= dead_at {
            return HeartbeatAction::PeerDead;
        }
        let since_ping = last_ping.map(|p| p.max(last_inbound)).unwrap_or(last_inbound);
        let ping_at = since_ping + self.interval;
        if now >= ping_at {
            return HeartbeatAction::SendPing;
        }
        HeartbeatAction::WaitUntil(ping_at.min(dead_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn pings_after_interval_of_silence_and_declares_death_at_timeout() {
        let p = HeartbeatPolicy::default();
        let t0 = Instant::now();
        assert_eq!(p.next_action(t0, t0, None), HeartbeatAction::WaitUntil(t0 + s(5)));
        assert_eq!(p.next_action(t0 + s(5), t0, None), HeartbeatAction::SendPing);
        // After a ping at 5 s, the next one is due at 10 s.
        assert_eq!(p.next_action(t0 + s(6), t0, Some(t0 + s(5))), HeartbeatAction::WaitUntil(t0 + s(10)));
        assert_eq!(p.next_action(t0 + s(10), t0, Some(t0 + s(5))), HeartbeatAction::SendPing);
        assert_eq!(p.next_action(t0 + s(14), t0, Some(t0 + s(10))), HeartbeatAction::WaitUntil(t0 + s(15)));
        assert_eq!(p.next_action(t0 + s(15), t0, Some(t0 + s(10))), HeartbeatAction::PeerDead);
    }

    #[test]
    fn inbound_traffic_postpones_pings_and_death() {
        let p = HeartbeatPolicy::default();
        let t0 = Instant::now();
        let heard = t0 + s(12);
        assert_eq!(p.next_action(t0 + s(13), heard, Some(t0 + s(10))), HeartbeatAction::WaitUntil(heard + s(5)));
        // Silent again since 12 s: ping due at 17 s, dead at 27 s.
        assert_eq!(p.next_action(t0 + s(20), heard, Some(t0 + s(10))), HeartbeatAction::SendPing);
        assert_eq!(p.next_action(t0 + s(27), heard, Some(t0 + s(20))), HeartbeatAction::PeerDead);
    }

    #[test]
    fn zero_interval_disables_and_validation_requires_timeout_above_interval() {
        let off = HeartbeatPolicy { interval: s(0), timeout: s(0) };
        assert_eq!(off.next_action(Instant::now(), Instant::now(), None), HeartbeatAction::Disabled);
        assert!(off.validate().is_ok());
        assert!(HeartbeatPolicy { interval: s(5), timeout: s(5) }.validate().is_err());
    }
}
