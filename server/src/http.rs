//! Plain HTTP on the WebSocket port, served by hyper: the chat page at `/`,
//! the room as Server-Sent Events at `/events` and as newline-delimited
//! JSON at `/stream`, and 404 for any other path.
//!
//! `/events` sends each room line as one event whose id is
//! `EPOCH-OFFSET` (the room history's epoch and the line's offset), so a
//! client that reconnects with `Last-Event-ID` reads on from the line after
//! it, out of the durable history: nothing missed, nothing twice. Without
//! an id a client starts with the next line said; with an id of another
//! epoch (the history was lost) it starts with the oldest line kept. A line
//! of several lines is sent as several `data` lines; a comment goes out
//! when the room is quiet, so clients and proxies see the stream is alive.
//!
//! `POST` to `/messages` (or `/events`, `/stream`) says its body in the
//! room. With an `Idempotency-Key` of `SENDER:NUMBER` (32 hex digits the
//! client chose, and its message's number from 1) the sender is a session
//! of the store's, as a protocol 2 client's: the message is stored with
//! the session's count in one commit, a number the session already has is
//! answered without being stored again, a number past the next is refused
//! (409), and the answer (200) comes once the message is durable. Without
//! a key it is stored once it arrives, best effort (202).
//!
//! `/stream` sends each line as `{"id":"EPOCH-OFFSET","text":"..."}` and a
//! newline, from the line after `?after=EPOCH-OFFSET` (the same rule), and
//! an empty line when the room is quiet.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::args::Args;
use crate::commit::Request as StoreRequest;
use crate::mode::Mode;
use crate::room::Room;
use crate::sessions::{Session, SessionId, SessionState};
use crate::store::FIRST_OWNER;
use longconn_core::lock::lock;
use tokio::sync::oneshot;

/// Lines read from the history per chunk of the stream.
const CHUNK_LINES: usize = 256;
/// Chunks queued for a slow reader before its stream waits.
const QUEUED_CHUNKS: usize = 8;
/// A comment after this long without a line.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// What clients are told to wait before reconnecting, in milliseconds.
const RETRY_MS: u64 = 1000;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// How long a POST waits for the store.
const STORE_WAIT: Duration = Duration::from_secs(3);

/// Serves HTTP/1.1 requests on `stream` until the client closes it.
pub async fn serve(stream: TcpStream, room: Arc<Room>, args: Arc<Args>) {
    let quiet = args.quiet;
    let service = hyper::service::service_fn(move |request| {
        let (room, args) = (room.clone(), args.clone());
        async move { Ok::<_, Infallible>(route(request, &room, &args).await) }
    });
    let io = hyper_util::rt::TokioIo::new(stream);
    if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
        if !quiet {
            println!("http connection ended: {e}");
        }
    }
}

