//! Chained HotStuff as a sans-I/O state machine. The rules it implements
//! are numbered in `docs/consensus.md` (§C1–§C9); every handler names the
//! rule it carries out.
//!
//! [`HotStuff::handle`] takes the current time and one [`Input`] and returns
//! the [`Effect`]s the engine must carry out, in order. The machine never
//! performs I/O, reads a clock, or draws randomness.
//!
//! Protocol summary:
//! - the leader of view `v` (by default a stake-weighted draw over the
//!   validators active in the recent committed chain, [`leader`]) proposes a
//!   block extending its highest QC; validators vote (to the leader of
//!   `v + 1`) if the LibraBFT safety rules in [`safety`] allow it;
//! - a quorum of votes (> 2/3 of stake) forms a QC; a QC for `B` locks `B`'s
//!   parent QC, and commits `B`'s grandparent when the three views are
//!   consecutive (3-chain rule);
//! - a view that makes no progress times out: validators broadcast signed
//!   timeouts carrying their highest QC; a quorum forms a timeout certificate
//!   that moves everybody to the next view; more than a third of stake timing
//!   out in a higher view pulls a lagging validator forward; timeouts grow
//!   exponentially while views keep failing;
//! - missing blocks are fetched from peers ([`messages::SyncRequest`]) and
//!   authenticated by hash links from a verified QC; a validator far behind
//!   fetches committed blocks by height range from peers' stores
//!   ([`messages::SyncRangeRequest`], docs/sync.md);
//! - the validator set changes at epoch boundaries: the boundary block's
//!   descendants in its epoch carry no payload, and once the boundary block
//!   is committed the next epoch's first block extends it directly.

mod block_budget;
mod block_tree;
mod certs;
mod commit;
mod early_votes;
pub mod error;
pub mod evidence;
mod footprint;
mod handlers;
pub mod leader;
mod machine;
pub mod messages;
mod metrics;
mod pacemaker;
mod payload;
mod qc_latency;
mod range_sync;
pub mod safety;
pub mod serve_budget;
mod sync;
mod sync_messages;
mod votes;

pub use block_budget::{BlockBudget, BlockBudgetConfig, MAX_OUTSTANDING_PROPOSALS};
pub use block_tree::MIN_COMMITTED_WINDOW;
pub use certs::verify_quorum_cert;
pub use error::ConsensusError;
pub use evidence::Evidence;
pub use footprint::MachineFootprint;
pub use machine::{EXECUTED_ROOTS_KEPT, HotStuff, MAX_VIEW};
pub use messages::*;
pub use metrics::ConsensusMetrics;
pub use safety::{SafetyFaults, SafetyState, TimeoutRecord, VoteRefusal};

use crate::codec::{CodecLimits, DecodeError};
use crate::crypto::Signature;
use crate::traits::SignRequest;
use crate::types::{Epoch, Millis, NetworkEnvironment, ValidatorId};

