//! One connected client on the server side, over TCP (any framing) or
//! WebSocket: best effort (protocol version 1, the plain framings,
//! WebSocket), or a version 2 session whose messages are stored before
//! they are acknowledged and which resumes where it stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use longconn_core::lock::lock;
use longconn_core::protocol::hello::{
    ack_payload, close_payload, hello_frame, hello_payload, parse_ack, take_hello, Hello, HelloExt, RoomPosition,
    PROTOCOL_V2,
};
use longconn_core::protocol::{Frame, FrameBatch, FrameError, FrameType, Framing};
use longconn_core::transport::tcp::{self, ByteStream};
use longconn_core::transport::{ws, Reader, Writer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::args::{Args, Listener, Mode};
use crate::page;
use crate::room::Room;
use crate::sessions::{random_id, Session, SessionState};
use crate::store::{Request, Row};

/// Time a client has for its hello (longconn protocol) or WebSocket handshake.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reconnecting client waits for its session's previous
/// connection to let go, and for its stored messages to settle.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);
/// Close code sent to a client evicted for silence.
const CLOSE_IDLE: u16 = 4000;
/// Close code sent to a client that fell behind the room's history.
const CLOSE_TOO_SLOW: u16 = 4001;
/// Close code sent to a client that broke the framing rules.
const CLOSE_PROTOCOL: u16 = 4002;
/// Close code sent to a connection whose session moved to a newer one.
const CLOSE_REPLACED: u16 = 4003;
/// Feed frames (room lines, echo replies) written per turn of the loop at
/// most, and their payload bytes, so reading never waits long. More than
/// one read brings (64 KiB: about 1,000 small messages), so an echo keeps
/// up with its reads; with 512 a turn, protocol 2's echo wrote half as
/// fast as it read and measured 1.9 M messages/s instead of 3.4-4.1 M.
const FEED_FRAMES: usize = 4096;
const FEED_BYTES: usize = 256 * 1024;
/// Stored messages acknowledged at once past this count, else after `ACK_DELAY`.
pub const ACK_EVERY: u64 = 1024;
const ACK_DELAY: Duration = Duration::from_millis(10);
/// A session stops reading while this many of its messages wait for the store.
const MAX_UNSTORED: u64 = 200_000;

/// Serves one accepted connection until it ends.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Listener,
    tls: Option<TlsAcceptor>,
    args: Arc<Args>,
    room: Arc<Room>,
) {
    let _ = stream.set_nodelay(true);
    // A best-effort member gets every line from the moment it was accepted
    // (its client may see itself connected before this task has joined it).
    let joined_at = lock(&room.history).next_offset();
    let opened = tokio::time::timeout(HELLO_TIMEOUT, open(stream, listener, tls.as_ref(), &args)).await;
    let (reader, mut writer, batch, hello) = match opened {
        Ok(Ok(Some(open))) => open,
        Ok(Ok(None)) => return, // a web page was served; not a client
        Ok(Err(why)) => return reject(&args, peer, &why),
        Err(_) => return reject(&args, peer, "no hello or handshake in time"),
    };
    let v2 = args.protocol >= PROTOCOL_V2 && hello.as_ref().is_some_and(Hello::offers_v2);
    let generation = room.new_connection();
    let (attached, reply) = match hello.as_ref().and_then(|h| h.ext.as_ref()).filter(|_| v2) {
        Some(ext) => {
            let (attached, reply) = attach(&room, ext, generation).await;
            (Some(attached), Some(Frame::Hello(hello_payload(PROTOCOL_V2, "longconn-server", Some(&reply)))))
        }
        None => (None, hello.as_ref().map(|_| hello_frame("longconn-server"))),
    };
    if let Some(reply) = reply {
        if writer.write(&[reply], None).await.is_err() {
            return reject(&args, peer, "write failed during the hello");
        }
    }
    let (number, name) = match &attached {
        Some(a) => (a.session.number, a.session.name.clone()),
        None => {
            let number = room.new_client_number().0;
            (number, format!("client-{number}"))
        }
    };
    room.join(number, &name);
    if !args.quiet {
        let kind = match &attached {
            Some(a) if a.resumed => "resumed session",
            Some(_) => "new session",
            None => "best effort",
        };
        println!("connect {name} {} from {peer} ({kind})", listener.name());
    }
    let mut client = Peer::new(&room, &args, listener, (number, &name), attached, generation, joined_at);
    let why = client.run(reader, &mut writer, batch).await;
    client.flush_store();
    client.detach();
    room.leave(number, &name);
    if !args.quiet {
        println!("disconnect {name}: {why}");
    }
}

