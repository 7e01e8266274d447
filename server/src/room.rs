//! The room: its history (chat lines at offsets, written through the
//! commit loop), the live sessions, and the numbers clients are named by.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use longconn_core::lock::lock;
use tokio::sync::watch;

use crate::commit::{Committer, Published, Request};
use crate::history::History;
use crate::ids::SessionId;
use crate::mode::Mode;
use crate::sessions::{Session, Sessions};
use crate::store::TakeOver;

pub struct Room {
    pub mode: Mode,
    pub history: Mutex<History>,
    /// The next offset, sent whenever lines are added.
    changed: watch::Sender<u64>,
    pub sessions: Sessions,
    next_client: AtomicU64,
    next_connection: AtomicU64,
    online: AtomicUsize,
    committer: Committer,
}

impl Room {
    pub fn new(mode: Mode, history: History, next_client: u64, committer: Committer) -> Room {
        let (changed, _) = watch::channel(history.next_offset());
        Room {
            mode,
            history: Mutex::new(history),
            changed,
            sessions: Sessions::default(),
            next_client: AtomicU64::new(next_client.max(1)),
            next_connection: AtomicU64::new(1),
            online: AtomicUsize::new(0),
            committer,
        }
    }

    /// Where changes go to be made durable.
    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    /// The session a resuming client names, held by connection `generation`,
    /// or `None` if it is unknown. Here: the session this server keeps, once
    /// every message its older connection accepted is stored (that connection
    /// is fenced at once). From a shared store: taken over from whichever
    /// server held it (fencing that server's hold, alive, stuck or dead), fresh
    /// from the store; a copy this server kept is dropped and its connection
    /// ends.
    pub async fn resume(&self, id: &[u8], generation: u64, limit: Duration) -> Result<Option<Arc<Session>>, String> {
        if !self.committer().shared() {
            let Some(session) = self.sessions.get(id) else { return Ok(None) };
            session.fence(generation);
            if !session.settled(limit).await {
                session.release(generation);
                return Err(format!("the store did not settle the session within {} s", limit.as_secs()));
            }
            return Ok(Some(session));
        }
        let Ok(id) = SessionId::try_from(id) else { return Ok(None) };
        let Ok(taken) = tokio::time::timeout(limit, self.committer().take_over(id)).await else {
            return Err(format!("the store did not hand the session over within {} s", limit.as_secs()));
        };
        let TakeOver::Taken(loaded) = taken? else { return Ok(None) };
        let session = Session::restore(loaded);
        lock(&session.state).attached = generation;
        if let Some(old) = self.sessions.get(&id) {
            old.lose();
        }
        self.sessions.insert(session.clone());
        Ok(Some(session))
    }

    /// Whether the history reaches past `offset`, waiting up to `limit` for
    /// a shared store's feed to bring it (a store of this server's own has
    /// no lag: what is not here yet is not coming).
    pub async fn caught_up(&self, offset: u64, limit: Duration) -> bool {
        if !self.committer.shared() {
            return lock(&self.history).next_offset() > offset;
        }
        let mut changes = self.subscribe();
        let reached = tokio::time::timeout(limit, changes.wait_for(|&next| next > offset)).await;
        matches!(reached, Ok(Ok(_)))
    }

    /// A chat line as the room shows it: the speaker's name, then the
    /// message (line-framed members cannot take a newline inside one).
    pub fn chat_line(name: &str, payload: &[u8]) -> Bytes {
        let mut line = Vec::with_capacity(name.len() + 2 + payload.len());
        line.extend_from_slice(name.as_bytes());
        line.extend_from_slice(b": ");
        line.extend(payload.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
        Bytes::from(line)
    }

    /// A new client number; the next one is returned too, for the store to keep.
    pub fn new_client_number(&self) -> (u64, u64) {
        let number = self.next_client.fetch_add(1, Ordering::Relaxed);
        (number, number + 1)
    }

    /// A number for a new connection, unique in this process.
    pub fn new_connection(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Called by the store after a commit added lines.
    pub fn lines_added(&self) {
        let next = lock(&self.history).next_offset();
        self.changed.send_replace(next);
    }

    /// Wakes on new lines.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Adds chat lines (durably, through the store); from a session they
    /// count as its inbound messages.
    pub fn say(&self, author: u64, lines: Vec<Bytes>, session: Option<Arc<Session>>) {
        self.committer.send(Request::Room { author, lines, session });
    }

    /// A client arrived: in chat, a notice to the room.
    pub fn join(&self, number: u64, name: &str) {
        let online = self.online.fetch_add(1, Ordering::Relaxed) + 1;
        if self.mode == Mode::Chat {
            self.say(number, vec![Bytes::from(format!("* {name} joined ({online} online)"))], None);
        }
    }

    pub fn leave(&self, number: u64, name: &str) {
        let online = self.online.fetch_sub(1, Ordering::Relaxed) - 1;
        if self.mode == Mode::Chat {
            self.say(number, vec![Bytes::from(format!("* {name} left ({online} online)"))], None);
        }
    }
}

impl Published for Room {
    fn history(&self) -> &Mutex<History> {
        &self.history
    }

    fn lines_added(&self) {
        Room::lines_added(self)
    }

    fn session_lost(&self, session: &Arc<Session>) {
        self.sessions.remove(session);
    }

    fn epoch_began(&self, epoch: u64) {
        if self.committer.shared() {
            // The lines to keep are the shared store's: the feed reads them again.
            return self.store_lost(epoch);
        }
        let mut history = lock(&self.history);
        if history.epoch == epoch {
            return;
        }
        history.epoch = epoch;
        drop(history);
        // The store lost what it had acknowledged: sessions' counters cannot
        // be trusted either. Their clients start new sessions, told they did
        // not recover, and members of the old epoch end (`Peer::outgoing`).
        let mut forgotten = Vec::new();
        for session in self.sessions.all() {
            forgotten.push((session.id, lock(&session.state).owner));
            session.lose();
            self.sessions.remove(&session);
        }
        self.committer.send(Request::Forget { ids: forgotten });
        self.lines_added();
    }

    fn store_lost(&self, epoch: u64) {
        let mut history = lock(&self.history);
        if history.epoch == epoch {
            // Another part of this server noticed first.
            return;
        }
        history.restart(epoch, 1);
        drop(history);
        for session in self.sessions.all() {
            session.lose();
            self.sessions.remove(&session);
        }
        self.lines_added();
    }
}
