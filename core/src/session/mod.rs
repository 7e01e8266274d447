//! The session: connect, run the connection, back off, and again, until closed.

mod connect;
mod link;
mod resume;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::engine::lifecycle::State;
use crate::engine::Engine;
use crate::event::{DisconnectReason, ErrorKind, Event};
use crate::log::{log_at, Level};
use crate::outbox::Batch;
use crate::policy::backoff::Backoff;
use crate::policy::failover::{AfterFailure, Failover};
use crate::protocol::hello::PROTOCOL_V2;
use resume::Resume;

/// Records the protocol 2 session in the outbox file, if the client keeps
/// one (synced: the numbering of every message sent next depends on it).
fn persist_session(engine: &Engine, resume: &Resume) -> std::io::Result<()> {
    match (engine.sending.durable(), resume.saved()) {
        (Some(mut durable), Some(session)) => durable.append_session(&session),
        _ => Ok(()),
    }
}

/// Runs a client's session on the runtime until the client is closed;
/// beside it, the outbox file's syncs within their window.
pub(crate) async fn run(engine: Arc<Engine>) {
    tokio::select! {
        biased;
        () = run_session(&engine) => {}
        () = engine.sending.sync_durable_in_time() => {}
    }
    if let Some(mut durable) = engine.sending.durable() {
        if let Err(e) = durable.sync_now() {
            log_at!(Level::Warn, "client {}: the outbox file could not be synced: {e}", engine.id);
        }
    }
}

