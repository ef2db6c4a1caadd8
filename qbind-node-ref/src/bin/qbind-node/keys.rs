//! The keys of a validator with its own keys: the validator set (from the
//! validator-set file or the genesis), its signer (`qbind-signer`) and its
//! P2P identity (from its keystore).

use std::time::Duration;

use qbind_core::key_rotation::KeyRole;
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use qbind_node_ref::genesis::Genesis;
use qbind_node_ref::local::next_key::{self, NextKeyError};
use qbind_node_ref::local::{Keys, NextKey, validator_key};
use qbind_node_ref::validator_set::ValidatorSetFile;
use qbind_signer::keystore::{self, KdfPolicy, Passphrase};
use qbind_signer::{
    RemoteSettings, SignerFailureMode, SignerMetrics, SignerMode, SignerSettings, build_signer,
};

use crate::args::{Args, RoleArg};

/// The signer and P2P identity of a validator with its own keys.
pub(crate) async fn operator_keys(
    args: &Args,
    env: NetworkEnvironment,
    genesis: Option<&Genesis>,
) -> Result<Keys, String> {
    if let Some(genesis) = genesis {
        let set = genesis.validator_set_file().map_err(|e| e.to_string())?;
        return operator_keys_of(args, env, set).await;
    }
    let Some(path) = &args.validator_set else {
        if args.role == RoleArg::Full {
            return Err("--role full needs --genesis (or --validator-set)".into());
        }
        return Ok(Keys::Devnet);
    };
    let set = ValidatorSetFile::load(path).map_err(|e| e.to_string())?;
    operator_keys_of(args, env, set).await
}

/// The P2P identity of full node `--full-node-id` following `set`'s
/// validators (no signer: a full node signs nothing).
fn follower_keys(args: &Args, set: ValidatorSetFile) -> Result<Keys, String> {
    let id = args
        .full_node_id
        .ok_or("--role full needs --full-node-id (its id in the validators' --full-node-keys)")?;
    if id < set.validators.len() {
        return Err(format!(
            "--full-node-id {id} is a validator's id: full-node ids start at {}",
            set.validators.len()
        ));
    }
    let id_u32 = u32::try_from(id).map_err(|_| format!("--full-node-id {id} is too large"))?;
    if args.validator_index.is_some() || args.signer_mode.is_some() {
        return Err(
            "--role full runs no validator: drop --validator-index and --signer-mode".into(),
        );
    }
    let path = identity_key_path(args).ok_or(
        "--role full needs --p2p-identity-key (from qbind-keygen generate --validator-id \
         <full-node-id> --key-roles p2p-identity)",
    )?;
    let identity = p2p_identity(args, ValidatorId(id_u32), &path)?;
    if let Some(v) = set
        .validators
        .iter()
        .find(|v| v.p2p_key.as_bytes() == identity.public().as_bytes())
    {
        return Err(format!(
            "the full node's P2P identity is validator {}'s",
            v.id.0
        ));
    }
    Ok(Keys::Follower {
        set: Box::new(set),
        id,
        identity: Box::new(identity),
    })
}

