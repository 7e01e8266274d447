//! One connected client on the server side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use longconn::codec::longconn::{close_payload, hello_payload};
use longconn::codec::{CodecError, Frame, Framing, PROTOCOL_VERSION};
use longconn::transport::tcp::{self, TcpReader, TcpWriter};
use tokio::net::TcpStream;

use crate::args::{Args, Mode};
use crate::room::Room;

/// Time a longconn client has to send its hello.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Close code sent to a client evicted for silence.
const CLOSE_IDLE: u16 = 4000;
/// Close code sent to a client that broke the framing rules.
const CLOSE_PROTOCOL: u16 = 4002;

pub async fn serve_client(
    stream: TcpStream,
    peer: SocketAddr,
    framing: Framing,
    args: Arc<Args>,
    room: Arc<Room>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = tcp::split(stream, framing, args.max_frame);
    let mut frames = Vec::with_capacity(64);
    if framing == Framing::Longconn {
        // Nothing may reach the client before our hello, so it joins the room only afterwards.
        let greeted =
            match tokio::time::timeout(HELLO_TIMEOUT, greet(&mut reader, &mut writer, &mut frames))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(format!("no hello within {} s", HELLO_TIMEOUT.as_secs())),
            };
        if let Err(why) = greeted {
            if !args.quiet {
                println!("rejected {peer}: {why}");
            }
            return;
        }
    }
    let (id, name, mut mailbox) = room.join();
    if !args.quiet {
        println!("connect {name} {} from {peer}", framing.name());
    }
    let mut replies = Vec::with_capacity(64);
    let mut mail = Vec::with_capacity(64);
    let mut last_heard = Instant::now();
    for frame in frames.drain(..) {
        handle(frame, framing, &args, &room, id, &name, &mut replies);
    }
    let why = loop {
        if !replies.is_empty() {
            if writer.write(&replies, None).await.is_err() {
                break "write failed".to_string();
            }
            replies.clear();
        }
        let idle_deadline = last_heard + args.idle_timeout;
        tokio::select! {
            read = reader.read_frames(&mut frames) => match read {
                Ok(true) => {
                    last_heard = Instant::now();
                    for frame in frames.drain(..) {
                        handle(frame, framing, &args, &room, id, &name, &mut replies);
                    }
                }
                Ok(false) => break "closed by client".to_string(),
                Err(CodecError::Io(e)) => break format!("read failed: {e}"),
                Err(e) => {
                    say_goodbye(&mut writer, framing, CLOSE_PROTOCOL, &e.to_string()).await;
                    break format!("protocol error: {e}");
                }
            },
            received = mailbox.recv_many(&mut mail, 256) => {
                if received == 0 {
                    break "dropped: too slow to keep up with the room".to_string();
                }
                let batch: Vec<Frame> = mail.drain(..).map(Frame::Data).collect();
                if writer.write(&batch, None).await.is_err() {
                    break "write failed".to_string();
                }
            }
            _ = tokio::time::sleep_until(idle_deadline.into()), if !args.idle_timeout.is_zero() => {
                say_goodbye(&mut writer, framing, CLOSE_IDLE, "idle timeout").await;
                break format!("evicted after {} s of silence", args.idle_timeout.as_secs());
            }
        }
    };
    room.leave(id);
    if !args.quiet {
        println!("disconnect {name}: {why}");
    }
}

/// Waits for the client's hello and answers it. Frames that arrived with the
/// hello stay in `frames` for the main loop.
async fn greet(
    reader: &mut TcpReader,
    writer: &mut TcpWriter,
    frames: &mut Vec<Frame>,
) -> Result<(), String> {
    match reader.read_frames(frames).await {
        Ok(true) => {}
        Ok(false) => return Err("closed before hello".into()),
        Err(e) => return Err(format!("bad hello: {e}")),
    }
    match frames.first() {
        Some(Frame::Hello(p)) if p.first() == Some(&PROTOCOL_VERSION) => {
            frames.remove(0);
        }
        Some(other) => return Err(format!("expected hello, got {other:?}")),
        None => return Err("no hello".into()),
    }
    writer
        .write(&[Frame::Hello(hello_payload("longconn-server"))], None)
        .await
        .map_err(|e| format!("write failed: {e}"))
}

/// Reacts to one frame: answer hellos and pings, then act by mode.
fn handle(
    frame: Frame,
    framing: Framing,
    args: &Args,
    room: &Room,
    id: u64,
    name: &str,
    replies: &mut Vec<Frame>,
) {
    let payload = match frame {
        Frame::Ping(p) => {
            replies.push(Frame::Pong(p));
            return;
        }
        Frame::Hello(_) | Frame::Pong(_) | Frame::Close(_) => return,
        Frame::Data(p) => p,
    };
    if framing != Framing::Longconn && payload == args.plain_ping {
        replies.push(Frame::Data(args.plain_pong.clone()));
        return;
    }
    match room.mode {
        Mode::Echo => replies.push(Frame::Data(payload)),
        Mode::Sink => {}
        Mode::Chat => {
            let mut line = BytesMut::with_capacity(name.len() + 2 + payload.len());
            line.put_slice(name.as_bytes());
            line.put_slice(b": ");
            // Line-framed members cannot receive a newline inside a message.
            line.extend(payload.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
            room.broadcast(id, line.freeze());
        }
    }
}

async fn say_goodbye(writer: &mut TcpWriter, framing: Framing, code: u16, reason: &str) {
    if framing == Framing::Longconn {
        let _ = writer
            .write(&[Frame::Close(close_payload(code, reason))], None)
            .await;
    }
    let _ = writer.shutdown().await;
}
