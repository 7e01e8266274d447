//! The first stage of a connection: reaching the server's byte stream,
//! before TLS and the WebSocket handshake. By default a client dials TCP
//! directly ([`tcp`], the host name resolved anew each time); a [`Dialer`]
//! set in the config takes its place, so that
//! what lies above it (framing, hello, session) runs unchanged over another
//! network (the deterministic simulation's); a proxy ([`super::proxy`])
//! gives a tunnel to the server instead.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use std::net::SocketAddr;

use tokio::net::{lookup_host, TcpStream};

use super::proxy::Via;
use super::stream::ByteStream;

/// Dials TCP directly: resolves the host (on every call) and tries each
/// address in turn.
pub async fn tcp(host: &str, port: u16) -> io::Result<(TcpStream, SocketAddr)> {
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

/// How the dial stage reaches a server.
#[derive(Clone, Copy)]
pub enum Route<'a> {
    /// TCP, dialed directly.
    Direct,
    /// Through a proxy: still a TCP socket, but for an `https://` proxy.
    Proxy(&'a Via),
    /// The configured dialer's stream.
    Custom(&'a CustomDialer),
}

/// The dial stage: a byte stream to `host:port` by `route`, with the
/// peer's name for events and logs.
pub async fn open(route: Route<'_>, host: &str, port: u16) -> io::Result<(ByteStream, String)> {
    match route {
        Route::Custom(dialer) => dialer.0.dial(host, port).await,
        Route::Proxy(via) => {
            let proxy = &via.proxy;
            let (tcp, _) = tcp(&proxy.host, proxy.port)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("cannot reach the proxy {proxy}: {e}")))?;
            Ok((via.open(tcp, host, port).await?, format!("{host}:{port} through {proxy}")))
        }
        Route::Direct => {
            let (stream, peer) = tcp(host, port).await?;
            Ok((ByteStream::Tcp(stream), peer.to_string()))
        }
    }
}

/// A boxed future that may move between threads.
pub type DialFuture<'a> = Pin<Box<dyn Future<Output = io::Result<(ByteStream, String)>> + Send + 'a>>;

/// Opens byte streams to a server. Called once per connection attempt,
/// on the thread that runs the client's session, within its connect
/// timeout.
pub trait Dialer: Send + Sync + 'static {
    /// A byte stream to `host:port`, and the peer's name for events and logs.
    fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a>;
}

/// A [`Dialer`] as the config holds it.
#[derive(Clone)]
pub struct CustomDialer(pub Arc<dyn Dialer>);

impl fmt::Debug for CustomDialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomDialer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pipe;

    impl Dialer for Pipe {
        fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a> {
            Box::pin(async move {
                let (ours, _theirs) = tokio::io::duplex(64);
                Ok((ByteStream::Other(Box::new(ours)), format!("pipe to {host}:{port}")))
            })
        }
    }

    #[tokio::test]
    async fn the_dial_stage_reaches_tcp_directly_or_through_the_configured_dialer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stream, peer) = open(Route::Direct, "127.0.0.1", port).await.unwrap();
        assert!(matches!(stream, ByteStream::Tcp(_)));
        assert_eq!(peer, format!("127.0.0.1:{port}"));
        let (stream, peer) = open(Route::Custom(&CustomDialer(Arc::new(Pipe))), "example", 7).await.unwrap();
        assert!(matches!(stream, ByteStream::Other(_)));
        assert_eq!(peer, "pipe to example:7");
    }

    #[tokio::test]
    async fn a_refused_direct_dial_names_the_address() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let error = open(Route::Direct, "127.0.0.1", port).await.err().expect("nothing listens there");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
    }
}
