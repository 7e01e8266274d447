//! Connections through real proxy servers from Debian, started here on free
//! loopback ports: tinyproxy for HTTP CONNECT, tinyproxy behind stunnel for
//! an `https://` proxy, microsocks for SOCKS5 (`socks5://` and
//! `socks5h://`); with and without credentials; for tcp, tls, ws and wss;
//! set in the config and taken from each environment variable curl reads,
//! with `NO_PROXY` bypassing; a wrong password reported with the proxy's
//! answer. Skipped (with a SKIP line) when a proxy is not installed, except
//! under CI, where `.ci/run` installs them and a skip is a failure.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{is_connected, receive_messages, wait_for, Server};
use longconn_core::policy::backoff::BackoffPolicy;
use longconn_core::transport::proxy::ProxySetting;
use longconn_core::{Client, ClientConfig, Event};

const WITHIN: Duration = Duration::from_secs(10);

/// Every variable a proxy may come from, cleared in the children that test them.
const PROXY_VARIABLES: &[&str] = &[
    "ws_proxy",
    "WS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "wss_proxy",
    "WSS_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether `program` is on the PATH; outside CI a missing one skips the test.
fn installed(program: &str, package: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| dir.join(program).is_file()) {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "{program} is missing (apt-get install {package})");
    println!("SKIP: {program} is not installed (apt-get install {package})");
    false
}

/// A scratch directory, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("longconn-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A proxy process, stopped by its pid.
struct Process(Child);

impl Process {
    /// Starts `command` and waits until `port` accepts connections.
    fn start(mut command: Command, port: u16) -> Process {
        let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start the proxy");
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
        let deadline = Instant::now() + WITHIN;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{command:?} did not start: {:?}", child.try_wait());
            std::thread::sleep(Duration::from_millis(10));
        }
        Process(child)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running proxy and the URL that reaches it (with the credentials it wants).
struct Proxy {
    url: String,
    _processes: Vec<Process>,
    _scratch: Scratch,
}

/// The kinds of proxy the tests start.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Http,
    Https,
    Socks5,
    Socks5h,
}

impl Proxy {
    /// `None` when the proxy's program is missing (outside CI).
    fn start(kind: Kind, auth: Option<(&str, &str)>) -> Option<Proxy> {
        let scratch = Scratch::new("proxy");
        let port = free_port();
        let user_info = auth.map_or(String::new(), |(user, password)| format!("{user}:{password}@"));
        let mut processes = Vec::new();
        let url = match kind {
            Kind::Http | Kind::Https => {
                if !installed("tinyproxy", "tinyproxy") || (kind == Kind::Https && !installed("stunnel4", "stunnel4")) {
                    return None;
                }
                let http_port = if kind == Kind::Http { port } else { free_port() };
                // No ConnectPort line: CONNECT to any port (the servers' ports are free ones).
                let mut conf = format!(
                    "Port {http_port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 30\nLogLevel Info\nMaxClients 40\n"
                );
                if let Some((user, password)) = auth {
                    conf.push_str(&format!("BasicAuth {user} {password}\n"));
                }
                let conf_path = scratch.0.join("tinyproxy.conf");
                std::fs::write(&conf_path, conf).unwrap();
                let mut tinyproxy = Command::new("tinyproxy");
                tinyproxy.args(["-d", "-c"]).arg(&conf_path);
                processes.push(Process::start(tinyproxy, http_port));
                if kind == Kind::Https {
                    // TLS in front of tinyproxy, with a certificate made here.
                    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
                    std::fs::write(scratch.0.join("cert.pem"), key.cert.pem()).unwrap();
                    std::fs::write(scratch.0.join("key.pem"), key.signing_key.serialize_pem()).unwrap();
                    let conf = format!(
                        "foreground = yes\npid =\n[proxy]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{http_port}\n\
                         cert = {dir}/cert.pem\nkey = {dir}/key.pem\n",
                        dir = scratch.0.display()
                    );
                    let conf_path = scratch.0.join("stunnel.conf");
                    std::fs::write(&conf_path, conf).unwrap();
                    let mut stunnel = Command::new("stunnel4");
                    stunnel.arg(&conf_path);
                    processes.push(Process::start(stunnel, port));
                    format!("https://{user_info}127.0.0.1:{port}")
                } else {
                    format!("http://{user_info}127.0.0.1:{port}")
                }
            }
            Kind::Socks5 | Kind::Socks5h => {
                if !installed("microsocks", "microsocks") {
                    return None;
                }
                let mut microsocks = Command::new("microsocks");
                microsocks.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
                if let Some((user, password)) = auth {
                    microsocks.args(["-u", user, "-P", password]);
                }
                processes.push(Process::start(microsocks, port));
                let scheme = if kind == Kind::Socks5 { "socks5" } else { "socks5h" };
                format!("{scheme}://{user_info}127.0.0.1:{port}")
            }
        };
        Some(Proxy { url, _processes: processes, _scratch: scratch })
    }

