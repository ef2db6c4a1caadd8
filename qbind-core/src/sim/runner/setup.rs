//! Building a run from a [`Scenario`]: keys, validator sets and their
//! schedule (epochs, key rotation), the consensus configuration, nodes.

use super::*;

impl Runner {
    /// A runner for `sc`, or at once a report with an `InvalidScenario`
    /// violation if the scenario cannot be built (e.g. a zero stake).
    pub(crate) fn new(mut sc: Scenario) -> Result<Self, Box<Report>> {
        if let Some(seed) = std::env::var("QBIND_SIM_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            sc.seed = seed;
        }
        let env = NetworkEnvironment::Devnet;
        let n0 = sc.stakes.len();
        let n_all = sc
            .epoch_change
            .as_ref()
            .map_or(n0, |(_, later)| n0.max(later.len()));
        let keys: Vec<KeyPair> = (0..n_all).map(validator_key).collect();
        let (schedule, rotated_key) = build_schedule(&sc, &keys, env)?;
        let (cfg, workload) = build_config(&sc, env)?;
        let mut nodes: Vec<SimNode> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let behavior = sc.byzantine.iter().find(|(n, _)| *n == i).map(|(_, b)| *b);
                SimNode::new(
                    i,
                    key.clone(),
                    behavior,
                    behavior.is_none() && !sc.twins.contains(&i),
                )
            })
            .collect();
        if let Some((node, from, key)) = rotated_key
            && let Some(n) = nodes.get_mut(node)
        {
            n.rotated_key = Some((from, key));
        }
        for &t in &sc.twins {
            if let Some(k) = keys.get(t) {
                nodes.push(SimNode::new(t, k.clone(), None, false));
            }
        }
        if let Some(w) = &workload {
            for n in &mut nodes {
                if TransferApplication::write_genesis(&n.store, w.genesis()).is_err() {
                    return Err(invalid(&sc, "transfer genesis"));
                }
            }
        }
        let proposer_accounts = keys
            .iter()
            .map(crate::sim::transfers::proposer_account)
            .collect();
        let genesis = Block::genesis(env.chain_id()).id();
        let heal_time = heal_time(&sc);
        let checker = Checker::new(genesis, nodes.len());
        let rng = ChaCha8Rng::seed_from_u64(sc.seed);
        Ok(Runner {
            env,
            cfg,
            schedule: Arc::new(schedule),
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            nodes,
            checker,
            log: Sha3_256::new(),
            proposed_at: HashMap::new(),
            processed: 0,
            delivered: 0,
            evidence: 0,
            rejected: BTreeMap::new(),
            workload,
            proposer_accounts,
            heal_time,
            heal_view: None,
            seen_blocks: HashMap::new(),
            checked_blocks: std::collections::HashSet::new(),
            high_fee_submitted: 0,
            alternates: HashMap::new(),
            sc,
        })
    }
}

