//! The outgoing queue: messages waiting to be written, kept across disconnects.
//!
//! Messages are appended to one contiguous, reused buffer, already framed
//! for the wire when the transport's framing is known, and their lengths to
//! a list: `send` costs one copy and no allocation per message, the writer
//! hands whole stretches of the buffer to the socket without touching each
//! message, and message boundaries survive for batching (and later,
//! acknowledgements).
//!
//! A push beyond the limits ([`OutboxLimits`]) fails and the queue is left
//! unchanged, so nothing is dropped silently.
//!
//! Every message gets a number, from 1 in the client's life. With
//! acknowledged delivery (protocol version 2) a written batch is kept
//! ([`Outbox::finish_batch`]) until the peer acknowledges its messages
//! ([`Outbox::ack`]); unacknowledged messages still count against the
//! limits, and after a reconnect [`Outbox::requeue`] puts them back in front
//! of the queue to be written again. Best effort (version 1 and the plain
//! framings) counts a message as done once it is handed to the socket.

use std::collections::VecDeque;

use crate::policy::limits::OutboxLimits;
use crate::protocol::Framing;

/// Marks a text message in a length word (frames are capped far below 2^31).
const TEXT: u32 = 1 << 31;

/// The byte count in a length word.
#[inline]
fn size(word: u32) -> usize {
    (word & !TEXT) as usize
}

/// Buffer capacity kept for reuse while a client is idle.
const KEEP_CAPACITY: usize = 4 * 1024 * 1024;

/// The queue was full; nothing was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxFull {
    pub queued_messages: usize,
    pub queued_bytes: usize,
}

/// The peer acknowledged a message that was never sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckBeyondSent {
    /// The message number the peer acknowledged.
    pub acknowledged: u64,
    /// The highest message number ever taken to be written.
    pub sent: u64,
}

impl std::fmt::Display for AckBeyondSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the peer acknowledged message {} but only {} were sent", self.acknowledged, self.sent)
    }
}

/// Queued messages, plus the batch being written. Taking a batch swaps
/// buffers instead of copying, and a written batch's buffers come back
/// through [`Outbox::recycle`], so a steady stream of sends allocates nothing.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Messages back to back, oldest first, framed if `framing` is set.
    data: Vec<u8>,
    /// Bytes each queued message occupies in `data`, oldest first; the top
    /// bit marks a text message.
    lens: Vec<u32>,
    /// Payload bytes waiting (framing not counted).
    payload_bytes: usize,
    /// Empty buffers to swap in when a batch is taken.
    spare: Batch,
    /// Messages and payload bytes of the batch being written.
    in_flight: (usize, usize),
    /// Framing applied at push time; `None` keeps bare payloads.
    framing: Option<Framing>,
    limits: OutboxLimits,
    /// The number of the last message pushed.
    pushed: u64,
    /// Every message up to this number is done with: acknowledged by the
    /// peer, or (best effort) handed to the socket.
    acked: u64,
    /// The highest number ever taken into a batch to be written: no peer
    /// can have received, so none may acknowledge, a message beyond it.
    taken: u64,
    /// Written batches kept until acknowledged, oldest first; their `sent`
    /// prefix is the part already acknowledged.
    retained: VecDeque<Batch>,
    /// Messages and payload bytes in `retained` not yet acknowledged.
    retained_counts: (usize, usize),
    /// Whether written messages are kept until acknowledged.
    retain: bool,
}

