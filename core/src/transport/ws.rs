//! WebSocket over TCP (`ws://`), through tokio-tungstenite.
//!
//! Messages map to frames: binary to data, text to text, and the WebSocket
//! ping, pong and close control frames to ours, so heartbeats, the close
//! handshake (code and reason) and the outbox work as on the other transports.
//! tungstenite answers pings itself, so our pongs are not sent twice.
//!
//! When both sides agree on the subprotocol [`V2_SUBPROTOCOL`], binary
//! messages carry longconn frames instead (one frame each: its type byte,
//! then its payload), so the hello exchange, acknowledgements and resume of
//! protocol version 2 run over WebSocket too; pings, pongs and the close
//! handshake stay WebSocket's own.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::task::noop_waker_ref;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::{accept_hdr_async_with_config, client_async_with_config, WebSocketStream};

use super::read_ahead::ReadAhead;
use super::{ConnectOptions, Reader, Stream, Writer, WRITE_CHUNK};
use crate::endpoint::Endpoint;
use crate::outbox::Batch;
use crate::protocol::hello::{close_payload, parse_close_payload};
use crate::protocol::{Frame, FrameBatch, FrameError, FrameType};

type Ws = WebSocketStream<Box<dyn Stream>>;

/// The subprotocol under which binary messages carry longconn frames.
pub const V2_SUBPROTOCOL: &str = "longconn.v2";

/// The error [`handshake`] gives when it offered [`V2_SUBPROTOCOL`] and the
/// server chose no subprotocol: connect again without offering it.
pub fn declined_v2(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported && e.to_string().contains(V2_SUBPROTOCOL)
}

/// Performs the client's WebSocket handshake on a connected stream, with
/// the configured headers and subprotocols.
pub async fn handshake(
    stream: Box<dyn Stream>,
    endpoint: &Endpoint,
    options: &ConnectOptions,
    offer_v2: bool,
) -> io::Result<(Reader, Writer, bool)> {
    let host = if endpoint.host.contains(':') { format!("[{}]", endpoint.host) } else { endpoint.host.clone() };
    let url = format!("{}://{host}:{}{}", endpoint.scheme.name(), endpoint.port, endpoint.resource);
    let mut request = url.into_client_request().map_err(io_error)?;
    for (name, value) in &options.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(io::Error::other)?;
        let value = HeaderValue::from_str(value).map_err(io::Error::other)?;
        request.headers_mut().append(name, value);
    }
    let mut offered = options.subprotocols.clone();
    let offer_v2 = offer_v2 && offered.is_empty();
    if offer_v2 {
        offered.push(V2_SUBPROTOCOL.into());
    }
    if !offered.is_empty() {
        let offered = HeaderValue::from_str(&offered.join(", ")).map_err(io::Error::other)?;
        request.headers_mut().insert("sec-websocket-protocol", offered);
    }
    let stream: Box<dyn Stream> = Box::new(ReadAhead::new(stream));
    let (ws, response) =
        client_async_with_config(request, stream, Some(config(options.max_frame_size))).await.map_err(|e| match e {
            WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(SubProtocolError::NoSubProtocol))
                if offer_v2 =>
            {
                io::Error::new(io::ErrorKind::Unsupported, format!("the server does not speak {V2_SUBPROTOCOL}"))
            }
            other => io_error(other),
        })?;
    let v2 = response.headers().get("sec-websocket-protocol").is_some_and(|v| v == V2_SUBPROTOCOL);
    let (reader, writer) = halves(ws, v2);
    Ok((reader, writer, v2))
}

/// Accepts a WebSocket handshake on a server's connection; with
/// `offer_v2`, chooses [`V2_SUBPROTOCOL`] when the client offers it.
/// Returns whether it did.
pub async fn accept(
    stream: Box<dyn Stream>,
    max_frame_size: usize,
    offer_v2: bool,
) -> io::Result<(Reader, Writer, bool)> {
    let mut v2 = false;
    // The callback's type is tungstenite's; its error is never returned here.
    #[allow(clippy::result_large_err)]
    let choose = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        let offered = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .any(|value| value.to_str().is_ok_and(|list| list.split(',').any(|p| p.trim() == V2_SUBPROTOCOL)));
        if offer_v2 && offered {
            response.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(V2_SUBPROTOCOL));
            v2 = true;
        }
        Ok(response)
    };
    let stream: Box<dyn Stream> = Box::new(ReadAhead::new(stream));
    let ws = accept_hdr_async_with_config(stream, choose, Some(config(max_frame_size))).await.map_err(io_error)?;
    let (reader, writer) = halves(ws, v2);
    Ok((reader, writer, v2))
}

