//! Where a client is in its life, and the moment its session has finished.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::lock::{lock, wait_timeout};

/// Where a client is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Created; `connect` not called yet.
    Idle = 0,
    Connecting = 1,
    Connected = 2,
    /// Waiting out a backoff delay before the next attempt.
    WaitingToReconnect = 3,
    /// `close` was called; flushing.
    Closing = 4,
    Closed = 5,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Idle,
            1 => State::Connecting,
            2 => State::Connected,
            3 => State::WaitingToReconnect,
            4 => State::Closing,
            _ => State::Closed,
        }
    }
}

/// How long a blocking close looks for the session's end before it sleeps.
const CLOSE_SPIN: Duration = Duration::from_micros(500);

#[derive(Debug)]
pub struct Lifecycle {
    state: AtomicU8,
    /// Messages discarded at close, once the session has finished.
    finished: Mutex<Option<u64>>,
    finished_cv: Condvar,
    /// The same news for a close that drives the I/O itself.
    finished_async: tokio::sync::Notify,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            state: AtomicU8::new(State::Idle as u8),
            finished: Mutex::new(None),
            finished_cv: Condvar::new(),
            finished_async: tokio::sync::Notify::new(),
        }
    }
}

impl Lifecycle {
    #[inline]
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Called once, as the session ends, with the messages it discarded.
    pub fn finish(&self, unsent: u64) {
        *lock(&self.finished) = Some(unsent);
        self.finished_cv.notify_all();
        self.finished_async.notify_one();
    }

    /// The session's end, if it has ended: how many messages were unsent.
    pub fn finished(&self) -> Option<u64> {
        *lock(&self.finished)
    }

    /// Completes once [`Lifecycle::finish`] was called (possibly before).
    pub async fn finishing(&self) {
        self.finished_async.notified().await
    }

    /// Waits for [`Lifecycle::finish`] until `deadline`; the messages discarded,
    /// or `None` if the deadline passed first.
    ///
    /// Looks again and again (yielding the CPU between looks) for up to
    /// [`CLOSE_SPIN`] before it sleeps: a close whose last acknowledgement
    /// is a round trip away then returns as the session ends, without the
    /// wake-up of a sleeping thread on top (30-40 µs on a VM whose idle
    /// vCPUs halt: a close right after a send took 2x the send's ACK
    /// latency with the store in memory). At most that much CPU per close.
    pub fn wait_finished(&self, deadline: Instant) -> Option<u64> {
        let spin_until = deadline.min(Instant::now() + CLOSE_SPIN);
        while Instant::now() < spin_until {
            if let Ok(finished) = self.finished.try_lock() {
                if let Some(unsent) = *finished {
                    return Some(unsent);
                }
            }
            std::thread::yield_now();
        }
        let mut finished = lock(&self.finished);
        loop {
            if let Some(unsent) = *finished {
                return Some(unsent);
            }
            let wait = deadline.checked_duration_since(Instant::now())?;
            finished = wait_timeout(&self.finished_cv, finished, wait);
        }
    }
}