/// Messages taken from the outbox to be written together.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    lens: Vec<u32>,
    /// Messages at the front already handed to the transport.
    sent: usize,
    /// Bytes of `data` those messages occupy.
    sent_bytes: usize,
    /// Bytes of the next message already handed over (a write that took
    /// only part of it): they come first in the next chunk.
    partial: usize,
    /// Messages already added to the client's counters.
    counted: usize,
    /// The framing the messages are encoded in, if any.
    framing: Option<Framing>,
    /// The number of the first message.
    first: u64,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// The number of the last message handed to the transport (one less
    /// than the first message's if none was).
    fn last_sent(&self) -> u64 {
        self.first + self.sent as u64 - 1
    }

    /// Payload bytes of the messages at `range` of the list.
    fn payload_of(&self, range: std::ops::Range<usize>) -> usize {
        let count = range.len();
        self.lens[range].iter().map(|&w| size(w)).sum::<usize>() - self.overhead() * count
    }

    /// The framing the messages are already encoded in; `None` for bare payloads.
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    fn overhead(&self) -> usize {
        self.framing.map_or(0, Framing::data_overhead)
    }

    /// Payload bytes in the batch, without framing.
    pub fn payload_bytes(&self) -> usize {
        self.data.len() - self.overhead() * self.lens.len()
    }

    /// Whether every message has been handed to the transport.
    pub fn is_done(&self) -> bool {
        self.sent == self.lens.len()
    }

    /// Messages not yet handed to the transport.
    pub fn unsent(&self) -> usize {
        self.lens.len() - self.sent
    }

    /// The messages not yet handed to the transport, in order, as stored
    /// (framed if [`Batch::framing`] is set).
    pub fn iter_unsent(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.iter_unsent_with_kind().map(|(_, payload)| payload)
    }

    /// Like [`Batch::iter_unsent`], with whether each message is text.
    pub fn iter_unsent_with_kind(&self) -> impl Iterator<Item = (bool, &[u8])> + '_ {
        let mut offset = self.sent_bytes;
        self.lens[self.sent..].iter().map(move |&word| {
            let start = offset;
            offset += size(word);
            (word & TEXT != 0, &self.data[start..offset])
        })
    }

    /// The next unsent messages filling about `max_bytes` (at least one), as
    /// one contiguous slice, and how many messages it holds (the part of a
    /// message already handed over, [`Batch::record_written`], is left out).
    pub fn next_chunk(&self, max_bytes: usize) -> (usize, &[u8]) {
        let mut count = 0;
        let mut bytes = 0usize;
        for &word in &self.lens[self.sent..] {
            if count > 0 && bytes + size(word) > max_bytes {
                break;
            }
            bytes += size(word);
            count += 1;
        }
        (count, &self.data[self.sent_bytes + self.partial..self.sent_bytes + bytes])
    }

    /// The rest of a message only partly handed over, if a write stopped inside one.
    pub fn unfinished_message(&self) -> Option<&[u8]> {
        let word = *self.lens.get(self.sent).filter(|_| self.partial > 0)?;
        Some(&self.data[self.sent_bytes + self.partial..self.sent_bytes + size(word)])
    }

    /// The number of the first message not yet handed over (messages are
    /// numbered from 1 in the order they were queued).
    pub fn next_unsent_number(&self) -> u64 {
        self.first + self.sent as u64
    }

    /// Records that the next `messages` unsent messages were handed over.
    pub fn mark_sent(&mut self, messages: usize) {
        let end = (self.sent + messages).min(self.lens.len());
        let bytes: usize = self.lens[self.sent..end].iter().map(|&w| size(w)).sum();
        self.sent = end;
        self.sent_bytes += bytes;
        self.partial = 0;
    }

    /// Records that `bytes` more bytes of the stored (framed) messages were
    /// handed over, which may end inside a message.
    pub fn record_written(&mut self, mut bytes: usize) {
        while let Some(&word) = self.lens.get(self.sent) {
            let rest = size(word) - self.partial;
            if bytes < rest {
                self.partial += bytes;
                return;
            }
            bytes -= rest;
            self.mark_sent(1);
        }
    }

    /// Messages and payload bytes handed over since the last call, for counters.
    pub fn take_newly_sent(&mut self) -> (usize, usize) {
        let start = self.counted;
        let bytes: usize = self.lens[start..self.sent].iter().map(|&w| size(w)).sum();
        self.counted = self.sent;
        let messages = self.sent - start;
        (messages, bytes - self.overhead() * messages)
    }
}

impl Outbox {
    /// An outbox that frames messages in `framing` as they are pushed, or
    /// keeps bare payloads with `None` (for transports that frame on their own).
    pub fn new(limits: OutboxLimits, framing: Option<Framing>) -> Outbox {
        Outbox { limits, framing, ..Outbox::default() }
    }

    pub fn set_limits(&mut self, limits: OutboxLimits) {
        self.limits = limits;
    }

    #[inline]
    fn overhead(&self) -> usize {
        self.framing.map_or(0, Framing::data_overhead)
    }

    /// Messages waiting, not counting a batch being written.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Messages and payload bytes waiting or being written; what the limits apply to.
    #[inline]
    pub fn queued(&self) -> (usize, usize) {
        let waiting_bytes = self.data.len() - self.overhead() * self.lens.len();
        (
            self.lens.len() + self.in_flight.0 + self.retained_counts.0,
            waiting_bytes + self.in_flight.1 + self.retained_counts.1,
        )
    }

    /// Written messages waiting for the peer's acknowledgement.
    pub fn unacked(&self) -> usize {
        self.retained_counts.0
    }

