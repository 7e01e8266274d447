//! Connections through a real HTTP proxy: Debian's tinyproxy, started here
//! on a free loopback port (with and without basic authentication), for
//! tcp, tls and ws, and a wrong password reported with the proxy's answer.
//! Skipped (with a SKIP line) when tinyproxy is not installed, except under
//! CI, where `.ci/run` installs it and a skip is a failure.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{is_connected, receive_messages, wait_for, Server};
use longconn_core::policy::backoff::BackoffPolicy;
use longconn_core::transport::proxy::HttpProxy;
use longconn_core::{Client, ClientConfig, Event};

const WITHIN: Duration = Duration::from_secs(10);

/// A tinyproxy process, stopped by its pid, its directory removed.
struct Tinyproxy {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Tinyproxy {
    /// `None` when tinyproxy is missing (outside CI).
    fn start(auth: Option<(&str, &str)>) -> Option<Tinyproxy> {
        if Command::new("tinyproxy").arg("-v").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "tinyproxy is missing (apt-get install tinyproxy)");
            println!("SKIP: tinyproxy is not installed (apt-get install tinyproxy)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("longconn-tinyproxy-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // No ConnectPort line: CONNECT to any port (the servers' ports are free ones).
        let mut conf =
            format!("Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 30\nLogLevel Info\nMaxClients 20\n");
        if let Some((user, password)) = auth {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let conf_path = dir.join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tinyproxy");
        // Ready once it accepts connections.
        let deadline = Instant::now() + WITHIN;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tinyproxy did not start: {:?}", child.try_wait());
            std::thread::sleep(Duration::from_millis(10));
        }
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
        Some(Tinyproxy { child, port, dir })
    }

    fn url(&self, auth: Option<(&str, &str)>) -> String {
        match auth {
            Some((user, password)) => format!("http://{user}:{password}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn through(proxy: &str, url: &str) -> ClientConfig {
    let mut config = ClientConfig::new(url).unwrap();
    config.proxy = Some(HttpProxy::parse(proxy).unwrap());
    config.tls.dangerous_skip_verification = true;
    config.backoff = BackoffPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        ..BackoffPolicy::default()
    };
    config
}

fn echo_through(config: ClientConfig, what: &str) {
    let client = Client::new(config).unwrap();
    client.connect().unwrap();
    let events = wait_for(&client, WITHIN, is_connected);
    let Some(Event::Connected { peer, .. }) = events.last() else { unreachable!() };
    assert!(peer.contains("through http://127.0.0.1:"), "{what}: {peer}");
    client.send(what.as_bytes()).unwrap();
    assert_eq!(receive_messages(&client, 1, WITHIN), [what.as_bytes().to_vec()], "{what}");
}

#[test]
fn every_transport_runs_through_an_http_proxy_with_and_without_credentials() {
    let server = Server::start("echo", &["--tls-port", "0"]);
    for auth in [None, Some(("longconn", "s3cret"))] {
        let Some(proxy) = Tinyproxy::start(auth) else { return };
        let proxy_url = proxy.url(auth);
        echo_through(through(&proxy_url, &server.url("longconn")), "tcp");
        echo_through(through(&proxy_url, &format!("tls://127.0.0.1:{}", server.ports.tls)), "tls");
        echo_through(through(&proxy_url, &format!("ws://127.0.0.1:{}/", server.ports.ws)), "ws");
    }
}

#[test]
fn a_wrong_password_is_an_error_naming_the_proxy_and_its_answer() {
    let server = Server::start("echo", &[]);
    let Some(proxy) = Tinyproxy::start(Some(("longconn", "s3cret"))) else { return };
    let client = Client::new(through(&proxy.url(Some(("longconn", "wrong"))), &server.url("longconn"))).unwrap();
    client.connect().unwrap();
    let events = wait_for(&client, WITHIN, |e| matches!(e, Event::Error { .. }));
    let Some(Event::Error { detail, .. }) = events.last() else { unreachable!() };
    assert!(
        detail.contains("wants other credentials") && detail.contains(&format!("http://127.0.0.1:{}", proxy.port)),
        "{detail}"
    );
    // Reconnection goes on: another attempt is scheduled.
    wait_for(&client, WITHIN, |e| matches!(e, Event::ReconnectScheduled { .. }));
}