    /// The proxy's URL as events show it: no credentials.
    fn shown(&self) -> String {
        match self.url.split_once('@') {
            Some((before, after)) => format!("{}://{after}", before.split("://").next().unwrap()),
            None => self.url.clone(),
        }
    }
}

fn config(url: &str, proxy: ProxySetting) -> ClientConfig {
    let mut config = ClientConfig::new(url).unwrap();
    config.proxy = proxy;
    config.tls.dangerous_skip_verification = true;
    config.backoff = BackoffPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        ..BackoffPolicy::default()
    };
    config
}

/// Connects, checks the peer the connected event names, and echoes a message.
fn echo_through(config: ClientConfig, expected_peer: &str, what: &str) {
    let client = Client::new(config).unwrap();
    client.connect().unwrap();
    let events = wait_for(&client, WITHIN, is_connected);
    let Some(Event::Connected { peer, .. }) = events.last() else { unreachable!() };
    assert!(peer.contains(expected_peer), "{what}: {peer} (expected {expected_peer})");
    client.send(what.as_bytes()).unwrap();
    assert_eq!(receive_messages(&client, 1, WITHIN), [what.as_bytes().to_vec()], "{what}");
}

fn urls(server: &Server) -> [(&'static str, String); 4] {
    [
        ("tcp", server.url("longconn")),
        ("tls", format!("tls://127.0.0.1:{}", server.ports.tls)),
        ("ws", format!("ws://127.0.0.1:{}/", server.ports.ws)),
        ("wss", format!("wss://127.0.0.1:{}/", server.ports.wss)),
    ]
}

#[test]
fn every_transport_runs_through_every_kind_of_proxy_with_and_without_credentials() {
    let server = Server::start("echo", &["--tls-port", "0", "--wss-port", "0"]);
    for kind in [Kind::Http, Kind::Https, Kind::Socks5, Kind::Socks5h] {
        for auth in [None, Some(("longconn", "s3cret"))] {
            let Some(proxy) = Proxy::start(kind, auth) else { return };
            for (transport, url) in urls(&server) {
                let setting = ProxySetting::parse(&proxy.url).unwrap();
                let what = format!("{transport} through {kind:?} (credentials: {})", auth.is_some());
                echo_through(config(&url, setting), &format!("through {}", proxy.shown()), &what);
            }
        }
    }
}

#[test]
fn a_wrong_password_is_an_error_naming_the_proxy_and_its_answer() {
    let server = Server::start("echo", &[]);
    for (kind, answer) in
        [(Kind::Http, "wants other credentials"), (Kind::Socks5, "refused the user name and password")]
    {
        let Some(proxy) = Proxy::start(kind, Some(("longconn", "s3cret"))) else { return };
        let wrong = proxy.url.replace("s3cret", "wrong");
        let client = Client::new(config(&server.url("longconn"), ProxySetting::parse(&wrong).unwrap())).unwrap();
        client.connect().unwrap();
        let events = wait_for(&client, WITHIN, |e| matches!(e, Event::Error { .. }));
        let Some(Event::Error { detail, .. }) = events.last() else { unreachable!() };
        assert!(detail.contains(answer) && detail.contains(&proxy.shown()), "{kind:?}: {detail}");
        assert!(!detail.contains("wrong"), "no password in the message: {detail}");
        // Reconnection goes on: another attempt is scheduled.
        wait_for(&client, WITHIN, |e| matches!(e, Event::ReconnectScheduled { .. }));
    }
}

/// Run by [`each_environment_variable_is_read_as_curl_reads_it`] in a child
/// process, whose environment it sets: connects with the default setting
/// (the environment's proxy) and checks the peer named.
#[test]
#[ignore = "run in a child process by each_environment_variable_is_read_as_curl_reads_it"]
fn child_connects_as_its_environment_says() {
    let url = std::env::var("LONGCONN_TEST_URL").expect("run by the parent test");
    let expected_peer = std::env::var("LONGCONN_TEST_PEER").unwrap();
    echo_through(config(&url, ProxySetting::FromEnvironment), &expected_peer, &url);
}

#[test]
fn each_environment_variable_is_read_as_curl_reads_it() {
    let server = Server::start("echo", &["--tls-port", "0", "--wss-port", "0"]);
    let Some(proxy) = Proxy::start(Kind::Http, None) else { return };
    let Some(socks) = Proxy::start(Kind::Socks5h, None) else { return };
    let [tcp, tls, ws, wss] = urls(&server).map(|(_, url)| url);
    let through_http = format!("through {}", proxy.url);
    let through_socks = format!("through {}", socks.url);
    let direct = "127.0.0.1:".to_string();
    type Variables<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, Variables, &str)> = vec![
        (&ws, vec![("ws_proxy", &proxy.url)], &through_http),
        (&ws, vec![("WS_PROXY", &proxy.url)], &through_http),
        (&ws, vec![("http_proxy", &proxy.url), ("all_proxy", &socks.url)], &through_http),
        (&ws, vec![("HTTP_PROXY", &proxy.url), ("all_proxy", &socks.url)], &through_socks),
        (&wss, vec![("wss_proxy", &proxy.url), ("https_proxy", &socks.url)], &through_http),
        (&wss, vec![("https_proxy", &proxy.url), ("all_proxy", &socks.url)], &through_http),
        (&wss, vec![("HTTPS_PROXY", &proxy.url)], &through_http),
        (&tcp, vec![("http_proxy", &proxy.url), ("all_proxy", &socks.url)], &through_socks),
        (&tls, vec![("ALL_PROXY", &socks.url)], &through_socks),
        (&tcp, vec![("all_proxy", &socks.url), ("NO_PROXY", "example.com, 127.0.0.0/8")], &direct),
        (&ws, vec![("ws_proxy", &proxy.url), ("no_proxy", "127.0.0.1")], &direct),
        (&ws, vec![("ws_proxy", &proxy.url), ("no_proxy", "*")], &direct),
        (&ws, vec![("ws_proxy", &proxy.url), ("no_proxy", "10.0.0.0/8,localhost")], &through_http),
    ];
    for (url, variables, expected_peer) in cases {
        let mut child = Command::new(std::env::current_exe().unwrap());
        child.args(["--exact", "child_connects_as_its_environment_says", "--ignored", "--nocapture"]);
        for name in PROXY_VARIABLES {
            child.env_remove(name);
        }
        child.envs(variables.iter().copied()).env("LONGCONN_TEST_URL", url).env("LONGCONN_TEST_PEER", expected_peer);
        let output = child.output().unwrap();
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).contains("1 passed"),
            "{url} with {variables:?} should connect {expected_peer}:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_config_s_empty_proxy_ignores_the_environment_and_a_bad_variable_is_named() {
    // In a child, so the environment is its own: `all_proxy` holds a proxy
    // URL that cannot be used; the empty setting must connect directly anyway.
    if let Ok(url) = std::env::var("LONGCONN_TEST_OFF_URL") {
        echo_through(config(&url, ProxySetting::Off), "127.0.0.1:", "off");
        let error = Client::new(config(&url, ProxySetting::FromEnvironment)).err().expect("a bad variable");
        assert!(error.to_string().contains("the environment variable all_proxy"), "{error}");
        return;
    }
    let server = Server::start("echo", &[]);
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "the_config_s_empty_proxy_ignores_the_environment_and_a_bad_variable_is_named"])
        .env("all_proxy", "socks4://127.0.0.1:1")
        .env("LONGCONN_TEST_OFF_URL", server.url("longconn"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("1 passed"), "{stdout}");
}
