//! The simulated network: which links are cut by partitions at a time, and
//! which carry batch traffic late.

use super::Partition;
use crate::consensus::ConsensusMsg;

/// Batch traffic from one node that reaches another late or never, until a
/// time (see [`Scenario::late_batches`](super::Scenario::late_batches)): a
/// congested or broken bulk-data link while the small consensus messages
/// still flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LateBatches {
    /// The sending node.
    pub from: usize,
    /// The receiving node.
    pub to: usize,
    /// Added delay in ms; `None`: the traffic never arrives.
    pub delay: Option<u64>,
    /// Batch certificates as well as batch data: `to` then learns the
    /// certificates of `from`'s batches only from proposals, so it does not
    /// prefetch their data and fetches it only when a committed block needs
    /// it.
    pub certificates: bool,
    /// When the link recovers (ms; `u64::MAX`: never). What was sent before
    /// stays late.
    pub until: u64,
}

/// Whether nodes `a` and `b` can reach each other at `now`.
pub(crate) fn connected(partitions: &[Partition], now: u64, a: usize, b: usize) -> bool {
    partitions
        .iter()
        .filter(|p| now >= p.start && now < p.heal)
        .all(|p| p.groups.iter().any(|g| g.contains(&a) && g.contains(&b)))
}

/// The delay `links` add at `now` to `msg` from node `from` to node `to` (0
/// for what they do not name), or `None` if it never arrives. A batch is
/// batch data whether its author broadcasts it or a node answers a fetch
/// with it.
pub(crate) fn batch_delay(
    links: &[LateBatches],
    now: u64,
    from: usize,
    to: usize,
    msg: &ConsensusMsg,
) -> Option<u64> {
    let certificate = match msg {
        ConsensusMsg::Batch(_) => false,
        ConsensusMsg::BatchCert(_) => true,
        _ => return Some(0),
    };
    links
        .iter()
        .filter(|l| now < l.until && l.from == from && l.to == to)
        .filter(|l| l.certificates || !certificate)
        .try_fold(0, |extra: u64, l| l.delay.map(|d| extra.max(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cut_between_groups_until_they_heal() {
        let p = vec![Partition {
            start: 10,
            heal: 20,
            groups: vec![vec![0, 1], vec![2]],
        }];
        assert!(connected(&p, 5, 0, 2));
        assert!(connected(&p, 15, 0, 1));
        assert!(!connected(&p, 15, 0, 2));
        assert!(!connected(&p, 15, 3, 0), "nodes in no group are isolated");
        assert!(connected(&p, 20, 0, 2));
    }

    #[test]
    fn late_batch_links_touch_only_batch_traffic_on_their_link() {
        use crate::types::{Epoch, Hash32, ValidatorId};
        let links = [
            LateBatches {
                from: 0,
                to: 3,
                delay: Some(300),
                certificates: false,
                until: 1_000,
            },
            LateBatches {
                from: 1,
                to: 2,
                delay: None,
                certificates: true,
                until: u64::MAX,
            },
        ];
        let batch = crate::dag::Batch {
            epoch: Epoch(0),
            author: ValidatorId(0),
            round: 1,
            txs: vec![b"tx".to_vec()],
        };
        let cert = ConsensusMsg::BatchCert(crate::dag::BatchCertificate {
            batch: batch.reference(),
            signers: crate::quorum::SignerBitmap::new(4),
            signatures: Vec::new(),
        });
        let data = ConsensusMsg::Batch(crate::dag::SignedBatch {
            batch,
            signature: crate::crypto::Signature::from_bytes(&[0; 2420]).unwrap(),
        });
        let fetch = ConsensusMsg::BatchFetch(Hash32::ZERO);
        assert_eq!(batch_delay(&links, 0, 0, 3, &data), Some(300));
        assert_eq!(batch_delay(&links, 0, 0, 3, &cert), Some(0), "data only");
        assert_eq!(
            batch_delay(&links, 0, 0, 3, &fetch),
            Some(0),
            "a fetch request"
        );
        assert_eq!(batch_delay(&links, 0, 1, 2, &data), None);
        assert_eq!(batch_delay(&links, 0, 1, 2, &cert), None);
        assert_eq!(
            batch_delay(&links, 0, 2, 1, &data),
            Some(0),
            "one direction"
        );
        assert_eq!(batch_delay(&links, 0, 0, 2, &data), Some(0), "one receiver");
        assert_eq!(
            batch_delay(&links, 1_000, 0, 3, &data),
            Some(0),
            "recovered"
        );
        assert_eq!(batch_delay(&links, 1_000, 1, 2, &data), None);
    }
}
