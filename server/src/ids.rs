//! Session ids and the server's other random numbers.

/// A session id: random bytes chosen by the server (or, for an HTTP
/// sender, by the client).
pub type SessionId = [u8; 16];

/// Sixteen random bytes from the kernel.
pub fn random_id() -> SessionId {
    use std::io::Read;
    let mut id = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut id));
    if filled.is_err() {
        // No /dev/urandom: the clock and a process-wide counter still tell sessions apart.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u128;
        id = (nanos ^ (count << 64) ^ std::process::id() as u128).to_be_bytes();
    }
    id
}

/// A random odd u64 (for epochs).
pub fn random_u64() -> u64 {
    let id = random_id();
    u64::from_be_bytes(id[..8].try_into().expect("8 bytes")) | 1
}
