//! Callback threads: where application callbacks run.
//!
//! Callbacks never run on a tokio worker, so a slow or blocking callback
//! cannot stall I/O. A small pool of threads named `longconn-cb` (1 by
//! default) serves all clients; each client is pinned to one thread, which
//! keeps its callbacks serialized and in order.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::Error;
use crate::runtime;

/// Something with events to deliver on a callback thread.
pub trait Dispatch: Send + Sync {
    fn dispatch(&self);
}

struct Pool {
    shards: Vec<mpsc::Sender<Arc<dyn Dispatch>>>,
}

static POOL: OnceLock<Pool> = OnceLock::new();
static BUILD: Mutex<()> = Mutex::new(());

fn pool() -> Result<&'static Pool, Error> {
    runtime::check_not_forked()?;
    if let Some(p) = POOL.get() {
        return Ok(p);
    }
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = POOL.get() {
        return Ok(p);
    }
    let mut shards = Vec::new();
    for i in 0..runtime::callback_threads() {
        let (tx, rx) = mpsc::channel::<Arc<dyn Dispatch>>();
        std::thread::Builder::new()
            .name(format!("longconn-cb-{i}"))
            .spawn(move || {
                for target in rx {
                    target.dispatch();
                }
            })
            .map_err(|e| Error::Runtime(format!("cannot start a callback thread: {e}")))?;
        shards.push(tx);
    }
    Ok(POOL.get_or_init(|| Pool { shards }))
}

/// Starts the callback threads if they are not running yet.
pub fn start() -> Result<(), Error> {
    pool().map(|_| ())
}

/// Queues `target` on the thread that serves shard `key`.
pub fn schedule(key: usize, target: Arc<dyn Dispatch>) {
    let Ok(pool) = pool() else { return };
    let shard = &pool.shards[key % pool.shards.len()];
    let _ = shard.send(target);
}
