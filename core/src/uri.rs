//! URL text split into its parts by a maintained parser (`http::Uri`, the
//! hyperium crate tungstenite already brings, so the library grows by
//! nothing), with the checks that parser leaves to its caller: a port it
//! would silently drop (`:99999`), text outside ASCII, a fragment it would
//! silently cut off, an empty host. Server URLs ([`crate::endpoint`]) and
//! proxy URLs ([`crate::transport::proxy`]) both start here and add their
//! own rules on top.

/// The parts of an absolute URL with an authority (`scheme://host...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    /// In lowercase.
    pub scheme: String,
    /// What stood before `@`, still percent-encoded.
    pub user_info: Option<String>,
    /// A name or an IP address, IPv6 without brackets (with its zone if
    /// one was given: `fe80::1%eth0`). Names are in lowercase.
    pub host: String,
    /// Whether the host was written in brackets (an IPv6 literal).
    pub bracketed: bool,
    pub port: Option<u16>,
    /// `/` at least, then the query if there is one.
    pub path_and_query: String,
}

/// Splits `url`; the error says what is wrong, without the URL (the
/// caller names it).
pub fn split(url: &str) -> Result<Parts, String> {
    if let Some(c) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(match c {
            ' ' => "it contains a space (write %20 in a path or query; a host or port has none)".to_string(),
            c => format!("it contains the control or space character {c:?}"),
        });
    }
    if !url.is_ascii() {
        return Err("it contains characters outside ASCII (percent-encode them; an international host name in \
                    its xn-- form)"
            .to_string());
    }
    if url.contains('#') {
        return Err("a fragment (#...) is never sent to a server".to_string());
    }
    let Some((_, after_scheme)) = url.split_once("://") else {
        return Err("expected scheme://host".to_string());
    };
    if after_scheme.is_empty() || after_scheme.starts_with(['/', '?']) {
        return Err("the host is empty".to_string());
    }
    let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| format!("{e}"))?;
    let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
    let authority = uri.authority().ok_or("expected scheme://host")?.as_str();
    let (user_info, host_port) = match authority.rsplit_once('@') {
        Some((user_info, host_port)) => (Some(user_info.to_string()), host_port),
        None => (None, authority),
    };
    // The parser checked the authority's characters; the host and port
    // are taken apart here because it drops a port out of range.
    let (host, port_text, bracketed) = match host_port.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']').ok_or("an IPv6 address lacks its ]")?;
            (host, after.strip_prefix(':'), true)
        }
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port), false),
            None => (host_port, None, false),
        },
    };
    if host.is_empty() {
        return Err("the host is empty".to_string());
    }
    if bracketed {
        let (address, zone) = host.split_once('%').map_or((host, None), |(a, z)| (a, Some(z)));
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("[{host}] is not an IPv6 address"));
        }
        if zone.is_some_and(|z| z.is_empty() || !z.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))) {
            return Err(format!("[{host}] has an invalid zone after %"));
        }
    } else if !host.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
        return Err(format!("{host:?} is not a host name or an IPv4 address"));
    }
    let port = match port_text {
        None => None,
        Some(text) => Some(
            text.parse::<u16>()
                .ok()
                .filter(|p| *p != 0 && text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("the port {text:?} is not a number from 1 to 65535"))?,
        ),
    };
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let path_and_query =
        if path_and_query.starts_with('/') { path_and_query.to_string() } else { format!("/{path_and_query}") };
    let host = if bracketed { host.to_string() } else { host.to_ascii_lowercase() };
    Ok(Parts { scheme, user_info, host, bracketed, port, path_and_query })
}

/// `%XX` escapes decoded; `None` for a broken escape or invalid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_what_the_parser_accepts_into_parts() {
        let p = split("WS://User:pw@Example.COM:8080/a%20b?x=1").unwrap();
        assert_eq!(p.scheme, "ws");
        assert_eq!(p.user_info.as_deref(), Some("User:pw"));
        assert_eq!((p.host.as_str(), p.port, p.bracketed), ("example.com", Some(8080), false));
        assert_eq!(p.path_and_query, "/a%20b?x=1");
        let p = split("tcp://[::1]:7070?framing=line").unwrap();
        assert_eq!((p.host.as_str(), p.port, p.bracketed), ("::1", Some(7070), true));
        assert_eq!(p.path_and_query, "/?framing=line");
        let p = split("ws://[fe80::1%eth0]").unwrap();
        assert_eq!((p.host.as_str(), p.port, p.path_and_query.as_str()), ("fe80::1%eth0", None, "/"));
    }

    #[test]
    fn refuses_what_the_parser_would_let_through_or_mangle() {
        for (url, why) in [
            ("ws://127.0.0.1:7080/a b", "contains a space"),
            ("ws://ho st:80/", "contains a space"),
            ("ws://h/\t", "control or space"),
            ("ws://h/ä", "outside ASCII"),
            ("ws://h/#top", "fragment"),
            ("h:80", "expected scheme://host"),
            ("ws://h:99999/", "not a number from 1 to 65535"),
            ("ws://h:0/", "not a number from 1 to 65535"),
            ("ws://h:/", "not a number from 1 to 65535"),
            ("ws://h:+80/", "not a number"),
            ("ws://:80/", "host is empty"),
            ("ws://", "host is empty"),
            ("ws:///x", "host is empty"),
            ("ws://[example]:80/", "not an IPv6 address"),
            ("ws://[::1%]:80/", "invalid zone"),
            ("tcp://::1:80", "invalid"),
            ("ws://a!b:80/", "not a host name"),
        ] {
            let error = split(url).unwrap_err();
            assert!(error.contains(why), "{url}: {error}");
        }
    }

    #[test]
    fn percent_decoding_refuses_broken_escapes() {
        assert_eq!(percent_decode("us%40er").as_deref(), Some("us@er"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }
}
