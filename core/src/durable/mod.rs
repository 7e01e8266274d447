//! The durable outbox on disk: a protocol 2 session (its id, where each
//! direction's numbering stands, its room position) and every message not
//! yet acknowledged, in one append-only file, so a program started again
//! on the same path resumes the same session. The format (`format.rs`) has
//! checksummed records; a torn or damaged tail is cut off and reported,
//! never replayed. A second process on the same path is refused (an
//! exclusive `flock` on `PATH.lock`, released by the kernel when the
//! holder dies). The file is rewritten (compacted) once acknowledged
//! records make up most of it, so its size stays bounded by the outbox's
//! limits.

pub mod format;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use format::{Contents, FormatError, SavedSession};

/// When an appended message reaches the disk (`fdatasync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxSync {
    /// Before `send` returns: nothing accepted is lost on a process crash
    /// or a power loss.
    EverySend,
    /// At most this long after `send` returned (group commit): a process
    /// crash loses nothing (the bytes are in the kernel), a power loss up
    /// to this window.
    Within(Duration),
    /// When the kernel writes it: a process crash loses nothing, a power
    /// loss whatever the kernel had not written (typically up to 30 s).
    Never,
}

/// Why the outbox file cannot be used.
#[derive(Debug)]
pub enum DurableError {
    /// Another process holds the file.
    Locked(PathBuf),
    /// Not an outbox file, or one of another version.
    Format(PathBuf, FormatError),
    Io(PathBuf, std::io::Error),
}

impl std::fmt::Display for DurableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DurableError::Locked(path) => write!(f, "{} is in use by another process", path.display()),
            DurableError::Format(path, e) => write!(f, "{}: {e}", path.display()),
            DurableError::Io(path, e) => write!(f, "{}: {e}", path.display()),
        }
    }
}

impl std::error::Error for DurableError {}

/// A file is compacted once it is this large and its live records are
/// less than a quarter of it.
const COMPACT_FROM: u64 = 4 * 1024 * 1024;

/// An open outbox file, locked for this process.
#[derive(Debug)]
pub struct DurableOutbox {
    path: PathBuf,
    file: File,
    /// Holds the lock while open.
    _lock: File,
    sync: OutboxSync,
    /// The file's length.
    len: u64,
    /// Records encoded and not yet written.
    pending: Vec<u8>,
    /// Written since the last sync, and when the first of those was.
    unsynced_since: Option<Instant>,
}

