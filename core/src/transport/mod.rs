//! Byte transports under the framing: how a connection is opened, read and
//! written, on the client's side ([`connect`]) and the server's
//! ([`stream::frame`], [`ws::accept`]).
//!
//! The session sees only [`Reader`] and [`Writer`]; each transport adds a
//! variant, so new transports do not touch session, heartbeat or outbox
//! logic. WebSocket needs none of its own: after the handshake (`ws.rs`) its
//! frames run through the stream reader and writer of `stream.rs`.

pub mod dial;
pub mod http;
pub mod proxy;
pub mod stream;
pub mod tls;
pub mod ws;

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::endpoint::{Endpoint, Scheme};
use crate::outbox::Batch;
use crate::protocol::{Frame, FrameBatch, FrameError};

/// Payload bytes handed to the socket per write call in the middle of a
/// batch: the writer records progress (and frees outbox room) after each,
/// and control frames never wait behind more than this.
pub const WRITE_CHUNK: usize = 256 * 1024;

/// A byte stream a connection runs on: plain TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

#[derive(Default)]
pub struct ConnectOptions {
    pub max_frame_size: usize,
    /// Extra request headers for the WebSocket handshake (name, value).
    pub headers: Vec<(String, String)>,
    /// WebSocket subprotocols to offer, most preferred first.
    pub subprotocols: Vec<String>,
    /// WebSocket: offer [`ws::V2_SUBPROTOCOL`] (when no subprotocol of the
    /// application's is configured), and connect again without it if the
    /// server chooses none.
    pub offer_v2: bool,
    /// Reaches the byte stream instead of dialing TCP (see [`dial`]).
    pub dialer: Option<dial::CustomDialer>,
    /// HTTP: what the session carries between connections (the last event
    /// id, the server's retry, the sender's key).
    pub sse: Option<http::SharedProgress>,
    /// HTTP: where messages are POSTed (the stream's URL if `None`).
    pub http_send_to: Option<Endpoint>,
    /// WebSocket: offer permessage-deflate (compressed messages from the
    /// server are then inflated; ours go uncompressed).
    pub ws_deflate: bool,
}

/// The receiving half of a connection.
pub enum Reader {
    /// A byte stream (TCP, TLS over it, or a dialer's) in a framing or
    /// with WebSocket frames.
    Stream(stream::StreamReader),
    /// An HTTP response body.
    Http(Box<http::HttpReader>),
}

/// The sending half of a connection.
pub enum Writer {
    /// A byte stream (TCP, TLS over it, or a dialer's) in a framing or
    /// with WebSocket frames.
    Stream(stream::StreamWriter),
    /// An HTTP long connection's sending side: a POST per message
    /// ([`http::PostWriter`]). Pings are dropped (the heartbeat timeout
    /// still notices a dead stream).
    Http(Box<http::PostWriter>),
}

/// Writes from another thread than the connection's writer, which never
/// wait: they hand over what the transport takes at once. Whoever holds
/// one must take turns with the writer (`engine/sending.rs` arbitrates).
#[derive(Clone, Debug)]
pub enum Direct {
    /// A framing's bytes (the outbox holds them encoded), on TCP or TLS.
    Framed(stream::FramedDirect),
    /// WebSocket frames, encoded as they are written.
    Ws(stream::WsDirect),
}

/// What a [`Direct::write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectWrite {
    /// Something was handed over but not yet flushed to the socket: the
    /// writer must flush before anything else is written.
    pub flush_owed: bool,
}

impl Direct {
    /// Hands as much of `batch` as goes at once to the transport, marking
    /// in the batch what was handed over. Errors are left for the writer
    /// to meet on its own next write.
    pub fn write(&self, batch: &mut Batch) -> DirectWrite {
        match self {
            Direct::Framed(socket) => {
                let mut flush_owed = false;
                if batch.framing().is_some() {
                    let (_, bytes) = batch.next_chunk(WRITE_CHUNK);
                    if let Ok((written, all_out)) = socket.try_write(bytes) {
                        batch.record_written(written);
                        flush_owed = !all_out;
                    }
                }
                DirectWrite { flush_owed }
            }
            Direct::Ws(ws) => ws.try_write(batch),
        }
    }
}

/// An open connection and a description of the peer for events and logs.
pub struct Connection {
    pub reader: Reader,
    pub writer: Writer,
    pub peer: String,
    /// It carries longconn frames: the longconn framing, or WebSocket with
    /// [`ws::V2_SUBPROTOCOL`]; the hello exchange comes next.
    pub longconn_frames: bool,
    /// WebSocket: the server chose no subprotocol when offered
    /// [`ws::V2_SUBPROTOCOL`] (this connection was made without offering it).
    pub declined_v2: bool,
}

