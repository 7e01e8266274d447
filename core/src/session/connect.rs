//! One connection attempt: the transport, then (in the longconn protocol)
//! the hello exchange, all within the connect timeout.

use crate::engine::Engine;
use crate::event::ErrorKind;
use crate::protocol::hello::{hello_frame, take_hello};
use crate::protocol::{FrameBatch, Framing};
use crate::transport::{self, ConnectOptions, Connection};

/// A failed connection attempt.
pub(super) struct AttemptFailed {
    pub kind: ErrorKind,
    pub detail: String,
}

/// Connects; returns the connection and any frames that arrived right
/// behind the server's hello.
pub(super) async fn connect(engine: &Engine) -> Result<(Connection, FrameBatch), AttemptFailed> {
    let config = &engine.config;
    let timeout = config.connect_timeout;
    let attempt = async {
        let options = ConnectOptions {
            max_frame_size: config.max_frame_size,
            headers: config.headers.clone(),
            subprotocols: config.subprotocols.clone(),
            tls: engine.tls.clone(),
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
    conn.writer.write(&[hello_frame(name)], None).await.map_err(|e| failed(format!("sending hello failed: {e}")))?;
    let mut batch = FrameBatch::default();
    match conn.reader.read_batch(&mut batch).await {
        Ok(true) => {}
        Ok(false) => return Err(failed("server closed the connection during the hello exchange".into())),
        Err(e) => return Err(failed(format!("hello exchange failed: {e}"))),
    }
    take_hello(&mut batch).map_err(|e| failed(format!("bad hello from the server: {e}")))?;
    Ok(batch)
}
