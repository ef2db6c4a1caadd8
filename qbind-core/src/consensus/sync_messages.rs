//! Catch-up messages and their canonical encodings (layouts in
//! `docs/wire-format.md`, frozen by `tests/golden.rs`): block fetch by id,
//! block ranges by height, and the answer to both.

use super::messages::Block;
use crate::codec::{Decode, DecodeError, Encode, Reader, decode_seq, encode_seq};
use crate::types::{Hash32, Height};

/// A request for a block and up to `max_blocks - 1` of its ancestors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncRequest {
    /// The newest block wanted.
    pub block_id: Hash32,
    /// How many blocks at most, walking parent links backwards.
    pub max_blocks: u32,
}

impl Encode for SyncRequest {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.block_id.encode_to(out);
        self.max_blocks.encode_to(out);
    }
}

impl Decode for SyncRequest {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SyncRequest {
            block_id: Hash32::decode_from(r)?,
            max_blocks: r.u32()?,
        })
    }
}

/// A request for committed blocks by height (block sync from the store,
/// issue #18): the committed block at `from_height` and up to
/// `max_blocks - 1` above it. Answered with a [`SyncResponse`] whose oldest
/// block is at `from_height`; the responder reads them from its store,
/// back to its pruning horizon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncRangeRequest {
    /// The lowest height wanted.
    pub from_height: Height,
    /// How many blocks at most, walking heights upwards.
    pub max_blocks: u32,
}

impl Encode for SyncRangeRequest {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.from_height.encode_to(out);
        self.max_blocks.encode_to(out);
    }
}

impl Decode for SyncRangeRequest {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SyncRangeRequest {
            from_height: Height::decode_from(r)?,
            max_blocks: r.u32()?,
        })
    }
}

/// Blocks answering a [`SyncRequest`], newest first. Each block is
/// authenticated by the QC its child (or the requester) holds for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncResponse {
    /// The blocks, newest first.
    pub blocks: Vec<Block>,
}

impl Encode for SyncResponse {
    fn encode_to(&self, out: &mut Vec<u8>) {
        encode_seq(&self.blocks, out);
    }
}

/// Smallest possible encoding of a block (header + empty QC + empty payload).
const MIN_BLOCK_BYTES: usize =
    8 + 8 + 8 + 32 + 8 + 4 + 32 + 32 + 8 + 32 + (8 + 8 + 32 + 4 + 4) + 1 + 4;

impl Decode for SyncResponse {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let max = r.limits().max_sync_blocks;
        Ok(SyncResponse {
            blocks: decode_seq(r, "sync blocks", max, MIN_BLOCK_BYTES)?,
        })
    }
}
