//! The chat page served at `/` on the WebSocket port (by `http.rs`), so a
//! person can join the room from a browser; and how a WebSocket upgrade is
//! told from a plain request.

use tokio::net::TcpStream;

/// How much of a request head is looked at to tell a WebSocket upgrade from a page request.
const HEAD_LIMIT: usize = 8192;

/// Whether the request waiting on `stream` asks for a WebSocket upgrade.
/// Peeks without consuming, so the WebSocket handshake still sees it all.
pub async fn is_websocket_upgrade(stream: &TcpStream) -> bool {
    let mut head = vec![0u8; HEAD_LIMIT];
    let mut seen = 0;
    for _ in 0..50 {
        seen = match stream.peek(&mut head).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if head[..seen].windows(4).any(|w| w == b"\r\n\r\n") || seen == HEAD_LIMIT {
            break;
        }
        // The head arrives in pieces: peeking does not consume, so the socket
        // stays readable; give the rest a moment (at most 50 x 10 ms in all).
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let head = String::from_utf8_lossy(&head[..seen]).to_ascii_lowercase();
    head.lines().any(|line| line.starts_with("upgrade:") && line.contains("websocket"))
}

/// The page itself.
pub const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>longconn chat</title>
<style>
  body { font: 15px system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
  #log { border: 1px solid #ccc; height: 24em; overflow-y: auto; padding: .5em; white-space: pre-wrap; }
  #log .status { color: #777; }
  form { display: flex; gap: .5em; margin-top: .5em; }
  #line { flex: 1; }
</style>
<h1>longconn chat</h1>
<div id="log" aria-live="polite"></div>
<form id="send"><input id="line" autocomplete="off" placeholder="type a message" autofocus><button>Send</button></form>
<script>
  const log = document.getElementById("log");
  const line = document.getElementById("line");
  function show(text, status) {
    const row = document.createElement("div");
    row.textContent = text;
    if (status) row.className = "status";
    log.appendChild(row);
    log.scrollTop = log.scrollHeight;
  }
  let socket, delay = 500;
  function connect() {
    socket = new WebSocket("ws://" + location.host + "/");
    socket.onopen = () => { delay = 500; show("[connected]", true); };
    socket.onmessage = (event) => show(typeof event.data === "string" ? event.data : "[binary message]");
    socket.onclose = () => {
      show("[disconnected; reconnecting in " + delay + " ms]", true);
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 8000);
    };
  }
  document.getElementById("send").onsubmit = (event) => {
    event.preventDefault();
    if (line.value && socket.readyState === WebSocket.OPEN) {
      socket.send(line.value);
      show("me: " + line.value);
      line.value = "";
    }
  };
  connect();
</script>
</html>
"#;