/// One server a client may connect to: where it is, the TLS connector made
/// for it (`tls://` and `wss://`), and the proxy it is reached through.
#[derive(Clone)]
pub struct Target {
    pub endpoint: Endpoint,
    pub tls: Option<tls::Tls>,
    pub via: Option<proxy::Via>,
}

impl Target {
    /// Builds the server's TLS connector if its scheme needs one, and the
    /// proxy's if it is an `https://` proxy.
    pub fn new(
        endpoint: Endpoint,
        settings: &tls::TlsSettings,
        proxy: Option<proxy::Proxy>,
    ) -> Result<Target, crate::error::Error> {
        let tls = if endpoint.scheme.is_tls() { Some(tls::Tls::new(settings)?) } else { None };
        let via = proxy.map(|proxy| proxy::Via::new(proxy, settings)).transpose()?;
        Ok(Target { endpoint, tls, via })
    }
}

/// Opens a connection to `target`, one stage after another: dial (the host
/// name resolved anew, [`dial`]), TLS if the target has it, then the
/// WebSocket handshake or nothing, then the framing.
pub async fn connect(target: &Target, options: &ConnectOptions) -> io::Result<Connection> {
    let endpoint = &target.endpoint;
    let (stream, peer) = open_stream(target, options).await?;
    let (reader, writer, longconn_frames, declined_v2) = match (endpoint.scheme, endpoint.framing) {
        (Scheme::Tcp | Scheme::Tls, Some(framing)) => {
            let (reader, writer) = stream::frame(stream, framing, options.max_frame_size);
            (reader, writer, framing == crate::protocol::Framing::Longconn, false)
        }
        (Scheme::Tcp | Scheme::Tls, None) => unreachable!("the URL parser gives every tcp URL a framing"),
        (Scheme::Http | Scheme::Https, _) => {
            let progress = options.sse.clone().unwrap_or_default();
            let mut endpoint = endpoint.clone();
            let mut stream = stream;
            let mut redirects = 0;
            loop {
                match http::request(stream, &endpoint, options, &progress).await? {
                    http::Answer::Stream(reader) => {
                        let url = options.http_send_to.clone().unwrap_or_else(|| target.endpoint.clone());
                        let writer = http::PostWriter::new(target.clone(), url, options, &progress);
                        break (reader, Writer::Http(Box::new(writer)), false, false);
                    }
                    http::Answer::Redirect(_) if redirects == http::MAX_REDIRECTS => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("more than {} redirects from {}", http::MAX_REDIRECTS, target.endpoint),
                        ));
                    }
                    http::Answer::Redirect(location) => {
                        redirects += 1;
                        endpoint = http::redirected(&endpoint, &location)?;
                        stream = open_stream_to(target, &endpoint, options).await?.0;
                    }
                }
            }
        }
        (Scheme::Ws | Scheme::Wss, _) => match ws::handshake(stream, endpoint, options, options.offer_v2).await {
            Ok((reader, writer, v2)) => (reader, writer, v2, false),
            Err(e) if ws::declined_v2(&e) => {
                let (stream, _) = open_stream(target, options).await?;
                let (reader, writer, _) = ws::handshake(stream, endpoint, options, false).await?;
                (reader, writer, false, true)
            }
            Err(e) => return Err(e),
        },
    };
    Ok(Connection { reader, writer, peer, longconn_frames, declined_v2 })
}

/// The byte stream under a connection: the dial stage, then the TLS stage.
async fn open_stream(target: &Target, options: &ConnectOptions) -> io::Result<(stream::ByteStream, String)> {
    open_stream_to(target, &target.endpoint, options).await
}

/// The same to `endpoint` (a redirect's), with `target`'s route and connector.
pub(crate) async fn open_stream_to(
    target: &Target,
    endpoint: &Endpoint,
    options: &ConnectOptions,
) -> io::Result<(stream::ByteStream, String)> {
    let route = match (&options.dialer, &target.via) {
        (Some(dialer), _) => dial::Route::Custom(dialer),
        (None, Some(via)) => dial::Route::Proxy(via),
        (None, None) => dial::Route::Direct,
    };
    let (stream, peer) = dial::open(route, &endpoint.host, endpoint.port).await?;
    Ok((tls_stage(target, &endpoint.host, stream).await?, peer))
}

