//! The session: connect, run the connection, back off, and again, until closed.

mod connect;
mod link;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::engine::lifecycle::State;
use crate::engine::Engine;
use crate::event::{DisconnectReason, ErrorKind, Event};
use crate::log::{log_at, Level};
use crate::outbox::Batch;
use crate::policy::backoff::Backoff;

/// Runs a client's session on the runtime until the client is closed.
pub(crate) async fn run(engine: Arc<Engine>) {
    let engine = &*engine;
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0) ^ engine.id;
    let mut backoff = Backoff::new(engine.settings.get().backoff, seed);
    // A batch whose write was cut off by a disconnect; written first next time.
    let mut in_flight: Option<Batch> = None;
    let set_state = |state: State| {
        if !engine.close.requested() {
            engine.lifecycle.set_state(state);
        }
    };
    loop {
        if engine.close.aborted() || (engine.close.requested() && nothing_queued(engine)) {
            break;
        }
        set_state(State::Connecting);
        let attempt = tokio::select! {
            result = connect::connect(engine) => result,
            _ = engine.close.expired() => break,
        };
        match attempt {
            Ok((conn, leftovers)) => {
                engine.counters.connected();
                set_state(State::Connected);
                log_at!(Level::Info, "client {}: connected to {}", engine.id, conn.peer);
                engine.delivery.emit_one(Event::Connected { peer: conn.peer.clone() });
                let up_since = Instant::now();
                let link::Ended { reason, detail } = link::run(engine, conn, leftovers, &mut in_flight).await;
                // A write cut off by the end of the connection may have handed part of its batch over.
                if let Some(batch) = in_flight.as_mut() {
                    engine.sending.record_sent(batch, &engine.counters);
                    if batch.is_done() {
                        engine.sending.batch_written(in_flight.take().expect("checked above"), &engine.counters);
                    }
                }
                log_at!(Level::Info, "client {}: disconnected: {detail}", engine.id);
                engine.delivery.emit_one(Event::Disconnected { reason, detail });
                if reason == DisconnectReason::ClosedByUser {
                    break;
                }
                if up_since.elapsed() >= engine.settings.get().backoff.stable_after {
                    backoff.reset();
                }
            }
            Err(connect::AttemptFailed { kind, detail }) => {
                log_at!(Level::Warn, "client {}: {detail}", engine.id);
                engine.delivery.emit_one(Event::Error { kind, detail });
            }
        }
        if !engine.config.auto_reconnect || engine.close.aborted() {
            break;
        }
        backoff.set_policy(engine.settings.get().backoff);
        let Some((attempt, delay)) = backoff.next_delay() else {
            let detail = format!("gave up after {} reconnection attempts", backoff.policy().max_attempts);
            engine.delivery.emit_one(Event::Error { kind: ErrorKind::GaveUp, detail });
            break;
        };
        set_state(State::WaitingToReconnect);
        engine.delivery.emit_one(Event::ReconnectScheduled { attempt, delay });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = engine.close.expired() => break,
            _ = wait_close_with_empty_outbox(engine) => break,
        }
    }
    if let Some(batch) = in_flight.as_mut() {
        engine.sending.record_sent(batch, &engine.counters);
    }
    finish(engine);
}

/// Ends the client for good: discards what is left, reports it in the
/// closed event (the last one), and releases whoever waits for the end.
pub(crate) fn finish(engine: &Engine) {
    let unsent = engine.sending.discard() as u64;
    engine.lifecycle.set_state(State::Closed);
    engine.delivery.emit_one(Event::Closed { unsent });
    engine.delivery.inbox.end();
    engine.lifecycle.finish(unsent);
}

fn nothing_queued(engine: &Engine) -> bool {
    engine.sending.queued().0 == 0
}

/// Completes once a close is requested and nothing is left to flush, so a
/// close during a backoff wait does not sit out the delay for nothing.
async fn wait_close_with_empty_outbox(engine: &Engine) {
    engine.close.wait_requested().await;
    if !nothing_queued(engine) {
        std::future::pending::<()>().await;
    }
}
