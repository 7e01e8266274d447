//! The durable store: sessions and the chat room's history in SQLite, what
//! sessions send in echo and sink modes in the inbound log beside it
//! (`inbound_log.rs`). One thread owns both and makes everything that
//! arrived while the previous commit ran durable at once (group commit):
//! the messages appended to the log and synced, the rest in one SQLite
//! transaction; only then are its messages acknowledged to their senders
//! and shown to the room. Fsync policy: the log is synced (`fdatasync`) at
//! every commit, SQLite's write-ahead log with `synchronous=FULL`, so an
//! acknowledged message survives `kill -9` and power loss.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use longconn_core::lock::lock;
use longconn_core::protocol::{Frame, FrameType};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::{oneshot, Notify};

use crate::history::{unix_now, Entry, History, Window};
use crate::inbound_log::{self, Append, InboundLog};
use crate::mode::Mode;
use crate::sessions::{random_u64, Session, SessionId, SessionState};

/// Requests taken into one transaction at most.
const GROUP_LIMIT: usize = 4096;
/// How long the store may gather requests before a commit when every
/// request waiting is a session's messages whose connection holds its ACKs
/// for its next write (`SessionState::commits_quiet`; held up to 1 ms,
/// longer than this): their senders wait for nothing, and one commit per
/// message would cost a request/reply round trip 16-28 µs of CPU on 2 cores.
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);