/// TLS over the dialed stream when the target has a connector: over a TCP
/// socket, or over whatever else the dial stage gave (the tunnel through an
/// `https://` proxy, a custom dialer's stream).
async fn tls_stage(target: &Target, host: &str, stream: stream::ByteStream) -> io::Result<stream::ByteStream> {
    match (&target.tls, stream) {
        (None, stream) => Ok(stream),
        (Some(tls), stream::ByteStream::Tcp(tcp)) => {
            Ok(stream::ByteStream::Other(Box::new(tls.connect(tcp, host).await?)))
        }
        (Some(tls), stream::ByteStream::Other(other)) => {
            Ok(stream::ByteStream::Other(Box::new(tls.connect(other, host).await?)))
        }
    }
}

impl Reader {
    /// Reads until at least one frame is complete; replaces `batch` with the
    /// frames read. Returns `Ok(false)` at a clean end of stream. Cancel-safe.
    pub async fn read_batch(&mut self, batch: &mut FrameBatch) -> Result<bool, FrameError> {
        match self {
            Reader::Stream(r) => r.read_batch(batch).await,
            Reader::Http(r) => r.read_batch(batch).await,
        }
    }
}

impl Writer {
    /// Writes control frames, then the next chunk ([`WRITE_CHUNK`]) of the
    /// batch's unsent messages, in that order, marking in the batch each
    /// message once it has been handed to the socket. Called again until the
    /// batch is done, so control frames never wait behind a large batch and
    /// progress can be recorded per chunk. On error or cancellation, the
    /// unmarked messages are the ones to write again.
    pub async fn write(&mut self, control: &[Frame], batch: Option<&mut Batch>) -> io::Result<()> {
        match self {
            Writer::Stream(w) => w.write(control, batch).await,
            Writer::Http(w) => match batch {
                Some(batch) => w.write(batch).await,
                None => Ok(()),
            },
        }
    }

    /// A handle for writes from the application's thread that never wait.
    pub fn direct(&self) -> Option<Direct> {
        match self {
            Writer::Stream(w) => w.direct(),
            Writer::Http(_) => None,
        }
    }

    /// Finishes a write a [`Direct`] write left unflushed.
    pub async fn flush(&mut self) -> io::Result<()> {
        match self {
            Writer::Stream(w) => w.flush_owed().await,
            Writer::Http(_) => Ok(()),
        }
    }

    /// Whether the peer's close frame is answered with one before the
    /// connection ends (WebSocket's closing handshake).
    pub fn answers_close(&self) -> bool {
        match self {
            Writer::Stream(w) => w.answers_close(),
            Writer::Http(_) => false,
        }
    }

    /// Finishes the sending direction (after a final close frame).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Writer::Stream(w) => w.shutdown().await,
            Writer::Http(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Counts its dials and fails each.
    struct Counting(AtomicUsize);

    impl dial::Dialer for Counting {
        fn dial<'a>(&'a self, _host: &'a str, _port: u16) -> dial::DialFuture<'a> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Box::pin(async { Err(io::Error::from(io::ErrorKind::ConnectionRefused)) })
        }
    }

    fn options(dialer: Option<dial::CustomDialer>) -> ConnectOptions {
        ConnectOptions { max_frame_size: 1 << 20, dialer, ..ConnectOptions::default() }
    }

    #[test]
    fn a_target_has_a_tls_connector_exactly_when_its_scheme_needs_one() {
        let settings = tls::TlsSettings::default();
        for (url, tls) in
            [("tcp://127.0.0.1:1", false), ("tls://127.0.0.1:1", true), ("ws://h:1/", false), ("wss://h:1/", true)]
        {
            let target = Target::new(Endpoint::parse(url).unwrap(), &settings, None).unwrap();
            assert_eq!(target.tls.is_some(), tls, "{url}");
        }
    }

    #[tokio::test]
    async fn a_dial_error_is_the_attempts_and_tls_runs_over_a_custom_dialer_s_stream() {
        let dials = Arc::new(Counting(AtomicUsize::new(0)));
        let custom = Some(dial::CustomDialer(dials.clone()));
        let settings = tls::TlsSettings::default();
        let plain = Target::new(Endpoint::parse("tcp://127.0.0.1:1").unwrap(), &settings, None).unwrap();
        let error = connect(&plain, &options(custom)).await.err().expect("the dialer refuses");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(dials.0.load(Ordering::Relaxed), 1);
        // TLS over a stream that is not a TCP socket: the server end of a
        // pipe that closes at once fails the handshake, not the setup.
        let (ours, theirs) = tokio::io::duplex(64);
        drop(theirs);
        let tls_target = Target::new(Endpoint::parse("tls://127.0.0.1:1").unwrap(), &settings, None).unwrap();
        let error = tls_stage(&tls_target, "127.0.0.1", stream::ByteStream::Other(Box::new(ours)))
            .await
            .err()
            .expect("no peer");
        assert!(error.to_string().contains("TLS handshake failed"), "{error}");
    }
}
