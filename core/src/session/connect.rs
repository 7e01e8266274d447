//! One connection attempt: the application's connect hook if it set one,
//! then the transport, then (in the longconn protocol) the hello exchange,
//! each within the connect timeout.

use tokio::task::JoinHandle;

use crate::engine::Engine;
use crate::event::ErrorKind;
use crate::hook::{ConnectInfo, ConnectRequest};
use crate::protocol::hello::{
    hello_payload, parse_close_payload, take_hello, HelloExt, CLOSE_UNAUTHORIZED, PROTOCOL_V2, PROTOCOL_VERSION,
};
use crate::protocol::FrameBatch;
use crate::protocol::{Frame, FrameType};
use crate::transport::http::{Refusal, SharedProgress};
use crate::transport::{self, ConnectOptions, Connection};

/// A call of the connect hook that outlived its attempt's wait: the next
/// attempt waits for it rather than make another, so calls never overlap.
pub(super) type PendingHook = Option<JoinHandle<Option<Result<ConnectRequest, String>>>>;

/// A failed connection attempt.
pub(super) struct AttemptFailed {
    pub kind: ErrorKind,
    pub detail: String,
    /// What the server said of the next attempt (HTTP: 204 and most 4xx
    /// stop; `Retry-After` asks for a wait).
    pub next: NextAttempt,
}

/// What a failed attempt means for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum NextAttempt {
    /// As the backoff schedule and the server list say.
    #[default]
    AsScheduled,
    /// Not before this long.
    NotBefore(std::time::Duration),
    /// None: the server asked the client to stop.
    Stop,
}

impl AttemptFailed {
    fn new(kind: ErrorKind, detail: String) -> AttemptFailed {
        AttemptFailed { kind, detail, next: NextAttempt::AsScheduled }
    }
}

/// An open connection, ready for the session.
pub(super) struct Opened {
    pub conn: Connection,
    /// Frames that arrived right behind the server's hello.
    pub leftovers: FrameBatch,
    /// The server's version 2 fields; `None` for best effort.
    pub server: Option<HelloExt>,
}

/// Connects to the server at `info.server_index`, offering `ext` in the
/// hello (version 2) or nothing (version 1); over WebSocket, offering the
/// version 2 subprotocol if `ws_v2`.
pub(super) async fn connect(
    engine: &Engine,
    info: ConnectInfo,
    mut ext: Option<HelloExt>,
    ws_v2: bool,
    pending_hook: &mut PendingHook,
    sse: &SharedProgress,
) -> Result<Opened, AttemptFailed> {
    let config = &engine.config;
    let target = &engine.targets[info.server_index];
    let endpoint = &target.endpoint;
    let timeout = config.connect_timeout;
    let request = prepare(engine, info, pending_hook).await?;
    if let Some(ext) = &mut ext {
        ext.token = request.token;
    }
    let attempt = async {
        let options = ConnectOptions {
            max_frame_size: config.max_frame_size,
            headers: request.headers,
            subprotocols: request.subprotocols,
            offer_v2: ws_v2 && ext.is_some(),
            dialer: config.dialer.clone(),
            sse: Some(sse.clone()),
            http_send_to: config.http_send_to.clone(),
            ws_deflate: config.ws_compression,
        };
        let mut conn = transport::connect(target, &options).await.map_err(|e| {
            let detail = format!("cannot connect to {endpoint}: {e}");
            match e.get_ref().and_then(|inner| inner.downcast_ref::<Refusal>()) {
                Some(refusal) if refusal.stop => {
                    AttemptFailed { kind: ErrorKind::GaveUp, detail, next: NextAttempt::Stop }
                }
                Some(refusal) => AttemptFailed {
                    kind: ErrorKind::ConnectFailed,
                    detail,
                    next: refusal.retry_after.map_or(NextAttempt::AsScheduled, NextAttempt::NotBefore),
                },
                None => AttemptFailed::new(ErrorKind::ConnectFailed, detail),
            }
        })?;
        let (leftovers, server) = if conn.longconn_frames {
            handshake(&mut conn, &config.client_name, ext).await?
        } else {
            (FrameBatch::default(), None)
        };
        Ok(Opened { conn, leftovers, server })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(AttemptFailed::new(
            ErrorKind::ConnectFailed,
            format!("connecting to {endpoint} timed out after {} ms", timeout.as_millis()),
        )),
    }
}

/// What the attempt sends: the config's headers and subprotocols, changed
/// by the application's connect hook if it set one. The hook runs on a
/// blocking thread (it may wait for a token service) and is waited for up
/// to the connect timeout.
async fn prepare(
    engine: &Engine,
    info: ConnectInfo,
    pending: &mut PendingHook,
) -> Result<ConnectRequest, AttemptFailed> {
    let config = &engine.config;
    let failed = |detail: String| AttemptFailed::new(ErrorKind::ConnectFailed, detail);
    let call = match pending {
        Some(call) => call,
        None => {
            let mut request = ConnectRequest {
                headers: config.headers.clone(),
                subprotocols: config.subprotocols.clone(),
                token: None,
            };
            let Some(hook) = engine.delivery.connect_hook() else { return Ok(request) };
            let delivery = engine.delivery.clone();
            pending.insert(tokio::task::spawn_blocking(move || {
                delivery.run_as_callback(|| hook.before_connect(&info, &mut request).map(|()| request))
            }))
        }
    };
    let timeout = config.connect_timeout;
    let Ok(joined) = tokio::time::timeout(timeout, call).await else {
        return Err(failed(format!("the connect hook did not return within {} ms", timeout.as_millis())));
    };
    *pending = None;
    match joined {
        Ok(Some(Ok(request))) => Ok(request),
        Ok(Some(Err(why))) => Err(failed(format!("the connect hook failed: {why}"))),
        Ok(None) => Err(failed("the client was freed".into())),
        Err(e) => Err(failed(format!("the connect hook could not run: {e}"))),
    }
}

/// Sends our hello and waits for the server's. Frames that arrive right
/// after the server's hello are returned so none is lost, with the server's
/// version 2 fields if it speaks version 2.
async fn handshake(
    conn: &mut Connection,
    name: &str,
    ext: Option<HelloExt>,
) -> Result<(FrameBatch, Option<HelloExt>), AttemptFailed> {
    let failed = |detail: String| AttemptFailed::new(ErrorKind::HandshakeFailed, detail);
    let hello = Frame::Hello(hello_payload(PROTOCOL_VERSION, name, ext.as_ref()));
    conn.writer.write(&[hello], None).await.map_err(|e| failed(format!("sending hello failed: {e}")))?;
    let mut batch = FrameBatch::default();
    match conn.reader.read_batch(&mut batch).await {
        Ok(true) => {}
        Ok(false) => return Err(failed("server closed the connection during the hello exchange".into())),
        Err(e) => return Err(failed(format!("hello exchange failed: {e}"))),
    }
    if let Some((FrameType::Close, range)) = batch.frames.first().cloned() {
        let (code, reason) = parse_close_payload(&batch.chunk[range]);
        let kind = if code == CLOSE_UNAUTHORIZED { ErrorKind::Unauthorized } else { ErrorKind::HandshakeFailed };
        return Err(AttemptFailed::new(
            kind,
            format!("the server refused the connection: {reason} (close code {code})"),
        ));
    }
    let hello = take_hello(&mut batch).map_err(|e| failed(format!("bad hello from the server: {e}")))?;
    let server = match hello.ext {
        Some(ext) if hello.version == PROTOCOL_V2 && ext.max_version >= PROTOCOL_V2 => Some(ext),
        _ => None,
    };
    Ok((batch, server))
}