/// Consensus parameters. Every validator of a network must use the same
/// protocol-relevant values (environment, limits).
#[derive(Clone, Debug)]
pub struct ConsensusConfig {
    /// The network (chain ID and domain tags).
    pub env: NetworkEnvironment,
    /// Timeout of a view that follows a successful one, in milliseconds.
    pub base_timeout_ms: u64,
    /// Timeouts double per consecutive failed view up to `2^max_timeout_exponent`.
    pub max_timeout_exponent: u32,
    /// Maximum transactions per block (the protocol bound).
    pub max_block_txs: usize,
    /// The block gas limit execution enforces, if any: a proposer puts at
    /// most this much declared gas in a block (FIFO payloads; transactions
    /// read by `tx_meta`). Without it a full pool filled blocks past the
    /// limit and execution refused the excess (issue #21).
    pub block_gas_limit: Option<u64>,
    /// How a proposer sizes its blocks below the protocol bound
    /// ([`BlockBudget`]; local to each validator, no effect on safety).
    pub block_budget: BlockBudgetConfig,
    /// FIFO mempool capacity.
    pub mempool_capacity: usize,
    /// Blocks asked for in one sync request.
    pub sync_batch: u32,
    /// Milliseconds before an unanswered sync request is retried elsewhere.
    pub sync_retry_ms: u64,
    /// Encoded bytes of blocks in one sync answer, past its first block
    /// (default 4 MiB). Answers must fit in one transport message; this
    /// also bounds what a catching-up node buffers (`MAX_IN_FLIGHT`
    /// answers). See [`ConsensusConfig::sync_answer_bytes`].
    pub sync_response_bytes: usize,
    /// Committed blocks kept in memory to serve catch-up (fetches by id
    /// of blocks near the tip; range sync is served from the store), and
    /// at most loaded from the store at a restart
    /// ([`crate::schema::Window::at_restart`]; the unexecuted blocks it
    /// leaves out are executed from the store).
    pub committed_window: usize,
    /// The committed window also holds at most about this many bytes of
    /// blocks (`Block` payloads and certificates), but never fewer than
    /// [`MIN_COMMITTED_WINDOW`] blocks: with transactions inline (FIFO
    /// payloads) 4,096 busy blocks held over a gigabyte (docs/benchmarks.md,
    /// "Memory: where the heap goes"). A restart with FIFO payloads loads
    /// within it too ([`crate::schema::Window::at_restart`]; with the DAG
    /// layer, whose restore needs them, the whole count). Default 64 MiB.
    pub committed_window_bytes: usize,
    /// Signature verification cache entries.
    pub verify_cache: usize,
    /// Decoding bounds.
    pub limits: CodecLimits,
    /// A leader with nothing to propose, above a chain with nothing left
    /// to commit, waits this long after the view began before proposing an
    /// empty block (capped at a quarter of `base_timeout_ms`); a submitted
    /// transaction or a batch certificate ends the wait. `None` (the
    /// default): propose at once. An idle four-validator network otherwise
    /// commits about 100 empty blocks a second (issue #21), each stored
    /// with its QC.
    pub idle_proposal_delay_ms: Option<u64>,
    /// Deliberate safety bugs for checker tests. Always default in production.
    pub faults: SafetyFaults,
    /// Where payloads come from: FIFO (DevNet) or the DAG (TestNet Beta,
    /// MainNet).
    pub payload_mode: crate::dag::PayloadMode,
    /// DAG parameters.
    pub dag: crate::dag::DagConfig,
    /// How to read fee fields from transaction bytes. With a decoder the
    /// machine uses the fee-priority pool ([`crate::fee_mempool`]); without
    /// one (opaque transactions) the FIFO pool.
    pub tx_meta: Option<crate::fee_mempool::TxMetaFn>,
    /// Fee-priority pool parameters (used with `tx_meta`).
    pub fee_mempool: crate::fee_mempool::FeeMempoolConfig,
    /// How the leader of a view is chosen (Consensus §C2.1, §C10); every
    /// validator of a network must use the same policy.
    pub leader_policy: leader::LeaderPolicy,
    /// Block and batch requests (`SyncRequest`, `SyncRange`, `BatchFetch`)
    /// served per second to each peer outside the current validator set
    /// (full nodes), in bursts of twice that; members are not limited
    /// ([`serve_budget`]). Default 20: a full node catching up from one
    /// validator gets about 620 blocks a second from it.
    pub serve_non_member_per_sec: u32,
    /// The first height whose system transactions (on-chain key rotations,
    /// [`crate::system_tx`]) are applied. Below it their bytes go to the
    /// application like any other transaction's, which refuses them — what
    /// a version without system transactions does — so validators that
    /// upgraded before this height and those that have not yet agree on
    /// every block below it. Every validator of a network must use the
    /// same value: on an upgraded chain, the upgrade envelope's
    /// `activation.height`; default 0 (from genesis).
    pub system_tx_activation: crate::types::Height,
}

