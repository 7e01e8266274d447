//! The commit loop: one thread (or task) owns the [`Store`] and makes
//! everything that arrived while the previous commit ran durable at once
//! (group commit); only then are its messages acknowledged to their
//! senders and its lines shown to the room. It turns the connections'
//! requests, which name live sessions, into the store's changes, which
//! name only ids and numbers, and keeps each session's count of messages
//! in a commit.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use longconn_core::lock::lock;
use tokio::sync::{oneshot, Notify};

use crate::history::{unix_now, Entry, History};
use crate::ids::SessionId;
use crate::sessions::Session;
use crate::store::{Change, Committed, Feed, Row, RowPool, Store, TakeOver};

/// Requests taken into one commit at most.
const GROUP_LIMIT: usize = 4096;
/// How long the loop may gather requests before a commit when every
/// request waiting is a session's messages whose connection holds its ACKs
/// for its next write (`Session::commits_quiet`; held up to 1 ms, longer
/// than this): their senders wait for nothing, and one commit per message
/// would cost a request/reply round trip 16-28 µs of CPU on 2 cores.
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);

/// Whether a request may wait [`LINGER`] for company (see there); chat
/// lines never do, since the room shows them only once committed.
fn may_linger(request: &Request) -> bool {
    matches!(request, Request::Inbound { session, .. } if session.commits_quiet())
}

/// A change for the commit loop.
pub enum Request {
    /// Chat lines for the room, from a session (counted as its inbound
    /// messages) or from a best-effort connection or the server itself.
    Room { author: u64, lines: Vec<Bytes>, session: Option<Arc<Session>> },
    /// Echo and sink: messages of a session's inbound stream, in order, as
    /// written by the connection that read them (one row per read; a
    /// commit joins a session's rows into one record).
    Inbound { session: Arc<Session>, rows: Vec<Row> },
    /// A new session; `durable` is told once its commit is on disk, and
    /// only then may its id reach the client.
    NewSession { session: Arc<Session>, next_client: u64, durable: oneshot::Sender<()> },
    /// A session's room base moved (its history was partly lost).
    Rebase { id: SessionId, owner: u64, base: u64 },
    /// Sessions that expired, with the owner generation each was held under.
    Forget { ids: Vec<(SessionId, u64)> },
    /// Take session `id` over from a shared store (after this group's changes).
    TakeOver { id: SessionId, reply: oneshot::Sender<Result<TakeOver, String>> },
    /// Begin a new history epoch after `seen` if the room's top is at or
    /// below `claimed` (see `Store::new_epoch`).
    NewEpoch { seen: u64, claimed: u64, reply: oneshot::Sender<Result<u64, String>> },
}

/// The sending side of the commit loop.
#[derive(Clone)]
pub struct Committer {
    tx: Sender<Request>,
    rows: Arc<RowPool>,
    /// Wakes the loop's task, when it runs as one.
    wake: Option<Arc<Notify>>,
    /// The store keeps no inbound messages (in memory): they are counted
    /// as stored when sent.
    counts_only: bool,
    /// The store is shared with other servers (`Store::shared`).
    shared: bool,
}

impl Committer {
    pub fn send(&self, request: Request) {
        let request = match request {
            // A store that keeps no inbound messages would only count them:
            // counted here, they cost no wake-up of the loop and no hop back.
            Request::Inbound { session, rows } if self.counts_only => {
                let count: u64 = rows.iter().map(Row::count).sum();
                self.rows.give_back(rows);
                session.begin_store(count);
                session.stored(count);
                return;
            }
            request => request,
        };
        // The loop only stops when the process does.
        let _ = self.tx.send(request);
        if let Some(wake) = &self.wake {
            wake.notify_one();
        }
    }

    /// An empty row with room for `bytes`, in a buffer a commit gave back
    /// when there is one.
    pub fn new_row(&self, bytes: usize) -> Row {
        self.rows.new_row(bytes)
    }

