//! Reconnection delays: exponential backoff with jitter.
//!
//! Attempt `n` (counting from 1) waits `min(max, initial * multiplier^(n-1))`,
//! then scaled by a random factor in `[1 - jitter, 1 + jitter]` and capped at
//! `max` again. Defaults: 1 s initial, 30 s maximum, multiplier 2, jitter 0.2,
//! unlimited attempts: 1 s, 2 s, 4 s, 8 s, 16 s, 30 s, 30 s, ... each ±20 %.
//! The schedule starts over once a connection has stayed up for
//! `stable_after` (default 5 s), so a server that accepts and at once drops
//! connections does not get retried at the initial rate forever.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// Growth factor per attempt, at least 1.
    pub multiplier: f64,
    /// Relative jitter in `[0, 1]`.
    pub jitter: f64,
    /// Attempts before giving up; 0 means never give up.
    pub max_attempts: u32,
    /// How long a connection must stay up to reset the schedule.
    pub stable_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: 0,
            stable_after: Duration::from_secs(5),
        }
    }
}

impl BackoffPolicy {
    /// Checks the settings; the message names the offending one.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.initial.is_zero() {
            return Err("initial reconnect delay must be positive");
        }
        if self.max < self.initial {
            return Err("maximum reconnect delay must not be below the initial delay");
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err("reconnect multiplier must be a finite number >= 1");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err("reconnect jitter must be between 0 and 1");
        }
        Ok(())
    }

    /// The delay before attempt `attempt` (1-based) without jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exp = self.multiplier.powi(attempt.saturating_sub(1).min(1024) as i32);
        let secs = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs)
    }

    /// The range jitter may move the delay of `attempt` into.
    pub fn delay_bounds(&self, attempt: u32) -> (Duration, Duration) {
        let base = self.base_delay(attempt).as_secs_f64();
        let low = base * (1.0 - self.jitter);
        let high = (base * (1.0 + self.jitter)).min(self.max.as_secs_f64().max(low));
        (Duration::from_secs_f64(low), Duration::from_secs_f64(high))
    }
}

/// The running schedule of one client.
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    /// Attempts made since the last reset.
    attempt: u32,
    rng: XorShift,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy, seed: u64) -> Backoff {
        Backoff { policy, attempt: 0, rng: XorShift::new(seed) }
    }

    /// Applies new settings; the attempt count carries over.
    pub fn set_policy(&mut self, policy: BackoffPolicy) {
        self.policy = policy;
    }

    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next attempt number and its delay, or `None` once attempts are used up.
    pub fn next_delay(&mut self) -> Option<(u32, Duration)> {
        if self.policy.max_attempts != 0 && self.attempt >= self.policy.max_attempts {
            return None;
        }
        self.attempt += 1;
        let (low, high) = self.policy.delay_bounds(self.attempt);
        let unit = self.rng.next_unit();
        let delay = low.as_secs_f64() + (high.as_secs_f64() - low.as_secs_f64()) * unit;
        Some((self.attempt, Duration::from_secs_f64(delay)))
    }
}

/// A small xorshift generator: jitter needs spread, not cryptographic quality.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    /// Seeds that differ only in low bits (clock readings taken close
    /// together) must still give different first delays, so the seed is
    /// scrambled with the splitmix64 finalizer first.
    fn new(seed: u64) -> XorShift {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        XorShift((z ^ (z >> 31)) | 1)
    }

    /// A number in `[0, 1)`.
    fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn base_schedule_doubles_up_to_the_cap() {
        let p = BackoffPolicy::default();
        let got: Vec<u64> = (1..=8).map(|n| p.base_delay(n).as_millis() as u64).collect();
        assert_eq!(got, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    }

    #[test]
    fn jittered_delays_stay_within_bounds_and_spread() {
        let p = BackoffPolicy::default();
        let mut b = Backoff::new(p, 42);
        let mut firsts = Vec::new();
        for _ in 0..200 {
            b.reset();
            for _ in 0..10 {
                let (attempt, d) = b.next_delay().unwrap();
                let (low, high) = p.delay_bounds(attempt);
                assert!(d >= low && d <= high, "attempt {attempt}: {d:?} not in {low:?}..{high:?}");
                assert!(d <= p.max);
                if attempt == 1 {
                    firsts.push(d);
                }
            }
        }
        let min = firsts.iter().min().unwrap();
        let max = firsts.iter().max().unwrap();
        assert!(*max - *min > ms(200), "jitter spreads delays: {min:?}..{max:?}");
    }

    #[test]
    fn nearby_seeds_give_different_first_delays() {
        let p = BackoffPolicy::default();
        let base = 1_763_781_000_000_000_000u64;
        let firsts: std::collections::BTreeSet<u128> =
            (0..50u64).map(|i| Backoff::new(p, base + i * 1000).next_delay().unwrap().1.as_micros()).collect();
        assert!(firsts.len() >= 45, "only {} distinct first delays of 50", firsts.len());
    }

    #[test]
    fn gives_up_after_max_attempts_and_reset_starts_over() {
        let p = BackoffPolicy { max_attempts: 3, jitter: 0.0, ..BackoffPolicy::default() };
        let mut b = Backoff::new(p, 1);
        assert_eq!(b.next_delay(), Some((1, ms(1000))));
        assert_eq!(b.next_delay(), Some((2, ms(2000))));
        assert_eq!(b.next_delay(), Some((3, ms(4000))));
        assert_eq!(b.next_delay(), None);
        b.reset();
        assert_eq!(b.next_delay(), Some((1, ms(1000))));
    }

    #[test]
    fn validate_names_the_bad_setting() {
        let ok = BackoffPolicy::default();
        assert!(ok.validate().is_ok());
        assert!(BackoffPolicy { initial: ms(0), ..ok }.validate().is_err());
        assert!(BackoffPolicy { max: ms(10), ..ok }.validate().is_err());
        assert!(BackoffPolicy { multiplier: 0.5, ..ok }.validate().is_err());
        assert!(BackoffPolicy { multiplier: f64::NAN, ..ok }.validate().is_err());
        assert!(BackoffPolicy { jitter: 1.5, ..ok }.validate().is_err());
    }
}
