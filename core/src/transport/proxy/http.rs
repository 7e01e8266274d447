//! HTTP CONNECT (RFC 9110, 9.3.6) on a stream to the proxy, with basic
//! authentication when the proxy URL carries a user.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Proxy;

/// The most a proxy's answer to CONNECT may take, headers included.
const MAX_ANSWER: usize = 16 * 1024;

/// Asks `proxy`, on `stream` (TCP or TLS to it), for a tunnel to
/// `host:port`; on success the stream is the tunnel, past the proxy's
/// answer. Errors name the proxy and say what it answered.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> io::Result<()> {
    let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(credentials) = &proxy.credentials {
        let pair = format!("{}:{}", credentials.user, credentials.password);
        request.push_str(&format!("Proxy-Authorization: Basic {}\r\n", base64(pair.as_bytes())));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    // Read the answer a byte at a time, so nothing of the tunnel is read with it.
    let mut answer = Vec::with_capacity(256);
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() == MAX_ANSWER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the proxy {proxy} answered CONNECT with over 16 KiB of headers"),
            ));
        }
        let mut byte = [0u8];
        if stream.read(&mut byte).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("the proxy {proxy} closed the connection before answering CONNECT"),
            ));
        }
        answer.push(byte[0]);
    }
    let status_line = String::from_utf8_lossy(answer.split(|&b| b == b'\r').next().unwrap_or_default()).into_owned();
    let code = status_line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
    let refused = |kind, what: String| Err(io::Error::new(kind, format!("the proxy {proxy} {what}: {status_line}")));
    match code {
        Some(200..=299) => Ok(()),
        // 407 by the standard; tinyproxy answers 401.
        Some(401 | 407) => refused(io::ErrorKind::PermissionDenied, "wants other credentials".into()),
        Some(502..=504) => refused(io::ErrorKind::ConnectionRefused, format!("could not reach {target}")),
        Some(_) => refused(io::ErrorKind::ConnectionRefused, format!("refused CONNECT {target}")),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the proxy {proxy} answered CONNECT with {status_line:?}"),
        )),
    }
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
}
