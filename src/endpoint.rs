//! Server addresses given as URLs: `tcp://host:port[?framing=longconn|length|line]`.
//!
//! The host is kept as text and resolved again on every connection attempt,
//! so a server that moves to another address is found after a reconnect.
//! IPv6 literals are written in brackets: `tcp://[::1]:7070`.

use std::fmt;

use crate::codec::Framing;

/// The transport a URL scheme selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Tcp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// Host name or IP literal, without brackets.
    pub host: String,
    pub port: u16,
    pub framing: Framing,
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
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad(url, "expected scheme://host:port"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "tcp" => Scheme::Tcp,
            other => {
                return Err(bad(
                    url,
                    &format!("unsupported scheme {other:?} (supported: tcp)"),
                ))
            }
        };
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains('/') {
            return Err(bad(url, "a tcp URL has no path"));
        }
        let (host, port) =
            split_host_port(authority).ok_or_else(|| bad(url, "expected host:port"))?;
        if host.is_empty() {
            return Err(bad(url, "empty host"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(url, "port must be a number from 1 to 65535"))?;
        let mut framing = Framing::Longconn;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("framing", value)) => {
                    framing = Framing::from_name(value)
                        .ok_or_else(|| bad(url, "framing must be longconn, length or line"))?;
                }
                _ => return Err(bad(url, &format!("unknown query parameter {pair:?}"))),
            }
        }
        Ok(Endpoint {
            scheme,
            host: host.to_string(),
            port,
            framing,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "tcp://[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "tcp://{}:{}", self.host, self.port)?;
        }
        if self.framing != Framing::Longconn {
            write!(f, "?framing={}", self.framing.name())?;
        }
        Ok(())
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
        assert_eq!(
            (e.host.as_str(), e.port, e.framing),
            ("127.0.0.1", 7070, Framing::Longconn)
        );
        let e = Endpoint::parse("tcp://[::1]:80?framing=line").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.framing),
            ("::1", 80, Framing::Line)
        );
        let e = Endpoint::parse("TCP://localhost:9/?framing=length").unwrap();
        assert_eq!((e.host.as_str(), e.framing), ("localhost", Framing::Length));
        assert_eq!(e.to_string(), "tcp://localhost:9?framing=length");
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        for url in [
            "",
            "127.0.0.1:80",
            "http://a:1",
            "tcp://a",
            "tcp://:80",
            "tcp://a:0",
            "tcp://a:70000",
            "tcp://::1:80",
            "tcp://a:1/path",
            "tcp://a:1?framing=xml",
            "tcp://a:1?color=red",
        ] {
            let err = Endpoint::parse(url).unwrap_err();
            assert!(err.0.starts_with("invalid URL"), "{url}: {err}");
        }
    }
}
