//! The inbound log: the messages sessions sent in echo and sink modes,
//! appended to segment files beside the SQLite store, one `fdatasync` per
//! commit. A page-granular database wrote whole pages per commit (three
//! 4 KiB pages for one 64-byte message, and large commits as overflow
//! chains copied again at every checkpoint); an append writes the
//! messages and a small header, whatever the window.
//!
//! A directory of segments named by number (`0000000000000001.seg`), each
//! starting with [`MAGIC`] and its number, then records:
//!
//! ```text
//! u32 length of the whole record   u32 CRC-32 of everything after it
//! u64 segment number               16-byte session id
//! u64 first sequence number        u32 message count
//! u64 the client's acknowledgement the row    (store::Row: a length word, then the bytes, per message)
//! ```
//!
//! all little-endian but the row. A record whose length is zero, runs past
//! the file, fails its checksum or names another segment ends the
//! segment: that is where a torn write at a crash stops the log, and what a
//! reused segment file's older contents look like. A segment is sealed by
//! an empty record (count zero) before the next one starts, so a sealed
//! segment whose records end without it is damaged, and refused. Segments
//! whose every session has released their records are reused as the next
//! segment: writing over allocated blocks syncs faster than growing a file.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::ids::SessionId;

/// The first bytes of every segment (then its number, u64 LE).
const MAGIC: &[u8; 8] = b"LCINLOG1";
const SEGMENT_HEADER: u64 = 16;
/// Length, checksum, segment, session, first, count, acknowledged.
const RECORD_HEADER: usize = 4 + 4 + 8 + 16 + 8 + 4 + 8;
/// Sealed segments past which the oldest one's needed records are copied
/// forward so it can be reused (see [`InboundLog::oldest_reusable`]).
const COMPACT_AFTER: usize = 4;
/// A segment is sealed once it holds this much (a record larger than what
/// is left still goes in a segment of its own).
const SEGMENT_BYTES: u64 = 64 << 20;

/// Messages of one session for the log: `count` messages numbered from
/// `first_seq`, as the store's row bytes (in pieces, written as they are).
pub struct Append<'a> {
    pub session: SessionId,
    pub first_seq: u64,
    pub count: u64,
    pub client_acked: u64,
    pub row: &'a [&'a [u8]],
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub session: SessionId,
    pub first_seq: u64,
    pub count: u64,
    pub client_acked: u64,
    pub row: Bytes,
}

impl Record {
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.count - 1
    }
}

struct Segment {
    number: u64,
    file: File,
    /// Where the next record goes.
    end: u64,
    /// The newest sequence number each session has in it.
    newest: HashMap<SessionId, u64>,
}

pub struct InboundLog {
    dir: PathBuf,
    /// A segment is sealed once it holds this much ([`SEGMENT_BYTES`]).
    segment_bytes: u64,
    current: Segment,
    /// Sealed segments, oldest first.
    sealed: VecDeque<Segment>,
    /// Up to which sequence number each session's records are no longer
    /// needed (`u64::MAX` once the session is gone).
    released: HashMap<SessionId, u64>,
    /// Each session's newest record: its last sequence number and the
    /// client's acknowledgement it carried.
    counters: HashMap<SessionId, (u64, u64)>,
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016}.seg"))
}

fn damaged(path: &Path, detail: impl std::fmt::Display) -> String {
    format!("the store's log {} is damaged: {detail}", path.display())
}

/// One segment's records in order, and where they end; `sealed` tells
/// whether the last one was the seal.
struct Scan {
    records: Vec<Record>,
    end: u64,
    sealed: bool,
}

