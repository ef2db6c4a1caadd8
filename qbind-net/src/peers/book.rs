//! The address book: where each validator can be dialled (spec §5.3), with
//! per-address failure counts and the next time a dial is allowed (backoff).
//!
//! It decides which claims about a validator's address to believe, so that
//! one Byzantine peer cannot eclipse a node by announcing bogus addresses:
//!
//! - An address is *proven* when this node dialled it and completed a KEMTLS
//!   handshake with that validator's key ([`AddrSource::Verified`]), or when
//!   the validator announced it over its own authenticated session
//!   ([`AddrSource::SelfAnnounced`]). Proven addresses and the operator's
//!   bootstrap list are never displaced by hearsay.
//! - Hearsay ([`AddrSource::Discovered`]: one peer's claim about another
//!   validator) fills at most one slot per reporting peer and validator; a
//!   reporter's later claim replaces its own earlier one without clearing the
//!   failures, and another reporter may take a slot whose address failed
//!   [`HEARSAY_REPLACE_AFTER`] times. A validator has at most
//!   [`MAX_CANDIDATES_PER_VALIDATOR`] candidate addresses; the dialler tries
//!   the most trusted one not in backoff, so a bogus address only costs one
//!   backed-off dial.
//! - Announced addresses that are not globally routable (loopback, private,
//!   link-local, multicast, unspecified, broadcast, port 0) are refused unless
//!   the book is for a local network ([`AddressBook::local_network`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use qbind_core::types::ValidatorId;
use rand::Rng;

use super::backoff::BackoffConfig;

/// Most candidate addresses kept per validator (bootstrap, proven and
/// hearsay together). Bounds the per-peer state an announcer can create.
pub const MAX_CANDIDATES_PER_VALIDATOR: usize = 4;

/// Failed dials after which a hearsay address may be replaced by another
/// reporter's claim.
pub const HEARSAY_REPLACE_AFTER: u32 = 2;

/// Where an address came from, least trusted first (the derived order is
/// the order of trust).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AddrSource {
    /// Hearsay: another peer said the validator is there.
    Discovered,
    /// Configured bootstrap peer (never removed by discovery).
    Bootstrap,
    /// The validator announced it over its own authenticated session.
    SelfAnnounced,
    /// This node dialled it and the KEMTLS handshake authenticated the validator.
    Verified,
}

/// Why an announced address was not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrRefusal {
    /// Not globally routable and the network is not local.
    #[error("address is not globally routable")]
    NotRoutable,
    /// The validator already has this address.
    #[error("address already known")]
    Known,
    /// No free or replaceable slot for this validator (or too many
    /// validators known only by hearsay).
    #[error("no room for another candidate address")]
    Full,
}

/// One candidate dial address of a validator.
#[derive(Clone, Debug)]
pub struct AddrEntry {
    /// The address.
    pub addr: SocketAddr,
    /// Its origin.
    pub source: AddrSource,
    /// The peer that reported it (hearsay only).
    pub reporter: Option<ValidatorId>,
    /// Consecutive failed dials or evictions.
    pub failures: u32,
    /// No dial before this instant.
    pub next_attempt: Option<Instant>,
    seq: u64,
}

impl AddrEntry {
    /// Dial preference: most trusted, then fewest failures, then oldest.
    fn rank(&self) -> (std::cmp::Reverse<AddrSource>, u32, u64) {
        (std::cmp::Reverse(self.source), self.failures, self.seq)
    }

    fn trusted(&self) -> bool {
        self.source != AddrSource::Discovered
    }
}

/// Candidate addresses of validators.
///
/// Bounds: at most [`MAX_CANDIDATES_PER_VALIDATOR`] per validator, and at
/// most `max_discovered` validators known only by hearsay. Validators with
/// a bootstrap or proven address are bounded by the caller (the transport
/// only admits members of the validator set).
#[derive(Debug)]
pub struct AddressBook {
    entries: BTreeMap<ValidatorId, Vec<AddrEntry>>,
    max_discovered: usize,
    local_network: bool,
    next_seq: u64,
}

/// Whether `addr` can be dialled across the Internet: not loopback, private
/// (RFC 1918, IPv6 unique-local), link-local, multicast, unspecified,
/// broadcast or in 0.0.0.0/8, and not port 0. IPv4-mapped IPv6 addresses are
/// judged as IPv4.
#[must_use]
pub fn is_routable(addr: SocketAddr) -> bool {
    addr.port() != 0 && ip_is_routable(addr.ip())
}

fn ipv4_is_routable(a: Ipv4Addr) -> bool {
    !(a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_unspecified()
        || a.is_broadcast()
        || a.octets()[0] == 0)
}

