//! The engine: the state a client's handle and its session share, in
//! narrow parts, so that each loop of the session sees only what it needs.
//!
//! | part | written by | read by |
//! | --- | --- | --- |
//! | [`sending::Sending`] (outbox, room, writer wake-up) | `send` calls; the writer | the writer; `send_wait` |
//! | [`dispatch::Delivery`] (inbox, handler, callback loop) | the reader and the session | callbacks, `poll` |
//! | [`close::CloseSignal`] | `close`, `free` | every loop |
//! | [`counters::Counters`] | the loops | `stats` |
//! | [`settings::Settings`] | `set_heartbeat`, `set_reconnect` | heartbeat loop, session |
//! | [`lifecycle::Lifecycle`] (state, finished) | the session | `state`, `close`, callbacks |
//!
//! Nothing here imports the session or the handle.

pub mod close;
pub mod counters;
pub mod dispatch;
pub mod inbox;
pub mod lifecycle;
pub mod sending;
pub mod settings;
pub mod spin;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::ClientConfig;
use crate::error::Error;
use crate::transport::Target;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Everything a client and its session share.
pub struct Engine {
    /// Unique in the process; names the client in logs.
    pub id: u64,
    pub config: ClientConfig,
    /// The servers it may connect to, the config's first one first, each
    /// with its TLS connector (built once from the config).
    pub targets: Vec<Target>,
    pub sending: sending::Sending,
    pub delivery: Arc<dispatch::Delivery>,
    pub close: close::CloseSignal,
    pub counters: counters::Counters,
    pub settings: settings::Settings,
    pub lifecycle: Arc<lifecycle::Lifecycle>,
    /// What the outbox file held when the client was created.
    pub restored: Restored,
}

/// What a durable outbox held when its client was created.
#[derive(Debug, Default)]
pub struct Restored {
    /// The session to resume, taken by the session when it starts.
    pub session: std::sync::Mutex<Option<crate::durable::format::SavedSession>>,
    /// The highest message number the file held (kept or acknowledged):
    /// the client's numbering goes on after it.
    pub last_number: u64,
    /// What was cut off the file's end, if anything (a torn write).
    pub dropped: Option<String>,
}

impl Engine {
    /// Builds the parts from a validated config.
    pub fn new(config: ClientConfig) -> Result<Engine, Error> {
        let targets = config.servers().map(|endpoint| target(&config, endpoint)).collect::<Result<_, _>>()?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let lifecycle = Arc::new(lifecycle::Lifecycle::default());
        let inbox = inbox::EventQueue::new(config.inbox);
        let mut sending = sending::Sending::new(config.outbox, config.framing());
        let mut restored = Restored::default();
        if let Some(path) = &config.outbox_path {
            let (durable, contents) = crate::durable::DurableOutbox::open(path, config.outbox_sync)
                .map_err(|e| Error::Storage(e.to_string()))?;
            if let Some(dropped) = &contents.dropped {
                crate::log::log_at!(crate::log::Level::Warn, "the outbox file {}: {dropped}", path.display());
            }
            sending.make_durable(durable, contents.acked, &contents.messages);
            restored = Restored {
                session: std::sync::Mutex::new(contents.session),
                last_number: contents.last_number,
                dropped: contents.dropped,
            };
        }
        Ok(Engine {
            id,
            targets,
            sending,
            delivery: Arc::new(dispatch::Delivery::new(id, inbox, lifecycle.clone(), config.callbacks_on_io_thread)),
            close: close::CloseSignal::default(),
            counters: counters::Counters::default(),
            settings: settings::Settings::new(settings::LiveSettings {
                heartbeat: config.heartbeat,
                backoff: config.backoff,
            }),
            lifecycle,
            config,
            restored,
        })
    }
}

/// A server with its TLS connector and the proxy it is reached through;
/// the environment is read here, on the thread that creates the client.
fn target(config: &ClientConfig, endpoint: &crate::endpoint::Endpoint) -> Result<Target, Error> {
    let proxy = config
        .proxy
        .for_server(endpoint, config.dialer.is_some(), |name| std::env::var(name).ok())
        .map_err(Error::InvalidArgument)?;
    if let Some((proxy, from)) = &proxy {
        crate::log::log_at!(
            crate::log::Level::Info,
            "{endpoint} will be reached through the proxy {proxy} (from {from})"
        );
    }
    Target::new(endpoint.clone(), &config.tls, proxy.map(|(proxy, _)| proxy))
}
