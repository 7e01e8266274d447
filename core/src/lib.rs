//! longconn-core: the engine behind the longconn C library, in safe Rust.
//!
//! A [`Client`] keeps one connection alive in the background: heartbeats,
//! reconnection with backoff, and an outbox that survives disconnects. The
//! modules are layered; each uses only those listed after it:
//!
//! * [`client`]: the application's handle.
//! * [`session`]: connect, run one connection, back off, again.
//! * [`engine`]: the state a client and its session share, in narrow parts
//!   (outbox side, inbox and callbacks, close signal, counters, settings).
//! * [`config`]: what a client is created with.
//! * [`transport`]: TCP, TLS and WebSocket under the framing.
//! * [`outbox`], [`event`], [`endpoint`], [`hook`]: plain data structures; [`uri`]:
//!   URL text into parts; [`durable`]: the outbox file on disk (its format,
//!   its lock), not yet used by the client.
//! * [`protocol`]: frames, the three framings, the hello exchange; shared
//!   with the bundled server.
//! * [`policy`]: backoff, heartbeat deadlines and queue limits, pure.
//! * [`runtime`], [`log`], [`error`], [`lock`]: process-wide plumbing.
//!
//! The C ABI is the `longconn` crate at the workspace root; no `unsafe`
//! code lives here.

#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod durable;
pub mod endpoint;
pub mod engine;
pub mod error;
pub mod event;
pub mod hook;
pub mod lock;
pub mod log;
pub mod outbox;
pub mod policy;
pub mod protocol;
pub mod runtime;
mod session;
pub mod transport;
pub mod uri;

pub use client::{Client, CloseOutcome};
pub use config::{ClientConfig, PlainHeartbeat};
pub use engine::counters::Stats;
pub use engine::dispatch::EventHandler;
pub use engine::lifecycle::State;
pub use error::Error;
pub use event::{DisconnectReason, ErrorKind, Event};