impl ConsensusConfig {
    /// Defaults for `env`.
    #[must_use]
    pub fn new(env: NetworkEnvironment) -> Self {
        ConsensusConfig {
            env,
            base_timeout_ms: 1000,
            max_timeout_exponent: 6,
            max_block_txs: 2000,
            block_gas_limit: None,
            block_budget: BlockBudgetConfig::for_timer(1000, 2000),
            mempool_capacity: 100_000,
            sync_batch: 32,
            sync_retry_ms: 500,
            sync_response_bytes: 4 << 20,
            committed_window: 4096,
            committed_window_bytes: 64 << 20,
            verify_cache: 65_536,
            limits: CodecLimits::default(),
            idle_proposal_delay_ms: None,
            faults: SafetyFaults::default(),
            payload_mode: match env {
                NetworkEnvironment::Devnet => crate::dag::PayloadMode::Fifo,
                NetworkEnvironment::Testnet | NetworkEnvironment::Mainnet => {
                    crate::dag::PayloadMode::Dag
                }
            },
            dag: crate::dag::DagConfig::default(),
            tx_meta: None,
            fee_mempool: crate::fee_mempool::FeeMempoolConfig {
                allow_v0_payloads: env != NetworkEnvironment::Mainnet,
                ..crate::fee_mempool::FeeMempoolConfig::mainnet()
            },
            leader_policy: leader::LeaderPolicy::default(),
            serve_non_member_per_sec: 20,
            system_tx_activation: crate::types::Height(0),
        }
    }

    /// Byte budget of one sync answer past its first block:
    /// `sync_response_bytes`, and never more than half of
    /// `limits.max_message_bytes` (the rest is headroom for the message
    /// around the blocks). An embedder sets `limits.max_message_bytes` to
    /// what its transport carries in one message; an answer above that
    /// would never arrive.
    #[must_use]
    pub fn sync_answer_bytes(&self) -> usize {
        self.sync_response_bytes
            .min(self.limits.max_message_bytes as usize / 2)
            .max(1)
    }
}

/// What a signature is for, so the machine can finish the job when the
/// signature comes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignPurpose {
    /// A proposal of `block`, with the TC that let the leader enter the view.
    Proposal {
        /// The block.
        block: Box<Block>,
        /// The TC, if any.
        tc: Option<TimeoutCert>,
    },
    /// A vote on `data`, to be sent to `to`.
    Vote {
        /// The vote.
        data: VoteData,
        /// The next leader.
        to: ValidatorId,
    },
    /// A timeout carrying `high_qc`.
    Timeout {
        /// What is signed.
        data: TimeoutData,
        /// The QC to attach.
        high_qc: QuorumCert,
    },
    /// A DAG batch of ours (the digest is signed).
    Batch {
        /// The batch.
        batch: Box<crate::dag::Batch>,
    },
    /// An acknowledgement of a stored batch, to be sent to its author.
    BatchAck {
        /// The acknowledged batch.
        batch: crate::dag::BatchRef,
        /// The author.
        to: ValidatorId,
    },
}

/// A signing job: the request for the [`crate::Signer`] and what to do with
/// the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignJob {
    /// What to sign.
    pub request: SignRequest,
    /// What the signature is for.
    pub purpose: SignPurpose,
}

impl SignJob {
    /// The epoch whose keys verify the signature (so a validator whose key
    /// rotates picks the key its epoch accepts: see
    /// [`crate::validator::EpochSchedule::accepts_key`]).
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        match &self.purpose {
            SignPurpose::Proposal { block, .. } => block.epoch(),
            SignPurpose::Vote { data, .. } => data.epoch,
            SignPurpose::Timeout { data, .. } => data.epoch,
            SignPurpose::Batch { batch } => batch.epoch,
            SignPurpose::BatchAck { batch, .. } => batch.epoch,
        }
    }
}

/// Inputs to the consensus state machine.
// Each input is moved once into `handle` and consumed there; boxing the
// message variant would add an allocation per network message to save a few
// hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Input {
    /// Start (or restart) participating: enter the current view.
    Start,
    /// A decoded message from an authenticated peer.
    Message {
        /// The sender as authenticated by the transport.
        from: ValidatorId,
        /// The message.
        msg: ConsensusMsg,
    },
    /// Bytes from a peer that did not decode (counted and reported).
    Malformed {
        /// The sender.
        from: ValidatorId,
        /// Why.
        error: DecodeError,
    },
    /// Time passed; check timers.
    Tick,
    /// A signature requested by [`Effect::Sign`] is ready.
    Signed {
        /// The job.
        job: SignJob,
        /// The signature.
        signature: Signature,
    },
    /// The signer refused or failed a request of [`Effect::Sign`]: the job
    /// is given up. A batch's transactions go back to the pool and are
    /// batched again in a later slot after a pause (so a slot whose
    /// signature was lost in a crash, and that the signer's double-sign
    /// record now refuses, does not stop this validator authoring batches).
    SignFailed {
        /// The job.
        job: SignJob,
    },
    /// A transaction for the FIFO payload.
    SubmitTransaction(Vec<u8>),
    /// The embedder executed the committed block at `height` (after
    /// [`Effect::Execute`]) and the state root is `state_root`. Later
    /// proposals of this validator carry it, and proposals reporting another
    /// root for a height it executed get no vote (DESIGN "State
    /// commitment").
    Executed {
        /// The executed height.
        height: crate::types::Height,
        /// The state root after it.
        state_root: crate::types::Hash32,
    },
}

