//! The bundled server's parts, as a library: the binary (`main.rs`) wires
//! them to TCP listeners, and the deterministic simulation
//! (`tests/simulation.rs`) to a simulated network. See `main.rs` for what
//! the server does.

pub mod args;
pub mod history;
mod http;
pub mod inbound_log;
pub mod mode;
mod page;
pub mod peer;
pub mod room;
pub mod sessions;
pub mod store;
pub mod tls;
mod token;

use std::sync::Arc;

use args::Args;
use room::Room;

/// Where the store's writer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreRuns {
    /// A thread of its own (the binary).
    OnThread,
    /// A task of the current thread's `LocalSet` (the simulation).
    AsLocalTask,
}

/// Opens the store where `args` say, builds the room from what it holds
/// (history, sessions, client numbers) and starts the store's writer.
/// Returns the room and a line describing what was loaded.
pub fn open_room(args: &Args, runs: StoreRuns) -> Result<(Arc<Room>, String), String> {
    let location = args.store_location();
    let mut loaded = store::open(&location, args.mode, args.history)?;
    let described = format!(
        "store {} ({} sessions, history from offset {} to {})",
        location.describe(),
        loaded.sessions.len(),
        loaded.history.first_offset(),
        loaded.history.next_offset() - 1
    );
    let history = std::mem::replace(&mut loaded.history, history::History::new(0, 1, args.history));
    let room = Arc::new(Room::new(args.mode, history, loaded.next_client));
    for session in std::mem::take(&mut loaded.sessions) {
        room.sessions.insert(session);
    }
    room.set_store(match runs {
        StoreRuns::OnThread => store::start(loaded, room.clone()),
        StoreRuns::AsLocalTask => store::start_local(loaded, room.clone()),
    });
    Ok((room, described))
}