fn reject(args: &Args, peer: SocketAddr, why: &str) {
    if !args.quiet {
        println!("rejected {peer}: {why}");
    }
}

type Opened = (Reader, Writer, FrameBatch, Option<Hello>);

/// Opens the connection for the listener's protocol: the client's hello
/// for the longconn protocol (answered by the caller), the handshake for
/// WebSocket (or, for a plain HTTP request on the WebSocket port, the chat
/// page and `None`).
async fn open(
    stream: TcpStream,
    listener: Listener,
    tls: Option<&TlsAcceptor>,
    args: &Args,
) -> Result<Option<Opened>, String> {
    let mut batch = FrameBatch::default();
    if listener == Listener::WebSocket && !page::is_websocket_upgrade(&stream).await {
        page::serve(stream).await;
        return Ok(None);
    }
    let stream = match (listener.is_tls(), tls) {
        (true, Some(acceptor)) => {
            ByteStream::Other(Box::new(acceptor.accept(stream).await.map_err(|e| format!("TLS handshake: {e}"))?))
        }
        (true, None) => return Err("no TLS certificate configured".into()),
        (false, _) => ByteStream::Tcp(stream),
    };
    let (mut reader, writer, longconn_frames) = match listener.framing() {
        Some(framing) => {
            let (reader, writer) = tcp::frame(stream, framing, args.max_frame);
            (reader, writer, framing == Framing::Longconn)
        }
        None => ws::accept(stream, args.max_frame, args.protocol >= PROTOCOL_V2).await.map_err(|e| e.to_string())?,
    };
    let mut hello = None;
    if longconn_frames {
        // Nothing may reach the client before our hello, so it joins the room only afterwards.
        match reader.read_batch(&mut batch).await {
            Ok(true) => {}
            Ok(false) => return Err("closed before hello".into()),
            Err(e) => return Err(format!("bad hello: {e}")),
        }
        hello = Some(take_hello(&mut batch).map_err(|e| format!("bad hello: {e}"))?);
    }
    Ok(Some((reader, writer, batch, hello)))
}

/// A version 2 connection's hold on its session.
struct Attached {
    session: Arc<Session>,
    resumed: bool,
    /// The client's received number: the last server-to-client sequence number it has.
    client_received: u64,
}

/// Finds the client's session (taking it over from an older connection) or
/// starts a new one, and builds the answer to its hello.
async fn attach(room: &Room, ext: &HelloExt, generation: u64) -> (Attached, HelloExt) {
    let found = ext.session.as_deref().and_then(|id| room.sessions.get(id));
    let (epoch, first, next) = {
        let history = lock(&room.history);
        (history.epoch, history.first_offset(), history.next_offset())
    };
    let position = |offset: u64| (room.mode == Mode::Chat).then_some(RoomPosition { epoch, offset });
    if let Some(session) = found {
        take_over(&session, generation).await;
        session.settled(TAKEOVER_TIMEOUT).await;
        let mut state = lock(&session.state);
        state.attached = generation;
        let client_received = ext.received;
        let mut recovered = true;
        match room.mode {
            Mode::Chat if state.base + client_received + 1 < first => {
                // What the client missed is no longer in the history: carry on from its start.
                state.base = first - 1 - client_received;
                recovered = false;
                room.store().send(Request::Rebase { id: session.id, base: state.base });
            }
            Mode::Echo => {
                state.client_acknowledged(client_received);
                recovered = state.echo_first <= client_received + 1;
            }
            _ => {}
        }
        let reply = HelloExt {
            max_version: PROTOCOL_V2,
            session: Some(session.id.to_vec()),
            received: state.received,
            position: position(state.base + client_received),
            resumed: true,
            recovered,
        };
        drop(state);
        return (Attached { session, resumed: true, client_received }, reply);
    }
    let (base, recovered) = match (room.mode, ext.position) {
        (Mode::Chat, Some(p)) if p.epoch == epoch && p.offset + 1 >= first && p.offset < next => (p.offset, true),
        (Mode::Chat, Some(_)) => (next - 1, false),
        (Mode::Chat, None) => (next - 1, ext.session.is_none()),
        _ => (0, ext.session.is_none()),
    };
    let (number, next_client) = room.new_client_number();
    let state = SessionState { base, attached: generation, connections: 1, echo_first: 1, ..SessionState::default() };
    let session = Session::new(random_id(), number, format!("client-{number}"), state);
    room.sessions.insert(session.clone());
    room.store().send(Request::NewSession { session: session.clone(), next_client });
    let reply = HelloExt {
        max_version: PROTOCOL_V2,
        session: Some(session.id.to_vec()),
        received: 0,
        position: position(base),
        resumed: false,
        recovered,
    };
    (Attached { session, resumed: false, client_received: 0 }, reply)
}

