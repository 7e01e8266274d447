//! Policies: small pure units that decide, with no I/O and no clock of
//! their own, so they are tested without a network.

pub mod ack;
pub mod backoff;
pub mod failover;
pub mod heartbeat;
pub mod limits;