/// Whether a request may wait [`LINGER`] for company (see there); chat
/// lines never do, since the room shows them only once committed.
fn may_linger(request: &Request) -> bool {
    matches!(request, Request::Inbound { session, .. } if lock(&session.state).commits_quiet)
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

/// A change for the store thread.
pub enum Request {
    /// Chat lines for the room, from a session (counted as its inbound
    /// messages) or from a best-effort connection or the server itself.
    Room { author: u64, lines: Vec<Bytes>, session: Option<Arc<Session>> },
    /// Echo and sink: messages of a session's inbound stream, in order, as
    /// written by the connection that read them (one row per read; a
    /// commit joins a session's rows into one log record).
    Inbound { session: Arc<Session>, rows: Vec<Row> },
    /// A new session; `durable` is told once its commit is on disk, and
    /// only then may its id reach the client.
    NewSession { session: Arc<Session>, next_client: u64, durable: oneshot::Sender<()> },
    /// A session's room base moved (its history was partly lost).
    Rebase { id: SessionId, base: u64 },
    /// Sessions that expired.
    Forget { ids: Vec<SessionId> },
}

impl Request {
    /// About what committing it adds to the write-ahead log: its bytes, and
    /// the pages it touches (a row, an index entry, a session's counter).
    fn log_bytes(&self) -> u64 {
        let bytes: usize = match self {
            Request::Room { lines, .. } => lines.iter().map(|l| l.len() + 32).sum(),
            // Inbound messages go to the inbound log, not this one.
            Request::Inbound { .. } => return 0,
            _ => 0,
        };
        bytes as u64 + 3 * PAGE_SIZE
    }
}

/// The database's page size: a commit of one small message writes a few
/// pages to the log, so they are small (64 KiB pages wrote 200 KB per
/// message sent one at a time); large commits write rows of many messages,
/// which span pages whatever their size.
const PAGE_SIZE: u64 = 4096;

/// The sending side of the store thread (or task, [`start_local`]).
#[derive(Clone)]
pub struct Store {
    tx: Sender<Request>,
    rows: Arc<RowPool>,
    /// Wakes the store's task, when it runs as one.
    wake: Option<Arc<Notify>>,
    /// The store is in memory: sessions' messages have nowhere to go.
    in_memory: bool,
}

impl Store {
    pub fn send(&self, request: Request) {
        let request = match request {
            // In memory, a session's messages are kept once counted, as
            // the store thread would do without writing anything: counted
            // here, they cost no wake-up of that thread and no hop back.
            Request::Inbound { session, rows } if self.in_memory => {
                let count: u64 = rows.iter().map(|r| r.count).sum();
                self.rows.give_back(rows);
                lock(&session.state).stored_in_commit += count;
                session.stored(count);
                return;
            }
            request => request,
        };
        // The thread only stops when the process does.
        let _ = self.tx.send(request);
        if let Some(wake) = &self.wake {
            wake.notify_one();
        }
    }

    /// An empty row with room for `bytes`, in a buffer a commit gave back
    /// when there is one.
    pub fn new_row(&self, bytes: usize) -> Row {
        let mut buffer = lock(&self.rows.0).pop().unwrap_or_default();
        buffer.reserve(bytes);
        Row { bytes: buffer, count: 0 }
    }
}

/// Row buffers the store thread is done with, for connections to fill
/// again: a fresh buffer per read cost the connection a page fault per
/// 4 KiB it wrote (a tenth of its time under a stream of small messages).
#[derive(Default)]
struct RowPool(Mutex<Vec<Vec<u8>>>);

/// Buffers kept in the pool at most, and the largest one kept.
const POOL_ROWS: usize = 64;
const POOL_ROW_BYTES: usize = 256 * 1024;

impl RowPool {
    fn give_back(&self, rows: Vec<Row>) {
        let mut pool = lock(&self.0);
        for mut row in rows {
            if pool.len() < POOL_ROWS && row.bytes.capacity() <= POOL_ROW_BYTES {
                row.bytes.clear();
                pool.push(row.bytes);
            }
        }
    }
}

/// What the store held at startup.
pub struct Loaded {
    pub history: History,
    pub sessions: Vec<Arc<Session>>,
    pub next_client: u64,
    db: Connection,
    /// Echo and sink messages (none for a store in memory).
    log: Option<InboundLog>,
    next_offset: u64,
    window: Window,
    mode: Mode,
}

/// Opens (or creates) the store and reads what it holds.
pub fn open(location: &Location, mode: Mode, window: Window) -> Result<Loaded, String> {
    let db = match location {
        Location::File(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?
        }
        Location::Memory => Connection::open_in_memory().map_err(|e| e.to_string())?,
    };
    let failed = |e: rusqlite::Error| format!("store {}: {e}", location.describe());
    db.execute_batch(&format!(
        "PRAGMA page_size={PAGE_SIZE};
         PRAGMA cache_size=-65536;
         PRAGMA journal_mode=WAL;
         PRAGMA synchronous=FULL;
         PRAGMA wal_autocheckpoint=0;
         PRAGMA locking_mode=EXCLUSIVE;
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS room (offset INTEGER PRIMARY KEY, author INTEGER NOT NULL,
             at INTEGER NOT NULL, payload BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS sessions (id BLOB PRIMARY KEY, name TEXT NOT NULL, number INTEGER NOT NULL,
             base INTEGER NOT NULL, received INTEGER NOT NULL, client_acked INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS inbound (session BLOB NOT NULL, last_seq INTEGER NOT NULL,
             first_seq INTEGER NOT NULL, at INTEGER NOT NULL, messages BLOB NOT NULL);
         CREATE UNIQUE INDEX IF NOT EXISTS inbound_by_session ON inbound (session, last_seq);"
    ))
    .map_err(|e| match location {
        Location::File(path) if e.to_string().contains("locked") => {
            format!("the store {} is in use by another server", path.display())
        }
        _ => failed(e),
    })?;
    // Take the exclusive lock now, so a second server on the same data fails at once.
    db.execute_batch("BEGIN IMMEDIATE; COMMIT;")
        .map_err(|e| format!("the store {} is in use by another server ({e})", location.describe()))?;
    let meta = |key: &str| -> Result<Option<i64>, String> {
        db.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(failed)
    };
    let mode_code = mode as i64;
    match meta("mode")? {
        Some(stored) if stored != mode_code => {
            return Err(format!("the store {} belongs to a server in another mode", location.describe()))
        }
        Some(_) => {}
        None => {
            db.execute("INSERT INTO meta VALUES ('mode', ?1)", [mode_code]).map_err(failed)?;
        }
    }
    let epoch = match meta("epoch")? {
        Some(epoch) => epoch as u64,
        None => {
            let epoch = random_u64() >> 1;
            db.execute("INSERT INTO meta VALUES ('epoch', ?1)", [epoch as i64]).map_err(failed)?;
            epoch
        }
    };
    let next_offset = meta("room_next")?.unwrap_or(1) as u64;
    let next_client = meta("next_client")?.unwrap_or(1) as u64;
    let keep_from = next_offset.saturating_sub(window.messages as u64).max(1);
    let mut history = History::new(epoch, next_offset, window);
    {
        let mut rows = db
            .prepare("SELECT offset, author, at, payload FROM room WHERE offset >= ?1 ORDER BY offset")
            .map_err(failed)?;
        let entries: Vec<(u64, Entry)> = rows
            .query_map([keep_from as i64], |r| {
                let payload: Vec<u8> = r.get(3)?;
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    Entry { author: r.get::<_, i64>(1)? as u64, at: r.get::<_, i64>(2)? as u64, line: payload.into() },
                ))
            })
            .map_err(failed)?
            .collect::<Result<_, _>>()
            .map_err(failed)?;
        if let Some((first, _)) = entries.first() {
            history = History::new(epoch, *first, window);
        }
        for (offset, entry) in entries {
            if offset == history.next_offset() {
                history.push(offset, entry);
            }
        }
    }
    let (log, records) = match location {
        Location::File(path) => {
            let (mut log, mut records) = InboundLog::open(&log_dir(path))?;
            let legacy = move_legacy_rows(&db, &mut log).map_err(|e| format!("store {}: {e}", location.describe()))?;
            if !legacy.is_empty() {
                records = legacy.into_iter().chain(records).collect();
            }
            (Some(log), records)
        }
        Location::Memory => (None, Vec::new()),
    };
    let sessions = load_sessions(&db, mode, records).map_err(failed)?;
    Ok(Loaded { history, sessions, next_client, db, log, next_offset, window, mode })
}

/// Where the inbound log of the store at `path` lives: beside it.
pub fn log_dir(path: &Path) -> PathBuf {
    let mut dir = path.as_os_str().to_owned();
    dir.push("-log");
    PathBuf::from(dir)
}

/// Moves rows an older build kept in the `inbound` table into the log
/// (durable before they leave the table); returns them as records.
fn move_legacy_rows(db: &Connection, log: &mut InboundLog) -> Result<Vec<inbound_log::Record>, String> {
    let failed = |e: rusqlite::Error| e.to_string();
    let mut query = db
        .prepare("SELECT i.session, i.first_seq, i.last_seq, i.messages, s.client_acked FROM inbound i JOIN sessions s ON s.id = i.session ORDER BY i.rowid")
        .map_err(failed)?;
    let rows = query
        .query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, i64>(4)? as u64,
            ))
        })
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    let mut records = Vec::new();
    for (id, first_seq, last_seq, messages, client_acked) in rows {
        let Ok(session) = SessionId::try_from(id.as_slice()) else { continue };
        if last_seq < first_seq {
            continue;
        }
        records.push(inbound_log::Record {
            session,
            first_seq,
            count: last_seq - first_seq + 1,
            client_acked,
            row: messages.into(),
        });
    }
    if records.is_empty() {
        return Ok(records);
    }
    log.append_records(&records.iter().collect::<Vec<_>>())
        .and_then(|()| log.sync())
        .map_err(|e| format!("cannot write the log: {e}"))?;
    db.execute("DELETE FROM inbound", []).map_err(failed)?;
    Ok(records)
}