/// Claims `session` for connection `generation`: asks any older connection
/// holding it to let go, and waits (a bounded time) until it has, so that
/// nothing it reads is counted after the new connection was told `received`.
async fn take_over(session: &Session, generation: u64) {
    lock(&session.state).attached = generation;
    let deadline = tokio::time::Instant::now() + TAKEOVER_TIMEOUT;
    loop {
        let detached = session.detached.notified();
        if lock(&session.state).connections == 0 {
            break;
        }
        session.kick.notify_one();
        if tokio::time::timeout_at(deadline, detached).await.is_err() {
            break;
        }
    }
    lock(&session.state).connections += 1;
}

/// One connection and what it needs to react to frames.
struct Peer<'a> {
    room: &'a Room,
    args: &'a Args,
    listener: Listener,
    number: u64,
    name: &'a str,
    attached: Option<Attached>,
    generation: u64,
    /// Chat: the room offset to send next.
    cursor: u64,
    /// Version 2: the last server-to-client sequence number written.
    sent: u64,
    /// Version 2: the `received` last acknowledged to the client.
    acked_to_client: u64,
    /// Version 2: when received messages not yet acknowledged are (if stored by then).
    ack_due: Option<Instant>,
    /// What this turn read, for the store once this turn's writes are out:
    /// an echo reaches the wire before the store thread is woken.
    to_store: Vec<Request>,
    /// Answers and (best-effort) echoes, written once per read.
    replies: Vec<Frame>,
    /// WebSocket: the status code of the client's close frame, to answer it.
    client_close: Option<Bytes>,
}

impl<'a> Peer<'a> {
    fn new(
        room: &'a Room,
        args: &'a Args,
        listener: Listener,
        (number, name): (u64, &'a str),
        attached: Option<Attached>,
        generation: u64,
        joined_at: u64,
    ) -> Peer<'a> {
        let (cursor, sent, acked_to_client) = match &attached {
            Some(a) => {
                let mut state = lock(&a.session.state);
                // The hello told the client `received`.
                state.acked_to_client = state.received;
                (state.base + a.client_received + 1, a.client_received, state.received)
            }
            None => (joined_at, 0, 0),
        };
        Peer {
            room,
            args,
            listener,
            number,
            name,
            attached,
            generation,
            cursor,
            sent,
            acked_to_client,
            ack_due: None,
            to_store: Vec::new(),
            replies: Vec::new(),
            client_close: None,
        }
    }

    fn session(&self) -> Option<&Arc<Session>> {
        self.attached.as_ref().map(|a| &a.session)
    }

    async fn run(&mut self, mut reader: Reader, writer: &mut Writer, mut batch: FrameBatch) -> String {
        let args = self.args;
        let mut last_heard = Instant::now();
        let mut room_changes = self.room.subscribe();
        if let Err(why) = self.handle(&batch) {
            say_goodbye(writer, self.listener, CLOSE_PROTOCOL, &why).await;
            return why;
        }
        loop {
            let (frames, more) = match self.outgoing() {
                Ok(out) => out,
                Err(why) => {
                    say_goodbye(writer, self.listener, CLOSE_TOO_SLOW, &why).await;
                    return why;
                }
            };
            if !frames.is_empty() && writer.write(&frames, None).await.is_err() {
                return "write failed".into();
            }
            self.flush_store();
            let session = self.session().cloned();
            let paused = session.as_ref().is_some_and(|s| {
                let state = lock(&s.state);
                state.accepted - state.received >= MAX_UNSTORED
            });
            // Paused, this loop waits for the store: ask it for a wake-up on every commit.
            let _waiting = paused.then(|| session.as_deref().map(Session::wait_for_commits));
            let idle_deadline = last_heard + args.idle_timeout;
            tokio::select! {
                // A connection whose session moved on must read nothing more.
                biased;
                _ = wait_kicked(session.as_deref(), self.generation) => {
                    say_goodbye(writer, self.listener, CLOSE_REPLACED, "the session moved to a newer connection").await;
                    return "replaced by a newer connection of the same session".into();
                }
                read = reader.read_batch(&mut batch), if !paused => match read {
                    Ok(true) => {
                        last_heard = Instant::now();
                        if let Err(why) = self.handle(&batch) {
                            say_goodbye(writer, self.listener, CLOSE_PROTOCOL, &why).await;
                            return format!("protocol error: {why}");
                        }
                        if let Some(code) = self.client_close.take() {
                            self.flush_store();
                            let _ = writer.write(&[Frame::Close(code)], None).await;
                            let _ = writer.shutdown().await;
                            return "closed by client".into();
                        }
                    }
                    Ok(false) => return "closed by client".into(),
                    Err(FrameError::Io(e)) => return format!("read failed: {e}"),
                    Err(e) => {
                        say_goodbye(writer, self.listener, CLOSE_PROTOCOL, &e.to_string()).await;
                        return format!("protocol error: {e}");
                    }
                },
                _ = wait_committed(session.as_deref()) => {}
                _ = sleep_until_due(self.ack_due) => {}
                _ = room_changes.changed(), if self.room.mode == Mode::Chat => {}
                _ = std::future::ready(()), if more => {}
                _ = tokio::time::sleep_until(idle_deadline.into()), if !args.idle_timeout.is_zero() => {
                    say_goodbye(writer, self.listener, CLOSE_IDLE, "idle timeout").await;
                    return format!("evicted after {} s of silence", args.idle_timeout.as_secs());
                }
            }
        }
    }

