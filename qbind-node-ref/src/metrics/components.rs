//! The families of the components a process embeds — P2P (`qbind-net`),
//! signer (`qbind-signer`), key rotation (`qbind-core`), remote signer
//! daemon — read from their plain counters. Each function takes the
//! instances of one component with the labels that tell them apart
//! (`validator="i"` in `qbind-node`, none in `qbind-remote-signer`), and
//! returns one family per metric name holding every instance's samples.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use qbind_core::key_rotation::RotationStatus;
use qbind_core::signing::SignKind;
use qbind_net::NetMetrics;
use qbind_net::metrics::{DiversityReason, HandshakeFailure};
use qbind_signer::SignerMetrics;
use qbind_signer::metrics::{HsmErrorKind, RemoteFailureReason};
use qbind_signer::remote::daemon::DaemonMetrics;

use super::Registry;
use super::families::{Family, Labels, labels_with};

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// A family with one sample per instance: `value` of each.
fn each<T>(family: Family, items: &[(Labels, &T)], value: impl Fn(&T) -> u64) -> Family {
    items
        .iter()
        .fold(family, |f, (labels, t)| f.with(labels.clone(), value(t)))
}

/// A family with one sample per instance and label value: `value` of each.
fn each_labeled<T, L: Copy>(
    mut family: Family,
    items: &[(Labels, &T)],
    label: &'static str,
    all: &[L],
    name: impl Fn(L) -> &'static str,
    value: impl Fn(&T, L) -> u64,
) -> Family {
    for (labels, t) in items {
        for l in all {
            family.push(labels_with(labels, (label, name(*l))), value(t, *l));
        }
    }
    family
}

/// The P2P families (runbook §7.3) of `items`.
#[must_use]
pub fn net(items: &[(Labels, &NetMetrics)]) -> Vec<Family> {
    vec![
        each(
            Family::gauge(
                "qbind_p2p_outbound_peers",
                "Current outbound validator peer count.",
            ),
            items,
            |m| get(&m.outbound_peers),
        ),
        each(
            Family::gauge(
                "qbind_p2p_inbound_peers",
                "Current inbound validator peer count.",
            ),
            items,
            |m| get(&m.inbound_peers),
        ),
        each(
            Family::gauge(
                "qbind_p2p_follower_peers",
                "Connected full nodes (followers; not in the validator peer counts).",
            ),
            items,
            |m| get(&m.follower_peers),
        ),
        each(
            Family::counter(
                "qbind_p2p_follower_refused_total",
                "Full-node connections refused over the follower inbound cap.",
            ),
            items,
            |m| get(&m.follower_refused),
        ),
        each(
            Family::gauge("qbind_p2p_known_peers", "Total known peer addresses."),
            items,
            |m| get(&m.known_peers),
        ),
        each_labeled(
            Family::counter(
                "qbind_p2p_peer_rejected_diversity_total",
                "Peers rejected by diversity limits.",
            ),
            items,
            "reason",
            &DiversityReason::ALL,
            DiversityReason::label,
            NetMetrics::diversity_rejections_of,
        ),
        each_labeled(
            Family::counter("qbind_p2p_peer_evicted_total", "Peers evicted."),
            items,
            "reason",
            &["liveness"],
            |l| l,
            |m, _| get(&m.evicted_liveness),
        ),
        each(
            Family::counter(
                "qbind_p2p_heartbeat_failed_total",
                "Heartbeats not answered in time.",
            ),
            items,
            |m| get(&m.heartbeat_failed),
        ),
        each(
            Family::gauge(
                "qbind_p2p_diversity_distinct_buckets",
                "Distinct network buckets among connected peers.",
            ),
            items,
            |m| get(&m.diversity_distinct_buckets),
        ),
        each_labeled(
            Family::counter(
                "qbind_p2p_handshake_failures_total",
                "Failed KEMTLS handshakes.",
            ),
            items,
            "reason",
            &HandshakeFailure::ALL,
            HandshakeFailure::label,
            NetMetrics::handshake_failures_of,
        ),
        each_labeled(
            Family::counter(
                "qbind_p2p_connections_total",
                "Authenticated connections established.",
            ),
            items,
            "direction",
            &[true, false],
            |inbound| if inbound { "inbound" } else { "outbound" },
            |m, inbound| {
                get(if inbound {
                    &m.connections_inbound
                } else {
                    &m.connections_outbound
                })
            },
        ),
        each(
            Family::counter(
                "qbind_p2p_send_queue_full_total",
                "Messages dropped on a full per-peer send queue.",
            ),
            items,
            |m| get(&m.send_queue_full),
        ),
        each(
            Family::counter(
                "qbind_p2p_frames_rejected_total",
                "Connections closed for a malformed, oversized or unauthenticated frame.",
            ),
            items,
            |m| get(&m.frames_rejected),
        ),
        each(
            Family::counter(
                "qbind_p2p_dial_attempts_total",
                "Outbound connection attempts.",
            ),
            items,
            |m| get(&m.dial_attempts),
        ),
    ]
}

