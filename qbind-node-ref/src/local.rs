//! A local multi-validator network in one process (`qbind-node --local-validators N`):
//! every validator has its own persistent store under the data directory,
//! runs the real engine (chained HotStuff, fee-priority pool, execution of
//! signed transfers with the state written atomically per block), and talks
//! to the others over the in-memory transport. A generator submits signed
//! transfers between funded DevNet accounts. Stopping and starting again
//! resumes from the stores.
//!
//! Keys are derived from public seeds: this is for DevNet only, and the
//! binary refuses it for any other profile.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use qbind_core::codec::Encode;
use qbind_core::consensus::{ConsensusConfig, ConsensusMetrics};
use qbind_core::crypto::KeyPair;
use qbind_core::engine::{Engine, EngineEvent, EngineExecution, EngineMonetary};
use qbind_core::execution::{
    AccountReader, BackendAccounts, ExecutionConfig, TRANSFER_PAYLOAD_V1_BYTES, Transaction,
    TransferPayload, TransferPayloadV1,
};
use qbind_core::monetary::{MonetaryConfig, MonetaryMode, SeigniorageRecipients};
use qbind_core::traits::{LocalSigner, MemoryNetwork, TokioClock};
use qbind_core::types::{AccountId, Hash32, NetworkEnvironment, ValidatorId};
use qbind_core::validator::{EpochSchedule, ValidatorSet};
use tokio::sync::{mpsc, watch};

use crate::metrics::{PromText, Renderer};
use crate::node::{Maintenance, NodeError, Services, ensure_genesis, open_store};

/// Genesis balance of every DevNet account.
pub const DEVNET_BALANCE: u128 = 1_000_000_000_000;
/// DevNet epochs are short so that issuance is visible in a short run.
pub const DEVNET_BLOCKS_PER_EPOCH: u64 = 50;

/// A DevNet pool account (treasury, insurance, ...): the hash of its name.
fn pool_account(name: &[u8]) -> AccountId {
    AccountId(*Hash32::digest(&[b"QBIND-DEVNET-POOL:".as_slice(), name].concat()).as_bytes())
}

/// Transfers a sender may have in flight before the generator skips it.
const MAX_IN_FLIGHT: u64 = 4;

/// Options of a local network run.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// Number of validators (at least 1; 4 tolerates one fault).
    pub validators: usize,
    /// Each validator's store is `data_dir/validator-<i>`.
    pub data_dir: PathBuf,
    /// Stop once every validator executed this many more blocks (0: run
    /// until shut down).
    pub blocks: u64,
    /// One signed transfer is submitted every this often.
    pub tx_interval: Duration,
    /// Funded accounts that send to each other.
    pub accounts: usize,
    /// Serve `/metrics` here.
    pub metrics_addr: Option<SocketAddr>,
    /// Snapshots and pruning, applied to every validator's store (snapshots
    /// of validator `i` go to `<snapshot_dir>/validator-<i>`).
    pub maintenance: Maintenance,
    /// Restore validator `.0`'s store from snapshot directory `.1` first.
    pub fast_sync: Option<(usize, PathBuf)>,
    /// Base view timeout.
    pub base_timeout_ms: u64,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Last executed height per validator.
    pub executed_height: Vec<u64>,
    /// State root per validator at its last executed height.
    pub state_root: Vec<Hash32>,
    /// Successful transfers executed by validator 0 in this run.
    pub transfers: u64,
    /// Transfers submitted in this run.
    pub submitted: u64,
    /// Heights at which two validators reported different state roots.
    pub root_mismatches: Vec<u64>,
    /// Height each validator started this run from (its executed marker).
    pub resumed_from: Vec<u64>,
}

fn devnet_key(role: &[u8], i: usize) -> KeyPair {
    let mut seed = [0u8; 32];
    let tag = qbind_core::types::Hash32::digest(&[role, &(i as u64).to_be_bytes()].concat());
    seed.copy_from_slice(tag.as_bytes());
    KeyPair::from_seed(&seed)
}

