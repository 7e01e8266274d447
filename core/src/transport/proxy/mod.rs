//! The dial stage through a proxy: HTTP CONNECT (over TCP or, for an
//! `https://` proxy, over TLS to the proxy) or SOCKS5, after which the
//! stream is a tunnel to the server and everything above it (TLS,
//! WebSocket, framing) runs on it unchanged. Through an `http://` or SOCKS5
//! proxy the tunnel is still a TCP socket, so the direct-write path holds.
//!
//! Which proxy a server is reached through is settled once, when the
//! client is created: the config's proxy, none, or (by default) the one the
//! environment names for the server's scheme and host ([`env`]).

pub mod env;
mod http;
mod socks5;

use std::fmt;
use std::io;

use tokio::net::TcpStream;

use super::stream::ByteStream;
use super::tls::{Tls, TlsSettings};
use crate::uri;

/// The kinds of proxy, by their URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// `http://`: CONNECT over TCP.
    Http,
    /// `https://`: CONNECT over TLS to the proxy.
    Https,
    /// `socks5://`: the server's name resolved here, its address sent.
    Socks5,
    /// `socks5h://`: the server's name sent, resolved at the proxy.
    Socks5h,
}

impl ProxyKind {
    fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Https => "https",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        }
    }
}

/// A user name and password for the proxy.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// A proxy, from a URL `scheme://[user[:password]@]host[:port]` with scheme
/// `http` (the default when none is written, as curl), `https`, `socks5` or
/// `socks5h`; the port is 1080 by default (443 for `https`), as curl's.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    pub credentials: Option<Credentials>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        write!(f, "Proxy({self})")
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.kind.scheme();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl Proxy {
    pub fn parse(url: &str) -> Result<Proxy, String> {
        let bad = |why: &str| format!("invalid proxy URL {:?}: {why}", without_password(url));
        let with_scheme;
        let url_to_split = if url.contains("://") {
            url
        } else {
            with_scheme = format!("http://{url}");
            &with_scheme
        };
        let parts = uri::split(url_to_split).map_err(|why| bad(&why))?;
        let kind = match parts.scheme.as_str() {
            "http" => ProxyKind::Http,
            "https" => ProxyKind::Https,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            other => {
                return Err(bad(&format!(
                    "unsupported proxy scheme {other:?} (supported: http, https, socks5, socks5h)"
                )))
            }
        };
        if parts.path_and_query != "/" {
            return Err(bad("a proxy URL has no path or query"));
        }
        let credentials = match &parts.user_info {
            Some(info) => {
                let (user, password) = info.split_once(':').unwrap_or((info, ""));
                let decode =
                    |s: &str| uri::percent_decode(s).ok_or_else(|| bad("a broken % escape in the user or password"));
                Some(Credentials { user: decode(user)?, password: decode(password)? })
            }
            None => None,
        };
        if let (ProxyKind::Socks5 | ProxyKind::Socks5h, Some(c)) = (kind, &credentials) {
            if c.user.is_empty() || c.user.len() > 255 || c.password.len() > 255 {
                return Err(bad("a SOCKS5 user name takes 1 to 255 bytes, a password at most 255"));
            }
        }
        let port = parts.port.unwrap_or(if kind == ProxyKind::Https { 443 } else { 1080 });
        Ok(Proxy { kind, host: parts.host, port, credentials })
    }
}

/// A proxy URL as it may be shown: the password replaced.
fn without_password(url: &str) -> String {
    let Some((before_at, after_at)) = url.rsplit_once('@') else { return url.to_string() };
    let scheme_end = before_at.find("://").map_or(0, |i| i + 3);
    match before_at[scheme_end..].split_once(':') {
        Some((user, _)) => format!("{}{user}:***@{after_at}", &before_at[..scheme_end]),
        None => url.to_string(),
    }
}

/// A proxy ready to dial: for `https://`, with the TLS connector for the
/// proxy itself (verified against the client's roots or CA file; the
/// server name and client certificate set for the server are not used).
#[derive(Clone)]
pub struct Via {
    pub proxy: Proxy,
    tls: Option<Tls>,
}

impl fmt::Debug for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Via({})", self.proxy)
    }
}

impl Via {
    pub fn new(proxy: Proxy, settings: &TlsSettings) -> Result<Via, crate::error::Error> {
        let tls = match proxy.kind {
            ProxyKind::Https => Some(Tls::new(&TlsSettings {
                ca_file: settings.ca_file.clone(),
                dangerous_skip_verification: settings.dangerous_skip_verification,
                server_name: None,
                client_cert: None,
            })?),
            _ => None,
        };
        Ok(Via { proxy, tls })
    }

    /// A tunnel to `host:port` through the proxy, over `tcp`, a connection
    /// to the proxy the dial stage made. Errors name the proxy and say what
    /// it answered.
    pub async fn open(&self, tcp: TcpStream, host: &str, port: u16) -> io::Result<ByteStream> {
        let proxy = &self.proxy;
        match (proxy.kind, &self.tls) {
            (ProxyKind::Http, _) => {
                let mut tcp = tcp;
                http::connect(&mut tcp, proxy, host, port).await?;
                Ok(ByteStream::Tcp(tcp))
            }
            (ProxyKind::Https, Some(tls)) => {
                let mut stream = tls
                    .connect(tcp, &proxy.host)
                    .await
                    .map_err(|e| io::Error::new(e.kind(), format!("the proxy {proxy}: {e}")))?;
                http::connect(&mut stream, proxy, host, port).await?;
                Ok(ByteStream::Other(Box::new(stream)))
            }
            (ProxyKind::Https, None) => unreachable!("Via::new gives an https proxy its connector"),
            (ProxyKind::Socks5 | ProxyKind::Socks5h, _) => {
                let mut tcp = tcp;
                socks5::connect(&mut tcp, proxy, host, port).await?;
                Ok(ByteStream::Tcp(tcp))
            }
        }
    }
}

