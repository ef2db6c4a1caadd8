//! Building a run from a [`Scenario`]: keys, validator sets and their
//! schedule (epochs, key rotation), the consensus configuration, nodes.

use super::*;

impl Runner {
    /// A runner for `sc`, or at once a report with an `InvalidScenario`
    /// violation if the scenario cannot be built (e.g. a zero stake).
    pub(crate) fn new(mut sc: Scenario) -> Result<Self, Box<Report>> {
        if let Some(seed) = crate::sim::replay_seed() {
            sc.seed = seed;
        }
        let env = NetworkEnvironment::Devnet;
        let plan = plan(&sc)?;
        let keys: Vec<KeyPair> = (0..plan.slot.len()).map(validator_key).collect();
        let (schedule, new_keys, revoked) = build_schedule(&sc, &plan, &keys, env)?;
        let (cfg, workload) = build_config(&sc, env)?;
        let mut nodes: Vec<SimNode> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let behavior = sc.byzantine.iter().find(|(n, _)| *n == i).map(|(_, b)| *b);
                let faulty = sc.adversaries.iter().any(|a| adversary_node(a) == Some(i))
                    || taken_over(&plan, i);
                SimNode::new(
                    plan.slot[i],
                    key.clone(),
                    behavior,
                    behavior.is_none() && !faulty && !sc.twins.contains(&i),
                )
            })
            .collect();
        for (node, from, key) in new_keys {
            if let Some(n) = nodes.get_mut(node) {
                n.rotated_keys.push((from, key));
            }
        }
        let (system_txs, oracle) = on_chain_rotations(&sc, &plan, &mut nodes, env, &schedule)?;
        for &t in &sc.twins {
            if let (Some(k), Some(&pos)) = (keys.get(t), plan.slot.get(t)) {
                nodes.push(SimNode::new(pos, k.clone(), None, false));
            }
        }
        let known = |node: usize| node < nodes.len();
        if !sc.late_batches.iter().all(|l| known(l.from) && known(l.to)) {
            return Err(invalid(&sc, "late batches on a link of an unknown node"));
        }
        let held_keys = held_keys(&plan, &keys, revoked);
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
            schedule: Arc::new(oracle.unwrap_or_else(|| schedule.clone())),
            node_schedule: Arc::new(schedule),
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
            keep_blocks: !(sc.byzantine.is_empty()
                && sc.twins.is_empty()
                && sc.adversaries.is_empty()),
            checked_blocks: std::collections::HashSet::new(),
            high_fee_submitted: 0,
            alternates: HashMap::new(),
            adv: super::adversary::AdversaryState::new(held_keys),
            system_txs,
            sc,
        })
    }
}

/// The schedule `sc` asks for, as sets of node indices.
pub(super) struct Plan {
    /// Epoch length and, per epoch from 0, the (node, stake) members in
    /// position order.
    pub(super) sets: Vec<Vec<(usize, u64)>>,
    pub(super) epoch_length: Option<u64>,
    /// Validator id (position) of every node.
    pub(super) slot: Vec<usize>,
}

/// Check the set schedule of `sc`: every node keeps one position.
pub(super) fn plan(sc: &Scenario) -> Result<Plan, Box<Report>> {
    let mut sets = vec![sc.stakes.iter().copied().enumerate().collect::<Vec<_>>()];
    let mut epoch_length = None;
    if let Some((len, later)) = &sc.epochs {
        sets.extend(later.iter().cloned());
        epoch_length = Some(*len);
    }
    let n_all = sets
        .iter()
        .flatten()
        .map(|(node, _)| node + 1)
        .max()
        .unwrap_or(0);
    let mut slot: Vec<Option<usize>> = vec![None; n_all];
    for set in &sets {
        for (pos, (node, _)) in set.iter().enumerate() {
            match slot.get(*node).copied().flatten() {
                Some(p) if p != pos => {
                    return Err(invalid(sc, "a node at two positions (ids are positions)"));
                }
                _ => slot[*node] = Some(pos),
            }
        }
    }
    let slot = slot
        .into_iter()
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| invalid(sc, "a node index that no set names"))?;
    Ok(Plan {
        sets,
        epoch_length,
        slot,
    })
}

fn set_of(keys: &[KeyPair], members: &[(usize, u64)]) -> Option<ValidatorSet> {
    ValidatorSet::new(
        members
            .iter()
            .filter_map(|(node, stake)| keys.get(*node).map(|k| (k.public_key().clone(), *stake)))
            .collect(),
    )
    .ok()
}

/// Keys each node signs with from an epoch on (after rotations).
pub(super) type NewKeys = Vec<(usize, crate::types::Epoch, KeyPair)>;

