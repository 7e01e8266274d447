//! The outgoing queue: messages waiting to be written, kept across disconnects.
//!
//! Payloads are appended to one contiguous, reused buffer and their lengths
//! to a queue, so `send` costs one copy and no allocation per message, while
//! message boundaries survive for batching (and later, acknowledgements).
//! Limits default to 100 000 messages and 16 MiB; a push beyond either fails
//! and the queue is left unchanged, so nothing is dropped silently.

/// Buffer capacity kept for reuse while a client is idle.
const KEEP_CAPACITY: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            max_messages: 100_000,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The queue was full; nothing was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxFull {
    pub queued_messages: usize,
    pub queued_bytes: usize,
}

/// Queued payloads, plus the batch being written. Taking a batch swaps
/// buffers instead of copying, and a written batch's buffers come back
/// through [`Outbox::recycle`], so a steady stream of sends allocates nothing.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Payloads back to back, oldest first.
    data: Vec<u8>,
    /// Length of each queued payload, oldest first.
    lens: Vec<u32>,
    /// Empty buffers to swap in when a batch is taken.
    spare: Batch,
    /// Messages and payload bytes of the batch being written.
    in_flight: (usize, usize),
    limits: OutboxLimits,
}

/// Messages taken from the outbox to be written together.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    lens: Vec<u32>,
    /// Messages at the front already handed to the transport.
    sent: usize,
    /// Payload bytes of those messages.
    sent_bytes: usize,
    /// Messages and bytes already added to the client's counters.
    counted: (usize, usize),
}

impl Batch {
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Payload bytes in the batch, without framing.
    pub fn payload_bytes(&self) -> usize {
        self.data.len()
    }

    /// Whether every message has been handed to the transport.
    pub fn is_done(&self) -> bool {
        self.sent == self.lens.len()
    }

    /// Messages not yet handed to the transport.
    pub fn unsent(&self) -> usize {
        self.lens.len() - self.sent
    }

    /// The payloads not yet handed to the transport, in order.
    pub fn iter_unsent(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut offset = self.sent_bytes;
        self.lens[self.sent..].iter().map(move |&len| {
            let start = offset;
            offset += len as usize;
            &self.data[start..offset]
        })
    }

    /// Records that the next `messages` unsent messages were handed over.
    pub fn mark_sent(&mut self, messages: usize) {
        let end = (self.sent + messages).min(self.lens.len());
        let bytes: usize = self.lens[self.sent..end].iter().map(|&l| l as usize).sum();
        self.sent = end;
        self.sent_bytes += bytes;
    }

    /// Messages and bytes handed over so far.
    pub fn sent(&self) -> (usize, usize) {
        (self.sent, self.sent_bytes)
    }

    /// Messages and bytes handed over since the last call, for counters.
    pub fn take_newly_sent(&mut self) -> (usize, usize) {
        let new = (self.sent - self.counted.0, self.sent_bytes - self.counted.1);
        self.counted = (self.sent, self.sent_bytes);
        new
    }
}

impl Outbox {
    pub fn new(limits: OutboxLimits) -> Outbox {
        Outbox {
            limits,
            ..Outbox::default()
        }
    }

    pub fn set_limits(&mut self, limits: OutboxLimits) {
        self.limits = limits;
    }

    /// Messages waiting, not counting a batch being written.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Messages and payload bytes waiting or being written; what the limits apply to.
    pub fn queued(&self) -> (usize, usize) {
        (
            self.lens.len() + self.in_flight.0,
            self.data.len() + self.in_flight.1,
        )
    }

    /// Appends a copy of `payload`, or fails without change when a limit would be passed.
    #[inline]
    pub fn push(&mut self, payload: &[u8]) -> Result<(), OutboxFull> {
        let (messages, bytes) = self.queued();
        if messages >= self.limits.max_messages || bytes + payload.len() > self.limits.max_bytes {
            return Err(OutboxFull {
                queued_messages: messages,
                queued_bytes: bytes,
            });
        }
        self.data.extend_from_slice(payload);
        self.lens.push(payload.len() as u32);
        Ok(())
    }

    /// Takes everything queued as one batch, in constant time; `None` if empty.
    /// The batch counts as in flight until [`Outbox::recycle`] or [`Outbox::clear`].
    pub fn take_batch(&mut self) -> Option<Batch> {
        if self.lens.is_empty() {
            return None;
        }
        let mut spare = std::mem::take(&mut self.spare);
        std::mem::swap(&mut spare.data, &mut self.data);
        std::mem::swap(&mut spare.lens, &mut self.lens);
        spare.sent = 0;
        spare.sent_bytes = 0;
        spare.counted = (0, 0);
        self.in_flight = (spare.len(), spare.payload_bytes());
        Some(spare)
    }

