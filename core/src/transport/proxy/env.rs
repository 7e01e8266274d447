//! The proxy the environment names for a server, read the way curl reads
//! it (its `libcurl-env` page and `lib/url.c`):
//!
//! * the scheme's own variable first: `ws_proxy`/`WS_PROXY`, then
//!   `http_proxy` (lowercase only: on a CGI server `HTTP_PROXY` is set by
//!   the request's `Proxy:` header, so curl ignores it) for `ws://`;
//!   `wss_proxy`/`WSS_PROXY`, then `https_proxy`/`HTTPS_PROXY` for
//!   `wss://`; `http_proxy` for `http://`, `https_proxy`/`HTTPS_PROXY`
//!   for `https://`; `tcp://` and `tls://` have no variable of their own;
//! * then `all_proxy`/`ALL_PROXY`;
//! * unless `no_proxy`/`NO_PROXY` names the host: entries separated by
//!   commas or spaces, a lone `*` matching every host, a leading dot
//!   ignored, names matching themselves and their subdomains without
//!   regard to case, IP addresses and CIDR ranges (`10.0.0.0/8`, `::1/128`)
//!   matching a server written as an IP address. Names are never resolved
//!   to be matched.
//!
//! A variable set to the empty string counts as unset, as in curl. Where
//! this differs from curl: an entry with a port (`host:8080`) never
//! matches (curl ignores the port too, but matches the name).
//!
//! The environment is read once, when a client is created, on the thread
//! that creates it: reading it from a library thread could race a
//! `setenv` of the program's.

use std::net::IpAddr;

use crate::endpoint::{Endpoint, Scheme};

/// The variables that may name a proxy for `scheme`, in the order they are
/// looked at.
pub fn proxy_variables(scheme: Scheme) -> &'static [&'static str] {
    match scheme {
        Scheme::Ws => &["ws_proxy", "WS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY"],
        Scheme::Wss => &["wss_proxy", "WSS_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"],
        Scheme::Http => &["http_proxy", "all_proxy", "ALL_PROXY"],
        Scheme::Https => &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"],
        Scheme::Tcp | Scheme::Tls => &["all_proxy", "ALL_PROXY"],
    }
}

/// The proxy URL the environment names for `server` and the variable it
/// came from, or `None` when none is set or `no_proxy` names the server.
/// `lookup` reads one variable.
pub fn proxy_for(server: &Endpoint, lookup: impl Fn(&str) -> Option<String>) -> Option<(&'static str, String)> {
    let set = |name: &str| lookup(name).filter(|value| !value.is_empty());
    let (variable, url) = proxy_variables(server.scheme).iter().find_map(|name| set(name).map(|url| (*name, url)))?;
    let no_proxy = set("no_proxy").or_else(|| set("NO_PROXY")).unwrap_or_default();
    if bypasses(&no_proxy, &server.host) {
        return None;
    }
    Some((variable, url))
}

/// Whether a `no_proxy` list names `host` (a name, or an IP address
/// without brackets).
pub fn bypasses(no_proxy: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let host_ip = host.split('%').next().and_then(|address| address.parse::<IpAddr>().ok());
    no_proxy.split([',', ' ', '\t']).map(str::trim).filter(|entry| !entry.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry.trim_start_matches('[').trim_end_matches(']');
        match host_ip {
            Some(ip) => ip_matches(entry, ip),
            None => {
                let entry = entry.trim_start_matches('.').trim_end_matches('.');
                !entry.is_empty()
                    && (host.eq_ignore_ascii_case(entry)
                        || (host.len() > entry.len()
                            && host.as_bytes()[host.len() - entry.len() - 1] == b'.'
                            && host[host.len() - entry.len()..].eq_ignore_ascii_case(entry)))
            }
        }
    })
}

