//! Command-line flags of the test server.

use std::time::Duration;

use bytes::Bytes;
use longconn_core::config::MAX_FRAME_SIZE_LIMIT;
use longconn_core::protocol::{Framing, DEFAULT_MAX_FRAME_SIZE};

use crate::history::Window;
pub use crate::mode::Mode;
use crate::store::Location;

pub const USAGE: &str = "usage: longconn-server [--mode chat|echo|sink] [--host ADDR]
       [--longconn-port N] [--length-port N] [--line-port N] [--ws-port N]
       [--tls-port N] [--tls-framing longconn|length|line] [--wss-port N]
       [--cert FILE --key FILE]                     (TLS: a self-signed certificate is made
                                                    when no files are given)
       [--client-ca FILE]                           (TLS: require client certificates from this CA)
                                                    (0: any free port, off: disabled)
       [--idle-timeout SECONDS] [--max-frame BYTES] [--plain-ping TEXT] [--plain-pong TEXT]
       [--threads N] [--quiet] [--help] [--version]
       [--data-dir DIR|memory]                      (where sessions and history are kept)
       [--store redis://HOST:PORT[/DB]]             (instead: a Redis shared with other nodes,
                                                    which then share sessions and the room)
       [--history MESSAGES] [--history-bytes BYTES] [--history-age SECONDS]
       [--session-ttl SECONDS] [--protocol 1|2]
       [--token-file FILE]                          (clients must send this token in their hello;
                                                    read on every connection)
defaults: --mode chat --host 127.0.0.1 --longconn-port 7070 --length-port 7071 --line-port 7072 --ws-port 7080
          --tls-framing longconn --idle-timeout 60 --max-frame 1048576 --plain-ping ping --plain-pong pong
          --threads 2 --history 100000 --history-bytes 67108864 --history-age 86400 --session-ttl 300
          --protocol 2 --data-dir $XDG_STATE_HOME/longconn-server (~/.local/state/longconn-server),
          file MODE-PORT.db; memory when the longconn port is 0 or off";

/// Flags that take a value.
const KNOWN_FLAGS: [&str; 25] = [
    "--token-file",
    "--store",
    "--data-dir",
    "--history",
    "--history-bytes",
    "--history-age",
    "--session-ttl",
    "--protocol",
    "--mode",
    "--host",
    "--longconn-port",
    "--length-port",
    "--line-port",
    "--ws-port",
    "--tls-port",
    "--tls-framing",
    "--wss-port",
    "--cert",
    "--key",
    "--client-ca",
    "--idle-timeout",
    "--max-frame",
    "--plain-ping",
    "--plain-pong",
    "--threads",
];

#[derive(Debug, Clone)]
pub struct Args {
    pub mode: Mode,
    pub host: String,
    pub longconn_port: Option<u16>,
    pub length_port: Option<u16>,
    pub line_port: Option<u16>,
    /// WebSocket, with the chat page at `/`.
    pub ws_port: Option<u16>,
    /// TLS, speaking `tls_framing` inside.
    pub tls_port: Option<u16>,
    pub tls_framing: Framing,
    /// WebSocket over TLS.
    pub wss_port: Option<u16>,
    /// PEM certificate chain and key for the TLS listeners.
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    /// CA whose client certificates the TLS listeners require.
    pub client_ca: Option<std::path::PathBuf>,
    /// Clients silent for longer are disconnected; zero disables eviction.
    pub idle_timeout: Duration,
    pub max_frame: usize,
    pub plain_ping: Bytes,
    pub plain_pong: Bytes,
    pub threads: usize,
    /// Do not log each connection.
    pub quiet: bool,
    /// Where the store lives; `None`: the default for the mode and port.
    pub data_dir: Option<Location>,
    /// How much room history (and per-session sink history) is kept.
    pub history: Window,
    /// How long a session outlives its last connection.
    pub session_ttl: Duration,
    /// The highest protocol version served (1: best effort only).
    pub protocol: u8,
    /// The token every client must offer in its hello; connections that
    /// carry no hello (the plain framings, WebSocket without the longconn
    /// subprotocol) are refused while it is set.
    pub token_file: Option<std::path::PathBuf>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Serve(Box<Args>),
    /// `--help` / `-h`: print the usage and exit 0.
    Help,
    /// `--version` / `-V`: print the version and exit 0.
    Version,
}