fn halves(ws: Ws, v2: bool) -> (Reader, Writer) {
    let (sink, stream) = ws.split();
    let reader = WsReader { stream, v2, deferred: None, gathered: BytesMut::new() };
    let sink = Arc::new(tokio::sync::Mutex::new(sink));
    (Reader::Ws(reader), Writer::Ws(WsWriter { sink, v2, chunk: BytesMut::new() }))
}

/// tungstenite reads the socket this much at a time into a buffer of this
/// size made up front (its default is 128 KiB, which an idle connection
/// would hold for its whole life); larger messages grow it as needed.
/// Underneath, [`ReadAhead`] reads the socket 64 KiB at a time while data
/// keeps coming, so a burst does not cost a system call per 4 KiB.
const READ_BUFFER: usize = 4 * 1024;

fn config(max_frame_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_frame_size))
        .max_frame_size(Some(max_frame_size))
        .read_buffer_size(READ_BUFFER)
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

pub struct WsReader {
    stream: SplitStream<Ws>,
    /// Binary messages carry longconn frames ([`V2_SUBPROTOCOL`]).
    v2: bool,
    /// An error or the end of the stream met after messages that were
    /// handed on first; reported by the next read.
    deferred: Option<Result<bool, FrameError>>,
    /// Payloads gathered from one read, copied back to back.
    gathered: BytesMut,
}

/// A read hands on at most this many messages at once...
const GATHER_MESSAGES: usize = 1024;
/// ...and copies at most this many bytes to put them in one buffer; a
/// message at least this large is handed on alone, without a copy.
const GATHER_BYTES: usize = 64 * 1024;

impl WsReader {
    /// Reads the next message and every one already buffered after it (up
    /// to [`GATHER_MESSAGES`] and [`GATHER_BYTES`]), so a read that brought
    /// many small messages becomes one batch sharing one buffer. Cancel-safe.
    pub async fn read_batch(&mut self, batch: &mut FrameBatch) -> Result<bool, FrameError> {
        batch.clear();
        if let Some(deferred) = self.deferred.take() {
            return deferred;
        }
        let first = loop {
            match self.stream.next().await {
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(false),
                Some(Err(e)) => return Err(codec_error(e)),
                Some(Ok(message)) => {
                    if let Some(frame) = self.convert(message)? {
                        break frame;
                    }
                }
            }
        };
        if first.0 == FrameType::Close || first.1.len() >= GATHER_BYTES {
            batch.frames.push((first.0, 0..first.1.len()));
            batch.chunk = first.1;
            return Ok(true);
        }
        self.gathered.clear();
        batch.frames.push((first.0, 0..first.1.len()));
        while batch.frames.len() < GATHER_MESSAGES && self.gathered.len() < GATHER_BYTES {
            // Only what needs no waiting: tungstenite's buffer, or a read the socket can answer now.
            let Some(next) = self.stream.next().now_or_never() else { break };
            let (kind, payload) = match next {
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    self.deferred = Some(Ok(false));
                    break;
                }
                Some(Err(e)) => {
                    self.deferred = Some(Err(codec_error(e)));
                    break;
                }
                Some(Ok(message)) => match self.convert(message) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => continue,
                    Err(e) => {
                        self.deferred = Some(Err(e));
                        break;
                    }
                },
            };
            if self.gathered.is_empty() {
                // A second message: now the first is copied too.
                self.gathered.extend_from_slice(&first.1);
            }
            let at = self.gathered.len();
            self.gathered.extend_from_slice(&payload);
            batch.frames.push((kind, at..at + payload.len()));
            if kind == FrameType::Close {
                break;
            }
        }
        // One message alone keeps its own buffer, uncopied.
        batch.chunk = if batch.frames.len() == 1 { first.1 } else { self.gathered.split().freeze() };
        Ok(true)
    }

    /// A message as our frame type and payload; `None` for what carries none.
    fn convert(&self, message: Message) -> Result<Option<(FrameType, Bytes)>, FrameError> {
        Ok(Some(match message {
            Message::Binary(data) if self.v2 => {
                let kind = match data.first() {
                    Some(0x01) => FrameType::Data,
                    Some(0x02) => FrameType::Ping,
                    Some(0x03) => FrameType::Pong,
                    Some(0x04) => FrameType::Hello,
                    Some(0x05) => FrameType::Close,
                    Some(0x06) => FrameType::Ack,
                    Some(0x07) => FrameType::Text,
                    Some(&other) => return Err(FrameError::UnknownFrameType(other)),
                    None => return Err(FrameError::Malformed("an empty binary message under longconn.v2")),
                };
                (kind, data.slice(1..))
            }
            Message::Binary(data) => (FrameType::Data, data),
            Message::Text(text) => (FrameType::Text, Bytes::from(text)),
            Message::Ping(data) => (FrameType::Ping, data),
            Message::Pong(data) => (FrameType::Pong, data),
            Message::Close(frame) => {
                let (code, reason) = frame.map_or((1005, String::new()), |f| (f.code.into(), f.reason.to_string()));
                (FrameType::Close, close_payload(code, &reason))
            }
            Message::Frame(_) => return Ok(None),
        }))
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

/// The sending half, shared with [`WsDirect`]. The lock is never
/// contended: the writer and direct writes take turns (`engine/sending.rs`).
type SharedSink = Arc<tokio::sync::Mutex<SplitSink<Ws, Message>>>;

pub struct WsWriter {
    sink: SharedSink,
    /// Binary messages carry longconn frames ([`V2_SUBPROTOCOL`]).
    v2: bool,
    /// The messages of the chunk being written, back to back.
    chunk: BytesMut,
}

/// Writes a message into tungstenite from another thread without waiting:
/// through the same sink as the writer, so tungstenite still sees every
/// frame it sends (its own pongs and close replies included) in order.
#[derive(Clone)]
pub struct WsDirect {
    sink: SharedSink,
    v2: bool,
}

impl std::fmt::Debug for WsDirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsDirect")
    }
}

