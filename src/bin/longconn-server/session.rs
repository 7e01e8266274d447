//! One connected client on the server side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use longconn::codec::longconn::{close_payload, hello_payload};
use longconn::codec::{Codec, CodecError, Frame, FrameType, Framing, PROTOCOL_VERSION};
use longconn::transport::tcp::{self, TcpReader, TcpWriter};
use longconn::transport::FrameBatch;
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
    let mut batch = FrameBatch::default();
    if framing == Framing::Longconn {
        // Nothing may reach the client before our hello, so it joins the room only afterwards.
        let greeting = greet(&mut reader, &mut writer, &mut batch);
        let greeted = match tokio::time::timeout(HELLO_TIMEOUT, greeting).await {
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
    let client = Client {
        id,
        name: &name,
        framing,
        args: &args,
        room: &room,
    };
    // Replies encoded straight from the read buffer, written once per read.
    let mut replies = BytesMut::with_capacity(64 * 1024);
    let mut mail = Vec::with_capacity(64);
    let mut last_heard = Instant::now();
    client.handle(&batch, writer.codec(), &mut replies);
    let why = loop {
        if !replies.is_empty() {
            if writer.write_encoded(&replies).await.is_err() {
                break "write failed".to_string();
            }
            replies.clear();
        }
        let idle_deadline = last_heard + args.idle_timeout;
        tokio::select! {
            read = reader.read_batch(&mut batch) => match read {
                Ok(true) => {
                    last_heard = Instant::now();
                    client.handle(&batch, writer.codec(), &mut replies);
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
                let frames: Vec<Frame> = mail.drain(..).map(Frame::Data).collect();
                if writer.write(&frames, None).await.is_err() {
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
/// hello stay in `batch` for the main loop.
async fn greet(
    reader: &mut TcpReader,
    writer: &mut TcpWriter,
    batch: &mut FrameBatch,
) -> Result<(), String> {
    match reader.read_batch(batch).await {
        Ok(true) => {}
        Ok(false) => return Err("closed before hello".into()),
        Err(e) => return Err(format!("bad hello: {e}")),
    }
    let (kind, range) = batch.frames.first().cloned().ok_or("no hello")?;
    if kind != FrameType::Hello || batch.chunk.get(range.start) != Some(&PROTOCOL_VERSION) {
        return Err(format!(
            "expected a version {PROTOCOL_VERSION} hello, got a {kind:?} frame"
        ));
    }
    batch.frames.remove(0);
    writer
        .write(&[Frame::Hello(hello_payload("longconn-server"))], None)
        .await
        .map_err(|e| format!("write failed: {e}"))
}

/// One registered client and what it needs to react to frames.
struct Client<'a> {
    id: u64,
    name: &'a str,
    framing: Framing,
    args: &'a Args,
    room: &'a Room,
}

impl Client<'_> {
    /// Reacts to each frame of a read: answer pings, then act by mode.
    fn handle(&self, batch: &FrameBatch, codec: &Codec, replies: &mut BytesMut) {
        for (kind, range) in &batch.frames {
            let payload = &batch.chunk[range.clone()];
            match kind {
                FrameType::Ping => codec.encode_parts(FrameType::Pong, payload, replies),
                FrameType::Hello | FrameType::Pong | FrameType::Close => {}
                FrameType::Data
                    if self.framing != Framing::Longconn && payload == self.args.plain_ping =>
                {
                    codec.encode_data(&self.args.plain_pong, replies)
                }
                FrameType::Data => match self.room.mode {
                    Mode::Echo => codec.encode_data(payload, replies),
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

async fn say_goodbye(writer: &mut TcpWriter, framing: Framing, code: u16, reason: &str) {
    if framing == Framing::Longconn {
        let _ = writer
            .write(&[Frame::Close(close_payload(code, reason))], None)
            .await;
    }
    let _ = writer.shutdown().await;
}