impl Args {
    /// Parses the flags after the program name.
    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Command, String> {
        let mut args = Args {
            mode: Mode::Chat,
            host: "127.0.0.1".into(),
            longconn_port: Some(7070),
            length_port: Some(7071),
            line_port: Some(7072),
            ws_port: Some(7080),
            tls_port: None,
            tls_framing: Framing::Longconn,
            wss_port: None,
            cert: None,
            key: None,
            client_ca: None,
            idle_timeout: Duration::from_secs(60),
            max_frame: DEFAULT_MAX_FRAME_SIZE,
            plain_ping: Bytes::from_static(b"ping"),
            plain_pong: Bytes::from_static(b"pong"),
            threads: 2,
            quiet: false,
            data_dir: None,
            history: Window::default(),
            session_ttl: Duration::from_secs(300),
            protocol: 2,
            token_file: None,
        };
        while let Some(flag) = argv.next() {
            if flag == "--quiet" {
                args.quiet = true;
                continue;
            }
            match flag.as_str() {
                "--help" | "-h" => return Ok(Command::Help),
                "--version" | "-V" => return Ok(Command::Version),
                _ if !KNOWN_FLAGS.contains(&flag.as_str()) => return Err(format!("unknown flag {flag:?}")),
                _ => {}
            }
            let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number = |v: &str| v.parse::<u64>().map_err(|_| format!("{flag}: {v:?} is not a number"));
            match flag.as_str() {
                "--mode" => {
                    args.mode = match value.as_str() {
                        "chat" => Mode::Chat,
                        "echo" => Mode::Echo,
                        "sink" => Mode::Sink,
                        other => return Err(format!("unknown mode {other:?}")),
                    }
                }
                "--host" => args.host = value,
                "--longconn-port" => args.longconn_port = port(&value)?,
                "--length-port" => args.length_port = port(&value)?,
                "--line-port" => args.line_port = port(&value)?,
                "--ws-port" => args.ws_port = port(&value)?,
                "--tls-port" => args.tls_port = port(&value)?,
                "--tls-framing" => {
                    args.tls_framing = Framing::from_name(&value).ok_or_else(|| format!("unknown framing {value:?}"))?
                }
                "--wss-port" => args.wss_port = port(&value)?,
                "--cert" => args.cert = Some(value.into()),
                "--key" => args.key = Some(value.into()),
                "--client-ca" => args.client_ca = Some(value.into()),
                "--idle-timeout" => args.idle_timeout = Duration::from_secs(number(&value)?),
                "--max-frame" => {
                    args.max_frame = match number(&value)? as usize {
                        max @ 1..=MAX_FRAME_SIZE_LIMIT => max,
                        _ => return Err(format!("--max-frame: {value} is not between 1 and {MAX_FRAME_SIZE_LIMIT}")),
                    }
                }
                "--plain-ping" => args.plain_ping = Bytes::from(value.into_bytes()),
                "--plain-pong" => args.plain_pong = Bytes::from(value.into_bytes()),
                "--threads" => args.threads = number(&value)?.clamp(1, 64) as usize,
                "--store" if value.starts_with("redis://") => args.data_dir = Some(Location::Redis(value)),
                "--store" => return Err(format!("--store takes a redis:// URL, not {value}")),
                "--data-dir" if value == "memory" => args.data_dir = Some(Location::Memory),
                "--data-dir" => args.data_dir = Some(Location::File(std::path::Path::new(&value).join("longconn.db"))),
                "--history" => args.history.messages = number(&value)?.max(1) as usize,
                "--history-bytes" => args.history.bytes = number(&value)? as usize,
                "--history-age" => args.history.age = Duration::from_secs(number(&value)?),
                "--session-ttl" => args.session_ttl = Duration::from_secs(number(&value)?),
                "--token-file" => args.token_file = Some(value.into()),
                "--protocol" => {
                    args.protocol = match value.as_str() {
                        "1" => 1,
                        "2" => 2,
                        other => return Err(format!("--protocol: {other:?} is not 1 or 2")),
                    }
                }
                other => return Err(format!("unknown flag {other:?}")),
            }
        }
        if args.token_file.is_some() && args.protocol < 2 {
            return Err("--token-file needs --protocol 2: the token travels in the version 2 hello".into());
        }
        Ok(Command::Serve(Box::new(args)))
    }