fn scan(path: &Path, number: u64) -> Result<Scan, String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let file = File::open(path).map_err(cannot)?;
    let size = file.metadata().map_err(cannot)?.len();
    // Read as far as the records go, not the whole allocated file.
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut header = [0u8; SEGMENT_HEADER as usize];
    if reader.read_exact(&mut header).is_err() || &header[..8] != MAGIC {
        return Err(damaged(path, "not a segment of the longconn-server log (version 1)"));
    }
    if u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")) != number {
        return Err(damaged(path, "its header names another segment"));
    }
    let mut at = SEGMENT_HEADER;
    let mut records = Vec::new();
    let mut sealed = false;
    let mut header = [0u8; RECORD_HEADER];
    while reader.read_exact(&mut header).is_ok() {
        let field = |from: usize, len: usize| &header[from..from + len];
        let u64_at = |from: usize| u64::from_le_bytes(field(from, 8).try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(field(0, 4).try_into().expect("4 bytes")) as u64;
        if len < RECORD_HEADER as u64 || at + len > size {
            break; // the end: zeros, or a length torn at a crash
        }
        let mut row = vec![0u8; (len as usize) - RECORD_HEADER];
        if reader.read_exact(&mut row).is_err() {
            break;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[8..]);
        crc.update(&row);
        let stored_crc = u32::from_le_bytes(field(4, 4).try_into().expect("4 bytes"));
        if crc.finalize() != stored_crc || u64_at(8) != number {
            break; // torn at a crash, or an older segment's record in a reused file
        }
        at += len;
        let count = u32::from_le_bytes(field(40, 4).try_into().expect("4 bytes")) as u64;
        if count == 0 {
            sealed = true;
            break;
        }
        records.push(Record {
            session: SessionId::try_from(field(16, 16)).expect("16 bytes"),
            first_seq: u64_at(32),
            count,
            client_acked: u64_at(44),
            row: row.into(),
        });
    }
    Ok(Scan { records, end: at, sealed })
}

