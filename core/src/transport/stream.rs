//! A connection's byte stream (TCP, TLS over it, or what a dialer gave)
//! with one of the three framings, or with WebSocket frames once `ws.rs`
//! has made the opening handshake: one reader and one writer for every
//! stream transport, client and server.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::noop_waker_ref;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::{Direct, Reader, Stream, Writer, WRITE_CHUNK};
use crate::lock::lock;
use crate::outbox::Batch;
use crate::protocol::deflate::{Deflater, Inflater, MIN_COMPRESSED};
use crate::protocol::websocket::WsEncoder;
use crate::protocol::{Decoder, Encoder, Frame, FrameBatch, FrameError, Framing, ReadBuffer};

/// A connection's byte stream, before it is split into framed halves.
pub enum ByteStream {
    /// A TCP socket: its halves need no lock between them.
    Tcp(TcpStream),
    /// Anything else, TLS for instance.
    Other(Box<dyn Stream>),
}

/// Splits a connected stream into halves that speak `framing`; the client
/// and the server both frame their connections here.
pub fn frame(stream: ByteStream, framing: Framing, max_frame_size: usize) -> (Reader, Writer) {
    frame_with(stream, ReadBuffer::new(framing, max_frame_size), Encoder::Framed(framing), &[])
}

/// Splits a connected stream into halves that read with `frames` and write
/// with `encoder`; `already_read` is what came in before (after a
/// WebSocket handshake) and is read first.
pub fn frame_with(
    stream: ByteStream,
    mut frames: ReadBuffer,
    encoder: Encoder,
    already_read: &[u8],
) -> (Reader, Writer) {
    if !already_read.is_empty() {
        let (buf, room) = frames.read_space();
        buf.extend_from_slice(already_read);
        frames.record_read(already_read.len(), room);
    }
    let (read_half, write_half) = match stream {
        ByteStream::Tcp(stream) => {
            let (read_half, write_half) = stream.into_split();
            (ReadHalf::Tcp(read_half), WriteHalf::Tcp(Arc::new(write_half)))
        }
        ByteStream::Other(stream) => {
            let (read_half, write_half) = tokio::io::split(stream);
            (ReadHalf::Other(Box::new(read_half)), WriteHalf::Other(Arc::new(Mutex::new(Box::new(write_half)))))
        }
    };
    let reader = StreamReader { stream: read_half, frames, inflater: None };
    // The buffer grows only for control frames and payloads not framed by the outbox.
    let owed = matches!(encoder, Encoder::WebSocket(_)).then(Owed::default);
    let writer = StreamWriter { stream: write_half, encoder, buf: Vec::new(), owed, deflater: None };
    (Reader::Stream(reader), Writer::Stream(writer))
}

/// The receiving half of a connection's stream.
enum ReadHalf {
    /// A TCP socket: the reader waits for it to be readable before it makes
    /// room to read into, so an idle connection holds no read buffer.
    Tcp(OwnedReadHalf),
    /// TLS or any other stream.
    Other(Box<dyn AsyncRead + Send + Unpin>),
}

pub struct StreamReader {
    /// The receiving half: plain TCP or TLS.
    stream: ReadHalf,
    frames: ReadBuffer,
    /// WebSocket with permessage-deflate: inflates compressed messages.
    inflater: Option<Inflater>,
}

