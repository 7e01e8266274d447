//! TCP: plain sockets with one of the three framings.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{lookup_host, TcpStream};
use tokio_util::codec::Decoder;

use super::{ConnectOptions, Connection, Reader, Writer};
use crate::codec::{Codec, CodecError, Frame, Framing};
use crate::endpoint::Endpoint;
use crate::outbox::Batch;

/// Read buffer growth step; frames larger than this grow it as needed, up to the maximum frame size.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes collected before a write is issued in the middle of a batch.
const WRITE_CHUNK: usize = 256 * 1024;
/// Frames decoded per call before handing them on, to bound latency.
const MAX_FRAMES_PER_READ: usize = 1024;

/// Resolves the host (every call) and tries each address in turn.
pub async fn connect(endpoint: &Endpoint, options: &ConnectOptions) -> io::Result<Connection> {
    let addrs: Vec<_> = lookup_host((endpoint.host.as_str(), endpoint.port))
        .await?
        .collect();
    let mut last_error =
        io::Error::new(io::ErrorKind::NotFound, "host name resolved to no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                let (reader, writer) = split(stream, endpoint.framing, options.max_frame_size);
                return Ok(Connection {
                    reader: Reader::Tcp(reader),
                    writer: Writer::Tcp(writer),
                    peer: addr.to_string(),
                });
            }
            Err(e) => last_error = io::Error::new(e.kind(), format!("{addr}: {e}")),
        }
    }
    Err(last_error)
}

/// Splits a connected stream into framed halves (the test server uses this too).
pub fn split(stream: TcpStream, framing: Framing, max_frame_size: usize) -> (TcpReader, TcpWriter) {
    let (read_half, write_half) = stream.into_split();
    (
        TcpReader {
            stream: read_half,
            codec: Codec::new(framing, max_frame_size),
            buf: BytesMut::with_capacity(READ_CHUNK),
            deferred_error: None,
        },
        TcpWriter {
            stream: write_half,
            codec: Codec::new(framing, max_frame_size),
            buf: BytesMut::with_capacity(WRITE_CHUNK),
        },
    )
}

pub struct TcpReader {
    stream: OwnedReadHalf,
    codec: Codec,
    /// Bytes read but not yet decoded.
    buf: BytesMut,
    /// A decoding error met after good frames; reported on the next call so
    /// the frames before it are delivered first.
    deferred_error: Option<CodecError>,
}

impl TcpReader {
    pub async fn read_frames(&mut self, out: &mut Vec<Frame>) -> Result<bool, CodecError> {
        if let Some(e) = self.deferred_error.take() {
            return Err(e);
        }
        loop {
            let before = out.len();
            while out.len() - before < MAX_FRAMES_PER_READ {
                match self.codec.decode(&mut self.buf) {
                    Ok(Some(frame)) => out.push(frame),
                    Ok(None) => break,
                    Err(e) if out.len() > before => {
                        self.deferred_error = Some(e);
                        return Ok(true);
                    }
                    Err(e) => return Err(e),
                }
            }
            if out.len() > before {
                return Ok(true);
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return match self.codec.decode_eof(&mut self.buf)? {
                    Some(frame) => {
                        out.push(frame);
                        Ok(true)
                    }
                    None => Ok(false),
                };
            }
        }
    }
}

pub struct TcpWriter {
    stream: OwnedWriteHalf,
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
        let Some(batch) = batch else {
            return self.flush().await;
        };
        loop {
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
            if batch.is_done() {
                return Ok(());
            }
        }
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
