//! A hook that sees every running honest node's memory and store during a
//! run, and may act on the store as a node's background tasks do (a
//! production pruner, for example): long runs use it to check that memory
//! and stored bytes stay flat with the production code paths in place.

use std::fmt;
use std::sync::Arc;

use crate::consensus::MachineFootprint;
use crate::traits::MemoryBackend;
use crate::types::Height;

/// One running honest node, as a [`Maintenance`] hook sees it.
pub struct NodeSample<'a> {
    /// Node index.
    pub node: usize,
    /// Simulated time, in ms.
    pub now: u64,
    /// Its committed height.
    pub committed: Height,
    /// Highest height it delivered for execution.
    pub executed: Height,
    /// What its state machine holds in memory.
    pub machine: MachineFootprint,
    /// Its store (shared with the running replica: writes are seen by it,
    /// as a background task's writes are in a real node).
    pub store: &'a MemoryBackend,
}

/// A hook called every few simulated milliseconds for each running honest
/// node ([`crate::sim::Scenario::maintenance`]).
#[derive(Clone)]
pub struct Maintenance(pub Arc<dyn Fn(&NodeSample<'_>) + Send + Sync>);

impl Maintenance {
    /// Wrap a closure.
    pub fn new(hook: impl Fn(&NodeSample<'_>) + Send + Sync + 'static) -> Self {
        Maintenance(Arc::new(hook))
    }
}

impl fmt::Debug for NodeSample<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeSample")
            .field("node", &self.node)
            .field("now", &self.now)
            .field("committed", &self.committed)
            .field("executed", &self.executed)
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Maintenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Maintenance(..)")
    }
}