async fn run_session(engine: &Engine) {
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0) ^ engine.id;
    let mut backoff = Backoff::new(engine.settings.get().backoff, seed);
    let mut failover = Failover::new(engine.targets.len(), engine.config.server_order, seed);
    // The batch being written; after a disconnect it goes back to the outbox.
    let mut in_flight: Option<Batch> = None;
    let mut resume = Resume::default();
    if let Some(saved) = crate::lock::lock(&engine.restored.session).take() {
        // The session the outbox file kept: resumed on the first connection.
        resume.restore(saved);
    }
    if let Some(dropped) = &engine.restored.dropped {
        let detail = format!("the outbox file was cut short: {dropped}");
        engine.delivery.emit_one(Event::Error { kind: ErrorKind::Io, detail });
    }
    let mut pending_hook: connect::PendingHook = None;
    let mut attempts_since_connected = 0u32;
    // HTTP: a server's `Retry-After` for the next attempt, and an event
    // stream's `retry` for the first attempt after it ended.
    let mut not_before: Option<std::time::Duration> = None;
    let mut server_retry: Option<std::time::Duration> = None;
    let set_state = |state: State| {
        if !engine.close.requested() {
            engine.lifecycle.set_state(state);
        }
    };
    'session: loop {
        if engine.close.aborted() || (engine.close.requested() && nothing_queued(engine)) {
            break;
        }
        set_state(State::Connecting);
        let offer = (engine.config.max_protocol >= PROTOCOL_V2).then(|| resume.hello_ext());
        attempts_since_connected = attempts_since_connected.saturating_add(1);
        let info = crate::hook::ConnectInfo {
            server_index: failover.current(),
            url: engine.targets[failover.current()].endpoint.to_string(),
            attempt: attempts_since_connected,
        };
        let attempt = tokio::select! {
            // In order, so a simulated run replays exactly.
            biased;
            result = connect::connect(
                engine,
                info,
                offer,
                !resume.ws_v2_declined.contains(&failover.current()),
                &mut pending_hook,
                &resume.sse,
            ) => result,
            _ = engine.close.expired() => break,
        };
        match attempt {
            Ok(connect::Opened { conn, leftovers, server }) => 'connection: {
                failover.connected();
                attempts_since_connected = 0;
                if conn.declined_v2 {
                    resume.ws_v2_declined.push(failover.current());
                    log_at!(
                        Level::Info,
                        "client {}: the WebSocket server {} does not speak {}; not offered to it again",
                        engine.id,
                        engine.targets[failover.current()].endpoint,
                        crate::transport::ws::V2_SUBPROTOCOL
                    );
                }
                let accepted = resume.accept(server.as_ref(), engine.sending.acked());
                let delivery = accepted.delivery;
                let acked = accepted.acked_up_to.map(|number| engine.sending.ack(number)).transpose();
                match acked {
                    Ok(Some(Some(up_to))) if engine.config.ack_events => {
                        engine.delivery.emit_one(Event::Acknowledged { up_to })
                    }
                    Ok(_) => {}
                    Err(beyond) => {
                        // Never trusted: it would drop messages the server does not have.
                        let detail = format!("bad hello from the server: {beyond}");
                        log_at!(Level::Warn, "client {}: {detail}", engine.id);
                        engine.delivery.emit_one(Event::Error { kind: ErrorKind::Protocol, detail });
                        break 'connection;
                    }
                }
                if let Err(e) = persist_session(engine, &resume) {
                    // The numbering of what is sent next would not survive a crash.
                    let detail = format!("the outbox file could not record the session: {e}");
                    log_at!(Level::Warn, "client {}: {detail}", engine.id);
                    engine.delivery.emit_one(Event::Error { kind: ErrorKind::Io, detail });
                    break 'connection;
                }
                engine.sending.set_retain(delivery.acknowledged);
                let server_index = failover.current();
                engine.counters.connected(server_index);
                set_state(State::Connected);
                log_connected(engine, &conn.peer, delivery);
                engine.delivery.emit_one(Event::Connected { peer: conn.peer.clone(), delivery, server_index });
                let up_since = Instant::now();
                let link::Ended { reason, detail } =
                    link::run(engine, conn, leftovers, &mut in_flight, &mut resume, delivery.acknowledged).await;
                // Whatever was not done with goes back in front of the queue for the next connection.
                engine.sending.requeue(in_flight.take(), &engine.counters);
                if let Err(e) = persist_session(engine, &resume) {
                    log_at!(Level::Warn, "client {}: the outbox file could not record the session: {e}", engine.id);
                }
                server_retry = crate::lock::lock(&resume.sse).retry.take();
                log_at!(Level::Info, "client {}: disconnected: {detail}", engine.id);
                engine.delivery.emit_one(Event::Disconnected { reason, detail });
                if reason == DisconnectReason::ClosedByUser {
                    break 'session;
                }
                if up_since.elapsed() >= engine.settings.get().backoff.stable_after {
                    backoff.reset();
                    // A stable connection that ends counts as its server's
                    // failure: with more servers, the next one at once. (One
                    // that ended early backs off first, so servers that drop
                    // every connection cannot make a tight loop.)
                    if engine.targets.len() > 1 && engine.config.auto_reconnect {
                        let ended = failover.current();
                        if failover.failed() == AfterFailure::NextServer {
                            log_at!(
                                Level::Info,
                                "client {}: the connection to {} ended; trying the next server, {}",
                                engine.id,
                                engine.targets[ended].endpoint,
                                engine.targets[failover.current()].endpoint
                            );
                            continue 'session;
                        }
                    }
                }
            }
            Err(connect::AttemptFailed { kind, detail, next }) => {
                log_at!(Level::Warn, "client {}: {detail}", engine.id);
                engine.delivery.emit_one(Event::Error { kind, detail });
                match next {
                    connect::NextAttempt::Stop => break 'session,
                    connect::NextAttempt::NotBefore(wait) => not_before = Some(wait),
                    connect::NextAttempt::AsScheduled => {}
                }
                if not_before.is_none() && failover.failed() == AfterFailure::NextServer && engine.config.auto_reconnect
                {
                    // The round goes on at once; a full round failed is one backoff step.
                    log_at!(
                        Level::Info,
                        "client {}: trying the next server, {}",
                        engine.id,
                        engine.targets[failover.current()].endpoint
                    );
                    continue;
                }
            }
        }
        if !engine.config.auto_reconnect || engine.close.aborted() {
            break;
        }
        backoff.set_policy(engine.settings.get().backoff);
        let Some((attempt, mut delay)) = backoff.next_delay() else {
            let detail = format!("gave up after {} reconnection attempts", backoff.policy().max_attempts);
            engine.delivery.emit_one(Event::Error { kind: ErrorKind::GaveUp, detail });
            break;
        };
        // What the server asked for, within the schedule's bounds.
        let policy = backoff.policy();
        if let Some(retry) = server_retry.take() {
            delay = retry.clamp(policy.initial, policy.max);
        }
        if let Some(wait) = not_before.take() {
            delay = delay.max(wait.min(policy.max));
        }
        set_state(State::WaitingToReconnect);
        engine.delivery.emit_one(Event::ReconnectScheduled { attempt, delay });
        tokio::select! {
            // In order, so a simulated run replays exactly.
            biased;
            _ = tokio::time::sleep(delay) => {}
            _ = engine.close.expired() => break,
            _ = wait_close_with_empty_outbox(engine) => break,
        }
    }
    engine.sending.requeue(in_flight.take(), &engine.counters);
    finish(engine);
}

fn log_connected(engine: &Engine, peer: &str, delivery: crate::event::Delivery) {
    let id = engine.id;
    if delivery.acknowledged {
        let session = if delivery.resumed { "session resumed" } else { "new session" };
        let recovered = if delivery.recovered { "" } else { "; messages from the server were lost" };
        log_at!(
            Level::Info,
            "client {id}: connected to {peer}, acknowledged delivery (protocol 2), {session}{recovered}"
        );
    } else if engine.config.max_protocol >= PROTOCOL_V2 && !engine.config.framing().is_some_and(|f| f.is_plain()) {
        log_at!(Level::Info, "client {id}: connected to {peer}; the server speaks protocol 1: best-effort delivery");
    } else {
        log_at!(Level::Info, "client {id}: connected to {peer}, best-effort delivery");
    }
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
