//! Blocks known to one validator: the uncommitted tree above the last
//! committed block (the root), a bounded window of committed blocks for
//! serving catch-up requests, and orphans waiting for their parents.

use std::collections::BTreeMap;

use crate::consensus::messages::Block;
use crate::types::{Hash32, Height};

/// Maximum number of orphan blocks kept while their ancestors are fetched.
const MAX_ORPHANS: usize = 4096;

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
}

impl BlockTree {
    /// A tree whose committed chain ends with `committed` (ascending heights,
    /// non-empty: at least genesis).
    pub(crate) fn new(committed: Vec<Block>, window: usize) -> Self {
        let mut tree = BlockTree {
            pending: BTreeMap::new(),
            committed: BTreeMap::new(),
            committed_ids: BTreeMap::new(),
            orphans: BTreeMap::new(),
            orphan_count: 0,
            window: window.max(1),
        };
        for b in committed {
            tree.push_committed(b);
        }
        tree
    }

    fn push_committed(&mut self, block: Block) {
        self.committed_ids.insert(block.id(), block.height());
        self.committed.insert(block.height(), block);
        while self.committed.len() > self.window {
            if let Some((_, old)) = self.committed.pop_first() {
                self.committed_ids.remove(&old.id());
            }
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
            self.push_committed(b.clone());
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

    /// Committed blocks held in the window.
    pub(crate) fn committed_len(&self) -> usize {
        self.committed.len()
    }

    /// Orphan blocks held while their ancestors are fetched.
    pub(crate) fn orphan_len(&self) -> usize {
        self.orphan_count
    }
}
