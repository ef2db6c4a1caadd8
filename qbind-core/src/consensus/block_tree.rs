//! Blocks known to one validator: the uncommitted tree above the last
//! committed block (the root), a bounded window of committed blocks for
//! serving catch-up requests, and orphans waiting for their parents.

use std::collections::BTreeMap;

use crate::consensus::messages::Block;
use crate::types::{Hash32, Height};

/// Maximum number of orphan blocks kept while their ancestors are fetched.
const MAX_ORPHANS: usize = 4096;

/// The committed blocks kept in memory however large they are (the byte
/// budget, [`crate::consensus::ConsensusConfig::committed_window_bytes`],
/// never cuts the window below this, nor below the count limit): enough for
/// fetches by id near the tip, which range sync takes over from 8 blocks
/// behind.
pub const MIN_COMMITTED_WINDOW: usize = 64;

/// The block store of one validator.
#[derive(Debug)]
pub(crate) struct BlockTree {
    /// Uncommitted blocks that descend from the root, by id.
    pending: BTreeMap<Hash32, Block>,
    /// Committed blocks by height (a bounded window ending at the root).
    committed: BTreeMap<Height, Block>,
    /// Committed block ids to heights (same window).
    committed_ids: BTreeMap<Hash32, Height>,
    /// Blocks waiting for a missing block (parent or certified block), by
    /// the missing block's id.
    orphans: BTreeMap<Hash32, Vec<Block>>,
    orphan_count: usize,
    window: usize,
    /// The byte budget of the committed window while running.
    window_bytes: usize,
    /// [`Block::held_bytes`] of the committed window.
    committed_bytes: usize,
}

impl BlockTree {
    /// A tree whose committed chain ends with `committed` (ascending heights,
    /// non-empty: at least genesis).
    /// The committed blocks are kept whatever their size (at most `window`
    /// of them): after a restart they are what is delivered again for
    /// execution. From the first commit on, `window_bytes` applies too.
    pub(crate) fn new(committed: Vec<Block>, window: usize, window_bytes: usize) -> Self {
        let mut tree = BlockTree {
            pending: BTreeMap::new(),
            committed: BTreeMap::new(),
            committed_ids: BTreeMap::new(),
            orphans: BTreeMap::new(),
            orphan_count: 0,
            window: window.max(1),
            window_bytes,
            committed_bytes: 0,
        };
        for b in committed {
            tree.push_committed(b, false);
        }
        tree
    }

    /// Add `block` to the committed window and drop the oldest blocks above
    /// the count limit and, with `budget`, above the byte budget.
    fn push_committed(&mut self, block: Block, budget: bool) {
        self.committed_bytes = self.committed_bytes.saturating_add(block.held_bytes());
        self.committed_ids.insert(block.id(), block.height());
        let id = block.id();
        if let Some(replaced) = self.committed.insert(block.height(), block) {
            self.committed_bytes = self.committed_bytes.saturating_sub(replaced.held_bytes());
            if replaced.id() != id {
                self.committed_ids.remove(&replaced.id());
            }
        }
        self.trim(budget);
    }

    /// Drop the oldest committed blocks above the count limit and, with
    /// `budget`, above the byte budget (down to [`MIN_COMMITTED_WINDOW`]).
    fn trim(&mut self, budget: bool) {
        let floor = MIN_COMMITTED_WINDOW.min(self.window);
        while self.committed.len() > self.window
            || (budget && self.committed_bytes > self.window_bytes && self.committed.len() > floor)
        {
            let Some((_, old)) = self.committed.pop_first() else {
                break;
            };
            self.committed_ids.remove(&old.id());
            self.committed_bytes = self.committed_bytes.saturating_sub(old.held_bytes());
        }
    }

    /// The last committed block.
    pub(crate) fn root(&self) -> Option<&Block> {
        self.committed.values().next_back()
    }

    /// Height of the last committed block.
    pub(crate) fn committed_height(&self) -> Height {
        self.root().map(Block::height).unwrap_or_default()
    }

    /// A block by id, committed (in the window) or pending.
    pub(crate) fn get(&self, id: &Hash32) -> Option<&Block> {
        self.pending.get(id).or_else(|| {
            self.committed_ids
                .get(id)
                .and_then(|h| self.committed.get(h))
        })
    }

    /// Whether `id` is a committed block in the window.
    pub(crate) fn is_committed(&self, id: &Hash32) -> bool {
        self.committed_ids.contains_key(id)
    }

    /// The committed blocks in the window, ascending.
    pub(crate) fn committed_blocks(&self) -> Vec<Block> {
        self.committed.values().cloned().collect()
    }

    /// Whether a block with this id is known (committed or pending).
    pub(crate) fn contains(&self, id: &Hash32) -> bool {
        self.get(id).is_some()
    }

