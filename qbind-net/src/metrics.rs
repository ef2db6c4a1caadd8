//! P2P metrics (runbook §7.3 plus `qbind_p2p_handshake_failures_total` and
//! `qbind_p2p_connections_total`): plain atomic counters and gauges, shared
//! by reference. The node reads them at scrape time into its one Prometheus
//! registry, under the names given on each field.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::NetError;

/// Why a handshake failed, as the `reason` label of
/// `qbind_p2p_handshake_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Missing, forged or expired cookie.
    Cookie,
    /// Replayed key exchange.
    Replay,
    /// Confirmation, identity decryption or record authentication failed.
    Auth,
    /// Identity not in the allowed set.
    UnknownPeer,
    /// Malformed, oversized or truncated message; wrong version or chain.
    Malformed,
    /// Did not finish in time.
    Timeout,
    /// Per-IP rate limit or pending-handshake limit.
    RateLimited,
    /// Socket error or closed connection.
    Io,
}

impl HandshakeFailure {
    /// Every reason, in label order.
    pub const ALL: [HandshakeFailure; 8] = [
        HandshakeFailure::Cookie,
        HandshakeFailure::Replay,
        HandshakeFailure::Auth,
        HandshakeFailure::UnknownPeer,
        HandshakeFailure::Malformed,
        HandshakeFailure::Timeout,
        HandshakeFailure::RateLimited,
        HandshakeFailure::Io,
    ];

    /// The label value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            HandshakeFailure::Cookie => "cookie",
            HandshakeFailure::Replay => "replay",
            HandshakeFailure::Auth => "auth",
            HandshakeFailure::UnknownPeer => "unknown_peer",
            HandshakeFailure::Malformed => "malformed",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::RateLimited => "rate_limited",
            HandshakeFailure::Io => "io",
        }
    }

    /// Classify an error.
    #[must_use]
    pub fn of(e: &NetError) -> Self {
        match e {
            NetError::BadCookie => HandshakeFailure::Cookie,
            NetError::Replay => HandshakeFailure::Replay,
            NetError::AuthenticationFailed | NetError::CounterExhausted => HandshakeFailure::Auth,
            NetError::UnknownPeer => HandshakeFailure::UnknownPeer,
            NetError::Timeout => HandshakeFailure::Timeout,
            NetError::RateLimited => HandshakeFailure::RateLimited,
            NetError::Io(_) | NetError::Closed => HandshakeFailure::Io,
            _ => HandshakeFailure::Malformed,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a peer was refused by the diversity rules (label of
/// `qbind_p2p_peer_rejected_diversity_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiversityReason {
    /// Too many peers in the IPv4 /24.
    Prefix24,
    /// Too many peers in the IPv4 /16.
    Prefix16,
    /// Too many peers in the IPv6 /48.
    Prefix48,
    /// One bucket would exceed its share of all peers.
    BucketFraction,
}

impl DiversityReason {
    /// Every reason, in label order.
    pub const ALL: [DiversityReason; 4] = [
        DiversityReason::Prefix24,
        DiversityReason::Prefix16,
        DiversityReason::Prefix48,
        DiversityReason::BucketFraction,
    ];

    /// The label value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            DiversityReason::Prefix24 => "prefix24",
            DiversityReason::Prefix16 => "prefix16",
            DiversityReason::Prefix48 => "prefix48",
            DiversityReason::BucketFraction => "bucket_fraction",
        }
    }
}

/// All P2P counters and gauges of one node.
#[derive(Debug, Default)]
pub struct NetMetrics {
    /// Gauge `qbind_p2p_outbound_peers`.
    pub outbound_peers: AtomicU64,
    /// Gauge `qbind_p2p_inbound_peers`: inbound connections of validators
    /// (followers are counted in `follower_peers`).
    pub inbound_peers: AtomicU64,
    /// Gauge `qbind_p2p_follower_peers`: connected followers (authenticated
    /// non-validators, always inbound).
    pub follower_peers: AtomicU64,
    /// Gauge `qbind_p2p_known_peers`: addresses in the address book.
    pub known_peers: AtomicU64,
    /// Gauge `qbind_p2p_diversity_distinct_buckets`: distinct /16 (v4) or /48 (v6) buckets among connected peers.
    pub diversity_distinct_buckets: AtomicU64,
    /// `qbind_p2p_peer_rejected_diversity_total{reason}`, indexed as [`DiversityReason::ALL`].
    pub rejected_diversity: [AtomicU64; 4],
    /// `qbind_p2p_peer_evicted_total{reason="liveness"}`.
    pub evicted_liveness: AtomicU64,
    /// `qbind_p2p_heartbeat_failed_total`: heartbeats not answered in time.
    pub heartbeat_failed: AtomicU64,
    /// `qbind_p2p_handshake_failures_total{reason}`, indexed as [`HandshakeFailure::ALL`].
    pub handshake_failures: [AtomicU64; 8],
    /// `qbind_p2p_connections_total{direction="inbound"}`: authenticated inbound connections.
    pub connections_inbound: AtomicU64,
    /// `qbind_p2p_connections_total{direction="outbound"}`: authenticated outbound connections.
    pub connections_outbound: AtomicU64,
    /// `qbind_p2p_send_queue_full_total`: messages dropped on a full per-peer queue.
    pub send_queue_full: AtomicU64,
    /// `qbind_p2p_frames_rejected_total`: established connections closed for a bad frame or record.
    pub frames_rejected: AtomicU64,
    /// `qbind_p2p_dial_attempts_total`: outbound dials started (first connections and reconnections).
    pub dial_attempts: AtomicU64,
    /// `qbind_p2p_follower_refused_total`: authenticated followers turned
    /// away because `max_follower_inbound` of them were connected.
    pub follower_refused: AtomicU64,
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl NetMetrics {
    /// Count a failed handshake.
    pub fn handshake_failed(&self, e: &NetError) {
        self.handshake_failures[HandshakeFailure::of(e).index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Failed handshakes with this reason so far.
    #[must_use]
    pub fn handshake_failures_of(&self, r: HandshakeFailure) -> u64 {
        get(&self.handshake_failures[r.index()])
    }

    /// Count a diversity rejection.
    pub fn diversity_rejected(&self, r: DiversityReason) {
        self.rejected_diversity[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Diversity rejections with this reason so far.
    #[must_use]
    pub fn diversity_rejections_of(&self, r: DiversityReason) -> u64 {
        get(&self.rejected_diversity[r as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_by_reason() {
        let m = NetMetrics::default();
        m.handshake_failed(&NetError::BadCookie);
        m.handshake_failed(&NetError::BadCookie);
        m.handshake_failed(&NetError::Timeout);
        m.diversity_rejected(DiversityReason::Prefix24);
        assert_eq!(m.handshake_failures_of(HandshakeFailure::Cookie), 2);
        assert_eq!(m.handshake_failures_of(HandshakeFailure::Timeout), 1);
        assert_eq!(m.handshake_failures_of(HandshakeFailure::Io), 0);
        assert_eq!(m.diversity_rejections_of(DiversityReason::Prefix24), 1);
        assert_eq!(m.diversity_rejections_of(DiversityReason::Prefix16), 0);
    }
}