/// The schedule of `plan` with the rotations of `sc`, the new keys of
/// rotated nodes, and the keys revoked by emergency rotations.
pub(super) fn build_schedule(
    sc: &Scenario,
    plan: &Plan,
    keys: &[KeyPair],
    env: NetworkEnvironment,
) -> Result<(EpochSchedule, NewKeys, Vec<KeyPair>), Box<Report>> {
    let mut sets = Vec::new();
    for members in &plan.sets {
        match set_of(keys, members) {
            Some(s) => sets.push(s),
            None => return Err(invalid(sc, "epoch stakes do not form a validator set")),
        }
    }
    let mut sets = sets.into_iter();
    let Some(first) = sets.next() else {
        return Err(invalid(sc, "initial stakes do not form a validator set"));
    };
    let schedule = match plan.epoch_length {
        Some(len) => EpochSchedule::with_epochs(len, first, sets.collect()),
        None => EpochSchedule::fixed(first),
    };
    if sc.rotations.is_empty() {
        return Ok((schedule, Vec::new(), Vec::new()));
    }
    if plan.epoch_length.is_none() || sc.rotations.iter().any(|r| r.effective == 0) {
        return Err(invalid(
            sc,
            "a key rotation needs epochs and an effective epoch of at least 1",
        ));
    }
    // The registry knows one key per position: a position taken over by a
    // joining node is a rotation to its key, effective when it joins.
    let mut registry = crate::key_rotation::ValidatorKeyRegistry::new();
    let mut occupant: BTreeMap<usize, usize> = BTreeMap::new();
    let mut events: Vec<(u64, usize, crate::sim::Rotation)> = Vec::new();
    for (epoch, members) in plan.sets.iter().enumerate() {
        for (pos, (node, _)) in members.iter().enumerate() {
            match occupant.insert(pos, *node) {
                None => registry.register(
                    ValidatorId(pos as u32),
                    crate::key_rotation::KeyRole::Consensus,
                    keys[*node].public_key().as_bytes().to_vec(),
                ),
                Some(prev) if prev != *node => events.push((
                    epoch as u64,
                    *node,
                    crate::sim::Rotation {
                        node: prev,
                        effective: epoch as u64,
                        grace: 0,
                        emergency: false,
                    },
                )),
                Some(_) => {}
            }
        }
    }
    let mut current: BTreeMap<usize, KeyPair> = keys.iter().cloned().enumerate().collect();
    let mut new_keys = Vec::new();
    let mut revoked = Vec::new();
    for (k, r) in sc.rotations.iter().enumerate() {
        events.push((r.effective, usize::MAX - k, *r));
    }
    events.sort_by_key(|(epoch, _, _)| *epoch);
    for (epoch, taker, r) in events {
        let (Some(old), Some(&pos)) = (current.get(&r.node).cloned(), plan.slot.get(r.node)) else {
            return Err(invalid(sc, "key rotation of an unknown node"));
        };
        // A rotation of the node itself gets a fresh key; a take-over is
        // to the joining node's key.
        let new = match keys.get(taker) {
            Some(k) => k.clone(),
            None => {
                let mut seed = [0xa5u8; 32];
                seed[..8].copy_from_slice(&(r.node as u64).to_be_bytes());
                seed[8..16].copy_from_slice(&epoch.to_be_bytes());
                KeyPair::from_seed(&seed)
            }
        };
        let event = crate::key_rotation::KeyRotationEvent {
            validator_id: ValidatorId(pos as u32),
            key_kind: crate::key_rotation::KeyRole::Consensus,
            old_key: old.public_key().as_bytes().to_vec(),
            new_key: new.public_key().as_bytes().to_vec(),
            effective_epoch: crate::types::Epoch(epoch),
            grace_epochs: r.grace,
            emergency: r.emergency,
        };
        let at = crate::types::Epoch(if r.emergency { epoch } else { epoch - 1 });
        let applied = event
            .sign(env, &old)
            .map_err(|e| e.to_string())
            .and_then(|signed| registry.apply(&signed, env, at).map_err(|e| e.to_string()));
        if applied.is_err() {
            return Err(invalid(sc, "a key rotation event does not apply"));
        }
        if keys.get(taker).is_none() {
            if r.emergency {
                revoked.push(old);
            }
            new_keys.push((r.node, crate::types::Epoch(epoch), new.clone()));
            current.insert(r.node, new);
        }
    }
    match schedule.with_key_registry(registry) {
        Ok(s) => Ok((s, new_keys, revoked)),
        Err(_) => Err(invalid(sc, "key registry")),
    }
}

/// System transactions to submit: (at ms, node, bytes).
pub(super) type SystemTxs = Vec<(u64, usize, Vec<u8>)>;

