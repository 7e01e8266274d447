//! One live connection: reading, writing and heartbeats, until it ends.
//!
//! The three loops run as futures of one task, so they share state without
//! locks beyond a few atomics, and a writer blocked on a full socket never
//! stops the reader (which would deadlock against an echoing peer). Each
//! loop takes only the parts of the engine it uses.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// Tokio's clock, so a simulated runtime controls heartbeats and timers.
use tokio::time::Instant;

use bytes::Bytes;

use super::resume::Resume;
use crate::config::ClientConfig;
use crate::engine::close::CloseSignal;
use crate::engine::counters::Counters;
use crate::engine::dispatch::Delivery;
use crate::engine::sending::Sending;
use crate::engine::settings::Settings;
use crate::engine::Engine;
use crate::event::{DisconnectReason, ErrorKind, Event, MessageBatch};
use crate::lock::lock;
use crate::log::{log_at, Level};
use crate::outbox::Batch;
use crate::policy::ack;
use crate::policy::heartbeat::{Activity, HeartbeatAction};
use crate::protocol::hello::{ack_payload, close_payload, parse_ack, parse_close_payload};
use crate::protocol::{Frame, FrameBatch, FrameError, FrameType};
use crate::transport::{Connection, Reader, Writer};

/// How long the answer to the peer's close frame may take to write.
const CLOSE_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// Close code sent when the application closes the client.
const CLOSE_NORMAL: u16 = 1000;
/// `writing_since_us` when no write is in progress.
const NOT_WRITING: u64 = u64::MAX;

/// What a data message in a plain framing turned out to be.
enum PlainControl {
    /// The peer's ping; answer with this pong.
    Ping(Bytes),
    /// The answer to our ping.
    Pong,
    /// An application message.
    Message,
}

/// How a connection ended.
pub(super) struct Ended {
    pub reason: DisconnectReason,
    pub detail: String,
}

fn ended(reason: DisconnectReason, detail: impl Into<String>) -> Ended {
    Ended { reason, detail: detail.into() }
}

/// State the three loops of one connection share.
struct Link<'a> {
    /// When the connection started; times below are microseconds since then.
    started: Instant,
    last_inbound_us: AtomicU64,
    /// The last write that completed.
    last_outbound_us: AtomicU64,
    /// When the write in progress began; [`NOT_WRITING`] between writes.
    writing_since_us: AtomicU64,
    /// Control frames waiting for the writer: at most one ping and one pong.
    control: Mutex<Control>,
    /// Reading is paused because the application has not taken its messages.
    reader_paused: AtomicBool,
    /// Woken when a control frame is queued.
    sending: &'a Sending,
    /// Protocol version 2 is in force: data is numbered and acknowledged.
    acknowledged: bool,
    /// Inbound: the highest data sequence number received.
    received: AtomicU64,
    /// The last `received` we acknowledged, and payload bytes since.
    ack_sent: AtomicU64,
    ack_bytes: AtomicUsize,
    /// An acknowledgement timer is running.
    ack_armed: AtomicBool,
    ack_timer: tokio::sync::Notify,
}

impl<'a> Link<'a> {
    fn new(sending: &'a Sending, acknowledged: bool, received: u64) -> Link<'a> {
        Link {
            acknowledged,
            received: AtomicU64::new(received),
            ack_sent: AtomicU64::new(received),
            ack_bytes: AtomicUsize::new(0),
            ack_armed: AtomicBool::new(false),
            ack_timer: tokio::sync::Notify::new(),
            started: Instant::now(),
            last_inbound_us: AtomicU64::new(0),
            last_outbound_us: AtomicU64::new(0),
            writing_since_us: AtomicU64::new(NOT_WRITING),
            control: Mutex::new(Control::default()),
            reader_paused: AtomicBool::new(false),
            sending,
        }
    }

    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_micros() as u64
    }

    fn heard_from_peer(&self) {
        self.last_inbound_us.store(self.micros(Instant::now()), Ordering::Relaxed);
    }

    fn last_inbound(&self) -> Instant {
        self.at(self.last_inbound_us.load(Ordering::Relaxed))
    }

    fn at(&self, micros: u64) -> Instant {
        self.started + Duration::from_micros(micros)
    }