    /// Insert a validated block whose parent is known and which extends the
    /// root. Returns orphans that can now be inserted (their parent arrived).
    pub(crate) fn insert(&mut self, block: Block) -> Vec<Block> {
        let id = block.id();
        self.pending.insert(id, block);
        match self.orphans.remove(&id) {
            Some(children) => {
                self.orphan_count -= children.len();
                children
            }
            None => Vec::new(),
        }
    }

    /// Keep a block until block `missing` (its parent, or the block its
    /// QC certifies) is inserted.
    pub(crate) fn add_orphan(&mut self, block: Block, missing: Hash32) {
        if self.orphan_count >= MAX_ORPHANS || self.contains(&block.id()) {
            return;
        }
        let list = self.orphans.entry(missing).or_default();
        if list.iter().all(|b| b.id() != block.id()) {
            list.push(block);
            self.orphan_count += 1;
        }
    }

    /// Whether `ancestor` is `id` or one of its ancestors (walking pending
    /// blocks and the committed window).
    pub(crate) fn extends(&self, id: &Hash32, ancestor: &Hash32) -> bool {
        let mut cur = *id;
        loop {
            if cur == *ancestor {
                return true;
            }
            match self.get(&cur) {
                Some(b) if b.height().0 > 0 => cur = b.parent_id(),
                _ => return false,
            }
        }
    }

    /// Move the chain from the root (exclusive) to `target` (inclusive) into
    /// the committed window and return it, oldest first, with the ids of
    /// pending blocks dropped because they do not descend from the new root.
    /// `target` must be a pending descendant of the root.
    pub(crate) fn commit_to(&mut self, target: &Hash32) -> (Vec<Block>, Vec<Hash32>) {
        let root_id = match self.root() {
            Some(r) => r.id(),
            None => return (Vec::new(), Vec::new()),
        };
        let mut chain = Vec::new();
        let mut cur = *target;
        while cur != root_id {
            match self.pending.get(&cur) {
                Some(b) => {
                    chain.push(b.clone());
                    cur = b.parent_id();
                }
                None => return (Vec::new(), Vec::new()),
            }
        }
        chain.reverse();
        for b in &chain {
            self.pending.remove(&b.id());
            self.push_committed(b.clone(), true);
        }
        let new_root = *target;
        let new_height = self.committed_height();
        // Prune: keep only pending blocks above the new root that extend it.
        let keep: Vec<Hash32> = self
            .pending
            .values()
            .filter(|b| b.height() > new_height)
            .map(Block::id)
            .filter(|id| self.extends(id, &new_root))
            .collect();
        let mut kept = BTreeMap::new();
        for id in keep {
            if let Some(b) = self.pending.remove(&id) {
                kept.insert(id, b);
            }
        }
        let dropped: Vec<Hash32> = std::mem::replace(&mut self.pending, kept)
            .into_keys()
            .collect();
        self.orphans.retain(|_, list| {
            list.retain(|b| b.height() > new_height);
            !list.is_empty()
        });
        self.orphan_count = self.orphans.values().map(Vec::len).sum();
        (chain, dropped)
    }

    /// Up to `max` blocks starting at `id` and walking parents backwards.
    pub(crate) fn chain_from(&self, id: &Hash32, max: usize) -> Vec<Block> {
        let mut out = Vec::new();
        let mut cur = *id;
        while out.len() < max {
            match self.get(&cur) {
                Some(b) => {
                    out.push(b.clone());
                    if b.height().0 == 0 {
                        break;
                    }
                    cur = b.parent_id();
                }
                None => break,
            }
        }
        out
    }

    /// Height of the highest block held (pending or committed).
    pub(crate) fn highest_height(&self) -> Height {
        self.pending
            .values()
            .map(Block::height)
            .max()
            .unwrap_or_default()
            .max(self.committed_height())
    }

