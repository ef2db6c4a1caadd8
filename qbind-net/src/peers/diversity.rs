//! Anti-eclipse diversity buckets (spec §5.4, §6.4; runbook §7.2): at most
//! `max_per_prefix24` peers per IPv4 /24, `max_per_prefix16` per /16,
//! `max_per_prefix48` per IPv6 /48, and no top-level bucket (/16 or /48)
//! holding more than `max_bucket_fraction_bps` of all peers once there are
//! at least `fraction_min_peers`. Modes Off / Warn / Enforce.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::metrics::DiversityReason;

/// What a diversity violation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiversityMode {
    /// No checks.
    Off,
    /// Count and log violations, admit anyway.
    Warn,
    /// Count and refuse.
    Enforce,
}

/// Diversity limits (defaults: runbook §7.1/§7.2, MainNet).
#[derive(Clone, Debug)]
pub struct DiversityConfig {
    /// Mode (default Enforce).
    pub mode: DiversityMode,
    /// Peers per IPv4 /24 (default 2).
    pub max_per_prefix24: usize,
    /// Peers per IPv4 /16 (default 8).
    pub max_per_prefix16: usize,
    /// Peers per IPv6 /48 (default 4).
    pub max_per_prefix48: usize,
    /// Largest share of one /16 or /48 bucket, in basis points (default 2,500 = 25 %).
    pub max_bucket_fraction_bps: u32,
    /// The fraction rule applies from this many peers on (default 8), so that
    /// a node with two peers is not forced to refuse its third.
    pub fraction_min_peers: usize,
}

impl Default for DiversityConfig {
    fn default() -> Self {
        DiversityConfig {
            mode: DiversityMode::Enforce,
            max_per_prefix24: 2,
            max_per_prefix16: 8,
            max_per_prefix48: 4,
            max_bucket_fraction_bps: 2_500,
            fraction_min_peers: 8,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    V4P24([u8; 3]),
    V4P16([u8; 2]),
    V6P48([u8; 6]),
}

fn keys(ip: IpAddr) -> (Option<Key>, Key) {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            (
                Some(Key::V4P24([o[0], o[1], o[2]])),
                Key::V4P16([o[0], o[1]]),
            )
        }
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => keys(IpAddr::V4(v4)),
            None => {
                let o = a.octets();
                (None, Key::V6P48([o[0], o[1], o[2], o[3], o[4], o[5]]))
            }
        },
    }
}

/// Counts of connected peers per bucket.
#[derive(Debug, Default)]
pub struct DiversityTracker {
    counts: BTreeMap<Key, usize>,
    total: usize,
}