/// The system transactions of `sc`'s on-chain key rotations, each signed
/// with the node's key at that point, as (submit at ms, node, bytes); each
/// rotated node signs with its new key from the effective epoch. Also the
/// checks' own schedule: `schedule` with the rotations applied up front
/// (the nodes start from `schedule` and learn them from blocks).
fn on_chain_rotations(
    sc: &Scenario,
    plan: &Plan,
    nodes: &mut [SimNode],
    env: NetworkEnvironment,
    schedule: &EpochSchedule,
) -> Result<(SystemTxs, Option<EpochSchedule>), Box<Report>> {
    if sc.on_chain_rotations.is_empty() {
        return Ok((Vec::new(), None));
    }
    if plan.epoch_length.is_none() {
        return Err(invalid(sc, "an on-chain key rotation needs epochs"));
    }
    let mut registry = schedule.key_registry();
    let mut out = Vec::new();
    for (k, (r, at)) in sc.on_chain_rotations.iter().enumerate() {
        let (Some(n), Some(&pos)) = (nodes.get_mut(r.node), plan.slot.get(r.node)) else {
            return Err(invalid(sc, "on-chain key rotation of an unknown node"));
        };
        let old = n.rotated_keys.last().map_or(&n.key, |(_, k)| k).clone();
        let mut seed = [0x3cu8; 32];
        seed[..8].copy_from_slice(&(r.node as u64).to_be_bytes());
        seed[8..16].copy_from_slice(&(k as u64).to_be_bytes());
        let new = KeyPair::from_seed(&seed);
        let event = crate::key_rotation::KeyRotationEvent {
            validator_id: ValidatorId(pos as u32),
            key_kind: crate::key_rotation::KeyRole::Consensus,
            old_key: old.public_key().as_bytes().to_vec(),
            new_key: new.public_key().as_bytes().to_vec(),
            effective_epoch: crate::types::Epoch(r.effective),
            grace_epochs: r.grace,
            emergency: r.emergency,
        };
        let Ok(signed) = event.sign(env, &old) else {
            return Err(invalid(sc, "an on-chain key rotation did not sign"));
        };
        let lead = crate::key_rotation::MIN_ROTATION_LEAD;
        let at_epoch = crate::types::Epoch(r.effective.saturating_sub(lead));
        if registry
            .apply_scheduled(&signed, env, at_epoch, lead)
            .is_err()
        {
            return Err(invalid(sc, "an on-chain key rotation does not apply"));
        }
        n.rotated_keys
            .push((crate::types::Epoch(r.effective), new.clone()));
        n.rotated_keys.sort_by_key(|(e, _)| *e);
        let tx = crate::system_tx::SystemTx::KeyRotation(signed);
        out.push((*at, r.node, crate::codec::Encode::to_bytes(&tx)));
    }
    match schedule.clone().with_key_registry(registry) {
        Ok(oracle) => Ok((out, Some(oracle))),
        Err(_) => Err(invalid(sc, "key registry")),
    }
}

/// Whether another node takes over node `i`'s position in a later set.
/// Validator ids are positions, so such a retired node, still running,
/// believes itself a member under its successor's id (and signs with its
/// own, now refused, key): it runs on but is not checked as honest.
fn taken_over(plan: &Plan, i: usize) -> bool {
    let Some(&pos) = plan.slot.get(i) else {
        return false;
    };
    plan.sets
        .iter()
        .any(|set| set.get(pos).is_some_and(|(node, _)| *node != i))
}

/// The node an adversary runs as, if any.
pub(super) fn adversary_node(a: &crate::sim::Adversary) -> Option<usize> {
    use crate::sim::Adversary;
    match a {
        Adversary::Undersized { node }
        | Adversary::Mislabelled { node }
        | Adversary::Resources { node } => Some(*node),
        Adversary::OldKeys | Adversary::Resubmitter => None,
    }
}

/// Keys an [`Adversary::OldKeys`](crate::sim::Adversary::OldKeys) holds:
/// those of nodes missing from the last set, and revoked ones.
fn held_keys(plan: &Plan, keys: &[KeyPair], revoked: Vec<KeyPair>) -> Vec<KeyPair> {
    let last = plan.sets.last().cloned().unwrap_or_default();
    let mut held: Vec<KeyPair> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| !last.iter().any(|(n, _)| n == i))
        .map(|(_, k)| k.clone())
        .collect();
    held.extend(revoked);
    held
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
    cfg.leader_policy = sc.leader_policy;
    cfg.max_block_txs = sc.max_block_txs;
    if let Some(window) = sc.committed_window {
        cfg.committed_window = window;
    }
    cfg.idle_proposal_delay_ms = sc.idle_proposal_delay;
    cfg.sync_retry_ms = sc.base_timeout.max(50);
    Ok((cfg, workload))
}

/// When the last partition, crash, loss period or late batch link of `sc`
/// ends.
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
    for l in &sc.late_batches {
        if l.until != u64::MAX {
            heal_time = heal_time.max(l.until);
        }
    }
    heal_time
}
