//! `qbind-node --role sentry`: the flags checked into
//! [`SentryOptions`] and the sentry run until SIGINT or SIGTERM.

use std::process::ExitCode;

use qbind_core::types::ValidatorId;
use qbind_node_ref::full_nodes::FullNodeKeys;
use qbind_node_ref::genesis::Genesis;
use qbind_node_ref::local::ChainSettings;
use qbind_node_ref::sentry::{SentryOptions, run_sentry};
use qbind_node_ref::validator_set::ValidatorSetFile;

use crate::Failure;
use crate::args::Args;

/// Largest `--sentry-validator-pub` file read (a hex ML-KEM-768 public key
/// is 2,368 characters).
const MAX_PUB_FILE: u64 = 64 << 10;

/// The validator's link key from its `.pub` file (hex).
fn link_key(path: &std::path::Path) -> Result<qbind_net::PeerPublic, String> {
    let what =
        |e: &dyn std::fmt::Display| format!("--sentry-validator-pub {}: {e}", path.display());
    let len = std::fs::metadata(path).map_err(|e| what(&e))?.len();
    if len > MAX_PUB_FILE {
        return Err(what(&format!("{len} bytes, more than {MAX_PUB_FILE}")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| what(&e))?;
    let bytes = hex::decode(text.trim()).map_err(|_| what(&"not hex"))?;
    qbind_net::PeerPublic::from_bytes(&bytes).map_err(|e| what(&e))
}

/// The flags a sentry refuses: it signs nothing, keeps no store and serves
/// no API. Checked with the other flags (before `--validate-only` reports)
/// and again here.
pub(crate) fn check_flags(args: &Args) -> Result<(), String> {
    if args.signer_mode.is_some() {
        return Err("a sentry signs nothing: drop --signer-mode".into());
    }
    let ignored = [
        ("--api-addr", args.api_addr.is_some()),
        ("--full-node-id", args.full_node_id.is_some()),
        ("--snapshot-dir", args.snapshot_dir.is_some()),
        (
            "--fast-sync-snapshot-dir",
            args.fast_sync_snapshot_dir.is_some(),
        ),
    ];
    if let Some((flag, _)) = ignored.iter().find(|(_, given)| *given) {
        return Err(format!(
            "a sentry keeps no store and serves no API: drop {flag}"
        ));
    }
    Ok(())
}

/// The sentry's options from the flags.
fn options(
    args: &Args,
    genesis: Option<&Genesis>,
    settings: &ChainSettings,
) -> Result<SentryOptions, String> {
    let set = match (genesis, &args.validator_set) {
        (Some(g), _) => g.validator_set_file().map_err(|e| e.to_string())?,
        (None, Some(path)) => ValidatorSetFile::load(path).map_err(|e| e.to_string())?,
        (None, None) => return Err("--role sentry needs --genesis (or --validator-set)".into()),
    };
    check_flags(args)?;
    let index = args
        .validator_index
        .ok_or("--role sentry needs --validator-index (the validator it fronts)")?;
    if index >= set.validators.len() {
        return Err(format!(
            "--validator-index {index} is not in the validator set ({} validators)",
            set.validators.len()
        ));
    }
    let validator = ValidatorId(index as u32);
    let link_listen = args
        .sentry_link_addr
        .ok_or("--role sentry needs --sentry-link-addr (where its validator connects)")?;
    let validator_link_key = link_key(
        args.sentry_validator_pub
            .as_deref()
            .ok_or("--role sentry needs --sentry-validator-pub (its validator's link key)")?,
    )?;
    let identity_path = crate::keys::identity_key_path(args).ok_or(
        "--role sentry needs --p2p-identity-key (the key the genesis lists as its validator's)",
    )?;
    let identity = crate::keys::p2p_identity(args, validator, &identity_path)?;
    let full_nodes = match &args.full_node_keys {
        Some(path) => {
            let file = FullNodeKeys::load(path).map_err(|e| e.to_string())?;
            file.check_against(&set).map_err(|e| e.to_string())?;
            file.peers()
        }
        None => Default::default(),
    };
    Ok(SentryOptions {
        set,
        validator,
        identity,
        validator_link_key,
        link_listen,
        listen: settings.p2p_listen,
        advertised: settings.p2p_advertised,
        bootstrap: settings.bootstrap_peers.clone(),
        full_nodes,
        diversity: settings.diversity,
        discovery: settings.discovery,
        metrics_addr: args.metrics_addr,
    })
}

/// Run the sentry until SIGINT or SIGTERM.
pub(crate) fn run(
    args: &Args,
    genesis: Option<&Genesis>,
    settings: &ChainSettings,
) -> Result<ExitCode, Failure> {
    let opts = options(args, genesis, settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if let Some(signal) = qbind_node_ref::signals::stop_signal().await {
                eprintln!("qbind-node: {signal}, stopping the sentry");
                let _ = stop_tx.send(true);
            }
        });
        println!(
            "qbind-node: {} sentry of validator {}",
            settings.profile, opts.validator.0
        );
        run_sentry(opts, stop_rx, |line| println!("{line}"))
            .await
            .map_err(|e| Failure::Usage(e.to_string()))?;
        println!("stopped: sentry");
        Ok(ExitCode::SUCCESS)
    })
}