/// The signer families (runbook §10.2, §10.3) of `items`.
#[must_use]
pub fn signer(items: &[(Labels, &SignerMetrics)]) -> Vec<Family> {
    vec![
        each_labeled(
            Family::counter(
                "qbind_hsm_sign_error_total",
                "HSM (PKCS#11) signer errors by kind.",
            ),
            items,
            "kind",
            &HsmErrorKind::ALL,
            HsmErrorKind::label,
            SignerMetrics::hsm_errors,
        ),
        each_labeled(
            Family::counter(
                "qbind_remote_sign_failures_total",
                "Remote signer failures by reason.",
            ),
            items,
            "reason",
            &RemoteFailureReason::ALL,
            RemoteFailureReason::label,
            SignerMetrics::remote_failures,
        ),
        each(
            Family::gauge(
                "qbind_hsm_startup_ok",
                "Startup health check of the signer (1 ok, 0 failed or not run).",
            ),
            items,
            |m| u64::from(m.startup_ok() == Some(true)),
        ),
        each(
            Family::gauge(
                "qbind_signer_health",
                "Aggregate signer health (0 healthy, 1 degraded, 2 failed).",
            ),
            items,
            |m| u64::from(m.health().gauge()),
        ),
        each(
            Family::counter("qbind_signer_signatures_total", "Signatures produced."),
            items,
            SignerMetrics::signatures,
        ),
        each_labeled(
            Family::counter(
                "qbind_signer_sign_requests_total",
                "Requests to sign, by kind of object.",
            ),
            items,
            "kind",
            &SignKind::ALL,
            sign_kind_label,
            SignerMetrics::requests,
        ),
        each(
            Family::counter(
                "qbind_signer_sign_failures_total",
                "Requests to sign that ended in an error (refused, unavailable or fatal).",
            ),
            items,
            SignerMetrics::failures_total,
        ),
        each(
            Family::counter(
                "qbind_signer_double_sign_refused_total",
                "Requests refused by double-sign protection.",
            ),
            items,
            SignerMetrics::double_sign_refusals,
        ),
        each(
            Family::counter(
                "qbind_signer_request_mismatch_total",
                "Requests refused because the signed bytes disagree with the claimed view or preimage.",
            ),
            items,
            SignerMetrics::request_mismatches,
        ),
    ]
}

/// The `kind` label of a signing request.
fn sign_kind_label(kind: SignKind) -> &'static str {
    match kind {
        SignKind::Tx => "tx",
        SignKind::Batch => "batch",
        SignKind::BatchAck => "batch_ack",
        SignKind::Vote => "vote",
        SignKind::Proposal => "proposal",
        SignKind::Timeout => "timeout",
        SignKind::NewView => "new_view",
        SignKind::KeyRotation => "key_rotation",
    }
}

/// The key-rotation gauges (runbook §6.2), one sample per registered
/// validator and key role.
#[must_use]
pub fn key_rotation(status: &[RotationStatus]) -> Vec<Family> {
    let labels = |s: &RotationStatus| {
        vec![
            ("validator", s.validator.0.to_string()),
            ("key_role", s.role.cli_name().to_string()),
        ]
    };
    let mut pending = Family::gauge(
        "qbind_consensus_key_rotation_pending",
        "Whether a key rotation is not yet final.",
    );
    let mut remaining = Family::gauge(
        "qbind_consensus_key_rotation_grace_epochs_remaining",
        "Epochs until only the new key is accepted.",
    );
    for s in status {
        pending.push(labels(s), u64::from(s.pending));
        remaining.push(labels(s), s.grace_epochs_remaining);
    }
    vec![pending, remaining]
}

