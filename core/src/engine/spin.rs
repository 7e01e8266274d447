//! A short, bounded look before a thread parks, where the I/O thread hands
//! events to another (a callback thread, or an application thread in
//! `poll`): when the next event comes within tens of microseconds, as in a
//! request/reply loop, the waiting thread sees it without being put to
//! sleep and woken again, and the I/O thread pushes it without a wake-up
//! system call. Waking a sleeping thread costs a context switch on each
//! side, and more where an idle vCPU halts.
//!
//! Used only while recent waits were short: each wait's length feeds an
//! average, and a thread whose events come seldom (an idle chat client)
//! parks at once, as before. The cost: while it looks, the waiting thread
//! uses its CPU (yielding it to any other thread that wants it between
//! looks), at most [`MAX_SPIN`] per wait.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The longest look before parking.
pub const MAX_SPIN: Duration = Duration::from_micros(100);

/// Waits averaging longer than this park at once.
const SHORT_WAIT_US: u32 = 100;

/// What recent waits lasted, for one waiting side.
#[derive(Debug)]
pub struct SpinThenPark {
    /// An exponential average of recent waits, in microseconds; starts long
    /// (no looking) until waits have been seen to be short.
    recent_us: AtomicU32,
}

impl Default for SpinThenPark {
    fn default() -> Self {
        SpinThenPark::new()
    }
}

impl SpinThenPark {
    pub const fn new() -> SpinThenPark {
        SpinThenPark { recent_us: AtomicU32::new(u32::MAX) }
    }

    /// How long to look before parking, or `None` to park at once.
    pub fn budget(&self) -> Option<Duration> {
        let recent = self.recent_us.load(Ordering::Relaxed);
        (recent <= SHORT_WAIT_US).then(|| Duration::from_micros(u64::from(recent) * 2).min(MAX_SPIN))
    }

    /// Records that a wait lasted `waited` until something arrived.
    pub fn waited(&self, waited: Duration) {
        let sample = u32::try_from(waited.as_micros()).unwrap_or(u32::MAX).min(100_000);
        let recent = self.recent_us.load(Ordering::Relaxed);
        let next = if recent == u32::MAX { sample } else { ((u64::from(recent) * 3 + u64::from(sample)) / 4) as u32 };
        self.recent_us.store(next, Ordering::Relaxed);
    }

    /// Looks at `ready` until it is true or the budget (at most `limit`)
    /// is spent, yielding the CPU between looks; whether it became true.
    pub fn look(&self, limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
        let Some(budget) = self.budget() else { return false };
        let until = Instant::now() + budget.min(limit);
        loop {
            if ready() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_only_while_recent_waits_were_short_and_never_past_the_cap() {
        let spin = SpinThenPark::new();
        assert_eq!(spin.budget(), None, "no looking before a wait was seen");
        spin.waited(Duration::from_micros(40));
        assert_eq!(spin.budget(), Some(Duration::from_micros(80)));
        spin.waited(Duration::from_micros(60));
        assert_eq!(spin.budget(), Some(Duration::from_micros(90)), "(40 * 3 + 60) / 4 = 45, doubled");
        for _ in 0..4 {
            spin.waited(Duration::from_millis(5));
        }
        assert_eq!(spin.budget(), None, "long waits: park at once");
        for _ in 0..20 {
            spin.waited(Duration::from_micros(90));
        }
        assert_eq!(spin.budget(), Some(MAX_SPIN), "capped");
    }

    #[test]
    fn a_look_ends_when_ready_or_when_the_budget_is_spent() {
        let spin = SpinThenPark::new();
        assert!(!spin.look(Duration::MAX, || true), "no budget: no look at all");
        spin.waited(Duration::from_micros(50));
        assert!(spin.look(Duration::MAX, || true));
        let start = Instant::now();
        assert!(!spin.look(Duration::MAX, || false));
        assert!(start.elapsed() >= Duration::from_micros(100));
        let start = Instant::now();
        assert!(!spin.look(Duration::ZERO, || false), "never past the caller's limit");
        assert!(start.elapsed() < Duration::from_micros(100));
    }
}