    /// Number of pending (uncommitted) blocks.
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Apply the byte budget to the committed window now (after the blocks
    /// loaded at start were handed on for delivery).
    pub(crate) fn apply_window_budget(&mut self) {
        self.trim(true);
    }

    /// Committed blocks held in the window.
    pub(crate) fn committed_len(&self) -> usize {
        self.committed.len()
    }

    /// [`Block::held_bytes`] of the committed window.
    pub(crate) fn committed_bytes(&self) -> usize {
        self.committed_bytes
    }

    /// Orphan blocks held while their ancestors are fetched.
    pub(crate) fn orphan_len(&self) -> usize {
        self.orphan_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::messages::{BlockHeader, Payload};
    use crate::types::{ChainId, Epoch, ValidatorId, View};

    /// A child of `parent` carrying `txs` transactions of `tx_bytes` each
    /// (the certificate is the genesis one: the tree does not check it).
    fn child(parent: &Block, txs: usize, tx_bytes: usize) -> Block {
        let height = parent.height().next();
        let header = BlockHeader {
            epoch: Epoch(0),
            view: View(height.0),
            height,
            parent_id: parent.id(),
            justify_view: View(0),
            proposer: ValidatorId(0),
            payload_digest: Hash32::default(),
            batch_commitment: Hash32::default(),
            exec_height: Height(0),
            exec_state_root: Hash32::default(),
        };
        let payload = Payload::Transactions(vec![vec![height.0 as u8; tx_bytes]; txs]);
        Block::new(header, parent.justify().clone(), payload)
    }

    fn chain(len: usize, txs: usize, tx_bytes: usize) -> Vec<Block> {
        let mut blocks = vec![Block::genesis(ChainId(7))];
        for _ in 0..len {
            let next = child(blocks.last().expect("genesis"), txs, tx_bytes);
            blocks.push(next);
        }
        blocks
    }

    /// Commit `blocks` one at a time onto `tree`.
    fn commit_each(tree: &mut BlockTree, blocks: &[Block]) {
        for b in blocks {
            let id = b.id();
            let _ = tree.insert(b.clone());
            let (committed, _) = tree.commit_to(&id);
            assert_eq!(committed.len(), 1);
        }
    }

    /// Large blocks (40 transactions of 4 KB: a busy FIFO block) stop
    /// filling the window at its byte budget, but the last
    /// MIN_COMMITTED_WINDOW blocks stay whatever their size; small blocks
    /// fill it to its count limit. Before the budget, 4,096 large blocks
    /// stayed (~670 MB).
    #[test]
    fn the_committed_window_holds_a_byte_budget_while_running() {
        let big = chain(300, 40, 4_000);
        let one = big[1].held_bytes();
        assert!(one > 160_000, "{one}");

        let budget = 100 * one;
        let mut tree = BlockTree::new(vec![big[0].clone()], 4_096, budget);
        commit_each(&mut tree, &big[1..]);
        assert_eq!(tree.committed_len(), 100);
        assert!(tree.committed_bytes() <= budget);
        assert_eq!(tree.committed_bytes(), 100 * one);
        assert_eq!(tree.committed_height(), Height(300));
        // The newest stay: a fetch by id near the tip is served.
        assert!(tree.contains(&big[300].id()) && tree.contains(&big[201].id()));
        assert!(!tree.contains(&big[200].id()));

        // A budget below MIN_COMMITTED_WINDOW blocks keeps that many.
        let mut tight = BlockTree::new(vec![big[0].clone()], 4_096, one);
        commit_each(&mut tight, &big[1..]);
        assert_eq!(tight.committed_len(), MIN_COMMITTED_WINDOW);
        // And the count limit still applies below it.
        let mut few = BlockTree::new(vec![big[0].clone()], 10, one);
        commit_each(&mut few, &big[1..]);
        assert_eq!(few.committed_len(), 10);

        // Empty blocks fill the window to its count.
        let small = chain(300, 0, 0);
        let mut tree = BlockTree::new(vec![small[0].clone()], 200, 64 << 20);
        commit_each(&mut tree, &small[1..]);
        assert_eq!(tree.committed_len(), 200);
        assert_eq!(tree.committed_bytes(), 200 * small[1].held_bytes());
    }

    /// The blocks a restarted validator loads are all kept (up to the
    /// count): the ones it had not executed are delivered again from them.
    /// The budget applies from the next commit, or once they were handed
    /// on (`HotStuff::restore_dag`).
    #[test]
    fn blocks_loaded_at_start_are_kept_whatever_their_size() {
        let big = chain(200, 40, 4_000);
        let one = big[1].held_bytes();
        let mut tree = BlockTree::new(big[..200].to_vec(), 4_096, 10 * one);
        assert_eq!(tree.committed_len(), 200);
        assert_eq!(
            tree.committed_bytes(),
            big[..200].iter().map(Block::held_bytes).sum::<usize>()
        );
        commit_each(&mut tree, &big[200..]);
        assert_eq!(tree.committed_len(), MIN_COMMITTED_WINDOW);
        assert_eq!(tree.committed_bytes(), MIN_COMMITTED_WINDOW * one);
        // Or once the restored blocks were handed on for delivery.
        let mut restored = BlockTree::new(big[..200].to_vec(), 4_096, 10 * one);
        restored.apply_window_budget();
        assert_eq!(restored.committed_len(), MIN_COMMITTED_WINDOW);
        assert!(restored.contains(&big[199].id()) && !restored.contains(&big[100].id()));
    }
}