impl WsDirect {
    /// Hands the batch's messages to tungstenite while it takes them at
    /// once, then flushes what it can. Never waits: when the reader half is
    /// busy inside tungstenite, or its buffer is full, the rest stays for
    /// the writer.
    pub fn try_write(&self, batch: &mut Batch) -> super::DirectWrite {
        let Ok(mut sink) = self.sink.try_lock() else {
            return super::DirectWrite { flush_owed: false };
        };
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut handed = 0;
        for (text, payload) in batch.iter_unsent_with_kind() {
            if !matches!(sink.poll_ready_unpin(&mut cx), Poll::Ready(Ok(()))) {
                break;
            }
            let Ok(message) = message_of(text, payload, self.v2) else { break };
            if sink.start_send_unpin(message).is_err() {
                break;
            }
            handed += 1;
        }
        batch.mark_sent(handed);
        let flushed = matches!(sink.poll_flush_unpin(&mut cx), Poll::Ready(Ok(())));
        super::DirectWrite { flush_owed: handed > 0 && !flushed }
    }
}

/// One queued message as a WebSocket message: under longconn.v2 a binary
/// message with its frame type first, else binary or text as sent.
fn message_of(text: bool, payload: &[u8], v2: bool) -> io::Result<Message> {
    Ok(if v2 {
        framed(if text { FrameType::Text } else { FrameType::Data }, payload)
    } else if text {
        // Checked to be UTF-8 when it was sent.
        Message::Text(Bytes::copy_from_slice(payload).try_into().map_err(io::Error::other)?)
    } else {
        Message::Binary(Bytes::copy_from_slice(payload))
    })
}

/// A longconn frame as one binary message: its type byte, then its payload.
fn framed(kind: FrameType, payload: &[u8]) -> Message {
    let mut data = Vec::with_capacity(1 + payload.len());
    data.push(kind as u8);
    data.extend_from_slice(payload);
    Message::binary(data)
}

impl WsWriter {
    /// Sends control frames, then the next chunk of the batch's messages,
    /// marking them as sent once flushed.
    pub async fn write(&mut self, control: &[Frame], batch: Option<&mut Batch>) -> io::Result<()> {
        let mut sink = self.sink.lock().await;
        // Under longconn.v2 the frames (a server's replies among them) are
        // encoded back to back into one buffer and handed on as slices of it.
        self.chunk.clear();
        let mut ends = Vec::with_capacity(control.len());
        for frame in control {
            if self.v2 && carries_v2_frame(frame) {
                let (kind, payload) = frame.parts();
                self.chunk.extend_from_slice(&[kind as u8]);
                self.chunk.extend_from_slice(payload);
            }
            ends.push(self.chunk.len());
        }
        let encoded = self.chunk.split().freeze();
        let mut start = 0;
        for (frame, end) in control.iter().zip(ends) {
            let message = if end > start {
                Some(Message::Binary(encoded.slice(start..end)))
            } else {
                control_message(frame, self.v2)
            };
            start = end;
            if let Some(message) = message {
                sink.feed(message).await.map_err(io_error)?;
            }
        }
        if let Some(batch) = batch {
            // The chunk's messages copied back to back into one buffer (under
            // longconn.v2 each after its type byte) and handed to tungstenite
            // as slices of it: one allocation per chunk, not one per message.
            self.chunk.clear();
            let (mut count, mut bytes) = (0, 0);
            for (text, payload) in batch.iter_unsent_with_kind() {
                if self.v2 {
                    self.chunk.extend_from_slice(&[if text { FrameType::Text } else { FrameType::Data } as u8]);
                }
                self.chunk.extend_from_slice(payload);
                count += 1;
                bytes += payload.len();
                if bytes >= WRITE_CHUNK {
                    break;
                }
            }
            let chunk = self.chunk.split().freeze();
            let mut at = 0;
            for (text, payload) in batch.iter_unsent_with_kind().take(count) {
                let len = payload.len() + usize::from(self.v2);
                let data = chunk.slice(at..at + len);
                at += len;
                let message = if text && !self.v2 {
                    // Checked to be UTF-8 when it was sent.
                    Message::Text(data.try_into().map_err(io::Error::other)?)
                } else {
                    Message::Binary(data)
                };
                sink.feed(message).await.map_err(io_error)?;
            }
            sink.flush().await.map_err(io_error)?;
            batch.mark_sent(count);
            return Ok(());
        }
        sink.flush().await.map_err(io_error)
    }

