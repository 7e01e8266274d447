//! One connected client on the server side, over TCP (any framing) or
//! WebSocket: best effort (protocol version 1, the plain framings,
//! WebSocket), or a version 2 session whose messages are stored before
//! they are acknowledged and which resumes where it stopped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

// Tokio's clock: the simulated one under the deterministic simulation.
use tokio::time::Instant;

use bytes::Bytes;
use longconn_core::lock::lock;
use longconn_core::policy::ack::{AckHold, AckTurn};
use longconn_core::protocol::hello::{
    ack_payload, close_payload, hello_frame, hello_payload, parse_ack, take_hello, Hello, HelloExt, RoomPosition,
    PROTOCOL_V2,
};
use longconn_core::protocol::{Frame, FrameBatch, FrameError, FrameType, Framing};
use longconn_core::transport::stream::{self, ByteStream};
use longconn_core::transport::{ws, Reader, Writer};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use crate::args::{Args, Listener, Mode};
use crate::commit::Request;
use crate::ids::random_id;
use crate::page;
use crate::room::Room;
use crate::sessions::{Session, SessionState};
use crate::store::FIRST_OWNER;

/// Time a client has for its hello (longconn protocol) or WebSocket handshake.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a hello's answer may wait for the store: a resumed session's
/// accepted messages to be committed, or a new session to be recorded.
/// It never waits for an older connection of the session (that one is
/// fenced at once); past this the store is stuck and the connection is
/// refused rather than answered with a `received` that is behind.
const STORE_WAIT: Duration = Duration::from_secs(3);
/// How long a goodbye (a close frame) may take to write on a connection
/// that is ending anyway.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);
/// Close code sent to a client evicted for silence.
const CLOSE_IDLE: u16 = 4000;
/// Close code sent to a client that fell behind the room's history.
const CLOSE_TOO_SLOW: u16 = 4001;
/// Close code sent to a client that broke the framing rules.
const CLOSE_PROTOCOL: u16 = 4002;
/// Close code sent to a connection whose session moved to a newer one.
const CLOSE_REPLACED: u16 = 4003;
use longconn_core::protocol::hello::CLOSE_UNAUTHORIZED;
/// Feed frames (room lines, echo replies) written per turn of the loop at
/// most, and their payload bytes, so reading never waits long. More than
/// one read brings (64 KiB: about 1,000 small messages), so an echo keeps
/// up with its reads; with 512 a turn, protocol 2's echo wrote half as
/// fast as it read and measured 1.9 M messages/s instead of 3.4-4.1 M.
const FEED_FRAMES: usize = 4096;
const FEED_BYTES: usize = 256 * 1024;
/// A session stops reading while this many of its messages wait for the store.
const MAX_UNSTORED: u64 = 200_000;

/// Serves one accepted TCP connection until it ends: the chat page for a
/// plain HTTP request on the WebSocket port, TLS where the listener has
/// it, then [`serve_stream`].
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Listener,
    tls: Option<TlsAcceptor>,
    args: Arc<Args>,
    room: Arc<Room>,
) {
    let _ = stream.set_nodelay(true);
    let peer = peer.to_string();
    let joined_at = lock(&room.history).next_offset();
    if listener == Listener::WebSocket && !page::is_websocket_upgrade(&stream).await {
        // Plain HTTP: the page, the room's event stream, or 404; not a client session.
        return crate::http::serve(stream, room, args).await;
    }
    let handshake = async {
        let stream = match (listener.is_tls(), tls.as_ref()) {
            (true, Some(acceptor)) => {
                ByteStream::Other(Box::new(acceptor.accept(stream).await.map_err(|e| format!("TLS handshake: {e}"))?))
            }
            (true, None) => return Err("no TLS certificate configured".to_string()),
            (false, _) => ByteStream::Tcp(stream),
        };
        open(stream, listener, &args).await
    };
    match tokio::time::timeout(HELLO_TIMEOUT, handshake).await {
        Ok(Ok(opened)) => run_connection(opened, &peer, listener, &args, &room, joined_at).await,
        Ok(Err(why)) => reject(&args, &peer, &why),
        Err(_) => reject(&args, &peer, "no hello or handshake in time"),
    }
}