/// The segment numbers in `dir`, oldest first.
fn segment_numbers(dir: &Path) -> Result<Vec<u64>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut numbers = Vec::new();
    for entry in entries {
        let name = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?.file_name();
        let name = name.to_string_lossy();
        if let Some(number) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Every record in the log at `dir`, in the order written (for loading, and
/// for tests that read a closed store back).
pub fn read_all(dir: &Path) -> Result<Vec<Record>, String> {
    let mut records = Vec::new();
    if !dir.exists() {
        return Ok(records);
    }
    let numbers = segment_numbers(dir)?;
    for (i, &number) in numbers.iter().enumerate() {
        let path = segment_path(dir, number);
        let scan = scan(&path, number)?;
        if i + 1 < numbers.len() && !scan.sealed {
            return Err(damaged(&path, format!("its records stop at byte {} before its seal", scan.end)));
        }
        records.extend(scan.records);
    }
    Ok(records)
}

/// Allocates the file's blocks up to `bytes` ahead of the writes: an
/// append that grows a file syncs its new size with the data (112 against
/// 81 µs per small `fdatasync` on this machine's disk). Best effort: where
/// the filesystem cannot, the file grows as it is written.
fn allocate(file: &File, bytes: u64) {
    use std::os::fd::AsRawFd;
    let Ok(len) = libc::off_t::try_from(bytes) else { return };
    if file.metadata().is_ok_and(|m| m.len() >= bytes) {
        return;
    }
    // SAFETY: a valid open descriptor we own; posix_fallocate reads only its arguments.
    let _ = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl InboundLog {
    /// Opens (or creates) the log in `dir`; returns it with every record it
    /// holds, in order.
    pub fn open(dir: &Path) -> Result<(InboundLog, Vec<Record>), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let numbers = segment_numbers(dir)?;
        let mut sealed = VecDeque::new();
        let mut records = Vec::new();
        let mut current = None;
        for (i, &number) in numbers.iter().enumerate() {
            let path = segment_path(dir, number);
            let scan = scan(&path, number)?;
            let last = i + 1 == numbers.len();
            if !last && !scan.sealed {
                return Err(damaged(&path, format!("its records stop at byte {} before its seal", scan.end)));
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            let mut segment = Segment { number, file, end: scan.end, newest: HashMap::new() };
            for record in &scan.records {
                segment.newest.insert(record.session, record.last_seq());
            }
            records.extend(scan.records);
            if last && !scan.sealed {
                current = Some(segment);
            } else {
                sealed.push_back(segment);
            }
        }
        let next = numbers.last().map_or(1, |n| n + 1);
        let current = match current {
            Some(segment) => segment,
            None => {
                Segment::create(dir, next, SEGMENT_BYTES).map_err(|e| format!("cannot create a log segment: {e}"))?
            }
        };
        let counters = records.iter().map(|r| (r.session, (r.last_seq(), r.client_acked))).collect();
        let log = InboundLog {
            dir: dir.to_path_buf(),
            segment_bytes: SEGMENT_BYTES,
            current,
            sealed,
            released: HashMap::new(),
            counters,
        };
        Ok((log, records))
    }

    /// Writes `appends` after the log's end (not yet durable: see [`InboundLog::sync`]).
    pub fn append(&mut self, appends: &[Append<'_>]) -> std::io::Result<()> {
        for append in appends {
            let body: usize = append.row.iter().map(|piece| piece.len()).sum();
            let len = RECORD_HEADER + body;
            if self.current.end > SEGMENT_HEADER && self.current.end + len as u64 > self.segment_bytes {
                self.next_segment()?;
            }
            self.current.write(append, len)?;
            let last_seq = append.first_seq + append.count - 1;
            // A record copied forward may be older than what the session has since.
            let newest = self.current.newest.entry(append.session).or_insert(0);
            *newest = (*newest).max(last_seq);
            let counters = self.counters.entry(append.session).or_insert((0, 0));
            *counters = (counters.0.max(last_seq), counters.1.max(append.client_acked));
        }
        Ok(())
    }

    /// Writes records read back (from a segment, or an older store) after
    /// the log's end, unchanged (not yet durable).
    pub fn append_records(&mut self, records: &[&Record]) -> std::io::Result<()> {
        let pieces: Vec<[&[u8]; 1]> = records.iter().map(|r| [&r.row[..]]).collect();
        let appends: Vec<Append<'_>> = records
            .iter()
            .zip(&pieces)
            .map(|(r, row)| Append {
                session: r.session,
                first_seq: r.first_seq,
                count: r.count,
                client_acked: r.client_acked,
                row,
            })
            .collect();
        self.append(&appends)
    }

    /// Makes everything appended so far durable (sealed segments already are).
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.current.file.sync_data()
    }

    /// Smaller segments, for tests that cross many of them.
    #[cfg(test)]
    pub(crate) fn set_segment_bytes(&mut self, bytes: u64) {
        self.segment_bytes = bytes;
    }

    pub fn sealed_segments(&self) -> usize {
        self.sealed.len()
    }

    /// Records of `session` up to `seq` are no longer needed.
    pub fn release(&mut self, session: SessionId, seq: u64) {
        let released = self.released.entry(session).or_insert(0);
        *released = (*released).max(seq);
    }

    /// Whether the oldest sealed segment may be dropped: when every record
    /// in it is released, or, once [`COMPACT_AFTER`] segments are sealed,
    /// after the records still needed are copied to the log's end (when
    /// they are less than half of it: a session that never releases its
    /// newest record must not pin every segment after it, and copying most
    /// of a segment would only move it). Returns the sessions it holds
    /// records of, each with its newest counters (last sequence number, the
    /// client's acknowledgement), which must be kept elsewhere before
    /// [`InboundLog::reuse_oldest`] drops it.
    pub fn oldest_reusable(&mut self) -> std::io::Result<Option<Vec<(SessionId, u64, u64)>>> {
        let Some(oldest) = self.sealed.front() else { return Ok(None) };
        let released = |s: &SessionId, seq: u64| self.released.get(s).is_some_and(|&r| r >= seq);
        let done = oldest.newest.iter().all(|(s, &newest)| released(s, newest));
        if !done {
            if self.sealed.len() < COMPACT_AFTER {
                return Ok(None);
            }
            let path = segment_path(&self.dir, oldest.number);
            let scan = scan(&path, oldest.number).map_err(std::io::Error::other)?;
            let needed: Vec<&Record> = scan.records.iter().filter(|r| !released(&r.session, r.last_seq())).collect();
            let bytes: u64 = needed.iter().map(|r| (RECORD_HEADER + r.row.len()) as u64).sum();
            if bytes * 2 > oldest.end {
                return Ok(None);
            }
            self.append_records(&needed)?;
            self.sync()?;
        }
        let oldest = self.sealed.front().expect("still there");
        Ok(Some(
            oldest.newest.keys().filter_map(|s| self.counters.get(s).map(|&(last, acked)| (*s, last, acked))).collect(),
        ))
    }

    /// Drops the oldest sealed segment (see [`InboundLog::oldest_reusable`]),
    /// keeping its file to write the next segment over.
    pub fn reuse_oldest(&mut self) -> std::io::Result<()> {
        let Some(oldest) = self.sealed.pop_front() else { return Ok(()) };
        let spare = self.dir.join("spare");
        std::fs::rename(segment_path(&self.dir, oldest.number), &spare)?;
        sync_dir(&self.dir)?;
        // Forget what only this segment needed remembering.
        let still: std::collections::HashSet<SessionId> =
            self.sealed.iter().chain([&self.current]).flat_map(|s| s.newest.keys().copied()).collect();
        self.released.retain(|s, _| still.contains(s));
        self.counters.retain(|s, _| still.contains(s));
        Ok(())
    }

    /// Seals the current segment and starts the next, over the spare file
    /// when there is one.
    fn next_segment(&mut self) -> std::io::Result<()> {
        let seal = Append { session: [0; 16], first_seq: 0, count: 0, client_acked: 0, row: &[] };
        self.current.write(&seal, RECORD_HEADER)?;
        // Durable before the next segment exists: a sealed segment is whole.
        self.current.file.sync_data()?;
        let next = Segment::create(&self.dir, self.current.number + 1, self.segment_bytes)?;
        let full = std::mem::replace(&mut self.current, next);
        self.sealed.push_back(full);
        Ok(())
    }
}

impl Segment {
    /// A new segment numbered `number`: over the spare file when there is
    /// one (its old records name an older segment, so they read as the
    /// end), else a new file with `bytes` allocated. Its header is durable
    /// before it takes its name, so every segment file names itself.
    fn create(dir: &Path, number: u64, bytes: u64) -> std::io::Result<Segment> {
        let spare = dir.join("spare");
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&spare)?;
        allocate(&file, bytes);
        let mut header = [0u8; SEGMENT_HEADER as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..].copy_from_slice(&number.to_le_bytes());
        file.write_all_at(&header, 0)?;
        file.sync_data()?;
        std::fs::rename(&spare, segment_path(dir, number))?;
        sync_dir(dir)?;
        Ok(Segment { number, file, end: SEGMENT_HEADER, newest: HashMap::new() })
    }

    fn write(&mut self, append: &Append<'_>, len: usize) -> std::io::Result<()> {
        let mut header = [0u8; RECORD_HEADER];
        header[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        header[8..16].copy_from_slice(&self.number.to_le_bytes());
        header[16..32].copy_from_slice(&append.session);
        header[32..40].copy_from_slice(&append.first_seq.to_le_bytes());
        header[40..44].copy_from_slice(&(append.count as u32).to_le_bytes());
        header[44..52].copy_from_slice(&append.client_acked.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[8..]);
        for piece in append.row {
            crc.update(piece);
        }
        header[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(append.row.len() + 1);
        slices.push(IoSlice::new(&header));
        slices.extend(append.row.iter().map(|piece| IoSlice::new(piece)));
        self.file.seek(SeekFrom::Start(self.end))?;
        let mut left = &mut slices[..];
        while !left.is_empty() {
            let written = self.file.write_vectored(left)?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut left, written);
        }
        self.end += len as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            TempDir(std::env::temp_dir().join(format!("longconn-log-{name}-{}-{nanos}", std::process::id())))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn open(dir: &Path, segment_bytes: u64) -> (InboundLog, Vec<Record>) {
        let (mut log, records) = InboundLog::open(dir).unwrap();
        log.segment_bytes = segment_bytes;
        (log, records)
    }

    /// Appends messages `first..first + count` of `session`, one byte each, and syncs.
    fn append(log: &mut InboundLog, session: u8, first: u64, count: u64) {
        let row: Vec<u8> = (first..first + count).map(|seq| seq as u8).collect();
        let pieces: [&[u8]; 2] = [&row[..1], &row[1..]];
        log.append(&[Append {
            session: [session; 16],
            first_seq: first,
            count,
            client_acked: first - 1,
            row: &pieces,
        }])
        .unwrap();
        log.sync().unwrap();
    }

    fn numbers(records: &[Record]) -> Vec<(u8, u64, u64)> {
        records.iter().map(|r| (r.session[0], r.first_seq, r.last_seq())).collect()
    }

    #[test]
    fn records_come_back_in_order_after_a_reopen_and_new_ones_follow_them() {
        let dir = TempDir::new("reopen");
        let (mut log, records) = open(&dir.0, SEGMENT_BYTES);
        assert!(records.is_empty());
        append(&mut log, 1, 1, 3);
        append(&mut log, 2, 1, 1);
        append(&mut log, 1, 4, 2);
        drop(log);
        let (mut log, records) = open(&dir.0, SEGMENT_BYTES);
        assert_eq!(numbers(&records), [(1, 1, 3), (2, 1, 1), (1, 4, 5)]);
        assert_eq!(&records[2].row[..], &[4, 5], "the row's pieces are joined in order");
        assert_eq!(records[2].client_acked, 3);
        append(&mut log, 2, 2, 1);
        drop(log);
        assert_eq!(numbers(&read_all(&dir.0).unwrap()), [(1, 1, 3), (2, 1, 1), (1, 4, 5), (2, 2, 2)]);
    }

    #[test]
    fn a_torn_last_record_ends_the_log_and_is_written_over() {
        let dir = TempDir::new("torn");
        let (mut log, _) = open(&dir.0, SEGMENT_BYTES);
        append(&mut log, 1, 1, 10);
        append(&mut log, 1, 11, 10);
        let end = log.current.end;
        drop(log);
        let path = segment_path(&dir.0, 1);
        // A crash in the middle of the second record's write: its last bytes never landed.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(end - 3).unwrap();
        let (mut log, records) = open(&dir.0, SEGMENT_BYTES);
        assert_eq!(numbers(&records), [(1, 1, 10)]);
        append(&mut log, 1, 11, 2);
        drop(log);
        assert_eq!(numbers(&read_all(&dir.0).unwrap()), [(1, 1, 10), (1, 11, 12)]);
        // A flipped byte in the newest record: it fails its checksum and is not replayed.
        let bytes = std::fs::read(&path).unwrap();
        let (log, _) = open(&dir.0, SEGMENT_BYTES);
        let at = log.current.end as usize - 1;
        drop(log);
        let mut damaged_bytes = bytes.clone();
        damaged_bytes[at] ^= 0xff;
        std::fs::write(&path, damaged_bytes).unwrap();
        assert_eq!(numbers(&read_all(&dir.0).unwrap()), [(1, 1, 10)]);
    }

    #[test]
    fn full_segments_are_sealed_and_reused_once_released_and_stale_records_never_return() {
        let dir = TempDir::new("reuse");
        let (mut log, _) = open(&dir.0, 200);
        // Each record is 52 + 40 bytes: two fit in a 200-byte segment with its header.
        for i in 0..6 {
            append(&mut log, 1, 1 + i * 40, 40);
        }
        assert_eq!(log.sealed_segments(), 2);
        assert_eq!(log.oldest_reusable().unwrap(), None, "nothing released yet");
        log.release([1; 16], 80);
        assert_eq!(log.oldest_reusable().unwrap(), Some(vec![([1; 16], 240, 200)]));
        log.reuse_oldest().unwrap();
        assert!(!segment_path(&dir.0, 1).exists() && dir.0.join("spare").exists());
        // The next segment is written over the first one's file.
        append(&mut log, 1, 241, 40);
        assert!(!dir.0.join("spare").exists());
        append(&mut log, 1, 281, 1);
        drop(log);
        let (_, records) = open(&dir.0, 200);
        let firsts: Vec<u64> = records.iter().map(|r| r.first_seq).collect();
        assert_eq!(firsts, [81, 121, 161, 201, 241, 281]);
    }

    #[test]
    fn garbage_after_a_segment_header_reads_as_an_empty_segment_without_a_panic() {
        let dir = TempDir::new("garbage");
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = segment_path(&dir.0, 1);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..200 {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&1u64.to_le_bytes());
            for _ in 0..(round * 7) % 300 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Small lengths now and then, so some headers claim records that fit.
                bytes.push(if state % 5 == 0 { (state >> 8) as u8 % 80 } else { (state >> 16) as u8 });
            }
            std::fs::write(&path, &bytes).unwrap();
            let scan = scan(&path, 1).unwrap();
            assert!(scan.records.is_empty(), "a record without its checksum was read: round {round}");
            assert!(scan.end <= bytes.len() as u64);
        }
    }

    #[test]
    fn a_sealed_segment_cut_short_is_refused_not_skipped() {
        let dir = TempDir::new("damaged");
        let (mut log, _) = open(&dir.0, 200);
        for i in 0..3 {
            append(&mut log, 1, 1 + i * 40, 40);
        }
        drop(log);
        let first = segment_path(&dir.0, 1);
        // Cut into its seal (the file itself runs on, allocated ahead).
        let end = scan(&first, 1).unwrap().end;
        OpenOptions::new().write(true).open(&first).unwrap().set_len(end - 10).unwrap();
        let error = read_all(&dir.0).unwrap_err();
        assert!(error.contains("damaged") && error.contains("before its seal"), "{error}");
        assert!(InboundLog::open(&dir.0).is_err());
    }
}
