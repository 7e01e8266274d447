//! The SQLite store: sessions and the chat room's history in SQLite, what
//! sessions send in echo and sink modes in the inbound log beside it
//! (`inbound_log.rs`). A group of changes is made durable at once: its
//! sessions' messages appended to the log and synced, the rest in one
//! SQLite transaction. Fsync policy: the log is synced (`fdatasync`) at
//! every commit, SQLite's write-ahead log with `synchronous=FULL`, so an
//! acknowledged message survives `kill -9` and power loss.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::inbound_log::{self, Append, InboundLog};
use super::row::split_messages;
use super::{unacknowledged_echo, Change, Committed, Counted, Loaded, LoadedSession, Location, SessionRecord, Store};
use crate::history::{Entry, History, Window};
use crate::ids::{random_u64, SessionId};
use crate::mode::Mode;
use longconn_core::protocol::Frame;

/// The database's page size: a commit of one small message writes a few
/// pages to the log, so they are small (64 KiB pages wrote 200 KB per
/// message sent one at a time); large commits write rows of many messages,
/// which span pages whatever their size.
const PAGE_SIZE: u64 = 4096;

/// About what committing a change adds to the write-ahead log: its bytes,
/// and the pages it touches (a row, an index entry, a session's counter).
fn log_bytes(change: &Change) -> u64 {
    let bytes: usize = match change {
        Change::Lines { lines, .. } => lines.iter().map(|l| l.len() + 32).sum(),
        // Inbound messages go to the inbound log, not this one.
        Change::Inbound { .. } | Change::TrimRoom { .. } => return 0,
        _ => 0,
    };
    bytes as u64 + 3 * PAGE_SIZE
}

/// The store: the database, and the inbound log when on disk.
pub struct SqliteStore {
    db: Connection,
    next_offset: u64,
    /// Room rows below this offset are already deleted.
    trimmed_below: u64,
    window: Window,
    mode: Mode,
    /// What the log holds since the last checkpoint (see [`Checkpoints`]).
    checkpoints: Checkpoints,
    /// Echo and sink messages (none for a store in memory).
    log: Option<InboundLog>,
}

/// Opens (or creates) the store at `location` and reads what it holds.
pub fn open(location: &Location, mode: Mode, window: Window) -> Result<(SqliteStore, Loaded), String> {
    let db = match location {
        Location::File(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?
        }
        Location::Memory => Connection::open_in_memory().map_err(|e| e.to_string())?,
        Location::Redis(url) => return Err(format!("{url} is not a SQLite store")),
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
        Location::Memory | Location::Redis(_) => (None, Vec::new()),
    };
    let sessions = load_sessions(&db, mode, records).map_err(failed)?;
    let store =
        SqliteStore { db, next_offset, trimmed_below: 0, window, mode, checkpoints: Checkpoints::default(), log };
    Ok((store, Loaded { history, sessions, next_client }))
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

/// The stored sessions, with their counters brought up to date from the
/// log's records and, in echo mode, the replies their clients have not
/// acknowledged.
fn load_sessions(
    db: &Connection,
    mode: Mode,
    records: Vec<inbound_log::Record>,
) -> rusqlite::Result<Vec<LoadedSession>> {
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
        let record =
            SessionRecord { id, name, number: number as u64, base: base as u64, received, client_acked, owner: 0 };
        let (echo_first, echo) = match mode {
            Mode::Echo => {
                unacknowledged_echo(records.into_iter().map(|r| (r.first_seq, r.row)), received, client_acked)
            }
            _ => (received + 1, Vec::new()),
        };
        sessions.push(LoadedSession { record, echo_first, echo });
    }
    Ok(sessions)
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

impl Store for SqliteStore {
    /// Appends each session's messages to the log (one record per session,
    /// one sync), then applies the rest in one transaction.
    fn commit(&mut self, changes: &[Change]) -> Result<Committed, String> {
        self.append_inbound(changes).map_err(|e| format!("cannot write the log: {e}"))?;
        let trim_below = changes.iter().find_map(|c| match c {
            Change::TrimRoom { below } if *below > self.trimmed_below => Some(*below),
            _ => None,
        });
        let others = || changes.iter().filter(|c| !matches!(c, Change::Inbound { .. } | Change::TrimRoom { .. }));
        let mut committed = Committed::default();
        if others().next().is_none() && trim_below.is_none() {
            return Ok(committed);
        }
        self.checkpoints.bytes += others().map(log_bytes).sum::<u64>();
        if let Some(log) = &mut self.log {
            for change in others() {
                if let Change::Forget { ids } = change {
                    for (id, _) in ids {
                        log.release(*id, u64::MAX);
                    }
                }
            }
        }
        let failed = |e: rusqlite::Error| e.to_string();
        let tx = self.db.transaction().map_err(failed)?;
        let offset_before = self.next_offset;
        for change in others() {
            if let Some(first) = apply(&tx, change, &mut self.next_offset).map_err(failed)? {
                committed.line_offsets.push(first);
            }
        }
        if self.next_offset != offset_before {
            tx.execute("INSERT OR REPLACE INTO meta VALUES ('room_next', ?1)", [self.next_offset as i64])
                .map_err(failed)?;
        }
        if let Some(below) = trim_below {
            tx.execute("DELETE FROM room WHERE offset < ?1", [below as i64]).map_err(failed)?;
        }
        tx.commit().map_err(failed)?;
        if let Some(below) = trim_below {
            self.trimmed_below = below;
        }
        Ok(committed)
    }

    fn maintain(&mut self, idle: bool) {
        self.maintain_now(idle);
    }

    fn new_epoch(&mut self, seen: u64, claimed: u64) -> Result<u64, String> {
        let failed = |e: rusqlite::Error| e.to_string();
        let stored: i64 =
            self.db.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| r.get(0)).map_err(failed)?;
        if stored as u64 != seen || self.next_offset > claimed {
            return Ok(stored as u64);
        }
        let epoch = random_u64() >> 1;
        self.db.execute("UPDATE meta SET value = ?1 WHERE key = 'epoch'", [epoch as i64]).map_err(failed)?;
        Ok(epoch)
    }

    fn keeps_inbound(&self) -> bool {
        self.log.is_some()
    }
}

