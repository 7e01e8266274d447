//! The URL parser: any text either parses into an endpoint that prints and
//! parses back to itself, or fails with a reason.

use longconn_core::endpoint::Endpoint;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(url) = std::str::from_utf8(data) else { return };
        match Endpoint::parse(url) {
            Ok(endpoint) => {
                assert!(endpoint.port != 0 && !endpoint.host.is_empty());
                let again = Endpoint::parse(&endpoint.to_string()).expect("a printed endpoint parses");
                assert_eq!(again.port, endpoint.port);
                assert_eq!(again.scheme, endpoint.scheme);
            }
            Err(e) => assert!(e.0.starts_with("invalid URL")),
        }
    });
}
