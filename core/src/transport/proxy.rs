//! The dial stage through an HTTP proxy: a TCP connection to the proxy,
//! then `CONNECT host:port` (with basic authentication when the proxy URL
//! carries a user), after which the socket is a tunnel to the server and
//! everything above (TLS, WebSocket, framing, the direct-write path) runs
//! on it unchanged.

use std::fmt;
use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most a proxy's answer to CONNECT may take, headers included.
const MAX_ANSWER: usize = 16 * 1024;

/// An HTTP proxy, from a URL `http://[user[:password]@]host[:port]` (port
/// 1080 by default, as curl's).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpProxy {
    pub host: String,
    pub port: u16,
    /// `user:password`, for the `Proxy-Authorization` header.
    credentials: Option<String>,
}

impl fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        write!(f, "HttpProxy({self})")
    }
}

impl fmt::Display for HttpProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

impl HttpProxy {
    pub fn parse(url: &str) -> Result<HttpProxy, String> {
        let bad = |why: &str| format!("invalid proxy URL {url:?}: {why}");
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("HTTP://"))
            .ok_or_else(|| bad("expected http://host:port (other proxy kinds are not supported yet)"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(bad("a proxy URL has no path or query"));
        }
        let (user_info, authority) = match rest.rsplit_once('@') {
            Some((user_info, authority)) => (Some(user_info), authority),
            None => (None, rest),
        };
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or_else(|| bad("unclosed ["))?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() || !host.chars().all(|c| c.is_alphanumeric() || "-._:".contains(c)) {
            return Err(bad("invalid host"));
        }
        let port = match port {
            Some(p) => {
                p.parse().ok().filter(|p| *p != 0).ok_or_else(|| bad("port must be a number from 1 to 65535"))?
            }
            None => 1080,
        };
        let credentials = match user_info {
            Some(info) => {
                let (user, password) = info.split_once(':').unwrap_or((info, ""));
                let (user, password) = (
                    percent_decode(user).ok_or_else(|| bad("bad % escape"))?,
                    percent_decode(password).ok_or_else(|| bad("bad % escape"))?,
                );
                Some(format!("{user}:{password}"))
            }
            None => None,
        };
        Ok(HttpProxy { host: host.to_string(), port, credentials })
    }

    /// A tunnel through the proxy to `host:port`: the proxy's socket, past
    /// its answer. Errors name the proxy and say what it answered.
    pub async fn connect(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let (mut stream, _) = super::dial::tcp(&self.host, self.port)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot reach the proxy {self}: {e}")))?;
        let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(credentials) = &self.credentials {
            request.push_str(&format!("Proxy-Authorization: Basic {}\r\n", base64(credentials.as_bytes())));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        // Read the answer a byte at a time, so nothing of the tunnel is read with it.
        let mut answer = Vec::with_capacity(256);
        while !answer.ends_with(b"\r\n\r\n") {
            if answer.len() == MAX_ANSWER {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the proxy {self} answered CONNECT with over 16 KiB of headers"),
                ));
            }
            let mut byte = [0u8];
            if stream.read(&mut byte).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("the proxy {self} closed the connection before answering CONNECT"),
                ));
            }
            answer.push(byte[0]);
        }
        let status_line =
            String::from_utf8_lossy(answer.split(|&b| b == b'\r').next().unwrap_or_default()).into_owned();
        let code = status_line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
        match code {
            Some(200..=299) => Ok(stream),
            // 407 by the standard; tinyproxy answers 401.
            Some(401 | 407) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the proxy {self} wants other credentials: {status_line}"),
            )),
            Some(502..=504) => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("the proxy {self} could not reach {target}: {status_line}"),
            )),
            Some(_) => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("the proxy {self} refused CONNECT {target}: {status_line}"),
            )),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the proxy {self} answered CONNECT with {status_line:?}"),
            )),
        }
    }
}

/// `%XX` escapes decoded; `None` for a broken escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Standard base64 with padding (RFC 4648), for basic authentication.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn proxy_urls_parse_with_credentials_defaults_and_clear_refusals() {
        let p = HttpProxy::parse("http://127.0.0.1:3128").unwrap();
        assert_eq!((p.host.as_str(), p.port, p.credentials.as_deref()), ("127.0.0.1", 3128, None));
        let p = HttpProxy::parse("http://us%40er:p%3Ass@proxy.example/").unwrap();
        assert_eq!((p.host.as_str(), p.port, p.credentials.as_deref()), ("proxy.example", 1080, Some("us@er:p:ss")));
        assert_eq!(format!("{p:?}"), "HttpProxy(http://proxy.example:1080)", "no password in debug output");
        let p = HttpProxy::parse("http://[::1]:8080").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 8080));
        for bad in [
            "socks5://h:1",
            "http://",
            "http://h:0",
            "http://h:x",
            "http://h:1/path",
            "http://a b:1",
            "http://u:%zz@h:1",
        ] {
            let error = HttpProxy::parse(bad).unwrap_err();
            assert!(error.starts_with("invalid proxy URL"), "{bad}: {error}");
        }
    }
}
