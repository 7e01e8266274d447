//! What the benchmarks read of their own process: sizes from the
//! environment, and context switches.

// Not every benchmark uses every helper.
#![allow(dead_code)]

/// A count from the environment variable `name`, else `default`.
pub fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Voluntary and involuntary context switches of the whole process so far.
pub fn context_switches() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage struct.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    (usage.ru_nvcsw + usage.ru_nivcsw) as u64
}