fn ipv6_is_routable(a: Ipv6Addr) -> bool {
    if let Some(v4) = a.to_ipv4_mapped() {
        return ipv4_is_routable(v4);
    }
    let first = a.segments()[0];
    !(a.is_loopback()
        || a.is_unspecified()
        || a.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0) // deprecated site-local fec0::/10
}

fn ip_is_routable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => ipv4_is_routable(a),
        IpAddr::V6(a) => ipv6_is_routable(a),
    }
}

impl AddressBook {
    /// An empty book for a public network (announced addresses must be
    /// routable), with at most `max_discovered` validators known only by hearsay.
    #[must_use]
    pub fn new(max_discovered: usize) -> Self {
        AddressBook {
            entries: BTreeMap::new(),
            max_discovered,
            local_network: false,
            next_seq: 0,
        }
    }

    /// Accept non-routable announced addresses too (a loopback or private
    /// DevNet, tests).
    #[must_use]
    pub fn local_network(mut self, local: bool) -> Self {
        self.local_network = local;
        self
    }

    fn acceptable(&self, addr: SocketAddr) -> bool {
        if self.local_network {
            addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast()
        } else {
            is_routable(addr)
        }
    }

    fn entry(
        &mut self,
        addr: SocketAddr,
        source: AddrSource,
        reporter: Option<ValidatorId>,
    ) -> AddrEntry {
        self.next_seq += 1;
        AddrEntry {
            addr,
            source,
            reporter,
            failures: 0,
            next_attempt: None,
            seq: self.next_seq,
        }
    }

    fn hearsay_only_ids(&self) -> usize {
        self.entries
            .values()
            .filter(|v| !v.iter().any(AddrEntry::trusted))
            .count()
    }

    /// Insert a trusted candidate, evicting the least trusted, most failed
    /// non-bootstrap candidate if the validator is full.
    fn insert_trusted(&mut self, id: ValidatorId, new: AddrEntry) -> Result<(), AddrRefusal> {
        let list = self.entries.entry(id).or_default();
        if list.len() >= MAX_CANDIDATES_PER_VALIDATOR {
            let victim = list
                .iter()
                .enumerate()
                .filter(|(_, e)| e.source != AddrSource::Bootstrap && e.source <= new.source)
                .min_by_key(|(_, e)| (e.source, std::cmp::Reverse(e.failures), e.seq))
                .map(|(i, _)| i)
                .ok_or(AddrRefusal::Full)?;
            list.swap_remove(victim);
        }
        list.push(new);
        Ok(())
    }

