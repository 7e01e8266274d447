//! WebSocket over TCP or TLS (`ws://`, `wss://`): the opening handshake
//! through tungstenite, then frames of our own (`protocol/websocket.rs`) on
//! the stream reader and writer every transport shares (`stream.rs`).
//!
//! tungstenite does the HTTP part, the client's request with its headers
//! and subprotocols and the checks of the server's answer, or the server's
//! side of it, over [`HeadersOnly`], which hands it the bytes up to the end
//! of the HTTP head and keeps whatever came after (a server may send its
//! first frames in the same packet) for the frame reader. From then on a
//! read cuts every frame it brought out of one buffer, as on TCP, and a
//! write encodes a chunk of the outbox's messages into one buffer.
//!
//! Messages map to frames: binary to data, text to text, and the WebSocket
//! ping, pong and close control frames to ours, so heartbeats, the close
//! handshake (code and reason) and the outbox work as on the other
//! transports; pings are answered by the session like longconn pings.
//!
//! When both sides agree on the subprotocol [`V2_SUBPROTOCOL`], binary
//! messages carry longconn frames instead (one frame each: its type byte,
//! then its payload), so the hello exchange, acknowledgements and resume of
//! protocol version 2 run over WebSocket too; pings, pongs and the close
//! handshake stay WebSocket's own.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{accept_hdr_async_with_config, client_async_with_config};

use super::stream::{self, ByteStream};
use super::{ConnectOptions, Reader, Writer};
use crate::endpoint::Endpoint;
use crate::protocol::deflate::{self, Deflater, Inflater};
use crate::protocol::websocket::{Role, WsEncoder};
use crate::protocol::{Decoder, Encoder, ReadBuffer};

/// The subprotocol under which binary messages carry longconn frames.
pub const V2_SUBPROTOCOL: &str = "longconn.v2";

/// The error [`handshake`] gives when it offered [`V2_SUBPROTOCOL`] and the
/// server chose no subprotocol: connect again without offering it.
pub fn declined_v2(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported && e.to_string().contains(V2_SUBPROTOCOL)
}

/// Performs the client's WebSocket handshake on a connected stream, with
/// the configured headers and subprotocols; returns the connection's
/// halves and whether it runs [`V2_SUBPROTOCOL`].
pub async fn handshake(
    mut stream: ByteStream,
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
    if options.ws_deflate {
        request.headers_mut().insert("sec-websocket-extensions", HeaderValue::from_static(deflate::OFFER));
    }
    let refused = |e| match e {
        WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(SubProtocolError::NoSubProtocol)) if offer_v2 => {
            io::Error::new(io::ErrorKind::Unsupported, format!("the server does not speak {V2_SUBPROTOCOL}"))
        }
        other => io_error(other),
    };
    let (after_head, response) = match &mut stream {
        ByteStream::Tcp(socket) => {
            let (ws, response) =
                client_async_with_config(request, HeadersOnly::new(socket), Some(config())).await.map_err(refused)?;
            (ws.into_inner().after_head, response)
        }
        ByteStream::Other(other) => {
            let (ws, response) =
                client_async_with_config(request, HeadersOnly::new(other), Some(config())).await.map_err(refused)?;
            (ws.into_inner().after_head, response)
        }
    };
    let v2 = response.headers().get("sec-websocket-protocol").is_some_and(|v| v == V2_SUBPROTOCOL);
    let answers: Vec<&str> =
        response.headers().get_all("sec-websocket-extensions").iter().filter_map(|v| v.to_str().ok()).collect();
    let agreed = match deflate::client_reads_answer(&answers) {
        Ok(Some(_)) if !options.ws_deflate => {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the server chose permessage-deflate, not offered"))
        }
        Ok(agreed) => agreed,
        Err(refused) => return Err(io::Error::new(io::ErrorKind::InvalidData, refused.to_string())),
    };
    let (mut reader, mut writer) = frames(stream, Role::Client, v2, options.max_frame_size, &after_head);
    if let (Some(agreed), Reader::Stream(reader), Writer::Stream(writer)) = (agreed, &mut reader, &mut writer) {
        reader.inflate_with(Inflater::new(agreed.server_no_context_takeover, options.max_frame_size));
        writer.deflate_with(Deflater::new(agreed.client_no_context_takeover));
    }
    Ok((reader, writer, v2))
}

