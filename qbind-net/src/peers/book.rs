//! The address book: where each validator can be dialled, learned from the
//! static bootstrap list or by peer exchange (spec §5.3), with per-address
//! failure counts and the next time a dial is allowed (backoff).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use qbind_core::types::ValidatorId;
use rand::Rng;

use super::backoff::BackoffConfig;

/// Where an address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrSource {
    /// Configured bootstrap peer (never replaced by discovery).
    Bootstrap,
    /// Learned by peer exchange.
    Discovered,
}

/// One validator's dial address.
#[derive(Clone, Debug)]
pub struct AddrEntry {
    /// The address.
    pub addr: SocketAddr,
    /// Its origin.
    pub source: AddrSource,
    /// Consecutive failed dials or evictions.
    pub failures: u32,
    /// No dial before this instant.
    pub next_attempt: Option<Instant>,
}

/// Addresses of validators, at most `max_discovered` of them discovered.
#[derive(Debug)]
pub struct AddressBook {
    entries: BTreeMap<ValidatorId, AddrEntry>,
    max_discovered: usize,
}

impl AddressBook {
    /// An empty book.
    #[must_use]
    pub fn new(max_discovered: usize) -> Self {
        AddressBook {
            entries: BTreeMap::new(),
            max_discovered,
        }
    }

    /// Add or replace a bootstrap address.
    pub fn add_bootstrap(&mut self, id: ValidatorId, addr: SocketAddr) {
        self.entries.insert(
            id,
            AddrEntry {
                addr,
                source: AddrSource::Bootstrap,
                failures: 0,
                next_attempt: None,
            },
        );
    }

    /// Add a discovered address if `id` has none yet and there is room.
    /// Returns whether it was added.
    pub fn add_discovered(&mut self, id: ValidatorId, addr: SocketAddr) -> bool {
        if self.entries.contains_key(&id) || self.discovered() >= self.max_discovered {
            return false;
        }
        self.entries.insert(
            id,
            AddrEntry {
                addr,
                source: AddrSource::Discovered,
                failures: 0,
                next_attempt: None,
            },
        );
        true
    }

    /// Number of discovered entries.
    #[must_use]
    pub fn discovered(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.source == AddrSource::Discovered)
            .count()
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the book is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of `id`.
    #[must_use]
    pub fn get(&self, id: ValidatorId) -> Option<&AddrEntry> {
        self.entries.get(&id)
    }

    /// All entries in id order.
    pub fn iter(&self) -> impl Iterator<Item = (ValidatorId, &AddrEntry)> {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    /// Forget `id` (it left the validator set).
    pub fn remove(&mut self, id: ValidatorId) {
        self.entries.remove(&id);
    }

    /// A dial or connection to `id` failed: back off.
    pub fn record_failure<R: Rng + ?Sized>(
        &mut self,
        id: ValidatorId,
        now: Instant,
        backoff: &BackoffConfig,
        rng: &mut R,
    ) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.failures = e.failures.saturating_add(1);
            e.next_attempt = Some(now + backoff.delay(e.failures, rng));
        }
    }

    /// A connection to `id` was established.
    pub fn record_success(&mut self, id: ValidatorId) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.failures = 0;
            e.next_attempt = None;
        }
    }

    /// Validators that may be dialled at `now`, excluding `skip`.
    pub fn dialable(
        &self,
        now: Instant,
        skip: impl Fn(ValidatorId) -> bool,
    ) -> Vec<(ValidatorId, SocketAddr)> {
        self.entries
            .iter()
            .filter(|(id, e)| !skip(**id) && e.next_attempt.is_none_or(|t| t <= now))
            .map(|(id, e)| (*id, e.addr))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::time::Duration;

    #[test]
    fn discovery_is_bounded_and_backoff_delays_dials() {
        let mut b = AddressBook::new(2);
        let a = |p: u16| -> SocketAddr { SocketAddr::from(([127, 0, 0, 1], p)) };
        b.add_bootstrap(ValidatorId(1), a(1));
        assert!(
            !b.add_discovered(ValidatorId(1), a(9)),
            "bootstrap entries are kept"
        );
        assert!(b.add_discovered(ValidatorId(2), a(2)));
        assert!(b.add_discovered(ValidatorId(3), a(3)));
        assert!(
            !b.add_discovered(ValidatorId(4), a(4)),
            "at most 2 discovered"
        );
        let now = Instant::now();
        let cfg = BackoffConfig {
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
            jitter: 0.0,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        b.record_failure(ValidatorId(2), now, &cfg, &mut rng);
        let ids: Vec<u32> = b
            .dialable(now, |id| id == ValidatorId(3))
            .iter()
            .map(|(i, _)| i.0)
            .collect();
        assert_eq!(ids, vec![1]);
        let later: Vec<u32> = b
            .dialable(now + Duration::from_secs(11), |_| false)
            .iter()
            .map(|(i, _)| i.0)
            .collect();
        assert_eq!(later, vec![1, 2, 3]);
        b.record_success(ValidatorId(2));
        assert_eq!(b.get(ValidatorId(2)).unwrap().failures, 0);
    }
}