impl DurableOutbox {
    /// Opens (or creates) the outbox at `path` for this process alone and
    /// reads what it holds. A torn or damaged tail is cut off (and said in
    /// the returned contents' `dropped`).
    pub fn open(path: &Path, sync: OutboxSync) -> Result<(DurableOutbox, Contents), DurableError> {
        let io = |e: std::io::Error| DurableError::Io(path.to_path_buf(), e);
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io)?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(DurableError::Locked(path.to_path_buf())),
            Err(e) => return Err(io(e.into())),
        }
        let mut file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        if bytes.is_empty() {
            bytes = format::header(2).to_vec();
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
            sync_parent(path).map_err(io)?;
        }
        let contents = format::read(&bytes).map_err(|e| DurableError::Format(path.to_path_buf(), e))?;
        if contents.intact < bytes.len() {
            // A torn or damaged tail: cut off before anything is appended after it.
            file.set_len(contents.intact as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let outbox = DurableOutbox {
            path: path.to_path_buf(),
            file,
            _lock: lock,
            sync,
            len: contents.intact as u64,
            pending: Vec::new(),
            unsynced_since: None,
        };
        Ok((outbox, contents))
    }

    /// Appends message `number`; durable per the sync setting once this returns.
    pub fn append_message(&mut self, number: u64, text: bool, payload: &[u8]) -> std::io::Result<()> {
        format::message_record(&mut self.pending, number, text, payload);
        self.write(self.sync == OutboxSync::EverySend)
    }

    /// Records that every message up to `up_to` was acknowledged (no sync:
    /// if it is lost, the messages are sent again and the server drops them).
    pub fn append_acked(&mut self, up_to: u64) -> std::io::Result<()> {
        format::acked_record(&mut self.pending, up_to);
        self.write(false)
    }

    /// Records the session (synced: the messages' numbering depends on it).
    pub fn append_session(&mut self, session: &SavedSession) -> std::io::Result<()> {
        format::session_record(&mut self.pending, session);
        self.write(true)
    }

    /// Writes what is pending, and syncs if `sync` or the window ran out.
    fn write(&mut self, sync: bool) -> std::io::Result<()> {
        self.file.write_all(&self.pending)?;
        self.len += self.pending.len() as u64;
        self.pending.clear();
        let now = Instant::now();
        let since = *self.unsynced_since.get_or_insert(now);
        let due = match self.sync {
            OutboxSync::Within(window) => now.duration_since(since) >= window,
            _ => false,
        };
        if sync || due {
            self.sync_now()?;
        }
        Ok(())
    }

    /// When written records must be synced at the latest (`Within`), if any wait.
    pub fn sync_due(&self) -> Option<Instant> {
        match (self.sync, self.unsynced_since) {
            (OutboxSync::Within(window), Some(since)) => Some(since + window),
            _ => None,
        }
    }

    /// Syncs what was written.
    pub fn sync_now(&mut self) -> std::io::Result<()> {
        if self.unsynced_since.take().is_some() {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file holds no record.
    pub fn is_empty(&self) -> bool {
        self.len as usize <= format::HEADER_LEN
    }

    /// Rewrites the file to hold only what still counts (the session, the
    /// numbering, the messages not acknowledged) once it has grown past
    /// [`COMPACT_FROM`] and that is under a quarter of it: read back, a new
    /// file written and synced beside it, then renamed over it.
    pub fn compact_if_due(&mut self) -> std::io::Result<bool> {
        if self.len < COMPACT_FROM {
            return Ok(false);
        }
        self.file.flush()?;
        let bytes = std::fs::read(&self.path)?;
        let live =
            format::read(&bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        let live_bytes: u64 = live.messages.iter().map(|m| m.payload.len() as u64 + 18).sum();
        if live_bytes * 4 > self.len {
            return Ok(false);
        }
        let mut temp = self.path.as_os_str().to_owned();
        temp.push(".new");
        let temp = PathBuf::from(temp);
        let bytes = format::compacted(&live);
        let mut file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, &self.path)?;
        sync_parent(&self.path)?;
        self.file = file;
        self.len = bytes.len() as u64;
        self.unsynced_since = None;
        Ok(true)
    }
}

/// Syncs the directory holding `path`, so a created or renamed file's entry is durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("longconn-durable-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("outbox")
    }

    #[test]
    fn what_was_appended_is_there_after_reopening() {
        let path = scratch("reopen");
        {
            let (mut outbox, contents) = DurableOutbox::open(&path, OutboxSync::EverySend).unwrap();
            assert_eq!(contents.last_number, 0);
            outbox.append_session(&SavedSession { id: vec![1; 16], ..SavedSession::default() }).unwrap();
            for n in 1..=5 {
                outbox.append_message(n, false, format!("m{n}").as_bytes()).unwrap();
            }
            outbox.append_acked(3).unwrap();
        }
        let (_, contents) = DurableOutbox::open(&path, OutboxSync::EverySend).unwrap();
        assert_eq!(contents.session.unwrap().id, vec![1; 16]);
        assert_eq!((contents.acked, contents.last_number, contents.messages.len()), (3, 5, 2));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_it() {
        let path = scratch("lock");
        let (first, _) = DurableOutbox::open(&path, OutboxSync::Never).unwrap();
        assert!(matches!(DurableOutbox::open(&path, OutboxSync::Never), Err(DurableError::Locked(_))));
        drop(first);
        assert!(DurableOutbox::open(&path, OutboxSync::Never).is_ok(), "free again once closed");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_reported_and_appending_goes_on_after_the_intact_part() {
        let path = scratch("torn");
        {
            let (mut outbox, _) = DurableOutbox::open(&path, OutboxSync::Never).unwrap();
            for n in 1..=3 {
                outbox.append_message(n, true, b"hello").unwrap();
            }
        }
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 2).unwrap();
        {
            let (mut outbox, contents) = DurableOutbox::open(&path, OutboxSync::Never).unwrap();
            assert_eq!(contents.last_number, 2);
            assert!(contents.dropped.unwrap().contains("cut short"));
            outbox.append_message(3, true, b"again").unwrap();
        }
        let (_, contents) = DurableOutbox::open(&path, OutboxSync::Never).unwrap();
        assert_eq!((contents.last_number, contents.dropped), (3, None));
        assert_eq!(contents.messages[2].payload, b"again");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn another_file_is_refused_and_left_alone() {
        let path = scratch("other");
        std::fs::write(&path, b"not an outbox at all").unwrap();
        let error = DurableOutbox::open(&path, OutboxSync::Never).unwrap_err();
        assert!(error.to_string().contains("not a longconn outbox file"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not an outbox at all");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_large_file_of_acknowledged_records_is_compacted_to_what_lives() {
        let path = scratch("compact");
        let (mut outbox, _) = DurableOutbox::open(&path, OutboxSync::Never).unwrap();
        let payload = vec![b'x'; 1000];
        for n in 1..=5_000 {
            outbox.append_message(n, false, &payload).unwrap();
            outbox.append_acked(n - 1).unwrap();
        }
        let before = outbox.len();
        assert!(outbox.compact_if_due().unwrap());
        assert!(outbox.len() < before / 100, "{} -> {}", before, outbox.len());
        outbox.append_message(5_001, false, b"after").unwrap();
        drop(outbox);
        let (_, contents) = DurableOutbox::open(&path, OutboxSync::Never).unwrap();
        assert_eq!((contents.acked, contents.last_number), (4_999, 5_001));
        assert_eq!(contents.messages.iter().map(|m| m.number).collect::<Vec<_>>(), [5_000, 5_001]);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