/// Accepts a WebSocket handshake on a server's connection; with
/// `offer_v2`, chooses [`V2_SUBPROTOCOL`] when the client offers it.
/// Returns whether it did.
pub async fn accept(
    mut stream: ByteStream,
    max_frame_size: usize,
    offer_v2: bool,
) -> io::Result<(Reader, Writer, bool)> {
    let mut v2 = false;
    let mut agreed = None;
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
        let offers: Vec<&str> =
            request.headers().get_all("sec-websocket-extensions").iter().filter_map(|v| v.to_str().ok()).collect();
        if let Some((chosen, answer)) = deflate::server_answers(&offers) {
            if let Ok(answer) = HeaderValue::from_str(&answer) {
                response.headers_mut().insert("sec-websocket-extensions", answer);
                agreed = Some(chosen);
            }
        }
        Ok(response)
    };
    let after_head = match &mut stream {
        ByteStream::Tcp(socket) => {
            let ws = accept_hdr_async_with_config(HeadersOnly::new(socket), choose, Some(config()))
                .await
                .map_err(io_error)?;
            ws.into_inner().after_head
        }
        ByteStream::Other(other) => {
            let ws = accept_hdr_async_with_config(HeadersOnly::new(other), choose, Some(config()))
                .await
                .map_err(io_error)?;
            ws.into_inner().after_head
        }
    };
    let (mut reader, writer) = frames(stream, Role::Server, v2, max_frame_size, &after_head);
    if let (Some(agreed), Reader::Stream(reader)) = (agreed, &mut reader) {
        reader.inflate_with(Inflater::new(agreed.client_no_context_takeover, max_frame_size));
    }
    Ok((reader, writer, v2))
}

/// The connection's halves once the handshake is done.
fn frames(stream: ByteStream, role: Role, v2: bool, max_frame_size: usize, after_head: &[u8]) -> (Reader, Writer) {
    let decoder = ReadBuffer::with_decoder(Decoder::websocket(role, v2, max_frame_size));
    stream::frame_with(stream, decoder, Encoder::WebSocket(WsEncoder::new(role, v2)), after_head)
}

/// tungstenite's buffers, used for the handshake only.
fn config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// The end of an HTTP head.
const END_OF_HEAD: &[u8; 4] = b"\r\n\r\n";

/// A stream as tungstenite's handshake sees it: reads end with the HTTP
/// head (at the first empty line), and what the socket brought after it
/// stays in `after_head`, for the frame reader; writes pass through.
struct HeadersOnly<'a, S> {
    inner: &'a mut S,
    /// Read from `inner`, not yet handed out (after the head: kept).
    after_head: Vec<u8>,
    /// Bytes of [`END_OF_HEAD`] matched by what was handed out.
    matched: usize,
}

impl<'a, S> HeadersOnly<'a, S> {
    fn new(inner: &'a mut S) -> Self {
        HeadersOnly { inner, after_head: Vec::new(), matched: 0 }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadersOnly<'_, S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.matched == END_OF_HEAD.len() {
            // The head is complete: the handshake reads no further.
            return Poll::Ready(Ok(()));
        }
        if this.after_head.is_empty() {
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut *this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => this.after_head.extend_from_slice(read.filled()),
                other => return other,
            }
            if this.after_head.is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
        let mut handed = 0;
        while handed < this.after_head.len() && handed < out.remaining() && this.matched < END_OF_HEAD.len() {
            let byte = this.after_head[handed];
            handed += 1;
            this.matched =
                if byte == END_OF_HEAD[this.matched] { this.matched + 1 } else { usize::from(byte == b'\r') };
        }
        out.put_slice(&this.after_head[..handed]);
        this.after_head.drain(..handed);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadersOnly<'_, S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Frame, FrameBatch, FrameType};
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

    fn options() -> ConnectOptions {
        ConnectOptions { max_frame_size: 1 << 20, ..ConnectOptions::default() }
    }