/// Serves one connection over any byte stream (the deterministic
/// simulation's, for one) until it ends: the listener's framing or
/// WebSocket handshake, the hello, then the connection's loop.
pub async fn serve_stream(stream: ByteStream, peer: &str, listener: Listener, args: Arc<Args>, room: Arc<Room>) {
    let joined_at = lock(&room.history).next_offset();
    match tokio::time::timeout(HELLO_TIMEOUT, open(stream, listener, &args)).await {
        Ok(Ok(opened)) => run_connection(opened, peer, listener, &args, &room, joined_at).await,
        Ok(Err(why)) => reject(&args, peer, &why),
        Err(_) => reject(&args, peer, "no hello or handshake in time"),
    }
}

/// Answers the hello (attaching a version 2 session) and runs the
/// connection. `joined_at`: the room offset when the connection was
/// accepted; a best-effort member gets every line from there (its client
/// may see itself connected before this task has joined the room).
async fn run_connection(
    (reader, mut writer, batch, hello): Opened,
    peer: &str,
    listener: Listener,
    args: &Args,
    room: &Room,
    joined_at: u64,
) {
    let v2 = args.protocol >= PROTOCOL_V2 && hello.as_ref().is_some_and(Hello::offers_v2);
    if let Some(file) = &args.token_file {
        let offered = hello.as_ref().and_then(|h| h.ext.as_ref()).filter(|_| v2).and_then(|ext| ext.token.as_deref());
        if let Err(why) = crate::token::check(file, offered) {
            say_goodbye(&mut writer, listener, CLOSE_UNAUTHORIZED, &why).await;
            return reject(args, peer, &why);
        }
    }
    let generation = room.new_connection();
    let (attached, reply) = match hello.as_ref().and_then(|h| h.ext.as_ref()).filter(|_| v2) {
        Some(ext) => match attach(room, ext, generation).await {
            Ok((attached, reply)) => {
                (Some(attached), Some(Frame::Hello(hello_payload(PROTOCOL_V2, "longconn-server", Some(&reply)))))
            }
            Err(why) => return reject(args, peer, &why),
        },
        None => (None, hello.as_ref().map(|_| hello_frame("longconn-server"))),
    };
    if let Some(reply) = reply {
        let written = tokio::time::timeout(HELLO_TIMEOUT, writer.write(&[reply], None)).await;
        if !matches!(written, Ok(Ok(()))) {
            if let Some(attached) = &attached {
                let_go(&attached.session, generation);
            }
            return reject(args, peer, "write failed during the hello");
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
    let mut client = Peer::new(room, args, listener, (number, &name), attached, generation, joined_at);
    let why = client.run(reader, &mut writer, batch).await;
    client.flush_store();
    client.detach();
    room.leave(number, &name);
    if !args.quiet {
        println!("disconnect {name}: {why}");
    }
}

fn reject(args: &Args, peer: &str, why: &str) {
    if !args.quiet {
        println!("rejected {peer}: {why}");
    }
}

type Opened = (Reader, Writer, FrameBatch, Option<Hello>);

/// Opens the connection for the listener's protocol: the client's hello
/// for the longconn protocol (answered by the caller), or the handshake
/// for WebSocket.
async fn open(stream: ByteStream, listener: Listener, args: &Args) -> Result<Opened, String> {
    let mut batch = FrameBatch::default();
    let (mut reader, writer, longconn_frames) = match listener.framing() {
        Some(framing) => {
            let (reader, writer) = stream::frame(stream, framing, args.max_frame);
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
    Ok((reader, writer, batch, hello))
}

/// A version 2 connection's hold on its session.
struct Attached {
    session: Arc<Session>,
    resumed: bool,
    /// The client's received number: the last server-to-client sequence number it has.
    client_received: u64,
    /// The `received` our hello told the client: its next message is this plus one.
    server_received: u64,
}

/// Finds the client's session (taking it over from any older connection,
/// which is fenced at once) or starts a new one, and builds the answer to
/// its hello. The answer comes from durable state only: a resumed
/// session's `received` once every message accepted before the fence is
/// committed, a new session's id once its row is committed. Fails (the
/// connection is refused, and the client tries again) if the store takes
/// longer than [`STORE_WAIT`], or if a newer connection took the session
/// meanwhile.
async fn attach(room: &Room, ext: &HelloExt, generation: u64) -> Result<(Attached, HelloExt), String> {
    let found = match ext.session.as_deref() {
        Some(id) => room.resume(id, generation, STORE_WAIT).await?,
        None => None,
    };
    let history_now = || {
        let history = lock(&room.history);
        (history.epoch, history.first_offset(), history.next_offset())
    };
    let (mut epoch, mut first, mut next) = history_now();
    let mut lost_lines = false;
    if let Some(claimed) = claimed_position(room.mode, ext, found.as_deref(), epoch).filter(|&c| c >= next) {
        // The client has lines this server's history has not: a shared
        // store's feed may lag (wait for it), or the store lost its newest
        // writes (a restart without them), whose offsets must not name other
        // lines under the same epoch.
        if !room.caught_up(claimed, STORE_WAIT).await {
            let Ok(began) = tokio::time::timeout(STORE_WAIT, room.committer().new_epoch(epoch, claimed)).await else {
                return Err(format!("the store did not answer within {} s", STORE_WAIT.as_secs()));
            };
            lost_lines = began? != epoch;
            if !lost_lines {
                return Err("the room's history here is behind the client's position".into());
            }
            println!("the store lost room lines a client had (its position {claimed} is above the top): a new epoch");
        }
        (epoch, first, next) = history_now();
    }
    let position = |offset: u64| (room.mode == Mode::Chat).then_some(RoomPosition { epoch, offset });
    if let Some(session) = found {
        let mut state = lock(&session.state);
        if state.attached != generation {
            return Err("a newer connection took the session during the hello".into());
        }
        state.connections += 1;
        let client_received = ext.received;
        let mut recovered = true;
        match room.mode {
            Mode::Chat if lost_lines => {
                // Above the top the store kept: go on from the top, in the new epoch.
                state.base = (next - 1).saturating_sub(client_received);
                recovered = false;
                room.committer().send(Request::Rebase { id: session.id, owner: state.owner, base: state.base });
            }
            Mode::Chat if state.base + client_received + 1 < first => {
                // What the client missed is no longer in the history: carry on from its start.
                state.base = first - 1 - client_received;
                recovered = false;
                room.committer().send(Request::Rebase { id: session.id, owner: state.owner, base: state.base });
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
            token: None,
        };
        let server_received = state.received;
        drop(state);
        return Ok((Attached { session, resumed: true, client_received, server_received }, reply));
    }
    let (base, recovered) = match (room.mode, ext.position) {
        (Mode::Chat, Some(p)) if p.epoch == epoch && p.offset + 1 >= first && p.offset < next => (p.offset, true),
        (Mode::Chat, Some(_)) => (next - 1, false),
        (Mode::Chat, None) => (next - 1, ext.session.is_none()),
        _ => (0, ext.session.is_none()),
    };
    let (number, next_client) = room.new_client_number();
    let state = SessionState {
        base,
        attached: generation,
        connections: 1,
        echo_first: 1,
        owner: FIRST_OWNER,
        ..SessionState::default()
    };
    let session = Session::new(random_id(), number, format!("client-{number}"), state);
    room.sessions.insert(session.clone());
    let (durable, recorded) = oneshot::channel();
    room.committer().send(Request::NewSession { session: session.clone(), next_client, durable });
    if !matches!(tokio::time::timeout(STORE_WAIT, recorded).await, Ok(Ok(()))) {
        let_go(&session, generation);
        return Err(format!("the store did not record the new session within {} s", STORE_WAIT.as_secs()));
    }
    let reply = HelloExt {
        max_version: PROTOCOL_V2,
        session: Some(session.id.to_vec()),
        received: 0,
        position: position(base),
        resumed: false,
        recovered,
        token: None,
    };
    Ok((Attached { session, resumed: false, client_received: 0, server_received: 0 }, reply))
}

/// Chat: the last room offset a client says it has, in history `epoch`:
/// from its session's numbering when it resumes one, else from the
/// position its hello gives.
fn claimed_position(mode: Mode, ext: &HelloExt, session: Option<&Session>, epoch: u64) -> Option<u64> {
    if mode != Mode::Chat {
        return None;
    }
    match session {
        Some(session) => Some(lock(&session.state).base + ext.received),
        None => ext.position.filter(|p| p.epoch == epoch).map(|p| p.offset),
    }
}

/// Connection `generation` lets go of `session`, which it had counted
/// itself into: the session is free again unless a newer connection took it.
fn let_go(session: &Session, generation: u64) {
    lock(&session.state).connections -= 1;
    session.release(generation);
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
    /// Chat: the room offset to send next, in history `epoch`.
    cursor: u64,
    epoch: u64,
    /// Version 2: the last server-to-client sequence number written.
    sent: u64,
    /// Version 2: the `received` last acknowledged to the client.
    acked_to_client: u64,
    /// Version 2: whether the next ACK goes at once or rides with a write
    /// (the policy the client follows too).
    ack: AckHold,
    /// Version 2: the client-to-server sequence number of the next data
    /// frame this connection reads (numbering is implicit: the hello told
    /// the client where it goes on).
    next_in: u64,
    /// Version 2: a newer connection took the session over; what this one
    /// reads is discarded and it ends.
    fenced: bool,
    /// What this turn read, for the store: handed over once this turn's
    /// write has completed, or as soon as that write turns out to wait
    /// (see [`Peer::write_then_store`]).
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
                // The hello told the client `received`.
                let state = lock(&a.session.state);
                (state.base + a.client_received + 1, a.client_received, a.server_received)
            }
            None => (joined_at, 0, 0),
        };
        let next_in = attached.as_ref().map_or(1, |a| a.server_received + 1);
        Peer {
            room,
            args,
            listener,
            number,
            name,
            attached,
            generation,
            cursor,
            epoch: lock(&room.history).epoch,
            sent,
            acked_to_client,
            ack: AckHold::default(),
            next_in,
            fenced: false,
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
            if !frames.is_empty() {
                if let Err(why) = self.write_then_store(writer, &frames).await {
                    return why;
                }
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
                        if self.fenced {
                            say_goodbye(writer, self.listener, CLOSE_REPLACED, "the session moved to a newer connection").await;
                            return "replaced by a newer connection of the same session".into();
                        }
                        if let Some(code) = self.client_close.take() {
                            self.flush_store();
                            let answer = async {
                                let _ = writer.write(&[Frame::Close(code)], None).await;
                                let _ = writer.shutdown().await;
                            };
                            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, answer).await;
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
                _ = sleep_until_due(self.ack.due()) => {}
                _ = room_changes.changed(), if self.room.mode == Mode::Chat => {}
                _ = std::future::ready(()), if more => {}
                _ = tokio::time::sleep_until(idle_deadline), if !args.idle_timeout.is_zero() => {
                    say_goodbye(writer, self.listener, CLOSE_IDLE, "idle timeout").await;
                    return format!("evicted after {} s of silence", args.idle_timeout.as_secs());
                }
            }
        }
    }

    /// Writes `frames`, and hands this turn's rows to the store: after the
    /// write when it completes at once (an echo then reaches the wire
    /// before the store thread is woken: 42 against 52-57 µs per round
    /// trip), before waiting when it cannot. So no write that waits ever
    /// holds accepted rows, and a takeover that fences this connection
    /// waits only for the store, never for this write.
    async fn write_then_store(&mut self, writer: &mut Writer, frames: &[Frame]) -> Result<(), String> {
        let session = self.session().cloned();
        let write = write_frames(writer, frames, session.as_deref(), self.generation, self.args.idle_timeout);
        let mut write = std::pin::pin!(write);
        let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
        self.flush_store();
        match first {
            Poll::Ready(written) => written,
            Poll::Pending => write.await,
        }
    }

    /// Hands what was read to the store.
    fn flush_store(&mut self) {
        for request in self.to_store.drain(..) {
            self.room.committer().send(request);
        }
    }

    /// Reacts to each frame of a read: answer pings, take acknowledgements,
    /// then act on data by mode.
    fn handle(&mut self, batch: &FrameBatch) -> Result<(), String> {
        let plain = self.listener.framing().is_some_and(Framing::is_plain);
        // Chat lines for the room, or a session's messages (echo, sink) for
        // the store and, in echo mode, as replies.
        let mut data = Vec::new();
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
                    // Never trusted past what was sent: it would drop echo replies the client never had.
                    (Some(_), Some(seq)) if seq > self.sent => {
                        return Err(format!("the client acknowledged message {seq} but only {} were sent", self.sent))
                    }
                    (Some(session), Some(seq)) => lock(&session.state).client_acknowledged(seq),
                    _ => return Err("an ACK frame outside a version 2 session".into()),
                },
                FrameType::Data if plain && payload == self.args.plain_ping => {
                    self.replies.push(Frame::Data(self.args.plain_pong.clone()))
                }
                FrameType::Data | FrameType::Text => match (self.room.mode, self.attached.is_some()) {
                    (Mode::Chat, _) | (_, true) => data.push((*kind, range.clone())),
                    (Mode::Echo, false) => self.replies.push(Frame::new(*kind, batch.payload(range))),
                    (Mode::Sink, false) => {}
                },
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        let Some(session) = self.session().cloned() else {
            let lines = data.iter().map(|(_, range)| self.chat_line(&batch.chunk[range.clone()])).collect();
            self.to_store.push(Request::Room { author: self.number, lines, session: None });
            return Ok(());
        };
        let mut state = lock(&session.state);
        if state.attached != self.generation {
            // Fenced: a newer connection holds the session, and what it
            // was told as `received` must stay true.
            self.fenced = true;
            return Ok(());
        }
        // Each data frame's sequence number is implicit: the next after
        // the previous one on this connection, the first one after the
        // `received` our hello gave. One at or below what the session
        // accepted is dropped; one above the next expected is a gap.
        let first = self.next_in;
        self.next_in += data.len() as u64;
        let expected = state.accepted + 1;
        if first > expected {
            return Err(format!("message {first} arrived while {expected} was expected"));
        }
        let repeated = ((expected - first) as usize).min(data.len());
        if repeated > 0 {
            state.duplicates += repeated as u64;
            if !self.args.quiet {
                let total = state.duplicates;
                println!("{}: dropped {repeated} messages the session already had ({total} so far)", self.name);
            }
        }
        let fresh = &data[repeated..];
        if fresh.is_empty() {
            return Ok(());
        }
        let request = match self.room.mode {
            Mode::Chat => {
                let lines = fresh.iter().map(|(_, range)| self.chat_line(&batch.chunk[range.clone()])).collect();
                Request::Room { author: self.number, lines, session: Some(session.clone()) }
            }
            mode => {
                let mut row = self.room.committer().new_row(batch.chunk.len());
                for (kind, range) in fresh {
                    row.push(*kind, &batch.chunk[range.clone()]);
                }
                if mode == Mode::Echo {
                    state.add_echo(fresh.iter().map(|(kind, range)| Frame::new(*kind, batch.payload(range))).collect());
                }
                Request::Inbound { session: session.clone(), rows: vec![row] }
            }
        };
        state.accepted += fresh.len() as u64;
        // For the store after this turn's write, or before that write waits
        // (`write_then_store`); a takeover's `settled` waits for them.
        self.to_store.push(request);
        drop(state);
        Ok(())
    }

    fn chat_line(&self, payload: &[u8]) -> Bytes {
        Room::chat_line(self.name, payload)
    }

    /// What to write now: replies, an acknowledgement of newly stored
    /// messages, and the next chunk of the feed; and whether more feed waits.
    fn outgoing(&mut self) -> Result<(Vec<Frame>, bool), String> {
        let mut frames = std::mem::take(&mut self.replies);
        if let Some(session) = self.session().cloned() {
            if lock(&session.state).attached != self.generation {
                // Fenced: the newer connection acknowledges from here on.
                return Ok((frames, false));
            }
        }
        let as_frame = if self.listener.framing().is_none() { Frame::Text } else { Frame::Data };
        let before = frames.len();
        let more = match (self.room.mode, self.session().cloned()) {
            (Mode::Chat, session) => {
                let history = lock(&self.room.history);
                if history.epoch != self.epoch {
                    // The store's history began again: offsets mean other lines now.
                    return Err("the room's history began again (a new epoch)".into());
                }
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
        let feeding = frames.len() > before;
        self.acknowledge(&mut frames, feeding);
        Ok((frames, more))
    }

    /// Adds an ACK of what the store has made durable (it wakes this loop
    /// on each commit; the commit is the batching, since it gathers
    /// everything read while the one before it ran), when `policy::ack`
    /// says so: at once when this turn writes anyway, and when nothing was
    /// written to the client since the last ACK (a sender waiting for it:
    /// 58 µs in memory, one message in flight); held for the next write, at
    /// most `ack::HOLD`, by a connection that writes the client data (echoes,
    /// room lines): a lone ACK after every echo cost a request/reply round
    /// trip 15-30 µs (42 against 58-74 µs) for a wake-up on each side.
    fn acknowledge(&mut self, frames: &mut Vec<Frame>, feeding: bool) {
        let Some(session) = self.session().cloned() else { return };
        let mut state = lock(&session.state);
        let turn = AckTurn {
            now: Instant::now(),
            acknowledgeable: state.received,
            taken: state.accepted,
            acknowledged: self.acked_to_client,
            writing: !frames.is_empty(),
            feeding,
        };
        if let Some(received) = self.ack.turn(turn) {
            frames.push(Frame::Ack(ack_payload(received)));
            self.acked_to_client = received;
        }
        // While a hold runs, its timer wakes this loop, not each commit
        // (which would cost a wake-up per message); otherwise commits do.
        state.commits_quiet = self.ack.holding();
    }

    /// Lets go of the session, if this connection still holds it.
    fn detach(&self) {
        if let Some(session) = self.session() {
            let_go(session, self.generation);
        }
    }
}

/// Writes `frames`. Gives up when the session moves to a newer connection
/// (a write stuck on a half-open link must not hold anything up) and when
/// the write has not finished within `deadline` (the idle timeout: the
/// server's write deadline, as the client's heartbeat has one; zero: none).
async fn write_frames(
    writer: &mut Writer,
    frames: &[Frame],
    session: Option<&Session>,
    generation: u64,
    deadline: Duration,
) -> Result<(), String> {
    let write = async {
        if deadline.is_zero() {
            Ok(writer.write(frames, None).await)
        } else {
            tokio::time::timeout(deadline, writer.write(frames, None)).await
        }
    };
    tokio::select! {
        biased;
        _ = wait_kicked(session, generation) => {
            Err("replaced by a newer connection of the same session (a write was abandoned)".into())
        }
        written = write => match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write failed: {e}")),
            Err(_) => Err(format!("a write made no progress for {} s", deadline.as_secs())),
        },
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
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

async fn wait_committed(session: Option<&Session>) {
    match session {
        Some(session) => session.committed.notified().await,
        None => std::future::pending().await,
    }
}

/// Completes once a newer connection has taken the session over (at once
/// if one already has).
async fn wait_kicked(session: Option<&Session>, generation: u64) {
    let Some(session) = session else { return std::future::pending().await };
    loop {
        // Registered before the check, so a fence in between is not missed.
        let kicked = session.kick.notified();
        tokio::pin!(kicked);
        kicked.as_mut().enable();
        if lock(&session.state).attached != generation {
            return;
        }
        kicked.await;
    }
}

/// Sends a close frame (not in the plain framings) and shuts the sending
/// direction, within [`GOODBYE_TIMEOUT`]: the connection ends either way.
async fn say_goodbye(writer: &mut Writer, listener: Listener, code: u16, reason: &str) {
    let goodbye = async {
        if !listener.framing().is_some_and(Framing::is_plain) {
            let _ = writer.write(&[Frame::Close(close_payload(code, reason))], None).await;
        }
        let _ = writer.shutdown().await;
    };
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, goodbye).await;
}