    /// Updates the in-flight count after part of a batch was handed over.
    pub fn batch_progress(&mut self, batch: &Batch) {
        self.in_flight = (batch.unsent(), batch.payload_bytes() - batch.sent_bytes);
    }

    /// Takes back a finished batch's buffers for reuse. While sends keep
    /// coming, buffers up to the byte limit are kept, so a sustained stream
    /// stops allocating once warmed up; when idle, only up to 4 MiB stays.
    pub fn recycle(&mut self, mut batch: Batch) {
        self.in_flight = (0, 0);
        let idle = self.lens.is_empty();
        let keep = if idle {
            KEEP_CAPACITY
        } else {
            self.limits.max_bytes.max(KEEP_CAPACITY)
        };
        if batch.data.capacity() <= keep && batch.data.capacity() >= self.spare.data.capacity() {
            batch.data.clear();
            batch.lens.clear();
            self.spare = batch;
        }
        if idle && self.data.capacity() > KEEP_CAPACITY {
            self.data = Vec::new();
            self.lens = Vec::new();
        }
    }

    /// Discards everything waiting and in flight; returns how many messages that was.
    pub fn clear(&mut self) -> usize {
        let n = self.lens.len() + self.in_flight.0;
        self.lens.clear();
        self.data.clear();
        self.in_flight = (0, 0);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(b: &Batch) -> Vec<Vec<u8>> {
        b.iter_unsent().map(|s| s.to_vec()).collect()
    }

    #[test]
    fn keeps_order_across_batches_and_counts_in_flight() {
        let mut o = Outbox::new(OutboxLimits::default());
        for i in 0..3u8 {
            o.push(&[i; 3]).unwrap();
        }
        let first = o.take_batch().unwrap();
        assert_eq!(collect(&first), vec![vec![0; 3], vec![1; 3], vec![2; 3]]);
        o.push(&[3; 3]).unwrap();
        assert_eq!(o.queued(), (4, 12), "in-flight messages still count");
        o.recycle(first);
        assert_eq!(o.queued(), (1, 3));
        assert_eq!(collect(&o.take_batch().unwrap()), vec![vec![3; 3]]);
        assert!(o.take_batch().is_none());
    }

    #[test]
    fn a_partly_written_batch_resumes_after_the_last_message_handed_over() {
        let mut o = Outbox::new(OutboxLimits::default());
        for i in 0..5u8 {
            o.push(&[i; 2]).unwrap();
        }
        let mut batch = o.take_batch().unwrap();
        batch.mark_sent(2);
        o.batch_progress(&batch);
        assert_eq!(o.queued(), (3, 6));
        assert_eq!(collect(&batch), vec![vec![2; 2], vec![3; 2], vec![4; 2]]);
        assert_eq!(batch.sent(), (2, 4));
        batch.mark_sent(10);
        assert!(batch.is_done());
    }

    #[test]
    fn limits_in_messages_and_bytes_reject_without_change() {
        let mut o = Outbox::new(OutboxLimits {
            max_messages: 2,
            max_bytes: 10,
        });
        o.push(b"12345").unwrap();
        assert_eq!(
            o.push(b"123456"),
            Err(OutboxFull {
                queued_messages: 1,
                queued_bytes: 5
            })
        );
        o.push(b"12345").unwrap();
        assert!(o.push(b"").is_err(), "message limit");
        assert_eq!(o.queued(), (2, 10));
        let batch = o.take_batch().unwrap();
        assert!(o.push(b"").is_err(), "a batch in flight still counts");
        o.recycle(batch);
        o.push(b"").unwrap();
        assert_eq!(o.clear(), 1);
    }

    #[test]
    fn buffers_are_reused_between_batches() {
        let mut o = Outbox::new(OutboxLimits::default());
        for round in 0..3 {
            for i in 0..1000u32 {
                o.push(&i.to_be_bytes()).unwrap();
            }
            let batch = o.take_batch().unwrap();
            assert_eq!(batch.len(), 1000);
            assert!(batch
                .iter_unsent()
                .enumerate()
                .all(|(i, p)| p == (i as u32).to_be_bytes()));
            if round > 0 {
                assert!(o.data.capacity() >= 4000, "the recycled buffer came back");
            }
            o.recycle(batch);
        }
    }
}
