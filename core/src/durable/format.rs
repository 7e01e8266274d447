//! The durable outbox's file format, with no I/O: records encoded and a
//! file's bytes read back into what they hold.
//!
//! A file starts with a 16-byte header: the magic `LCOUTBOX`, the format
//! version (u16 BE), the protocol version whose session it keeps (u16 BE)
//! and a CRC-32 of those 12 bytes (u32 BE). Then records, appended: each a
//! u32 BE length of its body, a u32 BE CRC-32 (crc32fast: the IEEE
//! polynomial) of the body, and the body: a type byte and its fields, all
//! integers u64 BE.
//!
//! - `1` session: id length (u8), id, `base`, `received`, then a room
//!   anchor or not (u8 0/1; epoch, offset, the `received` it belongs to).
//! - `2` message: its number, text or binary (u8 1/0), its bytes.
//! - `3` acknowledged: every message up to this number.
//! - `4` numbered from: every message up to this number was acknowledged
//!   and the next is one more (the start of a compacted file, whose
//!   acknowledged messages are gone).
//!
//! Reading stops at the first record that is cut short or whose checksum
//! or fields are wrong (a write torn by a crash, or damage): everything
//! before it counts, everything from it on is reported as dropped, never
//! replayed. Messages must be numbered one after the other; an
//! acknowledgement never goes back.

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"LCOUTBOX";
/// This format's version.
pub const FORMAT_VERSION: u16 = 1;
/// The header's length.
pub const HEADER_LEN: usize = 16;
/// The longest record body read back (a message is far smaller: the
/// client's maximum message size is at most 64 MiB).
pub const MAX_RECORD: usize = 64 * 1024 * 1024 + 64;

const SESSION: u8 = 1;
const MESSAGE: u8 = 2;
const ACKNOWLEDGED: u8 = 3;
const NUMBERED_FROM: u8 = 4;

/// A protocol 2 session as the client keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SavedSession {
    /// The server's id for the session.
    pub id: Vec<u8>,
    /// Outbound: wire sequence number = message number - `base`.
    pub base: u64,
    /// Inbound: the last sequence number received.
    pub received: u64,
    /// A room position (epoch, offset) and the `received` it belongs to.
    pub anchor: Option<(u64, u64, u64)>,
}

/// A message kept until the server acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedMessage {
    pub number: u64,
    pub text: bool,
    pub payload: Vec<u8>,
}

/// What a file holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contents {
    pub session: Option<SavedSession>,
    /// Messages not acknowledged, in order, numbered one after the other.
    pub messages: Vec<SavedMessage>,
    /// Every message up to this number was acknowledged.
    pub acked: u64,
    /// The highest message number the file has seen (kept or acknowledged).
    pub last_number: u64,
    /// The length of the intact part: what follows it was dropped.
    pub intact: usize,
    /// Why reading stopped before the end, if it did.
    pub dropped: Option<String>,
}

/// Why a file cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Not an outbox file (no magic), or its header is damaged.
    NotAnOutbox(String),
    /// An outbox of another format or protocol version.
    OtherVersion { format: u16, protocol: u16 },
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::NotAnOutbox(why) => write!(f, "not a longconn outbox file: {why}"),
            FormatError::OtherVersion { format, protocol } => write!(
                f,
                "an outbox file of format {format} for protocol {protocol}; this build reads format {FORMAT_VERSION} \
                 for protocol 2"
            ),
        }
    }
}

/// The header for protocol version `protocol`.
pub fn header(protocol: u16) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(MAGIC);
    out[8..10].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    out[10..12].copy_from_slice(&protocol.to_be_bytes());
    let crc = crc32fast::hash(&out[..12]);
    out[12..].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Appends a record with `body` to `out`.
fn record(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    out.extend_from_slice(body);
}

/// A session record.
pub fn session_record(out: &mut Vec<u8>, session: &SavedSession) {
    let id = &session.id[..session.id.len().min(255)];
    let mut body = Vec::with_capacity(64 + id.len());
    body.push(SESSION);
    body.push(id.len() as u8);
    body.extend_from_slice(id);
    body.extend_from_slice(&session.base.to_be_bytes());
    body.extend_from_slice(&session.received.to_be_bytes());
    match session.anchor {
        Some((epoch, offset, at)) => {
            body.push(1);
            for n in [epoch, offset, at] {
                body.extend_from_slice(&n.to_be_bytes());
            }
        }
        None => body.push(0),
    }
    record(out, &body);
}

