//! One connected client on the server side, over TCP (any framing) or WebSocket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use longconn::codec::longconn::{close_payload, hello_payload};
use longconn::codec::{Codec, CodecError, Frame, FrameType, Framing, PROTOCOL_VERSION};
use longconn::transport::{tcp, ws, FrameBatch, Reader, Writer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::args::{Args, Listener, Mode};
use crate::page;
use crate::room::Room;

/// Time a client has for its hello (longconn protocol) or WebSocket handshake.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Close code sent to a client evicted for silence.
const CLOSE_IDLE: u16 = 4000;
/// Close code sent to a client that broke the framing rules.
const CLOSE_PROTOCOL: u16 = 4002;

pub async fn serve_client(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Listener,
    tls: Option<TlsAcceptor>,
    args: Arc<Args>,
    room: Arc<Room>,
) {
    let _ = stream.set_nodelay(true);
    let opened = tokio::time::timeout(HELLO_TIMEOUT, open(stream, listener, tls.as_ref(), &args)).await;
    let (mut reader, mut writer, mut batch) = match opened {
        Ok(Ok(Some(open))) => open,
        Ok(Ok(None)) => return, // a web page was served; not a client
        Ok(Err(why)) => return reject(&args, peer, &why),
        Err(_) => return reject(&args, peer, "no hello or handshake in time"),
    };
    let (id, name, mut mailbox) = room.join();
    if !args.quiet {
        println!("connect {name} {} from {peer}", listener.name());
    }
    let client = Client { id, name: &name, listener, args: &args, room: &room };
    let mut replies = Replies::new(listener, args.max_frame);
    let mut mail = Vec::with_capacity(64);
    let mut last_heard = Instant::now();
    client.handle(&batch, &mut replies);
    let why = loop {
        if replies.flush(&mut writer).await.is_err() {
            break "write failed".to_string();
        }
        let idle_deadline = last_heard + args.idle_timeout;
        tokio::select! {
            read = reader.read_batch(&mut batch) => match read {
                Ok(true) => {
                    last_heard = Instant::now();
                    client.handle(&batch, &mut replies);
                }
                Ok(false) => break "closed by client".to_string(),
                Err(CodecError::Io(e)) => break format!("read failed: {e}"),
                Err(e) => {
                    say_goodbye(&mut writer, listener, CLOSE_PROTOCOL, &e.to_string()).await;
                    break format!("protocol error: {e}");
                }
            },
            received = mailbox.recv_many(&mut mail, 256) => {
                if received == 0 {
                    break "dropped: too slow to keep up with the room".to_string();
                }
                // Chat lines go to browsers and other WebSocket clients as text.
                let as_frame = if listener.framing().is_none() { Frame::Text } else { Frame::Data };
                let frames: Vec<Frame> = mail.drain(..).map(as_frame).collect();
                if writer.write(&frames, None).await.is_err() {
                    break "write failed".to_string();
                }
            }
            _ = tokio::time::sleep_until(idle_deadline.into()), if !args.idle_timeout.is_zero() => {
                say_goodbye(&mut writer, listener, CLOSE_IDLE, "idle timeout").await;
                break format!("evicted after {} s of silence", args.idle_timeout.as_secs());
            }
        }
    };
    room.leave(id);
    if !args.quiet {
        println!("disconnect {name}: {why}");
    }
}

fn reject(args: &Args, peer: SocketAddr, why: &str) {
    if !args.quiet {
        println!("rejected {peer}: {why}");
    }
}

/// Opens the connection for the listener's protocol: the hello exchange for
/// the longconn protocol, the handshake for WebSocket (or, for a plain HTTP
/// request on the WebSocket port, the chat page and `None`).
async fn open(
    stream: TcpStream,
    listener: Listener,
    tls: Option<&TlsAcceptor>,
    args: &Args,
) -> Result<Option<(Reader, Writer, FrameBatch)>, String> {
    let mut batch = FrameBatch::default();
    if listener == Listener::WebSocket && !page::is_websocket_upgrade(&stream).await {
        page::serve(stream).await;
        return Ok(None);
    }
    let stream: Box<dyn ws::Io> = match (listener.is_tls(), tls) {
        (true, Some(acceptor)) => Box::new(acceptor.accept(stream).await.map_err(|e| format!("TLS handshake: {e}"))?),
        (true, None) => return Err("no TLS certificate configured".into()),
        (false, _) => Box::new(stream),
    };
    match listener.framing() {
        Some(framing) => {
            let (reader, writer) = tcp::split_io(stream, framing, args.max_frame);
            let (mut reader, mut writer) = (Reader::Tcp(reader), Writer::Tcp(writer));
            if framing == Framing::Longconn {
                // Nothing may reach the client before our hello, so it joins the room only afterwards.
                greet(&mut reader, &mut writer, &mut batch).await?;
            }
            Ok(Some((reader, writer, batch)))
        }
        None => {
            let (reader, writer) = ws::accept(stream, args.max_frame).await.map_err(|e| e.to_string())?;
            Ok(Some((Reader::Ws(reader), Writer::Ws(writer), batch)))
        }
    }
}

/// Waits for the client's hello and answers it. Frames that arrived with the
/// hello stay in `batch` for the main loop.
async fn greet(reader: &mut Reader, writer: &mut Writer, batch: &mut FrameBatch) -> Result<(), String> {
    match reader.read_batch(batch).await {
        Ok(true) => {}
        Ok(false) => return Err("closed before hello".into()),
        Err(e) => return Err(format!("bad hello: {e}")),
    }
    let (kind, range) = batch.frames.first().cloned().ok_or("no hello")?;
    if kind != FrameType::Hello || batch.chunk.get(range.start) != Some(&PROTOCOL_VERSION) {
        return Err(format!("expected a version {PROTOCOL_VERSION} hello, got a {kind:?} frame"));
    }
    batch.frames.remove(0);
    writer
        .write(&[Frame::Hello(hello_payload("longconn-server"))], None)
        .await
        .map_err(|e| format!("write failed: {e}"))
}

/// Replies collected while handling a read, written once per read. Over TCP
/// they are encoded straight into one buffer; over WebSocket they are messages.
enum Replies {
    Encoded { codec: Codec, buf: BytesMut },
    Messages(Vec<Frame>),
}

impl Replies {
    fn new(listener: Listener, max_frame: usize) -> Replies {
        match listener.framing() {
            Some(framing) => {
                Replies::Encoded { codec: Codec::new(framing, max_frame), buf: BytesMut::with_capacity(64 * 1024) }
            }
            None => Replies::Messages(Vec::new()),
        }
    }

    fn push(&mut self, kind: FrameType, payload: &[u8]) {
        match self {
            Replies::Encoded { codec, buf } => codec.encode_parts(kind, payload, buf),
            Replies::Messages(frames) => frames.push(Frame::new(kind, Bytes::copy_from_slice(payload))),
        }
    }

    async fn flush(&mut self, writer: &mut Writer) -> std::io::Result<()> {
        match (self, writer) {
            (Replies::Encoded { buf, .. }, Writer::Tcp(w)) if !buf.is_empty() => {
                w.write_encoded(buf).await?;
                buf.clear();
            }
            (Replies::Messages(frames), w) if !frames.is_empty() => {
                w.write(frames, None).await?;
                frames.clear();
            }
            _ => {}
        }
        Ok(())
    }
}

/// One registered client and what it needs to react to frames.
struct Client<'a> {
    id: u64,
    name: &'a str,
    listener: Listener,
    args: &'a Args,
    room: &'a Room,
}

