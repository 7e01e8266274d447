//! longconn: an embeddable long-connection client.
//!
//! The core (this crate's modules except `ffi`) is safe Rust; the C ABI lives
//! in [`ffi`]. A [`Client`] keeps one connection alive in the background:
//! heartbeats, reconnection with backoff, and an outbox that survives
//! disconnects.

pub mod backoff;
pub mod client;
mod close;
pub mod codec;
pub mod config;
mod connection;
mod dispatch;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod ffi;
pub mod heartbeat;
pub mod log;
pub mod outbox;
pub mod runtime;
mod session;
pub mod tls;
pub mod transport;

pub use client::{Client, CloseOutcome, EventHandler, State, Stats};
pub use config::{ClientConfig, PlainHeartbeat};
pub use error::Error;
pub use event::{DisconnectReason, ErrorKind, Event};
