//! The session: connect, run the connection, back off, and again, until closed.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::backoff::Backoff;
use crate::client::{Shared, State};
use crate::codec::longconn::hello_payload;
use crate::codec::{Frame, FrameType, Framing, PROTOCOL_VERSION};
use crate::connection::{self, Ended};
use crate::event::{DisconnectReason, ErrorKind, Event};
use crate::log::{log_at, Level};
use crate::outbox::Batch;
use crate::transport::{self, ConnectOptions, Connection, FrameBatch};

/// A failed connection attempt.
struct AttemptFailed {
    kind: ErrorKind,
    detail: String,
}

pub(crate) async fn run(shared: std::sync::Arc<Shared>) {
    let shared = &*shared;
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0) ^ shared.id;
    let mut backoff = Backoff::new(shared.live().backoff, seed);
    // A batch whose write was cut off by a disconnect; written first next time.
    let mut in_flight: Option<Batch> = None;
    loop {
        if shared.close.aborted() || (shared.close.requested() && nothing_queued(shared)) {
            break;
        }
        if !shared.close.requested() {
            shared.set_state(State::Connecting);
        }
        let attempt = tokio::select! {
            result = connect(shared) => result,
            _ = shared.close.expired() => break,
        };
        match attempt {
            Ok((conn, leftovers)) => {
                shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                if !shared.close.requested() {
                    shared.set_state(State::Connected);
                }
                log_at!(Level::Info, "client {}: connected to {}", shared.id, conn.peer);
                shared.emit_one(Event::Connected { peer: conn.peer.clone() });
                let up_since = Instant::now();
                let Ended { reason, detail } = connection::run(shared, conn, leftovers, &mut in_flight).await;
                // A write cut off by the end of the connection may have handed part of its batch over.
                if let Some(batch) = in_flight.as_mut() {
                    shared.record_sent(batch);
                    if batch.is_done() {
                        shared.batch_written(in_flight.take().expect("checked above"));
                    }
                }
                log_at!(Level::Info, "client {}: disconnected: {detail}", shared.id);
                shared.emit_one(Event::Disconnected { reason, detail });
                if reason == DisconnectReason::ClosedByUser {
                    break;
                }
                if up_since.elapsed() >= shared.live().backoff.stable_after {
                    backoff.reset();
                }
            }
            Err(AttemptFailed { kind, detail }) => {
                log_at!(Level::Warn, "client {}: {detail}", shared.id);
                shared.emit_one(Event::Error { kind, detail });
            }
        }
        if !shared.config.auto_reconnect || shared.close.aborted() {
            break;
        }
        backoff.set_policy(shared.live().backoff);
        let Some((attempt, delay)) = backoff.next_delay() else {
            let detail = format!("gave up after {} reconnection attempts", backoff.policy().max_attempts);
            shared.emit_one(Event::Error { kind: ErrorKind::GaveUp, detail });
            break;
        };
        if !shared.close.requested() {
            shared.set_state(State::WaitingToReconnect);
        }
        shared.emit_one(Event::ReconnectScheduled { attempt, delay });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.close.expired() => break,
            _ = wait_close_with_empty_outbox(shared) => break,
        }
    }
    if let Some(batch) = in_flight.as_mut() {
        shared.record_sent(batch);
    }
    let unsent = shared.discard_outbox() as u64;
    shared.set_state(State::Closed);
    shared.emit_one(Event::Closed { unsent });
    shared.finish(unsent);
}

fn nothing_queued(shared: &Shared) -> bool {
    shared.queued().0 == 0
}

/// Completes once a close is requested and nothing is left to flush, so a
/// close during a backoff wait does not sit out the delay for nothing.
async fn wait_close_with_empty_outbox(shared: &Shared) {
    shared.close.wait_requested().await;
    if !nothing_queued(shared) {
        std::future::pending::<()>().await;
    }
}

/// Connects and, in the longconn protocol, exchanges hello frames; all within the connect timeout.
async fn connect(shared: &Shared) -> Result<(Connection, FrameBatch), AttemptFailed> {
    let config = &shared.config;
    let timeout = config.connect_timeout;
    let attempt = async {
        let options = ConnectOptions {
            max_frame_size: config.max_frame_size,
            headers: config.headers.clone(),
            subprotocols: config.subprotocols.clone(),
            tls: shared.tls.clone(),
        };
        let mut conn = transport::connect(&config.endpoint, &options).await.map_err(|e| AttemptFailed {
            kind: ErrorKind::ConnectFailed,
            detail: format!("cannot connect to {}: {e}", config.endpoint),
        })?;
        let leftovers = if config.framing() == Some(Framing::Longconn) {
            handshake(&mut conn, &config.client_name).await?
        } else {
            FrameBatch::default()
        };
        Ok((conn, leftovers))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(AttemptFailed {
            kind: ErrorKind::ConnectFailed,
            detail: format!("connecting to {} timed out after {} ms", config.endpoint, timeout.as_millis()),
        }),
    }
}

/// Sends our hello and waits for the server's. Frames that arrive right
/// after the server's hello are returned so none is lost.
async fn handshake(conn: &mut Connection, name: &str) -> Result<FrameBatch, AttemptFailed> {
    let failed = |detail: String| AttemptFailed { kind: ErrorKind::HandshakeFailed, detail };
    conn.writer
        .write(&[Frame::Hello(hello_payload(name))], None)
        .await
        .map_err(|e| failed(format!("sending hello failed: {e}")))?;
    let mut batch = FrameBatch::default();
    match conn.reader.read_batch(&mut batch).await {
        Ok(true) => {}
        Ok(false) => return Err(failed("server closed the connection during the hello exchange".into())),
        Err(e) => return Err(failed(format!("hello exchange failed: {e}"))),
    }
    let (kind, range) = batch.frames.first().cloned().ok_or_else(|| failed("no hello from the server".into()))?;
    let version = batch.chunk.get(range.start).copied();
    match kind {
        FrameType::Hello if version == Some(PROTOCOL_VERSION) => {
            batch.frames.remove(0);
            Ok(batch)
        }
        FrameType::Hello => {
            Err(failed(format!("server speaks protocol version {version:?}, this client speaks {PROTOCOL_VERSION}")))
        }
        other => Err(failed(format!("expected a hello frame from the server, got a {other:?} frame"))),
    }
}