    /// Add or replace the bootstrap address of `id` (operator configuration:
    /// accepted whatever its routability).
    pub fn add_bootstrap(&mut self, id: ValidatorId, addr: SocketAddr) {
        let new = self.entry(addr, AddrSource::Bootstrap, None);
        let list = self.entries.entry(id).or_default();
        list.retain(|e| e.source != AddrSource::Bootstrap && e.addr != addr);
        if list.len() >= MAX_CANDIDATES_PER_VALIDATOR
            && let Some(worst) = list
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.source, std::cmp::Reverse(e.failures), e.seq))
                .map(|(i, _)| i)
        {
            list.swap_remove(worst);
        }
        list.push(new);
    }

    /// `id` announced `addr` as its own over its authenticated session. It
    /// replaces `id`'s previous self-announcement and outranks hearsay.
    ///
    /// # Errors
    /// [`AddrRefusal::NotRoutable`], [`AddrRefusal::Known`] (already a
    /// candidate: it is then marked self-announced if it was hearsay),
    /// [`AddrRefusal::Full`].
    pub fn add_self_announced(
        &mut self,
        id: ValidatorId,
        addr: SocketAddr,
    ) -> Result<(), AddrRefusal> {
        if !self.acceptable(addr) {
            return Err(AddrRefusal::NotRoutable);
        }
        if let Some(list) = self.entries.get_mut(&id) {
            if let Some(e) = list.iter_mut().find(|e| e.addr == addr) {
                if e.source == AddrSource::Discovered {
                    e.source = AddrSource::SelfAnnounced;
                    e.reporter = None;
                }
                return Err(AddrRefusal::Known);
            }
            list.retain(|e| e.source != AddrSource::SelfAnnounced);
        }
        let new = self.entry(addr, AddrSource::SelfAnnounced, None);
        self.insert_trusted(id, new)
    }

    /// `reporter` (or an unnamed source if `None`) said `id` is at `addr`.
    ///
    /// # Errors
    /// [`AddrRefusal::NotRoutable`], [`AddrRefusal::Known`], [`AddrRefusal::Full`].
    pub fn add_hearsay(
        &mut self,
        id: ValidatorId,
        addr: SocketAddr,
        reporter: Option<ValidatorId>,
    ) -> Result<(), AddrRefusal> {
        if !self.acceptable(addr) {
            return Err(AddrRefusal::NotRoutable);
        }
        if !self.entries.contains_key(&id) && self.hearsay_only_ids() >= self.max_discovered {
            return Err(AddrRefusal::Full);
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let list = self.entries.entry(id).or_default();
        if list.iter().any(|e| e.addr == addr) {
            return Err(AddrRefusal::Known);
        }
        // A reporter holds one slot per validator; re-announcing moves it
        // but keeps its failures, so a liar cannot launder its record.
        if reporter.is_some()
            && let Some(e) = list
                .iter_mut()
                .find(|e| e.source == AddrSource::Discovered && e.reporter == reporter)
        {
            e.addr = addr;
            e.seq = seq;
            return Ok(());
        }
        if list.len() >= MAX_CANDIDATES_PER_VALIDATOR {
            let victim = list
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    e.source == AddrSource::Discovered && e.failures >= HEARSAY_REPLACE_AFTER
                })
                .max_by_key(|(_, e)| (e.failures, std::cmp::Reverse(e.seq)))
                .map(|(i, _)| i)
                .ok_or(AddrRefusal::Full)?;
            list.swap_remove(victim);
        }
        list.push(AddrEntry {
            addr,
            source: AddrSource::Discovered,
            reporter,
            failures: 0,
            next_attempt: None,
            seq,
        });
        Ok(())
    }

    /// Add hearsay from an unnamed source ([`AddressBook::add_hearsay`]
    /// with no reporter). Returns whether it was added.
    pub fn add_discovered(&mut self, id: ValidatorId, addr: SocketAddr) -> bool {
        self.add_hearsay(id, addr, None).is_ok()
    }

    /// This node dialled `addr` and authenticated `id` there: the address is
    /// proven (it outranks every other candidate and is never replaced by hearsay).
    pub fn record_verified(&mut self, id: ValidatorId, addr: SocketAddr) {
        let existing = self
            .entries
            .get_mut(&id)
            .and_then(|l| l.iter_mut().find(|e| e.addr == addr));
        match existing {
            Some(e) => {
                e.source = AddrSource::Verified;
                e.reporter = None;
                e.failures = 0;
                e.next_attempt = None;
            }
            None => {
                let new = self.entry(addr, AddrSource::Verified, None);
                let _ = self.insert_trusted(id, new);
            }
        }
    }

    /// Number of hearsay candidates.
    #[must_use]
    pub fn discovered(&self) -> usize {
        self.entries
            .values()
            .flatten()
            .filter(|e| e.source == AddrSource::Discovered)
            .count()
    }

    /// Number of validators with at least one address.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the book is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The preferred candidate of `id` (most trusted, fewest failures).
    #[must_use]
    pub fn get(&self, id: ValidatorId) -> Option<&AddrEntry> {
        self.entries
            .get(&id)
            .and_then(|l| l.iter().min_by_key(|e| e.rank()))
    }

    /// All candidates of `id`, most preferred first.
    #[must_use]
    pub fn candidates(&self, id: ValidatorId) -> Vec<&AddrEntry> {
        let mut v: Vec<&AddrEntry> = self.entries.get(&id).into_iter().flatten().collect();
        v.sort_by_key(|e| e.rank());
        v
    }

    /// The preferred candidate of every validator, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (ValidatorId, &AddrEntry)> {
        self.entries
            .iter()
            .filter_map(|(id, l)| l.iter().min_by_key(|e| e.rank()).map(|e| (*id, e)))
    }

    /// Every candidate, in id order then preference order.
    pub fn iter_all(&self) -> impl Iterator<Item = (ValidatorId, &AddrEntry)> {
        self.entries
            .keys()
            .flat_map(move |id| self.candidates(*id).into_iter().map(move |e| (*id, e)))
    }

    /// The best address of each validator to pass on in peer exchange:
    /// bootstrap or proven ones only, never hearsay (a node does not relay
    /// claims it could not check).
    pub fn shareable(&self) -> impl Iterator<Item = (ValidatorId, SocketAddr)> + '_ {
        self.entries.iter().filter_map(|(id, l)| {
            l.iter()
                .filter(|e| e.trusted())
                .min_by_key(|e| e.rank())
                .map(|e| (*id, e.addr))
        })
    }

    /// Forget `id` (it left the validator set).
    pub fn remove(&mut self, id: ValidatorId) {
        self.entries.remove(&id);
    }

    fn fail(
        e: &mut AddrEntry,
        now: Instant,
        backoff: &BackoffConfig,
        rng: &mut (impl Rng + ?Sized),
    ) {
        e.failures = e.failures.saturating_add(1);
        e.next_attempt = Some(now + backoff.delay(e.failures, rng));
    }

    /// A connection to `id` failed (not a dial of a known address, e.g. an
    /// inbound connection was evicted): back off its preferred candidate.
    pub fn record_failure<R: Rng + ?Sized>(
        &mut self,
        id: ValidatorId,
        now: Instant,
        backoff: &BackoffConfig,
        rng: &mut R,
    ) {
        if let Some(e) = self
            .entries
            .get_mut(&id)
            .and_then(|l| l.iter_mut().min_by_key(|e| e.rank()))
        {
            Self::fail(e, now, backoff, rng);
        }
    }

    /// Dialling `id` at `addr` failed (or the connection made there failed): back off that address.
    pub fn record_dial_failure<R: Rng + ?Sized>(
        &mut self,
        id: ValidatorId,
        addr: SocketAddr,
        now: Instant,
        backoff: &BackoffConfig,
        rng: &mut R,
    ) {
        if let Some(e) = self
            .entries
            .get_mut(&id)
            .and_then(|l| l.iter_mut().find(|e| e.addr == addr))
        {
            Self::fail(e, now, backoff, rng);
        }
    }

    /// A connection to `id` was established: reset its preferred candidate.
    pub fn record_success(&mut self, id: ValidatorId) {
        if let Some(e) = self
            .entries
            .get_mut(&id)
            .and_then(|l| l.iter_mut().min_by_key(|e| e.rank()))
        {
            e.failures = 0;
            e.next_attempt = None;
        }
    }

    /// For each validator not skipped, its preferred candidate that may be
    /// dialled at `now` (most trusted, then fewest failures), in id order.
    pub fn dialable(
        &self,
        now: Instant,
        skip: impl Fn(ValidatorId) -> bool,
    ) -> Vec<(ValidatorId, SocketAddr)> {
        self.entries
            .iter()
            .filter(|(id, _)| !skip(**id))
            .filter_map(|(id, l)| {
                l.iter()
                    .filter(|e| e.next_attempt.is_none_or(|t| t <= now))
                    .min_by_key(|e| e.rank())
                    .map(|e| (*id, e.addr))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::time::Duration;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 1], p))
    }

    fn no_jitter() -> BackoffConfig {
        BackoffConfig {
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
            jitter: 0.0,
        }
    }

    #[test]
    fn discovery_is_bounded_and_backoff_delays_dials() {
        let mut b = AddressBook::new(2);
        b.add_bootstrap(ValidatorId(1), a(1));
        assert!(b.add_discovered(ValidatorId(2), a(2)));
        assert!(b.add_discovered(ValidatorId(3), a(3)));
        assert!(
            !b.add_discovered(ValidatorId(4), a(4)),
            "at most 2 validators known only by hearsay"
        );
        let now = Instant::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        b.record_failure(ValidatorId(2), now, &no_jitter(), &mut rng);
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

    /// Issue #22 finding 5 as reproduced: a bogus address for validator 2,
    /// announced first, kept after 1,000 failures while the real one was refused.
    #[test]
    fn failed_hearsay_does_not_lock_out_the_real_address() {
        let mut b = AddressBook::new(100);
        let (bogus, real) = (a(6666), a(7777));
        assert!(b.add_discovered(ValidatorId(2), bogus));
        let now = Instant::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..1_000 {
            b.record_failure(ValidatorId(2), now, &no_jitter(), &mut rng);
        }
        assert!(
            b.add_discovered(ValidatorId(2), real),
            "real address refused"
        );
        assert_eq!(b.dialable(now, |_| false), vec![(ValidatorId(2), real)]);
    }

    #[test]
    fn proven_addresses_win_over_hearsay() {
        let mut b = AddressBook::new(100);
        let liar = Some(ValidatorId(9));
        b.add_hearsay(ValidatorId(2), a(1), liar).unwrap();
        b.add_self_announced(ValidatorId(2), a(2)).unwrap();
        assert_eq!(b.get(ValidatorId(2)).unwrap().addr, a(2));
        b.record_verified(ValidatorId(2), a(2));
        assert_eq!(b.get(ValidatorId(2)).unwrap().source, AddrSource::Verified);
        // The liar re-announces: it moves its own slot, never the proven one.
        for p in 10..1_000 {
            let _ = b.add_hearsay(ValidatorId(2), a(p), liar);
        }
        assert_eq!(b.get(ValidatorId(2)).unwrap().addr, a(2));
        assert_eq!(b.candidates(ValidatorId(2)).len(), 2);
        // Only proven or bootstrap addresses are passed on.
        assert_eq!(
            b.shareable().collect::<Vec<_>>(),
            vec![(ValidatorId(2), a(2))]
        );
        // A failed proven address still ranks first once its backoff is over,
        // but hearsay is dialled while it backs off.
        let now = Instant::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        b.record_dial_failure(ValidatorId(2), a(2), now, &no_jitter(), &mut rng);
        assert_ne!(b.dialable(now, |_| false)[0].1, a(2));
        assert_eq!(
            b.dialable(now + Duration::from_secs(11), |_| false)[0].1,
            a(2)
        );
    }

    #[test]
    fn candidates_per_validator_are_bounded_and_failed_hearsay_is_replaced() {
        let mut b = AddressBook::new(100);
        let id = ValidatorId(2);
        let now = Instant::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        // Many reporters, many claims: never more than the bound.
        for r in 0..200u32 {
            let _ = b.add_hearsay(id, a(r as u16 + 1), Some(ValidatorId(100 + r)));
            assert!(b.candidates(id).len() <= MAX_CANDIDATES_PER_VALIDATOR);
        }
        assert_eq!(b.candidates(id).len(), MAX_CANDIDATES_PER_VALIDATOR);
        assert_eq!(
            b.add_hearsay(id, a(5000), Some(ValidatorId(1))),
            Err(AddrRefusal::Full),
            "untried hearsay is not evicted by more hearsay"
        );
        // Repeated failures make a slot replaceable.
        let first = b.candidates(id)[0].addr;
        for _ in 0..HEARSAY_REPLACE_AFTER {
            b.record_dial_failure(id, first, now, &no_jitter(), &mut rng);
        }
        b.add_hearsay(id, a(5000), Some(ValidatorId(1))).unwrap();
        assert!(b.candidates(id).iter().all(|e| e.addr != first));
        // A liar moving its own slot keeps the failures it earned.
        let liar = b.candidates(id)[0].reporter;
        let liar_addr = b.candidates(id)[0].addr;
        b.record_dial_failure(id, liar_addr, now, &no_jitter(), &mut rng);
        b.add_hearsay(id, a(6000), liar).unwrap();
        let moved = b
            .candidates(id)
            .into_iter()
            .find(|e| e.addr == a(6000))
            .unwrap();
        assert_eq!(moved.failures, 1);
        // A self-announcement displaces hearsay even when full; the bound holds.
        b.add_self_announced(id, a(7000)).unwrap();
        assert_eq!(b.candidates(id).len(), MAX_CANDIDATES_PER_VALIDATOR);
        assert_eq!(b.get(id).unwrap().addr, a(7000));
    }

    #[test]
    fn non_routable_announcements_are_refused_unless_local() {
        let mut public = AddressBook::new(100);
        let mut local = AddressBook::new(100).local_network(true);
        for s in [
            "127.0.0.1:9000",
            "10.1.2.3:9000",
            "172.16.0.1:9000",
            "192.168.1.1:9000",
            "169.254.1.1:9000",
            "224.0.0.1:9000",
            "0.0.0.0:9000",
            "255.255.255.255:9000",
            "198.51.100.1:0",
            "[::1]:9000",
            "[::]:9000",
            "[fe80::1]:9000",
            "[fd00::1]:9000",
            "[ff02::1]:9000",
            "[::ffff:10.0.0.1]:9000",
        ] {
            let addr: SocketAddr = s.parse().unwrap();
            assert!(!is_routable(addr), "{s}");
            assert_eq!(
                public.add_hearsay(ValidatorId(1), addr, None),
                Err(AddrRefusal::NotRoutable),
                "{s}"
            );
            assert_eq!(
                public.add_self_announced(ValidatorId(1), addr),
                Err(AddrRefusal::NotRoutable),
                "{s}"
            );
        }
        assert!(public.is_empty());
        assert!(is_routable("198.51.100.1:9000".parse().unwrap()));
        assert!(is_routable("[2001:db8::1]:9000".parse().unwrap()));
        assert!(local.add_discovered(ValidatorId(1), "127.0.0.1:9000".parse().unwrap()));
        assert!(!local.add_discovered(ValidatorId(2), "127.0.0.1:0".parse().unwrap()));
    }
}
