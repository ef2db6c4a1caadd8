//! Stage one of a run, configuration: from [`LocalOptions`] to a [`Chain`]
//! — which validators run here, every validator's consensus key and stake,
//! the epoch schedule, the genesis balances, the accounts the load generator
//! spends from, the application and the consensus configuration. Nothing is
//! opened or started here.

use std::sync::Arc;

use qbind_core::application::{MonetarySettings, TransferApplication};
use qbind_core::consensus::ConsensusConfig;
use qbind_core::crypto::{KeyPair, PublicKey};
use qbind_core::execution::ExecutionConfig;
use qbind_core::monetary::{MonetaryConfig, MonetaryMode, SeigniorageRecipients};
use qbind_core::traits::Signer;
use qbind_core::types::{AccountId, NetworkEnvironment, ValidatorId};
use qbind_core::validator::{EpochSchedule, ValidatorSet};
use tokio::sync::watch;

use super::{
    DEVNET_BALANCE, DEVNET_BLOCKS_PER_EPOCH, Keys, LocalOptions, Network, account_key,
    pool_account, validator_key,
};
use crate::node::NodeError;

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
    /// Fires with an exit code when an ExitOnFailure signer fails.
    pub(super) signer_exit: Option<watch::Receiver<Option<i32>>>,
    /// Accounts the load generator spends from.
    pub(super) accounts: Vec<KeyPair>,
    /// Genesis balances.
    pub(super) genesis: Vec<(AccountId, u128)>,
    /// The reference application (VM v0 transfers with the monetary engine).
    pub(super) execution: TransferApplication,
    /// Consensus parameters.
    pub(super) cfg: ConsensusConfig,
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

/// Consensus keys and stakes, the schedule and the signer's exit signal.
type Validators = (
    Vec<(PublicKey, u64)>,
    EpochSchedule,
    Option<watch::Receiver<Option<i32>>>,
);

/// The DevNet validators: seed keys, stake 1 each.
fn devnet_validators(n: usize) -> Result<Validators, NodeError> {
    let keys: Vec<(PublicKey, u64)> = (0..n)
        .map(|i| (validator_key(i).public_key().clone(), 1))
        .collect();
    let set = ValidatorSet::new(keys.clone())
        .map_err(|e| NodeError::Config(format!("validator set: {e}")))?;
    Ok((keys, EpochSchedule::fixed(set), None))
}

/// The validators of a validator-set file, checked against this process's
/// signer (which must hold validator `only`'s key or a key it rotates to).
fn operator_validators(
    opts: &LocalOptions,
    env: NetworkEnvironment,
) -> Result<Validators, NodeError> {
    let Keys::Operator { set, signer, .. } = &opts.keys else {
        return devnet_validators(opts.validators);
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
    Ok((keys, schedule, Some(signer.exit_signal())))
}

/// The DevNet application: VM v0 transfers with the legacy payloads, the
/// monetary engine Active with short epochs.
fn devnet_application(
    env: NetworkEnvironment,
    validator_keys: &[(PublicKey, u64)],
    accounts: usize,
) -> TransferApplication {
    let proposer_accounts: Vec<AccountId> = validator_keys
        .iter()
        .map(|(k, _)| AccountId::from_public_key(k))
        .collect();
    let mut monetary_config = MonetaryConfig::mainnet();
    monetary_config.blocks_per_epoch = DEVNET_BLOCKS_PER_EPOCH;
    monetary_config.mode = MonetaryMode::Active;
    TransferApplication::new(env, ExecutionConfig::devnet(), proposer_accounts.clone())
        .with_monetary(MonetarySettings {
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
            staked: DEVNET_BALANCE * accounts as u128 / 2,
        })
}

/// Resolve and check `opts` into the chain the run executes.
pub(super) fn resolve(opts: &LocalOptions) -> Result<Chain, NodeError> {
    let local = local_validators(opts)?;
    let env = NetworkEnvironment::Devnet;
    let (validator_keys, schedule, signer_exit) = operator_validators(opts, env)?;
    let accounts: Vec<KeyPair> = (0..opts.accounts.max(2)).map(account_key).collect();
    let genesis = accounts
        .iter()
        .map(|k| (AccountId::from_public_key(k.public_key()), DEVNET_BALANCE))
        .collect();
    let execution = devnet_application(env, &validator_keys, opts.accounts.max(2));
    let mut cfg = ConsensusConfig::new(env);
    cfg.tx_meta = Some(qbind_core::execution::tx_meta);
    cfg.base_timeout_ms = opts.base_timeout_ms;
    Ok(Chain {
        env,
        local,
        n: opts.validators,
        schedule: Arc::new(schedule),
        signer_exit,
        accounts,
        genesis,
        execution,
        cfg,
    })
}