/// The DevNet key of validator `i`.
#[must_use]
pub fn validator_key(i: usize) -> KeyPair {
    devnet_key(b"QBIND-DEVNET-VALIDATOR", i)
}

/// The DevNet key of funded account `i`.
#[must_use]
pub fn account_key(i: usize) -> KeyPair {
    devnet_key(b"QBIND-DEVNET-ACCOUNT", i)
}

struct Shared {
    consensus: Vec<watch::Receiver<ConsensusMetrics>>,
    store: Vec<Arc<qbind_store::metrics::StoreMetrics>>,
    executed: Vec<AtomicU64>,
    transfers: Vec<AtomicU64>,
    root_mismatches: AtomicU64,
}

fn render(shared: &Shared) -> String {
    let mut p = PromText::new();
    for (i, rx) in shared.consensus.iter().enumerate() {
        let m = rx.borrow().clone();
        let v = i.to_string();
        let l = ("validator", v.as_str());
        p.counter_labeled(
            "qbind_consensus_current_view",
            "Current view.",
            l,
            m.current_view,
        );
        p.counter_labeled(
            "qbind_consensus_highest_seen_view",
            "Highest view seen in any valid message.",
            l,
            m.highest_seen_view,
        );
        p.counter_labeled(
            "qbind_consensus_view_lag",
            "Highest seen view minus current view.",
            l,
            m.highest_seen_view.saturating_sub(m.current_view),
        );
        p.counter_labeled(
            "qbind_consensus_committed_height",
            "Highest committed height.",
            l,
            m.committed_height,
        );
        p.counter_labeled(
            "qbind_consensus_blocks_committed_total",
            "Blocks committed.",
            l,
            m.blocks_committed,
        );
        p.counter_labeled(
            "qbind_consensus_equivocation_detected_total",
            "Equivocations detected.",
            l,
            m.equivocations_detected,
        );
        p.counter_labeled(
            "qbind_consensus_views_timed_out_total",
            "Views left by a timeout.",
            l,
            m.views_timed_out,
        );
        p.counter_labeled(
            "qbind_consensus_rejected_total",
            "Consensus inputs rejected.",
            l,
            m.rejected_total(),
        );
    }
    for (i, h) in shared.executed.iter().enumerate() {
        let v = i.to_string();
        p.counter_labeled(
            "qbind_execution_executed_height",
            "Highest executed height.",
            ("validator", &v),
            h.load(Ordering::Relaxed),
        );
    }
    for (i, t) in shared.transfers.iter().enumerate() {
        let v = i.to_string();
        p.counter_labeled(
            "qbind_execution_transfers_total",
            "Successful transfers executed.",
            ("validator", &v),
            t.load(Ordering::Relaxed),
        );
    }
    for (i, s) in shared.store.iter().enumerate() {
        let v = i.to_string();
        let l = ("validator", v.as_str());
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        p.counter_labeled(
            "qbind_state_size_bytes",
            "On-disk size of the state store.",
            l,
            g(&s.state_size_bytes),
        );
        p.counter_labeled(
            "qbind_state_prune_runs_total",
            "Prune steps.",
            l,
            g(&s.prune_runs),
        );
        p.counter_labeled(
            "qbind_state_prune_deleted_keys_total",
            "Entries deleted by pruning.",
            l,
            g(&s.prune_deleted_keys),
        );
        p.counter_labeled(
            "qbind_state_prune_retained_height",
            "Lowest retained height.",
            l,
            g(&s.prune_retained_height),
        );
        p.counter_labeled(
            "qbind_snapshot_created_total",
            "Snapshots created.",
            l,
            g(&s.snapshots_created),
        );
        p.counter_labeled(
            "qbind_snapshot_failed_total",
            "Snapshots failed.",
            l,
            g(&s.snapshots_failed),
        );
        p.counter_labeled(
            "qbind_snapshot_last_height",
            "Height of the newest snapshot.",
            l,
            g(&s.snapshot_last_height),
        );
    }
    p.counter(
        "qbind_execution_state_root_mismatch_total",
        "Heights at which local validators computed different state roots.",
        shared.root_mismatches.load(Ordering::Relaxed),
    );
    p.finish()
}

