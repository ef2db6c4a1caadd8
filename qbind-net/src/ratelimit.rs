//! Per-IP handshake rate limiting: a token bucket per source address, with a
//! bounded table (oldest-refilled entries are dropped first when full; a
//! dropped entry starts again with a full bucket, which only helps an
//! attacker who already controls more addresses than the table holds).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

/// Token buckets per IP address.
pub struct HandshakeRateLimiter {
    per_sec: f64,
    burst: f64,
    max_entries: usize,
    buckets: BTreeMap<IpAddr, (f64, Instant)>,
}

impl HandshakeRateLimiter {
    /// `per_sec` new handshakes per second per IP, bursts of `burst`, at most
    /// `max_entries` addresses tracked.
    #[must_use]
    pub fn new(per_sec: f64, burst: u32, max_entries: usize) -> Self {
        HandshakeRateLimiter {
            per_sec: per_sec.max(0.0),
            burst: f64::from(burst.max(1)),
            max_entries: max_entries.max(1),
            buckets: BTreeMap::new(),
        }
    }

    /// Take one token for `ip` at `now`; `false` means refuse the handshake.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.max_entries {
            // Drop the entry refilled longest ago.
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            {
                self.buckets.remove(&oldest);
            }
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_sec).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_per_ip() {
        let mut l = HandshakeRateLimiter::new(2.0, 3, 16);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(l.allow(a, t0) && l.allow(a, t0) && l.allow(a, t0));
        assert!(!l.allow(a, t0));
        assert!(l.allow(b, t0), "another IP has its own bucket");
        assert!(l.allow(a, t0 + Duration::from_millis(600)));
        assert!(!l.allow(a, t0 + Duration::from_millis(600)));
    }
}