    /// A write is about to be handed to the transport.
    fn write_starting(&self) {
        self.writing_since_us.store(self.micros(Instant::now()), Ordering::Relaxed);
    }

    /// Counts a write in progress as starting now (its wait was excused).
    fn write_starting_again(&self) {
        if self.writing_since_us.load(Ordering::Relaxed) != NOT_WRITING {
            self.write_starting();
        }
    }

    /// The write handed to the transport completed.
    fn write_done(&self) {
        self.last_outbound_us.store(self.micros(Instant::now()), Ordering::Relaxed);
        self.writing_since_us.store(NOT_WRITING, Ordering::Relaxed);
    }

    /// The traffic the heartbeat policy decides on, none of it older than `since`.
    fn activity(&self, last_ping: Option<Instant>, since: Instant) -> Activity {
        let writing = self.writing_since_us.load(Ordering::Relaxed);
        Activity {
            last_inbound: self.last_inbound().max(since),
            last_outbound: self.at(self.last_outbound_us.load(Ordering::Relaxed)).max(since),
            last_ping,
            writing_since: (writing != NOT_WRITING).then(|| self.at(writing).max(since)),
        }
    }

    /// Queues our ping, replacing one the writer has not sent yet.
    fn push_ping(&self, ping: Frame) {
        lock(&self.control).ping = Some(ping);
        self.sending.wake_writer();
    }

    /// Queues the answer to the peer's newest ping: a flood of pings costs
    /// one pending pong, which owns its payload instead of pinning a read buffer.
    fn push_pong(&self, payload: &[u8]) {
        lock(&self.control).pong = Some(Frame::Pong(Bytes::copy_from_slice(payload)));
        self.sending.wake_writer();
    }

    fn take_control(&self) -> Vec<Frame> {
        let mut control = lock(&self.control);
        control.ack.take().into_iter().chain(control.pong.take()).chain(control.ping.take()).collect()
    }

    /// Counts data frames just received (version 2) and acknowledges them
    /// at once past the frame or byte threshold, else arms the short timer.
    fn data_received(&self, frames: usize, bytes: usize) {
        if !self.acknowledged || frames == 0 {
            return;
        }
        let received = self.received.fetch_add(frames as u64, Ordering::Relaxed) + frames as u64;
        let bytes = self.ack_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if ack::due_by_volume(received - self.ack_sent.load(Ordering::Relaxed), bytes) {
            self.push_ack();
        } else if !self.ack_armed.swap(true, Ordering::Relaxed) {
            self.ack_timer.notify_one();
        }
    }

    /// Queues an acknowledgement of everything received, if anything is
    /// new, and wakes the writer for it.
    fn push_ack(&self) {
        if self.queue_ack() {
            self.sending.wake_writer();
        }
    }

    /// Queues an acknowledgement of everything received if anything is new
    /// (version 2); returns whether it did.
    fn queue_ack(&self) -> bool {
        let received = self.received.load(Ordering::Relaxed);
        if !self.acknowledged || self.ack_sent.swap(received, Ordering::Relaxed) == received {
            return false;
        }
        self.ack_bytes.store(0, Ordering::Relaxed);
        lock(&self.control).ack = Some(Frame::Ack(ack_payload(received)));
        true
    }
}

/// Control frames waiting for the writer.
#[derive(Default)]
struct Control {
    ping: Option<Frame>,
    pong: Option<Frame>,
    ack: Option<Frame>,
}

