//! Liveness score (spec §5.5): every peer starts at `initial`; an answered
//! heartbeat adds `pong_reward`, a missed one subtracts `miss_penalty` (half
//! of it if other messages arrived from the peer since the heartbeat was
//! sent — it is slow, not gone); a peer at or below `evict_below` is evicted.

use std::time::Instant;

/// Scoring parameters.
#[derive(Clone, Debug)]
pub struct LivenessConfig {
    /// Score of a new peer (default 100, also the maximum).
    pub initial: i32,
    /// Reward for an answered heartbeat (default 10).
    pub pong_reward: i32,
    /// Penalty for a missed heartbeat (default 30).
    pub miss_penalty: i32,
    /// Evict at or below this score (default 10: three silent misses).
    pub evict_below: i32,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            initial: 100,
            pong_reward: 10,
            miss_penalty: 30,
            evict_below: 10,
        }
    }
}

/// One peer's liveness state.
#[derive(Clone, Debug)]
pub struct Liveness {
    score: i32,
    outstanding: Option<(u64, Instant)>,
    heard_since_ping: bool,
}

/// What a heartbeat tick decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heartbeat {
    /// Send a ping with this nonce.
    Ping(u64),
    /// The previous ping was missed; send a new ping with this nonce.
    MissedThenPing(u64),
    /// The previous ping was missed and the score fell to the eviction line.
    Evict,
}

impl Liveness {
    /// A new peer.
    #[must_use]
    pub fn new(cfg: &LivenessConfig) -> Self {
        Liveness {
            score: cfg.initial,
            outstanding: None,
            heard_since_ping: false,
        }
    }

    /// The current score.
    #[must_use]
    pub fn score(&self) -> i32 {
        self.score
    }

    /// Any message arrived from the peer.
    pub fn on_message(&mut self) {
        self.heard_since_ping = true;
    }

    /// A pong arrived; only the outstanding nonce counts.
    pub fn on_pong(&mut self, nonce: u64, cfg: &LivenessConfig) {
        if matches!(self.outstanding, Some((n, _)) if n == nonce) {
            self.outstanding = None;
            self.score = (self.score + cfg.pong_reward).min(cfg.initial);
        }
    }

    /// The heartbeat interval elapsed; `nonce` is for the next ping.
    pub fn on_heartbeat(&mut self, nonce: u64, now: Instant, cfg: &LivenessConfig) -> Heartbeat {
        let missed = self.outstanding.is_some();
        if missed {
            let penalty = if self.heard_since_ping {
                cfg.miss_penalty / 2
            } else {
                cfg.miss_penalty
            };
            self.score -= penalty;
            if self.score <= cfg.evict_below {
                return Heartbeat::Evict;
            }
        }
        self.outstanding = Some((nonce, now));
        self.heard_since_ping = false;
        if missed {
            Heartbeat::MissedThenPing(nonce)
        } else {
            Heartbeat::Ping(nonce)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_peer_is_evicted_after_three_misses_and_answers_restore() {
        let cfg = LivenessConfig::default();
        let now = Instant::now();
        let mut l = Liveness::new(&cfg);
        assert_eq!(l.on_heartbeat(1, now, &cfg), Heartbeat::Ping(1));
        assert_eq!(l.on_heartbeat(2, now, &cfg), Heartbeat::MissedThenPing(2));
        assert_eq!(l.score(), 70);
        l.on_pong(1, &cfg); // stale nonce: ignored
        assert_eq!(l.score(), 70);
        l.on_pong(2, &cfg);
        assert_eq!(l.score(), 80);
        assert_eq!(l.on_heartbeat(3, now, &cfg), Heartbeat::Ping(3));
        l.on_message();
        assert_eq!(l.on_heartbeat(4, now, &cfg), Heartbeat::MissedThenPing(4));
        assert_eq!(l.score(), 65, "half penalty when the peer still talks");
        assert_eq!(l.on_heartbeat(5, now, &cfg), Heartbeat::MissedThenPing(5));
        assert_eq!(l.on_heartbeat(6, now, &cfg), Heartbeat::Evict);
    }
}
