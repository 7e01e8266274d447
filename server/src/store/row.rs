//! Messages of a session's inbound stream as the store keeps them, and the
//! pool their buffers go back to.

use std::sync::Mutex;

use bytes::Bytes;
use longconn_core::lock::lock;
use longconn_core::protocol::{Frame, FrameType};

/// Marks a text message in a row's length word (messages are far below 2 GiB).
const TEXT: u32 = 1 << 31;

/// Messages of a session's inbound stream: each a u32 BE length (its top
/// bit set for text), then its bytes. A session's messages are stored one
/// log record per commit, not one per message: storing costs a copy per
/// message (made by the connection as it reads), and the rows are written
/// to the log as they are (one vectored write).
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
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The messages as stored.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The messages of a stored row (see [`Row`]); a truncated tail is dropped.
pub fn split_messages(row: Bytes) -> Vec<Frame> {
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

/// Row buffers the store is done with, for connections to fill again: a
/// fresh buffer per read cost the connection a page fault per 4 KiB it
/// wrote (a tenth of its time under a stream of small messages).
#[derive(Default)]
pub struct RowPool(Mutex<Vec<Vec<u8>>>);

/// Buffers kept in the pool at most, and the largest one kept.
const POOL_ROWS: usize = 64;
const POOL_ROW_BYTES: usize = 256 * 1024;

impl RowPool {
    /// An empty row with room for `bytes`, in a buffer given back when there is one.
    pub fn new_row(&self, bytes: usize) -> Row {
        let mut buffer = lock(&self.0).pop().unwrap_or_default();
        buffer.reserve(bytes);
        Row { bytes: buffer, count: 0 }
    }

    pub fn give_back(&self, rows: Vec<Row>) {
        let mut pool = lock(&self.0);
        for mut row in rows {
            if pool.len() < POOL_ROWS && row.bytes.capacity() <= POOL_ROW_BYTES {
                row.bytes.clear();
                pool.push(row.bytes);
            }
        }
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