/// Run the local network until `blocks` more blocks are executed everywhere
/// or `shutdown` becomes true. `out` receives progress lines.
pub async fn run_local(
    opts: LocalOptions,
    mut shutdown: watch::Receiver<bool>,
    out: impl Fn(&str),
) -> Result<RunSummary, NodeError> {
    let n = opts.validators;
    if n == 0 {
        return Err(NodeError::Config(
            "--local-validators must be at least 1".into(),
        ));
    }
    let env = NetworkEnvironment::Devnet;
    let chain_id = env.chain_id().0;
    let keys: Vec<KeyPair> = (0..n).map(validator_key).collect();
    let set = ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())
        .map_err(|e| NodeError::Config(format!("validator set: {e}")))?;
    let schedule = Arc::new(EpochSchedule::fixed(set));
    let account_keys: Vec<KeyPair> = (0..opts.accounts.max(2)).map(account_key).collect();
    let account_ids: Vec<AccountId> = account_keys
        .iter()
        .map(|k| AccountId::from_public_key(k.public_key()))
        .collect();
    let genesis: Vec<(AccountId, u128)> =
        account_ids.iter().map(|id| (*id, DEVNET_BALANCE)).collect();
    let proposer_accounts: Vec<AccountId> = keys
        .iter()
        .map(|k| AccountId::from_public_key(k.public_key()))
        .collect();
    let mut monetary_config = MonetaryConfig::mainnet();
    monetary_config.blocks_per_epoch = DEVNET_BLOCKS_PER_EPOCH;
    monetary_config.mode = MonetaryMode::Active;
    let execution = EngineExecution {
        env,
        config: ExecutionConfig::devnet(),
        monetary: Some(EngineMonetary {
            config: monetary_config,
            pools: SeigniorageRecipients {
                validators: pool_account(b"validators"),
                treasury: pool_account(b"treasury"),
                insurance: pool_account(b"insurance"),
                community: pool_account(b"community"),
            },
            stakes: proposer_accounts.iter().map(|a| (*a, 1)).collect(),
            staked: DEVNET_BALANCE * opts.accounts.max(2) as u128 / 2,
        }),
        proposer_accounts,
    };
    let mut cfg = ConsensusConfig::new(env);
    cfg.tx_meta = Some(qbind_core::execution::tx_meta);
    cfg.base_timeout_ms = opts.base_timeout_ms;

    let mut stores = Vec::with_capacity(n);
    let mut services = Vec::with_capacity(n);
    let mut summary = RunSummary::default();
    for i in 0..n {
        let dir = opts.data_dir.join(format!("validator-{i}"));
        let fast = opts
            .fast_sync
            .as_ref()
            .filter(|(v, _)| *v == i)
            .map(|(_, p)| p.as_path());
        let opened = open_store(&dir, fast, chain_id)?;
        if let Some(meta) = &opened.restored_from {
            out(&format!(
                "validator {i}: fast sync from snapshot at height {} (state root {})",
                meta.height, meta.state_root
            ));
        }
        if ensure_genesis(&*opened.store, &genesis)? {
            out(&format!(
                "validator {i}: genesis written ({} accounts)",
                genesis.len()
            ));
        }
        let mut maintenance = opts.maintenance.clone();
        if let Some(s) = maintenance.snapshots.as_mut() {
            s.snapshot_dir = s.snapshot_dir.join(format!("validator-{i}"));
            s.chain_id = chain_id;
        }
        services.push(Services::start(
            Arc::clone(&opened.store),
            maintenance,
            schedule.epoch_length(),
        ));
        stores.push(opened.store);
    }

    let (stop_engines, engines_stop) = watch::channel(false);
    let (events_tx, mut events) = mpsc::unbounded_channel::<(usize, EngineEvent)>();
    let mut submit = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    let mut consensus_rx = Vec::with_capacity(n);
    for (i, transport) in MemoryNetwork::endpoints(n).into_iter().enumerate() {
        let signer = LocalSigner::new(ValidatorId(i as u32), env, keys[i].clone());
        let (tx_in, tx_out) = mpsc::unbounded_channel();
        submit.push(tx_in);
        let (m_tx, m_rx) = watch::channel(ConsensusMetrics::default());
        consensus_rx.push(m_rx);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let forward = events_tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = ev_rx.recv().await {
                if forward.send((i, ev)).is_err() {
                    break;
                }
            }
        });
        let engine = Engine::open(
            cfg.clone(),
            Arc::clone(&schedule),
            Arc::clone(&stores[i]),
            transport,
            Box::new(signer),
            TokioClock::new(),
        )?
        .with_events(ev_tx)
        .with_submissions(tx_out)
        .with_metrics(m_tx)
        .with_execution(execution.clone());
        let start = qbind_core::engine::load_persisted(&*stores[i], 1)?
            .executed
            .0;
        summary.resumed_from.push(start);
        handles.push(tokio::spawn(engine.run(engines_stop.clone())));
    }
    drop(events_tx);

    let shared = Arc::new(Shared {
        consensus: consensus_rx,
        store: services.iter().map(|s| Arc::clone(&s.metrics)).collect(),
        executed: summary
            .resumed_from
            .iter()
            .map(|h| AtomicU64::new(*h))
            .collect(),
        transfers: (0..n).map(|_| AtomicU64::new(0)).collect(),
        root_mismatches: AtomicU64::new(0),
    });
    if let Some(addr) = opts.metrics_addr {
        let listener = crate::metrics::bind(addr)
            .await
            .map_err(|source| NodeError::Io {
                what: format!("binding the metrics endpoint {addr}"),
                source,
            })?;
        let for_render = Arc::clone(&shared);
        let renderer: Renderer = Arc::new(move || render(&for_render));
        out(&format!(
            "metrics on http://{}/metrics",
            listener.local_addr().map_or(addr, |a| a)
        ));
        tokio::spawn(crate::metrics::serve(
            listener,
            renderer,
            engines_stop.clone(),
        ));
    }

    // The transfer generator: nonces resume from validator 0's executed state.
    let submitted = Arc::new(AtomicU64::new(0));
    let generator = {
        let store0 = Arc::clone(&stores[0]);
        let submitted = Arc::clone(&submitted);
        let mut stop = engines_stop.clone();
        let interval = opts.tx_interval.max(Duration::from_millis(1));
        tokio::spawn(async move {
            let reader_nonce = |id: &AccountId| {
                BackendAccounts::new(&*store0)
                    .account(id)
                    .map(|a| a.nonce)
                    .unwrap_or(0)
            };
            let mut next: Vec<u64> = account_ids.iter().map(reader_nonce).collect();
            let mut tick = tokio::time::interval(interval);
            let mut k = 0usize;
            let mut stalled = 0u32;
            let gas_limit = ExecutionConfig::devnet()
                .gas
                .transfer_gas(TRANSFER_PAYLOAD_V1_BYTES);
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tick.tick() => {}
                }
                let count = account_ids.len();
                let mut chosen = None;
                for step in 0..count {
                    let s = (k + step) % count;
                    let executed = reader_nonce(&account_ids[s]);
                    next[s] = next[s].max(executed);
                    if next[s] - executed < MAX_IN_FLIGHT {
                        chosen = Some(s);
                        break;
                    }
                }
                let s = match chosen {
                    Some(s) => s,
                    None => {
                        stalled += 1;
                        if stalled > 50 {
                            // Transfers were lost (e.g. shut down with them
                            // in a pool): resume from the executed nonces.
                            for (s, id) in account_ids.iter().enumerate() {
                                next[s] = reader_nonce(id);
                            }
                            stalled = 0;
                        }
                        continue;
                    }
                };
                stalled = 0;
                k = s + 1;
                let recipient = account_ids[(s + 1 + (next[s] as usize % (count - 1))) % count];
                let payload = TransferPayload::V1(TransferPayloadV1 {
                    recipient,
                    amount: 1 + u128::from(next[s] % 1_000),
                    gas_limit,
                    max_fee_per_gas: 1 + u128::from(next[s] % 3),
                });
                let tx = Transaction::sign(&account_keys[s], env, next[s], payload);
                next[s] += 1;
                if submit[s % submit.len()].send(tx.to_bytes()).is_err() {
                    return;
                }
                submitted.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let start_height: Vec<u64> = summary.resumed_from.clone();
    let mut roots: BTreeMap<u64, Hash32> = BTreeMap::new();
    summary.executed_height = start_height.clone();
    summary.state_root = vec![Hash32::ZERO; n];
    let done = |s: &RunSummary| {
        opts.blocks > 0
            && s.executed_height
                .iter()
                .zip(&start_height)
                .all(|(h, from)| *h >= from + opts.blocks)
    };
    let mut engine_failed = None;
    while !done(&summary) {
        let (i, ev) = tokio::select! {
            _ = shutdown.changed() => break,
            ev = events.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
        };
        if let EngineEvent::EpochClosed {
            height,
            state,
            credited,
        } = &ev
            && i == 0
        {
            out(&format!(
                "epoch {} closed at height {}: phase {:?}, annual rate {} bps, issued {} \
                 (validators {}, treasury {}, insurance {}, community {}), credited {credited}",
                state.epoch,
                height.0,
                state.phase,
                state.r_inf_annual_bps,
                state.issuance,
                state.to_validators,
                state.to_treasury,
                state.to_insurance,
                state.to_community
            ));
        }
        if let EngineEvent::Executed {
            height,
            state_root,
            succeeded,
            failed,
            rejected,
            fees,
            ..
        } = ev
        {
            summary.executed_height[i] = height.0;
            summary.state_root[i] = state_root;
            shared.executed[i].store(height.0, Ordering::Relaxed);
            shared.transfers[i].fetch_add(succeeded, Ordering::Relaxed);
            services[i].on_executed(height.0);
            match roots.get(&height.0) {
                Some(r) if *r != state_root => {
                    shared.root_mismatches.fetch_add(1, Ordering::Relaxed);
                    summary.root_mismatches.push(height.0);
                    out(&format!(
                        "STATE ROOT MISMATCH at height {}: validator {i} has {state_root:?}, another {r:?}",
                        height.0
                    ));
                }
                Some(_) => {}
                None => {
                    roots.insert(height.0, state_root);
                }
            }
            if i == 0 {
                summary.transfers += succeeded;
                let hex: String = state_root.as_bytes()[..8]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                out(&format!(
                    "height {:>6}  transfers ok {succeeded:>3} failed {failed:>2} rejected {rejected:>2}  fees {fees:>8}  state root {hex}",
                    height.0
                ));
            }
            // Keep the agreement map small.
            let floor = summary.executed_height.iter().min().copied().unwrap_or(0);
            while roots.first_key_value().is_some_and(|(h, _)| *h + 1 < floor) {
                roots.pop_first();
            }
        }
        if handles.iter().any(|h| h.is_finished()) {
            engine_failed = Some(());
            break;
        }
    }
    let _ = stop_engines.send(true);
    let _ = generator.await;
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(NodeError::Engine(e));
            }
            Err(e) => {
                first_error.get_or_insert(NodeError::Config(format!("engine task failed: {e}")));
            }
        }
    }
    for s in services {
        s.stop();
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if engine_failed.is_some() {
        return Err(NodeError::Config("an engine stopped unexpectedly".into()));
    }
    summary.submitted = submitted.load(Ordering::Relaxed);
    Ok(summary)
}
