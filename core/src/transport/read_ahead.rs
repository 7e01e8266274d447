//! Large reads under a reader that asks for small ones.
//!
//! tungstenite reads its socket `read_buffer_size` bytes at a time into a
//! buffer of that size made up front. A small size keeps idle WebSocket
//! connections small (4 KiB, `ws.rs`) but makes a burst of small messages
//! cost a system call per 4 KiB. [`ReadAhead`] sits between the two: when
//! asked for less than [`READ_AHEAD`], it reads up to [`READ_AHEAD`] from
//! the stream into a buffer of its own and hands that out from memory. The
//! buffer exists only while it holds bytes or a read into it is under way:
//! a read that finds nothing frees it, so an idle connection holds none.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How much one read from the stream asks for.
pub const READ_AHEAD: usize = 64 * 1024;

pub struct ReadAhead<S> {
    inner: S,
    /// Bytes read from `inner` and not yet handed out.
    buf: BytesMut,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> ReadAhead<S> {
        ReadAhead { inner, buf: BytesMut::new() }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            if out.remaining() >= READ_AHEAD {
                // Large enough already: no copy.
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            this.buf.reserve(READ_AHEAD);
            let polled = pin!(this.inner.read_buf(&mut this.buf)).poll(cx);
            match polled {
                Poll::Ready(Ok(read)) if read > 0 => {}
                // Nothing came (pending, end of stream or an error): hold no buffer.
                other => {
                    this.buf = BytesMut::new();
                    return other.map_ok(drop);
                }
            }
        }
        let n = this.buf.len().min(out.remaining());
        out.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        if this.buf.is_empty() {
            this.buf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_are_served_from_one_large_read_and_nothing_is_held_after() {
        let (mut far, near) = tokio::io::duplex(4 * READ_AHEAD);
        let data: Vec<u8> = (0..3 * READ_AHEAD / 2).map(|i| (i % 251) as u8).collect();
        far.write_all(&data).await.unwrap();
        let mut reader = ReadAhead::new(near);
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        let n = reader.read(&mut small).await.unwrap();
        got.extend_from_slice(&small[..n]);
        assert_eq!(n, 4096);
        assert!(reader.buf.len() >= READ_AHEAD - 4096, "one read of READ_AHEAD, the rest held");
        while got.len() < data.len() {
            let n = reader.read(&mut small).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, data, "every byte once, in order");
        assert_eq!(reader.buf.capacity(), 0, "drained: no buffer held");
        drop(far);
        assert_eq!(reader.read(&mut small).await.unwrap(), 0, "end of stream");
        assert_eq!(reader.buf.capacity(), 0);
    }

    #[tokio::test]
    async fn a_read_that_finds_nothing_holds_no_buffer_and_writes_pass_through() {
        let (mut far, near) = tokio::io::duplex(1024);
        let mut ahead = ReadAhead::new(near);
        let mut small = [0u8; 16];
        let pending = futures_util::FutureExt::now_or_never(ahead.read(&mut small));
        assert!(pending.is_none(), "nothing to read yet");
        assert_eq!(ahead.buf.capacity(), 0);
        ahead.write_all(b"ping").await.unwrap();
        let mut back = [0u8; 4];
        far.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ping");
    }
}
