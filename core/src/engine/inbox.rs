//! What a client reports to the application, and the queue that carries it.
//!
//! Events wait in a per-client queue until the dispatcher hands them to
//! callbacks or the application polls them. The queue also owns a file
//! descriptor that is readable exactly while events wait in poll mode, for
//! programs that run their own event loop.
//!
//! Received messages count against limits ([`InboxLimits`]) from when they
//! are queued until the application has them: taken by `poll`, or delivered
//! by the callback thread (messages that thread holds still count). Above
//! either limit the connection stops reading from the socket until the
//! application catches up, so a slow consumer gets TCP backpressure instead
//! of unbounded memory.
//!
//! `poll` takes a batch of messages at the front of the queue whole and
//! hands out the rest of it from a slot of its own, one per call, so a busy
//! poller does not take the lock the connection's thread needs for every
//! read. The slot's messages count as undelivered but not against the
//! limits: the limits can be passed by at most one read's worth.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::engine::spin::SpinThenPark;
use crate::event::{Event, MessageBatch};
use crate::lock::{lock, wait_timeout};
use crate::policy::limits::InboxLimits;

/// An entry of the queue: one event, or many messages from one read.
#[derive(Debug)]
pub enum Queued {
    Event(Event),
    Messages(MessageBatch),
}

#[derive(Debug, Default)]
struct Pending {
    events: VecDeque<Queued>,
    /// Messages queued or held by the callback thread, not yet delivered.
    messages: usize,
    /// What those messages weigh ([`InboxLimits::weight`]).
    weight: usize,
    /// The descriptor pair, made on the first [`EventQueue::fd`] call:
    /// clients that take callbacks or never ask for it use no descriptors.
    signal: Option<Signal>,
    /// Whether the fd currently holds a wake-up byte.
    fd_signalled: bool,
    /// The client has stopped for good: once the queue is empty, nothing
    /// more will arrive, and waiting returns at once.
    ended: bool,
    /// Threads blocked in [`EventQueue::wait_for_any_or_taken`]: with none, pushing
    /// skips the condition variable (whose notify is a system call each time).
    waiters: usize,
}

/// A readable-when-pending file descriptor: one end of a socket pair.
#[derive(Debug)]
struct Signal {
    reader: UnixStream,
    writer: UnixStream,
}

impl Signal {
    fn new() -> io::Result<Signal> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Signal { reader, writer })
    }
}

#[derive(Debug)]
pub struct EventQueue {
    pending: Mutex<Pending>,
    /// Wakes threads blocked in [`EventQueue::pop`].
    arrived: Condvar,
    /// Wakes a connection paused by the inbox limit.
    drained: tokio::sync::Notify,
    limits: InboxLimits,
    /// `Pending::messages`, readable without the lock.
    undelivered: AtomicUsize,
    /// The rest of a batch that [`EventQueue::pop`] took from the front of
    /// the queue whole, handed out one message per call without the queue's
    /// lock (which the connection's thread takes for every read). Its
    /// messages no longer count in `Pending` but in `taken_count`. Locked
    /// after `pending` when both are needed, never before.
    taken: Mutex<Option<MessageBatch>>,
    /// Messages in `taken`.
    taken_count: AtomicUsize,
    /// Wakes a `poll` that drives the client's I/O itself (`io_in_poll`).
    arrived_async: tokio::sync::Notify,
    /// Counts pushes (and the end), for a waiting `poll` to look at before it parks.
    pushes: AtomicUsize,
    /// Whether a waiting `poll` looks before it parks (see `spin.rs`).
    spin: SpinThenPark,
}

/// Messages in `entry` not yet delivered, and their payload bytes.
fn messages_in(entry: &Queued) -> (usize, usize) {
    match entry {
        Queued::Event(event) => event.as_message().map_or((0, 0), |(m, _)| (1, m.len())),
        Queued::Messages(batch) => (batch.len(), batch.bytes()),
    }
}

impl Pending {
    fn is_full(&self, limits: &InboxLimits) -> bool {
        limits.is_full(self.messages, self.weight)
    }
}

