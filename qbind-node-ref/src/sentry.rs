//! `qbind-node --role sentry`: the public face of one validator
//! (docs/node.md, "Sentries"; the relay itself is `qbind_net::sentry`).
//!
//! The sentry holds the P2P identity that the genesis lists as validator
//! `V`'s, listens at `V`'s address, and runs the network transport as `V`:
//! the other validators (and the full nodes it admits) see validator `V`.
//! On a second, private listener it admits exactly one key: the validator's
//! own link key. It relays between the two and keeps no store, runs no
//! engine and signs nothing. The validator runs with `--sentry-link-addr`
//! and has no public listener ([`validator_link`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use qbind_core::types::{NetworkEnvironment, ValidatorId};
use qbind_net::sentry::{LINK_FRAME_OVERHEAD, Relay, RelayMetrics, SENTRY_LINK_ID, SentryLink};
use qbind_net::{ChannelConfig, PeerManagerConfig, PeerPublic, StaticIdentity, TcpTransport};
use tokio::sync::watch;

use crate::metrics::families::{Family, Labels};
use crate::node::NodeError;
use crate::validator_set::ValidatorSetFile;

/// Everything a sentry runs with.
#[derive(Clone, Debug)]
pub struct SentryOptions {
    /// The chain's validators (from the genesis or validator-set file).
    pub set: ValidatorSetFile,
    /// The validator it fronts.
    pub validator: ValidatorId,
    /// The P2P identity the set lists as the validator's (`p2p_pub`).
    pub identity: StaticIdentity,
    /// The validator's own link key (its `--p2p-identity-key`'s public
    /// half): the only key the link listener admits.
    pub validator_link_key: PeerPublic,
    /// Where the validator's link connects (a private address).
    pub link_listen: SocketAddr,
    /// The network listener (default: the validator's address in the set).
    pub listen: Option<SocketAddr>,
    /// Announced as the validator's address in peer exchange.
    pub advertised: Option<SocketAddr>,
    /// Dial only these validator addresses at start (empty: every other
    /// validator).
    pub bootstrap: Vec<SocketAddr>,
    /// Full nodes it admits (`--full-node-keys`).
    pub full_nodes: BTreeMap<ValidatorId, PeerPublic>,
    /// Network peer-manager settings (diversity, discovery).
    pub diversity: qbind_net::peers::diversity::DiversityMode,
    /// Peer exchange.
    pub discovery: bool,
    /// Serve `/metrics` here.
    pub metrics_addr: Option<SocketAddr>,
}

/// The channel settings of a validator–sentry link: the network's, with
/// room for the frame header.
#[must_use]
pub fn link_channel(env: NetworkEnvironment) -> ChannelConfig {
    let mut c = ChannelConfig::new(env);
    c.max_message += LINK_FRAME_OVERHEAD;
    c
}

/// Link peer-manager settings: one fixed peer, no peer exchange, and
/// redials at most 2 s apart (the sentry is the validator's only peer: the
/// default back-off, up to 5 minutes, would keep it offline that long after
/// a sentry restart).
fn link_peers() -> PeerManagerConfig {
    PeerManagerConfig {
        discovery_enabled: false,
        local_network: true,
        heartbeat_interval: std::time::Duration::from_secs(5),
        backoff: qbind_net::peers::backoff::BackoffConfig {
            base: std::time::Duration::from_millis(200),
            max: std::time::Duration::from_secs(2),
            jitter: 0.2,
        },
        ..PeerManagerConfig::default()
    }
}

fn config(what: &str) -> impl Fn(qbind_net::NetError) -> NodeError + '_ {
    move |e| NodeError::Config(format!("{what}: {e}"))
}

