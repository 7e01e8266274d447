//! TCP (or TLS over it) with one of the three framings.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{lookup_host, TcpStream};

use super::{Reader, Stream, Writer, WRITE_CHUNK};
use crate::outbox::Batch;
use crate::protocol::{Frame, FrameBatch, FrameError, Framing, ReadBuffer};

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

/// A connection's byte stream, before it is split into framed halves.
pub enum ByteStream {
    /// A TCP socket: its halves need no lock between them.
    Tcp(TcpStream),
    /// Anything else, TLS for instance.
    Other(Box<dyn Stream>),
}

impl ByteStream {
    /// The stream as a trait object, for transports that take any stream (WebSocket).
    pub fn boxed(self) -> Box<dyn Stream> {
        match self {
            ByteStream::Tcp(stream) => Box::new(stream),
            ByteStream::Other(stream) => stream,
        }
    }
}

/// Splits a connected stream into halves that speak `framing`; the client
/// and the server both frame their connections here.
pub fn frame(stream: ByteStream, framing: Framing, max_frame_size: usize) -> (Reader, Writer) {
    let (read_half, write_half) = match stream {
        ByteStream::Tcp(stream) => {
            let (read_half, write_half) = stream.into_split();
            (ReadHalf::Tcp(read_half), WriteHalf::Tcp(Arc::new(write_half)))
        }
        ByteStream::Other(stream) => {
            let (read_half, write_half) = tokio::io::split(stream);
            (ReadHalf::Other(Box::new(read_half)), WriteHalf::Other(Box::new(write_half)))
        }
    };
    let reader = TcpReader { stream: read_half, frames: ReadBuffer::new(framing, max_frame_size) };
    // The buffer grows only for control frames and payloads not framed by the outbox.
    let writer = TcpWriter { stream: write_half, framing, buf: Vec::new() };
    (Reader::Tcp(reader), Writer::Tcp(writer))
}

/// The receiving half of a connection's stream.
enum ReadHalf {
    /// A TCP socket: the reader waits for it to be readable before it makes
    /// room to read into, so an idle connection holds no read buffer.
    Tcp(OwnedReadHalf),
    /// TLS or any other stream.
    Other(Box<dyn AsyncRead + Send + Unpin>),
}

pub struct TcpReader {
    /// The receiving half: plain TCP or TLS.
    stream: ReadHalf,
    frames: ReadBuffer,
}

impl TcpReader {
    /// See [`super::Reader::read_batch`].
    pub async fn read_batch(&mut self, batch: &mut FrameBatch) -> Result<bool, FrameError> {
        loop {
            if self.frames.take_frames(batch)? {
                return Ok(true);
            }
            let read = match &mut self.stream {
                ReadHalf::Tcp(socket) => {
                    self.frames.release_if_empty();
                    socket.readable().await?;
                    // `read_buf` rather than `try_read_buf`: a read that does
                    // not fill the buffer tells tokio the socket is drained,
                    // which saves the next read its `EAGAIN`.
                    let (buf, room) = self.frames.read_space();
                    (socket.read_buf(buf).await?, room)
                }
                ReadHalf::Other(stream) => {
                    let (buf, room) = self.frames.read_space();
                    (stream.read_buf(buf).await?, room)
                }
            };
            let (read, room) = read;
            if read == 0 {
                return self.frames.end_of_stream().map(|()| false);
            }
            self.frames.record_read(read, room);
        }
    }
}

/// The sending half of a connection's stream.
enum WriteHalf {
    /// A TCP socket, shared with [`DirectWriter`]s.
    Tcp(Arc<OwnedWriteHalf>),
    /// TLS or any other stream.
    Other(Box<dyn AsyncWrite + Send + Unpin>),
}