impl StreamReader {
    /// See [`super::Reader::read_batch`].
    pub async fn read_batch(&mut self, batch: &mut FrameBatch) -> Result<bool, FrameError> {
        loop {
            if self.frames.take_frames(batch)? {
                if !batch.compressed.is_empty() {
                    self.inflate(batch)?;
                }
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

impl StreamReader {
    /// From here on, compressed messages (permessage-deflate) are let
    /// through and inflated by `inflater`.
    pub fn inflate_with(&mut self, inflater: Inflater) {
        if let Decoder::WebSocket(decoder) = self.frames.decoder_mut() {
            decoder.accept_compressed();
        }
        self.inflater = Some(inflater);
    }

    /// Rebuilds `batch` with its compressed messages inflated: a new buffer
    /// holds every payload of the batch, in order.
    fn inflate(&mut self, batch: &mut FrameBatch) -> Result<(), FrameError> {
        let (Some(inflater), Decoder::WebSocket(decoder)) = (self.inflater.as_mut(), self.frames.decoder()) else {
            return Err(FrameError::Protocol("a compressed message with no extension agreed".into()));
        };
        let mut out = Vec::with_capacity(batch.chunk.len() * 2);
        let mut compressed = batch.compressed.iter().peekable();
        for (i, (kind, range)) in batch.frames.iter_mut().enumerate() {
            let start = out.len();
            match compressed.next_if(|(at, _)| *at == i) {
                Some(&(_, opcode)) => {
                    inflater.inflate(&batch.chunk[range.clone()], &mut out)?;
                    let (classified, skip) = decoder.classify(opcode, &out[start..])?;
                    *kind = classified;
                    *range = start + skip..out.len();
                }
                None => {
                    out.extend_from_slice(&batch.chunk[range.clone()]);
                    *range = start..out.len();
                }
            }
        }
        batch.compressed.clear();
        batch.chunk = bytes::Bytes::from(out);
        Ok(())
    }
}

/// The sending half of a TLS (or other) stream, shared with [`FramedDirect`]s.
/// The lock is held only inside one poll, never across a wait.
type SharedWrite = Arc<Mutex<Box<dyn AsyncWrite + Send + Unpin>>>;

/// The sending half of a connection's stream.
enum WriteHalf {
    /// A TCP socket, shared with [`FramedDirect`]s.
    Tcp(Arc<OwnedWriteHalf>),
    /// TLS or any other stream.
    Other(SharedWrite),
}

impl WriteHalf {
    /// Writes all of `bytes`; a TLS stream is flushed after, so nothing
    /// stays in its buffer when the socket was briefly full.
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
            WriteHalf::Other(stream) => {
                while !bytes.is_empty() {
                    let n = std::future::poll_fn(|cx| Pin::new(&mut **lock(stream)).poll_write(cx, bytes)).await?;
                    if n == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    bytes = &bytes[n..];
                }
                std::future::poll_fn(|cx| Pin::new(&mut **lock(stream)).poll_flush(cx)).await
            }
        }
    }

    /// Finishes what a direct write left in a TLS stream's buffer.
    async fn flush(&mut self) -> io::Result<()> {
        match self {
            WriteHalf::Tcp(_) => Ok(()),
            WriteHalf::Other(stream) => std::future::poll_fn(|cx| Pin::new(&mut **lock(stream)).poll_flush(cx)).await,
        }
    }
}

/// A connection's stream, for writes from the application's thread that
/// never wait: [`FramedDirect::try_write`] hands over what fits now.
/// Whoever holds one must take turns with the connection's writer
/// (`engine/sending.rs` arbitrates).
#[derive(Clone)]
pub enum FramedDirect {
    /// A plain TCP socket: what it takes is in the kernel.
    Tcp(Arc<OwnedWriteHalf>),
    /// TLS: what it takes may partly wait in its buffer for a flush.
    Shared(SharedWrite),
}

impl FramedDirect {
    /// Writes what the stream takes without waiting; `WouldBlock` if
    /// nothing fits (or a TLS stream's reader holds it just now). Also
    /// says whether all of it reached the socket; if not, the writer must
    /// flush before anything else is written.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<(usize, bool)> {
        match self {
            FramedDirect::Tcp(socket) => socket.try_write(bytes).map(|n| (n, true)),
            FramedDirect::Shared(stream) => {
                let Ok(mut stream) = stream.try_lock() else { return Err(io::ErrorKind::WouldBlock.into()) };
                let mut cx = Context::from_waker(noop_waker_ref());
                match Pin::new(&mut **stream).poll_write(&mut cx, bytes) {
                    Poll::Ready(Ok(n)) => {
                        let flushed = matches!(Pin::new(&mut **stream).poll_flush(&mut cx), Poll::Ready(Ok(())));
                        Ok((n, flushed))
                    }
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }
}

impl std::fmt::Debug for FramedDirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FramedDirect")
    }
}

/// Bytes a direct write encoded but the socket did not take at once: the
/// writer writes them before anything else (WebSocket, whose frames the
/// outbox does not hold encoded).
pub type Owed = Arc<Mutex<Vec<u8>>>;

/// Encoded bytes a writer keeps for reuse between writes; a larger buffer
/// is let go once its batch is written, so an idle connection holds little.
const KEEP_BUF: usize = 16 * 1024;

pub struct StreamWriter {
    /// The sending half: plain TCP or TLS.
    stream: WriteHalf,
    encoder: Encoder,
    /// Encoded bytes waiting to be written; reused between writes.
    buf: Vec<u8>,
    /// WebSocket: what direct writes left for this writer.
    owed: Option<Owed>,
    /// WebSocket with permessage-deflate: compresses messages (and its
    /// scratch buffer). Direct writes then take only messages too short to
    /// compress and stop at the first long one, which this writer compresses:
    /// one compressor sees every compressed message, in order.
    deflater: Option<(Deflater, Vec<u8>)>,
}

impl StreamWriter {
    /// From here on, messages are compressed (permessage-deflate) by `deflater`.
    pub fn deflate_with(&mut self, deflater: Deflater) {
        self.deflater = Some((deflater, Vec::new()));
    }

    /// See [`super::Writer::write`].
    pub async fn write(&mut self, control: &[Frame], mut batch: Option<&mut Batch>) -> io::Result<()> {
        self.flush_owed().await?;
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
            self.encoder.encode(kind, payload, &mut self.buf);
        }
        self.flush().await?;
        let Some(batch) = batch.filter(|b| !b.is_done()) else {
            self.release_large_buffer();
            return Ok(());
        };
        if let Some(framing) = batch.framing() {
            // Already framed by the outbox: hand a stretch of it to the socket as it is.
            debug_assert_eq!(Some(framing), self.encoder.framing(), "the outbox frames for this connection");
            let (count, bytes) = batch.next_chunk(WRITE_CHUNK);
            self.stream.write_all(bytes).await?;
            batch.mark_sent(count);
        } else {
            let mut encoded = 0;
            for (text, payload) in batch.iter_unsent_with_kind() {
                match (&mut self.deflater, self.encoder) {
                    (Some((deflater, scratch)), Encoder::WebSocket(encoder)) => {
                        encoder.encode_compressed(deflater, text, payload, scratch, &mut self.buf)
                    }
                    _ => self.encoder.encode_message(text, payload, &mut self.buf),
                }
                encoded += 1;
                if self.buf.len() >= WRITE_CHUNK {
                    break;
                }
            }
            self.flush().await?;
            batch.mark_sent(encoded);
            if batch.is_done() {
                self.release_large_buffer();
            }
        }
        Ok(())
    }

    /// Lets go of a buffer a large batch grew, once the batch is written.
    fn release_large_buffer(&mut self) {
        if self.buf.capacity() > KEEP_BUF {
            self.buf = Vec::new();
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.stream.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes what direct writes left unwritten (see [`Owed`]), and flushes
    /// what they left in a TLS stream's buffer.
    pub async fn flush_owed(&mut self) -> io::Result<()> {
        let pending = self.owed.as_ref().and_then(|owed| {
            let mut owed = lock(owed);
            (!owed.is_empty()).then(|| std::mem::take(&mut *owed))
        });
        let Some(mut pending) = pending else {
            // Nothing owed here, but a TLS stream may hold what a direct write handed it.
            return self.stream.flush().await;
        };
        // Flushes a TLS stream after it, too.
        self.stream.write_all(&pending).await?;
        pending.clear();
        if let Some(owed) = self.owed.as_ref().filter(|_| pending.capacity() <= KEEP_BUF) {
            let mut owed = lock(owed);
            if owed.is_empty() {
                *owed = pending;
            }
        }
        Ok(())
    }

    /// Whether the peer's close frame is to be answered with one (WebSocket).
    pub fn answers_close(&self) -> bool {
        matches!(self.encoder, Encoder::WebSocket(_))
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        match &mut self.stream {
            // Shared with a direct writer still: the socket's write side
            // shuts when the last handle goes.
            WriteHalf::Tcp(socket) => match Arc::get_mut(socket) {
                Some(socket) => socket.shutdown().await,
                None => Ok(()),
            },
            WriteHalf::Other(stream) => {
                std::future::poll_fn(|cx| Pin::new(&mut **lock(stream)).poll_shutdown(cx)).await
            }
        }
    }

    /// A handle for writes from other threads.
    pub fn direct(&self) -> Option<Direct> {
        let socket = match &self.stream {
            WriteHalf::Tcp(socket) => FramedDirect::Tcp(socket.clone()),
            WriteHalf::Other(stream) => FramedDirect::Shared(stream.clone()),
        };
        Some(match (self.encoder, &self.owed) {
            (Encoder::WebSocket(encoder), Some(owed)) => {
                let compressing = self.deflater.is_some();
                Direct::Ws(WsDirect { socket, encoder, owed: owed.clone(), compressing })
            }
            _ => Direct::Framed(socket),
        })
    }
}

/// Direct writes on a WebSocket connection: the application's messages
/// encoded as frames (masked with fresh keys on a client), handed to the
/// socket at once, and what it does not take left for the writer.
#[derive(Clone)]
pub struct WsDirect {
    socket: FramedDirect,
    encoder: WsEncoder,
    owed: Owed,
    /// permessage-deflate: messages long enough to compress are left for
    /// the connection's writer.
    compressing: bool,
}

impl std::fmt::Debug for WsDirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsDirect")
    }
}

impl WsDirect {
    /// Encodes the batch's unsent messages (about [`WRITE_CHUNK`] at most),
    /// marks them sent, and writes what the socket takes now; never waits.
    pub fn try_write(&self, batch: &mut Batch) -> super::DirectWrite {
        let mut owed = lock(&self.owed);
        let behind = !owed.is_empty();
        let mut encoded = 0;
        for (text, payload) in batch.iter_unsent_with_kind() {
            if self.compressing && payload.len() >= MIN_COMPRESSED {
                break;
            }
            self.encoder.encode_message(text, payload, &mut owed);
            encoded += 1;
            if owed.len() >= WRITE_CHUNK {
                break;
            }
        }
        batch.mark_sent(encoded);
        // Behind earlier bytes still owed, nothing may overtake them.
        let mut flushed = true;
        if !behind {
            if let Ok((n, all_out)) = self.socket.try_write(&owed) {
                flushed = all_out;
                drop(owed.drain(..n));
            }
        }
        if owed.is_empty() && owed.capacity() > KEEP_BUF {
            *owed = Vec::new();
        }
        super::DirectWrite { flush_owed: !owed.is_empty() || !flushed }
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
