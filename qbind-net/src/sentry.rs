//! Sentries: a validator that talks to the network only through its sentry
//! (`docs/p2p.md`, "Sentries").
//!
//! A sentry is the public face of one validator `V`. It holds the P2P
//! identity the network knows as `V`'s (`V`'s `p2p_pub` in the genesis),
//! listens at `V`'s address and runs an ordinary [`TcpTransport`] with
//! `local_id = V` towards the validators (and the full nodes it admits): to
//! them it *is* `V`, and nothing changes on their side. The validator itself
//! has no public listener. It keeps one KEMTLS link to its sentry, under a
//! P2P key of its own that only the sentry knows, and its engine's
//! transport is a [`SentryLink`]. Over the link each message names its
//! peer ([`LinkFrame`]); the sentry's [`Relay`] forwards in both directions.
//!
//! The sentry relays bytes: it verifies nothing and signs nothing, so it
//! adds no trust (a compromised sentry can drop or delay `V`'s messages,
//! which a network peer can do too, but cannot forge them: votes and
//! proposals are signed by `V`'s consensus key). Everything it holds is
//! bounded by the two transports' queues; a frame that does not decode, or
//! goes the wrong way, is dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use qbind_core::traits::{Transport, TransportError};
use qbind_core::types::ValidatorId;
use tokio::sync::watch;

use crate::error::NetError;
use crate::transport::TcpTransport;

/// The id the sentry has on the link (the validator keeps its own id there).
pub const SENTRY_LINK_ID: ValidatorId = ValidatorId(u32::MAX);

/// Bytes a [`LinkFrame`] adds to the message it carries: a link channel's
/// `max_message` must exceed the network channel's by at least this.
pub const LINK_FRAME_OVERHEAD: usize = 5;

/// One message on a validator–sentry link: one type byte, the peer (big
/// endian `u32`, absent for a broadcast), then the message (to the end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkFrame {
    /// Validator → sentry: send `payload` to `peer` (type 0).
    To {
        /// The destination.
        peer: ValidatorId,
        /// The message.
        payload: Vec<u8>,
    },
    /// Validator → sentry: send `payload` to every connected peer (type 1).
    Broadcast {
        /// The message.
        payload: Vec<u8>,
    },
    /// Sentry → validator: `payload` arrived from `peer` (type 2).
    From {
        /// The sender (the authenticated peer of the sentry's connection).
        peer: ValidatorId,
        /// The message.
        payload: Vec<u8>,
    },
}