impl DiversityTracker {
    /// An empty tracker.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn count(&self, k: &Key) -> usize {
        self.counts.get(k).copied().unwrap_or(0)
    }

    /// The first limit that admitting a peer at `ip` would break, whatever the mode.
    #[must_use]
    pub fn violation(&self, ip: IpAddr, cfg: &DiversityConfig) -> Option<DiversityReason> {
        let (p24, top) = keys(ip);
        if let Some(k) = p24
            && self.count(&k) >= cfg.max_per_prefix24
        {
            return Some(DiversityReason::Prefix24);
        }
        match top {
            Key::V4P16(_) if self.count(&top) >= cfg.max_per_prefix16 => {
                return Some(DiversityReason::Prefix16);
            }
            Key::V6P48(_) if self.count(&top) >= cfg.max_per_prefix48 => {
                return Some(DiversityReason::Prefix48);
            }
            _ => {}
        }
        let total_after = self.total + 1;
        if total_after >= cfg.fraction_min_peers {
            let in_bucket = (self.count(&top) + 1) as u128;
            if in_bucket * 10_000 > u128::from(cfg.max_bucket_fraction_bps) * total_after as u128 {
                return Some(DiversityReason::BucketFraction);
            }
        }
        None
    }

    /// Whether to admit `ip` under `cfg.mode`, and the violation if any
    /// (which the caller counts and, in Warn mode, logs).
    #[must_use]
    pub fn admit(&self, ip: IpAddr, cfg: &DiversityConfig) -> (bool, Option<DiversityReason>) {
        if cfg.mode == DiversityMode::Off {
            return (true, None);
        }
        let v = self.violation(ip, cfg);
        (v.is_none() || cfg.mode == DiversityMode::Warn, v)
    }

    /// Record a connected peer.
    pub fn add(&mut self, ip: IpAddr) {
        let (p24, top) = keys(ip);
        if let Some(k) = p24 {
            *self.counts.entry(k).or_insert(0) += 1;
        }
        *self.counts.entry(top).or_insert(0) += 1;
        self.total += 1;
    }

    /// Forget a peer recorded with [`DiversityTracker::add`].
    pub fn remove(&mut self, ip: IpAddr) {
        let (p24, top) = keys(ip);
        for k in p24.into_iter().chain([top]) {
            if let Some(c) = self.counts.get_mut(&k) {
                *c = c.saturating_sub(1);
                if *c == 0 {
                    self.counts.remove(&k);
                }
            }
        }
        self.total = self.total.saturating_sub(1);
    }

    /// Distinct top-level buckets (/16 or /48) among connected peers.
    #[must_use]
    pub fn distinct_buckets(&self) -> usize {
        self.counts
            .keys()
            .filter(|k| !matches!(k, Key::V4P24(_)))
            .count()
    }

    /// Connected peers counted.
    #[must_use]
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_limits_and_modes() {
        // Fraction rule off here; it has its own test.
        let cfg = DiversityConfig {
            max_bucket_fraction_bps: 10_000,
            ..DiversityConfig::default()
        };
        let mut t = DiversityTracker::new();
        t.add(ip("127.1.1.1"));
        t.add(ip("127.1.1.2"));
        assert_eq!(
            t.violation(ip("127.1.1.3"), &cfg),
            Some(DiversityReason::Prefix24)
        );
        assert_eq!(
            t.admit(ip("127.1.1.3"), &cfg),
            (false, Some(DiversityReason::Prefix24))
        );
        let warn = DiversityConfig {
            mode: DiversityMode::Warn,
            ..cfg
        };
        assert_eq!(
            t.admit(ip("127.1.1.3"), &warn),
            (true, Some(DiversityReason::Prefix24))
        );
        let off = DiversityConfig {
            mode: DiversityMode::Off,
            ..cfg
        };
        assert_eq!(t.admit(ip("127.1.1.3"), &off), (true, None));
        assert_eq!(t.violation(ip("127.1.2.1"), &cfg), None);
        for i in 2..5 {
            t.add(ip(&format!("127.1.{i}.1")));
            t.add(ip(&format!("127.1.{i}.2")));
        }
        // 8 peers in 127.1/16 now.
        assert_eq!(
            t.violation(ip("127.1.9.1"), &cfg),
            Some(DiversityReason::Prefix16)
        );
        t.remove(ip("127.1.1.1"));
        assert_eq!(
            t.violation(ip("127.1.1.3"), &cfg),
            None,
            "removal frees the /24 slot"
        );
        assert_eq!(t.distinct_buckets(), 1);
    }

    #[test]
    fn ipv6_prefix48_and_fraction() {
        let cfg = DiversityConfig {
            max_per_prefix16: 100,
            ..DiversityConfig::default()
        };
        let mut t = DiversityTracker::new();
        for i in 0..4 {
            t.add(ip(&format!("2001:db8:1::{i}")));
        }
        assert_eq!(
            t.violation(ip("2001:db8:1::9"), &cfg),
            Some(DiversityReason::Prefix48)
        );
        assert_eq!(t.violation(ip("2001:db8:2::9"), &cfg), None);
        // 4 v6 peers in one /48 + 3 in distinct /16s = 7; an 8th in 10.0/16
        // (2 of 8 = 25 %) is fine, a second one there is not at 9 (3/9 > 25 %).
        for s in ["10.1.0.1", "10.2.0.1", "10.3.0.1"] {
            t.add(ip(s));
        }
        assert_eq!(t.violation(ip("10.0.0.1"), &cfg), None);
        t.add(ip("10.0.0.1"));
        t.add(ip("10.9.0.1"));
        assert_eq!(t.violation(ip("10.0.1.1"), &cfg), None, "2 of 10 = 20 %");
        t.add(ip("10.0.1.1"));
        assert_eq!(
            t.violation(ip("10.0.2.1"), &cfg),
            Some(DiversityReason::BucketFraction)
        );
        assert_eq!(t.distinct_buckets(), 6);
    }
}