/// The remote signer daemon's own counters (`qbind-remote-signer`).
#[must_use]
pub fn remote_signer_daemon(m: &DaemonMetrics) -> Vec<Family> {
    [
        (
            "qbind_remote_signer_connections_total",
            "Client connections accepted.",
            &m.connections,
        ),
        (
            "qbind_remote_signer_requests_total",
            "Signing requests received.",
            &m.requests,
        ),
        (
            "qbind_remote_signer_signed_total",
            "Signatures returned.",
            &m.signed,
        ),
        (
            "qbind_remote_signer_rate_limited_total",
            "Requests refused by the rate limit.",
            &m.rate_limited,
        ),
        (
            "qbind_remote_signer_unauthorized_total",
            "Connections from unauthorised peers.",
            &m.unauthorized,
        ),
        (
            "qbind_remote_signer_conflicts_total",
            "Requests refused by double-sign protection.",
            &m.conflicts,
        ),
        (
            "qbind_remote_signer_backend_errors_total",
            "Backend (HSM/keystore) failures.",
            &m.backend_errors,
        ),
        (
            "qbind_remote_signer_bad_requests_total",
            "Malformed requests.",
            &m.bad_requests,
        ),
        (
            "qbind_remote_signer_kind_refused_total",
            "Requests of a kind the configuration does not allow.",
            &m.kinds_refused,
        ),
    ]
    .into_iter()
    .map(|(name, help, v)| Family::counter(name, help).with(Labels::new(), get(v)))
    .collect()
}

/// The page of one P2P instance without labels (for documentation checks).
#[must_use]
pub fn net_page(m: &NetMetrics) -> String {
    page(net(&[(Labels::new(), m)]))
}

/// The page of one signer without labels (for documentation checks).
#[must_use]
pub fn signer_page(m: &SignerMetrics) -> String {
    page(signer(&[(Labels::new(), m)]))
}

/// The registry of `qbind-remote-signer`: the daemon's counters, then its
/// backend signer's, read at each scrape.
#[must_use]
pub fn remote_signer_registry(daemon: Arc<DaemonMetrics>, backend: Arc<SignerMetrics>) -> Registry {
    super::families::registry(move || {
        let mut families = remote_signer_daemon(&daemon);
        families.extend(signer(&[(Labels::new(), &*backend)]));
        families
    })
}