/// Runs the connection until it ends. The batch being written when it
/// ends stays in `in_flight`, for the session to put back in the outbox.
/// With `acknowledged` (protocol version 2), received data is counted in
/// `resume` and acknowledged, and the server's acknowledgements free the outbox.
pub(super) async fn run(
    engine: &Engine,
    conn: Connection,
    leftovers: FrameBatch,
    in_flight: &mut Option<Batch>,
    resume: &mut Resume,
    acknowledged: bool,
) -> Ended {
    let Connection { mut reader, mut writer, .. } = conn;
    let link = Link::new(&engine.sending, acknowledged, resume.received);
    let mut inbound = Inbound {
        delivery: &engine.delivery,
        counters: &engine.counters,
        config: &engine.config,
        link: &link,
        base: resume.base,
        peer_close: None,
    };
    engine.sending.attach_direct(writer.direct());
    let end = match inbound.handle(&leftovers) {
        Some(end) => end,
        None => tokio::select! {
            // In order, so a simulated run replays exactly.
            biased;
            end = read_loop(&mut reader, &mut inbound, engine.id) => end,
            end = write_loop(&engine.sending, &engine.counters, &engine.close, &link, &mut writer, in_flight) => end,
            end = heartbeat_loop(&engine.settings, &engine.config, &engine.delivery, &link) => end,
            never = ack_loop(&link) => match never {},
            _ = engine.close.expired() => {
                let (queued, _) = engine.sending.queued();
                ended(DisconnectReason::ClosedByUser, format!("close deadline passed with {queued} messages unsent"))
            }
        },
    };
    // No direct write may start or still run once the connection is gone.
    engine.sending.take_turn().await;
    if let Some(code) = inbound.peer_close.take().filter(|_| writer.answers_close()) {
        // WebSocket's closing handshake: a close frame is answered with one.
        let answer = async {
            let _ = writer.write(&[Frame::Close(code)], None).await;
            let _ = writer.shutdown().await;
        };
        let _ = tokio::time::timeout(CLOSE_ANSWER_TIMEOUT, answer).await;
    }
    engine.sending.detach_direct(in_flight);
    resume.received = link.received.load(Ordering::Relaxed);
    end
}

/// Sends the delayed acknowledgement (version 2): [`ack::HOLD`] after the
/// first data frame not yet acknowledged (any write of data before that
/// takes it along: `take_control`).
async fn ack_loop(link: &Link<'_>) -> std::convert::Infallible {
    if !link.acknowledged {
        return std::future::pending().await;
    }
    loop {
        link.ack_timer.notified().await;
        tokio::time::sleep(ack::HOLD).await;
        link.ack_armed.store(false, Ordering::Relaxed);
        link.push_ack();
    }
}

/// Turns received frames into events and control replies.
struct Inbound<'a> {
    delivery: &'a Arc<Delivery>,
    counters: &'a Counters,
    config: &'a ClientConfig,
    link: &'a Link<'a>,
    /// Outbound wire sequence number + `base` = message number.
    base: u64,
    /// The status code of the peer's close frame, to answer it (WebSocket).
    peer_close: Option<Bytes>,
}