    /// Flushes what a direct write left in tungstenite's buffer.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.sink.lock().await.flush().await.map_err(io_error)
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.sink.lock().await.close().await.map_err(io_error)
    }

    /// A handle for direct writes into this connection.
    pub fn direct(&self) -> WsDirect {
        WsDirect { sink: self.sink.clone(), v2: self.v2 }
    }
}

/// Our control frame as a WebSocket message; `None` for what WebSocket does itself.
/// Whether `frame` travels as a longconn frame in a binary message under longconn.v2.
fn carries_v2_frame(frame: &Frame) -> bool {
    matches!(frame, Frame::Hello(_) | Frame::Ack(_) | Frame::Data(_) | Frame::Text(_))
}

fn control_message(frame: &Frame, v2: bool) -> Option<Message> {
    Some(match frame {
        Frame::Hello(p) | Frame::Ack(p) | Frame::Data(p) | Frame::Text(p) if v2 => {
            let (kind, _) = frame.parts();
            framed(kind, p)
        }
        Frame::Ping(p) => Message::Ping(p.clone()),
        // tungstenite answers every ping itself.
        Frame::Pong(_) | Frame::Hello(_) | Frame::Ack(_) => return None,
        Frame::Close(p) => {
            let (code, reason) = parse_close_payload(p);
            Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))
        }
        Frame::Data(p) => Message::binary(p.clone()),
        // Valid UTF-8 is handed on without a copy.
        Frame::Text(p) => match Utf8Bytes::try_from(p.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::text(String::from_utf8_lossy(p).into_owned()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ConnectOptions {
        ConnectOptions { max_frame_size: 1 << 20, headers: vec![], subprotocols: vec![], tls: None, offer_v2: false }
    }

    #[tokio::test]
    async fn a_read_hands_on_every_buffered_message_as_one_batch_in_order_up_to_the_close() {
        let (client_side, server_side) = tokio::io::duplex(1 << 20);
        let endpoint = Endpoint::parse("ws://127.0.0.1:1/").unwrap();
        let server = tokio::spawn(async move {
            let (reader, mut writer, _) = accept(Box::new(server_side), 1 << 20, false).await.unwrap();
            let mut outbox = crate::outbox::Outbox::new(Default::default(), None);
            for i in 0..300u32 {
                outbox.push(&i.to_be_bytes()).unwrap();
            }
            outbox.push(&[b'x'; GATHER_BYTES]).unwrap();
            outbox.push(b"after").unwrap();
            let mut batch = outbox.take_batch().unwrap();
            while !batch.is_done() {
                writer.write(&[Frame::Ping(Bytes::from_static(b"p"))], Some(&mut batch)).await.unwrap();
            }
            writer.shutdown().await.unwrap();
            reader // kept open, so the client's answers to the pings and the close find a reader
        });
        let (mut reader, _writer, _) = handshake(Box::new(client_side), &endpoint, &options(), false).await.unwrap();
        let _server_reader = server.await.unwrap();
        let (mut batch, mut batches, mut data, mut pings, mut closed) = (FrameBatch::default(), 0, vec![], 0, false);
        let within = std::time::Duration::from_secs(10);
        while !closed {
            assert!(tokio::time::timeout(within, reader.read_batch(&mut batch)).await.unwrap().unwrap());
            batches += 1;
            for (kind, payload) in batch.iter() {
                assert!(!closed, "nothing after the close");
                match kind {
                    FrameType::Data => data.push(payload.to_vec()),
                    FrameType::Ping => pings += 1,
                    FrameType::Close => closed = true,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        let mut expected: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
        expected.push(vec![b'x'; GATHER_BYTES]);
        expected.push(b"after".to_vec());
        assert_eq!(data, expected);
        assert!(pings >= 1);
        assert!(batches < 20, "{batches} reads for {} messages", data.len());
    }
}
