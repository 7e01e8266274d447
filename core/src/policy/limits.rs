//! Queue limits.
//!
//! The outbox holds at most 100 000 messages and 16 MiB of payload by
//! default; a send beyond either fails and leaves the queue unchanged, so
//! nothing is dropped silently. Received messages waiting for the
//! application may hold 64 MiB of payload by default before the connection
//! stops reading.

/// Default limit on received-but-undelivered message bytes.
pub const DEFAULT_INBOX_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    pub max_messages: usize,
    /// Limit on payload bytes (framing overhead not counted).
    pub max_bytes: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits { max_messages: 100_000, max_bytes: 16 * 1024 * 1024 }
    }
}

impl OutboxLimits {
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.max_messages == 0 || self.max_bytes == 0 {
            return Err("outbox limits must be positive");
        }
        Ok(())
    }

    /// Whether one more message of `len` bytes fits next to `messages`
    /// messages and `bytes` payload bytes already queued.
    #[inline]
    pub fn admits(&self, messages: usize, bytes: usize, len: usize) -> bool {
        messages < self.max_messages && bytes + len <= self.max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_both_limits_and_rejects_zero_limits() {
        let limits = OutboxLimits { max_messages: 2, max_bytes: 10 };
        assert!(limits.admits(0, 0, 10));
        assert!(!limits.admits(0, 1, 10), "byte limit");
        assert!(limits.admits(1, 5, 5));
        assert!(!limits.admits(2, 0, 0), "message limit");
        assert!(limits.validate().is_ok());
        assert!(OutboxLimits { max_messages: 0, max_bytes: 1 }.validate().is_err());
    }
}