impl Inbound<'_> {
    /// Handles frames in order; returns `Some` if the peer closed. A read's
    /// messages become queue entries sharing its buffer: one per run of
    /// binary or of text messages, so their order is kept.
    fn handle(&mut self, batch: &FrameBatch) -> Option<Ended> {
        if !batch.labels.is_empty() {
            // An event stream's messages: all text, a label each, nothing else.
            let spans: Vec<_> = batch.frames.iter().map(|(_, range)| range.clone()).collect();
            let messages = MessageBatch::with_labels(batch.chunk.clone(), spans, batch.labels.clone());
            self.link.data_received(messages.len(), messages.bytes());
            self.counters.received(messages.len(), messages.bytes());
            self.delivery.emit_messages(messages);
            return None;
        }
        let mut end = None;
        let mut run = Vec::with_capacity(batch.frames.len());
        let mut run_is_text = false;
        let (mut data_frames, mut data_bytes) = (0, 0);
        for (kind, range) in &batch.frames {
            let payload = &batch.chunk[range.clone()];
            let text = *kind == FrameType::Text;
            if matches!(kind, FrameType::Data | FrameType::Text) && text != run_is_text && !run.is_empty() {
                self.emit_run(&batch.chunk, std::mem::take(&mut run), run_is_text);
            }
            match kind {
                FrameType::Data => match self.plain_control(payload) {
                    PlainControl::Ping(pong) => self.link.push_pong(&pong),
                    PlainControl::Pong => {}
                    PlainControl::Message => {
                        run.push(range.clone());
                        data_frames += 1;
                        data_bytes += payload.len();
                    }
                },
                FrameType::Text => {
                    run.push(range.clone());
                    data_frames += 1;
                    data_bytes += payload.len();
                }
                FrameType::Ack if self.link.acknowledged => match parse_ack(payload) {
                    Some(seq) => {
                        // In order: messages before it are queued first, those after it see its effect.
                        if !run.is_empty() {
                            self.emit_run(&batch.chunk, std::mem::take(&mut run), run_is_text);
                        }
                        match self.link.sending.ack(self.base + seq) {
                            Ok(Some(up_to)) if self.config.ack_events => {
                                self.delivery.emit_one(Event::Acknowledged { up_to })
                            }
                            Ok(_) => {}
                            Err(beyond) => {
                                end = Some(self.protocol_error(&beyond.to_string()));
                                break;
                            }
                        }
                    }
                    None => {
                        end = Some(self.protocol_error("an ACK frame's payload is not 8 bytes"));
                        break;
                    }
                },
                FrameType::Ack => {
                    end = Some(self.protocol_error("an ACK frame on a best-effort connection"));
                    break;
                }
                FrameType::Ping => self.link.push_pong(payload),
                FrameType::Pong => self.record_rtt(payload),
                FrameType::Hello => {}
                FrameType::Close => {
                    self.peer_close = Some(Bytes::copy_from_slice(&payload[..payload.len().min(2)]));
                    let (code, reason) = parse_close_payload(payload);
                    end = Some(ended(
                        DisconnectReason::PeerClosed,
                        format!("peer closed the connection (code {code}: {reason})"),
                    ));
                    break;
                }
            }
            if matches!(kind, FrameType::Data | FrameType::Text) {
                run_is_text = text;
            }
        }
        if !run.is_empty() {
            self.emit_run(&batch.chunk, run, run_is_text);
        }
        self.link.data_received(data_frames, data_bytes);
        end
    }

    fn protocol_error(&self, detail: &str) -> Ended {
        let detail = format!("bad data from the server: {detail}");
        self.delivery.emit_one(Event::Error { kind: ErrorKind::Protocol, detail: detail.clone() });
        ended(DisconnectReason::Protocol, detail)
    }

    /// Counts and queues a run of messages of one kind.
    fn emit_run(&self, chunk: &Bytes, spans: Vec<std::ops::Range<usize>>, text: bool) {
        let messages = MessageBatch::with_kind(chunk.clone(), spans, text);
        self.counters.received(messages.len(), messages.bytes());
        self.delivery.emit_messages(messages);
    }

    /// In a plain framing, recognizes the configured heartbeat payloads.
    fn plain_control(&self, payload: &[u8]) -> PlainControl {
        match &self.config.plain_heartbeat {
            Some(hb) if self.config.is_plain() => {
                if payload == hb.pong {
                    PlainControl::Pong
                } else if payload == hb.ping {
                    PlainControl::Ping(hb.pong.clone())
                } else {
                    PlainControl::Message
                }
            }
            _ => PlainControl::Message,
        }
    }

    fn record_rtt(&self, payload: &[u8]) {
        if let Ok(sent) = <[u8; 8]>::try_from(payload) {
            let now = self.link.micros(Instant::now());
            self.counters.rtt(now.saturating_sub(u64::from_be_bytes(sent)));
        }
    }
}

async fn read_loop(reader: &mut Reader, inbound: &mut Inbound<'_>, client_id: u64) -> Ended {
    let delivery = inbound.delivery;
    let link = inbound.link;
    let mut batch = FrameBatch::default();
    loop {
        match reader.read_batch(&mut batch).await {
            Ok(true) => {}
            Ok(false) => return ended(DisconnectReason::PeerClosed, "connection closed by the peer"),
            Err(FrameError::Io(e)) => return ended(DisconnectReason::Io, format!("read failed: {e}")),
            Err(e) => {
                let (kind, reason) = match e {
                    FrameError::FrameTooLarge { .. } => (ErrorKind::FrameTooLarge, DisconnectReason::FrameTooLarge),
                    _ => (ErrorKind::Protocol, DisconnectReason::Protocol),
                };
                let detail = format!("bad data from the server: {e}");
                log_at!(Level::Warn, "client {client_id}: {detail}");
                delivery.emit_one(Event::Error { kind, detail: detail.clone() });
                return ended(reason, detail);
            }
        }
        link.heard_from_peer();
        link.sending.peer_spoke();
        if let Some(end) = inbound.handle(&batch) {
            return end;
        }
        if delivery.inbox.inbox_full() {
            link.reader_paused.store(true, Ordering::Relaxed);
            delivery.inbox.wait_for_room().await;
            link.reader_paused.store(false, Ordering::Relaxed);
            link.heard_from_peer();
        }
    }
}

