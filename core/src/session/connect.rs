//! One connection attempt: the transport, then (in the longconn protocol)
//! the hello exchange, all within the connect timeout.

use crate::engine::Engine;
use crate::event::ErrorKind;
use crate::protocol::hello::{hello_payload, take_hello, HelloExt, PROTOCOL_V2, PROTOCOL_VERSION};
use crate::protocol::Frame;
use crate::protocol::FrameBatch;
use crate::transport::{self, ConnectOptions, Connection, Target};

/// A failed connection attempt.
pub(super) struct AttemptFailed {
    pub kind: ErrorKind,
    pub detail: String,
}

/// An open connection, ready for the session.
pub(super) struct Opened {
    pub conn: Connection,
    /// Frames that arrived right behind the server's hello.
    pub leftovers: FrameBatch,
    /// The server's version 2 fields; `None` for best effort.
    pub server: Option<HelloExt>,
}

/// Connects to `target`, offering `ext` in the hello (version 2) or nothing
/// (version 1); over WebSocket, offering the version 2 subprotocol if `ws_v2`.
pub(super) async fn connect(
    engine: &Engine,
    target: &Target,
    ext: Option<HelloExt>,
    ws_v2: bool,
) -> Result<Opened, AttemptFailed> {
    let config = &engine.config;
    let endpoint = &target.endpoint;
    let timeout = config.connect_timeout;
    let attempt = async {
        let options = ConnectOptions {
            max_frame_size: config.max_frame_size,
            headers: config.headers.clone(),
            subprotocols: config.subprotocols.clone(),
            offer_v2: ws_v2 && ext.is_some(),
            dialer: config.dialer.clone(),
        };
        let mut conn = transport::connect(target, &options).await.map_err(|e| AttemptFailed {
            kind: ErrorKind::ConnectFailed,
            detail: format!("cannot connect to {endpoint}: {e}"),
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
        Err(_) => Err(AttemptFailed {
            kind: ErrorKind::ConnectFailed,
            detail: format!("connecting to {endpoint} timed out after {} ms", timeout.as_millis()),
        }),
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
    let failed = |detail: String| AttemptFailed { kind: ErrorKind::HandshakeFailed, detail };
    let hello = Frame::Hello(hello_payload(PROTOCOL_VERSION, name, ext.as_ref()));
    conn.writer.write(&[hello], None).await.map_err(|e| failed(format!("sending hello failed: {e}")))?;
    let mut batch = FrameBatch::default();
    match conn.reader.read_batch(&mut batch).await {
        Ok(true) => {}
        Ok(false) => return Err(failed("server closed the connection during the hello exchange".into())),
        Err(e) => return Err(failed(format!("hello exchange failed: {e}"))),
    }
    let hello = take_hello(&mut batch).map_err(|e| failed(format!("bad hello from the server: {e}")))?;
    let server = match hello.ext {
        Some(ext) if hello.version == PROTOCOL_V2 && ext.max_version >= PROTOCOL_V2 => Some(ext),
        _ => None,
    };
    Ok((batch, server))
}
