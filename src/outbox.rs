//! The outgoing queue: messages waiting to be written, kept across disconnects.
//!
//! Payloads are appended to one contiguous buffer and their lengths to a
//! queue, so `send` costs one copy and no allocation per message, while
//! message boundaries survive for batching (and later, acknowledgements).
//! Limits default to 100 000 messages and 16 MiB; a push beyond either fails
//! and the queue is left unchanged, so nothing is dropped silently.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

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

#[derive(Debug, Default)]
pub struct Outbox {
    /// Payloads back to back, oldest first.
    data: BytesMut,
    /// Length of each queued payload, oldest first.
    lens: VecDeque<u32>,
    limits: OutboxLimits,
}

/// Messages taken from the outbox to be written together.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    data: Bytes,
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
            data: BytesMut::new(),
            lens: VecDeque::new(),
            limits,
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
        self.data.len()
    }

    /// Appends a copy of `payload`, or fails without change when a limit would be passed.
    #[inline]
    pub fn push(&mut self, payload: &[u8]) -> Result<(), OutboxFull> {
        if self.lens.len() >= self.limits.max_messages
            || self.data.len() + payload.len() > self.limits.max_bytes
        {
            return Err(OutboxFull {
                queued_messages: self.lens.len(),
                queued_bytes: self.data.len(),
            });
        }
        self.data.extend_from_slice(payload);
        self.lens.push_back(payload.len() as u32);
        Ok(())
    }

    /// Takes the oldest messages, up to about `max_bytes` of payload (at least one message).
    pub fn take_batch(&mut self, max_bytes: usize) -> Batch {
        if self.data.len() <= max_bytes {
            let lens = Vec::from(std::mem::take(&mut self.lens));
            return Batch {
                data: self.data.split().freeze(),
                lens,
            };
        }
        let mut count = 0;
        let mut bytes = 0usize;
        for &len in &self.lens {
            if count > 0 && bytes + len as usize > max_bytes {
                break;
            }
            bytes += len as usize;
            count += 1;
        }
        Batch {
            data: self.data.split_to(bytes).freeze(),
            lens: self.lens.drain(..count).collect(),
        }
    }

    /// Discards everything; returns how many messages were discarded.
    pub fn clear(&mut self) -> usize {
        let n = self.lens.len();
        self.lens.clear();
        self.data.clear();
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
}