    /// Where the store lives: `--data-dir`, or the default for the mode and port.
    pub fn store_location(&self) -> Location {
        self.data_dir.clone().unwrap_or_else(|| crate::store::default_location(self.mode, self.longconn_port))
    }

    /// The enabled listeners.
    pub fn listeners(&self) -> Vec<(Listener, u16)> {
        [
            (Listener::Tcp(Framing::Longconn), self.longconn_port),
            (Listener::Tcp(Framing::Length), self.length_port),
            (Listener::Tcp(Framing::Line), self.line_port),
            (Listener::WebSocket, self.ws_port),
            (Listener::Tls(self.tls_framing), self.tls_port),
            (Listener::Wss, self.wss_port),
        ]
        .into_iter()
        .filter_map(|(l, p)| p.map(|p| (l, p)))
        .collect()
    }
}

/// What a listening port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Tcp(Framing),
    /// WebSocket; also serves the chat page to plain HTTP requests.
    WebSocket,
    /// A TCP framing over TLS.
    Tls(Framing),
    /// WebSocket over TLS.
    Wss,
}

impl Listener {
    /// The name in logs and in the `listening` lines tests read.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Tcp(framing) => framing.name(),
            Listener::WebSocket => "ws",
            Listener::Tls(_) => "tls",
            Listener::Wss => "wss",
        }
    }

    /// The TCP framing, if this is not WebSocket.
    pub fn framing(self) -> Option<Framing> {
        match self {
            Listener::Tcp(framing) | Listener::Tls(framing) => Some(framing),
            Listener::WebSocket | Listener::Wss => None,
        }
    }

    pub fn is_tls(self) -> bool {
        matches!(self, Listener::Tls(_) | Listener::Wss)
    }
}

fn port(value: &str) -> Result<Option<u16>, String> {
    if value == "off" {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| format!("bad port {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Command, String> {
        Args::parse(words.iter().map(|w| w.to_string()))
    }

    #[test]
    fn help_and_version_are_commands_and_bad_flags_are_named() {
        assert!(matches!(parse(&["--help"]), Ok(Command::Help)));
        assert!(matches!(parse(&["-V"]), Ok(Command::Version)));
        assert!(matches!(parse(&["--mode", "echo", "--version"]), Ok(Command::Version)));
        assert_eq!(parse(&["--colour", "red"]).unwrap_err(), "unknown flag \"--colour\"");
        assert_eq!(parse(&["--mode"]).unwrap_err(), "--mode needs a value");
        assert_eq!(parse(&["--tls-framing", "xml"]).unwrap_err(), "unknown framing \"xml\"");
        for bad in ["0", "268435457", "18446744073709551615"] {
            let refused = parse(&["--max-frame", bad]).unwrap_err();
            assert_eq!(refused, format!("--max-frame: {bad} is not between 1 and 268435456"));
        }
        assert!(matches!(parse(&["--max-frame", "16"]), Ok(Command::Serve(a)) if a.max_frame == 16));
        match parse(&["--mode", "sink", "--quiet", "--tls-framing", "line"]) {
            Ok(Command::Serve(args)) => {
                assert_eq!((args.mode, args.quiet, args.tls_framing), (Mode::Sink, true, Framing::Line))
            }
            other => panic!("{other:?}"),
        }
    }
}