/// An IP entry (`10.1.2.3`, `10.0.0.0/8`, `::1`, `fe80::/10`) against an address.
fn ip_matches(entry: &str, ip: IpAddr) -> bool {
    let (address, bits) = match entry.split_once('/') {
        Some((address, bits)) => match bits.parse::<u32>() {
            Ok(bits) => (address, Some(bits)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    let Ok(network) = address.parse::<IpAddr>() else { return false };
    match (network, ip) {
        (IpAddr::V4(network), IpAddr::V4(ip)) => prefix_matches(&network.octets(), &ip.octets(), bits.unwrap_or(32)),
        (IpAddr::V6(network), IpAddr::V6(ip)) => prefix_matches(&network.octets(), &ip.octets(), bits.unwrap_or(128)),
        _ => false,
    }
}

fn prefix_matches(network: &[u8], ip: &[u8], bits: u32) -> bool {
    if bits as usize > network.len() * 8 {
        return false;
    }
    let (whole, rest) = ((bits / 8) as usize, bits % 8);
    network[..whole] == ip[..whole] && (rest == 0 || (network[whole] ^ ip[whole]) >> (8 - rest) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    fn proxy(url: &str, vars: &'static [(&'static str, &'static str)]) -> Option<(&'static str, String)> {
        proxy_for(&Endpoint::parse(url).unwrap(), lookup(vars))
    }

    #[test]
    fn each_scheme_reads_its_own_variables_first_then_all_proxy() {
        let all = &[
            ("ws_proxy", "w"),
            ("http_proxy", "h"),
            ("HTTP_PROXY", "H"),
            ("wss_proxy", "ws"),
            ("https_proxy", "hs"),
            ("HTTPS_PROXY", "HS"),
            ("all_proxy", "a"),
            ("ALL_PROXY", "A"),
        ];
        assert_eq!(proxy("ws://s/", all), Some(("ws_proxy", "w".into())));
        assert_eq!(proxy("wss://s/", all), Some(("wss_proxy", "ws".into())));
        assert_eq!(proxy("tcp://s:1", all), Some(("all_proxy", "a".into())));
        assert_eq!(proxy("tls://s:1", all), Some(("all_proxy", "a".into())));
        assert_eq!(proxy("ws://s/", &[("http_proxy", "h"), ("all_proxy", "a")]), Some(("http_proxy", "h".into())));
        assert_eq!(proxy("ws://s/", &[("HTTP_PROXY", "H")]), None, "uppercase HTTP_PROXY is ignored, as curl");
        assert_eq!(proxy("ws://s/", &[("HTTP_PROXY", "H"), ("ALL_PROXY", "A")]), Some(("ALL_PROXY", "A".into())));
        assert_eq!(proxy("wss://s/", &[("HTTPS_PROXY", "HS")]), Some(("HTTPS_PROXY", "HS".into())));
        assert_eq!(proxy("wss://s/", &[("http_proxy", "h")]), None, "http_proxy is not for wss");
        assert_eq!(proxy("ws://s/", &[("ws_proxy", ""), ("http_proxy", "h")]), Some(("http_proxy", "h".into())));
        assert_eq!(proxy("tcp://s:1", &[]), None);
    }

    #[test]
    fn no_proxy_bypasses_as_curl_matches() {
        assert_eq!(proxy("ws://s/", &[("all_proxy", "a"), ("no_proxy", "s")]), None);
        assert_eq!(proxy("ws://s/", &[("all_proxy", "a"), ("NO_PROXY", "s")]), None);
        assert!(
            proxy("ws://s/", &[("all_proxy", "a"), ("no_proxy", "t"), ("NO_PROXY", "s")]).is_some(),
            "lowercase first"
        );
        for (list, host, bypassed) in [
            ("*", "anything.example", true),
            ("*.example", "a.example", false),
            ("example.com", "example.com", true),
            ("example.com", "API.Example.COM", true),
            (".example.com", "example.com", true),
            (".example.com", "a.b.example.com", true),
            ("example.com", "badexample.com", false),
            ("example.com", "example.com.", true),
            ("other, example.com", "example.com", true),
            ("other example.com", "example.com", true),
            ("a,,b", "c", false),
            ("", "c", false),
            ("10.0.0.0/8", "10.200.3.4", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("192.168.1.0/25", "192.168.1.127", true),
            ("192.168.1.0/25", "192.168.1.128", false),
            ("10.0.0.0/33", "10.0.0.1", false),
            ("::1", "::1", true),
            ("[::1]", "::1", true),
            ("fe80::/10", "fe80::1%eth0", true),
            ("fe80::/10", "fec0::1", false),
            ("127.0.0.1", "localhost", false),
            ("localhost", "127.0.0.1", false),
            ("0.0.0.0/0", "::1", false),
            ("example.com:8080", "example.com", false),
        ] {
            assert_eq!(bypasses(list, host), bypassed, "no_proxy={list:?} host={host}");
        }
    }
}