/// Check `opts` and start the sentry's two transports and its relay; run
/// until `shutdown` becomes true. `out` receives status lines.
///
/// # Errors
/// [`NodeError::Config`] for a bad key, address or transport start.
pub async fn run_sentry(
    opts: SentryOptions,
    mut shutdown: watch::Receiver<bool>,
    out: impl Fn(&str),
) -> Result<(), NodeError> {
    let v = opts.validator.0 as usize;
    let entry = opts.set.validators.get(v).ok_or_else(|| {
        NodeError::Config(format!(
            "--validator-index {v} is not in the validator set ({} validators)",
            opts.set.validators.len()
        ))
    })?;
    if opts.identity.public() != &entry.p2p_key {
        return Err(NodeError::Config(format!(
            "a sentry's P2P identity is its validator's p2p_pub in the genesis: this key is \
             not validator {v}'s"
        )));
    }
    if &opts.validator_link_key == opts.identity.public()
        || opts
            .set
            .validators
            .iter()
            .any(|e| e.p2p_key.as_bytes() == opts.validator_link_key.as_bytes())
    {
        return Err(NodeError::Config(
            "the validator's link key must be its own, not a key the genesis lists".into(),
        ));
    }
    let env = opts.set.network;
    let local_network = !qbind_net::peers::book::is_routable(entry.address);
    let mut peers = PeerManagerConfig::default();
    peers.diversity.mode = opts.diversity;
    peers.discovery_enabled = opts.discovery;
    peers.heartbeat_interval = std::time::Duration::from_secs(5);
    peers.local_network = local_network;
    peers.advertised_addr = opts.advertised;
    let validators: BTreeMap<ValidatorId, PeerPublic> = opts
        .set
        .validators
        .iter()
        .map(|e| (e.id, e.p2p_key.clone()))
        .collect();
    let others: Vec<(ValidatorId, SocketAddr)> = opts
        .set
        .validators
        .iter()
        .filter(|e| e.id != opts.validator)
        .map(|e| (e.id, e.address))
        .collect();
    let bootstrap = if opts.bootstrap.is_empty() {
        others
    } else {
        opts.bootstrap
            .iter()
            .map(|a| {
                others.iter().find(|(_, o)| o == a).copied().ok_or_else(|| {
                    NodeError::Config(format!(
                        "--bootstrap-peers {a} is not the address of another validator in the \
                         genesis or validator-set file"
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    };
    let network = TcpTransport::start(qbind_net::TransportConfig {
        local_id: opts.validator,
        identity: opts.identity.clone(),
        listen: opts.listen.unwrap_or(entry.address),
        validators,
        followers: opts.full_nodes.clone(),
        bootstrap,
        channel: ChannelConfig::new(env),
        peers,
    })
    .await
    .map_err(config("the sentry's network transport"))?;
    let link = TcpTransport::start(qbind_net::TransportConfig {
        local_id: SENTRY_LINK_ID,
        identity: opts.identity.clone(),
        listen: opts.link_listen,
        validators: BTreeMap::from([(opts.validator, opts.validator_link_key.clone())]),
        followers: BTreeMap::new(),
        bootstrap: Vec::new(),
        channel: link_channel(env),
        peers: link_peers(),
    })
    .await
    .map_err(config("the sentry's link listener"))?;
    out(&format!(
        "sentry of validator {v}: network P2P on {}, link for the validator on {}",
        network.local_addr(),
        link.local_addr()
    ));
    let (network, link) = (Arc::new(network), Arc::new(link));
    let (stop_tx, stop_rx) = watch::channel(false);
    let relay = Relay::spawn(
        opts.validator,
        Arc::clone(&network),
        Arc::clone(&link),
        stop_rx.clone(),
    );
    if let Some(addr) = opts.metrics_addr {
        let listener = crate::metrics::bind_announced(addr, &out).await?;
        let (net_m, link_m, relay_m) = (network.metrics(), link.metrics(), relay.metrics());
        let registry = crate::metrics::families::registry(move || {
            families(opts.validator, &net_m, &link_m, &relay_m)
        });
        let renderer: crate::metrics::Renderer =
            Arc::new(move || crate::metrics::render(&registry));
        tokio::spawn(crate::metrics::serve(listener, renderer, stop_rx));
    }
    let relay_failed = tokio::select! {
        _ = shutdown.wait_for(|s| *s) => false,
        () = relay.stopped() => true,
    };
    let _ = stop_tx.send(true);
    relay.join().await;
    network.shutdown();
    link.shutdown();
    if relay_failed {
        // A sentry that relays nothing must not keep answering as its
        // validator.
        return Err(NodeError::Config(
            "the sentry's relay stopped (a transport closed)".into(),
        ));
    }
    Ok(())
}

/// The sentry's metric families: the network and link transports (label
/// `side`) and the relay's counters.
fn families(
    validator: ValidatorId,
    network: &qbind_net::NetMetrics,
    link: &qbind_net::NetMetrics,
    relay: &RelayMetrics,
) -> Vec<Family> {
    let base: Labels = crate::metrics::families::validator(validator.0);
    let side = |s: &str| crate::metrics::families::labels_with(&base, ("side", s));
    let mut out =
        crate::metrics::components::net(&[(side("network"), network), (side("link"), link)]);
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    out.push(
        Family::counter(
            "qbind_sentry_relayed_total",
            "Messages the sentry relayed, by direction.",
        )
        .with(
            crate::metrics::families::labels_with(&base, ("direction", "to_network")),
            get(&relay.to_network),
        )
        .with(
            crate::metrics::families::labels_with(&base, ("direction", "to_validator")),
            get(&relay.to_validator),
        ),
    );
    out.push(
        Family::counter(
            "qbind_sentry_undelivered_total",
            "Messages the sentry could not deliver (peer not connected, queue full).",
        )
        .with(base.clone(), get(&relay.undelivered)),
    );
    out.push(
        Family::counter(
            "qbind_sentry_malformed_total",
            "Link frames from the validator that did not decode or went the wrong way.",
        )
        .with(base, get(&relay.malformed)),
    );
    out
}

/// The local address this host would use to reach `peer` (a connected UDP
/// socket picks the route; no packet is sent).
fn facing(peer: SocketAddr) -> std::io::Result<IpAddr> {
    let any = match peer.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = std::net::UdpSocket::bind(SocketAddr::new(any, 0))?;
    socket.connect(peer)?;
    Ok(socket.local_addr()?.ip())
}

/// The validator's side: its engine's transport, one link to its sentry at
/// `sentry` that must present `sentry_key` (the validator's `p2p_pub` in
/// the genesis, which the sentry holds). `identity` is the validator's own
/// link key. The transport's listener (unused: the sentry never dials)
/// binds an ephemeral port on the local address that faces the sentry,
/// never on all interfaces, and admits the sentry's key only.
///
/// # Errors
/// [`NodeError::Config`] if the transport does not start.
pub async fn validator_link(
    env: NetworkEnvironment,
    validator: ValidatorId,
    identity: StaticIdentity,
    sentry: SocketAddr,
    sentry_key: PeerPublic,
) -> Result<SentryLink, NodeError> {
    let listen_ip = facing(sentry).map_err(|e| {
        NodeError::Config(format!(
            "no local address reaches the sentry at {sentry}: {e}"
        ))
    })?;
    let link = TcpTransport::start(qbind_net::TransportConfig {
        local_id: validator,
        identity,
        listen: SocketAddr::new(listen_ip, 0),
        validators: BTreeMap::from([(SENTRY_LINK_ID, sentry_key)]),
        followers: BTreeMap::new(),
        bootstrap: vec![(SENTRY_LINK_ID, sentry)],
        channel: link_channel(env),
        peers: link_peers(),
    })
    .await
    .map_err(config("the link to the sentry"))?;
    Ok(SentryLink::new(link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_binds_the_address_that_faces_the_sentry() {
        let loopback: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        assert_eq!(
            facing(loopback).expect("route"),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        let other: SocketAddr = "127.0.0.2:9".parse().expect("addr");
        assert!(facing(other).expect("route").is_loopback());
    }
}