fn load_sessions(
    db: &Connection,
    mode: Mode,
    records: Vec<inbound_log::Record>,
) -> rusqlite::Result<Vec<Arc<Session>>> {
    let mut rows = db.prepare("SELECT id, name, number, base, received, client_acked FROM sessions")?;
    let found: Vec<(Vec<u8>, String, i64, i64, i64, i64)> = rows
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
        .collect::<Result<_, _>>()?;
    // Each session's records, in the order written.
    let mut by_session: HashMap<SessionId, Vec<inbound_log::Record>> = HashMap::new();
    for record in records {
        by_session.entry(record.session).or_default().push(record);
    }
    for records in by_session.values_mut() {
        // A record copied forward (log compaction) comes after newer ones.
        records.sort_by_key(|r| r.first_seq);
    }
    let mut sessions = Vec::new();
    for (id, name, number, base, received, client_acked) in found {
        let Ok(id) = SessionId::try_from(id.as_slice()) else { continue };
        let records = by_session.remove(&id).unwrap_or_default();
        // The log's newest record counts, else what the table kept when older records were dropped.
        let received = records.iter().map(|r| r.last_seq()).fold(received as u64, u64::max);
        let client_acked = records.iter().map(|r| r.client_acked).fold(client_acked as u64, u64::max);
        let mut state = SessionState {
            base: base as u64,
            received,
            accepted: received,
            client_acked,
            echo_first: received + 1,
            last_seen: Some(tokio::time::Instant::now()),
            ..SessionState::default()
        };
        if mode == Mode::Echo {
            'rows: for record in records {
                for (i, payload) in split_messages(record.row).into_iter().enumerate() {
                    let seq = record.first_seq + i as u64;
                    let next = state.echo_first + state.echo.len() as u64;
                    if seq <= client_acked || (!state.echo.is_empty() && seq < next) {
                        continue; // acknowledged, or a copy of one already taken
                    }
                    if state.echo.is_empty() {
                        state.echo_first = seq;
                    } else if seq != state.echo_first + state.echo.len() as u64 {
                        break 'rows; // a gap cannot be replayed in order; what follows counts as lost
                    }
                    state.push_echo(payload);
                }
            }
        }
        sessions.push(Session::new(id, number as u64, name, state));
    }
    Ok(sessions)
}

/// Starts the store thread; returns its handle.
pub fn start(loaded: Loaded, room: Arc<dyn Published>) -> Store {
    let (tx, rx) = mpsc::channel();
    let rows = Arc::new(RowPool::default());
    let in_memory = loaded.log.is_none();
    let mut writer = Writer::new(loaded, rows.clone());
    std::thread::Builder::new()
        .name("longconn-store".into())
        .spawn(move || writer.run(rx, &*room))
        .expect("start the store thread");
    Store { tx, rows, wake: None, in_memory }
}

