//! One connected client on the server side, over TCP (any framing) or WebSocket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use longconn_core::protocol::hello::{close_payload, hello_frame, take_hello};
use longconn_core::protocol::{Frame, FrameBatch, FrameError, FrameType, Framing};
use longconn_core::transport::tcp::{self, ByteStream};
use longconn_core::transport::{ws, Reader, Writer};
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
    let mut replies = Vec::new();
    let mut mail = Vec::with_capacity(64);
    let mut last_heard = Instant::now();
    client.handle(&batch, &mut replies);
    let why = loop {
        if !replies.is_empty() {
            if writer.write(&replies, None).await.is_err() {
                break "write failed".to_string();
            }
            replies.clear();
        }
        let idle_deadline = last_heard + args.idle_timeout;
        tokio::select! {
            read = reader.read_batch(&mut batch) => match read {
                Ok(true) => {
                    last_heard = Instant::now();
                    client.handle(&batch, &mut replies);
                }
                Ok(false) => break "closed by client".to_string(),
                Err(FrameError::Io(e)) => break format!("read failed: {e}"),
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
    let stream = match (listener.is_tls(), tls) {
        (true, Some(acceptor)) => {
            ByteStream::Other(Box::new(acceptor.accept(stream).await.map_err(|e| format!("TLS handshake: {e}"))?))
        }
        (true, None) => return Err("no TLS certificate configured".into()),
        (false, _) => ByteStream::Tcp(stream),
    };
    match listener.framing() {
        Some(framing) => {
            let (mut reader, mut writer) = tcp::frame(stream, framing, args.max_frame);
            if framing == Framing::Longconn {
                // Nothing may reach the client before our hello, so it joins the room only afterwards.
                greet(&mut reader, &mut writer, &mut batch).await?;
            }
            Ok(Some((reader, writer, batch)))
        }
        None => {
            let (reader, writer) = ws::accept(stream.boxed(), args.max_frame).await.map_err(|e| e.to_string())?;
            Ok(Some((reader, writer, batch)))
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
    take_hello(batch).map_err(|e| format!("bad hello: {e}"))?;
    writer.write(&[hello_frame("longconn-server")], None).await.map_err(|e| format!("write failed: {e}"))
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
    /// Replies share the read's buffer and are written once per read.
    fn handle(&self, batch: &FrameBatch, replies: &mut Vec<Frame>) {
        let plain = self.listener.framing().is_some_and(Framing::is_plain);
        for (kind, range) in &batch.frames {
            let payload = &batch.chunk[range.clone()];
            match kind {
                FrameType::Ping => replies.push(Frame::Pong(batch.payload(range))),
                FrameType::Hello | FrameType::Pong | FrameType::Close => {}
                FrameType::Data if plain && payload == self.args.plain_ping => {
                    replies.push(Frame::Data(self.args.plain_pong.clone()))
                }
                FrameType::Data | FrameType::Text => match self.room.mode {
                    Mode::Echo => replies.push(Frame::new(*kind, batch.payload(range))),
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
    if !listener.framing().is_some_and(Framing::is_plain) {
        let _ = writer.write(&[Frame::Close(close_payload(code, reason))], None).await;
    }
    let _ = writer.shutdown().await;
}
