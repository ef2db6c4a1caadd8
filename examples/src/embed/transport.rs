//! The integrator's own [`Transport`]: bounded in-process channels, one
//! inbox per validator.
//!
//! The contract the core relies on: the sender id that `recv` returns is
//! authenticated (here the sending endpoint stamps its own id, and nothing
//! else can reach the channel; over a real network this is KEMTLS's job,
//! `qbind-net`), delivery is best effort and unordered (the protocol
//! tolerates loss, duplication and reordering), and a send never blocks: a
//! full queue drops the message and says so.

use std::collections::BTreeMap;

use async_trait::async_trait;
use qbind_core::traits::{Transport, TransportError};
use qbind_core::types::ValidatorId;
use tokio::sync::{Mutex, mpsc};

type Envelope = (ValidatorId, Vec<u8>);

/// One validator's end of an in-process network.
pub struct ChannelTransport {
    me: ValidatorId,
    peers: BTreeMap<ValidatorId, mpsc::Sender<Envelope>>,
    inbox: Mutex<mpsc::Receiver<Envelope>>,
}

impl ChannelTransport {
    /// Endpoints for validators `0..n`, each inbox holding up to `capacity`
    /// messages.
    #[must_use]
    pub fn network(n: usize, capacity: usize) -> Vec<ChannelTransport> {
        let (senders, inboxes): (Vec<_>, Vec<_>) =
            (0..n).map(|_| mpsc::channel(capacity.max(1))).unzip();
        inboxes
            .into_iter()
            .enumerate()
            .map(|(i, inbox)| ChannelTransport {
                me: ValidatorId(i as u32),
                peers: senders
                    .iter()
                    .enumerate()
                    .map(|(j, s)| (ValidatorId(j as u32), s.clone()))
                    .collect(),
                inbox: Mutex::new(inbox),
            })
            .collect()
    }

    fn push(&self, to: ValidatorId, bytes: Vec<u8>) -> Result<(), TransportError> {
        let peer = self.peers.get(&to).ok_or(TransportError::UnknownPeer(to))?;
        peer.try_send((self.me, bytes)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => TransportError::QueueFull(to),
            // The peer stopped: to the sender this is a lost message.
            mpsc::error::TrySendError::Closed(_) => TransportError::Closed,
        })
    }
}

#[async_trait]
impl Transport for ChannelTransport {
    async fn send(&self, to: ValidatorId, bytes: Vec<u8>) -> Result<(), TransportError> {
        self.push(to, bytes)
    }

    async fn broadcast(&self, bytes: Vec<u8>) -> Result<(), TransportError> {
        // Try every peer even if one queue is full; report the first failure.
        let mut first_error = None;
        for to in self.peers.keys().filter(|id| **id != self.me) {
            if let Err(e) = self.push(*to, bytes.clone()) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn recv(&self) -> Result<(ValidatorId, Vec<u8>), TransportError> {
        // Cancel-safe: the engine drops this future when a timer fires first,
        // and a dropped `recv` loses no message.
        self.inbox
            .lock()
            .await
            .recv()
            .await
            .ok_or(TransportError::Closed)
    }
}