/// A message record; its body is written in place (one copy of the payload).
pub fn message_record(out: &mut Vec<u8>, number: u64, text: bool, payload: &[u8]) {
    let len = 1 + 8 + 1 + payload.len();
    out.extend_from_slice(&(len as u32).to_be_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_at = out.len();
    out.push(MESSAGE);
    out.extend_from_slice(&number.to_be_bytes());
    out.push(u8::from(text));
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
}

/// An acknowledgement record.
pub fn acked_record(out: &mut Vec<u8>, up_to: u64) {
    let mut body = [0u8; 9];
    body[0] = ACKNOWLEDGED;
    body[1..].copy_from_slice(&up_to.to_be_bytes());
    record(out, &body);
}

/// A numbered-from record (see the module's description).
pub fn numbered_from_record(out: &mut Vec<u8>, acked: u64) {
    let mut body = [0u8; 9];
    body[0] = NUMBERED_FROM;
    body[1..].copy_from_slice(&acked.to_be_bytes());
    record(out, &body);
}

/// Reads the bytes of a field at a time.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
}

/// Reads a whole file: its header, then records until the end or the first
/// bad one.
pub fn read(bytes: &[u8]) -> Result<Contents, FormatError> {
    let Some(head) = bytes.get(..HEADER_LEN) else {
        return Err(FormatError::NotAnOutbox(format!("{} bytes, shorter than a header", bytes.len())));
    };
    if &head[..8] != MAGIC {
        return Err(FormatError::NotAnOutbox("no LCOUTBOX magic".into()));
    }
    if crc32fast::hash(&head[..12]).to_be_bytes() != head[12..16] {
        return Err(FormatError::NotAnOutbox("its header's checksum is wrong".into()));
    }
    let format = u16::from_be_bytes([head[8], head[9]]);
    let protocol = u16::from_be_bytes([head[10], head[11]]);
    if format != FORMAT_VERSION || protocol != 2 {
        return Err(FormatError::OtherVersion { format, protocol });
    }
    let mut contents = Contents { intact: HEADER_LEN, ..Contents::default() };
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        match next_record(&bytes[at..]) {
            Ok((body, len)) => match apply(&mut contents, body) {
                Ok(()) => {
                    at += len;
                    contents.intact = at;
                }
                Err(why) => {
                    contents.dropped = Some(format!("the record at byte {at} {why}"));
                    break;
                }
            },
            Err(why) => {
                contents.dropped = Some(format!("the record at byte {at} {why}"));
                break;
            }
        }
    }
    if let Some(why) = &mut contents.dropped {
        why.push_str(&format!("; {} bytes from there on were dropped", bytes.len() - contents.intact));
    }
    Ok(contents)
}

/// The body of the record at the start of `bytes`, and the record's length.
fn next_record(bytes: &[u8]) -> Result<(&[u8], usize), String> {
    let Some(head) = bytes.get(..8) else { return Err("is cut short in its header".into()) };
    let len = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    if len == 0 || len > MAX_RECORD {
        return Err(format!("has an impossible length ({len})"));
    }
    let Some(body) = bytes.get(8..8 + len) else { return Err("is cut short".into()) };
    if crc32fast::hash(body).to_be_bytes() != head[4..8] {
        return Err("has a wrong checksum".into());
    }
    Ok((body, 8 + len))
}