impl WriteHalf {
    async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        match self {
            WriteHalf::Tcp(socket) => {
                while !bytes.is_empty() {
                    match socket.try_write(bytes) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => bytes = &bytes[n..],
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            WriteHalf::Other(stream) => stream.write_all(bytes).await,
        }
    }
}

/// A plain TCP connection's socket, for writes from the application's
/// thread that never wait: [`DirectWriter::try_write`] hands the kernel what
/// fits now. Whoever holds one must take turns with the connection's writer
/// (`engine/sending.rs` arbitrates).
#[derive(Clone)]
pub struct DirectWriter(Arc<OwnedWriteHalf>);

impl DirectWriter {
    /// Writes what the socket takes without waiting; `WouldBlock` if nothing fits.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        self.0.try_write(bytes)
    }
}

impl std::fmt::Debug for DirectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectWriter")
    }
}

pub struct TcpWriter {
    /// The sending half: plain TCP or TLS.
    stream: WriteHalf,
    framing: Framing,
    /// Encoded bytes waiting to be written; reused between writes.
    buf: Vec<u8>,
}

impl TcpWriter {
    /// See [`super::Writer::write`].
    pub async fn write(&mut self, control: &[Frame], mut batch: Option<&mut Batch>) -> io::Result<()> {
        // A direct write that stopped inside a message: its rest goes first.
        if let Some(batch) = batch.as_deref_mut() {
            if let Some(rest) = batch.unfinished_message() {
                self.stream.write_all(rest).await?;
                batch.mark_sent(1);
            }
        }
        self.buf.clear();
        for frame in control {
            let (kind, payload) = frame.parts();
            self.framing.encode(kind, payload, &mut self.buf);
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
                self.framing.encode_data(payload, &mut self.buf);
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

    async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.stream.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        match &mut self.stream {
            // Shared with a direct writer still: the socket's write side
            // shuts when the last handle goes.
            WriteHalf::Tcp(socket) => match Arc::get_mut(socket) {
                Some(socket) => socket.shutdown().await,
                None => Ok(()),
            },
            WriteHalf::Other(stream) => stream.shutdown().await,
        }
    }

    /// A handle for writes from other threads, on plain TCP only.
    pub fn direct(&self) -> Option<DirectWriter> {
        match &self.stream {
            WriteHalf::Tcp(socket) => Some(DirectWriter(socket.clone())),
            WriteHalf::Other(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::ReadBuf;

    /// A stream that hands out its bytes `chunk` at a time, then ends.
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        chunk: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let n = self.chunk.min(self.bytes.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.bytes[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn the_socket_reader_delivers_every_frame_of_a_trickled_stream_then_ends_cleanly() {
        let mut wire = Vec::new();
        for i in 0..100u32 {
            Framing::Longconn.encode_data(&i.to_be_bytes(), &mut wire);
        }
        for chunk in [1, 3, 4096] {
            let stream = Trickle { bytes: wire.clone(), at: 0, chunk };
            let (mut reader, _) = frame(ByteStream::Other(Box::new(stream)), Framing::Longconn, 64);
            let (mut batch, mut got) = (FrameBatch::default(), Vec::new());
            while reader.read_batch(&mut batch).await.unwrap() {
                got.extend(batch.iter().map(|(_, p)| u32::from_be_bytes(p.try_into().unwrap())));
            }
            assert_eq!(got, (0..100).collect::<Vec<_>>(), "chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn the_socket_reader_reports_a_stream_cut_inside_a_frame() {
        let mut wire = Vec::new();
        Framing::Length.encode_data(b"whole", &mut wire);
        Framing::Length.encode_data(b"cut", &mut wire);
        wire.pop();
        let (mut reader, _) =
            frame(ByteStream::Other(Box::new(Trickle { bytes: wire, at: 0, chunk: 2 })), Framing::Length, 64);
        let mut batch = FrameBatch::default();
        assert!(reader.read_batch(&mut batch).await.unwrap());
        assert!(matches!(reader.read_batch(&mut batch).await, Err(FrameError::TruncatedFrame { buffered: 6 })));
    }
}
