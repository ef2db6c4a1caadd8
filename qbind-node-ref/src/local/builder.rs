//! Stage one of a run, configuration: from [`LocalOptions`] to a [`Chain`]
//! — which validators run here, every validator's consensus key and stake,
//! the epoch schedule, the genesis balances, the accounts the load generator
//! spends from, the application and the consensus configuration. Nothing is
//! opened or started here.

use std::sync::Arc;

use qbind_core::application::{MonetarySettings, TransferApplication};
use qbind_core::consensus::ConsensusConfig;
use qbind_core::crypto::{KeyPair, PublicKey};
use qbind_core::execution::{ExecutionConfig, FeeSplit};
use qbind_core::monetary::{MonetaryConfig, MonetaryMode, SeigniorageRecipients};
use qbind_core::traits::Signer;
use qbind_core::types::{AccountId, Hash32, NetworkEnvironment, ValidatorId};
use qbind_core::validator::{EpochSchedule, ValidatorSet};
use tokio::sync::watch;

use super::{Keys, Load, LocalOptions, Network, pool_account, validator_key};
use crate::genesis::{Genesis, seed_accounts};
use crate::node::NodeError;
use crate::profile::Profile;

/// A run's chain, resolved and checked.
pub(super) struct Chain {
    /// The network (chain ID, domain tags).
    pub(super) env: NetworkEnvironment,
    /// The validators run in this process, ascending.
    pub(super) local: Vec<usize>,
    /// Number of validators of the network.
    pub(super) n: usize,
    /// Validator sets per epoch.
    pub(super) schedule: Arc<EpochSchedule>,
    /// Fire with an exit code when an ExitOnFailure signer fails: the
    /// current signer's and the next key's (none with DevNet keys).
    pub(super) signer_exit: Vec<watch::Receiver<Option<i32>>>,
    /// Accounts the load generator spends from.
    pub(super) accounts: Vec<KeyPair>,
    /// Genesis balances.
    pub(super) balances: Vec<(AccountId, u128)>,
    /// The genesis hash every store is bound to.
    pub(super) genesis_hash: Hash32,
    /// The reference application (VM v0 transfers with the monetary engine).
    pub(super) execution: TransferApplication,
    /// Consensus parameters.
    pub(super) cfg: ConsensusConfig,
    /// What this run's state sync did (`--state-sync-from`), if it ran.
    pub(super) state_synced: Option<crate::state_sync::StateSyncProgress>,
}

/// The validators this process runs, after checking the count and the
/// transport.
fn local_validators(opts: &LocalOptions) -> Result<Vec<usize>, NodeError> {
    let n = opts.validators;
    if n == 0 {
        return Err(NodeError::Config(
            "--local-validators must be at least 1".into(),
        ));
    }
    if let Keys::Follower { id, .. } = &opts.keys {
        if opts.only.is_some() {
            return Err(NodeError::Config(
                "a full node runs no validator (--validator-index)".into(),
            ));
        }
        if opts.network == Network::Memory {
            return Err(NodeError::Config(
                "a full node needs the KEMTLS network".into(),
            ));
        }
        return Ok(vec![*id]);
    }
    let local = match opts.only {
        None => (0..n).collect(),
        Some(i) if i < n => vec![i],
        Some(i) => {
            return Err(NodeError::Config(format!(
                "validator index {i} is not below the validator count {n}"
            )));
        }
    };
    if opts.only.is_some() && opts.network == Network::Memory {
        return Err(NodeError::Config(
            "running one validator per process needs the KEMTLS network".into(),
        ));
    }
    Ok(local)
}

/// Consensus keys and stakes, the schedule and the signers' exit signals.
type Validators = (
    Vec<(PublicKey, u64)>,
    EpochSchedule,
    Vec<watch::Receiver<Option<i32>>>,
);

/// The DevNet validators: seed keys, stake 1 each.
fn devnet_validators(n: usize) -> Result<Validators, NodeError> {
    let keys: Vec<(PublicKey, u64)> = (0..n)
        .map(|i| (validator_key(i).public_key().clone(), 1))
        .collect();
    let set = ValidatorSet::new(keys.clone())
        .map_err(|e| NodeError::Config(format!("validator set: {e}")))?;
    Ok((keys, EpochSchedule::fixed(set), Vec::new()))
}

