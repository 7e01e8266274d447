//! Which server a connection attempt goes to: the first stage of
//! connecting, over the client's list of servers. Pure: the session tells
//! it what happened and asks where to go, and whether a full round of the
//! list has failed (then it backs off one step; between servers of a round
//! it moves on at once).

/// Where a client starts in its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerOrder {
    /// The first server first, then the next, as listed.
    #[default]
    AsListed,
    /// A server picked at random first (spreading many clients), then on
    /// through the list, wrapping around.
    RandomStart,
}

/// What a failed attempt means for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Another server of this round is next: try it at once.
    NextServer,
    /// Every server of the list failed since the round began: back off one
    /// step, then start the next round.
    RoundFailed,
}

#[derive(Debug, Clone)]
pub struct Failover {
    servers: usize,
    current: usize,
    /// Failed attempts since the round began (at `current` when it did).
    failed_in_round: usize,
}

impl Failover {
    /// A policy over `servers` servers (at least one); `seed` picks the
    /// first one for [`ServerOrder::RandomStart`].
    pub fn new(servers: usize, order: ServerOrder, seed: u64) -> Failover {
        let servers = servers.max(1);
        let current = match order {
            ServerOrder::AsListed => 0,
            ServerOrder::RandomStart => (seed % servers as u64) as usize,
        };
        Failover { servers, current, failed_in_round: 0 }
    }

    /// The server the next attempt goes to (an index into the list).
    pub fn current(&self) -> usize {
        self.current
    }

    /// The attempt on [`Failover::current`] failed: moves to the next server.
    pub fn failed(&mut self) -> AfterFailure {
        self.current = (self.current + 1) % self.servers;
        self.failed_in_round += 1;
        if self.failed_in_round >= self.servers {
            self.failed_in_round = 0;
            AfterFailure::RoundFailed
        } else {
            AfterFailure::NextServer
        }
    }

    /// A connection to [`Failover::current`] was made: the next round (after
    /// it ends) starts with this server again.
    pub fn connected(&mut self) {
        self.failed_in_round = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_backs_off_after_every_failure_as_a_single_url_always_did() {
        let mut failover = Failover::new(1, ServerOrder::AsListed, 7);
        for _ in 0..3 {
            assert_eq!(failover.current(), 0);
            assert_eq!(failover.failed(), AfterFailure::RoundFailed);
        }
    }

    #[test]
    fn a_list_is_tried_in_order_and_a_full_round_of_failures_is_one_backoff_step() {
        let mut failover = Failover::new(3, ServerOrder::AsListed, 0);
        let mut seen = vec![failover.current()];
        assert_eq!(failover.failed(), AfterFailure::NextServer);
        seen.push(failover.current());
        assert_eq!(failover.failed(), AfterFailure::NextServer);
        seen.push(failover.current());
        assert_eq!(failover.failed(), AfterFailure::RoundFailed);
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(failover.current(), 0, "the next round starts over");
    }

    #[test]
    fn a_connection_restarts_the_round_from_the_server_that_answered() {
        let mut failover = Failover::new(3, ServerOrder::AsListed, 0);
        assert_eq!(failover.failed(), AfterFailure::NextServer);
        failover.connected();
        assert_eq!(failover.current(), 1);
        // It goes away: the round of retries covers every server, starting with it.
        assert_eq!(failover.failed(), AfterFailure::NextServer);
        assert_eq!(failover.failed(), AfterFailure::NextServer);
        assert_eq!(failover.current(), 0);
        assert_eq!(failover.failed(), AfterFailure::RoundFailed);
        assert_eq!(failover.current(), 1);
    }

    #[test]
    fn a_random_start_is_any_server_and_still_covers_the_list_in_one_round() {
        let starts: std::collections::HashSet<usize> =
            (0..50).map(|seed| Failover::new(4, ServerOrder::RandomStart, seed).current()).collect();
        assert_eq!(starts.len(), 4, "every server is a possible start");
        let mut failover = Failover::new(4, ServerOrder::RandomStart, 6);
        let mut seen = vec![failover.current()];
        while failover.failed() == AfterFailure::NextServer {
            seen.push(failover.current());
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2, 3]);
    }
}
