//! The outgoing queue: messages waiting to be written, kept across disconnects.
//!
//! Payloads are appended to one contiguous, reused buffer and their lengths
//! to a queue, so `send` costs one copy and no allocation per message, while
//! message boundaries survive for batching (and later, acknowledgements).
//! Limits default to 100 000 messages and 16 MiB; a push beyond either fails
//! and the queue is left unchanged, so nothing is dropped silently.

use std::collections::VecDeque;

/// A buffer larger than this is not kept for reuse once empty.
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

/// Queued payloads. Memory is reused: a taken batch's buffer comes back
/// through [`Outbox::recycle`], so a steady stream of sends allocates nothing.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Payloads back to back; those before `head` are already taken.
    data: Vec<u8>,
    /// Start of the oldest queued payload in `data`.
    head: usize,
    /// Length of each queued payload, oldest first.
    lens: VecDeque<u32>,
    /// An empty buffer to hand out with the next batch.
    spare: Vec<u8>,
    limits: OutboxLimits,
}

/// Messages taken from the outbox to be written together.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    lens: Vec<u32>,
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

    /// The payloads in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut offset = 0usize;
        self.lens.iter().map(move |&len| {
            let start = offset;
            offset += len as usize;
            &self.data[start..offset]
        })
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

    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.data.len() - self.head
    }

    /// Appends a copy of `payload`, or fails without change when a limit would be passed.
    #[inline]
    pub fn push(&mut self, payload: &[u8]) -> Result<(), OutboxFull> {
        if self.lens.len() >= self.limits.max_messages
            || self.bytes() + payload.len() > self.limits.max_bytes
        {
            return Err(OutboxFull {
                queued_messages: self.lens.len(),
                queued_bytes: self.bytes(),
            });
        }
        self.data.extend_from_slice(payload);
        self.lens.push_back(payload.len() as u32);
        Ok(())
    }

    /// Takes the oldest messages, up to about `max_bytes` of payload (at least one message).
    pub fn take_batch(&mut self, max_bytes: usize) -> Batch {
        let mut count = 0;
        let mut bytes = 0usize;
        for &len in &self.lens {
            if count > 0 && bytes + len as usize > max_bytes {
                break;
            }
            bytes += len as usize;
            count += 1;
        }
        let lens: Vec<u32> = self.lens.drain(..count).collect();
        let data = if self.head == 0 && bytes == self.data.len() {
            // Everything queued: hand over the buffer itself.
            std::mem::replace(&mut self.data, std::mem::take(&mut self.spare))
        } else {
            let mut data = std::mem::take(&mut self.spare);
            data.extend_from_slice(&self.data[self.head..self.head + bytes]);
            self.head += bytes;
            self.compact();
            data
        };
        Batch { data, lens }
    }

    /// Drops taken bytes once they outweigh the rest, keeping compaction
    /// linear in the bytes queued.
    fn compact(&mut self) {
        if self.head == self.data.len() {
            self.data.clear();
            self.head = 0;
        } else if self.head >= self.data.len() / 2 {
            self.data.drain(..self.head);
            self.head = 0;
        }
    }

    /// Returns a written batch's buffer for reuse.
    pub fn recycle(&mut self, batch: Batch) {
        let mut buffer = batch.data;
        if buffer.capacity() <= KEEP_CAPACITY && buffer.capacity() > self.spare.capacity() {
            buffer.clear();
            self.spare = buffer;
        }
        if self.is_empty() && self.data.capacity() > KEEP_CAPACITY {
            self.data = Vec::new();
            self.head = 0;
        }
    }

    /// Discards everything; returns how many messages were discarded.
    pub fn clear(&mut self) -> usize {
        let n = self.lens.len();
        self.lens.clear();
        self.data.clear();
        self.head = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(b: &Batch) -> Vec<Vec<u8>> {
        b.iter().map(|s| s.to_vec()).collect()
    }

    #[test]
    fn keeps_order_across_batches() {
        let mut o = Outbox::new(OutboxLimits::default());
        for i in 0..10u8 {
            o.push(&[i; 3]).unwrap();
        }
        let first = o.take_batch(9);
        assert_eq!(collect(&first), vec![vec![0; 3], vec![1; 3], vec![2; 3]]);
        let rest = o.take_batch(usize::MAX);
        assert_eq!(rest.len(), 7);
        assert_eq!(rest.iter().next().unwrap(), &[3; 3]);
        assert!(o.is_empty() && o.bytes() == 0);
    }

    #[test]
    fn a_message_larger_than_the_batch_size_still_goes_alone() {
        let mut o = Outbox::new(OutboxLimits::default());
        o.push(&[1; 100]).unwrap();
        o.push(&[2; 1]).unwrap();
        let b = o.take_batch(10);
        assert_eq!(b.len(), 1);
        assert_eq!(b.payload_bytes(), 100);
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
        assert_eq!((o.len(), o.bytes()), (2, 10));
        assert_eq!(o.clear(), 2);
        o.push(b"").unwrap();
    }

    #[test]
    fn partial_batches_and_recycling_keep_contents_intact() {
        let mut o = Outbox::new(OutboxLimits::default());
        let mut next = 0u32;
        let mut expected = 0u32;
        for round in 0..50 {
            for _ in 0..(round % 7 + 1) * 10 {
                o.push(&next.to_be_bytes()).unwrap();
                next += 1;
            }
            let batch = o.take_batch(4 * (round % 5 + 1));
            for payload in batch.iter() {
                assert_eq!(payload, expected.to_be_bytes());
                expected += 1;
            }
            o.recycle(batch);
        }
        let rest = o.take_batch(usize::MAX);
        for payload in rest.iter() {
            assert_eq!(payload, expected.to_be_bytes());
            expected += 1;
        }
        assert_eq!(expected, next);
        assert!(o.is_empty() && o.bytes() == 0);
    }
}
