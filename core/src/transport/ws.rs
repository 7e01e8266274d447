//! WebSocket over TCP (`ws://`), through tokio-tungstenite.
//!
//! Messages map to frames: binary to data, text to text, and the WebSocket
//! ping, pong and close control frames to ours, so heartbeats, the close
//! handshake (code and reason) and the outbox work as on the other transports.
//! tungstenite answers pings itself, so our pongs are not sent twice.

use std::io;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{accept_async_with_config, client_async_with_config, WebSocketStream};

use super::{ConnectOptions, Reader, Stream, Writer, WRITE_CHUNK};
use crate::endpoint::Endpoint;
use crate::outbox::Batch;
use crate::protocol::hello::{close_payload, parse_close_payload};
use crate::protocol::{Frame, FrameBatch, FrameError, FrameType};

type Ws = WebSocketStream<Box<dyn Stream>>;

/// Performs the client's WebSocket handshake on a connected stream, with
/// the configured headers and subprotocols.
pub async fn handshake(
    stream: Box<dyn Stream>,
    endpoint: &Endpoint,
    options: &ConnectOptions,
) -> io::Result<(Reader, Writer)> {
    let host = if endpoint.host.contains(':') { format!("[{}]", endpoint.host) } else { endpoint.host.clone() };
    let url = format!("{}://{host}:{}{}", endpoint.scheme.name(), endpoint.port, endpoint.resource);
    let mut request = url.into_client_request().map_err(io_error)?;
    for (name, value) in &options.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(io::Error::other)?;
        let value = HeaderValue::from_str(value).map_err(io::Error::other)?;
        request.headers_mut().append(name, value);
    }
    if !options.subprotocols.is_empty() {
        let offered = HeaderValue::from_str(&options.subprotocols.join(", ")).map_err(io::Error::other)?;
        request.headers_mut().insert("sec-websocket-protocol", offered);
    }
    let (ws, _response) =
        client_async_with_config(request, stream, Some(config(options.max_frame_size))).await.map_err(io_error)?;
    Ok(halves(ws))
}

/// Accepts a WebSocket handshake on a server's connection.
pub async fn accept(stream: Box<dyn Stream>, max_frame_size: usize) -> io::Result<(Reader, Writer)> {
    let ws = accept_async_with_config(stream, Some(config(max_frame_size))).await.map_err(io_error)?;
    Ok(halves(ws))
}

fn halves(ws: Ws) -> (Reader, Writer) {
    let (sink, stream) = ws.split();
    (Reader::Ws(WsReader { stream }), Writer::Ws(WsWriter { sink }))
}

fn config(max_frame_size: usize) -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(max_frame_size)).max_frame_size(Some(max_frame_size))
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

pub struct WsReader {
    stream: SplitStream<Ws>,
}

impl WsReader {
    /// Reads the next message; each read carries one. Cancel-safe.
    pub async fn read_batch(&mut self, batch: &mut FrameBatch) -> Result<bool, FrameError> {
        batch.clear();
        loop {
            let message = match self.stream.next().await {
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(false),
                Some(Err(e)) => return Err(codec_error(e)),
                Some(Ok(message)) => message,
            };
            let (kind, payload): (FrameType, Bytes) = match message {
                Message::Binary(data) => (FrameType::Data, data),
                Message::Text(text) => (FrameType::Text, Bytes::from(text)),
                Message::Ping(data) => (FrameType::Ping, data),
                Message::Pong(data) => (FrameType::Pong, data),
                Message::Close(frame) => {
                    let (code, reason) = frame.map_or((1005, String::new()), |f| (f.code.into(), f.reason.to_string()));
                    (FrameType::Close, close_payload(code, &reason))
                }
                Message::Frame(_) => continue,
            };
            batch.frames.push((kind, 0..payload.len()));
            batch.chunk = payload;
            return Ok(true);
        }
    }
}

fn codec_error(e: WsError) -> FrameError {
    match e {
        WsError::Io(e) => FrameError::Io(e),
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            FrameError::FrameTooLarge { len: size, max: max_size }
        }
        other => FrameError::Protocol(other.to_string()),
    }
}

pub struct WsWriter {
    sink: SplitSink<Ws, Message>,
}

impl WsWriter {
    /// Sends control frames, then the next chunk of the batch's messages,
    /// marking them as sent once flushed.
    pub async fn write(&mut self, control: &[Frame], batch: Option<&mut Batch>) -> io::Result<()> {
        for frame in control {
            if let Some(message) = control_message(frame) {
                self.sink.feed(message).await.map_err(io_error)?;
            }
        }
        if let Some(batch) = batch {
            let (mut count, mut bytes) = (0, 0);
            for (text, payload) in batch.iter_unsent_with_kind() {
                let message = if text {
                    // Checked to be UTF-8 when it was sent.
                    Message::text(String::from_utf8_lossy(payload).into_owned())
                } else {
                    Message::binary(Bytes::copy_from_slice(payload))
                };
                self.sink.feed(message).await.map_err(io_error)?;
                count += 1;
                bytes += payload.len();
                if bytes >= WRITE_CHUNK {
                    break;
                }
            }
            self.sink.flush().await.map_err(io_error)?;
            batch.mark_sent(count);
            return Ok(());
        }
        self.sink.flush().await.map_err(io_error)
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.sink.close().await.map_err(io_error)
    }
}

/// Our control frame as a WebSocket message; `None` for what WebSocket does itself.
fn control_message(frame: &Frame) -> Option<Message> {
    Some(match frame {
        Frame::Ping(p) => Message::Ping(p.clone()),
        // tungstenite answers every ping itself.
        Frame::Pong(_) | Frame::Hello(_) | Frame::Ack(_) => return None,
        Frame::Close(p) => {
            let (code, reason) = parse_close_payload(p);
            Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))
        }
        Frame::Data(p) => Message::binary(p.clone()),
        Frame::Text(p) => Message::text(String::from_utf8_lossy(p).into_owned()),
    })
}