/// The validators of a validator-set file, checked against this process's
/// signer (which must hold validator `only`'s key or a key it rotates to).
fn operator_validators(
    opts: &LocalOptions,
    env: NetworkEnvironment,
) -> Result<Validators, NodeError> {
    let (set, signer) = match &opts.keys {
        Keys::Devnet => return devnet_validators(opts.validators),
        Keys::Follower { set, id, .. } => return follower_validators(opts, env, set, *id),
        Keys::Operator { set, signer, .. } => (set, signer),
    };
    let n = opts.validators;
    if set.network != env {
        return Err(NodeError::Config(format!(
            "the validator set file is for {:?}, this node runs {env:?}",
            set.network
        )));
    }
    if set.validators.len() != n {
        return Err(NodeError::Config(format!(
            "the validator set file has {} validators, not {n}",
            set.validators.len()
        )));
    }
    let me = opts.only.ok_or_else(|| {
        NodeError::Config("a node with its own keys runs one validator (--validator-index)".into())
    })?;
    if !matches!(opts.network, Network::Kemtls { .. }) {
        return Err(NodeError::Config(
            "a node with its own keys needs the KEMTLS network".into(),
        ));
    }
    if signer.validator_id() != ValidatorId(me as u32) {
        return Err(NodeError::Config(format!(
            "the signer signs for validator {}, not {me}",
            signer.validator_id().0
        )));
    }
    let schedule = set
        .schedule()
        .map_err(|e| NodeError::Config(e.to_string()))?;
    let own = signer.public_key();
    let rotated_to = set.rotations.iter().any(|r| {
        r.event.validator_id == ValidatorId(me as u32) && r.event.new_key == own.as_bytes()
    });
    if set.validators[me].consensus_key != *own && !rotated_to {
        return Err(NodeError::Config(format!(
            "the signer's public key is neither validator {me}'s consensus key in the \
             validator set file nor a key it rotates to"
        )));
    }
    let keys = set
        .validators
        .iter()
        .map(|v| (v.consensus_key.clone(), v.stake))
        .collect();
    let mut exits = vec![signer.exit_signal()];
    exits.extend(opts.keys.next_key().map(|next| next.exit_signal()));
    Ok((keys, schedule, exits))
}

/// The validators of a full node's validator-set file; the node's id must
/// lie outside every set of the schedule, so that it is never a member.
fn follower_validators(
    opts: &LocalOptions,
    env: NetworkEnvironment,
    set: &crate::validator_set::ValidatorSetFile,
    id: usize,
) -> Result<Validators, NodeError> {
    if set.network != env {
        return Err(NodeError::Config(format!(
            "the validator set file is for {:?}, this node runs {env:?}",
            set.network
        )));
    }
    if set.validators.len() != opts.validators {
        return Err(NodeError::Config(format!(
            "the validator set file has {} validators, not {}",
            set.validators.len(),
            opts.validators
        )));
    }
    let schedule = set
        .schedule()
        .map_err(|e| NodeError::Config(e.to_string()))?;
    if id < schedule.max_validators() {
        return Err(NodeError::Config(format!(
            "full node id {id} is a validator's: full-node ids start at {}",
            schedule.max_validators()
        )));
    }
    let keys = set
        .validators
        .iter()
        .map(|v| (v.consensus_key.clone(), v.stake))
        .collect();
    Ok((keys, schedule, Vec::new()))
}

/// The reference application of `genesis`: VM v0 transfers (legacy
/// payloads on DevNet only), the genesis fee split, the monetary engine in
/// `mode` with the genesis epoch and every validator's stake (the engine's
/// `staked` input is the validator set's total stake).
fn application(
    genesis: &Genesis,
    env: NetworkEnvironment,
    validator_keys: &[(PublicKey, u64)],
    mode: MonetaryMode,
) -> TransferApplication {
    let proposer_accounts: Vec<AccountId> = validator_keys
        .iter()
        .map(|(k, _)| AccountId::from_public_key(k))
        .collect();
    let mut monetary_config = MonetaryConfig::mainnet();
    monetary_config.blocks_per_epoch = genesis.monetary.blocks_per_epoch;
    monetary_config.mode = mode;
    let mut execution = if genesis.profile == Profile::Devnet {
        ExecutionConfig::devnet()
    } else {
        ExecutionConfig::mainnet()
    };
    execution.fee_split = FeeSplit {
        burn_bps: genesis.fees.burn_bps,
        proposer_bps: genesis.fees.proposer_bps,
    };
    TransferApplication::new(env, execution, proposer_accounts.clone()).with_monetary(
        MonetarySettings {
            config: monetary_config,
            pools: SeigniorageRecipients {
                validators: pool_account(b"validators"),
                treasury: pool_account(b"treasury"),
                insurance: pool_account(b"insurance"),
                community: pool_account(b"community"),
            },
            stakes: proposer_accounts
                .iter()
                .zip(validator_keys)
                .map(|(a, (_, stake))| (*a, *stake))
                .collect(),
            staked: validator_keys.iter().map(|(_, s)| u128::from(*s)).sum(),
        },
    )
}