/// Takes one record's body into `contents`; an error leaves it unchanged.
fn apply(contents: &mut Contents, body: &[u8]) -> Result<(), String> {
    let mut fields = Fields(&body[1..]);
    match body[0] {
        SESSION => {
            let session = (|| {
                let id_len = fields.u8()? as usize;
                let id = fields.take(id_len)?.to_vec();
                let (base, received) = (fields.u64()?, fields.u64()?);
                let anchor = match fields.u8()? {
                    0 => None,
                    1 => Some((fields.u64()?, fields.u64()?, fields.u64()?)),
                    _ => return None,
                };
                fields.0.is_empty().then_some(SavedSession { id, base, received, anchor })
            })()
            .ok_or("is a malformed session")?;
            contents.session = Some(session);
        }
        MESSAGE => {
            let (Some(number), Some(text @ (0 | 1))) = (fields.u64(), fields.u8()) else {
                return Err("is a malformed message".into());
            };
            if number != contents.last_number + 1 {
                return Err(format!("holds message {number} after {}", contents.last_number));
            }
            contents.messages.push(SavedMessage { number, text: text == 1, payload: fields.0.to_vec() });
            contents.last_number = number;
        }
        ACKNOWLEDGED => {
            let Some(up_to) = fields.u64().filter(|_| fields.0.is_empty()) else {
                return Err("is a malformed acknowledgement".into());
            };
            if up_to < contents.acked || up_to > contents.last_number {
                return Err(format!(
                    "acknowledges {up_to} with {} acknowledged of {}",
                    contents.acked, contents.last_number
                ));
            }
            contents.acked = up_to;
            let gone = contents.messages.iter().take_while(|m| m.number <= up_to).count();
            contents.messages.drain(..gone);
        }
        NUMBERED_FROM => {
            let Some(acked) = fields.u64().filter(|_| fields.0.is_empty()) else {
                return Err("is a malformed numbering".into());
            };
            if !contents.messages.is_empty() || acked < contents.last_number {
                return Err(format!(
                    "numbers from {acked} with {} messages up to {}",
                    contents.messages.len(),
                    contents.last_number
                ));
            }
            (contents.acked, contents.last_number) = (acked, acked);
        }
        other => return Err(format!("has an unknown type {other}")),
    }
    Ok(())
}

/// The records of a compacted file holding `contents`' state: the session,
/// where acknowledgements stand, and every message not acknowledged.
pub fn compacted(contents: &Contents) -> Vec<u8> {
    let mut out = header(2).to_vec();
    if let Some(session) = &contents.session {
        session_record(&mut out, session);
    }
    // The numbering goes on where it stood; the messages kept follow.
    let first_kept = contents.messages.first().map_or(contents.last_number + 1, |m| m.number);
    numbered_from_record(&mut out, first_kept - 1);
    for message in &contents.messages {
        message_record(&mut out, message.number, message.text, &message.payload);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = header(2).to_vec();
        session_record(&mut out, &SavedSession { id: vec![7; 16], base: 0, received: 3, anchor: Some((9, 40, 3)) });
        for n in 1..=4 {
            message_record(&mut out, n, n % 2 == 0, format!("m{n}").as_bytes());
        }
        acked_record(&mut out, 2);
        out
    }

    #[test]
    fn records_read_back() {
        let contents = read(&sample()).unwrap();
        assert_eq!(contents.session.as_ref().unwrap().anchor, Some((9, 40, 3)));
        assert_eq!(contents.acked, 2);
        assert_eq!(contents.last_number, 4);
        let kept: Vec<_> = contents.messages.iter().map(|m| (m.number, m.text, m.payload.clone())).collect();
        assert_eq!(kept, [(3, false, b"m3".to_vec()), (4, true, b"m4".to_vec())]);
        assert_eq!(contents.dropped, None);
    }

    #[test]
    fn a_torn_or_damaged_tail_keeps_the_intact_prefix_and_says_so() {
        let whole = sample();
        let full = read(&whole).unwrap();
        for cut in HEADER_LEN..whole.len() {
            let contents = read(&whole[..cut]).unwrap();
            assert!(contents.intact <= cut);
            assert_eq!(contents.dropped.is_some(), contents.intact < cut, "cut at {cut}");
            assert!(contents.last_number <= full.last_number);
        }
        let mut damaged = whole.clone();
        let at = whole.len() - 3;
        damaged[at] ^= 0x55;
        let contents = read(&damaged).unwrap();
        assert!(contents.dropped.as_deref().unwrap().contains("checksum"), "{contents:?}");
        assert_eq!(contents.acked, 0, "the damaged acknowledgement does not count");
    }

    #[test]
    fn other_files_and_versions_are_refused() {
        assert!(matches!(read(b"hello"), Err(FormatError::NotAnOutbox(_))));
        let mut other = header(2);
        other[9] = 9; // format 9, and the checksum no longer matches
        assert!(matches!(read(&other), Err(FormatError::NotAnOutbox(_))));
        let mut v3 = header(3).to_vec();
        acked_record(&mut v3, 0);
        assert_eq!(read(&v3), Err(FormatError::OtherVersion { format: 1, protocol: 3 }));
    }

    #[test]
    fn a_compacted_file_holds_the_same_state() {
        let contents = read(&sample()).unwrap();
        let again = read(&compacted(&contents)).unwrap();
        assert_eq!(
            (again.session, again.acked, again.last_number, again.messages),
            (contents.session, contents.acked, contents.last_number, contents.messages)
        );
    }
}
