//! The URL parsers: any text either parses into a server endpoint (or a
//! proxy) that prints and parses back to itself, or fails with a reason;
//! the same text as a `no_proxy` list matched against a host never panics.

use longconn_core::endpoint::Endpoint;
use longconn_core::transport::proxy::{env, Proxy};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(url) = std::str::from_utf8(data) else { return };
        match Endpoint::parse(url) {
            Ok(endpoint) => {
                assert!(endpoint.port != 0 && !endpoint.host.is_empty());
                let again = Endpoint::parse(&endpoint.to_string()).expect("a printed endpoint parses");
                assert_eq!(again, endpoint);
            }
            Err(e) => assert!(e.0.starts_with("invalid URL")),
        }
        match Proxy::parse(url) {
            Ok(proxy) => {
                let again = Proxy::parse(&proxy.to_string()).expect("a printed proxy parses");
                assert_eq!((again.kind, again.host, again.port), (proxy.kind, proxy.host.clone(), proxy.port));
                let _ = env::bypasses(url, &proxy.host);
            }
            Err(e) => assert!(e.starts_with("invalid proxy URL")),
        }
    });
}
