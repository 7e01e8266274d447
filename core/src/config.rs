//! Everything a client is created with.

use std::time::Duration;

use bytes::Bytes;

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::policy::backoff::BackoffPolicy;
use crate::policy::heartbeat::HeartbeatPolicy;
use crate::policy::limits::{InboxLimits, OutboxLimits};
use crate::protocol::{FrameError, Framing, DEFAULT_MAX_FRAME_SIZE};
use crate::transport::tls::TlsSettings;

/// Upper bound on the maximum frame size: the length prefix is 32 bits and a
/// larger limit would defeat its purpose.
pub const MAX_FRAME_SIZE_LIMIT: usize = 256 * 1024 * 1024;

/// Ping and pong payloads for the plain framings, which have no control frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainHeartbeat {
    pub ping: Bytes,
    pub pong: Bytes,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The first server (the URL the config was made with).
    pub endpoint: Endpoint,
    /// More servers, tried in turn after it when one cannot be reached
    /// ([`ClientConfig::add_server`]); a protocol 2 session resumes on
    /// whichever answers.
    pub more_servers: Vec<Endpoint>,
    /// Where in the list the first attempt goes (default: the first server).
    pub server_order: crate::policy::failover::ServerOrder,
    pub heartbeat: HeartbeatPolicy,
    pub backoff: BackoffPolicy,
    /// Reconnect after a connection drops or an attempt fails (default on).
    pub auto_reconnect: bool,
    pub outbox: OutboxLimits,
    /// Largest message payload sent or accepted (default 1 MiB).
    pub max_frame_size: usize,
    /// Time for resolving, connecting and the hello exchange together (default 10 s).
    pub connect_timeout: Duration,
    /// Heartbeat payloads in the plain framings; `None` turns heartbeats off there.
    pub plain_heartbeat: Option<PlainHeartbeat>,
    /// Name sent in the hello frame of the longconn protocol.
    pub client_name: String,
    /// Received messages allowed to wait for the application before reading pauses.
    pub inbox: InboxLimits,
    /// Extra WebSocket handshake headers (name, value), for example authorization.
    pub headers: Vec<(String, String)>,
    /// WebSocket subprotocols to offer, most preferred first.
    pub subprotocols: Vec<String>,
    /// Certificate checks and client certificates for `tls://` and `wss://`.
    pub tls: TlsSettings,
    /// The highest protocol version to offer: 2 (acknowledged delivery and
    /// resume, the default) or 1 (best effort).
    pub max_protocol: u8,
    /// Report acknowledgements as [`crate::Event::Acknowledged`] events (off
    /// by default: the same news is in the statistics, without an event stream).
    pub ack_events: bool,
    /// Run callbacks on the I/O thread that received the data instead of a
    /// callback thread (off by default): one thread hand-off less per
    /// message, for callbacks that return quickly and never block.
    pub callbacks_on_io_thread: bool,
    /// Do this client's I/O on the thread that polls it, inside `poll`,
    /// `poll_messages` and `close`, instead of on the library's I/O threads
    /// (off by default). See [`crate::Client::poll`].
    pub io_in_poll: bool,
    /// Run the client's session as a task of the tokio runtime that calls
    /// [`crate::Client::connect`] instead of on the library's I/O threads
    /// (off by default; Rust only). For applications with a runtime of
    /// their own, and for the deterministic simulation, whose runtime and
    /// clock are simulated. `connect` then fails outside a runtime.
    pub on_current_runtime: bool,
    /// Reaches the server's byte stream instead of dialing TCP (Rust
    /// only). See [`crate::transport::dial`].
    pub dialer: Option<crate::transport::dial::CustomDialer>,
    /// The proxy connections go through: by default the one the
    /// environment names for each server, read when the client is created
    /// (see [`crate::transport::proxy::env`]).
    pub proxy: crate::transport::proxy::ProxySetting,
    /// `http://` and `https://` servers: where messages are POSTed, one
    /// request per message; the stream's URL when `None`.
    pub http_send_to: Option<Endpoint>,
    /// `ws://` and `wss://`: offer permessage-deflate (RFC 7692), on by
    /// default; the server's compressed messages are then inflated, within
    /// the maximum message size. Messages this client sends are compressed
    /// from [`crate::protocol::deflate::MIN_COMPRESSED`] bytes on.
    pub ws_compression: bool,
    /// Keep the protocol 2 session and every message not yet acknowledged
    /// in this file (and `PATH.lock`), so a program started again with the
    /// same path resumes the session and delivers exactly once (see
    /// [`crate::durable`]); `None` (the default): in memory only.
    pub outbox_path: Option<std::path::PathBuf>,
    /// When a sent message reaches the disk with `outbox_path` (default:
    /// before `send` returns).
    pub outbox_sync: crate::durable::OutboxSync,
}