impl LinkFrame {
    /// Encode.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let (tag, peer, payload) = match self {
            LinkFrame::To { peer, payload } => (0u8, Some(*peer), payload),
            LinkFrame::Broadcast { payload } => (1, None, payload),
            LinkFrame::From { peer, payload } => (2, Some(*peer), payload),
        };
        let mut v = Vec::with_capacity(LINK_FRAME_OVERHEAD + payload.len());
        v.push(tag);
        if let Some(p) = peer {
            v.extend_from_slice(&p.0.to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    /// Decode; one encoding per frame (any payload, no unknown types).
    ///
    /// # Errors
    /// [`NetError::Truncated`] without a type byte or peer id,
    /// [`NetError::InvalidField`] for an unknown type.
    pub fn decode(b: &[u8]) -> Result<Self, NetError> {
        let truncated = |need, have| NetError::Truncated {
            what: "sentry link frame",
            need,
            have,
        };
        let (&tag, rest) = b.split_first().ok_or(truncated(1, 0))?;
        let peer_and_payload = |rest: &[u8]| -> Result<(ValidatorId, Vec<u8>), NetError> {
            let (id, payload) = rest
                .split_first_chunk::<4>()
                .ok_or(truncated(4, rest.len()))?;
            Ok((ValidatorId(u32::from_be_bytes(*id)), payload.to_vec()))
        };
        match tag {
            0 => {
                let (peer, payload) = peer_and_payload(rest)?;
                Ok(LinkFrame::To { peer, payload })
            }
            1 => Ok(LinkFrame::Broadcast {
                payload: rest.to_vec(),
            }),
            2 => {
                let (peer, payload) = peer_and_payload(rest)?;
                Ok(LinkFrame::From { peer, payload })
            }
            _ => Err(NetError::InvalidField {
                field: "sentry link frame type",
            }),
        }
    }
}

/// The validator's side of the link: the engine's [`Transport`], carried
/// over one KEMTLS connection to the sentry (`link`, whose only peer is
/// [`SENTRY_LINK_ID`]).
pub struct SentryLink {
    link: TcpTransport,
    dropped: AtomicU64,
}

impl SentryLink {
    /// Wrap `link`, a transport whose only peer is the sentry
    /// ([`SENTRY_LINK_ID`], dialled at the sentry's link address).
    #[must_use]
    pub fn new(link: TcpTransport) -> Self {
        SentryLink {
            link,
            dropped: AtomicU64::new(0),
        }
    }

    /// The link transport (its metrics, its connection state).
    #[must_use]
    pub fn link(&self) -> &TcpTransport {
        &self.link
    }

    /// Frames from the sentry dropped because they did not decode or went
    /// the wrong way.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Transport for SentryLink {
    /// `UnknownPeer` while the link to the sentry is down (the sentry
    /// reports nothing about the final destination).
    async fn send(&self, to: ValidatorId, bytes: Vec<u8>) -> Result<(), TransportError> {
        let frame = LinkFrame::To {
            peer: to,
            payload: bytes,
        };
        self.link.send(SENTRY_LINK_ID, frame.encode()).await
    }

    async fn broadcast(&self, bytes: Vec<u8>) -> Result<(), TransportError> {
        let frame = LinkFrame::Broadcast { payload: bytes };
        self.link.send(SENTRY_LINK_ID, frame.encode()).await
    }

    async fn recv(&self) -> Result<(ValidatorId, Vec<u8>), TransportError> {
        loop {
            let (from, bytes) = self.link.recv().await?;
            match LinkFrame::decode(&bytes) {
                Ok(LinkFrame::From { peer, payload }) if from == SENTRY_LINK_ID => {
                    return Ok((peer, payload));
                }
                _ => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// What a [`Relay`] forwarded and dropped.
#[derive(Debug, Default)]
pub struct RelayMetrics {
    /// Messages from the validator sent on to the network (a broadcast
    /// counts once).
    pub to_network: AtomicU64,
    /// Messages from the network passed to the validator.
    pub to_validator: AtomicU64,
    /// Frames from the validator that did not decode or went the wrong way.
    pub malformed: AtomicU64,
    /// Messages not delivered: the destination was not connected or its
    /// queue was full (the link to the validator included).
    pub undelivered: AtomicU64,
}

/// How long the relay waits between attempts to pass a message to a link
/// whose queue is full.
const LINK_FULL_RETRY: std::time::Duration = std::time::Duration::from_millis(2);

/// The sentry's relay between the network transport (`local_id` = the
/// validator's id) and the link transport (`local_id` =
/// [`SENTRY_LINK_ID`], whose only peer is the validator).
///
/// Towards the validator it waits while the link's queue is full, so the
/// network transport's bounded inbound queue fills and its readers stop
/// reading: senders feel back-pressure as they would from the validator
/// itself, instead of the relay dropping their messages. Towards the
/// network a full queue drops the message, as the validator's own
/// transport would. When either transport closes, both directions stop
/// ([`Relay::stopped`]).
pub struct Relay {
    metrics: Arc<RelayMetrics>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ended: watch::Receiver<bool>,
}

/// Marks the relay ended when a direction's task returns (or panics).
struct EndOnDrop(Arc<watch::Sender<bool>>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

impl Relay {
    /// Start relaying for `validator` until `stop` becomes true or a
    /// transport closes.
    #[must_use]
    pub fn spawn(
        validator: ValidatorId,
        network: Arc<TcpTransport>,
        link: Arc<TcpTransport>,
        stop: watch::Receiver<bool>,
    ) -> Relay {
        let metrics = Arc::new(RelayMetrics::default());
        let (end_tx, ended) = watch::channel(false);
        let end_tx = Arc::new(end_tx);
        let up = tokio::spawn(relay_up(
            validator,
            Arc::clone(&network),
            Arc::clone(&link),
            Arc::clone(&metrics),
            (stop.clone(), ended.clone()),
            EndOnDrop(Arc::clone(&end_tx)),
        ));
        let down = tokio::spawn(relay_down(
            validator,
            network,
            link,
            Arc::clone(&metrics),
            (stop, ended.clone()),
            EndOnDrop(end_tx),
        ));
        Relay {
            metrics,
            tasks: vec![up, down],
            ended,
        }
    }

    /// Wait until the relay has stopped (a transport closed, or `stop`).
    pub async fn stopped(&self) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|e| *e).await;
    }

    /// Its counters.
    #[must_use]
    pub fn metrics(&self) -> Arc<RelayMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Wait until both directions have stopped.
    pub async fn join(mut self) {
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

/// The stop signals of a relay direction: the caller's, and "the other
/// direction ended".
type Stops = (watch::Receiver<bool>, watch::Receiver<bool>);

/// Validator → network.
async fn relay_up(
    validator: ValidatorId,
    network: Arc<TcpTransport>,
    link: Arc<TcpTransport>,
    metrics: Arc<RelayMetrics>,
    (mut stop, mut ended): Stops,
    _end: EndOnDrop,
) {
    loop {
        let received = tokio::select! {
            r = link.recv() => r,
            _ = stop.wait_for(|s| *s) => return,
            _ = ended.wait_for(|e| *e) => return,
        };
        let Ok((from, bytes)) = received else { return };
        let sent = match LinkFrame::decode(&bytes) {
            Ok(LinkFrame::To { peer, payload }) if from == validator => {
                network.send(peer, payload).await
            }
            Ok(LinkFrame::Broadcast { payload }) if from == validator => {
                network.broadcast(payload).await
            }
            _ => {
                metrics.malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let counter = match sent {
            Ok(()) => &metrics.to_network,
            Err(TransportError::Closed) => return,
            Err(_) => &metrics.undelivered,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Network → validator, waiting for room on the link.
async fn relay_down(
    validator: ValidatorId,
    network: Arc<TcpTransport>,
    link: Arc<TcpTransport>,
    metrics: Arc<RelayMetrics>,
    (mut stop, mut ended): Stops,
    _end: EndOnDrop,
) {
    loop {
        let received = tokio::select! {
            r = network.recv() => r,
            _ = stop.wait_for(|s| *s) => return,
            _ = ended.wait_for(|e| *e) => return,
        };
        let Ok((peer, payload)) = received else {
            return;
        };
        let frame = LinkFrame::From { peer, payload }.encode();
        let delivered = loop {
            match link.send(validator, frame.clone()).await {
                Ok(()) => break true,
                Err(TransportError::QueueFull(_)) => {
                    tokio::select! {
                        () = tokio::time::sleep(LINK_FULL_RETRY) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
                Err(TransportError::Closed) => return,
                // The validator is not connected: nothing to wait for.
                Err(_) => break false,
            }
        };
        let counter = if delivered {
            &metrics.to_validator
        } else {
            &metrics.undelivered
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_and_round_trip() {
        let cases = [
            (
                LinkFrame::To {
                    peer: ValidatorId(3),
                    payload: vec![0xaa, 0xbb],
                },
                vec![0, 0, 0, 0, 3, 0xaa, 0xbb],
            ),
            (
                LinkFrame::Broadcast {
                    payload: vec![0x01],
                },
                vec![1, 0x01],
            ),
            (
                LinkFrame::From {
                    peer: ValidatorId(0x0102_0304),
                    payload: Vec::new(),
                },
                vec![2, 1, 2, 3, 4],
            ),
        ];
        for (frame, bytes) in cases {
            assert_eq!(frame.encode(), bytes, "{frame:?}");
            assert_eq!(LinkFrame::decode(&bytes).expect("decodes"), frame);
        }
    }

    #[test]
    fn bad_frames_are_named_errors() {
        assert!(matches!(
            LinkFrame::decode(&[]),
            Err(NetError::Truncated { need: 1, .. })
        ));
        assert!(matches!(
            LinkFrame::decode(&[0, 1, 2]),
            Err(NetError::Truncated {
                need: 4,
                have: 2,
                ..
            })
        ));
        assert!(matches!(
            LinkFrame::decode(&[2]),
            Err(NetError::Truncated {
                need: 4,
                have: 0,
                ..
            })
        ));
        assert!(matches!(
            LinkFrame::decode(&[3, 0, 0, 0, 0]),
            Err(NetError::InvalidField { .. })
        ));
    }
}