/// Which proxy a client's connections go through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// The one the environment names for each server ([`env`]), if any.
    #[default]
    FromEnvironment,
    /// None: every server dialed directly, whatever the environment says.
    Off,
    /// This one, for every server.
    Use(Proxy),
}

impl ProxySetting {
    /// From the text a user gives: empty for [`ProxySetting::Off`], else a proxy URL.
    pub fn parse(url: &str) -> Result<ProxySetting, String> {
        if url.is_empty() {
            Ok(ProxySetting::Off)
        } else {
            Proxy::parse(url).map(ProxySetting::Use)
        }
    }

    /// The proxy `server` is reached through; the environment, when it is
    /// to be read, through `lookup`. A custom dialer (`dialing_is_custom`)
    /// takes the place of the environment's proxy.
    pub fn for_server(
        &self,
        server: &crate::endpoint::Endpoint,
        dialing_is_custom: bool,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(Proxy, &'static str)>, String> {
        match self {
            ProxySetting::Off => Ok(None),
            ProxySetting::Use(proxy) => Ok(Some((proxy.clone(), "the config"))),
            ProxySetting::FromEnvironment if dialing_is_custom => Ok(None),
            ProxySetting::FromEnvironment => match env::proxy_for(server, lookup) {
                None => Ok(None),
                Some((variable, url)) => match Proxy::parse(&url) {
                    Ok(proxy) => Ok(Some((proxy, variable))),
                    Err(why) => Err(format!(
                        "the environment variable {variable} (used for {server}) holds an {}; set the proxy to \"\" \
                         in the config to ignore the environment",
                        why.trim_start_matches("invalid ").replacen("proxy URL", "invalid proxy URL", 1)
                    )),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_with_credentials_defaults_and_clear_refusals() {
        let p = Proxy::parse("http://127.0.0.1:3128").unwrap();
        assert_eq!(
            (p.kind, p.host.as_str(), p.port, p.credentials.is_none()),
            (ProxyKind::Http, "127.0.0.1", 3128, true)
        );
        let p = Proxy::parse("http://us%40er:p%3Ass@proxy.example/").unwrap();
        let c = p.credentials.as_ref().unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, c.user.as_str(), c.password.as_str()),
            ("proxy.example", 1080, "us@er", "p:ss")
        );
        assert_eq!(format!("{p:?}"), "Proxy(http://proxy.example:1080)", "no password in debug output");
        let p = Proxy::parse("http://[::1]:8080").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 8080));
        assert_eq!((Proxy::parse("proxy:3128").unwrap().kind), ProxyKind::Http, "no scheme means http, as curl");
        assert_eq!(Proxy::parse("HTTPS://p").unwrap().port, 443);
        let p = Proxy::parse("socks5h://u:pw@p").unwrap();
        assert_eq!((p.kind, p.port, p.credentials.unwrap().user.as_str()), (ProxyKind::Socks5h, 1080, "u"));
        assert_eq!(Proxy::parse("socks5://p:9").unwrap().kind, ProxyKind::Socks5);
        for (bad, why) in [
            ("socks4://h:1", "unsupported proxy scheme \"socks4\""),
            ("http://", "host is empty"),
            ("http://h:0", "not a number"),
            ("http://h:x", "not a number"),
            ("http://h:1/path", "no path or query"),
            ("http://a b:1", "contains a space"),
            ("http://u:%zz@h:1", "broken % escape"),
            ("socks5://:pw@h:1", "SOCKS5 user name"),
        ] {
            let error = Proxy::parse(bad).unwrap_err();
            assert!(error.starts_with("invalid proxy URL") && error.contains(why), "{bad}: {error}");
        }
        let error = Proxy::parse("http://u:secret@h:0").unwrap_err();
        assert!(!error.contains("secret") && error.contains("u:***@h:0"), "{error}");
        let error = Proxy::parse("http://u:secret@h:1/x").unwrap_err();
        assert!(!error.contains("secret") && error.contains("u:***@h:1/x"), "{error}");
    }

    #[test]
    fn the_setting_picks_the_config_s_proxy_none_or_the_environment_s() {
        let server = crate::endpoint::Endpoint::parse("ws://s/").unwrap();
        let env = |name: &str| (name == "http_proxy").then(|| "p:3128".to_string());
        let from_env = ProxySetting::FromEnvironment.for_server(&server, false, env).unwrap().unwrap();
        assert_eq!((from_env.0.to_string().as_str(), from_env.1), ("http://p:3128", "http_proxy"));
        assert_eq!(ProxySetting::FromEnvironment.for_server(&server, true, env).unwrap(), None, "a dialer wins");
        assert_eq!(ProxySetting::parse("").unwrap().for_server(&server, false, env).unwrap(), None);
        let set = ProxySetting::parse("socks5://q").unwrap().for_server(&server, false, env).unwrap().unwrap();
        assert_eq!((set.0.kind, set.1), (ProxyKind::Socks5, "the config"));
        let bad = |name: &str| (name == "all_proxy").then(|| "socks4://u:pw@p".to_string());
        let error = ProxySetting::FromEnvironment.for_server(&server, false, bad).unwrap_err();
        assert!(error.starts_with("the environment variable all_proxy (used for ws://s:80/) holds an invalid proxy URL \"socks4://u:***@p\": unsupported proxy scheme"), "{error}");
    }
}
