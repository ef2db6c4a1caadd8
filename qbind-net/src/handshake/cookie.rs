//! The stateless cookie (`docs/kemtls.md` "Cookie"): a responder answers a
//! `ClientHello` with `HMAC-SHA3-256(secret, ip || nonce || bucket || chain)`
//! and keeps nothing; only a `KeyExchange` that echoes a valid cookie makes it
//! do KEM work. A bounded replay set then refuses a second use of the same
//! nonce while its cookie is still valid.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use rand::RngCore;
use zeroize::Zeroizing;

use super::keys::{mac, tags_equal};
use crate::error::NetError;

/// Issues and checks cookies. Holds only a secret key.
pub struct CookieJar {
    secret: Zeroizing<[u8; 32]>,
    period_secs: u64,
}

fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl CookieJar {
    /// A jar with a fresh random secret; cookies are valid for one to two
    /// periods of `period_secs` (at least 1).
    #[must_use]
    pub fn new(period_secs: u64) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(secret.as_mut());
        Self::with_secret(*secret, period_secs)
    }

    /// A jar with a given secret (tests, or several listeners sharing one).
    #[must_use]
    pub fn with_secret(secret: [u8; 32], period_secs: u64) -> Self {
        CookieJar {
            secret: Zeroizing::new(secret),
            period_secs: period_secs.max(1),
        }
    }

    /// How long a cookie (and a replay-set entry) lives at most, in seconds.
    #[must_use]
    pub fn lifetime_secs(&self) -> u64 {
        2 * self.period_secs
    }

    fn compute(&self, ip: IpAddr, nonce: &[u8; 32], bucket: u64, chain_id: u64) -> [u8; 32] {
        mac(
            self.secret.as_ref(),
            &[
                b"qbind-cookie-v1",
                &ip_bytes(ip),
                nonce,
                &bucket.to_be_bytes(),
                &chain_id.to_be_bytes(),
            ],
        )
    }

    /// The cookie for a client at `ip` with `nonce`, at `now_secs` (any clock
    /// in seconds that the same jar uses for checking).
    #[must_use]
    pub fn issue(&self, ip: IpAddr, nonce: &[u8; 32], chain_id: u64, now_secs: u64) -> [u8; 32] {
        self.compute(ip, nonce, now_secs / self.period_secs, chain_id)
    }

    /// Check an echoed cookie against the current and the previous bucket.
    ///
    /// # Errors
    /// [`NetError::BadCookie`].
    pub fn check(
        &self,
        ip: IpAddr,
        nonce: &[u8; 32],
        chain_id: u64,
        now_secs: u64,
        cookie: &[u8; 32],
    ) -> Result<(), NetError> {
        let bucket = now_secs / self.period_secs;
        let ok_now = tags_equal(&self.compute(ip, nonce, bucket, chain_id), cookie);
        let ok_prev =
            bucket > 0 && tags_equal(&self.compute(ip, nonce, bucket - 1, chain_id), cookie);
        if ok_now | ok_prev {
            Ok(())
        } else {
            Err(NetError::BadCookie)
        }
    }
}

/// Client nonces of accepted `KeyExchange` messages, remembered for the cookie
/// lifetime.
///
/// Bound: at most `capacity` nonces. Anyone who can receive a cookie at
/// some address can insert nonces before authenticating, so a full set must
/// not refuse handshakes (that would lock every peer out): it forgets its
/// oldest nonce instead, in O(log n). Forgetting only lets that nonce's M2 be
/// replayed from its own address, which costs the responder one KEM
/// operation and cannot complete a handshake (the replayer lacks the
/// initiator's keys; `docs/kemtls.md` "Replay").
pub struct ReplayGuard {
    capacity: usize,
    lifetime_secs: u64,
    /// Nonce → time inserted; at most `capacity` entries.
    seen: BTreeMap<[u8; 32], u64>,
    /// The same nonces in insertion order (oldest first); same bound.
    order: VecDeque<([u8; 32], u64)>,
    evicted: u64,
}

