//! Settings that may change while the client runs: heartbeat timing and the
//! reconnection schedule.

use std::sync::Mutex;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::lock::lock;
use crate::policy::backoff::BackoffPolicy;
use crate::policy::heartbeat::HeartbeatPolicy;

#[derive(Debug, Clone, Copy)]
pub struct LiveSettings {
    pub heartbeat: HeartbeatPolicy,
    pub backoff: BackoffPolicy,
}

#[derive(Debug)]
pub struct Settings {
    live: Mutex<LiveSettings>,
    /// Wakes the heartbeat loop when the heartbeat changes.
    changed: Notify,
}

impl Settings {
    pub fn new(live: LiveSettings) -> Settings {
        Settings { live: Mutex::new(live), changed: Notify::new() }
    }

    pub fn get(&self) -> LiveSettings {
        *lock(&self.live)
    }

    /// Applies at once, also to a live connection.
    pub fn set_heartbeat(&self, policy: HeartbeatPolicy) {
        lock(&self.live).heartbeat = policy;
        self.changed.notify_waiters();
    }

    /// Applies from the next reconnection delay on.
    pub fn set_backoff(&self, policy: BackoffPolicy) {
        lock(&self.live).backoff = policy;
    }

    /// Completes at the next heartbeat change; create it before reading the
    /// settings, so a change in between is not missed.
    pub fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }
}
