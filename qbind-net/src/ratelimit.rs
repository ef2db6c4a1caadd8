//! Per-source handshake rate limiting: a token bucket per source (an IPv4
//! address, or an IPv6 /64 — the block one host usually gets, so rotating
//! within it gains nothing), in a table of at most `max_entries` sources.
//!
//! When the table is full, the source forgotten is the one whose bucket is
//! (or will soonest be) full again — forgetting a full bucket loses nothing —
//! found in O(log n) through an index ordered by that instant. A source that
//! spent its burst is therefore forgotten last, so rotating through other
//! addresses does not reset it. If even the cheapest entry to forget was not
//! refilled yet (more sources are active than the table holds), the new
//! source starts with one token instead of a full burst.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Longest time a bucket can take to refill (caps the index key when the rate is tiny).
const MAX_REFILL: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Key in `by_refill`: when the bucket is full again, and a tie-breaker.
    full_at: (Instant, u64),
}

/// Token buckets per source address.
pub struct HandshakeRateLimiter {
    per_sec: f64,
    burst: f64,
    /// Bound on `buckets` and `by_refill`.
    max_entries: usize,
    buckets: BTreeMap<IpAddr, Bucket>,
    by_refill: BTreeMap<(Instant, u64), IpAddr>,
    seq: u64,
}

/// The rate-limited unit of `ip`: IPv4 (also when IPv4-mapped) as is, IPv6 by /64.
#[must_use]
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = a.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl HandshakeRateLimiter {
    /// `per_sec` new handshakes per second per source, bursts of `burst`, at
    /// most `max_entries` sources tracked.
    #[must_use]
    pub fn new(per_sec: f64, burst: u32, max_entries: usize) -> Self {
        HandshakeRateLimiter {
            per_sec: if per_sec.is_finite() {
                per_sec.max(0.0)
            } else {
                0.0
            },
            burst: f64::from(burst.max(1)),
            max_entries: max_entries.max(1),
            buckets: BTreeMap::new(),
            by_refill: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Number of sources tracked (at most `max_entries`).
    #[must_use]
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn refill_time(&self, tokens: f64) -> Duration {
        let missing = (self.burst - tokens).max(0.0);
        if missing == 0.0 {
            return Duration::ZERO;
        }
        if self.per_sec <= 0.0 {
            return MAX_REFILL;
        }
        Duration::try_from_secs_f64(missing / self.per_sec)
            .unwrap_or(MAX_REFILL)
            .min(MAX_REFILL)
    }

    /// Make room for one new source; returns its starting tokens.
    fn evict_for_newcomer(&mut self, now: Instant) -> f64 {
        if self.buckets.len() < self.max_entries {
            return self.burst;
        }
        match self.by_refill.pop_first() {
            Some(((full_at, _), victim)) => {
                self.buckets.remove(&victim);
                if full_at <= now { self.burst } else { 1.0 }
            }
            None => self.burst,
        }
    }

    /// Take one token for `ip` at `now`; `false` means refuse the handshake.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let key = source_key(ip);
        let mut bucket = match self.buckets.get(&key) {
            Some(b) => {
                self.by_refill.remove(&b.full_at);
                let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
                Bucket {
                    tokens: (b.tokens + elapsed * self.per_sec).min(self.burst),
                    last: now,
                    full_at: b.full_at,
                }
            }
            None => Bucket {
                tokens: self.evict_for_newcomer(now),
                last: now,
                full_at: (now, 0),
            },
        };
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        self.seq += 1;
        let full = now
            .checked_add(self.refill_time(bucket.tokens))
            .unwrap_or(now);
        bucket.full_at = (full, self.seq);
        self.by_refill.insert(bucket.full_at, key);
        self.buckets.insert(key, bucket);
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Issue #17 finding 8: rotating through more addresses than the table
    /// holds used to forget the source that spent its burst and give it a
    /// new one. Now it is forgotten last, and then comes back with one token:
    /// rotating gains no more than owning that many addresses.
    #[test]
    fn rotating_other_addresses_does_not_reset_a_spent_source() {
        let mut l = HandshakeRateLimiter::new(1.0, 5, 4);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!((0..5).filter(|_| l.allow(a, t0)).count(), 5);
        assert!(!l.allow(a, t0));
        for i in 0..3u8 {
            l.allow(IpAddr::from([127, 0, 1, i]), t0);
        }
        assert!(!l.allow(a, t0), "spent source forgotten before fuller ones");
        for i in 3..200u8 {
            l.allow(IpAddr::from([127, 0, 1, i]), t0);
        }
        let t = t0 + Duration::from_millis(10);
        let again = (0..5).filter(|_| l.allow(a, t)).count();
        assert!(
            again <= 1,
            "address rotation gave a spent source {again} handshakes"
        );
        assert!(l.len() <= 4);
    }

    #[test]
    fn table_is_bounded_and_ipv6_is_limited_per_64() {
        let mut l = HandshakeRateLimiter::new(1.0, 2, 8);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            l.allow(IpAddr::from(i.to_be_bytes()), t0);
            assert!(l.len() <= 8);
        }
        assert_eq!(l.by_refill.len(), l.buckets.len());
        // Under pressure a newcomer still gets one handshake, not a burst.
        let fresh: IpAddr = "198.51.100.9".parse().unwrap();
        assert!(l.allow(fresh, t0));
        assert!(!l.allow(fresh, t0));
        // One /64 is one source.
        let mut l = HandshakeRateLimiter::new(1.0, 2, 8);
        assert!(l.allow("2001:db8::1".parse().unwrap(), t0));
        assert!(l.allow("2001:db8::2".parse().unwrap(), t0));
        assert!(!l.allow("2001:db8::3".parse().unwrap(), t0));
        assert!(l.allow("2001:db8:0:1::1".parse().unwrap(), t0));
        assert!(l.allow("::ffff:127.0.0.1".parse().unwrap(), t0));
    }
}
