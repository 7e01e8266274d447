//! longconn-server: the bundled test server.
//!
//! Listens on the three TCP framings and on WebSocket (which also serves a
//! chat page at `/`), in one of three modes: `chat`
//! (broadcast each message to every other client, with join and leave
//! notices), `echo` (send each message back) or `sink` (discard). Answers
//! pings, evicts clients silent for longer than the idle timeout, and logs
//! connections to stdout. Version 2 clients get sessions: what they send is
//! stored (in the data directory: SQLite, and an append-only log for echo
//! and sink messages) before it is acknowledged, and
//! they resume after a reconnect or a server restart without loss or
//! duplicates. It speaks through `longconn-core`'s protocol and
//! transport modules, the same code the client runs, and is a package of
//! its own, so nothing of it reaches `liblongconn.so`.

use std::sync::Arc;

use tokio::net::TcpListener;

use longconn_server::args::{self, Args, Command};
use longconn_server::room::Room;
use longconn_server::{commit, open_room, peer, tls, StoreRuns};

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Command::Serve(args)) => *args,
        Ok(Command::Help) => {
            println!("longconn-server: the bundled longconn test server\n\n{}", args::USAGE);
            return;
        }
        Ok(Command::Version) => {
            println!("longconn-server {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Err(message) => {
            eprintln!("longconn-server: {message}\n\n{}", args::USAGE);
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("start the runtime");
    if let Err(e) = runtime.block_on(serve(args)) {
        eprintln!("longconn-server: {e}");
        std::process::exit(1);
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let args = Arc::new(args);
    let (room, described) = open_room(&args, StoreRuns::OnThread).map_err(std::io::Error::other)?;
    println!("{described}");
    tokio::spawn(expire_sessions(room.clone(), args.session_ttl));
    let tls = if args.listeners().iter().any(|(kind, _)| kind.is_tls()) {
        let (acceptor, cert) = tls::acceptor(args.cert.as_deref(), args.key.as_deref(), args.client_ca.as_deref())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // Clients (and tests) trust this file as their CA file.
        println!("tls certificate {}", cert.display());
        Some(acceptor)
    } else {
        None
    };
    let mut tasks = Vec::new();
    for (kind, port) in args.listeners() {
        let listener = listen(&args.host, port)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("bind {}:{port}: {e}", args.host)))?;
        // Tests and scripts read this line to learn the port (0 picks a free one).
        println!("listening {} {}", kind.name(), listener.local_addr()?);
        let (args, room, tls) = (args.clone(), room.clone(), tls.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        tokio::spawn(peer::serve(stream, peer, kind, tls.clone(), args.clone(), room.clone()));
                    }
                    Err(e) => {
                        // Out of descriptors and the like: wait a little instead of spinning.
                        eprintln!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    println!("ready mode={}", args.mode.name());
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Forgets sessions no connection has held for `ttl`.
async fn expire_sessions(room: Arc<Room>, ttl: std::time::Duration) {
    let mut tick =
        tokio::time::interval(std::time::Duration::from_secs(1).min(ttl.max(std::time::Duration::from_millis(100))));
    loop {
        tick.tick().await;
        let ids = room.sessions.expire(ttl);
        if !ids.is_empty() {
            room.committer().send(commit::Request::Forget { ids });
        }
    }
}

/// Connections the kernel may hold for `accept` (capped by net.core.somaxconn):
/// thousands of clients connecting at once must not overflow the queue, or
/// their connection attempts are dropped and retried only a second later.
const ACCEPT_BACKLOG: u32 = 4096;

/// Binds a listener on `host:port` (the first address the name resolves to).
async fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}
