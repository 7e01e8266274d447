//! TLS (`tls://`, `wss://`) against the real server's self-signed certificate:
//! verification on by default, a CA file that makes it work, a name mismatch,
//! and the dangerous switch.

mod common;

use std::time::Duration;

use common::{is_connected, receive_messages, wait_for, Server};
use longconn::backoff::BackoffPolicy;
use longconn::tls::TlsSettings;
use longconn::{Client, ClientConfig, ErrorKind, Event};

const WITHIN: Duration = Duration::from_secs(10);

fn tls_server() -> Server {
    Server::start("echo", &["--quiet", "--tls-port", "0", "--wss-port", "0"])
}

fn client(url: &str, tls: TlsSettings) -> Client {
    let mut c = ClientConfig::new(url).unwrap();
    c.tls = tls;
    c.backoff = BackoffPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        ..BackoffPolicy::default()
    };
    let client = Client::new(c).unwrap();
    client.connect().unwrap();
    client
}

fn trusting(server: &Server) -> TlsSettings {
    TlsSettings { ca_file: server.certificate.clone(), ..TlsSettings::default() }
}

/// The first connection error, and proof that reconnection carries on.
fn first_error_then_retry(client: &Client) -> String {
    let events = wait_for(client, WITHIN, |e| matches!(e, Event::ReconnectScheduled { .. }));
    let detail = events
        .iter()
        .find_map(|e| match e {
            Event::Error { kind: ErrorKind::ConnectFailed, detail } => Some(detail.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no connect error in {events:?}"));
    assert!(!events.iter().any(is_connected), "{events:?}");
    detail
}

#[test]
fn a_ca_file_makes_tls_and_wss_work() {
    let server = tls_server();
    assert!(server.certificate.as_ref().is_some_and(|p| p.is_file()), "the server wrote its certificate");
    for url in [format!("tls://127.0.0.1:{}", server.ports.tls), format!("wss://localhost:{}/", server.ports.wss)] {
        let client = client(&url, trusting(&server));
        wait_for(&client, WITHIN, is_connected);
        client.send(b"over TLS").unwrap();
        assert_eq!(receive_messages(&client, 1, WITHIN), vec![b"over TLS".to_vec()], "{url}");
    }
}

#[test]
fn an_unknown_issuer_is_rejected_with_a_clear_error_and_retried() {
    let server = tls_server();
    let client = client(&format!("tls://127.0.0.1:{}", server.ports.tls), TlsSettings::default());
    let detail = first_error_then_retry(&client);
    assert!(detail.contains("unknown issuer"), "{detail}");
    // Still trying: a second attempt fails the same way.
    let again = first_error_then_retry(&client);
    assert!(again.contains("unknown issuer"), "{again}");
}

#[test]
fn a_name_mismatch_is_rejected_with_a_clear_error() {
    let server = tls_server();
    let settings = TlsSettings { server_name: Some("wrong.example".into()), ..trusting(&server) };
    let client = client(&format!("wss://127.0.0.1:{}/", server.ports.wss), settings);
    let detail = first_error_then_retry(&client);
    assert!(detail.contains("not valid for the name \"wrong.example\""), "{detail}");
}

#[test]
fn a_bad_ca_file_is_refused_when_the_client_is_created() {
    let mut c = ClientConfig::new("tls://127.0.0.1:1").unwrap();
    c.tls.ca_file = Some("/nonexistent/ca.pem".into());
    let error = Client::new(c).err().expect("refused");
    assert!(error.to_string().contains("cannot read CA file /nonexistent/ca.pem"), "{error}");
}

#[test]
fn the_dangerous_switch_accepts_any_certificate() {
    let server = tls_server();
    let settings = TlsSettings { dangerous_skip_verification: true, ..TlsSettings::default() };
    let client = client(&format!("tls://127.0.0.1:{}", server.ports.tls), settings);
    wait_for(&client, WITHIN, is_connected);
}