fn page(families: Vec<Family>) -> String {
    super::render(&super::families::registry(move || families.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::families::{duplicate_families, validator};
    use qbind_core::crypto::KeyPair;
    use qbind_core::key_rotation::{KeyRole, KeyRotationEvent, ValidatorKeyRegistry};
    use qbind_core::types::{Epoch, NetworkEnvironment, ValidatorId};

    /// Ported from `qbind-net`'s renderer test, with the same lines.
    #[test]
    fn net_page_has_every_runbook_metric_with_values() {
        let m = NetMetrics::default();
        m.outbound_peers.store(3, Ordering::Relaxed);
        m.handshake_failed(&qbind_net::NetError::BadCookie);
        m.handshake_failed(&qbind_net::NetError::BadCookie);
        m.diversity_rejected(DiversityReason::Prefix24);
        let text = net_page(&m);
        for needle in [
            "qbind_p2p_outbound_peers 3\n",
            "qbind_p2p_inbound_peers 0\n",
            "qbind_p2p_known_peers 0\n",
            "qbind_p2p_peer_rejected_diversity_total{reason=\"prefix24\"} 1\n",
            "qbind_p2p_peer_rejected_diversity_total{reason=\"prefix16\"} 0\n",
            "qbind_p2p_peer_evicted_total{reason=\"liveness\"} 0\n",
            "qbind_p2p_heartbeat_failed_total 0\n",
            "qbind_p2p_diversity_distinct_buckets 0\n",
            "qbind_p2p_handshake_failures_total{reason=\"cookie\"} 2\n",
            "qbind_p2p_connections_total{direction=\"inbound\"} 0\n",
            "qbind_p2p_connections_total{direction=\"outbound\"} 0\n",
            "qbind_p2p_send_queue_full_total 0\n",
            "qbind_p2p_frames_rejected_total 0\n",
            "qbind_p2p_dial_attempts_total 0\n",
            "# TYPE qbind_p2p_connections_total counter\n",
            "# TYPE qbind_p2p_outbound_peers gauge\n",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(duplicate_families(&text).is_empty());
    }

    /// Two validators' P2P metrics share one `# TYPE` line per name.
    #[test]
    fn several_instances_share_one_family() {
        let (a, b) = (NetMetrics::default(), NetMetrics::default());
        b.outbound_peers.store(2, Ordering::Relaxed);
        let text = page(net(&[(validator(0), &a), (validator(1), &b)]));
        assert!(duplicate_families(&text).is_empty(), "{text}");
        assert!(text.contains(
            "qbind_p2p_outbound_peers{validator=\"0\"} 0\nqbind_p2p_outbound_peers{validator=\"1\"} 2\n"
        ));
        assert!(
            text.contains("qbind_p2p_peer_evicted_total{validator=\"1\",reason=\"liveness\"} 0\n")
        );
    }

    /// Ported from `qbind-signer`'s renderer test, with the same lines.
    #[test]
    fn signer_page_has_every_series() {
        let m = SignerMetrics::default();
        m.record_hsm_error(HsmErrorKind::Runtime);
        m.record_hsm_error(HsmErrorKind::Runtime);
        m.record_remote_failure(RemoteFailureReason::Transport);
        m.set_startup_ok(true);
        m.record_success();
        let text = signer_page(&m);
        for needle in [
            "qbind_hsm_sign_error_total{kind=\"runtime\"} 2\n",
            "qbind_hsm_sign_error_total{kind=\"login\"} 0\n",
            "qbind_remote_sign_failures_total{reason=\"transport\"} 1\n",
            "qbind_hsm_startup_ok 1\n",
            "qbind_signer_health 0\n",
            "qbind_signer_signatures_total 1\n",
            "qbind_signer_double_sign_refused_total 0\n",
            "qbind_signer_request_mismatch_total 0\n",
            "# TYPE qbind_hsm_sign_error_total counter\n",
            "# TYPE qbind_signer_health gauge\n",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    /// Ported from `qbind-core`'s key-rotation renderer test.
    #[test]
    fn rotation_gauges_per_validator_and_role() {
        let (old, new) = (KeyPair::from_seed(&[1; 32]), KeyPair::from_seed(&[2; 32]));
        let env = NetworkEnvironment::Testnet;
        let mut reg = ValidatorKeyRegistry::new();
        reg.register(
            ValidatorId(42),
            KeyRole::Consensus,
            old.public_key().as_bytes().to_vec(),
        );
        let event = KeyRotationEvent {
            validator_id: ValidatorId(42),
            key_kind: KeyRole::Consensus,
            old_key: old.public_key().as_bytes().to_vec(),
            new_key: new.public_key().as_bytes().to_vec(),
            effective_epoch: Epoch(10),
            grace_epochs: 5,
            emergency: false,
        };
        let signed = event.sign(env, &old).expect("sign");
        reg.apply(&signed, env, Epoch(3)).expect("apply");
        let text = page(key_rotation(&reg.status(Epoch(12))));
        assert!(text.contains(
            "qbind_consensus_key_rotation_grace_epochs_remaining{validator=\"42\",key_role=\"consensus\"} 3\n"
        ));
        assert!(text.contains(
            "qbind_consensus_key_rotation_pending{validator=\"42\",key_role=\"consensus\"} 1\n"
        ));
        assert!(text.contains("# TYPE qbind_consensus_key_rotation_pending gauge\n"));
    }

    /// The lines `qbind-signer`'s remote tests read from the daemon's page.
    #[test]
    fn remote_signer_page_has_the_daemon_and_backend_series() {
        let d = Arc::new(DaemonMetrics::default());
        let backend = SignerMetrics::shared();
        let registry = remote_signer_registry(Arc::clone(&d), Arc::clone(&backend));
        // Values are read at scrape time, after the registry was built.
        d.signed.store(5, Ordering::Relaxed);
        d.conflicts.store(1, Ordering::Relaxed);
        d.kinds_refused.store(3, Ordering::Relaxed);
        backend.record_request_mismatch();
        let text = crate::metrics::render(&registry);
        for needle in [
            "# TYPE qbind_remote_signer_signed_total counter\n",
            "qbind_remote_signer_signed_total 5\n",
            "qbind_remote_signer_conflicts_total 1\n",
            "qbind_remote_signer_kind_refused_total 3\n",
            "qbind_remote_signer_connections_total 0\n",
            "qbind_signer_request_mismatch_total 1\n",
            "qbind_hsm_startup_ok 0\n",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(duplicate_families(&text).is_empty());
    }
}
