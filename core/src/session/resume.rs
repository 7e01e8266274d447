//! What a client keeps from one connection to the next for protocol
//! version 2: the server's session id, where each direction's numbering
//! stands, and its room position.
//!
//! Outbound, wire sequence numbers are the client's message numbers (see
//! the outbox) minus `base`, the number of the message before the
//! session's first; inbound, `received` counts the session's data frames.

use crate::durable::format::SavedSession;
use crate::event::Delivery;
use crate::protocol::hello::{HelloExt, RoomPosition, PROTOCOL_V2};

#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// The server's id for this client's session; `None` before the first
    /// version 2 connection.
    session: Option<Vec<u8>>,
    /// Outbound: wire sequence number = message number - `base`.
    pub base: u64,
    /// Inbound: the highest sequence number received in this session.
    pub received: u64,
    /// A room position the server gave, and the `received` it belongs to.
    anchor: Option<(RoomPosition, u64)>,
    /// The WebSocket servers (indexes into the client's list) that chose
    /// no subprotocol when offered version 2: it is not offered to them again.
    pub ws_v2_declined: Vec<usize>,
    /// HTTP: the last event id and the server's retry, across connections.
    pub sse: crate::transport::http::SharedProgress,
}

/// What the server's hello settled.
pub(crate) struct Accepted {
    pub delivery: Delivery,
    /// Resumed: every message up to this number reached the server.
    pub acked_up_to: Option<u64>,
}

impl Resume {
    /// Takes up a session the outbox file kept.
    pub fn restore(&mut self, saved: SavedSession) {
        self.session = Some(saved.id);
        (self.base, self.received) = (saved.base, saved.received);
        self.anchor = saved.anchor.map(|(epoch, offset, at)| (RoomPosition { epoch, offset }, at));
    }

    /// The session as the outbox file keeps it (`None` before the first
    /// version 2 connection).
    pub fn saved(&self) -> Option<SavedSession> {
        let id = self.session.clone()?;
        let anchor = self.anchor.map(|(p, at)| (p.epoch, p.offset, at));
        Some(SavedSession { id, base: self.base, received: self.received, anchor })
    }

    /// The room position of the last message received, if the server gave one.
    fn position(&self) -> Option<RoomPosition> {
        self.anchor.map(|(p, at)| RoomPosition { epoch: p.epoch, offset: p.offset + (self.received - at) })
    }

    /// The extension block of our hello.
    pub fn hello_ext(&self) -> HelloExt {
        HelloExt {
            max_version: PROTOCOL_V2,
            session: self.session.clone(),
            received: self.received,
            position: self.position(),
            resumed: false,
            recovered: false,
            token: None,
        }
    }

    /// Takes in the server's hello fields (`None`: a version 1 server).
    /// `acked` is the outbox's acknowledged number: a new session numbers
    /// its messages from the first one not acknowledged.
    pub fn accept(&mut self, server: Option<&HelloExt>, acked: u64) -> Accepted {
        let Some(ext) = server.filter(|ext| ext.max_version >= PROTOCOL_V2) else {
            return Accepted { delivery: Delivery::default(), acked_up_to: None };
        };
        let resumed = ext.resumed && self.session.is_some() && self.session == ext.session;
        let first_session = self.session.is_none() && self.anchor.is_none();
        let acked_up_to = if resumed {
            Some(self.base + ext.received)
        } else {
            self.base = acked;
            self.received = 0;
            None
        };
        self.session = ext.session.clone();
        self.anchor = ext.position.map(|p| (p, self.received));
        Accepted {
            delivery: Delivery {
                acknowledged: true,
                resumed,
                recovered: ext.recovered || (first_session && !resumed),
                epoch: ext.position.map_or(0, |p| p.epoch),
            },
            acked_up_to,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(session: &[u8], received: u64, resumed: bool, offset: u64) -> HelloExt {
        HelloExt {
            max_version: 2,
            session: Some(session.to_vec()),
            received,
            position: Some(RoomPosition { epoch: 9, offset }),
            resumed,
            recovered: resumed,
            token: None,
        }
    }

    #[test]
    fn a_resumed_session_keeps_its_numbering_and_a_new_one_starts_after_the_acknowledged() {
        let mut r = Resume::default();
        let first = r.accept(Some(&server(b"s1", 0, false, 100)), 0);
        assert!(first.delivery.acknowledged && first.delivery.recovered && !first.delivery.resumed);
        r.received = 5;
        assert_eq!(r.hello_ext().position, Some(RoomPosition { epoch: 9, offset: 105 }));
        let again = r.accept(Some(&server(b"s1", 3, true, 105)), 1);
        assert_eq!(again.acked_up_to, Some(3));
        assert!(again.delivery.resumed);
        assert_eq!(r.received, 5, "the inbound numbering goes on");
        let lost = r.accept(Some(&server(b"s2", 0, false, 500)), 3);
        assert!(!lost.delivery.resumed && !lost.delivery.recovered);
        assert_eq!((r.base, r.received), (3, 0), "a new session numbers from the first unacknowledged");
        let v1 = r.accept(None, 3);
        assert!(!v1.delivery.acknowledged);
    }
}
