//! Protocol version 2 sessions: what the server keeps of each client across
//! its connections, so that both directions resume exactly where they
//! stopped. The durable copy is in the store; this is the live one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use longconn_core::lock::lock;
use longconn_core::protocol::Frame;
use tokio::sync::Notify;

pub use crate::ids::SessionId;
use crate::store::{Counted, LoadedSession, SessionRecord};

pub struct Session {
    pub id: SessionId,
    /// The name the room knows this client by.
    pub name: String,
    /// A number for the room's author field.
    pub number: u64,
    pub state: Mutex<SessionState>,
    /// `received` moved: the connection acknowledges.
    pub committed: Notify,
    /// A newer connection took the session over.
    pub kick: Notify,
    /// The attached connection left.
    pub detached: Notify,
}

#[derive(Debug, Default)]
pub struct SessionState {
    /// Chat: the room offset just before this session's first message.
    pub base: u64,
    /// Inbound messages stored (and so acknowledgeable).
    pub received: u64,
    /// Inbound messages handed to the store (`received` and those in a commit).
    pub accepted: u64,
    /// Inbound messages written in the store's open transaction.
    pub stored_in_commit: u64,
    /// The owner connection holds its ACKs for its next write and needs no
    /// wake-up per commit (see `Peer::acknowledge`); otherwise every commit
    /// wakes it, to acknowledge at once.
    pub commits_quiet: bool,
    /// Tasks waiting for commits besides the owner (a takeover's `settled`,
    /// a connection paused for the store).
    pub commit_waiters: u32,
    /// Echo: replies not yet acknowledged by the client; the front's
    /// sequence number is `echo_first`.
    pub echo: VecDeque<Frame>,
    pub echo_first: u64,
    pub echo_bytes: usize,
    /// The highest server-to-client sequence number the client acknowledged.
    pub client_acked: u64,
    /// This server's owner generation in a shared store (0: the store is
    /// not shared): changes made under an older one fail as fenced.
    pub owner: u64,
    /// The store fenced this server's hold on the session (another server
    /// took it over, or the store lost it): it is done here.
    pub lost: bool,
    /// The connection the session belongs to (0: none): its owner
    /// generation. Only this connection may add inbound messages; a newer
    /// connection presenting the session fences the older one by taking it.
    pub attached: u64,
    /// Inbound frames dropped because the session already had their
    /// sequence numbers (see `peer.rs`).
    pub duplicates: u64,
    /// Connections still running with the session (an older one may be
    /// letting go while a newer one takes it over).
    pub connections: u32,
    pub last_seen: Option<Instant>,
}

impl SessionState {
    /// Echo: the replies to inbound messages just accepted (numbered from
    /// `accepted + 1`). They may go out before the messages are stored: if
    /// the server dies first, the client sends the messages again and their
    /// replies come out with the same numbers, which the client already has,
    /// so they are not sent twice.
    pub fn add_echo(&mut self, replies: Vec<Frame>) {
        if self.echo.is_empty() {
            self.echo_first = self.accepted + 1;
        }
        for reply in replies {
            self.push_echo(reply);
        }
    }

    /// Appends one echo reply (the next sequence number).
    pub fn push_echo(&mut self, reply: Frame) {
        self.echo_bytes += reply.parts().1.len();
        self.echo.push_back(reply);
    }

    /// The sequence number of the last inbound message the store has
    /// written, committed or in its open transaction.
    pub fn received_in_store_order(&self) -> u64 {
        self.received + self.stored_in_commit
    }

    /// Drops echo replies the client acknowledged.
    pub fn client_acknowledged(&mut self, seq: u64) {
        self.client_acked = self.client_acked.max(seq);
        while self.echo_first <= self.client_acked && !self.echo.is_empty() {
            if let Some(gone) = self.echo.pop_front() {
                self.echo_bytes -= gone.parts().1.len();
            }
            self.echo_first += 1;
        }
        if self.echo.is_empty() {
            self.echo_first = self.echo_first.max(self.client_acked + 1);
        }
    }
}

impl Session {
    pub fn new(id: SessionId, number: u64, name: String, state: SessionState) -> Arc<Session> {
        Arc::new(Session {
            id,
            name,
            number,
            state: Mutex::new(state),
            committed: Notify::new(),
            kick: Notify::new(),
            detached: Notify::new(),
        })
    }

    /// A session as the store loaded it: nothing attached, its echo
    /// replies waiting for the client.
    pub fn restore(loaded: LoadedSession) -> Arc<Session> {
        let LoadedSession { record, echo_first, echo } = loaded;
        let mut state = SessionState {
            base: record.base,
            received: record.received,
            accepted: record.received,
            client_acked: record.client_acked,
            owner: record.owner,
            echo_first,
            last_seen: Some(Instant::now()),
            ..SessionState::default()
        };
        for reply in echo {
            state.push_echo(reply);
        }
        Session::new(record.id, record.number, record.name, state)
    }