impl EventQueue {
    pub fn new(limits: InboxLimits) -> EventQueue {
        EventQueue {
            pending: Mutex::new(Pending::default()),
            arrived: Condvar::new(),
            drained: tokio::sync::Notify::new(),
            limits,
            undelivered: AtomicUsize::new(0),
            taken: Mutex::new(None),
            taken_count: AtomicUsize::new(0),
            arrived_async: tokio::sync::Notify::new(),
            pushes: AtomicUsize::new(0),
            spin: SpinThenPark::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        lock(&self.pending)
    }

    /// Appends events in order. With `signal_fd`, makes the fd readable.
    pub fn push(&self, events: impl IntoIterator<Item = Event>, signal_fd: bool) {
        self.push_queued(events.into_iter().map(Queued::Event), signal_fd);
    }

    /// Appends received messages as one entry.
    pub fn push_messages(&self, batch: MessageBatch, signal_fd: bool) {
        self.push_queued(std::iter::once(Queued::Messages(batch)), signal_fd);
    }

    fn push_queued(&self, entries: impl Iterator<Item = Queued>, signal_fd: bool) {
        let mut p = self.lock();
        let was_empty = p.events.is_empty();
        for entry in entries {
            let (messages, bytes) = messages_in(&entry);
            p.messages += messages;
            self.undelivered.store(p.messages, Ordering::Relaxed);
            p.weight += InboxLimits::weight(messages, bytes);
            p.events.push_back(entry);
        }
        let waiting = !p.events.is_empty() || self.taken_count.load(Ordering::Acquire) > 0;
        if signal_fd && !p.fd_signalled && waiting {
            if let Some(signal) = &p.signal {
                // A full socket buffer already means "readable"; nothing to do then.
                let _ = (&signal.writer).write(&[1]);
                p.fd_signalled = true;
            }
        }
        let wake = was_empty && p.waiters > 0;
        drop(p);
        self.pushes.fetch_add(1, Ordering::Release);
        if wake {
            self.arrived.notify_all();
        }
        if was_empty {
            self.arrived_async.notify_one();
        }
    }

    /// Completes once something was queued since the last completion (or
    /// at once if that happened already); for a poll that drives the I/O.
    pub async fn arrival(&self) {
        self.arrived_async.notified().await
    }

    /// Whether an event waits (in the queue or taken by a poll).
    pub fn has_waiting(&self) -> bool {
        self.taken_count.load(Ordering::Acquire) > 0 || !self.lock().events.is_empty()
    }

    /// Marks the end of the stream (after the closed event was pushed):
    /// waiters wake, and waiting on an empty queue returns at once from now on.
    pub fn end(&self) {
        self.lock().ended = true;
        self.pushes.fetch_add(1, Ordering::Release);
        self.arrived.notify_all();
        self.arrived_async.notify_one();
    }

    /// Whether [`EventQueue::end`] was called and everything has been taken.
    pub fn is_drained_and_ended(&self) -> bool {
        let p = self.lock();
        p.ended && p.events.is_empty() && self.taken_count.load(Ordering::Acquire) == 0
    }

    /// Messages received and not yet delivered to the application (those
    /// the callback thread holds included); read without the lock.
    pub fn undelivered(&self) -> usize {
        self.undelivered.load(Ordering::Relaxed) + self.taken_count.load(Ordering::Relaxed)
    }

    /// Whether the connection should stop reading until the application catches up.
    pub fn inbox_full(&self) -> bool {
        self.lock().is_full(&self.limits)
    }

    /// Waits until the inbox is below its limit again.
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.drained.notified();
            if !self.inbox_full() {
                return;
            }
            notified.await;
        }
    }

    /// Stops counting `messages` messages of `bytes` payload (delivered).
    fn uncount(&self, p: &mut Pending, messages: usize, bytes: usize) {
        let was_full = p.is_full(&self.limits);
        p.messages -= messages;
        self.undelivered.store(p.messages, Ordering::Relaxed);
        p.weight -= InboxLimits::weight(messages, bytes);
        if was_full && !p.is_full(&self.limits) {
            self.drained.notify_waiters();
        }
    }

    fn after_taking(&self, p: &mut Pending, messages: usize, bytes: usize) {
        self.uncount(p, messages, bytes);
        self.reset_fd_if_drained(p);
    }

    /// Empties the descriptor once nothing waits, in the queue or taken.
    fn reset_fd_if_drained(&self, p: &mut Pending) {
        if p.events.is_empty() && p.fd_signalled && self.taken_count.load(Ordering::Acquire) == 0 {
            if let Some(signal) = &p.signal {
                let mut sink = [0u8; 64];
                while matches!((&signal.reader).read(&mut sink), Ok(n) if n > 0) {}
            }
            p.fd_signalled = false;
        }
    }

    /// Takes every waiting entry, for the callback thread. Their messages
    /// stay counted until [`EventQueue::delivered`] is called for each entry.
    pub fn take_all(&self) -> VecDeque<Queued> {
        let mut p = self.lock();
        let mut events = std::mem::take(&mut p.events);
        // What a poll took whole goes first, counted again as queued.
        if let Some(batch) = self.take_taken() {
            p.messages += batch.len();
            p.weight += InboxLimits::weight(batch.len(), batch.bytes());
            self.undelivered.store(p.messages, Ordering::Relaxed);
            events.push_front(Queued::Messages(batch));
        }
        self.after_taking(&mut p, 0, 0);
        events
    }

    /// Empties the taken slot; call with `pending` locked.
    fn take_taken(&self) -> Option<MessageBatch> {
        let mut taken = lock(&self.taken);
        self.taken_count.store(0, Ordering::Release);
        taken.take().filter(|b| !b.is_empty())
    }

    /// The messages of `entries`, taken with [`EventQueue::take_all`], have
    /// been delivered (or dropped) and no longer count.
    pub fn delivered<'a>(&self, entries: impl IntoIterator<Item = &'a Queued>) {
        let (messages, bytes) = entries.into_iter().map(messages_in).fold((0, 0), |(m, b), (em, eb)| (m + em, b + eb));
        if messages > 0 {
            self.uncount(&mut self.lock(), messages, bytes);
        }
    }

    /// Takes the oldest event, waiting up to `timeout` for one.
    ///
    /// A batch of messages at the front leaves the queue whole: its first
    /// message is returned and the rest go to the taken slot, from which
    /// the next calls take one each without the queue's lock.
    pub fn pop(&self, timeout: Duration) -> Option<Event> {
        if let Some(event) = self.pop_taken() {
            return Some(event);
        }
        let mut p = self.wait_for_any_or_taken(timeout)?;
        let mut taken = lock(&self.taken);
        if let Some(event) = Self::next_taken(&mut taken, &self.taken_count) {
            // Another poll filled the slot meanwhile: its messages come first.
            drop(taken);
            self.reset_fd_if_drained(&mut p);
            return Some(event);
        }
        if let Some(Queued::Messages(batch)) = p.events.front() {
            if batch.len() > 1 {
                let Some(Queued::Messages(mut batch)) = p.events.pop_front() else { unreachable!("front checked") };
                let (messages, bytes) = (batch.len(), batch.bytes());
                let first = batch.pop_event();
                self.taken_count.store(batch.len(), Ordering::Release);
                *taken = Some(batch);
                drop(taken);
                self.uncount(&mut p, messages, bytes);
                return first;
            }
        }
        drop(taken);
        let event = Self::pop_event(&mut p.events)?;
        let (messages, bytes) = event.as_message().map_or((0, 0), |(m, _)| (1, m.len()));
        self.after_taking(&mut p, messages, bytes);
        Some(event)
    }

    /// The next message of the taken slot, if it holds one; without the
    /// queue's lock unless it was the last (then the descriptor may reset).
    fn pop_taken(&self) -> Option<Event> {
        if self.taken_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut taken = lock(&self.taken);
        let event = Self::next_taken(&mut taken, &self.taken_count)?;
        let emptied = taken.is_none();
        drop(taken);
        if emptied {
            self.reset_fd_if_drained(&mut self.lock());
        }
        Some(event)
    }

    /// Takes one message from the slot; empties the slot with its last.
    fn next_taken(taken: &mut Option<MessageBatch>, count: &AtomicUsize) -> Option<Event> {
        let batch = taken.as_mut()?;
        let message = batch.pop_event();
        count.store(batch.len(), Ordering::Release);
        if batch.is_empty() {
            *taken = None;
        }
        message
    }

    /// Hands waiting messages to `take` in order, with whether each is a
    /// WebSocket text message, waiting up to `timeout` for the first entry.
    /// Stops at the first event that is not a message (it stays for
    /// [`EventQueue::pop`]) or when `take` returns false for a message (that
    /// message stays too). Returns how many were taken, or `None` if nothing
    /// arrived within `timeout`.
    pub fn take_messages(&self, timeout: Duration, mut take: impl FnMut(&[u8], bool) -> bool) -> Option<usize> {
        let mut p = self.wait_for_any_or_taken(timeout)?;
        // What a poll took whole comes first; it no longer counts in `p`.
        let mut from_taken = 0;
        {
            let mut taken = lock(&self.taken);
            if let Some(batch) = taken.as_mut() {
                let text = batch.is_text();
                while let Some(message) = batch.front() {
                    if !take(message, text) {
                        break;
                    }
                    from_taken += 1;
                    batch.advance();
                }
                self.taken_count.store(batch.len(), Ordering::Release);
                if !batch.is_empty() {
                    return Some(from_taken);
                }
                *taken = None;
            }
        }
        let (mut count, mut bytes) = (0, 0);
        while let Some(front) = p.events.front_mut() {
            match front {
                Queued::Messages(batch) => {
                    let mut stopped = false;
                    let text = batch.is_text();
                    while let Some(message) = batch.front() {
                        if !take(message, text) {
                            stopped = true;
                            break;
                        }
                        count += 1;
                        bytes += message.len();
                        batch.advance();
                    }
                    if stopped {
                        break;
                    }
                    p.events.pop_front();
                }
                Queued::Event(event) => {
                    let Some((message, text)) = event.as_message() else {
                        break;
                    };
                    if !take(message, text) {
                        break;
                    }
                    count += 1;
                    bytes += message.len();
                    p.events.pop_front();
                }
            }
        }
        self.after_taking(&mut p, count, bytes);
        Some(from_taken + count)
    }

    /// Waits up to `timeout` until something is queued or taken; the lock, held.
    /// The clock is read only once the queue is found empty, so taking an
    /// entry that is already waiting costs no clock read. Looks again for a
    /// moment before parking while recent waits were short (`spin.rs`).
    fn wait_for_any_or_taken(&self, timeout: Duration) -> Option<MutexGuard<'_, Pending>> {
        let mut p = self.lock();
        let ready = |p: &Pending| !p.events.is_empty() || self.taken_count.load(Ordering::Acquire) > 0;
        if ready(&p) {
            return Some(p);
        }
        if p.ended || timeout.is_zero() {
            return None;
        }
        let started = Instant::now();
        let deadline = started.checked_add(timeout);
        if self.spin.budget().is_some() {
            let seen = self.pushes.load(Ordering::Acquire);
            drop(p);
            self.spin.look(timeout, || {
                self.pushes.load(Ordering::Acquire) != seen || self.taken_count.load(Ordering::Acquire) > 0
            });
            p = self.lock();
        }
        loop {
            if ready(&p) {
                self.spin.waited(started.elapsed());
                return Some(p);
            }
            if p.ended {
                return None;
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()).filter(|w| !w.is_zero()) {
                    Some(wait) => wait,
                    None => {
                        // Nothing came: a long wait, as far as looking is concerned.
                        self.spin.waited(timeout);
                        return None;
                    }
                },
                None => Duration::from_secs(3600),
            };
            p.waiters += 1;
            p = wait_timeout(&self.arrived, p, wait);
            p.waiters -= 1;
        }
    }

    /// Takes the oldest event, splitting a message batch one message at a time
    /// in place. A batch leaves the queue with its last message, so an empty
    /// queue is seen as empty (and the fd reset) at once.
    fn pop_event(entries: &mut VecDeque<Queued>) -> Option<Event> {
        loop {
            match entries.front_mut()? {
                Queued::Messages(batch) => {
                    let message = batch.pop_event();
                    if batch.is_empty() {
                        entries.pop_front();
                    }
                    if message.is_some() {
                        return message;
                    }
                }
                Queued::Event(_) => {
                    if let Some(Queued::Event(event)) = entries.pop_front() {
                        return Some(event);
                    }
                }
            }
        }
    }

    /// Makes the fd readable if events are waiting (after switching to poll mode).
    pub fn resignal(&self) {
        self.push(std::iter::empty(), true);
    }

    /// Readable while events wait in poll mode (after [`EventQueue::resignal`]
    /// for events queued before the first call). Made on the first call;
    /// owned by the queue.
    pub fn fd(&self) -> io::Result<RawFd> {
        let mut p = self.lock();
        let signal = match &mut p.signal {
            Some(signal) => signal,
            empty => empty.insert(Signal::new()?),
        };
        Ok(signal.reader.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::limits::MESSAGE_OVERHEAD;
    use bytes::Bytes;

    /// A queue whose descriptor exists, as after lc_client_event_fd().
    fn queue_with_fd() -> EventQueue {
        let q = EventQueue::new(InboxLimits::default());
        q.fd().unwrap();
        q
    }

    #[test]
    fn no_descriptor_until_asked_and_earlier_events_show_once_there() {
        let q = EventQueue::new(InboxLimits::default());
        q.push([Event::Closed { unsent: 0 }], true);
        assert!(q.lock().signal.is_none() && !readable(&q));
        let fd = q.fd().unwrap();
        assert!(fd >= 0 && q.fd().unwrap() == fd, "made once");
        q.resignal();
        assert!(readable(&q));
        assert_eq!(q.pop(Duration::ZERO), Some(Event::Closed { unsent: 0 }));
        assert!(!readable(&q));
    }

    /// Whether the queue has put a wake-up byte in its socket pair.
    fn readable(q: &EventQueue) -> bool {
        q.lock().fd_signalled
    }

    #[test]
    fn fd_is_readable_exactly_while_events_wait() {
        let q = queue_with_fd();
        assert!(!readable(&q));
        q.push([Event::Message(Bytes::from_static(b"a")), Event::Closed { unsent: 0 }], true);
        assert!(readable(&q));
        assert!(q.pop(Duration::ZERO).is_some());
        assert!(readable(&q), "one event still waits");
        assert!(q.pop(Duration::ZERO).is_some());
        assert!(!readable(&q));
        assert_eq!(q.pop(Duration::from_millis(1)), None);
    }

    #[test]
    fn the_inbox_counts_bytes_and_the_overhead_of_each_message() {
        let q = EventQueue::new(InboxLimits { max_messages: 100, max_bytes: 2 * MESSAGE_OVERHEAD + 4 });
        q.push([Event::Message(Bytes::from_static(b"abc"))], false);
        q.push([Event::Message(Bytes::new())], false);
        assert!(!q.inbox_full(), "3 bytes and two messages' overhead");
        q.push([Event::Message(Bytes::from_static(b"d"))], false);
        assert!(q.inbox_full());
        assert!(q.pop(Duration::ZERO).is_some());
        assert!(!q.inbox_full());
    }

    #[test]
    fn empty_messages_fill_the_inbox_by_their_count() {
        let q = EventQueue::new(InboxLimits { max_messages: 3, max_bytes: usize::MAX });
        q.push_messages(MessageBatch::new(Bytes::new(), vec![0..0, 0..0]), false);
        assert!(!q.inbox_full());
        q.push_messages(MessageBatch::new(Bytes::new(), vec![0..0, 0..0]), false);
        assert!(q.inbox_full());
        assert_eq!(q.take_messages(Duration::ZERO, |_, _| true), Some(4));
        assert!(!q.inbox_full());
    }

    #[test]
    fn messages_held_by_the_callback_thread_count_until_delivered() {
        let q = EventQueue::new(InboxLimits { max_messages: 2, max_bytes: usize::MAX });
        q.push([Event::Message(Bytes::from_static(b"a")), Event::Message(Bytes::from_static(b"b"))], false);
        let taken = q.take_all();
        assert_eq!(taken.len(), 2);
        assert!(q.inbox_full(), "taken but not delivered yet");
        q.delivered(taken.iter().take(1));
        assert!(!q.inbox_full());
        q.delivered(taken.iter().skip(1));
        q.push([Event::Message(Bytes::from_static(b"c"))], false);
        assert!(!q.inbox_full());
    }

    #[test]
    fn a_message_batch_is_polled_one_message_at_a_time_in_order() {
        let q = queue_with_fd();
        let chunk = Bytes::from_static(b"xxoneyytwozzz");
        q.push([Event::Connected { peer: "p".into(), delivery: Default::default(), server_index: 0 }], true);
        q.push_messages(MessageBatch::new(chunk, vec![2..5, 7..10, 13..13]), true);
        q.push([Event::Closed { unsent: 0 }], true);
        let mut polled = Vec::new();
        while let Some(event) = q.pop(Duration::ZERO) {
            polled.push(event);
            // The fd must say "readable" exactly while something is left to poll.
            assert_eq!(readable(&q), polled.len() < 5, "after {} events", polled.len());
        }
        assert_eq!(
            polled,
            vec![
                Event::Connected { peer: "p".into(), delivery: Default::default(), server_index: 0 },
                Event::Message(Bytes::from_static(b"one")),
                Event::Message(Bytes::from_static(b"two")),
                Event::Message(Bytes::new()),
                Event::Closed { unsent: 0 },
            ]
        );
        assert!(!readable(&q));
        assert!(!q.inbox_full());

        // A batch at the end of the queue: its last message empties the queue.
        q.push_messages(MessageBatch::new(Bytes::from_static(b"ab"), vec![0..1, 1..2]), true);
        assert!(q.pop(Duration::ZERO).is_some());
        assert!(readable(&q));
        assert!(q.pop(Duration::ZERO).is_some());
        assert!(!readable(&q), "nothing left, so the fd must not stay readable");
    }

    #[test]
    fn take_messages_stops_at_other_events_and_where_the_taker_says() {
        let q = queue_with_fd();
        q.push_messages(MessageBatch::new(Bytes::from_static(b"abcdef"), vec![0..1, 1..3, 3..6]), true);
        q.push([Event::Message(Bytes::from_static(b"g"))], true);
        q.push([Event::Closed { unsent: 0 }], true);
        let mut got = Vec::new();
        // Room for two messages only: the third stays queued.
        let taken = q.take_messages(Duration::ZERO, |m, _| {
            if got.len() == 2 {
                return false;
            }
            got.push(m.to_vec());
            true
        });
        assert_eq!((taken, got.clone()), (Some(2), vec![b"a".to_vec(), b"bc".to_vec()]));
        got.clear();
        assert_eq!(
            q.take_messages(Duration::ZERO, |m, _| {
                got.push(m.to_vec());
                true
            }),
            Some(2)
        );
        assert_eq!(got, vec![b"def".to_vec(), b"g".to_vec()]);
        // The closed event is not a message: it stays for pop, and the fd stays readable.
        assert_eq!(q.take_messages(Duration::ZERO, |_, _| true), Some(0));
        assert!(readable(&q));
        assert_eq!(q.pop(Duration::ZERO), Some(Event::Closed { unsent: 0 }));
        assert!(!readable(&q) && !q.inbox_full());
        assert_eq!(q.take_messages(Duration::from_millis(1), |_, _| true), None, "nothing arrived");
    }

    #[test]
    fn take_messages_says_which_messages_are_text() {
        let q = EventQueue::new(InboxLimits::default());
        q.push_messages(MessageBatch::with_kind(Bytes::from_static(b"hiho"), vec![0..2, 2..4], true), true);
        q.push_messages(MessageBatch::new(Bytes::from_static(b"\x00\x01"), vec![0..1, 1..2]), true);
        q.push([Event::Text(Bytes::from_static(b"t")), Event::Message(Bytes::from_static(b"b"))], true);
        let mut got = Vec::new();
        assert_eq!(
            q.take_messages(Duration::ZERO, |m, text| {
                got.push((m.to_vec(), text));
                true
            }),
            Some(6)
        );
        let expected =
            [(&b"hi"[..], true), (b"ho", true), (b"\x00", false), (b"\x01", false), (b"t", true), (b"b", false)];
        assert_eq!(got, expected.map(|(m, t)| (m.to_vec(), t)));
    }

    #[test]
    fn pop_wakes_when_another_thread_pushes() {
        let q = std::sync::Arc::new(EventQueue::new(InboxLimits::default()));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop(Duration::from_secs(10)));
        q.push([Event::Closed { unsent: 3 }], false);
        assert_eq!(t.join().unwrap(), Some(Event::Closed { unsent: 3 }));
    }

    /// Four messages in one batch, then a closed event.
    fn queue_with_batch() -> EventQueue {
        let q = queue_with_fd();
        q.push_messages(MessageBatch::new(Bytes::from_static(b"abcd"), vec![0..1, 1..2, 2..3, 3..4]), true);
        q.push([Event::Closed { unsent: 0 }], true);
        q
    }

    fn message(m: &'static [u8]) -> Option<Event> {
        Some(Event::Message(Bytes::from_static(m)))
    }

    #[test]
    fn a_batch_taken_whole_by_pop_is_handed_out_in_order_and_keeps_the_fd_readable() {
        let q = queue_with_batch();
        assert_eq!(q.pop(Duration::ZERO), message(b"a"));
        assert!(q.lock().events.len() == 1, "the batch left the queue whole");
        assert_eq!(q.undelivered(), 3, "the rest still counts as undelivered");
        assert!(readable(&q), "messages still wait");
        assert_eq!(q.pop(Duration::ZERO), message(b"b"));
        assert_eq!(q.pop(Duration::ZERO), message(b"c"));
        assert_eq!(q.pop(Duration::ZERO), message(b"d"));
        assert!(readable(&q), "the closed event waits");
        assert_eq!(q.undelivered(), 0);
        assert_eq!(q.pop(Duration::ZERO), Some(Event::Closed { unsent: 0 }));
        assert!(!readable(&q));
        q.end();
        assert!(q.is_drained_and_ended());
    }

    #[test]
    fn what_pop_took_comes_first_for_take_messages_and_for_the_callback_thread() {
        let q = queue_with_batch();
        assert_eq!(q.pop(Duration::ZERO), message(b"a"));
        let mut got = Vec::new();
        let taken = q.take_messages(Duration::ZERO, |m, _| {
            got.push(m.to_vec());
            got.len() < 2
        });
        assert_eq!((taken, got.len()), (Some(1), 2), "one taken, the second refused");
        assert_eq!(q.undelivered(), 2);

        // Switching to callbacks: the rest of the taken batch goes first, counted again.
        let all = q.take_all();
        assert_eq!(q.undelivered(), 2, "held by the callback thread, still counted");
        let messages: Vec<Vec<u8>> = match &all[0] {
            Queued::Messages(batch) => batch.iter().map(<[u8]>::to_vec).collect(),
            other => panic!("expected the taken batch, got {other:?}"),
        };
        assert_eq!(messages, [b"c".to_vec(), b"d".to_vec()]);
        assert!(matches!(all[1], Queued::Event(Event::Closed { .. })));
        q.delivered(all.iter());
        assert_eq!(q.undelivered(), 0);
        assert!(!q.inbox_full());
    }

    #[test]
    fn a_poll_waiting_on_an_empty_queue_is_not_blocked_by_the_taken_slot() {
        let q = std::sync::Arc::new(queue_with_batch());
        assert_eq!(q.pop(Duration::ZERO), message(b"a"));
        for expected in [b"b", b"c", b"d"] {
            let q2 = q.clone();
            let got = std::thread::spawn(move || q2.pop(Duration::from_secs(10))).join().unwrap();
            assert_eq!(got, message(expected), "any thread takes from the slot");
        }
        assert_eq!(q.pop(Duration::ZERO), Some(Event::Closed { unsent: 0 }));
        assert_eq!(q.pop(Duration::from_millis(1)), None, "empty: times out");
    }

    #[test]
    fn a_descriptor_made_after_a_poll_took_a_batch_shows_the_rest() {
        let q = EventQueue::new(InboxLimits::default());
        q.push_messages(MessageBatch::new(Bytes::from_static(b"ab"), vec![0..1, 1..2]), true);
        assert_eq!(q.pop(Duration::ZERO), message(b"a"));
        q.fd().unwrap();
        q.resignal();
        assert!(readable(&q), "one message waits in the taken slot");
        assert_eq!(q.pop(Duration::ZERO), message(b"b"));
        assert!(!readable(&q));
    }
}