async fn route(request: Request<Incoming>, room: &Arc<Room>, args: &Args) -> Response<Body> {
    match (request.method(), request.uri().path()) {
        (&Method::POST, "/messages" | "/events" | "/stream") => post(request, room, args).await,
        (&Method::GET, "/") => {
            respond(StatusCode::OK, "text/html; charset=utf-8", Bytes::from_static(crate::page::PAGE.as_bytes()))
        }
        (&Method::GET, "/events") => {
            let last_event_id = request.headers().get("last-event-id").and_then(|v| v.to_str().ok());
            stream(room, last_event_id, Format::Events)
        }
        (&Method::GET, "/stream") => {
            let after = request.uri().query().and_then(|q| q.split('&').find_map(|p| p.strip_prefix("after=")));
            stream(room, after, Format::Lines)
        }
        (_, "/" | "/events" | "/stream") => {
            respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n")
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", content_type.parse().expect("a valid header value"));
    headers.insert("cache-control", "no-store".parse().expect("a valid header value"));
    response
}

/// A POST's `Idempotency-Key`: the sender's id and the message's number.
fn parse_key(value: &str) -> Result<(SessionId, u64), String> {
    let value = value.trim().trim_matches('"');
    let bad = || format!("Idempotency-Key {value:?} is not SENDER:NUMBER (32 hex digits, then a number from 1)");
    let (sender, number) = value.split_once(':').ok_or_else(bad)?;
    let number = number.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(bad)?;
    if sender.len() != 32 || !sender.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut id = SessionId::default();
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&sender[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok((id, number))
}

/// What a keyed POST found.
enum Posted {
    Stored,
    Duplicate,
    Gap { expected: u64 },
}

async fn post(request: Request<Incoming>, room: &Arc<Room>, args: &Args) -> Response<Body> {
    let text = "text/plain";
    if room.mode != Mode::Chat {
        return respond(StatusCode::METHOD_NOT_ALLOWED, text, "messages are POSTed to the room: chat mode only\n");
    }
    let key = match request.headers().get("idempotency-key").map(|v| v.to_str().map_err(|e| e.to_string())) {
        None => None,
        Some(Ok(value)) => match parse_key(value) {
            Ok(key) => Some(key),
            Err(why) => return respond(StatusCode::BAD_REQUEST, text, format!("{why}\n")),
        },
        Some(Err(why)) => return respond(StatusCode::BAD_REQUEST, text, format!("{why}\n")),
    };
    let body = match http_body_util::Limited::new(request.into_body(), args.max_frame).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let why = format!("a message takes at most {} bytes\n", args.max_frame);
            return respond(StatusCode::PAYLOAD_TOO_LARGE, text, why);
        }
        Err(e) => return respond(StatusCode::BAD_REQUEST, text, format!("{e}\n")),
    };
    let Some((sender, number)) = key else {
        room.say(0, vec![Room::chat_line("http", &body)], None);
        return respond(StatusCode::ACCEPTED, text, "accepted; stored at the room's next commit\n");
    };
    match post_once(room, sender, number, &body).await {
        Ok(Posted::Stored) => respond(StatusCode::OK, "application/json", format!("{{\"stored\":{number}}}\n")),
        Ok(Posted::Duplicate) => {
            respond(StatusCode::OK, "application/json", format!("{{\"stored\":{number},\"duplicate\":true}}\n"))
        }
        Ok(Posted::Gap { expected }) => {
            let why = format!("message {number} arrived while {expected} was expected\n");
            respond(StatusCode::CONFLICT, text, why)
        }
        Err(why) => respond(StatusCode::SERVICE_UNAVAILABLE, text, format!("{why}\n")),
    }
}

/// Stores message `number` of `sender` once: the sender's session is taken
/// for the request (fencing any other request or connection holding it)
/// and let go again; the answer waits until the message is durable.
async fn post_once(room: &Arc<Room>, sender: SessionId, number: u64, body: &[u8]) -> Result<Posted, String> {
    let generation = room.new_connection();
    let known = match room.committer().shared() {
        // Taken over from the shared store (from any server), fresh.
        true => room.resume(&sender, generation, STORE_WAIT).await?,
        false => room.sessions.get(&sender),
    };
    let session = match known {
        Some(session) => session,
        None => new_sender(room, sender, generation).await?,
    };
    session.fence(generation);
    let outcome = async {
        if !session.settled(STORE_WAIT).await {
            return Err(format!("the store did not settle within {} s", STORE_WAIT.as_secs()));
        }
        let posted = {
            let mut state = lock(&session.state);
            if state.attached != generation {
                return Err("another request of this sender took its session".to_string());
            }
            let expected = state.accepted + 1;
            if number < expected {
                Posted::Duplicate
            } else if number > expected {
                Posted::Gap { expected }
            } else {
                state.accepted += 1;
                let lines = vec![Room::chat_line(&session.name, body)];
                room.committer().send(StoreRequest::Room {
                    author: session.number,
                    lines,
                    session: Some(session.clone()),
                });
                Posted::Stored
            }
        };
        // Answered once what the session accepted is durable, this message too.
        if !session.settled(STORE_WAIT).await {
            return Err(format!("the store did not commit within {} s", STORE_WAIT.as_secs()));
        }
        Ok(posted)
    }
    .await;
    session.release(generation);
    outcome
}

/// A session for a sender the store does not know yet, under the id it chose.
async fn new_sender(room: &Arc<Room>, id: SessionId, generation: u64) -> Result<Arc<Session>, String> {
    let base = lock(&room.history).next_offset() - 1;
    let (number, next_client) = room.new_client_number();
    let state =
        SessionState { base, attached: generation, echo_first: 1, owner: FIRST_OWNER, ..SessionState::default() };
    let session = Session::new(id, number, format!("client-{number}"), state);
    room.sessions.insert(session.clone());
    let (durable, recorded) = oneshot::channel();
    room.committer().send(StoreRequest::NewSession { session: session.clone(), next_client, durable });
    if !matches!(tokio::time::timeout(STORE_WAIT, recorded).await, Ok(Ok(()))) {
        session.release(generation);
        return Err(format!("the store did not record the new sender within {} s", STORE_WAIT.as_secs()));
    }
    Ok(session)
}

/// Where a stream starts: the offset after the one `last_event_id` names,
/// in the current history.
fn start_offset(last_event_id: Option<&str>, epoch: u64, first: u64, next: u64) -> u64 {
    let parsed = last_event_id.and_then(|id| {
        let (e, o) = id.split_once('-')?;
        Some((e.parse::<u64>().ok()?, o.parse::<u64>().ok()?))
    });
    match parsed {
        None => next,
        Some((e, offset)) if e == epoch => offset.saturating_add(1).clamp(first, next),
        Some(_) => first,
    }
}

/// How a stream writes the room's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Server-Sent Events.
    Events,
    /// One JSON object per line.
    Lines,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Events => "text/event-stream",
            Format::Lines => "application/x-ndjson",
        }
    }

    fn opening(self) -> Bytes {
        match self {
            Format::Events => Bytes::from(format!("retry: {RETRY_MS}\n\n")),
            Format::Lines => Bytes::new(),
        }
    }

    fn keepalive(self) -> Bytes {
        match self {
            Format::Events => Bytes::from_static(b": keepalive\n\n"),
            Format::Lines => Bytes::from_static(b"\n"),
        }
    }

    fn write(self, chunk: &mut String, epoch: u64, offset: u64, line: &str) {
        match self {
            Format::Events => {
                chunk.push_str(&format!("id: {epoch}-{offset}\n"));
                for line in line.split('\n') {
                    chunk.push_str("data: ");
                    chunk.push_str(line.strip_suffix('\r').unwrap_or(line));
                    chunk.push('\n');
                }
                chunk.push('\n');
            }
            Format::Lines => {
                chunk.push_str(&format!("{{\"id\":\"{epoch}-{offset}\",\"text\":\""));
                json_escape(line, chunk);
                chunk.push_str("\"}\n");
            }
        }
    }
}