impl ClientConfig {
    pub fn new(url: &str) -> Result<ClientConfig, Error> {
        let endpoint = Endpoint::parse(url).map_err(|e| Error::InvalidUrl(e.0))?;
        Ok(ClientConfig {
            endpoint,
            more_servers: Vec::new(),
            server_order: Default::default(),
            heartbeat: HeartbeatPolicy::default(),
            backoff: BackoffPolicy::default(),
            auto_reconnect: true,
            outbox: OutboxLimits::default(),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            connect_timeout: Duration::from_secs(10),
            plain_heartbeat: None,
            client_name: format!("longconn/{}", env!("CARGO_PKG_VERSION")),
            inbox: InboxLimits::default(),
            headers: Vec::new(),
            subprotocols: Vec::new(),
            tls: TlsSettings::default(),
            max_protocol: crate::protocol::hello::PROTOCOL_V2,
            ack_events: false,
            callbacks_on_io_thread: false,
            io_in_poll: false,
            on_current_runtime: false,
            dialer: None,
            proxy: Default::default(),
            http_send_to: None,
            ws_compression: true,
            outbox_path: None,
            outbox_sync: crate::durable::OutboxSync::EverySend,
        })
    }

    /// Every server, the first one first.
    pub fn servers(&self) -> impl Iterator<Item = &Endpoint> {
        std::iter::once(&self.endpoint).chain(&self.more_servers)
    }

    /// Adds the server at `url` to the list. Every server of a list must be
    /// able to carry the same session: TCP-family servers (`tcp://`,
    /// `tls://`) with the same framing, or WebSocket servers (`ws://`,
    /// `wss://`), or HTTP servers (`http://`, `https://`); a mix is
    /// refused, saying why.
    pub fn add_server(&mut self, url: &str) -> Result<(), Error> {
        let server = Endpoint::parse(url).map_err(|e| Error::InvalidUrl(e.0))?;
        let first = &self.endpoint;
        if server.scheme.family() != first.scheme.family() {
            return Err(Error::InvalidArgument(format!(
                "{server} cannot share a session with {first}: a list holds {} servers only",
                first.scheme.family()
            )));
        }
        if server.framing != first.framing {
            let name = |e: &Endpoint| e.framing.map_or("none", Framing::name);
            return Err(Error::InvalidArgument(format!(
                "{server} uses the {} framing and {first} the {}: every server of a list must use the same framing",
                name(&server),
                name(first)
            )));
        }
        self.more_servers.push(server);
        Ok(())
    }

    /// Sets where an `http://` or `https://` client POSTs its messages:
    /// a URL of the servers' scheme.
    pub fn set_http_send_url(&mut self, url: &str) -> Result<(), Error> {
        let to = Endpoint::parse(url).map_err(|e| Error::InvalidUrl(e.0))?;
        if !self.endpoint.scheme.is_http() || to.scheme != self.endpoint.scheme {
            return Err(Error::InvalidArgument(format!(
                "{to} cannot take the messages of a client of {}: a send URL is for http:// and https:// servers, of \
                 their scheme",
                self.endpoint
            )));
        }
        self.http_send_to = Some(to);
        Ok(())
    }

    /// The TCP framing; `None` for WebSocket, which frames messages itself.
    pub fn framing(&self) -> Option<Framing> {
        self.endpoint.framing
    }

    /// Whether the connection speaks a plain framing (length or line), with
    /// no control frames: heartbeats then use `plain_heartbeat` payloads.
    pub fn is_plain(&self) -> bool {
        self.framing().is_some_and(Framing::is_plain)
    }

    /// Checks that `payload` can be sent as one message: size, no newline in
    /// line framing, and valid UTF-8 for a text message. Inlined on every
    /// send, so the common case (fits, binary, not line framing) costs a few
    /// instructions; the rest is out of line.
    #[inline]
    pub fn check_payload(&self, payload: &[u8], text: bool) -> Result<(), Error> {
        if payload.len() <= self.max_frame_size && !text && self.endpoint.framing != Some(Framing::Line) {
            return Ok(());
        }
        self.check_payload_in_full(payload, text)
    }

