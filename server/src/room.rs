//! The registry of connected clients, and chat broadcast.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use longconn_core::lock::lock;
use tokio::sync::mpsc;

use crate::args::Mode;

/// Messages a client may have waiting before it counts as too slow and is dropped.
pub const MAILBOX_CAPACITY: usize = 4096;

pub struct Member {
    pub name: String,
    pub mailbox: mpsc::Sender<Bytes>,
}

pub struct Room {
    pub mode: Mode,
    next_id: AtomicU64,
    members: Mutex<HashMap<u64, Member>>,
}

impl Room {
    pub fn new(mode: Mode) -> Room {
        Room { mode, next_id: AtomicU64::new(1), members: Mutex::new(HashMap::new()) }
    }

    /// Registers a client; returns its id, name and mailbox.
    pub fn join(&self) -> (u64, String, mpsc::Receiver<Bytes>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name = format!("client-{id}");
        let (tx, rx) = mpsc::channel(MAILBOX_CAPACITY);
        let online = {
            let mut members = lock(&self.members);
            members.insert(id, Member { name: name.clone(), mailbox: tx });
            members.len()
        };
        if self.mode == Mode::Chat {
            self.broadcast(id, Bytes::from(format!("* {name} joined ({online} online)")));
        }
        (id, name, rx)
    }

    pub fn leave(&self, id: u64) {
        let removed = lock(&self.members).remove(&id);
        if let (Some(member), Mode::Chat) = (removed, self.mode) {
            let online = lock(&self.members).len();
            self.broadcast(id, Bytes::from(format!("* {} left ({online} online)", member.name)));
        }
    }

    /// Sends `message` to every member but `from`. A member whose mailbox is
    /// full is too slow to keep up and is dropped from the room.
    pub fn broadcast(&self, from: u64, message: Bytes) {
        let mut members = lock(&self.members);
        members.retain(|&id, member| id == from || member.mailbox.try_send(message.clone()).is_ok());
    }
}
