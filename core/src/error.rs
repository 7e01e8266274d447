//! The errors the public API reports.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An argument is out of range or inconsistent; the text says which.
    InvalidArgument(String),
    InvalidUrl(String),
    MessageTooLarge {
        len: usize,
        max: usize,
    },
    /// The outbox is at its limit; the message was not queued.
    QueueFull {
        queued_messages: usize,
        queued_bytes: usize,
    },
    /// The client was closed.
    Closed,
    /// The operation can only be done once, or only before the runtime started.
    AlreadyStarted(&'static str),
    /// The process forked after the library started; the child cannot use it.
    Forked,
    /// The runtime or a library thread could not be started.
    Runtime(String),
    /// The deadline passed first.
    Timeout(String),
    /// The durable outbox file could not be opened, locked, read or written.
    Storage(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Error::InvalidUrl(why) => f.write_str(why),
            Error::MessageTooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the maximum frame size of {max} bytes")
            }
            Error::QueueFull { queued_messages, queued_bytes } => {
                write!(f, "outbox full ({queued_messages} messages, {queued_bytes} bytes queued); message not queued")
            }
            Error::Closed => f.write_str("client is closed"),
            Error::AlreadyStarted(what) => write!(f, "{what}"),
            Error::Storage(why) => f.write_str(why),
            Error::Forked => {
                f.write_str("longconn cannot be used in a child process after fork(); create clients after forking")
            }
            Error::Runtime(why) => write!(f, "runtime error: {why}"),
            Error::Timeout(why) => write!(f, "timed out: {why}"),
        }
    }
}

impl std::error::Error for Error {}