impl SqliteStore {
    /// Between commits: the database's checkpoint when due, and log
    /// segments whose records are all released made ready for reuse.
    fn maintain_now(&mut self, idle: bool) {
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

    /// Appends each session's messages of a commit to the log as one
    /// record, syncs once, and releases what the session no longer needs
    /// kept. In memory, nothing.
    fn append_inbound(&mut self, changes: &[Change]) -> std::io::Result<()> {
        let Some(log) = &mut self.log else { return Ok(()) };
        let batches: Vec<(&Counted, Vec<&[u8]>)> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Inbound { counted, rows } if counted.count > 0 => {
                    Some((counted, rows.iter().map(|r| r.bytes()).collect()))
                }
                _ => None,
            })
            .collect();
        if batches.is_empty() {
            return Ok(());
        }
        let appends: Vec<Append<'_>> = batches
            .iter()
            .map(|(counted, row)| Append {
                session: counted.id,
                first_seq: counted.first_seq,
                count: counted.count,
                client_acked: counted.client_acked,
                row,
            })
            .collect();
        log.append(&appends)?;
        log.sync()?;
        for (counted, _) in &batches {
            let keep_after = match self.mode {
                // A restart replays what the client has not acknowledged.
                Mode::Echo => counted.client_acked,
                _ => counted.last_seq().saturating_sub(self.window.messages as u64),
            };
            log.release(counted.id, keep_after);
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

/// Applies one change in the transaction; for lines, returns the offset of the first.
fn apply(tx: &Transaction<'_>, change: &Change, next_offset: &mut u64) -> rusqlite::Result<Option<u64>> {
    Ok(match change {
        Change::Lines { author, at, lines, counted } => {
            let first = *next_offset;
            let mut insert =
                tx.prepare_cached("INSERT INTO room (offset, author, at, payload) VALUES (?1, ?2, ?3, ?4)")?;
            for line in lines {
                insert.execute(params![*next_offset as i64, *author as i64, *at as i64, &line[..]])?;
                *next_offset += 1;
            }
            if let Some(counted) = counted {
                // The session's count moves in the same transaction as its messages.
                tx.prepare_cached("UPDATE sessions SET received = ?2, client_acked = ?3 WHERE id = ?1")?
                    .execute(params![&counted.id[..], counted.last_seq() as i64, counted.client_acked as i64])?;
            }
            Some(first)
        }
        Change::NewSession { record, next_client } => {
            tx.prepare_cached("INSERT OR REPLACE INTO sessions VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?.execute(params![
                &record.id[..],
                record.name,
                record.number as i64,
                record.base as i64,
                record.received as i64,
                record.client_acked as i64
            ])?;
            tx.execute("INSERT OR REPLACE INTO meta VALUES ('next_client', ?1)", [*next_client as i64])?;
            None
        }
        Change::Rebase { id, base, .. } => {
            tx.prepare_cached("UPDATE sessions SET base = ?2 WHERE id = ?1")?
                .execute(params![&id[..], *base as i64])?;
            None
        }
        Change::Forget { ids } => {
            for (id, _) in ids {
                tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?.execute([&id[..]])?;
            }
            None
        }
        Change::Inbound { .. } | Change::TrimRoom { .. } => None,
    })
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

#[cfg(test)]
impl SqliteStore {
    /// Smaller log segments, so a test fills several.
    pub fn set_segment_bytes(&mut self, bytes: u64) {
        if let Some(log) = &mut self.log {
            log.set_segment_bytes(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Row;
    use bytes::Bytes;
    use longconn_core::protocol::FrameType;

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
                    params![&id[..], last as i64, first as i64, row.bytes()],
                )
                .unwrap();
            }
        }
        let (store, loaded) = open(&Location::File(path.clone()), Mode::Sink, Window::default()).unwrap();
        assert_eq!(loaded.sessions[0].record.received, 3);
        let left: i64 = store.db.query_row("SELECT COUNT(*) FROM inbound", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 0, "the rows left the table");
        drop(store);
        let texts: Vec<Frame> =
            ["one", "two", "three"].iter().map(|t| Frame::Text(Bytes::from_static(t.as_bytes()))).collect();
        assert_eq!(inbound_messages(&path).unwrap(), texts);
        // Opened again, nothing is moved twice.
        let (store, loaded) = open(&Location::File(path.clone()), Mode::Sink, Window::default()).unwrap();
        assert_eq!(loaded.sessions[0].record.received, 3);
        drop(store);
        assert_eq!(inbound_messages(&path).unwrap(), texts);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