/// `text` as the inside of a JSON string.
fn json_escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

fn stream(room: &Arc<Room>, after: Option<&str>, format: Format) -> Response<Body> {
    let (epoch, cursor) = {
        let history = lock(&room.history);
        (history.epoch, start_offset(after, history.epoch, history.first_offset(), history.next_offset()))
    };
    let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
    tokio::spawn(feed(room.clone(), epoch, cursor, format, tx));
    let mut response = Response::new(Channel(rx).boxed());
    let headers = response.headers_mut();
    headers.insert("content-type", format.content_type().parse().expect("a valid header value"));
    headers.insert("cache-control", "no-store".parse().expect("a valid header value"));
    response
}

/// Writes the room into `tx` from `cursor` on, until the client goes away
/// or falls out of the history (it then reconnects with its last id).
async fn feed(room: Arc<Room>, epoch: u64, mut cursor: u64, format: Format, tx: mpsc::Sender<Bytes>) {
    let mut changes = room.subscribe();
    let opening = format.opening();
    if !opening.is_empty() && tx.send(opening).await.is_err() {
        return;
    }
    loop {
        let chunk = {
            let history = lock(&room.history);
            if history.epoch != epoch || cursor < history.first_offset() {
                return;
            }
            let mut chunk = String::new();
            for (offset, entry) in history.read(cursor, CHUNK_LINES) {
                format.write(&mut chunk, epoch, offset, &String::from_utf8_lossy(&entry.line));
                cursor = offset + 1;
            }
            chunk
        };
        if !chunk.is_empty() {
            if tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(KEEPALIVE) => {
                if tx.send(format.keepalive()).await.is_err() {
                    return;
                }
            }
            _ = tx.closed() => return,
        }
    }
}

/// A response body read from a channel of chunks; it ends when the sender does.
struct Channel(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_as_events_or_json() {
        let mut chunk = String::new();
        Format::Events.write(&mut chunk, 7, 3, "two\r\nlines");
        assert_eq!(chunk, "id: 7-3\ndata: two\ndata: lines\n\n");
        let mut chunk = String::new();
        Format::Lines.write(&mut chunk, 7, 3, "say \"hi\"\\\u{1}\n");
        assert_eq!(chunk, "{\"id\":\"7-3\",\"text\":\"say \\\"hi\\\"\\\\\\u0001\\n\"}\n");
    }

    #[test]
    fn a_stream_starts_after_the_last_event_id_in_this_epoch() {
        // epoch 7, lines 10..20 kept, 20 next.
        assert_eq!(start_offset(None, 7, 10, 20), 20, "no id: the next line");
        assert_eq!(start_offset(Some("7-14"), 7, 10, 20), 15);
        assert_eq!(start_offset(Some("7-19"), 7, 10, 20), 20);
        assert_eq!(start_offset(Some("7-3"), 7, 10, 20), 10, "before the window: the oldest kept");
        assert_eq!(start_offset(Some("7-99"), 7, 10, 20), 20, "past the end: the next");
        assert_eq!(start_offset(Some("6-14"), 7, 10, 20), 10, "another epoch: everything kept");
        assert_eq!(start_offset(Some("garbage"), 7, 10, 20), 20);
        assert_eq!(start_offset(Some("7-18446744073709551615"), 7, 10, 20), 20);
    }
}