    /// Whether other servers share the store: sessions are then taken over
    /// from it on every resume.
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// Takes session `id` over from the shared store (see `Store::take_over`),
    /// after every change sent before.
    pub async fn take_over(&self, id: SessionId) -> Result<TakeOver, String> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::TakeOver { id, reply });
        answer.await.map_err(|_| "the store stopped".to_string())?
    }

    /// Begins a new history epoch after `seen` if the store's room ends at
    /// or below offset `claimed`, which a client has (see
    /// `Store::new_epoch`). Returns the epoch now.
    pub async fn new_epoch(&self, seen: u64, claimed: u64) -> Result<u64, String> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::NewEpoch { seen, claimed, reply });
        answer.await.map_err(|_| "the store stopped".to_string())?
    }
}

/// Where committed chat lines become visible: the room (`room.rs`), seen
/// by the commit loop only through this.
pub trait Published: Send + Sync {
    fn history(&self) -> &Mutex<History>;
    /// New lines are in the history: wake the members.
    fn lines_added(&self);
    /// The store fenced this server's hold on `session` (`Session::lose`
    /// was called): forget it here.
    fn session_lost(&self, session: &Arc<Session>);
    /// The store lost everything and began history `epoch`: every
    /// session here is lost, and the history starts over.
    fn store_lost(&self, epoch: u64);
    /// The store began history `epoch` with the lines it kept.
    fn epoch_began(&self, epoch: u64);
}

/// A commit loop not yet running: its [`Committer`] can be handed out
/// (the room is built with it) before the loop starts with the room.
pub struct Pending {
    store: Box<dyn Store>,
    rx: Receiver<Request>,
    rows: Arc<RowPool>,
    wake: Arc<Notify>,
}

/// A commit loop for `store`, and its sending side.
pub fn channel(store: Box<dyn Store>) -> (Committer, Pending) {
    let (tx, rx) = mpsc::channel();
    let rows = Arc::new(RowPool::default());
    let wake = Arc::new(Notify::new());
    let counts_only = !store.keeps_inbound();
    let shared = store.shared();
    let committer = Committer { tx, rows: rows.clone(), wake: None, counts_only, shared };
    (committer, Pending { store, rx, rows, wake })
}

impl Pending {
    /// Runs the loop on a thread of its own.
    pub fn start(self, room: Arc<dyn Published>) {
        let Pending { mut store, rx, rows, .. } = self;
        if let Some(feed) = store.feed() {
            let room = room.clone();
            std::thread::Builder::new()
                .name("longconn-feed".into())
                .spawn(move || run_feed(feed, &*room))
                .expect("start the feed thread");
        }
        let mut writer = Loop { store, rows };
        std::thread::Builder::new()
            .name("longconn-store".into())
            .spawn(move || writer.run(rx, &*room))
            .expect("start the store thread");
    }

    /// The sending side for a loop run by [`Pending::start_local`]: it
    /// wakes the loop's task on each request.
    pub fn local_committer(&self, committer: &Committer) -> Committer {
        Committer { wake: Some(self.wake.clone()), ..committer.clone() }
    }

    /// Runs the loop as a task of the current thread's runtime (spawned on
    /// its `LocalSet`) instead of a thread of its own: same commits and the
    /// same group commit, timed by tokio's clock. For the deterministic
    /// simulation, where every host runs on one thread with a simulated
    /// clock and a crash of the host must stop its store too. Requests must
    /// come through [`Pending::local_committer`].
    pub fn start_local(self, room: Arc<dyn Published>) {
        let Pending { store, rx, rows, wake } = self;
        let mut writer = Loop { store, rows };
        tokio::task::spawn_local(async move {
            loop {
                wake.notified().await;
                let Ok(first) = rx.try_recv() else { continue };
                let mut group = vec![first];
                group.extend(rx.try_iter().take(GROUP_LIMIT - 1));
                if group.iter().all(may_linger) {
                    tokio::time::sleep(LINGER).await;
                    group.extend(rx.try_iter().take(GROUP_LIMIT - group.len()));
                }
                let full = group.len() == GROUP_LIMIT;
                writer.commit_and_publish(group, &*room);
                writer.store.maintain(!full);
                if full {
                    // More may wait behind a full group, with no send to wake us for them.
                    wake.notify_one();
                }
            }
        });
    }
}

/// The loop's state: the store, and where written rows' buffers go back to.
struct Loop {
    store: Box<dyn Store>,
    rows: Arc<RowPool>,
}