    #[cold]
    fn check_payload_in_full(&self, payload: &[u8], text: bool) -> Result<(), Error> {
        let result = match self.framing() {
            Some(framing) => framing.check_payload(payload, self.max_frame_size),
            None if payload.len() > self.max_frame_size => {
                Err(FrameError::FrameTooLarge { len: payload.len(), max: self.max_frame_size })
            }
            None => Ok(()),
        };
        result.map_err(|e| match e {
            FrameError::FrameTooLarge { len, max } => Error::MessageTooLarge { len, max },
            other => Error::InvalidArgument(other.to_string()),
        })?;
        if text && std::str::from_utf8(payload).is_err() {
            return Err(Error::InvalidArgument("a text message must be valid UTF-8".into()));
        }
        Ok(())
    }

    /// The heartbeat actually in force: off in a plain framing without payloads.
    pub fn effective_heartbeat(&self, policy: HeartbeatPolicy) -> HeartbeatPolicy {
        if self.is_plain() && self.plain_heartbeat.is_none() {
            return HeartbeatPolicy { interval: Duration::ZERO, timeout: Duration::ZERO };
        }
        policy
    }

    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |why: &str| Err(Error::InvalidArgument(why.to_string()));
        if let Err(why) = self.heartbeat.validate() {
            return invalid(why);
        }
        if let Err(why) = self.backoff.validate() {
            return invalid(why);
        }
        if self.max_frame_size == 0 || self.max_frame_size > MAX_FRAME_SIZE_LIMIT {
            return invalid("maximum frame size must be between 1 byte and 256 MiB");
        }
        if matches!(self.proxy, crate::transport::proxy::ProxySetting::Use(_)) && self.dialer.is_some() {
            return invalid("a proxy and a custom dialer exclude each other");
        }
        if self.io_in_poll && self.on_current_runtime {
            return invalid("io_in_poll and on_current_runtime exclude each other");
        }
        if self.client_name.len() > crate::protocol::MAX_CLIENT_NAME {
            return invalid("the client name must be at most 1,024 bytes");
        }
        if let Err(why) = self.outbox.validate() {
            return invalid(why);
        }
        if self.connect_timeout.is_zero() {
            return invalid("connect timeout must be positive");
        }
        if let Err(why) = self.inbox.validate() {
            return invalid(why);
        }
        if let Some(hb) = &self.plain_heartbeat {
            if hb.ping == hb.pong {
                return invalid("ping and pong payloads must differ");
            }
            for payload in [&hb.ping, &hb.pong] {
                self.check_payload(payload, false)
                    .map_err(|e| Error::InvalidArgument(format!("heartbeat payload: {e}")))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_settings_are_named() {
        let mut c = ClientConfig::new("tcp://127.0.0.1:1").unwrap();
        assert!(c.validate().is_ok());
        c.add_server("tls://backup:2").unwrap();
        let refused = |c: &mut ClientConfig, url: &str| match c.add_server(url) {
            Err(Error::InvalidArgument(why)) => why,
            other => panic!("{url}: {other:?}"),
        };
        assert!(refused(&mut c, "ws://backup:2/").contains("cannot share a session"));
        assert!(refused(&mut c, "tcp://backup:2?framing=line").contains("same framing"));
        assert!(matches!(c.add_server("tcp://back up:2"), Err(Error::InvalidUrl(_))));
        let servers: Vec<String> = c.servers().map(|e| e.to_string()).collect();
        assert_eq!(servers, ["tcp://127.0.0.1:1", "tls://backup:2"], "refused servers are not added");
        c.max_frame_size = 0;
        assert!(matches!(c.validate(), Err(Error::InvalidArgument(w)) if w.contains("frame size")));
        let mut c = ClientConfig::new("tcp://127.0.0.1:1?framing=line").unwrap();
        c.plain_heartbeat =
            Some(PlainHeartbeat { ping: Bytes::from_static(b"p\ning"), pong: Bytes::from_static(b"pong") });
        assert!(c.validate().is_err(), "a newline cannot be a line-framed ping");
        assert!(matches!(ClientConfig::new("udp://x:1"), Err(Error::InvalidUrl(_))));
    }

    #[test]
    fn plain_framing_without_payloads_has_heartbeats_off() {
        let c = ClientConfig::new("tcp://127.0.0.1:1?framing=length").unwrap();
        assert!(!c.effective_heartbeat(c.heartbeat).enabled());
        let c = ClientConfig::new("tcp://127.0.0.1:1").unwrap();
        assert!(c.effective_heartbeat(c.heartbeat).enabled());
    }
}
