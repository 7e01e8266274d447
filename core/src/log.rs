//! Library logging: silent unless the application installs a sink.
//!
//! The library never writes to stdout or stderr on its own; it lives inside
//! someone else's process.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

/// Receives log lines. Called from library threads, possibly several at once.
pub trait LogSink: Send + Sync {
    fn log(&self, level: Level, message: &str);
}

/// Most verbose level delivered; 0 when no sink is installed.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(0);
static SINK: RwLock<Option<Arc<dyn LogSink>>> = RwLock::new(None);

/// Installs (or with `None`, removes) the sink and the most verbose level it receives.
pub fn set_sink(sink: Option<Arc<dyn LogSink>>, max_level: Level) {
    let level = if sink.is_some() { max_level as u8 } else { 0 };
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = sink;
    MAX_LEVEL.store(level, Ordering::Release);
}

#[inline]
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Hands `message` to the sink. The sink is called with the read lock held,
/// so removing it ([`set_sink`] with `None`) waits for calls in progress:
/// once that returns, no thread is inside the old sink (a Python binding
/// relies on it at interpreter exit, when a thread still entering Python
/// would be stopped in the middle of the call).
pub fn write(level: Level, message: &str) {
    let sink = SINK.read().unwrap_or_else(|e| e.into_inner());
    if let Some(sink) = sink.as_ref() {
        sink.log(level, message);
    }
}

/// Formats and logs only when `level` is enabled.
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, &format!($($arg)*));
        }
    };
}
pub(crate) use log_at;