/// Effects the engine must carry out, in the order given.
#[derive(Clone, Debug)]
pub enum Effect {
    /// Write the safety state durably before carrying out any later effect.
    PersistSafety(SafetyState),
    /// Obtain a signature and feed it back as [`Input::Signed`].
    Sign(SignJob),
    /// Send to one validator.
    Send {
        /// Recipient.
        to: ValidatorId,
        /// Message.
        msg: ConsensusMsg,
    },
    /// Send to every other validator.
    Broadcast(ConsensusMsg),
    /// Store an uncommitted block durably (before any vote on it leaves);
    /// handed back to [`HotStuff::new`] after a restart.
    PersistBlock(Block),
    /// Store DAG batch data durably before acknowledging it.
    PersistBatch(crate::dag::SignedBatch),
    /// Committed transactions for execution, block by block in height order,
    /// each transaction at most once (after a restart, from the height the
    /// embedder says it executed, see [`HotStuff::restore_dag`]).
    Execute {
        /// Height of the committed block.
        height: crate::types::Height,
        /// Its id.
        block: crate::types::Hash32,
        /// Its proposer (credited with the block's fees).
        proposer: crate::types::ValidatorId,
        /// Its transactions, in order, without ones delivered before.
        txs: Vec<Vec<u8>>,
    },
    /// Answer a [`SyncRangeRequest`] from the store: send `to` a
    /// [`SyncResponse`] with the committed blocks from `from_height` up (at
    /// most `max`, newest first, as far as the store holds them). The
    /// machine names the range; the embedder reads the store, so sync serves
    /// back to the pruning horizon, not only what the machine holds in
    /// memory.
    ServeSync {
        /// Who asked.
        to: ValidatorId,
        /// The lowest height wanted.
        from_height: crate::types::Height,
        /// Blocks at most (already capped by the machine).
        max: u32,
        /// Encoded bytes at most past the first block
        /// ([`ConsensusConfig::sync_answer_bytes`]).
        max_bytes: usize,
    },
    /// Uncommitted blocks that can never be committed any more: delete them.
    ForgetBlocks(Vec<crate::types::Hash32>),
    /// DAG batch data (by digest) that no block can need any more: delete
    /// it (need not be durable; see [`crate::dag::DagEffect::ForgetBatches`]).
    ForgetBatches(Vec<crate::types::Hash32>),
    /// Keep the data of committed, delivered blocks' batches in the store
    /// for as long as the blocks (see
    /// [`crate::dag::DagEffect::ArchiveBatches`]; before the
    /// `ForgetBatches` of the same input).
    ArchiveBatches(Vec<crate::dag::ArchivedBatch>),
    /// A peer asked for batch data the DAG layer does not hold: answer from
    /// the store if it keeps it (a committed block's archived batch), with a
    /// [`crate::dag::DagMsg::Batch`] to `to`; else do nothing.
    ServeBatch {
        /// Who asked.
        to: crate::types::ValidatorId,
        /// The batch's digest.
        digest: crate::types::Hash32,
    },
    /// A block is committed (oldest first, each exactly once per run). Its
    /// uncommitted copy may be deleted in the same atomic write.
    Commit(Block),
    /// Deliver [`Input::Tick`] at or after this time.
    SetTimer(Millis),
    /// Equivocation was detected.
    Evidence(Evidence),
    /// An input was rejected (already counted in the metrics).
    Rejected {
        /// Who sent it (ourselves for local inputs).
        from: ValidatorId,
        /// Why.
        error: ConsensusError,
    },
}
