//! SOCKS5 (RFC 1928) CONNECT on a TCP stream to the proxy, with username
//! and password authentication (RFC 1929) when the proxy URL carries a
//! user. `socks5://` resolves the server's name here and sends an address;
//! `socks5h://` sends the name for the proxy to resolve.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Proxy, ProxyKind};

const VERSION: u8 = 5;
const NO_AUTHENTICATION: u8 = 0;
const USER_PASSWORD: u8 = 2;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;
const CONNECT: u8 = 1;
const IPV4: u8 = 1;
const DOMAIN: u8 = 3;
const IPV6: u8 = 4;

/// Asks `proxy`, on `stream`, for a tunnel to `host:port`; on success the
/// stream is the tunnel. Errors name the proxy and say what it answered.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> io::Result<()> {
    let failed = |kind, what: String| io::Error::new(kind, format!("the proxy {proxy} {what}"));
    let garbled = |what: &str| failed(io::ErrorKind::InvalidData, format!("does not speak SOCKS5 ({what})"));
    // The address goes first: a name that does not resolve is our failure, not the proxy's.
    let address = match (proxy.kind, host.parse::<IpAddr>()) {
        (_, Ok(ip)) => Address::Ip(ip),
        (ProxyKind::Socks5h, Err(_)) => Address::Name(host),
        (_, Err(_)) => Address::Ip(resolve(host, port).await?.ip()),
    };
    let methods: &[u8] =
        if proxy.credentials.is_some() { &[NO_AUTHENTICATION, USER_PASSWORD] } else { &[NO_AUTHENTICATION] };
    let mut greeting = vec![VERSION, methods.len() as u8];
    greeting.extend_from_slice(methods);
    stream.write_all(&greeting).await?;
    let mut choice = [0u8; 2];
    read_exact(stream, &mut choice, proxy).await?;
    if choice[0] != VERSION {
        return Err(garbled(&format!("its greeting starts with {}", choice[0])));
    }
    match (choice[1], &proxy.credentials) {
        (NO_AUTHENTICATION, _) => {}
        (USER_PASSWORD, Some(credentials)) => {
            let (user, password) = (credentials.user.as_bytes(), credentials.password.as_bytes());
            let mut request = vec![1, user.len() as u8];
            request.extend_from_slice(user);
            request.push(password.len() as u8);
            request.extend_from_slice(password);
            stream.write_all(&request).await?;
            let mut status = [0u8; 2];
            read_exact(stream, &mut status, proxy).await?;
            if status[1] != 0 {
                return Err(failed(io::ErrorKind::PermissionDenied, "refused the user name and password".into()));
            }
        }
        (NO_ACCEPTABLE_METHOD, None) => {
            return Err(failed(io::ErrorKind::PermissionDenied, "wants a user name and password".into()))
        }
        (NO_ACCEPTABLE_METHOD, Some(_)) => {
            return Err(failed(io::ErrorKind::PermissionDenied, "accepts no authentication we offer".into()))
        }
        (other, _) => return Err(garbled(&format!("it chose authentication method {other}, which we did not offer"))),
    }
    let mut request = vec![VERSION, CONNECT, 0];
    match address {
        Address::Ip(IpAddr::V4(ip)) => {
            request.push(IPV4);
            request.extend_from_slice(&ip.octets());
        }
        Address::Ip(IpAddr::V6(ip)) => {
            request.push(IPV6);
            request.extend_from_slice(&ip.octets());
        }
        Address::Name(name) => {
            let name = name.as_bytes();
            if name.len() > 255 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a host name over 255 bytes cannot go to SOCKS5",
                ));
            }
            request.push(DOMAIN);
            request.push(name.len() as u8);
            request.extend_from_slice(name);
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await?;
    let mut reply = [0u8; 4];
    read_exact(stream, &mut reply, proxy).await?;
    if reply[0] != VERSION {
        return Err(garbled(&format!("its reply starts with {}", reply[0])));
    }
    if reply[1] != 0 {
        let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let (kind, why) = reply_error(reply[1]);
        return Err(failed(kind, format!("could not connect to {target}: {why} (SOCKS5 reply {})", reply[1])));
    }
    // The address the proxy bound, which we do not need, then the tunnel.
    let rest = match reply[3] {
        IPV4 => 4 + 2,
        IPV6 => 16 + 2,
        DOMAIN => {
            let mut len = [0u8];
            read_exact(stream, &mut len, proxy).await?;
            usize::from(len[0]) + 2
        }
        other => return Err(garbled(&format!("its reply has address type {other}"))),
    };
    let mut bound = [0u8; 255 + 2];
    read_exact(stream, &mut bound[..rest], proxy).await
}