/// A question for the store, answered after a group's changes are committed.
enum Ask {
    TakeOver(SessionId, oneshot::Sender<Result<TakeOver, String>>),
    NewEpoch(u64, u64, oneshot::Sender<Result<u64, String>>),
}

/// What a commit makes visible once it is durable.
enum Effect {
    Stored { session: Arc<Session>, count: u64 },
    SessionStored(oneshot::Sender<()>),
}

impl Loop {
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
            self.store.maintain(waiting.is_none());
        }
    }

    /// Commits `group`, then makes it visible; then answers its takeovers.
    fn commit_and_publish(&mut self, group: Vec<Request>, room: &dyn Published) {
        let first_kept = lock(room.history()).first_offset();
        let (mut changes, effects, asks) = changes_of(merge_inbound(group));
        changes.push(Change::TrimRoom { below: first_kept });
        let committed = match self.store.commit(&changes) {
            Ok(committed) => committed,
            Err(e) => {
                // Nothing of this group was acknowledged; clients resend it to the next server.
                eprintln!("longconn-server: the store failed, stopping: {e}");
                std::process::exit(1);
            }
        };
        let Committed { line_offsets, fenced, lost } = committed;
        let mut offsets = line_offsets.into_iter();
        let mut lines = Vec::new();
        for change in changes {
            match change {
                Change::Inbound { rows, .. } => self.rows.give_back(rows),
                Change::Lines { author, at, lines: added, .. } if !self.store.shared() => {
                    let first = offsets.next().expect("an offset for each change of lines");
                    lines.push((first, author, at, added));
                }
                _ => {}
            }
        }
        if let Some(epoch) = lost {
            // Nothing was stored: no acknowledgement, no line; the sessions are gone.
            eprintln!("longconn-server: the store had lost everything; history {epoch} begins");
            room.store_lost(epoch);
        } else {
            publish(lines, effects, &fenced, room);
        }
        // The callers may have given up waiting; nothing to tell them then.
        for ask in asks {
            match ask {
                Ask::TakeOver(id, reply) => {
                    let taken = self.store.take_over(id);
                    if let Ok(TakeOver::Lost { epoch }) = &taken {
                        room.store_lost(*epoch);
                    }
                    let _ = reply.send(taken);
                }
                Ask::NewEpoch(seen, claimed, reply) => {
                    let began = self.store.new_epoch(seen, claimed);
                    if let Ok(epoch) = &began {
                        room.epoch_began(*epoch);
                    }
                    let _ = reply.send(began);
                }
            }
        }
    }
}

/// The store's changes for a group of requests, numbering each session's
/// messages after what it has stored, and what each makes visible once
/// committed.
#[allow(clippy::type_complexity)]
fn changes_of(group: Vec<Request>) -> (Vec<Change>, Vec<Effect>, Vec<Ask>) {
    let at = unix_now();
    let mut changes = Vec::with_capacity(group.len() + 1);
    let mut effects = Vec::with_capacity(group.len());
    let mut asks = Vec::new();
    for request in group {
        match request {
            Request::Room { author, lines, session } => {
                let count = lines.len() as u64;
                let counted = session.as_ref().map(|s| s.begin_store(count));
                changes.push(Change::Lines { author, at, lines, counted });
                if let Some(session) = session {
                    effects.push(Effect::Stored { session, count });
                }
            }
            Request::Inbound { session, rows } => {
                let count: u64 = rows.iter().map(Row::count).sum();
                if count == 0 {
                    continue;
                }
                changes.push(Change::Inbound { counted: session.begin_store(count), rows });
                effects.push(Effect::Stored { session, count });
            }
            Request::NewSession { session, next_client, durable } => {
                changes.push(Change::NewSession { record: session.record(), next_client });
                effects.push(Effect::SessionStored(durable));
            }
            Request::Rebase { id, owner, base } => changes.push(Change::Rebase { id, owner, base }),
            Request::Forget { ids } => changes.push(Change::Forget { ids }),
            Request::TakeOver { id, reply } => asks.push(Ask::TakeOver(id, reply)),
            Request::NewEpoch { seen, claimed, reply } => asks.push(Ask::NewEpoch(seen, claimed, reply)),
        }
    }
    (changes, effects, asks)
}