/// The genesis of the run: the file's, or the DevNet seed genesis; checked
/// against the profile and the keys.
fn genesis(opts: &LocalOptions) -> Result<Genesis, NodeError> {
    let genesis = match (&opts.genesis, &opts.keys) {
        (None, _) => Genesis::devnet_seeded(opts.validators, opts.accounts.max(2)),
        (Some(_), Keys::Devnet) => {
            return Err(NodeError::Config(
                "a genesis file needs validators with their own keys (--signer-mode)".into(),
            ));
        }
        (Some(g), Keys::Operator { .. } | Keys::Follower { .. }) => (**g).clone(),
    };
    if genesis.profile != opts.settings.profile {
        return Err(NodeError::Config(format!(
            "the genesis is for profile {}, this node runs {}",
            genesis.profile, opts.settings.profile
        )));
    }
    Ok(genesis)
}

/// The consensus configuration of the run.
fn consensus_config(opts: &LocalOptions, env: NetworkEnvironment) -> ConsensusConfig {
    let mut cfg = ConsensusConfig::new(env);
    cfg.tx_meta = opts
        .settings
        .fee_priority
        .then_some(qbind_core::execution::tx_meta as _);
    cfg.fee_mempool = opts.settings.fee_mempool.clone();
    cfg.payload_mode = opts.settings.payload_mode;
    cfg.base_timeout_ms = opts.base_timeout_ms;
    cfg.system_tx_activation = opts.settings.system_tx_activation;
    // An idle network proposes a few empty blocks a second, not ~100.
    cfg.idle_proposal_delay_ms = Some(IDLE_PROPOSAL_DELAY_MS);
    fit_to_channel(&mut cfg, &channel_config(env));
    cfg
}

/// How long an idle leader waits before an empty proposal (capped by the
/// core at a quarter of the base view timeout).
pub const IDLE_PROPOSAL_DELAY_MS: u64 = 250;

/// The KEMTLS channel settings of every validator connection.
pub(super) fn channel_config(env: NetworkEnvironment) -> qbind_net::ChannelConfig {
    qbind_net::ChannelConfig::new(env)
}

/// No consensus message may be larger than the channel carries: the codec's
/// message limit (and with it the sync-answer budget) is capped at the
/// channel's. Issue #18: sync answers of up to 32 MiB on a 16 MiB channel
/// cut a catching-up validator off on every reconnect.
fn fit_to_channel(cfg: &mut ConsensusConfig, channel: &qbind_net::ChannelConfig) {
    let max = u32::try_from(channel.max_message).unwrap_or(u32::MAX);
    cfg.limits.max_message_bytes = cfg.limits.max_message_bytes.min(max);
}

/// Resolve and check `opts` into the chain the run executes.
pub(super) fn resolve(opts: &LocalOptions) -> Result<Chain, NodeError> {
    let local = local_validators(opts)?;
    let genesis = genesis(opts)?;
    let env = genesis.profile.env();
    let (validator_keys, schedule, signer_exit) = operator_validators(opts, env)?;
    let accounts: Vec<KeyPair> = match &opts.settings.load {
        Load::SeedAccounts if opts.genesis.is_none() => seed_accounts(opts.accounts.max(2)),
        Load::SeedAccounts | Load::Off => Vec::new(),
        Load::Keys(keys) => keys.clone(),
    };
    let mode = opts
        .settings
        .monetary_mode
        .unwrap_or_else(|| genesis.monetary_mode());
    let execution = application(&genesis, env, &validator_keys, mode);
    Ok(Chain {
        env,
        local,
        n: opts.validators,
        schedule: Arc::new(schedule),
        signer_exit,
        accounts,
        balances: genesis.balances()?,
        genesis_hash: genesis.hash(),
        cfg: ConsensusConfig {
            block_gas_limit: Some(execution.config.block_gas_limit),
            ..consensus_config(opts, env)
        },
        execution,
        state_synced: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consensus_messages_fit_the_channel() {
        for env in [
            NetworkEnvironment::Devnet,
            NetworkEnvironment::Testnet,
            NetworkEnvironment::Mainnet,
        ] {
            let channel = channel_config(env);
            let mut cfg = ConsensusConfig::new(env);
            fit_to_channel(&mut cfg, &channel);
            assert!(cfg.limits.max_message_bytes as usize <= channel.max_message);
            // An answer's blocks plus the message around them.
            assert!(cfg.sync_answer_bytes() + (1 << 20) <= channel.max_message);
        }
    }
}
