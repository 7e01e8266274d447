//! The server's durable state behind one interface, [`Store`]: sessions
//! (their counters and, in echo mode, the replies not yet acknowledged),
//! the room's history, and what sessions send in echo and sink modes. The
//! commit loop above it (`commit.rs`) gathers changes into groups and
//! decides when they are acknowledged and shown; a store only makes a
//! group durable and says where its lines landed. It knows nothing of
//! connections, sessions' live state or the room.
//!
//! Two implementations: SQLite with an append-only log beside it
//! (`sqlite.rs`, `inbound_log.rs`), on disk or in memory, for one server;
//! Redis (`redis.rs`), shared by any number of server nodes: sessions
//! move between nodes through [`Store::take_over`], and every node's room
//! lines reach every node through a [`Feed`].

pub mod inbound_log;
pub mod redis;
mod row;
pub mod sqlite;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use longconn_core::protocol::Frame;

use crate::history::{Entry, History, Window};
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
    /// Whether other servers share this store: then a session is taken
    /// over from the store on every resume ([`Store::take_over`]) and the
    /// room's lines come from [`Store::feed`], not from this server's commits.
    fn shared(&self) -> bool {
        false
    }
    /// Takes session `id` over for this server: a new owner generation,
    /// after which every change the previous owner (on any server) makes
    /// to it fails as fenced; returns the session as stored, or `None` if
    /// the store does not have it.
    fn take_over(&mut self, _id: SessionId) -> Result<TakeOver, String> {
        Ok(TakeOver::Unknown)
    }
    /// Begins a new history epoch if the store's is still `seen` and its
    /// room ends at or below offset `claimed`, which a client has: the
    /// store lost lines it had acknowledged, and their offsets must not
    /// name other lines under the same epoch. Returns the epoch now.
    fn new_epoch(&mut self, seen: u64, claimed: u64) -> Result<u64, String>;
    /// A reader of every server's room lines, for a shared store.
    fn feed(&mut self) -> Option<Box<dyn Feed>> {
        None
    }
}

/// What [`Store::take_over`] found.
#[derive(Debug)]
pub enum TakeOver {
    /// The session, now owned by this server under `record.owner`.
    Taken(LoadedSession),
    /// The store has no such session.
    Unknown,
    /// The store lost everything (it restarted empty): a new epoch began.
    Lost { epoch: u64 },
}

/// Reads the room's lines as every server appends them (shared stores).
pub trait Feed: Send {
    /// Lines from offset `next` on in history `epoch`, waiting a little
    /// for some; when the store's epoch is another, the lines of the new
    /// one from its start. Errors are the store being unreachable.
    fn read(&mut self, epoch: u64, next: u64) -> Result<FeedBatch, String>;
}

/// What a [`Feed`] read.
#[derive(Debug, Default)]
pub struct FeedBatch {
    pub epoch: u64,
    pub lines: Vec<(u64, Entry)>,
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
    Rebase { id: SessionId, owner: u64, base: u64 },
    /// Sessions that expired, with the owner generation each was held under.
    Forget { ids: Vec<(SessionId, u64)> },
    /// Room lines below this offset are out of the window: the store may drop them.
    TrimRoom { below: u64 },
}

/// A session's inbound messages in a change: sequence numbers `first_seq`
/// to `first_seq + count - 1`, with the client's latest acknowledgement
/// of the server's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub id: SessionId,
    /// The owner generation the session is held under on this server.
    pub owner: u64,
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
    /// The offset of the first line of each `Change::Lines`, in order
    /// (a shared store's lines are shown by its feed instead).
    pub line_offsets: Vec<u64>,
    /// Sessions whose changes failed because another owner took them over
    /// (or they are gone): nothing of theirs in this group was stored.
    pub fenced: Vec<SessionId>,
    /// The store had lost everything (it restarted empty): nothing of this
    /// group was stored, and a new epoch began.
    pub lost: Option<u64>,
}

/// The owner generation a new session starts with (each takeover adds one).
pub const FIRST_OWNER: u64 = 1;

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
    /// The owner generation (shared stores; 0 otherwise).
    pub owner: u64,
}

/// A stored session as loaded at startup or taken over.
#[derive(Debug)]
pub struct LoadedSession {
    pub record: SessionRecord,
    /// Echo: the replies the client has not acknowledged, the first
    /// numbered `echo_first`.
    pub echo_first: u64,
    pub echo: Vec<Frame>,
}

/// Echo: the replies a client has not acknowledged, out of a session's
/// stored records (each its first sequence number and its row, oldest
/// first): every message after `client_acked`, once; a gap ends them (what
/// follows cannot be replayed in order and counts as lost). Returns the
/// number of the first, and the replies.
pub fn unacknowledged_echo(
    records: impl IntoIterator<Item = (u64, Bytes)>,
    received: u64,
    client_acked: u64,
) -> (u64, Vec<Frame>) {
    let (mut echo_first, mut echo) = (received + 1, Vec::new());
    for (first_seq, row) in records {
        for (i, payload) in row::split_messages(row).into_iter().enumerate() {
            let seq = first_seq + i as u64;
            let next = echo_first + echo.len() as u64;
            if seq <= client_acked || (!echo.is_empty() && seq < next) {
                continue; // acknowledged, or a copy of one already taken
            }
            if echo.is_empty() {
                echo_first = seq;
            } else if seq != next {
                return (echo_first, echo);
            }
            echo.push(payload);
        }
    }
    (echo_first, echo)
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
    /// A Redis server shared with other nodes: `redis://HOST:PORT[/DB]`.
    Redis(String),
}

impl Location {
    pub fn describe(&self) -> String {
        match self {
            Location::File(path) => path.display().to_string(),
            Location::Memory => "memory (nothing survives a restart)".into(),
            Location::Redis(url) => url.clone(),
        }
    }
}

/// Opens (or creates) the store at `location` and reads what it holds.
pub fn open(location: &Location, mode: Mode, window: Window) -> Result<(Box<dyn Store>, Loaded), String> {
    if let Location::Redis(url) = location {
        let (store, loaded) = redis::open(url, mode, window)?;
        return Ok((Box::new(store), loaded));
    }
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