enum Address<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

async fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host} resolved to no address")))
}

async fn read_exact<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8], proxy: &Proxy) -> io::Result<()> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("the proxy {proxy} closed the connection in the middle of the SOCKS5 exchange"),
        )),
        Err(e) => Err(e),
    }
}

/// A SOCKS5 reply code in words (RFC 1928, section 6).
fn reply_error(code: u8) -> (io::ErrorKind, &'static str) {
    match code {
        2 => (io::ErrorKind::PermissionDenied, "not allowed by the proxy's rules"),
        3 => (io::ErrorKind::ConnectionRefused, "network unreachable"),
        4 => (io::ErrorKind::ConnectionRefused, "host unreachable"),
        5 => (io::ErrorKind::ConnectionRefused, "connection refused"),
        6 => (io::ErrorKind::TimedOut, "TTL expired"),
        7 => (io::ErrorKind::Unsupported, "CONNECT not supported"),
        8 => (io::ErrorKind::Unsupported, "address type not supported"),
        _ => (io::ErrorKind::ConnectionRefused, "general failure"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays a proxy's side of the exchange from a script: what it expects
    /// to read, and what it answers.
    async fn exchange(proxy_url: &str, host: &str, script: Vec<(Vec<u8>, Vec<u8>)>) -> io::Result<()> {
        let proxy = Proxy::parse(proxy_url).unwrap();
        let (mut ours, mut theirs) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move {
            for (expected, answer) in script {
                let mut got = vec![0u8; expected.len()];
                theirs.read_exact(&mut got).await.unwrap();
                assert_eq!(got, expected);
                theirs.write_all(&answer).await.unwrap();
            }
        });
        let result = connect(&mut ours, &proxy, host, 7070).await;
        drop(ours);
        let _ = server.await;
        result
    }

    #[tokio::test]
    async fn socks5h_sends_the_name_and_authenticates_when_asked() {
        let script = vec![
            (vec![5, 2, 0, 2], vec![5, 2]),
            (b"\x01\x01u\x02pw".to_vec(), vec![1, 0]),
            ([&[5, 1, 0, 3, 7][..], b"example", &[0x1b, 0x9e]].concat(), vec![5, 0, 0, 1, 10, 0, 0, 1, 0, 80]),
        ];
        exchange("socks5h://u:pw@p:1", "example", script).await.unwrap();
    }

    #[tokio::test]
    async fn socks5_sends_addresses_and_skips_a_named_bound_address() {
        let script = vec![
            (vec![5, 1, 0], vec![5, 0]),
            (
                vec![5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x1b, 0x9e],
                vec![5, 0, 0, 3, 1, b'x', 0, 1],
            ),
        ];
        exchange("socks5://p:1", "::1", script).await.unwrap();
    }

    #[tokio::test]
    async fn refusals_say_what_the_proxy_answered() {
        let error = exchange("socks5://p:1", "127.0.0.1", vec![(vec![5, 1, 0], vec![5, 0xff])]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        assert!(error.to_string().contains("socks5://p:1 wants a user name and password"), "{error}");
        let script = vec![(vec![5, 2, 0, 2], vec![5, 2]), (b"\x01\x01u\x01x".to_vec(), vec![1, 1])];
        let error = exchange("socks5://u:x@p:1", "127.0.0.1", script).await.unwrap_err();
        assert!(error.to_string().contains("refused the user name and password"), "{error}");
        let script = vec![(vec![5, 1, 0], vec![5, 0]), (vec![5, 1, 0, 1, 127, 0, 0, 1, 0x1b, 0x9e], vec![5, 5, 0, 1])];
        let error = exchange("socks5://p:1", "127.0.0.1", script).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        assert!(error.to_string().contains("could not connect to 127.0.0.1:7070: connection refused"), "{error}");
        let error =
            exchange("socks5://p:1", "127.0.0.1", vec![(vec![5, 1, 0], b"HTTP/1.1 400".to_vec())]).await.unwrap_err();
        assert!(error.to_string().contains("does not speak SOCKS5"), "{error}");
        let error = exchange("socks5://p:1", "127.0.0.1", vec![(vec![5, 1, 0], vec![5])]).await.unwrap_err();
        assert!(error.to_string().contains("closed the connection in the middle"), "{error}");
    }
}