    /// Reads until a close frame: every data payload, and the number of reads and pings.
    async fn read_until_close(reader: &mut Reader) -> (Vec<Vec<u8>>, usize, usize) {
        let (mut batch, mut batches, mut data, mut pings, mut closed) = (FrameBatch::default(), 0, vec![], 0, false);
        let within = std::time::Duration::from_secs(10);
        while !closed {
            assert!(tokio::time::timeout(within, reader.read_batch(&mut batch)).await.unwrap().unwrap());
            batches += 1;
            for (kind, payload) in batch.iter() {
                assert!(!closed, "nothing after the close");
                match kind {
                    FrameType::Data | FrameType::Text => data.push(payload.to_vec()),
                    FrameType::Ping => pings += 1,
                    FrameType::Close => closed = true,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        (data, batches, pings)
    }

    #[tokio::test]
    async fn a_read_hands_on_every_buffered_message_as_one_batch_in_order_up_to_the_close() {
        let (client_side, server_side) = tokio::io::duplex(1 << 20);
        let endpoint = Endpoint::parse("ws://127.0.0.1:1/").unwrap();
        let server = tokio::spawn(async move {
            let (reader, mut writer, _) =
                accept(ByteStream::Other(Box::new(server_side)), 1 << 20, false).await.unwrap();
            let mut outbox = crate::outbox::Outbox::new(Default::default(), None);
            for i in 0..300u32 {
                outbox.push(&i.to_be_bytes()).unwrap();
            }
            outbox.push(&[b'x'; 70_000]).unwrap();
            outbox.push(b"after").unwrap();
            let mut batch = outbox.take_batch().unwrap();
            while !batch.is_done() {
                writer.write(&[Frame::Ping(Bytes::from_static(b"p"))], Some(&mut batch)).await.unwrap();
            }
            writer.write(&[Frame::Close(Bytes::from_static(b"\x03\xe8"))], None).await.unwrap();
            reader // kept open, so the client's answers find a reader
        });
        let stream = ByteStream::Other(Box::new(client_side));
        let (mut reader, _writer, _) = handshake(stream, &endpoint, &options(), false).await.unwrap();
        let _server_reader = server.await.unwrap();
        let (data, batches, pings) = read_until_close(&mut reader).await;
        let mut expected: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
        expected.push(vec![b'x'; 70_000]);
        expected.push(b"after".to_vec());
        assert_eq!(data, expected);
        assert!(pings >= 1);
        assert!(batches < 20, "{batches} reads for {} messages", data.len());
    }

    #[tokio::test]
    async fn frames_sent_with_the_handshake_answer_are_read_and_client_frames_are_masked() {
        let (client_side, mut server_side) = tokio::io::duplex(1 << 16);
        let endpoint = Endpoint::parse("ws://127.0.0.1:1/chat").unwrap();
        let server = tokio::spawn(async move {
            let mut request = Vec::new();
            while !request.ends_with(END_OF_HEAD) {
                request.push(server_side.read_u8().await.unwrap());
            }
            let request = String::from_utf8(request).unwrap();
            let key = request
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: ").or_else(|| l.strip_prefix("sec-websocket-key: ")))
                .unwrap()
                .trim()
                .to_owned();
            // The answer and two messages in one write.
            let mut answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            )
            .into_bytes();
            WsEncoder::new(Role::Server, false).encode(FrameType::Text, b"welcome", &mut answer);
            WsEncoder::new(Role::Server, false).encode(FrameType::Close, b"\x03\xe8", &mut answer);
            server_side.write_all(&answer).await.unwrap();
            let mut frame = [0u8; 2 + 4 + 5];
            server_side.read_exact(&mut frame).await.unwrap();
            frame
        });
        let stream = ByteStream::Other(Box::new(client_side));
        let (mut reader, mut writer, v2) = handshake(stream, &endpoint, &options(), false).await.unwrap();
        assert!(!v2);
        let (data, _, _) = read_until_close(&mut reader).await;
        assert_eq!(data, vec![b"welcome".to_vec()]);
        writer.write(&[Frame::Data(Bytes::from_static(b"hello"))], None).await.unwrap();
        let frame = server.await.unwrap();
        assert_eq!(frame[..2], [0x82, 0x85], "a masked binary frame of 5 bytes");
        let mut payload = frame[6..].to_vec();
        crate::protocol::websocket::apply_mask(&mut payload, frame[2..6].try_into().unwrap());
        assert_eq!(payload, b"hello");
    }
}