async fn write_loop(
    sending: &Sending,
    counters: &Counters,
    close: &CloseSignal,
    link: &Link<'_>,
    writer: &mut Writer,
    in_flight: &mut Option<Batch>,
) -> Ended {
    loop {
        sending.take_turn().await;
        if sending.take_flush_owed() {
            if let Err(e) = writer.flush().await {
                return ended(DisconnectReason::Io, format!("write failed: {e}"));
            }
        }
        if in_flight.is_none() {
            *in_flight = sending.take_handoff().or_else(|| sending.take_batch());
        }
        if in_flight.is_some() {
            // An acknowledgement owed rides with the data.
            link.queue_ack();
        }
        let control = link.take_control();
        if control.is_empty() && in_flight.is_none() {
            // With acknowledged delivery, a close waits for the server's
            // acknowledgement of everything written (or the close deadline).
            if close.requested() && (!link.acknowledged || sending.unacked() == 0) {
                link.push_ack();
                let mut bye = link.take_control();
                bye.push(Frame::Close(close_payload(CLOSE_NORMAL, "client closing")));
                let _ = writer.write(&bye, None).await;
                let _ = writer.shutdown().await;
                return ended(DisconnectReason::ClosedByUser, "closed by the application");
            }
            // Parked: a send may write directly until the writer is woken.
            let woken = sending.writer_woken();
            sending.park_writer();
            woken.await;
            continue;
        }
        link.write_starting();
        let result = writer.write(&control, in_flight.as_mut()).await;
        if result.is_ok() {
            link.write_done();
        }
        match in_flight.take() {
            Some(batch) if result.is_ok() && batch.is_done() => sending.batch_written(batch, counters),
            Some(mut batch) => {
                // Room in the outbox as the batch is written, not only at its end.
                sending.record_sent(&mut batch, counters);
                *in_flight = Some(batch);
            }
            None => {}
        }
        if let Err(e) = result {
            return ended(DisconnectReason::Io, format!("write failed: {e}"));
        }
    }
}

/// Sends pings and declares the peer dead per the heartbeat policy. When the
/// settings change, silence is counted from the change, so tightening them on
/// a quiet but healthy connection pings the peer before judging it.
async fn heartbeat_loop(
    settings: &Settings,
    config: &ClientConfig,
    delivery: &Arc<Delivery>,
    link: &Link<'_>,
) -> Ended {
    let mut last_ping: Option<Instant> = None;
    let mut settings_since = link.started;
    loop {
        let changed = settings.changed();
        let policy = config.effective_heartbeat(settings.get().heartbeat);
        let now = Instant::now();
        let action = policy.next_action(now, link.activity(last_ping, settings_since));
        let mut settings_changed = false;
        match action {
            HeartbeatAction::SendPing => {
                let ping = match config.plain_heartbeat.as_ref() {
                    Some(hb) if config.is_plain() => Frame::Ping(hb.ping.clone()),
                    _ => Frame::Ping(Bytes::copy_from_slice(&link.micros(now).to_be_bytes())),
                };
                link.push_ping(ping);
                last_ping = Some(now);
            }
            HeartbeatAction::PeerDead | HeartbeatAction::WriteStalled if link.reader_paused.load(Ordering::Relaxed) => {
                // Ours, not the peer's: we stopped reading (and a peer that
                // waits for us to read may stop reading too).
                link.heard_from_peer();
                link.write_starting_again();
            }
            HeartbeatAction::PeerDead | HeartbeatAction::WriteStalled => {
                let detail = if action == HeartbeatAction::PeerDead {
                    format!("no data from the peer for {} ms", policy.timeout.as_millis())
                } else {
                    format!("a write made no progress for {} ms", policy.timeout.as_millis())
                };
                delivery.emit_one(Event::Error { kind: ErrorKind::HeartbeatTimeout, detail: detail.clone() });
                return ended(DisconnectReason::HeartbeatTimeout, detail);
            }
            HeartbeatAction::WaitUntil(at) => {
                tokio::select! {
                    // In order, so a simulated run replays exactly.
                    biased;
                    _ = tokio::time::sleep_until(at) => {}
                    _ = changed => settings_changed = true,
                }
            }
            HeartbeatAction::Disabled => {
                changed.await;
                settings_changed = true;
            }
        }
        if settings_changed {
            settings_since = Instant::now();
            last_ping = None;
        }
    }
}
