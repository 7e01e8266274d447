//! Queue limits.
//!
//! The outbox holds at most 100 000 messages and 16 MiB of payload by
//! default; a send beyond either fails and leaves the queue unchanged, so
//! nothing is dropped silently.
//!
//! Received messages waiting for the application (queued, or handed to the
//! callback thread and not yet delivered) may number 65 536 and weigh 8 MiB
//! by default, each weighing its payload plus [`MESSAGE_OVERHEAD`] bytes, so
//! a flood of empty messages is bounded as surely as one of large ones.
//! Past either limit the connection stops reading until the application
//! catches up, and the kernel's flow control pushes back on the server.

/// What one received message costs beyond its payload, for the inbox
/// limit: its place in the read buffer's frame list, its queue entry, and
/// the allocations a WebSocket message brings, rounded up.
pub const MESSAGE_OVERHEAD: usize = 128;

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

/// Limits on received messages the application has not taken yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxLimits {
    pub max_messages: usize,
    /// Payload bytes plus [`MESSAGE_OVERHEAD`] per message.
    pub max_bytes: usize,
}

impl Default for InboxLimits {
    fn default() -> Self {
        InboxLimits { max_messages: 65_536, max_bytes: 8 * 1024 * 1024 }
    }
}

impl InboxLimits {
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.max_messages == 0 || self.max_bytes == 0 {
            return Err("inbox limits must be positive");
        }
        Ok(())
    }

    /// What `messages` messages of `payload_bytes` in all weigh.
    #[inline]
    pub fn weight(messages: usize, payload_bytes: usize) -> usize {
        payload_bytes + messages * MESSAGE_OVERHEAD
    }

    /// Whether reading must pause with `messages` messages of `weight` waiting.
    #[inline]
    pub fn is_full(&self, messages: usize, weight: usize) -> bool {
        messages >= self.max_messages || weight >= self.max_bytes
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

    #[test]
    fn the_inbox_weighs_empty_messages_too() {
        let limits = InboxLimits { max_messages: 10, max_bytes: 4 * MESSAGE_OVERHEAD };
        assert_eq!(InboxLimits::weight(3, 0), 3 * MESSAGE_OVERHEAD);
        assert!(!limits.is_full(3, InboxLimits::weight(3, 0)));
        assert!(limits.is_full(4, InboxLimits::weight(4, 0)), "four empty messages fill it");
        assert!(limits.is_full(1, InboxLimits::weight(1, 4 * MESSAGE_OVERHEAD)), "one large message fills it");
        assert!(limits.is_full(10, 0), "message limit");
        assert!(InboxLimits { max_messages: 1, max_bytes: 0 }.validate().is_err());
    }
}
