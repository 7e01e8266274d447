//! The close signal: flush until a deadline, or abort at once. Set by the
//! handle, watched by the session and its loops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use crate::lock::lock;

#[derive(Debug, Default)]
pub struct CloseSignal {
    /// `close` was called: accept no more messages, flush, then stop.
    requested: AtomicBool,
    /// Stop now without flushing (the handle is being freed).
    abort: AtomicBool,
    /// When flushing gives up.
    deadline: Mutex<Option<Instant>>,
    changed: Notify,
}

impl CloseSignal {
    /// Requests a close; a second request keeps the earlier deadline.
    /// Returns false if a close had already been requested.
    pub fn request(&self, deadline: Instant) -> bool {
        let mut d = lock(&self.deadline);
        let first = d.is_none();
        if first {
            *d = Some(deadline);
        }
        self.requested.store(true, Ordering::Release);
        drop(d);
        self.changed.notify_waiters();
        first
    }

    pub fn abort(&self) {
        self.abort.store(true, Ordering::Release);
        self.request(Instant::now());
    }

    #[inline]
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire)
    }

    /// Completes once the close deadline has passed (or on abort).
    pub async fn expired(&self) {
        loop {
            let changed = self.changed.notified();
            if self.aborted() {
                return;
            }
            let deadline = *lock(&self.deadline);
            match deadline {
                Some(d) => {
                    tokio::select! {
                        // In order, so a simulated run replays exactly.
                        biased;
                        _ = tokio::time::sleep_until(d.into()) => return,
                        _ = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Completes when a close is requested.
    pub async fn wait_requested(&self) {
        loop {
            let changed = self.changed.notified();
            if self.requested() {
                return;
            }
            changed.await;
        }
    }
}