impl Client<'_> {
    /// Reacts to each frame of a read: answer pings, then act by mode.
    fn handle(&self, batch: &FrameBatch, replies: &mut Replies) {
        let plain = matches!(self.listener.framing(), Some(Framing::Length | Framing::Line));
        for (kind, range) in &batch.frames {
            let payload = &batch.chunk[range.clone()];
            match kind {
                FrameType::Ping => replies.push(FrameType::Pong, payload),
                FrameType::Hello | FrameType::Pong | FrameType::Close => {}
                FrameType::Data if plain && payload == self.args.plain_ping => {
                    replies.push(FrameType::Data, &self.args.plain_pong)
                }
                FrameType::Data | FrameType::Text => match self.room.mode {
                    Mode::Echo => replies.push(*kind, payload),
                    Mode::Sink => {}
                    Mode::Chat => self.broadcast(payload),
                },
            }
        }
    }

    fn broadcast(&self, payload: &[u8]) {
        let mut line = BytesMut::with_capacity(self.name.len() + 2 + payload.len());
        line.put_slice(self.name.as_bytes());
        line.put_slice(b": ");
        // Line-framed members cannot receive a newline inside a message.
        line.extend(payload.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        self.room.broadcast(self.id, line.freeze());
    }
}

async fn say_goodbye(writer: &mut Writer, listener: Listener, code: u16, reason: &str) {
    if matches!(listener.framing(), Some(Framing::Longconn) | None) {
        let _ = writer.write(&[Frame::Close(close_payload(code, reason))], None).await;
    }
    let _ = writer.shutdown().await;
}