/// Runs a shared store's feed until the process ends: every server's room
/// lines into the history, in offset order, then the members woken. A new
/// epoch (the store restarted empty) starts the history over; a gap (lines
/// trimmed before they were read) restarts it at the first line read, and
/// members behind it are told they fell behind.
fn run_feed(mut feed: Box<dyn Feed>, room: &dyn Published) {
    let mut failing = false;
    loop {
        let (epoch, next) = {
            let history = lock(room.history());
            (history.epoch, history.next_offset())
        };
        match feed.read(epoch, next) {
            Ok(batch) => {
                if failing {
                    eprintln!("longconn-server: the room's feed reads again");
                    failing = false;
                }
                if batch.epoch != epoch {
                    // Lines of the new epoch follow from its first kept (`Feed::read`).
                    room.store_lost(batch.epoch);
                }
                if batch.lines.is_empty() {
                    continue;
                }
                let mut history = lock(room.history());
                for (offset, entry) in batch.lines {
                    if offset > history.next_offset() {
                        let epoch = history.epoch;
                        history.restart(epoch, offset);
                    }
                    if offset == history.next_offset() {
                        history.push(offset, entry);
                    }
                }
                drop(history);
                room.lines_added();
            }
            Err(e) => {
                if !failing {
                    eprintln!("longconn-server: the room's feed cannot read the store: {e} (trying again)");
                    failing = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }
}

/// Joins the inbound requests of each session in a group into its first
/// one, so a commit writes one record, one counter update and one trim per
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

/// After a commit: the room sees the new lines (each change's first
/// offset, author, time and lines), then senders get their
/// acknowledgements, except those of `fenced` sessions, which are lost here.
fn publish(lines: Vec<(u64, u64, u64, Vec<Bytes>)>, effects: Vec<Effect>, fenced: &[SessionId], room: &dyn Published) {
    let added = !lines.is_empty();
    if added {
        let mut history = lock(room.history());
        for (first, author, at, added) in lines {
            for (i, line) in added.into_iter().enumerate() {
                history.push(first + i as u64, Entry { author, at, line });
            }
        }
    }
    for effect in effects {
        match effect {
            Effect::Stored { session, .. } if fenced.contains(&session.id) => {
                session.lose();
                room.session_lost(&session);
            }
            Effect::Stored { session, count } => session.stored(count),
            Effect::SessionStored(durable) => {
                // The connection may have given up waiting; nothing to tell then.
                let _ = durable.send(());
            }
        }
    }
    if added {
        room.lines_added();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Window;
    use crate::mode::Mode;
    use crate::sessions::SessionState;
    use crate::store::{sqlite, Location};
    use longconn_core::protocol::FrameType;

    struct NoRoom(Mutex<History>);

    impl Published for NoRoom {
        fn history(&self) -> &Mutex<History> {
            &self.0
        }
        fn lines_added(&self) {}
        fn session_lost(&self, _: &Arc<Session>) {}
        fn store_lost(&self, _: u64) {}
        fn epoch_began(&self, _: u64) {}
    }

    #[test]
    fn a_session_keeps_its_count_when_the_log_segments_holding_it_are_reused() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("longconn-reuse-{}-{nanos}", std::process::id()));
        let path = dir.join("echo.db");
        let window = Window::default();
        let (mut store, _) = sqlite::open(&Location::File(path.clone()), Mode::Echo, window).unwrap();
        store.set_segment_bytes(1024);
        let room = Arc::new(NoRoom(Mutex::new(History::new(1, 1, window))));
        let (store, pending) = channel(Box::new(store));
        pending.start(room);
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
        drop(store); // the commit loop ends with its last sender
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let reopened = loop {
            // The database is locked until the thread has closed it.
            match sqlite::open(&Location::File(path.clone()), Mode::Echo, window) {
                Ok((_, loaded)) => break loaded,
                Err(e) => assert!(Instant::now() < deadline, "{e}"),
            }
            std::thread::yield_now();
        };
        let files = std::fs::read_dir(sqlite::log_dir(&path)).unwrap().count();
        assert!(files < 10, "released segments are reused, not kept: {files} files");
        let received: Vec<u64> = reopened.sessions.iter().map(|s| s.record.received).collect();
        let mut expected = vec![50, 300];
        if reopened.sessions[0].record.id != [1; 16] {
            expected.reverse();
        }
        assert_eq!(received, expected);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
