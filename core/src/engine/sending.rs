//! The outbox side of a client: the handle pushes messages, the session's
//! writer takes them in batches and reports progress, and senders that wait
//! for room ([`Sending::push_waiting`]) are woken as room frees.
//!
//! On plain TCP, a send that finds the outbox empty and the connection's
//! writer parked writes the message itself, from the application's thread,
//! without waiting ([`Direct::write`]): a message travelling
//! alone costs no wake-up of an I/O thread. Whatever the socket does not
//! take at once is handed to the writer. WebSocket does the same with its
//! frames encoded first ([`crate::transport::stream::WsDirect`]). Who may write is one atomic
//! ([`WriterTurn`]); the writer takes its turn back before every write.
//!
//! One direct write per read from the peer: a request answering a reply
//! goes at once, while a stream of sends (one write call each would cost
//! far more than the writer's batches) falls back to the writer after its
//! first message; and only while at most the message being handled waits
//! for the application (a send then likely answers it, rather than being
//! one of many replies to come, better written together).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use super::counters::Counters;
use crate::durable::format::SavedMessage;
use crate::durable::DurableOutbox;
use crate::lock::{lock, wait_timeout};
use crate::log::{log_at, Level};
use crate::outbox::{AckBeyondSent, Batch, Outbox, OutboxFull};
use crate::policy::limits::OutboxLimits;
use crate::protocol::Framing;
use crate::transport::Direct;

/// Whose turn it is to write to the connection's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum WriterTurn {
    /// The session's writer (writing, about to, or no connection).
    Writer = 0,
    /// The writer waits for work with nothing in hand: a sender may write.
    Parked = 1,
    /// A sender is writing directly.
    Direct = 2,
}

/// The socket direct writes go to, and what one of them left for the writer.
#[derive(Debug, Default)]
struct DirectSlot {
    socket: Option<Direct>,
    /// A batch a direct write could not finish; the writer's next.
    handoff: Option<Batch>,
    /// A direct write left bytes in the transport's buffer for the writer to flush.
    flush_owed: bool,
}

/// Why [`Sending::push_waiting`] queued nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotQueued {
    /// No room came in time (or waiting was not allowed).
    Full(OutboxFull),
    /// The client was closed before or while waiting.
    Closed,
    /// The durable outbox could not be written: the message was not queued.
    Disk(String),
}

#[derive(Debug)]
pub struct Sending {
    outbox: Mutex<Outbox>,
    /// Wakes senders waiting for room.
    room: Condvar,
    /// Senders waiting on `room`; only then is it notified.
    room_waiters: AtomicUsize,
    /// Wakes the writer: messages queued, a control frame, or a close request.
    writer_wake: Notify,
    /// A [`WriterTurn`].
    turn: AtomicU8,
    /// The peer sent something since the last direct write.
    direct_armed: AtomicBool,
    direct: Mutex<DirectSlot>,
    /// The outbox file (`ClientConfig::outbox_path`), written under the
    /// outbox lock so its records follow the outbox's numbering.
    durable: Option<Mutex<DurableOutbox>>,
    /// Notified when the outbox file holds records not yet synced that a
    /// sync window must cover (`OutboxSync::Within`).
    unsynced: Notify,
}

impl Sending {
    /// Messages are framed in `framing` as they are pushed (`None`: bare payloads).
    pub fn new(limits: OutboxLimits, framing: Option<Framing>) -> Sending {
        Sending {
            outbox: Mutex::new(Outbox::new(limits, framing)),
            room: Condvar::new(),
            room_waiters: AtomicUsize::new(0),
            writer_wake: Notify::new(),
            turn: AtomicU8::new(WriterTurn::Writer as u8),
            direct_armed: AtomicBool::new(true),
            direct: Mutex::new(DirectSlot::default()),
            durable: None,
            unsynced: Notify::new(),
        }
    }

    /// Keeps the outbox in `durable` too, starting from what it held: every
    /// message up to `acked` done with, then `messages` queued.
    pub fn make_durable(&mut self, durable: DurableOutbox, acked: u64, messages: &[SavedMessage]) {
        lock(&self.outbox).restore(acked, messages.iter().map(|m| (m.text, &m.payload[..])));
        self.durable = Some(Mutex::new(durable));
    }

