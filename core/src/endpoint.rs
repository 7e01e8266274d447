//! Server addresses given as URLs: `tcp://host:port[?framing=longconn|length|line]`,
//! `tls://` (the same over TLS), `ws://host[:port][/path][?query]` or `wss://` (over TLS).
//!
//! The host is kept as text and resolved again on every connection attempt,
//! so a server that moves to another address is found after a reconnect.
//! IPv6 literals are written in brackets: `tcp://[::1]:7070`.

use std::fmt;

use crate::protocol::Framing;

/// The transport a URL scheme selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Tcp,
    /// The TCP framings over TLS.
    Tls,
    /// WebSocket over plain TCP.
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// An HTTP long connection: a GET whose response streams messages.
    Http,
    /// The same over TLS.
    Https,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Tls | Scheme::Wss | Scheme::Https)
    }

    pub fn is_http(self) -> bool {
        matches!(self, Scheme::Http | Scheme::Https)
    }

    /// Schemes whose servers can share one session (a list of servers
    /// keeps to one family).
    pub fn family(self) -> &'static str {
        match self {
            Scheme::Tcp | Scheme::Tls => "tcp:// and tls://",
            Scheme::Ws | Scheme::Wss => "ws:// and wss://",
            Scheme::Http | Scheme::Https => "http:// and https://",
        }
    }

    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// Host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
    /// How messages are cut out of the byte stream; `None` for WebSocket,
    /// which frames messages itself, and HTTP, whose response says.
    pub framing: Option<Framing>,
    /// Path and query of a WebSocket or HTTP URL (`/` at least); empty for TCP.
    pub resource: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

fn bad(url: &str, why: &str) -> UrlError {
    UrlError(format!("invalid URL {url:?}: {why}"))
}

impl Endpoint {
    /// Parses a server URL (split by [`crate::uri`], then checked against
    /// the schemes, framings and query keys longconn knows).
    pub fn parse(url: &str) -> Result<Endpoint, UrlError> {
        let parts = crate::uri::split(url).map_err(|why| bad(url, &why))?;
        let scheme = match parts.scheme.as_str() {
            "tcp" => Scheme::Tcp,
            "tls" => Scheme::Tls,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => {
                return Err(bad(
                    url,
                    &format!("unsupported scheme {other:?} (supported: tcp, tls, ws, wss, http, https)"),
                ))
            }
        };
        if parts.user_info.is_some() {
            return Err(bad(
                url,
                "a server URL carries no user or password (send credentials in a header, or as a token from \
                 the connect callback)",
            ));
        }
        let port = match (parts.port, scheme) {
            (Some(port), _) => port,
            (None, Scheme::Ws | Scheme::Http) => 80,
            (None, Scheme::Wss | Scheme::Https) => 443,
            (None, Scheme::Tcp | Scheme::Tls) => {
                return Err(bad(url, "expected host:port (a tcp URL has no default port)"))
            }
        };
        let (framing, resource) = match scheme {
            Scheme::Tcp | Scheme::Tls => (Some(tcp_framing(url, &parts.path_and_query)?), String::new()),
            Scheme::Ws | Scheme::Wss | Scheme::Http | Scheme::Https => (None, parts.path_and_query),
        };
        Ok(Endpoint { scheme, host: parts.host, port, framing, resource })
    }
}

/// The framing named in a TCP URL's query (`?framing=`); the longconn protocol by default.
fn tcp_framing(url: &str, path_and_query: &str) -> Result<Framing, UrlError> {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    if path != "/" {
        return Err(bad(url, "a tcp URL has no path"));
    }
    let mut framing = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("framing", value)) if framing.is_none() => {
                framing = Some(
                    Framing::from_name(value).ok_or_else(|| bad(url, "framing must be longconn, length or line"))?,
                );
            }
            Some(("framing", _)) => return Err(bad(url, "framing is given twice")),
            _ => return Err(bad(url, &format!("unknown query parameter {pair:?} (a tcp URL knows only framing=)"))),
        }
    }
    Ok(framing.unwrap_or(Framing::Longconn))
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme.name();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)?;
        }
        match self.framing {
            Some(framing) if framing != Framing::Longconn => {
                write!(f, "?framing={}", framing.name())
            }
            _ => f.write_str(&self.resource),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_framing() {
        let e = Endpoint::parse("tcp://127.0.0.1:7070").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.framing), ("127.0.0.1", 7070, Some(Framing::Longconn)));
        let e = Endpoint::parse("tcp://[::1]:80?framing=line").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.framing), ("::1", 80, Some(Framing::Line)));
        let e = Endpoint::parse("TCP://localhost:9/?framing=length").unwrap();
        assert_eq!((e.host.as_str(), e.framing), ("localhost", Some(Framing::Length)));
        assert_eq!(e.to_string(), "tcp://localhost:9?framing=length");
        let e = Endpoint::parse("ws://[fe80::1%eth0]/chat").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.resource.as_str()), ("fe80::1%eth0", 80, "/chat"));
        assert_eq!(Endpoint::parse(&e.to_string()).unwrap(), e, "prints as it parses");
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        for url in [
            "",
            "127.0.0.1:80",
            "gopher://a:1",
            "ws://:80/",
            "ws://a:0/",
            "tcp://a",
            "tcp://:80",
            "tcp://a:0",
            "tcp://a:70000",
            "tcp://::1:80",
            "tcp://a:1/path",
            "tcp://a:1?framing=xml",
            "tcp://a:1?color=red",
            "wss://[]?]]]:1]",
            "wss://[[^w[[[170]:72?x",
            "tcp://[example]:80",
            "tcp://a b:80",
            "ws://user@host:80/",
            "tcp://[::1%]:80",
            "ws://127.0.0.1:7080/a b",
            "ws://ho st:80/",
            "ws://h:80/#part",
            "tcp://a:1?framing=line&framing=length",
        ] {
            let err = Endpoint::parse(url).unwrap_err();
            assert!(err.0.starts_with("invalid URL"), "{url}: {err}");
        }
        for (url, why) in [
            ("ws://127.0.0.1:7080/a b", "contains a space"),
            ("ws://ho st:80/", "contains a space"),
            ("ws://user:pw@host:80/", "carries no user or password"),
            ("tcp://a:1?color=red", "unknown query parameter \"color=red\""),
            ("gopher://a:1", "unsupported scheme \"gopher\""),
            ("tcp://a", "no default port"),
        ] {
            let err = Endpoint::parse(url).unwrap_err().0;
            assert!(err.contains(why), "{url}: {err}");
        }
    }
}
