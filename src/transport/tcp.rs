//! TCP: plain sockets with one of the three framings.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{lookup_host, TcpStream};

use super::{ConnectOptions, Connection, FrameBatch, Reader, Writer};
use crate::codec::{Codec, CodecError, Frame, Framing, Peeked};
use crate::endpoint::Endpoint;
use crate::outbox::Batch;

/// Largest read asked of the socket at once; frames larger than this grow
/// the buffer as needed, up to the maximum frame size.
const READ_CHUNK: usize = 64 * 1024;
/// Smallest read: a quiet connection holds a small buffer, and reads double
/// towards [`READ_CHUNK`] while each one fills what it was given.
const READ_MIN: usize = 4 * 1024;
/// Bytes collected before a write is issued in the middle of a batch.
const WRITE_CHUNK: usize = 256 * 1024;
/// Frames decoded per call before handing them on, to bound latency.
const MAX_FRAMES_PER_READ: usize = 1024;

/// Connects and frames the connection in `framing`.
pub async fn connect(endpoint: &Endpoint, framing: Framing, options: &ConnectOptions) -> io::Result<Connection> {
    let (stream, peer) = connect_stream(&endpoint.host, endpoint.port).await?;
    let (reader, writer) = match &options.tls {
        Some(tls) => split_io(tls.connect(stream, &endpoint.host).await?, framing, options.max_frame_size),
        None => split(stream, framing, options.max_frame_size),
    };
    Ok(Connection { reader: Reader::Tcp(reader), writer: Writer::Tcp(writer), peer: peer.to_string() })
}

/// Resolves the host (on every call) and tries each address in turn.
pub async fn connect_stream(host: &str, port: u16) -> io::Result<(TcpStream, SocketAddr)> {
    let addrs: Vec<_> = lookup_host((host, port)).await?.collect();
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "host name resolved to no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok((stream, addr));
            }
            Err(e) => last_error = io::Error::new(e.kind(), format!("{addr}: {e}")),
        }
    }
    Err(last_error)
}

/// Splits a connected TCP stream into framed halves (the test server uses this too).
pub fn split(stream: TcpStream, framing: Framing, max_frame_size: usize) -> (TcpReader, TcpWriter) {
    let (read_half, write_half) = stream.into_split();
    framed(Box::new(read_half), Box::new(write_half), framing, max_frame_size)
}

/// Splits any stream (a TLS stream, say) into framed halves.
pub fn split_io<S>(stream: S, framing: Framing, max_frame_size: usize) -> (TcpReader, TcpWriter)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read_half, write_half) = tokio::io::split(stream);
    framed(Box::new(read_half), Box::new(write_half), framing, max_frame_size)
}

fn framed(
    read_half: Box<dyn AsyncRead + Send + Unpin>,
    write_half: Box<dyn AsyncWrite + Send + Unpin>,
    framing: Framing,
    max_frame_size: usize,
) -> (TcpReader, TcpWriter) {
    (
        TcpReader {
            stream: read_half,
            codec: Codec::new(framing, max_frame_size),
            buf: BytesMut::new(),
            read_size: READ_MIN,
            deferred_error: None,
        },
        TcpWriter {
            stream: write_half,
            framing,
            codec: Codec::new(framing, max_frame_size),
            // Grows only for control frames and payloads not framed by the outbox.
            buf: BytesMut::new(),
        },
    )
}

pub struct TcpReader {
    /// The receiving half: plain TCP or TLS.
    stream: Box<dyn AsyncRead + Send + Unpin>,
    codec: Codec,
    /// Bytes read but not yet decoded.
    buf: BytesMut,
    /// Room to make for the next read: doubles while reads fill it, halves
    /// while they use less than a quarter, between READ_MIN and READ_CHUNK.
    read_size: usize,
    /// A decoding error met after good frames; reported on the next call so
    /// the frames before it are delivered first.
    deferred_error: Option<CodecError>,
}

impl TcpReader {
    /// See [`super::Reader::read_batch`].
    pub async fn read_batch(&mut self, batch: &mut FrameBatch) -> Result<bool, CodecError> {
        batch.clear();
        if let Some(e) = self.deferred_error.take() {
            return Err(e);
        }
        loop {
            let mut offset = 0;
            let mut needed = 0;
            let mut error = None;
            while batch.frames.len() < MAX_FRAMES_PER_READ {
                match self.codec.peek(&self.buf[offset..]) {
                    Ok(Peeked::Complete(head)) => {
                        let payload = offset + head.payload.start..offset + head.payload.end;
                        batch.frames.push((head.kind, payload));
                        offset += head.len;
                    }
                    Ok(Peeked::Partial { needed: n }) => {
                        needed = offset + n;
                        break;
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            if offset > 0 {
                // Frames before a bad one are delivered; the error comes on the next call.
                self.deferred_error = error;
                batch.chunk = self.buf.split_to(offset).freeze();
                return Ok(true);
            }
            if let Some(e) = error {
                return Err(e);
            }
            // `needed` passed the size check, so growing to it is bounded.
            self.buf.reserve(needed.saturating_sub(self.buf.len()).max(self.read_size));
            let room = self.buf.capacity() - self.buf.len();
            let read = self.stream.read_buf(&mut self.buf).await?;
            if read == 0 {
                return match self.buf.len() {
                    0 => Ok(false),
                    buffered => Err(CodecError::TruncatedFrame { buffered }),
                };
            }
            self.read_size = if read == room {
                (self.read_size * 2).min(READ_CHUNK)
            } else if read < self.read_size / 4 {
                (self.read_size / 2).max(READ_MIN)
            } else {
                self.read_size
            };
        }
    }
}

pub struct TcpWriter {
    /// The sending half: plain TCP or TLS.
    stream: Box<dyn AsyncWrite + Send + Unpin>,
    framing: Framing,
    codec: Codec,
    /// Encoded bytes waiting to be written; reused between writes.
    buf: BytesMut,
}

impl TcpWriter {
    pub async fn write(&mut self, control: &[Frame], batch: Option<&mut Batch>) -> io::Result<()> {
        self.buf.clear();
        for frame in control {
            self.codec.encode(frame, &mut self.buf);
        }
        self.flush().await?;
        let Some(batch) = batch.filter(|b| !b.is_done()) else {
            return Ok(());
        };
        if let Some(framing) = batch.framing() {
            // Already framed by the outbox: hand a stretch of it to the socket as it is.
            debug_assert_eq!(framing, self.framing, "the outbox frames for this connection");
            let (count, bytes) = batch.next_chunk(WRITE_CHUNK);
            self.stream.write_all(bytes).await?;
            batch.mark_sent(count);
        } else {
            let mut encoded = 0;
            for payload in batch.iter_unsent() {
                self.codec.encode_data(payload, &mut self.buf);
                encoded += 1;
                if self.buf.len() >= WRITE_CHUNK {
                    break;
                }
            }
            self.flush().await?;
            batch.mark_sent(encoded);
        }
        Ok(())
    }

    /// Writes bytes already encoded, for example with [`TcpWriter::codec`].
    pub async fn write_encoded(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The codec this writer encodes with.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.stream.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }
}
