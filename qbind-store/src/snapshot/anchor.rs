//! The trust anchor of a restore (issue #22 finding 7).
//!
//! `meta.json` is not authenticated, and a snapshot's height, block hash and
//! state root can only be checked against each other and against the
//! snapshot's own state: a self-consistent snapshot of another chain (or of
//! a forged state) passes those checks. So a restore also needs values the
//! operator trusts from elsewhere: the height, the hash of the block at that
//! height and the state root, written `HEIGHT:BLOCK_HASH_HEX:STATE_ROOT_HEX`
//! (`qbind-node` prints this line for every snapshot it creates, so an
//! operator can copy it from a node they trust). The restore refuses a
//! snapshot unless its committed height, the block hash recomputed from its
//! stored block and the state root recomputed from its accounts all equal
//! the anchor.

use std::fmt;
use std::str::FromStr;

use super::{SnapshotError, SnapshotMeta};

/// Longest accepted anchor text (a u64 and two 64-digit hashes need 150).
pub const MAX_ANCHOR_LEN: usize = 200;

/// What the operator trusts about the snapshot to restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustAnchor {
    /// Committed height of the snapshot.
    pub height: u64,
    /// Protocol block id of the block committed at `height`.
    pub block_hash: [u8; 32],
    /// Protocol state root of the account state
    /// (`StateSummary::root`).
    pub state_root: [u8; 32],
}

fn hash_from_hex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

impl TrustAnchor {
    /// The anchor a snapshot's `meta.json` claims: what the node that wrote
    /// the snapshot prints, and what an operator copies from a node they
    /// trust. (Taking it from the snapshot being restored checks nothing.)
    pub fn of(meta: &SnapshotMeta) -> Result<Self, SnapshotError> {
        let field = |name: &'static str, value: &str| {
            hash_from_hex(value).ok_or(SnapshotError::InvalidAnchor {
                input: format!("{name} {value}"),
                reason: "not 64 hex digits",
            })
        };
        Ok(TrustAnchor {
            height: meta.height,
            block_hash: field("block_hash", &meta.block_hash)?,
            state_root: field("state_root", &meta.state_root)?,
        })
    }

    /// Refuse `meta` unless it claims this anchor (the cheap check before
    /// anything is copied; the recomputed values are checked after).
    pub(super) fn check_meta(&self, meta: &SnapshotMeta) -> Result<(), SnapshotError> {
        self.check(
            "height",
            &self.height.to_string(),
            &meta.height.to_string(),
            "meta.json",
        )?;
        self.check(
            "block hash",
            &hex::encode(self.block_hash),
            &meta.block_hash,
            "meta.json",
        )?;
        self.check(
            "state root",
            &hex::encode(self.state_root),
            &meta.state_root,
            "meta.json",
        )
    }

    /// Refuse unless `found` (from `source`) is the anchor's `what`.
    pub(super) fn check(
        &self,
        what: &'static str,
        trusted: &str,
        found: &str,
        source: &'static str,
    ) -> Result<(), SnapshotError> {
        if trusted == found {
            return Ok(());
        }
        Err(SnapshotError::AnchorMismatch {
            what,
            trusted: trusted.to_string(),
            found: found.to_string(),
            origin: source,
        })
    }
}

impl fmt::Display for TrustAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.height,
            hex::encode(self.block_hash),
            hex::encode(self.state_root)
        )
    }
}

impl FromStr for TrustAnchor {
    type Err = SnapshotError;

    /// Parse `HEIGHT:BLOCK_HASH_HEX:STATE_ROOT_HEX` (decimal height, 64 hex
    /// digits each, either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &'static str| SnapshotError::InvalidAnchor {
            input: s.chars().take(MAX_ANCHOR_LEN).collect(),
            reason,
        };
        if s.len() > MAX_ANCHOR_LEN {
            return Err(bad("longer than an anchor can be"));
        }
        let mut parts = s.trim().split(':');
        let (Some(height), Some(block), Some(root), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected HEIGHT:BLOCK_HASH_HEX:STATE_ROOT_HEX"));
        };
        if height.is_empty() || !height.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the height is not a decimal number"));
        }
        let height = height
            .parse::<u64>()
            .map_err(|_| bad("the height does not fit in 64 bits"))?;
        let block_hash = hash_from_hex(block).ok_or(bad("the block hash is not 64 hex digits"))?;
        let state_root = hash_from_hex(root).ok_or(bad("the state root is not 64 hex digits"))?;
        Ok(TrustAnchor {
            height,
            block_hash,
            state_root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_text_round_trips_and_bad_text_is_refused() {
        let anchor = TrustAnchor {
            height: 50_000,
            block_hash: [0xab; 32],
            state_root: [0x01; 32],
        };
        let text = anchor.to_string();
        assert_eq!(text.parse::<TrustAnchor>().ok(), Some(anchor));
        assert_eq!(
            text.to_uppercase().parse::<TrustAnchor>().ok(),
            Some(anchor)
        );
        let (b, r) = ("ab".repeat(32), "01".repeat(32));
        for bad in [
            String::new(),
            "50000".into(),
            format!("50000:{b}"),
            format!("50000:{b}:{r}:extra"),
            format!("-1:{b}:{r}"),
            format!("+1:{b}:{r}"),
            format!("99999999999999999999:{b}:{r}"),
            format!("1:{}:{r}", "ab".repeat(31)),
            format!("1:{b}:{}", "zz".repeat(32)),
            "9".repeat(MAX_ANCHOR_LEN + 1),
        ] {
            assert!(
                matches!(
                    bad.parse::<TrustAnchor>(),
                    Err(SnapshotError::InvalidAnchor { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