    /// What the store keeps of the session.
    pub fn record(&self) -> SessionRecord {
        let state = lock(&self.state);
        SessionRecord {
            id: self.id,
            name: self.name.clone(),
            number: self.number,
            base: state.base,
            received: state.received,
            client_acked: state.client_acked,
            owner: state.owner,
        }
    }

    /// `count` more inbound messages go into the store's next commit:
    /// their sequence numbers follow what the store has (committed, or
    /// in earlier changes of the same commit).
    pub fn begin_store(&self, count: u64) -> Counted {
        let mut state = lock(&self.state);
        let first_seq = state.received_in_store_order() + 1;
        state.stored_in_commit += count;
        Counted { id: self.id, owner: state.owner, first_seq, count, client_acked: state.client_acked }
    }

    /// Whether the owner connection holds its ACKs for its next write (see
    /// `SessionState::commits_quiet`).
    pub fn commits_quiet(&self) -> bool {
        lock(&self.state).commits_quiet
    }

    /// Records that `count` more inbound messages are stored: they may be
    /// acknowledged. Wakes the connection if it acknowledges at once (one
    /// wake-up per commit, however many messages it holds) and whoever else
    /// waits for commits.
    pub fn stored(&self, count: u64) {
        let mut state = lock(&self.state);
        state.received += count;
        state.stored_in_commit -= count;
        let wake = !state.commits_quiet || state.commit_waiters > 0;
        drop(state);
        if wake {
            // Everyone waiting now (a takeover's `settled` beside the
            // connection), and a permit for a connection between two waits.
            self.committed.notify_waiters();
            self.committed.notify_one();
        }
    }

    /// The store fenced this server's hold on the session: its connection
    /// ends (as replaced), and whatever it accepted and the store did not
    /// take is left to the client to send again to the new owner.
    pub fn lose(&self) {
        let mut state = lock(&self.state);
        state.lost = true;
        state.attached = u64::MAX;
        drop(state);
        self.kick.notify_waiters();
        self.committed.notify_waiters();
    }

    /// Asks for a wake-up on every commit until the guard is dropped.
    pub fn wait_for_commits(&self) -> CommitWaiter<'_> {
        lock(&self.state).commit_waiters += 1;
        CommitWaiter(self)
    }

    /// Connection (or request) `generation` lets go: the session is free
    /// again unless a newer one took it.
    pub fn release(&self, generation: u64) {
        let mut state = lock(&self.state);
        if state.attached == generation {
            state.attached = 0;
            state.last_seen = Some(Instant::now());
        }
        drop(state);
        self.detached.notify_one();
    }

    /// Gives the session to connection `generation` at once: from here on
    /// the older connection's reads are discarded (see `peer.rs`), so what
    /// it accepted before is final, and its writes are abandoned (it is
    /// woken through `kick`). Nothing here waits for the older connection.
    pub fn fence(&self, generation: u64) {
        lock(&self.state).attached = generation;
        self.kick.notify_waiters();
    }

    /// Waits until every accepted inbound message is stored, so `received`
    /// can be told to a reconnecting client; `false` if that takes longer
    /// than `limit` (the store is stuck: the caller must not answer with a
    /// `received` that is behind). Call after [`Session::fence`]: then
    /// only the store's commits decide how long this takes.
    pub async fn settled(&self, limit: Duration) -> bool {
        let _waiting = self.wait_for_commits();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.committed.notified();
            {
                let state = lock(&self.state);
                if state.lost {
                    return false;
                }
                if state.received >= state.accepted {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }
}

/// Keeps commit wake-ups coming while alive.
pub struct CommitWaiter<'a>(&'a Session);

impl Drop for CommitWaiter<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).commit_waiters -= 1;
    }
}

/// The live sessions, by id.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<SessionId, Arc<Session>>>,
}

impl Sessions {
    pub fn get(&self, id: &[u8]) -> Option<Arc<Session>> {
        let id: SessionId = id.try_into().ok()?;
        lock(&self.map).get(&id).cloned()
    }

    pub fn insert(&self, session: Arc<Session>) {
        lock(&self.map).insert(session.id, session);
    }

    /// Removes `session` if it is still the one under its id.
    pub fn remove(&self, session: &Arc<Session>) {
        let mut map = lock(&self.map);
        if map.get(&session.id).is_some_and(|s| Arc::ptr_eq(s, session)) {
            map.remove(&session.id);
        }
    }

    /// Every live session.
    pub fn all(&self) -> Vec<Arc<Session>> {
        lock(&self.map).values().cloned().collect()
    }

    /// Removes sessions no connection has held for `ttl`; returns their
    /// ids with the owner generation each was held under.
    pub fn expire(&self, ttl: Duration) -> Vec<(SessionId, u64)> {
        let now = Instant::now();
        let mut gone = Vec::new();
        lock(&self.map).retain(|id, session| {
            let state = lock(&session.state);
            let keep = !state.lost
                && (state.attached != 0
                    || state.connections > 0
                    || state.last_seen.is_none_or(|seen| now.duration_since(seen) < ttl));
            if !keep && !state.lost {
                gone.push((*id, state.owner));
            }
            keep
        });
        gone
    }
}