    /// The outbox file, if the client keeps one.
    pub fn durable(&self) -> Option<MutexGuard<'_, DurableOutbox>> {
        self.durable.as_ref().map(lock)
    }

    /// Syncs the outbox file's records within their window
    /// (`OutboxSync::Within`), for as long as the client lives.
    pub async fn sync_durable_in_time(&self) {
        let Some(durable) = &self.durable else { return std::future::pending().await };
        loop {
            let due = lock(durable).sync_due();
            match due {
                Some(due) => tokio::time::sleep_until(due.into()).await,
                None => {
                    self.unsynced.notified().await;
                    continue;
                }
            }
            if let Err(e) = lock(durable).sync_now() {
                log_at!(Level::Warn, "the outbox file could not be synced: {e}");
            }
        }
    }

    /// Queues a copy of `payload`; if the outbox was empty, writes it
    /// directly or wakes the writer. Returns the message's number.
    #[inline]
    pub fn push(
        &self,
        payload: &[u8],
        text: bool,
        counters: &Counters,
        alone: impl Fn() -> bool,
    ) -> Result<u64, NotQueued> {
        self.push_locked(lock(&self.outbox), payload, text, counters, &alone).map_err(|(_, why)| why)
    }

    /// Queues `payload` under the held lock, releases it, and, if the
    /// outbox was empty, writes it directly or wakes the writer. When full,
    /// hands the lock back. Always inlined: out of line it costs `send` a
    /// quarter more instructions.
    #[inline(always)]
    fn push_locked<'a>(
        &self,
        mut outbox: MutexGuard<'a, Outbox>,
        payload: &[u8],
        text: bool,
        counters: &Counters,
        alone: &dyn Fn() -> bool,
    ) -> Result<u64, (MutexGuard<'a, Outbox>, NotQueued)> {
        let was_empty = outbox.is_empty();
        if let Some(durable) = &self.durable {
            // On disk first (then it fits in memory too): the record is the promise.
            if let Err(full) = outbox.has_room(payload.len()) {
                return Err((outbox, NotQueued::Full(full)));
            }
            let number = outbox.last_number() + 1;
            let mut durable = lock(durable);
            if let Err(e) = durable.append_message(number, text, payload) {
                return Err((outbox, NotQueued::Disk(e.to_string())));
            }
            if durable.sync_due().is_some() {
                self.unsynced.notify_one();
            }
        }
        if let Err(full) = outbox.push_kind(payload, text) {
            return Err((outbox, NotQueued::Full(full)));
        }
        let number = outbox.last_number();
        if was_empty {
            self.after_first_push(outbox, counters, alone);
        } else {
            drop(outbox);
        }
        Ok(number)
    }

    /// The outbox just went from empty to not: write its content from this
    /// thread if the writer is parked, else wake the writer.
    #[inline]
    fn after_first_push(&self, mut outbox: MutexGuard<'_, Outbox>, counters: &Counters, alone: &dyn Fn() -> bool) {
        let claimed = self.direct_armed.load(Ordering::Relaxed)
            && alone()
            && self
                .turn
                .compare_exchange(
                    WriterTurn::Parked as u8,
                    WriterTurn::Direct as u8,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok();
        if !claimed {
            drop(outbox);
            self.writer_wake.notify_one();
            return;
        }
        self.direct_armed.store(false, Ordering::Relaxed);
        let batch = outbox.take_batch();
        drop(outbox);
        if let Some(batch) = batch {
            self.write_direct(batch, counters);
        }
    }

    /// The connection read something from the peer: the next send may
    /// write directly again.
    #[inline]
    pub fn peer_spoke(&self) {
        if !self.direct_armed.load(Ordering::Relaxed) {
            self.direct_armed.store(true, Ordering::Relaxed);
        }
    }

    /// Hands `batch` to the socket without waiting, on this thread (our
    /// turn is [`WriterTurn::Direct`]); what is left goes to the writer.
    fn write_direct(&self, mut batch: Batch, counters: &Counters) {
        let mut slot = lock(&self.direct);
        let flush_owed = slot.socket.as_ref().is_some_and(|direct| direct.write(&mut batch).flush_owed);
        slot.flush_owed |= flush_owed;
        // Bookkeeping before the turn is given back, so batches are
        // finished (and kept for acknowledgement) in the order written.
        let handed_off = !batch.is_done();
        if handed_off {
            count_sent(&mut batch, counters);
            slot.handoff = Some(batch);
            drop(slot);
        } else {
            drop(slot);
            self.batch_written(batch, counters);
        }
        if handed_off || flush_owed {
            // The writer's turn now: nothing may be written before the rest.
            self.turn.store(WriterTurn::Writer as u8, Ordering::Release);
            self.writer_wake.notify_one();
        } else {
            self.turn.store(WriterTurn::Parked as u8, Ordering::Release);
        }
    }

    /// Whether a direct write left something for the writer to flush (once).
    pub fn take_flush_owed(&self) -> bool {
        std::mem::take(&mut lock(&self.direct).flush_owed)
    }

    /// The writer's turn to write: waits out a direct write in progress
    /// (one call that does not block).
    pub async fn take_turn(&self) {
        loop {
            match self.turn.compare_exchange(
                WriterTurn::Parked as u8,
                WriterTurn::Writer as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(turn) if turn == WriterTurn::Writer as u8 => return,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    }

    /// The writer has nothing to write and waits: senders may write
    /// directly, if the connection allows it ([`Sending::attach_direct`]).
    pub fn park_writer(&self) {
        if lock(&self.direct).socket.is_some() {
            self.turn.store(WriterTurn::Parked as u8, Ordering::Release);
        }
    }

    /// A new connection's socket for direct writes (`None`: none allowed).
    pub fn attach_direct(&self, socket: Option<Direct>) {
        lock(&self.direct).socket = socket;
    }

    /// The connection ended: no more direct writes, and the batch a direct
    /// write left unfinished, if any, goes to `in_flight` (then empty) to be
    /// requeued with it. Call after [`Sending::take_turn`].
    pub fn detach_direct(&self, in_flight: &mut Option<Batch>) {
        let mut slot = lock(&self.direct);
        slot.socket = None;
        slot.flush_owed = false;
        if let Some(batch) = slot.handoff.take() {
            debug_assert!(in_flight.is_none(), "the writer parks only with nothing in hand");
            *in_flight = Some(batch);
        }
    }

    /// What a direct write left for the writer to finish.
    pub fn take_handoff(&self) -> Option<Batch> {
        lock(&self.direct).handoff.take()
    }

    /// Like [`Sending::push`], but when the outbox is full waits up to
    /// `timeout` for room, if `may_wait()`. `closed` is checked before each
    /// wait and after it. The clock is read, and `may_wait` asked, only once
    /// the outbox is full: with room, this costs what `push` does.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn push_waiting(
        &self,
        payload: &[u8],
        text: bool,
        timeout: Duration,
        may_wait: impl Fn() -> bool,
        closed: impl Fn() -> bool,
        counters: &Counters,
        alone: impl Fn() -> bool,
    ) -> Result<u64, NotQueued> {
        let outbox = lock(&self.outbox);
        match self.push_locked(outbox, payload, text, counters, &alone) {
            Ok(number) => Ok(number),
            Err((outbox, NotQueued::Full(full))) => {
                self.wait_for_room(outbox, full, (payload, text), timeout, may_wait(), closed, (counters, &alone))
            }
            Err((_, why)) => Err(why),
        }
    }

    /// The slow half of [`Sending::push_waiting`]: the outbox was full.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn wait_for_room(
        &self,
        mut outbox: MutexGuard<'_, Outbox>,
        mut full: OutboxFull,
        (payload, text): (&[u8], bool),
        timeout: Duration,
        may_wait: bool,
        closed: impl Fn() -> bool,
        (counters, alone): (&Counters, &dyn Fn() -> bool),
    ) -> Result<u64, NotQueued> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if !may_wait || left == Some(Duration::ZERO) {
                return Err(NotQueued::Full(full));
            }
            if closed() {
                return Err(NotQueued::Closed);
            }
            self.room_waiters.fetch_add(1, Ordering::Relaxed);
            outbox = wait_timeout(&self.room, outbox, left.unwrap_or(Duration::MAX));
            self.room_waiters.fetch_sub(1, Ordering::Relaxed);
            if closed() {
                return Err(NotQueued::Closed);
            }
            match self.push_locked(outbox, payload, text, counters, alone) {
                Ok(number) => return Ok(number),
                Err((guard, NotQueued::Full(still_full))) => (outbox, full) = (guard, still_full),
                Err((_, why)) => return Err(why),
            }
        }
    }

    /// Queues copies of `payloads` in order under one lock, until one does
    /// not fit; how many were queued, and the reason it stopped, if it did.
    pub fn push_all(&self, payloads: &[&[u8]]) -> (usize, Option<NotQueued>) {
        let mut queued = 0;
        let mut stopped = None;
        let mut outbox = lock(&self.outbox);
        let was_empty = outbox.is_empty();
        let mut durable = self.durable.as_ref().map(lock);
        for payload in payloads {
            if let Some(durable) = &mut durable {
                if let Err(full) = outbox.has_room(payload.len()) {
                    stopped = Some(NotQueued::Full(full));
                    break;
                }
                if let Err(e) = durable.append_message(outbox.last_number() + 1, false, payload) {
                    stopped = Some(NotQueued::Disk(e.to_string()));
                    break;
                }
            }
            if let Err(e) = outbox.push(payload) {
                stopped = Some(NotQueued::Full(e));
                break;
            }
            queued += 1;
        }
        drop(durable);
        drop(outbox);
        if was_empty && queued > 0 {
            self.writer_wake.notify_one();
        }
        (queued, stopped)
    }

    pub fn set_limits(&self, limits: OutboxLimits) {
        let mut outbox = lock(&self.outbox);
        outbox.set_limits(limits);
        self.room_freed();
    }

    /// Takes everything queued to write it; it stays counted as queued until written.
    pub fn take_batch(&self) -> Option<Batch> {
        lock(&self.outbox).take_batch()
    }

    /// Counts messages of `batch` handed to the transport since the last call.
    pub fn record_sent(&self, batch: &mut Batch, counters: &Counters) {
        count_sent(batch, counters);
        let mut outbox = lock(&self.outbox);
        outbox.batch_progress(batch);
        self.room_freed();
    }

    /// Records a fully written batch and gives it back to the outbox (kept
    /// until acknowledged, or its buffers reused), under one lock; buffers
    /// the outbox does not keep are freed after it.
    pub fn batch_written(&self, mut batch: Batch, counters: &Counters) {
        count_sent(&mut batch, counters);
        let mut outbox = lock(&self.outbox);
        let unused = outbox.finish_batch(batch);
        self.room_freed();
        drop(outbox);
        drop(unused);
    }

    /// The peer acknowledged every message up to `number` (a client-wide
    /// number); returns the highest number acknowledged now if that moved,
    /// or the error if the peer acknowledged what it was never sent.
    pub fn ack(&self, number: u64) -> Result<Option<u64>, AckBeyondSent> {
        let mut outbox = lock(&self.outbox);
        let before = outbox.acked();
        let unused = outbox.ack(number)?;
        let after = outbox.acked();
        if after > before {
            if let Some(durable) = &self.durable {
                let mut durable = lock(durable);
                // Not synced: if it is lost, the messages go again and the server drops them.
                let written = durable.append_acked(after).and_then(|()| durable.compact_if_due().map(drop));
                if let Err(e) = written {
                    log_at!(Level::Warn, "the outbox file could not record acknowledgement {after}: {e}");
                }
            }
        }
        self.room_freed();
        drop(outbox);
        drop(unused);
        // A close may be waiting for the last acknowledgement.
        self.writer_wake.notify_one();
        Ok((after > before).then_some(after))
    }

    /// After a connection ended: everything not acknowledged (and what was
    /// left of the batch being written) goes back to the front of the queue.
    pub fn requeue(&self, in_flight: Option<Batch>, counters: &Counters) {
        let mut outbox = lock(&self.outbox);
        if let Some(mut batch) = in_flight {
            count_sent(&mut batch, counters);
            outbox.batch_progress(&batch);
            outbox.requeue(Some(batch));
        } else {
            outbox.requeue(None);
        }
    }

    /// Keeps written messages until acknowledged (protocol version 2), or not.
    pub fn set_retain(&self, retain: bool) {
        lock(&self.outbox).set_retain(retain);
    }

    /// Every message up to this number is acknowledged (or, best effort, written).
    pub fn acked(&self) -> u64 {
        lock(&self.outbox).acked()
    }

    /// Written messages not yet acknowledged.
    pub fn unacked(&self) -> usize {
        lock(&self.outbox).unacked()
    }

    /// Messages and payload bytes waiting, being written or unacknowledged.
    pub fn queued(&self) -> (usize, usize) {
        lock(&self.outbox).queued()
    }

    /// The figures `stats` reports: queued messages and bytes, acknowledged
    /// number, unacknowledged messages, under one lock.
    pub fn figures(&self) -> (usize, usize, u64, usize) {
        let outbox = lock(&self.outbox);
        let (messages, bytes) = outbox.queued();
        (messages, bytes, outbox.acked(), outbox.unacked())
    }

    /// Empties the outbox (and what was in flight); returns how many messages were discarded.
    pub fn discard(&self) -> usize {
        let mut outbox = lock(&self.outbox);
        let discarded = outbox.clear();
        self.room_freed();
        discarded
    }

    /// Wakes the writer (something to write, or a close to carry out).
    pub fn wake_writer(&self) {
        self.writer_wake.notify_one();
    }

    /// Completes when [`Sending::wake_writer`] is called (or was, since the last wait).
    pub fn writer_woken(&self) -> Notified<'_> {
        self.writer_wake.notified()
    }

    /// Wakes every sender waiting for room, to see a close request: under
    /// the outbox lock, so none is between checking and waiting.
    pub fn wake_waiting_senders(&self) {
        let _outbox = lock(&self.outbox);
        self.room.notify_all();
    }

    /// Wakes senders waiting for room. Called with the outbox lock held, so
    /// a sender that found the outbox full is either waiting or sees the room.
    fn room_freed(&self) {
        if self.room_waiters.load(Ordering::Relaxed) > 0 {
            self.room.notify_all();
        }
    }
}

fn count_sent(batch: &mut Batch, counters: &Counters) {
    let (messages, bytes) = batch.take_newly_sent();
    counters.sent(messages, bytes);
}
