//! TLS (`tls://`, `wss://`) against the real server's self-signed certificate:
//! verification on by default, a CA file that makes it work, a name mismatch,
//! and the dangerous switch.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{is_connected, receive_messages, wait_for, Server};
use longconn_core::policy::backoff::BackoffPolicy;
use longconn_core::transport::tls::TlsSettings;
use longconn_core::{Client, ClientConfig, ErrorKind, Event};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

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
fn the_plain_framings_work_over_tls_too() {
    for framing in ["length", "line"] {
        let server = Server::start("echo", &["--quiet", "--tls-port", "0", "--tls-framing", framing]);
        let url = format!("tls://127.0.0.1:{}?framing={framing}", server.ports.tls);
        let client = client(&url, trusting(&server));
        for word in ["one", "two", "three"] {
            client.send(word.as_bytes()).unwrap();
        }
        assert_eq!(receive_messages(&client, 3, WITHIN), [&b"one"[..], b"two", b"three"], "{framing}");
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
fn the_self_signed_key_stays_in_memory_and_killed_servers_leave_no_certificates_behind() {
    // The directory a killed server left: named after a process that has exited.
    let mut exited = std::process::Command::new("true").spawn().unwrap();
    exited.wait().unwrap();
    let stale = std::env::temp_dir().join(format!("longconn-server-{}", exited.id()));
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("cert.pem"), "old").unwrap();
    let server = tls_server();
    assert!(!stale.exists(), "the stale directory was removed");
    let certificate = server.certificate.clone().expect("a self-signed certificate");
    let dir = certificate.parent().unwrap();
    let files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files, vec!["cert.pem"], "only the certificate is written");
    // And it still serves TLS with that certificate.
    let client = client(&format!("tls://127.0.0.1:{}", server.ports.tls), trusting(&server));
    wait_for(&client, WITHIN, is_connected);
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

/// A directory of this test's own for certificate files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("longconn-tls-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, file: &str, pem: String) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, pem).unwrap();
    path
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let dir = scratch("mtls");
    // A CA of our own, and a client certificate it signs.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let client_key = KeyPair::generate().unwrap();
    let client_cert =
        CertificateParams::new(vec!["client.test".to_string()]).unwrap().signed_by(&client_key, &issuer).unwrap();
    let ca_file = write(&dir, "ca.pem", ca_cert.pem());
    let cert_file = write(&dir, "client.pem", client_cert.pem());
    let key_file = write(&dir, "client.key", client_key.serialize_pem());

    let server = Server::start("echo", &["--quiet", "--tls-port", "0", "--client-ca", ca_file.to_str().unwrap()]);
    let url = format!("tls://127.0.0.1:{}", server.ports.tls);
    let with_cert = client(&url, TlsSettings { client_cert: Some((cert_file, key_file)), ..trusting(&server) });
    wait_for(&with_cert, WITHIN, is_connected);
    with_cert.send(b"mutual").unwrap();
    assert_eq!(receive_messages(&with_cert, 1, WITHIN), vec![b"mutual".to_vec()]);

    // Without a client certificate the server refuses the connection.
    let without = client(&url, trusting(&server));
    let events = wait_for(&without, WITHIN, |e| matches!(e, Event::ReconnectScheduled { .. }));
    assert!(!events.iter().any(is_connected), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Error { detail, .. } if detail.to_lowercase().contains("certificate"))),
        "{events:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_expired_certificate_is_reported_as_expired() {
    let dir = scratch("expired");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let cert_file = write(&dir, "cert.pem", cert.pem());
    let key_file = write(&dir, "key.pem", key.serialize_pem());
    let server = Server::start(
        "echo",
        &["--quiet", "--tls-port", "0", "--cert", cert_file.to_str().unwrap(), "--key", key_file.to_str().unwrap()],
    );
    let settings = TlsSettings { ca_file: Some(cert_file), ..TlsSettings::default() };
    let client = client(&format!("tls://localhost:{}", server.ports.tls), settings);
    let detail = first_error_then_retry(&client);
    assert!(detail.contains("has expired"), "{detail}");
    let _ = std::fs::remove_dir_all(dir);
}