impl ReplayGuard {
    /// A guard holding at most `capacity` nonces for `lifetime_secs` each.
    #[must_use]
    pub fn new(capacity: usize, lifetime_secs: u64) -> Self {
        ReplayGuard {
            capacity: capacity.max(1),
            lifetime_secs,
            seen: BTreeMap::new(),
            order: VecDeque::new(),
            evicted: 0,
        }
    }

    /// Record `nonce` at `now_secs`.
    ///
    /// # Errors
    /// [`NetError::Replay`] if it was seen within its lifetime. A full set
    /// forgets its oldest nonce rather than refuse.
    pub fn check_and_insert(&mut self, nonce: &[u8; 32], now_secs: u64) -> Result<(), NetError> {
        while let Some(&(n, t)) = self.order.front() {
            if t + self.lifetime_secs < now_secs {
                self.order.pop_front();
                self.seen.remove(&n);
            } else {
                break;
            }
        }
        if self.seen.contains_key(nonce) {
            return Err(NetError::Replay);
        }
        while self.seen.len() >= self.capacity {
            let Some((oldest, _)) = self.order.pop_front() else {
                break;
            };
            self.seen.remove(&oldest);
            self.evicted += 1;
        }
        self.seen.insert(*nonce, now_secs);
        self.order.push_back((*nonce, now_secs));
        Ok(())
    }

    /// Number of remembered nonces.
    #[must_use]
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Live nonces forgotten early because the set was full (a sign of a flood).
    #[must_use]
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Whether nothing is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_binds_ip_nonce_chain_and_time() {
        let jar = CookieJar::with_secret([1u8; 32], 10);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let c = jar.issue(ip, &[5u8; 32], 7, 100);
        assert!(jar.check(ip, &[5u8; 32], 7, 100, &c).is_ok());
        assert!(jar.check(ip, &[5u8; 32], 7, 115, &c).is_ok());
        assert!(jar.check(ip, &[5u8; 32], 7, 120, &c).is_err());
        assert!(jar.check(other, &[5u8; 32], 7, 100, &c).is_err());
        assert!(jar.check(ip, &[6u8; 32], 7, 100, &c).is_err());
        assert!(jar.check(ip, &[5u8; 32], 8, 100, &c).is_err());
        let other_jar = CookieJar::with_secret([2u8; 32], 10);
        assert!(other_jar.check(ip, &[5u8; 32], 7, 100, &c).is_err());
    }

    #[test]
    fn replay_guard_refuses_repeats_and_expires() {
        let mut g = ReplayGuard::new(2, 10);
        g.check_and_insert(&[1u8; 32], 0).unwrap();
        assert!(matches!(
            g.check_and_insert(&[1u8; 32], 5),
            Err(NetError::Replay)
        ));
        g.check_and_insert(&[2u8; 32], 5).unwrap();
        // After the lifetime the first nonce is forgotten.
        g.check_and_insert(&[3u8; 32], 11).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g.evicted(), 0);
        g.check_and_insert(&[1u8; 32], 12).unwrap();
    }

    /// Issue #17 finding 8: nonces inserted before authentication must not
    /// fill the set and lock out new handshakes.
    #[test]
    fn a_full_replay_set_forgets_its_oldest_nonce_instead_of_refusing() {
        let mut g = ReplayGuard::new(4, 60);
        for i in 0..1_000u32 {
            let mut n = [0u8; 32];
            n[..4].copy_from_slice(&i.to_be_bytes());
            g.check_and_insert(&n, 1).unwrap();
            assert!(g.len() <= 4);
        }
        g.check_and_insert(&[0xaa; 32], 1)
            .expect("an honest nonce is accepted while the set is full");
        assert!(matches!(
            g.check_and_insert(&[0xaa; 32], 2),
            Err(NetError::Replay)
        ));
        assert_eq!(g.len(), 4);
    }
}