    /// The number of the last message pushed; the next push gets one more.
    #[inline]
    pub fn last_number(&self) -> u64 {
        self.pushed
    }

    /// Every message up to this number is done with (see [`Outbox::ack`]).
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Keeps written messages until acknowledged (`true`, protocol version
    /// 2) or counts them done once handed to the socket.
    pub fn set_retain(&mut self, retain: bool) {
        self.retain = retain;
    }

    /// Appends a copy of `payload`, or fails without change when a limit would be passed.
    #[inline]
    pub fn push(&mut self, payload: &[u8]) -> Result<(), OutboxFull> {
        self.push_kind(payload, false)
    }

    /// Like [`Outbox::push`], marking the message as text (for WebSocket;
    /// the TCP framings send text and binary alike). Always inlined: it is
    /// most of every send.
    #[inline(always)]
    pub fn push_kind(&mut self, payload: &[u8], text: bool) -> Result<(), OutboxFull> {
        let (messages, bytes) = self.queued();
        if !self.limits.admits(messages, bytes, payload.len()) {
            return Err(OutboxFull { queued_messages: messages, queued_bytes: bytes });
        }
        let before = self.data.len();
        match self.framing {
            Some(framing) => framing.encode_data(payload, &mut self.data),
            None => self.data.extend_from_slice(payload),
        }
        self.lens.push((self.data.len() - before) as u32 | if text { TEXT } else { 0 });
        self.payload_bytes += payload.len();
        self.pushed += 1;
        Ok(())
    }

    /// Whether a message of `len` payload bytes fits the limits now.
    #[inline]
    pub fn has_room(&self, len: usize) -> Result<(), OutboxFull> {
        let (messages, bytes) = self.queued();
        match self.limits.admits(messages, bytes, len) {
            true => Ok(()),
            false => Err(OutboxFull { queued_messages: messages, queued_bytes: bytes }),
        }
    }

    /// Starts an empty outbox where a durable one stood: every message up
    /// to `acked` done with, then `messages` (text or not, payload) queued
    /// and numbered from `acked + 1`, whatever the limits.
    pub fn restore<'a>(&mut self, acked: u64, messages: impl Iterator<Item = (bool, &'a [u8])>) {
        debug_assert!(self.is_empty() && self.pushed == 0);
        (self.pushed, self.acked, self.taken) = (acked, acked, acked);
        let limits =
            std::mem::replace(&mut self.limits, OutboxLimits { max_messages: usize::MAX, max_bytes: usize::MAX });
        for (text, payload) in messages {
            self.push_kind(payload, text).expect("no limit while restoring");
        }
        self.limits = limits;
        // They may have been written before: the server may acknowledge them.
        self.taken = self.pushed;
    }

    /// Takes everything queued as one batch, in constant time; `None` if empty.
    /// The batch counts as in flight until [`Outbox::recycle`] or [`Outbox::clear`].
    pub fn take_batch(&mut self) -> Option<Batch> {
        if self.lens.is_empty() {
            return None;
        }
        let mut batch = std::mem::take(&mut self.spare);
        std::mem::swap(&mut batch.data, &mut self.data);
        std::mem::swap(&mut batch.lens, &mut self.lens);
        batch.sent = 0;
        batch.sent_bytes = 0;
        batch.partial = 0;
        batch.counted = 0;
        batch.framing = self.framing;
        batch.first = self.pushed + 1 - batch.len() as u64;
        self.taken = self.pushed;
        self.in_flight = (batch.len(), std::mem::take(&mut self.payload_bytes));
        Some(batch)
    }

    /// Updates the in-flight figures after part of a batch was handed over.
    /// Kept messages still count in flight until the batch is finished.
    pub fn batch_progress(&mut self, batch: &Batch) {
        if self.retain {
            return;
        }
        let unsent = batch.unsent();
        let unsent_bytes = batch.data.len() - batch.sent_bytes - batch.overhead() * unsent;
        self.in_flight = (unsent, unsent_bytes);
        self.acked = self.acked.max(batch.last_sent());
    }

    /// Takes back a batch that was written whole: kept until acknowledged
    /// when retaining, else recycled (see [`Outbox::recycle`]).
    #[must_use = "drop the returned buffers outside the outbox lock"]
    pub fn finish_batch(&mut self, mut batch: Batch) -> Option<Batch> {
        if !self.retain {
            self.acked = self.acked.max(batch.last_sent());
            return self.recycle(batch);
        }
        self.in_flight = (0, 0);
        batch.sent = 0;
        batch.sent_bytes = 0;
        batch.partial = 0;
        let counts = (batch.len(), batch.payload_of(0..batch.len()));
        self.retained_counts = (self.retained_counts.0 + counts.0, self.retained_counts.1 + counts.1);
        self.retained.push_back(batch);
        self.trim()
    }

    /// Records the peer's acknowledgement of every message up to `number`
    /// and frees what it covers; returns buffers to drop outside the lock.
    /// An acknowledgement beyond the kept messages, with no batch in
    /// flight, trims the front of the queue (after a reconnect, when
    /// everything unacknowledged is queued again). One beyond every
    /// message ever taken to be written is refused: the peer claims what it
    /// cannot have, and trusting it would drop messages never delivered.
    pub fn ack(&mut self, number: u64) -> Result<Option<Batch>, AckBeyondSent> {
        if number > self.taken {
            return Err(AckBeyondSent { acknowledged: number, sent: self.taken });
        }
        if number <= self.acked {
            return Ok(None);
        }
        self.acked = number;
        Ok(self.trim())
    }

    /// Frees the kept (and, with no batch in flight, queued) messages up to `acked`.
    fn trim(&mut self) -> Option<Batch> {
        let number = self.acked;
        let mut unused = None;
        while let Some(front) = self.retained.front_mut() {
            let covered = ((number + 1).saturating_sub(front.first) as usize).min(front.len());
            if covered > front.sent {
                let bytes = front.payload_of(front.sent..covered);
                self.retained_counts =
                    (self.retained_counts.0 - (covered - front.sent), self.retained_counts.1 - bytes);
                front.mark_sent(covered - front.sent);
            }
            if !front.is_done() {
                return unused;
            }
            let done = self.retained.pop_front().expect("front exists");
            let old_in_flight = self.in_flight;
            unused = self.recycle(done);
            self.in_flight = old_in_flight;
        }
        if self.in_flight == (0, 0) && !self.lens.is_empty() {
            let first_waiting = self.pushed + 1 - self.lens.len() as u64;
            let drop = ((number + 1).saturating_sub(first_waiting) as usize).min(self.lens.len());
            if drop > 0 {
                let bytes: usize = self.lens[..drop].iter().map(|&w| size(w)).sum();
                self.payload_bytes -= bytes - self.overhead() * drop;
                self.data.drain(..bytes);
                self.lens.drain(..drop);
            }
        }
        unused
    }

    /// After a connection ended: puts every message not done with (kept
    /// ones, then those of the batch that was being written) back in front
    /// of the queue, in order, to be written on the next connection.
    pub fn requeue(&mut self, in_flight: Option<Batch>) {
        if self.retained.is_empty() && in_flight.is_none() {
            return;
        }
        let overhead = self.overhead();
        let mut data = Vec::with_capacity(self.data.len() + self.retained_counts.1 + self.in_flight.1);
        let mut lens = Vec::new();
        let mut payload_bytes = 0;
        for batch in self.retained.drain(..).chain(in_flight) {
            let mut offset = 0;
            for (i, &word) in batch.lens.iter().enumerate() {
                if batch.first + i as u64 > self.acked {
                    data.extend_from_slice(&batch.data[offset..offset + size(word)]);
                    lens.push(word);
                    payload_bytes += size(word) - overhead;
                }
                offset += size(word);
            }
        }
        data.extend_from_slice(&self.data);
        lens.extend_from_slice(&self.lens);
        self.data = data;
        self.lens = lens;
        self.payload_bytes += payload_bytes;
        self.retained_counts = (0, 0);
        self.in_flight = (0, 0);
        debug_assert_eq!(self.lens.len() as u64, self.pushed - self.acked, "requeued messages are contiguous");
    }

    /// Takes back a finished batch's buffers for reuse. While sends keep
    /// coming, buffers up to the byte limit are kept, so a sustained stream
    /// stops allocating once warmed up; when idle, only up to 4 MiB stays.
    ///
    /// Returns the buffers not kept: drop them after releasing any lock
    /// around the outbox, since freeing megabytes is slow.
    #[must_use = "drop the returned buffers outside the outbox lock"]
    pub fn recycle(&mut self, mut batch: Batch) -> Option<Batch> {
        self.in_flight = (0, 0);
        let idle = self.lens.is_empty();
        let keep = if idle { KEEP_CAPACITY } else { self.limits.max_bytes.max(KEEP_CAPACITY) };
        if batch.data.capacity() <= keep && batch.data.capacity() >= self.spare.data.capacity() {
            batch.data.clear();
            batch.lens.clear();
            batch = std::mem::replace(&mut self.spare, batch);
        }
        if idle && self.data.capacity() > KEEP_CAPACITY {
            batch.data = std::mem::take(&mut self.data);
            batch.lens = std::mem::take(&mut self.lens);
        }
        (batch.data.capacity() > 0).then_some(batch)
    }

    /// Discards everything waiting, in flight and unacknowledged; returns
    /// how many messages that was.
    pub fn clear(&mut self) -> usize {
        let n = self.lens.len() + self.in_flight.0 + self.retained_counts.0;
        self.retained.clear();
        self.retained_counts = (0, 0);
        self.acked = self.pushed;
        self.lens.clear();
        self.data.clear();
        self.payload_bytes = 0;
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

    fn bare() -> Outbox {
        Outbox::new(OutboxLimits::default(), None)
    }

    #[test]
    fn keeps_order_across_batches_and_counts_in_flight() {
        let mut o = bare();
        for i in 0..3u8 {
            o.push(&[i; 3]).unwrap();
        }
        let first = o.take_batch().unwrap();
        assert_eq!(collect(&first), vec![vec![0; 3], vec![1; 3], vec![2; 3]]);
        o.push(&[3; 3]).unwrap();
        assert_eq!(o.queued(), (4, 12), "in-flight messages still count");
        drop(o.recycle(first));
        assert_eq!(o.queued(), (1, 3));
        assert_eq!(collect(&o.take_batch().unwrap()), vec![vec![3; 3]]);
        assert!(o.take_batch().is_none());
    }

    #[test]
    fn a_partly_written_batch_resumes_after_the_last_message_handed_over() {
        let mut o = bare();
        for i in 0..5u8 {
            o.push(&[i; 2]).unwrap();
        }
        let mut batch = o.take_batch().unwrap();
        batch.mark_sent(2);
        o.batch_progress(&batch);
        assert_eq!(o.queued(), (3, 6));
        assert_eq!(collect(&batch), vec![vec![2; 2], vec![3; 2], vec![4; 2]]);
        assert_eq!(batch.take_newly_sent(), (2, 4));
        assert_eq!(batch.take_newly_sent(), (0, 0));
        batch.mark_sent(10);
        assert!(batch.is_done());
        assert_eq!(batch.take_newly_sent(), (3, 6));
    }

    #[test]
    fn framed_messages_are_stored_as_wire_bytes_and_counted_as_payload() {
        let mut o = Outbox::new(OutboxLimits::default(), Some(Framing::Length));
        o.push(b"ab").unwrap();
        o.push(b"").unwrap();
        o.push(b"cde").unwrap();
        assert_eq!(o.queued(), (3, 5), "limits and stats count payload bytes");
        let mut batch = o.take_batch().unwrap();
        assert_eq!(batch.payload_bytes(), 5);
        let (count, chunk) = batch.next_chunk(10);
        assert_eq!((count, chunk), (2, &b"\0\0\0\x02ab\0\0\0\0"[..]));
        batch.mark_sent(count);
        o.batch_progress(&batch);
        assert_eq!(o.queued(), (1, 3));
        assert_eq!(batch.next_chunk(1), (1, &b"\0\0\0\x03cde"[..]));
        assert_eq!(batch.take_newly_sent(), (2, 2));
    }

    #[test]
    fn a_write_that_ends_inside_a_message_leaves_its_rest_first() {
        let mut o = Outbox::new(OutboxLimits::default(), Some(Framing::Length));
        o.push(b"abcdef").unwrap();
        o.push(b"gh").unwrap();
        let mut batch = o.take_batch().unwrap();
        batch.record_written(7); // the first frame's header and "abc"
        assert_eq!(batch.unfinished_message(), Some(&b"def"[..]));
        assert_eq!(batch.next_chunk(100), (2, &b"def\0\0\0\x02gh"[..]));
        assert_eq!(batch.take_newly_sent(), (0, 0), "a message counts once all of it is handed over");
        batch.record_written(4);
        assert_eq!((batch.unfinished_message(), batch.unsent()), (Some(&b"\0\0\x02gh"[..]), 1));
        assert_eq!(batch.take_newly_sent(), (1, 6));
        batch.record_written(5);
        assert!(batch.is_done() && batch.unfinished_message().is_none());
        assert_eq!(batch.take_newly_sent(), (1, 2));
    }

    #[test]
    fn text_marks_travel_with_their_messages() {
        let mut o = bare();
        o.push_kind(b"text", true).unwrap();
        o.push(b"bin").unwrap();
        assert_eq!(o.queued(), (2, 7));
        let mut batch = o.take_batch().unwrap();
        let kinds: Vec<(bool, &[u8])> = batch.iter_unsent_with_kind().collect();
        assert_eq!(kinds, vec![(true, &b"text"[..]), (false, &b"bin"[..])]);
        batch.mark_sent(1);
        assert_eq!(batch.take_newly_sent(), (1, 4));
        assert_eq!(batch.next_chunk(usize::MAX), (1, &b"bin"[..]));
    }

    #[test]
    fn limits_in_messages_and_bytes_reject_without_change() {
        let mut o = Outbox::new(OutboxLimits { max_messages: 2, max_bytes: 10 }, Some(Framing::Longconn));
        o.push(b"12345").unwrap();
        assert_eq!(o.push(b"123456"), Err(OutboxFull { queued_messages: 1, queued_bytes: 5 }));
        o.push(b"12345").unwrap();
        assert!(o.push(b"").is_err(), "message limit");
        assert_eq!(o.queued(), (2, 10));
        let batch = o.take_batch().unwrap();
        assert!(o.push(b"").is_err(), "a batch in flight still counts");
        drop(o.recycle(batch));
        o.push(b"").unwrap();
        assert_eq!(o.clear(), 1);
    }

    #[test]
    fn kept_messages_count_until_acknowledged_and_come_back_in_order_after_a_disconnect() {
        let mut o = Outbox::new(OutboxLimits { max_messages: 5, max_bytes: 100 }, Some(Framing::Longconn));
        o.set_retain(true);
        for i in 1..=4u8 {
            o.push(&[i; 2]).unwrap();
        }
        assert_eq!(o.last_number(), 4);
        let batch = o.take_batch().unwrap();
        assert!(o.finish_batch(batch).is_none(), "kept, not recycled");
        assert_eq!((o.queued(), o.unacked()), ((4, 8), 4), "written but unacknowledged still counts");
        o.push(&[5; 2]).unwrap();
        assert!(o.push(&[6; 2]).is_err(), "the limit counts unacknowledged messages");
        assert_eq!(o.ack(5).unwrap_err(), AckBeyondSent { acknowledged: 5, sent: 4 }, "5 was never written");
        drop(o.ack(2));
        assert_eq!((o.queued(), o.unacked(), o.acked()), ((3, 6), 2, 2));
        drop(o.ack(1));
        assert_eq!(o.acked(), 2, "acknowledgements never go back");
        // The connection drops: 3 and 4 go back in front of 5.
        o.requeue(None);
        assert_eq!((o.queued(), o.unacked()), ((3, 6), 0));
        let mut batch = o.take_batch().unwrap();
        let mut wire = Vec::new();
        for i in [3u8, 4, 5] {
            Framing::Longconn.encode_data(&[i; 2], &mut wire);
        }
        assert_eq!(batch.next_chunk(usize::MAX), (3, &wire[..]));
        // A resumed session reports more received than acknowledged: trimmed at once.
        batch.mark_sent(1);
        o.requeue(Some(batch));
        drop(o.ack(4));
        assert_eq!(o.queued(), (1, 2), "only message 5 is left");
    }

    #[test]
    fn best_effort_counts_messages_done_once_handed_to_the_socket() {
        let mut o = bare();
        for i in 0..3u8 {
            o.push(&[i]).unwrap();
        }
        let mut batch = o.take_batch().unwrap();
        batch.mark_sent(2);
        o.batch_progress(&batch);
        assert_eq!(o.acked(), 2);
        o.requeue(Some(batch));
        assert_eq!(o.queued(), (1, 1), "only the unwritten message is written again");
        assert_eq!(o.clear(), 1);
        assert_eq!(o.acked(), 3);
    }

    #[test]
    fn buffers_are_reused_between_batches() {
        let mut o = bare();
        for round in 0..3 {
            for i in 0..1000u32 {
                o.push(&i.to_be_bytes()).unwrap();
            }
            let batch = o.take_batch().unwrap();
            assert_eq!(batch.len(), 1000);
            assert!(batch.iter_unsent().enumerate().all(|(i, p)| p == (i as u32).to_be_bytes()));
            if round > 0 {
                assert!(o.data.capacity() >= 4000, "the recycled buffer came back");
            }
            drop(o.recycle(batch));
        }
    }
}
