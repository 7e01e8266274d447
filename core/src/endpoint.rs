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
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }

    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Tls | Scheme::Wss)
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
    /// which frames messages itself.
    pub framing: Option<Framing>,
    /// Path and query of a WebSocket URL (`/` at least); empty for TCP.
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
    pub fn parse(url: &str) -> Result<Endpoint, UrlError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad(url, "expected scheme://host:port"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "tcp" => Scheme::Tcp,
            "tls" => Scheme::Tls,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            other => return Err(bad(url, &format!("unsupported scheme {other:?} (supported: tcp, tls, ws, wss)"))),
        };
        let split_at = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(split_at);
        let (host, port) = match split_host_port(authority) {
            Some((host, port)) => (host, Some(port)),
            None if scheme.is_websocket() && !authority.contains(':') => (authority, None),
            None if authority.starts_with('[') && scheme.is_websocket() => {
                (authority.trim_start_matches('[').trim_end_matches(']'), None)
            }
            None => return Err(bad(url, "expected host:port")),
        };
        if host.is_empty() {
            return Err(bad(url, "empty host"));
        }
        let bracketed = authority.starts_with('[');
        if !valid_host(host, bracketed) {
            return Err(bad(url, "invalid host (a name, an IPv4 address, or an IPv6 address in brackets)"));
        }
        let port: u16 = match port {
            Some(p) => {
                p.parse().ok().filter(|p| *p != 0).ok_or_else(|| bad(url, "port must be a number from 1 to 65535"))?
            }
            None if scheme == Scheme::Wss => 443,
            None => 80,
        };
        match scheme {
            Scheme::Tcp | Scheme::Tls => Ok(Endpoint {
                scheme,
                host: host.to_string(),
                port,
                framing: Some(tcp_framing(url, resource)?),
                resource: String::new(),
            }),
            Scheme::Ws | Scheme::Wss => Ok(Endpoint {
                scheme,
                host: host.to_string(),
                port,
                framing: None,
                resource: if resource.starts_with('/') { resource.to_string() } else { format!("/{resource}") },
            }),
        }
    }
}

/// The framing named in a TCP URL's query (`?framing=`); the longconn protocol by default.
fn tcp_framing(url: &str, resource: &str) -> Result<Framing, UrlError> {
    let resource = resource.strip_prefix('/').unwrap_or(resource);
    let (path, query) = resource.split_once('?').unwrap_or((resource, ""));
    if !path.is_empty() {
        return Err(bad(url, "a tcp URL has no path"));
    }
    let mut framing = Framing::Longconn;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("framing", value)) => {
                framing =
                    Framing::from_name(value).ok_or_else(|| bad(url, "framing must be longconn, length or line"))?;
            }
            _ => return Err(bad(url, &format!("unknown query parameter {pair:?}"))),
        }
    }
    Ok(framing)
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

/// A host name, an IPv4 address, or (in brackets) an IPv6 address with an
/// optional zone: letters, digits and `-._` outside brackets; hex digits,
/// `:` and `.` inside them (and `%` with a zone name).
fn valid_host(host: &str, bracketed: bool) -> bool {
    if bracketed {
        let (address, zone) = host.split_once('%').unwrap_or((host, ""));
        address.contains(':')
            && address.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            && zone.chars().all(|c| c.is_alphanumeric() || "-._".contains(c))
            && (zone.is_empty() != host.contains('%'))
    } else {
        host.chars().all(|c| c.is_alphanumeric() || "-._".contains(c))
    }
}

fn split_host_port(authority: &str) -> Option<(&str, &str)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = authority.rsplit_once(':')?;
    if host.contains(':') {
        return None; // an IPv6 literal must be bracketed
    }
    Some((host, port))
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
            "http://a:1",
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
        ] {
            let err = Endpoint::parse(url).unwrap_err();
            assert!(err.0.starts_with("invalid URL"), "{url}: {err}");
        }
    }
}
