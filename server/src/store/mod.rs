//! The server's durable state behind one interface, [`Store`]: sessions
//! (their counters and, in echo mode, the replies not yet acknowledged),
//! the room's history, and what sessions send in echo and sink modes. The
//! commit loop above it (`commit.rs`) gathers changes into groups and
//! decides when they are acknowledged and shown; a store only makes a
//! group durable and says where its lines landed. It knows nothing of
//! connections, sessions' live state or the room.
//!
//! One implementation: SQLite with an append-only log beside it
//! (`sqlite.rs`, `inbound_log.rs`), on disk or in memory.

pub mod inbound_log;
mod row;
pub mod sqlite;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use longconn_core::protocol::Frame;

use crate::history::{History, Window};
use crate::ids::SessionId;
use crate::mode::Mode;

pub use row::{Row, RowPool};
pub use sqlite::inbound_messages;

/// Durable state, written one group of changes at a time.
pub trait Store: Send {
    /// Makes `changes` durable together, in order, then returns where
    /// their lines landed. Nothing of a group that fails may be
    /// acknowledged: the caller stops.
    fn commit(&mut self, changes: &[Change]) -> Result<Committed, String>;
    /// Housekeeping between commits (`idle`: nothing is waiting).
    fn maintain(&mut self, idle: bool);
    /// Whether sessions' inbound messages (echo, sink) are kept: a store
    /// in memory counts them without writing them anywhere.
    fn keeps_inbound(&self) -> bool;
}

/// One change in a group.
#[derive(Debug)]
pub enum Change {
    /// Chat lines appended to the room, at the next offsets; from a
    /// session, they are its inbound messages `counted`.
    Lines { author: u64, at: u64, lines: Vec<Bytes>, counted: Option<Counted> },
    /// Messages of a session's inbound stream (echo, sink).
    Inbound { counted: Counted, rows: Vec<Row> },
    /// A new session, and the client number to give next.
    NewSession { record: SessionRecord, next_client: u64 },
    /// A session's room base moved (its history was partly lost).
    Rebase { id: SessionId, base: u64 },
    /// Sessions that expired.
    Forget { ids: Vec<SessionId> },
    /// Room lines below this offset are out of the window: the store may drop them.
    TrimRoom { below: u64 },
}

/// A session's inbound messages in a change: sequence numbers `first_seq`
/// to `first_seq + count - 1`, with the client's latest acknowledgement
/// of the server's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub id: SessionId,
    pub first_seq: u64,
    pub count: u64,
    pub client_acked: u64,
}

impl Counted {
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.count - 1
    }
}

/// What a commit decided.
#[derive(Debug, Default)]
pub struct Committed {
    /// The offset of the first line of each `Change::Lines`, in order.
    pub line_offsets: Vec<u64>,
}

/// A session as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    /// The name the room knows this client by.
    pub name: String,
    /// A number for the room's author field.
    pub number: u64,
    /// Chat: the room offset just before the session's first message.
    pub base: u64,
    /// Inbound messages stored.
    pub received: u64,
    /// The highest server-to-client sequence number the client acknowledged.
    pub client_acked: u64,
}

/// A stored session as loaded at startup.
#[derive(Debug)]
pub struct LoadedSession {
    pub record: SessionRecord,
    /// Echo: the replies the client has not acknowledged, the first
    /// numbered `echo_first`.
    pub echo_first: u64,
    pub echo: Vec<Frame>,
}

/// What a store held when it was opened.
pub struct Loaded {
    pub history: History,
    pub sessions: Vec<LoadedSession>,
    pub next_client: u64,
}

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database in this file.
    File(PathBuf),
    /// Nothing survives a restart (sessions still survive reconnects).
    Memory,
}

impl Location {
    pub fn describe(&self) -> String {
        match self {
            Location::File(path) => path.display().to_string(),
            Location::Memory => "memory (nothing survives a restart)".into(),
        }
    }
}

/// Opens (or creates) the store at `location` and reads what it holds.
pub fn open(location: &Location, mode: Mode, window: Window) -> Result<(Box<dyn Store>, Loaded), String> {
    let (store, loaded) = sqlite::open(location, mode, window)?;
    Ok((Box::new(store), loaded))
}

/// The default store file for a server in `mode` whose longconn port is
/// `port`: under `$XDG_STATE_HOME` (or `~/.local/state`). Servers on any
/// free port (0) keep their store in memory: they cannot be found again
/// after a restart anyway.
pub fn default_location(mode: Mode, port: Option<u16>) -> Location {
    let Some(port) = port.filter(|&p| p != 0) else {
        return Location::Memory;
    };
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/state")));
    match state {
        Some(dir) => Location::File(dir.join("longconn-server").join(format!("{}-{port}.db", mode.name()))),
        None => Location::Memory,
    }
}
