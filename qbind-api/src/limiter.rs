//! Per-client token buckets (docs/api.md "Limits").
//!
//! Each client address has a bucket of `burst` tokens refilled at
//! `per_second`; a request takes one token per transaction it carries (one
//! for reads). Clients are keyed by IPv4 address, or by the /64 prefix of an
//! IPv6 address (one subscriber usually holds a whole /64, so per-address
//! keys would let one host rotate through 2⁶⁴ buckets).
//!
//! **Bound:** at most [`RateLimitConfig::max_clients`] buckets are kept, in
//! an LRU map: a new client beyond the bound evicts the least recently seen
//! one in O(1). An attacker rotating addresses therefore cannot grow memory;
//! the most it achieves is to evict other clients' buckets, which then start
//! full again (the limiter fails open per client, never closed).
//!
//! Time is an argument ([`ClientRateLimiter::try_acquire`]), so the arithmetic
//! is tested without sleeping. Token counts are integers in units of 10⁻⁹
//! token: exact refill, no float drift.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

const NANO: u128 = 1_000_000_000;

/// Rate limit parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Tokens added per second to each client's bucket (> 0).
    pub per_second: u32,
    /// Bucket size: the most a client can spend at once (≥ 1).
    pub burst: u32,
    /// Most clients tracked at once (the LRU bound).
    pub max_clients: NonZeroUsize,
}

impl Default for RateLimitConfig {
    /// 20 per second, bursts of 200 (a full default batch plus reads),
    /// 65,536 clients (about 6 MiB at most).
    fn default() -> Self {
        RateLimitConfig {
            per_second: 20,
            burst: 200,
            max_clients: NonZeroUsize::new(65_536).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// The key a client is limited under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ClientKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl ClientKey {
    fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    ClientKey::V6Prefix([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// In units of 10⁻⁹ token.
    tokens: u128,
    last: Instant,
}

/// Token buckets for at most `max_clients` clients.
#[derive(Debug)]
pub struct ClientRateLimiter {
    cfg: RateLimitConfig,
    buckets: Mutex<LruCache<ClientKey, Bucket>>,
}

impl ClientRateLimiter {
    /// An empty limiter. `per_second` and `burst` of 0 are raised to 1.
    #[must_use]
    pub fn new(mut cfg: RateLimitConfig) -> Self {
        cfg.per_second = cfg.per_second.max(1);
        cfg.burst = cfg.burst.max(1);
        ClientRateLimiter {
            cfg,
            buckets: Mutex::new(LruCache::new(cfg.max_clients)),
        }
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> RateLimitConfig {
        self.cfg
    }

    /// Take `cost` tokens from `ip`'s bucket at time `now`. On refusal
    /// returns how long until the bucket holds `cost` tokens (a cost above
    /// `burst` is refused with the time to refill a full bucket). A refused
    /// request takes nothing.
    pub fn try_acquire(&self, ip: IpAddr, cost: u32, now: Instant) -> Result<(), Duration> {
        let rate = u128::from(self.cfg.per_second);
        let capacity = u128::from(self.cfg.burst) * NANO;
        let need = u128::from(cost) * NANO;
        let mut buckets = match self.buckets.lock() {
            Ok(guard) => guard,
            // A panic elsewhere while holding the lock leaves plain counters
            // behind: still consistent enough to keep limiting.
            Err(poisoned) => poisoned.into_inner(),
        };
        let key = ClientKey::of(ip);
        let bucket = buckets.get_or_insert_mut(key, || Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_nanos();
        bucket.tokens = bucket
            .tokens
            .saturating_add(elapsed.saturating_mul(rate))
            .min(capacity);
        bucket.last = bucket.last.max(now);
        if need > capacity {
            return Err(Duration::from_secs(
                u64::from(self.cfg.burst).div_ceil(u64::from(self.cfg.per_second)),
            ));
        }
        if bucket.tokens >= need {
            bucket.tokens -= need;
            Ok(())
        } else {
            let deficit = need - bucket.tokens;
            // deficit / rate nanoseconds, rounded up.
            let nanos = deficit.div_ceil(rate);
            Err(Duration::from_nanos(
                u64::try_from(nanos).unwrap_or(u64::MAX),
            ))
        }
    }

    /// Clients currently tracked (never above `max_clients`).
    #[must_use]
    pub fn tracked_clients(&self) -> usize {
        match self.buckets.lock() {
            Ok(guard) => guard.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn limiter(per_second: u32, burst: u32, max_clients: usize) -> ClientRateLimiter {
        ClientRateLimiter::new(RateLimitConfig {
            per_second,
            burst,
            max_clients: NonZeroUsize::new(max_clients).unwrap(),
        })
    }

    #[test]
    fn a_bucket_refills_at_the_configured_rate() {
        let l = limiter(10, 5, 16);
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.try_acquire(ip, 1, t0).is_ok());
        }
        let wait = l.try_acquire(ip, 1, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(
            l.try_acquire(ip, 1, t0 + Duration::from_millis(99))
                .is_err()
        );
        assert!(
            l.try_acquire(ip, 1, t0 + Duration::from_millis(100))
                .is_ok()
        );
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(3600);
        assert!(l.try_acquire(ip, 5, later).is_ok());
        assert!(l.try_acquire(ip, 1, later).is_err());
        // A cost above the burst is refused outright, with a finite wait.
        assert_eq!(
            l.try_acquire(ip, 6, later + Duration::from_secs(10)),
            Err(Duration::from_secs(1))
        );
    }

    #[test]
    fn clients_are_limited_separately_and_ipv6_per_64() {
        let l = limiter(1, 1, 16);
        let t0 = Instant::now();
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert!(l.try_acquire(a, 1, t0).is_ok());
        assert!(l.try_acquire(a, 1, t0).is_err());
        assert!(l.try_acquire(b, 1, t0).is_ok());
        let v6a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 1));
        let v6b = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9));
        assert!(l.try_acquire(v6a, 1, t0).is_ok());
        assert!(l.try_acquire(v6b, 1, t0).is_err(), "same /64, same bucket");
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert!(
            l.try_acquire(mapped, 1, t0).is_err(),
            "mapped v4 is the v4 client"
        );
    }

    #[test]
    fn a_flood_of_distinct_addresses_keeps_the_map_bounded() {
        let l = limiter(1, 1, 1_000);
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            let _ = l.try_acquire(IpAddr::V4(Ipv4Addr::from(i)), 1, t0);
            assert!(l.tracked_clients() <= 1_000);
        }
        for i in 0..10_000u64 {
            let ip = IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64));
            let _ = l.try_acquire(ip, 1, t0);
        }
        assert_eq!(l.tracked_clients(), 1_000);
    }
}