/// Starts the store as a task of the current thread's runtime (spawned on
/// its `LocalSet`) instead of a thread of its own: same commits and the
/// same group commit, timed by tokio's clock. For the deterministic
/// simulation, where every host runs on one thread with a simulated clock
/// and a crash of the host must stop its store too.
pub fn start_local(loaded: Loaded, room: Arc<dyn Published>) -> Store {
    let (tx, rx) = mpsc::channel();
    let rows = Arc::new(RowPool::default());
    let wake = Arc::new(Notify::new());
    let woken = wake.clone();
    let in_memory = loaded.log.is_none();
    let mut writer = Writer::new(loaded, rows.clone());
    tokio::task::spawn_local(async move {
        loop {
            woken.notified().await;
            let Ok(first) = rx.try_recv() else { continue };
            let mut group = vec![first];
            group.extend(rx.try_iter().take(GROUP_LIMIT - 1));
            if group.iter().all(may_linger) {
                tokio::time::sleep(LINGER).await;
                group.extend(rx.try_iter().take(GROUP_LIMIT - group.len()));
            }
            let full = group.len() == GROUP_LIMIT;
            writer.commit_and_publish(group, &*room);
            writer.maintain(!full);
            if full {
                // More may wait behind a full group, with no send to wake us for them.
                woken.notify_one();
            }
        }
    });
    Store { tx, rows, wake: Some(wake), in_memory }
}

struct Writer {
    db: Connection,
    next_offset: u64,
    /// Room rows below this offset are already deleted.
    trimmed_below: u64,
    window: Window,
    mode: Mode,
    /// Where written rows' buffers go back to.
    rows: Arc<RowPool>,
    /// What the log holds since the last checkpoint (see [`Checkpoints`]).
    checkpoints: Checkpoints,
    /// Echo and sink messages, when the store is on disk.
    log: Option<InboundLog>,
}

/// When the write-ahead log is copied into the database (SQLite's own
/// checkpoint after a commit is off): only once the commit's effects are
/// published, so no acknowledgement waits for it, and while the store is
/// idle, so the log stays small and is written over in place (an fsync of
/// bytes written over costs less than one of a file that grew: 82 against
/// 112 µs per small commit on this machine's disk); or once the log holds
/// [`Checkpoints::MOST`] bytes, whatever the load, so a stream that never
/// pauses checkpoints rarely (each one costs fsyncs of its own).
#[derive(Default)]
struct Checkpoints {
    /// Bytes written to the log since the last checkpoint (estimated from
    /// the pages the commits touched).
    bytes: u64,
}

impl Checkpoints {
    /// A checkpoint when idle once the log holds this much.
    const IDLE: u64 = 1 << 20;
    /// A checkpoint whatever the load once the log holds this much.
    const MOST: u64 = 64 << 20;

    fn due(&self, idle: bool) -> bool {
        self.bytes >= Checkpoints::MOST || (idle && self.bytes >= Checkpoints::IDLE)
    }
}

/// What a commit makes visible once it is durable.
enum Effect {
    Lines { first: u64, author: u64, at: u64, lines: Vec<Bytes>, session: Option<Arc<Session>> },
    Stored { session: Arc<Session>, count: u64 },
    SessionStored(oneshot::Sender<()>),
}

impl Writer {
    fn new(loaded: Loaded, rows: Arc<RowPool>) -> Writer {
        let Loaded { db, log, next_offset, window, mode, .. } = loaded;
        Writer { db, next_offset, trimmed_below: 0, window, mode, rows, checkpoints: Checkpoints::default(), log }
    }

