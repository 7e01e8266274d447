//! The bundled server's parts, as a library: the binary (`main.rs`) wires
//! them to TCP listeners, and the deterministic simulation
//! (`tests/simulation.rs`) to a simulated network. See `main.rs` for what
//! the server does.

pub mod args;
pub mod commit;
pub mod history;
mod http;
pub mod ids;
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
use sessions::Session;

/// Where the commit loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreRuns {
    /// A thread of its own (the binary).
    OnThread,
    /// A task of the current thread's `LocalSet` (the simulation).
    AsLocalTask,
}

/// Opens the store where `args` say, builds the room from what it holds
/// (history, sessions, client numbers) and starts the commit loop over it.
/// Returns the room and a line describing what was loaded.
pub fn open_room(args: &Args, runs: StoreRuns) -> Result<(Arc<Room>, String), String> {
    let location = args.store_location();
    let (store, loaded) = store::open(&location, args.mode, args.history)?;
    let described = format!(
        "store {} ({} sessions, history from offset {} to {})",
        location.describe(),
        loaded.sessions.len(),
        loaded.history.first_offset(),
        loaded.history.next_offset() - 1
    );
    let (committer, pending) = commit::channel(store);
    let committer = match runs {
        StoreRuns::OnThread => committer,
        StoreRuns::AsLocalTask => pending.local_committer(&committer),
    };
    let room = Arc::new(Room::new(args.mode, loaded.history, loaded.next_client, committer));
    for session in loaded.sessions {
        room.sessions.insert(Session::restore(session));
    }
    match runs {
        StoreRuns::OnThread => pending.start(room.clone()),
        StoreRuns::AsLocalTask => pending.start_local(room.clone()),
    }
    Ok((room, described))
}