/// The validator sets of `sc` (with its epoch change) and the key rotation
/// it asks for: the schedule and the rotated node with its new key.
#[allow(clippy::type_complexity)]
fn build_schedule(
    sc: &Scenario,
    keys: &[KeyPair],
    env: NetworkEnvironment,
) -> Result<(EpochSchedule, Option<(usize, crate::types::Epoch, KeyPair)>), Box<Report>> {
    let Some(first) = make_set(keys, &sc.stakes) else {
        return Err(invalid(sc, "initial stakes do not form a validator set"));
    };
    let schedule = match &sc.epoch_change {
        Some((len, later)) => match make_set(keys, later) {
            Some(set) => EpochSchedule::with_epochs(*len, first, vec![set]),
            None => return Err(invalid(sc, "epoch stakes do not form a validator set")),
        },
        None => EpochSchedule::fixed(first),
    };
    let mut rotated_key = None;
    let schedule = match sc.key_rotation {
        None => schedule,
        Some((node, effective, grace)) => {
            let Some(old) = keys.get(node) else {
                return Err(invalid(sc, "key rotation of an unknown node"));
            };
            if sc.epoch_change.is_none() || effective == 0 {
                return Err(invalid(
                    sc,
                    "a key rotation needs epochs and an effective epoch of at least 1",
                ));
            }
            let new = KeyPair::from_seed(&[0xa5; 32]);
            let mut registry = crate::key_rotation::ValidatorKeyRegistry::new();
            for (i, k) in keys.iter().enumerate() {
                registry.register(
                    ValidatorId(i as u32),
                    crate::key_rotation::KeyRole::Consensus,
                    k.public_key().as_bytes().to_vec(),
                );
            }
            let event = crate::key_rotation::KeyRotationEvent {
                validator_id: ValidatorId(node as u32),
                key_kind: crate::key_rotation::KeyRole::Consensus,
                old_key: old.public_key().as_bytes().to_vec(),
                new_key: new.public_key().as_bytes().to_vec(),
                effective_epoch: crate::types::Epoch(effective),
                grace_epochs: grace,
                emergency: false,
            };
            let applied = event
                .sign(env, old)
                .map_err(|e| e.to_string())
                .and_then(|signed| {
                    registry
                        .apply(&signed, env, crate::types::Epoch(effective - 1))
                        .map_err(|e| e.to_string())
                });
            if applied.is_err() {
                return Err(invalid(sc, "the key rotation event does not apply"));
            }
            rotated_key = Some((node, crate::types::Epoch(effective), new));
            match schedule.with_key_registry(registry) {
                Ok(s) => s,
                Err(_) => return Err(invalid(sc, "key registry")),
            }
        }
    };
    Ok((schedule, rotated_key))
}

/// The consensus configuration for `sc`, and its transfer workload.
fn build_config(
    sc: &Scenario,
    env: NetworkEnvironment,
) -> Result<(ConsensusConfig, Option<crate::sim::transfers::Workload>), Box<Report>> {
    let mut cfg = ConsensusConfig::new(env);
    if sc.dag {
        cfg.payload_mode = crate::dag::PayloadMode::Dag;
        // Fewer, larger batches: each costs n signatures and a quorum of
        // verifications, which dominate simulated CPU.
        cfg.dag.batch_interval_ms = 50;
        cfg.dag.fetch_retry_ms = sc.base_timeout.max(50);
    }
    let workload = match sc.transfers {
        Some(_) if sc.fee_pool.is_some() => {
            return Err(invalid(
                sc,
                "transfers and mempool_flood cannot be combined",
            ));
        }
        Some(t) => match crate::sim::transfers::Workload::new(t) {
            Ok(w) => {
                cfg.tx_meta = Some(crate::execution::tx_meta);
                cfg.fee_mempool = crate::fee_mempool::FeeMempoolConfig {
                    allow_v0_payloads: false,
                    ..crate::fee_mempool::FeeMempoolConfig::mainnet()
                };
                Some(w)
            }
            Err(why) => return Err(invalid(sc, why)),
        },
        None => None,
    };
    if let Some(f) = sc.fee_pool {
        cfg.tx_meta = Some(crate::sim::simtx::meta);
        cfg.fee_mempool = crate::fee_mempool::FeeMempoolConfig {
            capacity: f.capacity,
            max_per_sender: 16,
            eviction_mode: crate::fee_mempool::EvictionMode::Enforce,
            max_evictions_per_interval: f.max_evictions,
            eviction_interval_ms: f.interval_ms,
            replacement_bump_bps: 1_000,
            allow_v0_payloads: false,
        };
    }
    cfg.base_timeout_ms = sc.base_timeout;
    cfg.max_block_txs = sc.max_block_txs;
    cfg.sync_retry_ms = sc.base_timeout.max(50);
    Ok((cfg, workload))
}

/// When the last partition, crash or loss period of `sc` ends.
fn heal_time(sc: &Scenario) -> u64 {
    let mut heal_time = 0;
    for p in &sc.partitions {
        heal_time = heal_time.max(p.heal);
    }
    for c in &sc.crashes {
        heal_time = heal_time.max(c.restart.unwrap_or(c.at));
    }
    if sc.loss > 0.0 && sc.loss_until != u64::MAX {
        heal_time = heal_time.max(sc.loss_until);
    }
    heal_time
}