    fn run(&mut self, rx: Receiver<Request>, room: &dyn Published) {
        let mut waiting = None;
        loop {
            let first = match waiting.take() {
                Some(request) => request,
                None => match rx.recv() {
                    Ok(request) => request,
                    Err(_) => return,
                },
            };
            // Whatever arrived while the previous commit ran goes into this
            // one (group commit), and a request alone is committed at once:
            // no timer adds its wait to an idle connection's message.
            let mut group = vec![first];
            group.extend(rx.try_iter().take(GROUP_LIMIT - 1));
            if group.iter().all(may_linger) {
                // Their ACKs wait for their connections' next writes anyway.
                let until = Instant::now() + LINGER;
                while group.len() < GROUP_LIMIT {
                    match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                        Ok(request) => {
                            let last = !may_linger(&request);
                            group.push(request);
                            if last {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            self.commit_and_publish(group, room);
            waiting = rx.try_recv().ok();
            self.maintain(waiting.is_none());
        }
    }

    /// Between commits: the database's checkpoint when due, and log
    /// segments whose records are all released made ready for reuse.
    fn maintain(&mut self, idle: bool) {
        self.checkpoint_if_due(idle);
        let sealed = self.log.as_ref().map_or(0, InboundLog::sealed_segments);
        if sealed > 0 && (idle || sealed >= 8) {
            if let Err(e) = self.reuse_log_segments() {
                // Nothing was dropped; the segments stay until the next try.
                eprintln!("longconn-server: {e} (tried again later)");
            }
        }
    }

    /// Copies the write-ahead log into the database when [`Checkpoints`] says it is time.
    fn checkpoint_if_due(&mut self, idle: bool) {
        if !self.checkpoints.due(idle) {
            return;
        }
        // Passive: never waits (nothing else reads this database). A failure
        // leaves the log as it was, still valid, and is tried again later.
        match self.db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => self.checkpoints.bytes = 0,
            Err(e) => eprintln!("longconn-server: a checkpoint of the store failed (tried again later): {e}"),
        }
    }

    /// Commits `group` in one transaction, then makes it visible.
    fn commit_and_publish(&mut self, group: Vec<Request>, room: &dyn Published) {
        let first_kept = lock(room.history()).first_offset();
        match self.commit(group, first_kept) {
            Ok(effects) => publish(effects, room),
            Err(e) => {
                // Nothing of this group was acknowledged; clients resend it to the next server.
                eprintln!("longconn-server: the store failed, stopping: {e}");
                std::process::exit(1);
            }
        }
    }

    /// Makes `group` durable: its sessions' messages appended to the log
    /// and synced, the rest in one SQLite transaction.
    fn commit(&mut self, group: Vec<Request>, first_kept: u64) -> Result<Vec<Effect>, String> {
        let (inbound, others): (Vec<Request>, Vec<Request>) =
            merge_inbound(group).into_iter().partition(|r| matches!(r, Request::Inbound { .. }));
        let mut effects = Vec::with_capacity(inbound.len() + others.len());
        self.append_inbound(inbound, &mut effects).map_err(|e| format!("cannot write the log: {e}"))?;
        let trim_room = first_kept > self.trimmed_below;
        if others.is_empty() && !trim_room {
            return Ok(effects);
        }
        self.checkpoints.bytes += others.iter().map(Request::log_bytes).sum::<u64>();
        if let Some(log) = &mut self.log {
            for request in &others {
                if let Request::Forget { ids } = request {
                    for id in ids {
                        log.release(*id, u64::MAX);
                    }
                }
            }
        }
        let failed = |e: rusqlite::Error| e.to_string();
        let tx = self.db.transaction().map_err(failed)?;
        let offset_before = self.next_offset;
        for request in others {
            if let Some(effect) = apply(&tx, request, &mut self.next_offset).map_err(failed)? {
                effects.push(effect);
            }
        }
        if self.next_offset != offset_before {
            tx.execute("INSERT OR REPLACE INTO meta VALUES ('room_next', ?1)", [self.next_offset as i64])
                .map_err(failed)?;
        }
        if trim_room {
            tx.execute("DELETE FROM room WHERE offset < ?1", [first_kept as i64]).map_err(failed)?;
            self.trimmed_below = first_kept;
        }
        tx.commit().map_err(failed)?;
        Ok(effects)
    }

    /// Appends each session's messages of a commit to the log as one
    /// record (numbered after what the session has stored), syncs once, and
    /// releases what the session no longer needs kept. In memory, only the
    /// counting.
    fn append_inbound(&mut self, inbound: Vec<Request>, effects: &mut Vec<Effect>) -> std::io::Result<()> {
        let mut batches = Vec::with_capacity(inbound.len());
        for request in inbound {
            let Request::Inbound { session, rows } = request else { continue };
            let count: u64 = rows.iter().map(|r| r.count).sum();
            if count == 0 {
                continue;
            }
            let mut state = lock(&session.state);
            let first_seq = state.received_in_store_order() + 1;
            state.stored_in_commit += count;
            let client_acked = state.client_acked;
            drop(state);
            batches.push((session, rows, first_seq, count, client_acked));
        }
        if let Some(log) = &mut self.log {
            let pieces: Vec<Vec<&[u8]>> =
                batches.iter().map(|(_, rows, ..)| rows.iter().map(|r| &r.bytes[..]).collect()).collect();
            let appends: Vec<Append<'_>> = batches
                .iter()
                .zip(&pieces)
                .map(|((session, _, first_seq, count, client_acked), row)| Append {
                    session: session.id,
                    first_seq: *first_seq,
                    count: *count,
                    client_acked: *client_acked,
                    row,
                })
                .collect();
            log.append(&appends)?;
            log.sync()?;
            for (session, _, first_seq, count, client_acked) in &batches {
                let last_seq = first_seq + count - 1;
                let keep_after = match self.mode {
                    // A restart replays what the client has not acknowledged.
                    Mode::Echo => *client_acked,
                    _ => last_seq.saturating_sub(self.window.messages as u64),
                };
                log.release(session.id, keep_after);
            }
        }
        for (session, rows, _, count, _) in batches {
            self.rows.give_back(rows);
            effects.push(Effect::Stored { session, count });
        }
        Ok(())
    }

    /// Reuses the log's oldest segment once nothing in it is needed, after
    /// its sessions' counters are in the table (the log held their newest).
    fn reuse_log_segments(&mut self) -> Result<(), String> {
        let Some(log) = &mut self.log else { return Ok(()) };
        while let Some(counters) = log.oldest_reusable().map_err(|e| format!("cannot compact the log: {e}"))? {
            let failed = |e: rusqlite::Error| e.to_string();
            let tx = self.db.transaction().map_err(failed)?;
            for (id, received, client_acked) in &counters {
                // A session forgotten since has no row: nothing to keep.
                tx.prepare_cached("UPDATE sessions SET received = MAX(received, ?2), client_acked = MAX(client_acked, ?3) WHERE id = ?1")
                    .and_then(|mut update| update.execute(params![&id[..], *received as i64, *client_acked as i64]))
                    .map_err(failed)?;
            }
            tx.commit().map_err(failed)?;
            log.reuse_oldest().map_err(|e| format!("cannot reuse a log segment: {e}"))?;
        }
        Ok(())
    }
}

/// Joins the inbound requests of each session in a group into its first
/// one, so a commit writes one row, one counter update and one trim per
/// session however many reads it gathered. Each session's order is kept;
/// everything else stays where it was.
fn merge_inbound(group: Vec<Request>) -> Vec<Request> {
    let mut merged: Vec<Request> = Vec::with_capacity(group.len());
    for request in group {
        if let Request::Inbound { session, rows } = request {
            let earlier = merged.iter_mut().find_map(|r| match r {
                Request::Inbound { session: s, rows: r } if Arc::ptr_eq(s, &session) => Some(r),
                _ => None,
            });
            match earlier {
                Some(earlier) => earlier.extend(rows),
                None => merged.push(Request::Inbound { session, rows }),
            }
        } else {
            merged.push(request);
        }
    }
    merged
}

fn apply(tx: &Transaction<'_>, request: Request, next_offset: &mut u64) -> rusqlite::Result<Option<Effect>> {
    let at = unix_now();
    Ok(match request {
        Request::Room { author, lines, session } => {
            let first = *next_offset;
            let mut insert =
                tx.prepare_cached("INSERT INTO room (offset, author, at, payload) VALUES (?1, ?2, ?3, ?4)")?;
            for line in &lines {
                insert.execute(params![*next_offset as i64, author as i64, at as i64, &line[..]])?;
                *next_offset += 1;
            }
            if let Some(session) = &session {
                count_received(tx, session, lines.len() as u64)?;
            }
            Some(Effect::Lines { first, author, at, lines, session })
        }
        // Appended to the log by the caller.
        Request::Inbound { .. } => None,
        Request::NewSession { session, next_client, durable } => {
            let state = lock(&session.state);
            tx.prepare_cached("INSERT OR REPLACE INTO sessions VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?.execute(params![
                &session.id[..],
                session.name,
                session.number as i64,
                state.base as i64,
                state.received as i64,
                state.client_acked as i64
            ])?;
            drop(state);
            tx.execute("INSERT OR REPLACE INTO meta VALUES ('next_client', ?1)", [next_client as i64])?;
            Some(Effect::SessionStored(durable))
        }
        Request::Rebase { id, base } => {
            tx.prepare_cached("UPDATE sessions SET base = ?2 WHERE id = ?1")?.execute(params![&id[..], base as i64])?;
            None
        }
        Request::Forget { ids } => {
            for id in ids {
                tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?.execute([&id[..]])?;
            }
            None
        }
    })
}

/// Marks a text message in a row's length word (messages are far below 2 GiB).
const TEXT: u32 = 1 << 31;

/// Messages of a session's inbound stream as the store keeps them: each a
/// u32 BE length (its top bit set for text), then its bytes. A session's
/// messages are stored one log record per commit, not one per message:
/// storing costs a copy per message (made by the connection as it reads),
/// and the rows are written to the log as they are (one vectored write).
#[derive(Debug, Default)]
pub struct Row {
    bytes: Vec<u8>,
    count: u64,
}

impl Row {
    pub fn push(&mut self, kind: FrameType, payload: &[u8]) {
        let text = if kind == FrameType::Text { TEXT } else { 0 };
        self.bytes.extend_from_slice(&(payload.len() as u32 | text).to_be_bytes());
        self.bytes.extend_from_slice(payload);
        self.count += 1;
    }

    /// How many messages it holds.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// The messages of a stored row (see [`Row`]); a truncated tail is dropped.
fn split_messages(row: Bytes) -> Vec<Frame> {
    let mut messages = Vec::new();
    let mut at = 0;
    while let Some(word) = row.get(at..at + 4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes"))) {
        let len = (word & !TEXT) as usize;
        let Some(end) = (at + 4).checked_add(len).filter(|&end| end <= row.len()) else { break };
        let payload = row.slice(at + 4..end);
        messages.push(if word & TEXT != 0 { Frame::Text(payload) } else { Frame::Data(payload) });
        at = end;
    }
    messages
}

/// Every client message of the one session in a closed store file, in the
/// store's order (echo and sink modes): for tests that check what landed
/// where it lands. Fails on a gap or an overlap in the store's numbering.
pub fn inbound_messages(path: &Path) -> Result<Vec<Frame>, String> {
    let mut messages = Vec::new();
    let mut records = inbound_log::read_all(&log_dir(path))?;
    // A record copied forward (log compaction) comes after newer ones.
    records.sort_by_key(|r| r.first_seq);
    records.dedup_by_key(|r| r.first_seq);
    for record in records {
        let (first, last) = (record.first_seq, record.last_seq());
        if first != messages.len() as u64 + 1 {
            return Err(format!("a record starts at {first} after {} messages", messages.len()));
        }
        messages.extend(split_messages(record.row));
        if messages.len() as u64 != last {
            return Err(format!("record {first}..={last} holds {} messages", messages.len() as u64 + 1 - first));
        }
    }
    Ok(messages)
}

/// Adds `count` to a session's stored inbound messages, in the same
/// transaction as the messages themselves, with the client's latest
/// acknowledgement; returns that acknowledgement.
fn count_received(tx: &Transaction<'_>, session: &Session, count: u64) -> rusqlite::Result<u64> {
    let mut state = lock(&session.state);
    state.stored_in_commit += count;
    let received = state.received + state.stored_in_commit;
    let client_acked = state.client_acked;
    drop(state);
    tx.prepare_cached("UPDATE sessions SET received = ?2, client_acked = ?3 WHERE id = ?1")?.execute(params![
        &session.id[..],
        received as i64,
        client_acked as i64
    ])?;
    Ok(client_acked)
}

/// Where committed chat lines become visible: the room (`room.rs`), seen
/// by the store thread only through this.
pub trait Published: Send + Sync {
    fn history(&self) -> &Mutex<History>;
    /// New lines are in the history: wake the members.
    fn lines_added(&self);
}

/// After a commit: the room sees the new lines, senders get their acknowledgements.
fn publish(effects: Vec<Effect>, room: &dyn Published) {
    let mut lines_added = false;
    for effect in effects {
        match effect {
            Effect::Lines { first, author, at, lines, session } => {
                let count = lines.len() as u64;
                let mut history = lock(room.history());
                for (i, line) in lines.into_iter().enumerate() {
                    history.push(first + i as u64, Entry { author, at, line });
                }
                drop(history);
                lines_added = true;
                if let Some(session) = session {
                    session.stored(count);
                }
            }
            Effect::Stored { session, count } => session.stored(count),
            Effect::SessionStored(durable) => {
                // The connection may have given up waiting; nothing to tell then.
                let _ = durable.send(());
            }
        }
    }
    if lines_added {
        room.lines_added();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_rows_come_back_empty_for_reuse_within_bounds() {
        let pool = RowPool::default();
        let mut row = Row { bytes: Vec::with_capacity(1000), count: 0 };
        row.push(FrameType::Data, b"x");
        let oversize = Row { bytes: Vec::with_capacity(POOL_ROW_BYTES + 1), count: 0 };
        pool.give_back(vec![row, oversize]);
        let kept = lock(&pool.0);
        assert_eq!(kept.len(), 1, "the oversize buffer is freed");
        assert!(kept[0].is_empty() && kept[0].capacity() >= 1000);
    }

    #[test]
    fn rows_an_older_build_kept_in_the_table_move_to_the_log_and_count() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("longconn-legacy-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sink.db");
        let id = [7u8; 16];
        {
            // The tables as an older build left them: two rows of messages 1-2 and 3.
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE sessions (id BLOB PRIMARY KEY, name TEXT NOT NULL, number INTEGER NOT NULL,
                     base INTEGER NOT NULL, received INTEGER NOT NULL, client_acked INTEGER NOT NULL);
                 CREATE TABLE inbound (session BLOB NOT NULL, last_seq INTEGER NOT NULL,
                     first_seq INTEGER NOT NULL, at INTEGER NOT NULL, messages BLOB NOT NULL);",
            )
            .unwrap();
            db.execute("INSERT INTO sessions VALUES (?1, 'old', 1, 1, 3, 0)", [&id[..]]).unwrap();
            for (first, last, texts) in [(1, 2, &["one", "two"][..]), (3, 3, &["three"][..])] {
                let mut row = Row::default();
                for text in texts {
                    row.push(FrameType::Text, text.as_bytes());
                }
                db.execute(
                    "INSERT INTO inbound VALUES (?1, ?2, ?3, 0, ?4)",
                    params![&id[..], last as i64, first as i64, row.bytes],
                )
                .unwrap();
            }
        }
        let loaded = open(&Location::File(path.clone()), Mode::Sink, Window::default()).unwrap();
        assert_eq!(lock(&loaded.sessions[0].state).received, 3);
        let left: i64 = loaded.db.query_row("SELECT COUNT(*) FROM inbound", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 0, "the rows left the table");
        drop(loaded);
        let texts: Vec<Frame> =
            ["one", "two", "three"].iter().map(|t| Frame::Text(Bytes::from_static(t.as_bytes()))).collect();
        assert_eq!(inbound_messages(&path).unwrap(), texts);
        // Opened again, nothing is moved twice.
        let loaded = open(&Location::File(path.clone()), Mode::Sink, Window::default()).unwrap();
        assert_eq!(lock(&loaded.sessions[0].state).received, 3);
        drop(loaded);
        assert_eq!(inbound_messages(&path).unwrap(), texts);
        let _ = std::fs::remove_dir_all(&dir);
    }

    struct NoRoom(Mutex<History>);

    impl Published for NoRoom {
        fn history(&self) -> &Mutex<History> {
            &self.0
        }
        fn lines_added(&self) {}
    }

    #[test]
    fn a_session_keeps_its_count_when_the_log_segments_holding_it_are_reused() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("longconn-reuse-{}-{nanos}", std::process::id()));
        let path = dir.join("echo.db");
        let window = Window::default();
        let mut loaded = open(&Location::File(path.clone()), Mode::Echo, window).unwrap();
        loaded.log.as_mut().unwrap().set_segment_bytes(1024);
        let room = Arc::new(NoRoom(Mutex::new(History::new(1, 1, window))));
        let store = start(loaded, room);
        let sessions: Vec<Arc<Session>> =
            (1..=2u8).map(|i| Session::new([i; 16], i as u64, format!("s{i}"), SessionState::default())).collect();
        for session in &sessions {
            let (durable, stored) = oneshot::channel();
            store.send(Request::NewSession { session: session.clone(), next_client: 3, durable });
            stored.blocking_recv().unwrap();
        }
        // The first session sends 50 messages whose echoes its client
        // acknowledges before each commit (echoes leave before their message
        // is stored): every record of it is released, so once its segments
        // are reused only the table can tell its count. The second sends 300
        // after it, each echo acknowledged before the next message: its
        // newest record is always still needed, so it is copied forward.
        for ((session, count), acked_ahead) in sessions.iter().zip([50u64, 300]).zip([0, 1]) {
            for n in 1..=count {
                lock(&session.state).client_acked = n - acked_ahead;
                let mut row = store.new_row(100);
                row.push(FrameType::Data, &[n as u8; 96]);
                store.send(Request::Inbound { session: session.clone(), rows: vec![row] });
                let deadline = Instant::now() + std::time::Duration::from_secs(10);
                while lock(&session.state).received < n {
                    assert!(Instant::now() < deadline, "message {n} was not stored");
                    std::thread::yield_now();
                }
            }
        }
        drop(store); // the store thread ends with its last sender
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let reopened = loop {
            // The database is locked until the thread has closed it.
            match open(&Location::File(path.clone()), Mode::Echo, window) {
                Ok(loaded) => break loaded,
                Err(e) => assert!(Instant::now() < deadline, "{e}"),
            }
            std::thread::yield_now();
        };
        let files = std::fs::read_dir(log_dir(&path)).unwrap().count();
        assert!(files < 10, "released segments are reused, not kept: {files} files");
        let received: Vec<u64> = reopened.sessions.iter().map(|s| lock(&s.state).received).collect();
        let mut expected = vec![50, 300];
        if reopened.sessions[0].id != [1; 16] {
            expected.reverse();
        }
        assert_eq!(received, expected);
        drop(reopened);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rows_of_messages_split_back_into_the_messages() {
        let messages = vec![
            Frame::Data(Bytes::from_static(b"one")),
            Frame::Text(Bytes::new()),
            Frame::Text(Bytes::from_static(b"3")),
        ];
        let mut row = Row::default();
        for message in &messages {
            let (kind, payload) = message.parts();
            row.push(kind, payload);
        }
        assert_eq!(row.count(), 3);
        let bytes = Bytes::from(row.bytes);
        assert_eq!(split_messages(bytes.clone()), messages);
        assert_eq!(split_messages(bytes.slice(..bytes.len() - 1)), messages[..2].to_vec());
    }
}