    /// Reacts to each frame of a read: answer pings, take acknowledgements,
    /// then act on data by mode.
    fn handle(&mut self, batch: &FrameBatch) -> Result<(), String> {
        let plain = self.listener.framing().is_some_and(Framing::is_plain);
        // Chat lines for the room, or a session's messages (echo, sink) for
        // the store and, in echo mode, as replies.
        let (mut lines, mut row, mut echoes) = (Vec::new(), Row::default(), Vec::new());
        let echo = self.room.mode == Mode::Echo;
        for (kind, range) in &batch.frames {
            let payload = &batch.chunk[range.clone()];
            match kind {
                FrameType::Ping => self.replies.push(Frame::Pong(batch.payload(range))),
                FrameType::Close if self.listener.framing().is_none() => {
                    // WebSocket's closing handshake: answered once this read is handled.
                    self.client_close = Some(batch.payload(&(range.start..range.end.min(range.start + 2))));
                }
                FrameType::Hello | FrameType::Pong | FrameType::Close => {}
                FrameType::Ack => match (self.session(), parse_ack(payload)) {
                    (Some(session), Some(seq)) => lock(&session.state).client_acknowledged(seq),
                    _ => return Err("an ACK frame outside a version 2 session".into()),
                },
                FrameType::Data if plain && payload == self.args.plain_ping => {
                    self.replies.push(Frame::Data(self.args.plain_pong.clone()))
                }
                FrameType::Data | FrameType::Text => match (self.room.mode, self.attached.is_some()) {
                    (Mode::Chat, _) => lines.push(self.chat_line(payload)),
                    (_, true) => {
                        if row.count() == 0 {
                            row = self.room.store().new_row(batch.chunk.len());
                        }
                        row.push(*kind, payload);
                        if echo {
                            echoes.push(Frame::new(*kind, batch.payload(range)));
                        }
                    }
                    (Mode::Echo, false) => self.replies.push(Frame::new(*kind, batch.payload(range))),
                    (Mode::Sink, false) => {}
                },
            }
        }
        if lines.is_empty() && row.count() == 0 {
            return Ok(());
        }
        let session = self.session().cloned();
        if let Some(session) = &session {
            let mut state = lock(&session.state);
            if echo {
                state.add_echo(echoes);
            }
            state.accepted += lines.len() as u64 + row.count();
        }
        // Handed to the store after this turn's writes (see `flush_store`).
        match (self.room.mode, session) {
            (Mode::Chat, session) => self.to_store.push(Request::Room { author: self.number, lines, session }),
            (_, Some(session)) => self.to_store.push(Request::Inbound { session, rows: vec![row] }),
            (_, None) => {}
        }
        if self.attached.is_some() && self.ack_due.is_none() {
            self.ack_due = Some(Instant::now() + ACK_DELAY);
        }
        Ok(())
    }