/// The signer and P2P identity of validator `--validator-index` of `set`
/// (or, with `--role full`, the full node's identity).
pub(crate) async fn operator_keys_of(
    args: &Args,
    env: NetworkEnvironment,
    set: ValidatorSetFile,
) -> Result<Keys, String> {
    if args.role == RoleArg::Full {
        return follower_keys(args, set);
    }
    let index = args
        .validator_index
        .ok_or("--validator-set or --genesis needs --validator-index")?;
    if index >= set.validators.len() {
        return Err(format!(
            "--validator-index {index} is not in the validator set ({} validators)",
            set.validators.len()
        ));
    }
    let validator = ValidatorId(index as u32);
    let mode_name = args
        .signer_mode
        .as_deref()
        .ok_or("--validator-set or --genesis needs --signer-mode")?;
    let mode = SignerMode::from_cli_name(mode_name).ok_or_else(|| {
        format!(
            "unknown --signer-mode {mode_name:?} (loopback-testing, encrypted-fs, hsm-pkcs11, \
             remote-signer)"
        )
    })?;
    let failure_mode = match args.signer_failure_mode.as_deref() {
        None => SignerFailureMode::default_for(env),
        Some("exit-on-failure") => SignerFailureMode::ExitOnFailure,
        Some("log-and-continue") => SignerFailureMode::LogAndContinue,
        Some(other) => {
            return Err(format!(
                "unknown --signer-failure-mode {other:?} (exit-on-failure or log-and-continue)"
            ));
        }
    };
    let identity_key_path = identity_key_path(args)
        .ok_or("--validator-set or --genesis needs --p2p-identity-key or --signer-keystore-path")?;
    let identity = p2p_identity(args, validator, &identity_key_path)?;
    let remote = remote_settings(args, mode, identity_key_path)?;
    let settings = SignerSettings {
        mode,
        env,
        validator,
        failure_mode,
        double_sign_dir: args
            .double_sign_dir
            .clone()
            .or_else(|| args.signer_keystore_path.clone())
            .or_else(|| {
                args.data_dir
                    .as_ref()
                    .map(|d| d.join(format!("signer-{index}")))
            }),
        init_double_sign_record: args.init_double_sign_record,
        keystore_path: args.signer_keystore_path.clone(),
        passphrase_env: Some(args.signer_passphrase_env.clone()),
        passphrase_file: args.signer_passphrase_file.clone(),
        hsm_config_path: args.hsm_config_path.clone(),
        remote,
        loopback_key: Some(validator_key(index)),
    };
    let signer = build_signer(settings, SignerMetrics::shared())
        .await
        .map_err(|e| e.to_string())?;
    let next_key = match &args.next_signer_keystore_path {
        None => None,
        Some(dir) => {
            use qbind_core::traits::Signer;
            let next = NextKey::new(
                dir.clone(),
                env,
                validator,
                failure_mode,
                Some(args.signer_passphrase_env.clone()),
                args.signer_passphrase_file.clone(),
                signer.public_key().clone(),
            );
            // Not there yet: the operator generates it when a rotation is
            // planned and loads it with `qbind-admin load-next-key`. The
            // current key: a finished rotation whose keystore became the
            // current one; nothing to load. There but unusable otherwise:
            // a mistake to fix before the node runs.
            if next_key::holds_key(dir) {
                match next.load().await {
                    Ok(_) => {}
                    Err(NextKeyError::SameKey(_)) => eprintln!(
                        "qbind-node: --next-signer-keystore-path {} holds the current consensus \
                         key (a finished rotation?): not loaded; move it away before the next \
                         rotation's key goes there",
                        dir.display()
                    ),
                    Err(e) => return Err(format!("--next-signer-keystore-path: {e}")),
                }
            }
            Some(std::sync::Arc::new(next))
        }
    };
    Ok(Keys::Operator {
        set: Box::new(set),
        signer: std::sync::Arc::new(signer),
        next_key,
        identity: Box::new(identity),
    })
}

/// Where the node's P2P identity key is: `--p2p-identity-key`, else
/// `p2p_identity.key` in `--signer-keystore-path`.
pub(crate) fn identity_key_path(args: &Args) -> Option<std::path::PathBuf> {
    args.p2p_identity_key.clone().or_else(|| {
        args.signer_keystore_path
            .as_ref()
            .map(|dir| dir.join("p2p_identity.key"))
    })
}

/// The node's P2P identity from its encrypted key file.
pub(crate) fn p2p_identity(
    args: &Args,
    validator: ValidatorId,
    identity_key_path: &std::path::Path,
) -> Result<qbind_net::StaticIdentity, String> {
    let pass = Passphrase::from_file_or_env(
        args.signer_passphrase_file.as_deref(),
        &args.signer_passphrase_env,
    )
    .map_err(|e| e.to_string())?;
    let id_key = keystore::load_key_file(
        identity_key_path,
        Some(validator),
        KeyRole::P2pIdentity,
        &pass,
        &KdfPolicy::PRODUCTION,
    )
    .map_err(|e| format!("P2P identity key: {e}"))?;
    let (d, z) = id_key
        .kem_seed()
        .ok_or("the P2P identity key is not an ML-KEM key")?;
    Ok(qbind_net::StaticIdentity::from_seed(&d, &z))
}

/// The remote signer's settings (`--signer-mode remote-signer` only).
fn remote_settings(
    args: &Args,
    mode: SignerMode,
    identity_key_path: std::path::PathBuf,
) -> Result<Option<RemoteSettings>, String> {
    Ok(match mode {
        SignerMode::RemoteSigner => Some(RemoteSettings {
            url: args
                .remote_signer_url
                .clone()
                .ok_or("--signer-mode remote-signer needs --remote-signer-url")?,
            identity_key_path,
            identity_passphrase_env: args.signer_passphrase_env.clone(),
            identity_passphrase_file: args.signer_passphrase_file.clone(),
            daemon_public_key_path: args
                .remote_signer_pub
                .clone()
                .ok_or("--signer-mode remote-signer needs --remote-signer-pub")?,
            expected_consensus_pub: None,
            timeout: Duration::from_millis(args.remote_signer_timeout_ms.max(1)),
        }),
        _ => None,
    })
}
