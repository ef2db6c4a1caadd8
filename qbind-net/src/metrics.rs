//! P2P metrics (runbook §7.3 plus `qbind_p2p_handshake_failures_total` and
//! `qbind_p2p_connections_total`): plain atomic counters and gauges, rendered
//! in the Prometheus text exposition format by [`NetMetrics::render_prometheus`].

use std::fmt::Write as _;
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
    /// Gauge `qbind_p2p_inbound_peers`.
    pub inbound_peers: AtomicU64,
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

    /// The Prometheus text exposition of every metric.
    #[must_use]
    pub fn render_prometheus(&self) -> String {
        let mut s = String::new();
        let mut one = |name: &str, kind: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(s, "{name}{labels} {v}");
            }
        };
        one(
            "qbind_p2p_outbound_peers",
            "gauge",
            "Current outbound peer count.",
            &[("", get(&self.outbound_peers))],
        );
        one(
            "qbind_p2p_inbound_peers",
            "gauge",
            "Current inbound peer count.",
            &[("", get(&self.inbound_peers))],
        );
        one(
            "qbind_p2p_known_peers",
            "gauge",
            "Total known peer addresses.",
            &[("", get(&self.known_peers))],
        );
        let div: Vec<(String, u64)> = DiversityReason::ALL
            .iter()
            .map(|r| {
                (
                    format!("{{reason=\"{}\"}}", r.label()),
                    self.diversity_rejections_of(*r),
                )
            })
            .collect();
        let div: Vec<(&str, u64)> = div.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        one(
            "qbind_p2p_peer_rejected_diversity_total",
            "counter",
            "Peers rejected by diversity limits.",
            &div,
        );
        one(
            "qbind_p2p_peer_evicted_total",
            "counter",
            "Peers evicted.",
            &[("{reason=\"liveness\"}", get(&self.evicted_liveness))],
        );
        one(
            "qbind_p2p_heartbeat_failed_total",
            "counter",
            "Heartbeats not answered in time.",
            &[("", get(&self.heartbeat_failed))],
        );
        one(
            "qbind_p2p_diversity_distinct_buckets",
            "gauge",
            "Distinct network buckets among connected peers.",
            &[("", get(&self.diversity_distinct_buckets))],
        );
        let hs: Vec<(String, u64)> = HandshakeFailure::ALL
            .iter()
            .map(|r| {
                (
                    format!("{{reason=\"{}\"}}", r.label()),
                    self.handshake_failures_of(*r),
                )
            })
            .collect();
        let hs: Vec<(&str, u64)> = hs.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        one(
            "qbind_p2p_handshake_failures_total",
            "counter",
            "Failed KEMTLS handshakes.",
            &hs,
        );
        one(
            "qbind_p2p_connections_total",
            "counter",
            "Authenticated connections established.",
            &[
                ("{direction=\"inbound\"}", get(&self.connections_inbound)),
                ("{direction=\"outbound\"}", get(&self.connections_outbound)),
            ],
        );
        one(
            "qbind_p2p_send_queue_full_total",
            "counter",
            "Messages dropped on a full per-peer send queue.",
            &[("", get(&self.send_queue_full))],
        );
        one(
            "qbind_p2p_frames_rejected_total",
            "counter",
            "Connections closed for a malformed, oversized or unauthenticated frame.",
            &[("", get(&self.frames_rejected))],
        );
        one(
            "qbind_p2p_dial_attempts_total",
            "counter",
            "Outbound connection attempts.",
            &[("", get(&self.dial_attempts))],
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_runbook_metric_with_values() {
        let m = NetMetrics::default();
        m.outbound_peers.store(3, Ordering::Relaxed);
        m.handshake_failed(&NetError::BadCookie);
        m.handshake_failed(&NetError::BadCookie);
        m.diversity_rejected(DiversityReason::Prefix24);
        let text = m.render_prometheus();
        for needle in [
            "qbind_p2p_outbound_peers 3",
            "qbind_p2p_inbound_peers 0",
            "qbind_p2p_known_peers 0",
            "qbind_p2p_peer_rejected_diversity_total{reason=\"prefix24\"} 1",
            "qbind_p2p_peer_rejected_diversity_total{reason=\"prefix16\"} 0",
            "qbind_p2p_peer_evicted_total{reason=\"liveness\"} 0",
            "qbind_p2p_heartbeat_failed_total 0",
            "qbind_p2p_diversity_distinct_buckets 0",
            "qbind_p2p_handshake_failures_total{reason=\"cookie\"} 2",
            "qbind_p2p_connections_total{direction=\"inbound\"} 0",
            "# TYPE qbind_p2p_connections_total counter",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