    fn chat_line(&self, payload: &[u8]) -> Bytes {
        let mut line = BytesMut::with_capacity(self.name.len() + 2 + payload.len());
        line.put_slice(self.name.as_bytes());
        line.put_slice(b": ");
        // Line-framed members cannot receive a newline inside a message.
        line.extend(payload.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        line.freeze()
    }

    /// What to write now: replies, an acknowledgement of newly stored
    /// messages, and the next chunk of the feed; and whether more feed waits.
    fn outgoing(&mut self) -> Result<(Vec<Frame>, bool), String> {
        let mut frames = std::mem::take(&mut self.replies);
        if let Some(session) = self.session().cloned() {
            // Coalesced like the client's: once ACK_EVERY messages are stored
            // (the store wakes this loop then), or ACK_DELAY after a read, so
            // one message at a time does not cost an ACK and a wake-up on each
            // side per message.
            let mut state = lock(&session.state);
            let now = Instant::now();
            let due = self.ack_due.is_some_and(|due| now >= due);
            if state.received > self.acked_to_client && (state.received - self.acked_to_client >= ACK_EVERY || due) {
                frames.push(Frame::Ack(ack_payload(state.received)));
                self.acked_to_client = state.received;
                state.acked_to_client = state.received;
            }
            if due {
                // Messages still in a commit are acknowledged on the next round.
                self.ack_due = (state.accepted > state.received).then(|| now + ACK_DELAY);
            }
        }
        let as_frame = if self.listener.framing().is_none() { Frame::Text } else { Frame::Data };
        let before = frames.len();
        let more = match (self.room.mode, self.session().cloned()) {
            (Mode::Chat, session) => {
                let history = lock(&self.room.history);
                if self.cursor < history.first_offset() {
                    return Err("fell behind the room's history".into());
                }
                let own = if session.is_some() { u64::MAX } else { self.number };
                let mut last = None;
                let mut budget = FeedBudget::default();
                for (offset, entry) in history.read(self.cursor, FEED_FRAMES) {
                    if !budget.admits(entry.line.len()) {
                        break;
                    }
                    last = Some(offset);
                    // Best-effort members do not get their own lines back; sessions get the whole room.
                    if entry.author != own {
                        frames.push(as_frame(entry.line.clone()));
                    }
                }
                if let Some(last) = last {
                    self.cursor = last + 1;
                }
                self.cursor < history.next_offset()
            }
            (Mode::Echo, Some(session)) => {
                let state = lock(&session.state);
                let skip = (self.sent + 1).saturating_sub(state.echo_first) as usize;
                // Each reply keeps its message's kind (text or binary).
                let mut budget = FeedBudget::default();
                let replies = state.echo.iter().skip(skip).take_while(|r| budget.admits(r.parts().1.len()));
                frames.extend(replies.cloned());
                skip + budget.frames < state.echo.len()
            }
            _ => false,
        };
        if self.attached.is_some() {
            self.sent += (frames.len() - before) as u64;
        }
        Ok((frames, more))
    }

    /// Hands what was read to the store.
    fn flush_store(&mut self) {
        for request in self.to_store.drain(..) {
            self.room.store().send(request);
        }
    }

    /// Lets go of the session, if this connection still holds it.
    fn detach(&self) {
        if let Some(session) = self.session() {
            let mut state = lock(&session.state);
            state.connections -= 1;
            if state.attached == self.generation {
                state.attached = 0;
                state.last_seen = Some(Instant::now());
            }
            drop(state);
            session.detached.notify_one();
        }
    }
}

/// What one turn of the feed may still write: [`FEED_FRAMES`] frames and
/// [`FEED_BYTES`] of payload, the first frame always.
#[derive(Default)]
struct FeedBudget {
    frames: usize,
    bytes: usize,
}

impl FeedBudget {
    /// Whether a frame of `len` payload bytes fits; counts it if so.
    fn admits(&mut self, len: usize) -> bool {
        let fits = self.frames == 0 || (self.frames < FEED_FRAMES && self.bytes + len <= FEED_BYTES);
        if fits {
            self.frames += 1;
            self.bytes += len;
        }
        fits
    }
}

async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

async fn wait_committed(session: Option<&Session>) {
    match session {
        Some(session) => session.committed.notified().await,
        None => std::future::pending().await,
    }
}

/// Completes once a newer connection has taken the session over.
async fn wait_kicked(session: Option<&Session>, generation: u64) {
    let Some(session) = session else { return std::future::pending().await };
    loop {
        session.kick.notified().await;
        if lock(&session.state).attached != generation {
            return;
        }
    }
}

async fn say_goodbye(writer: &mut Writer, listener: Listener, code: u16, reason: &str) {
    if !listener.framing().is_some_and(Framing::is_plain) {
        let _ = writer.write(&[Frame::Close(close_payload(code, reason))], None).await;
    }
    let _ = writer.shutdown().await;
}
