//! The effective configuration: the profile's preset with the flags
//! applied ([`chain_settings`]), what the MainNet checks look at
//! ([`node_config`]) and the checks themselves ([`validate`]).

use std::process::ExitCode;

use qbind_node_ref::config::{NodeConfig, NodeRole, validate_mainnet_invariants};
use qbind_node_ref::genesis::{Genesis, load_account_keys, monetary_mode_named};
use qbind_node_ref::local::{ChainSettings, Load};
use qbind_node_ref::profile::Profile;

use crate::Failure;
use crate::args::{Args, RoleArg};

/// Parse an off/warn/enforce flag value.
fn mode_named<T>(flag: &str, value: &str, [off, warn, enforce]: [T; 3]) -> Result<T, String> {
    match value {
        "off" => Ok(off),
        "warn" => Ok(warn),
        "enforce" => Ok(enforce),
        other => Err(format!("unknown {flag} {other:?} (off, warn or enforce)")),
    }
}

/// The profile's preset with the flags applied.
pub(crate) fn chain_settings(args: &Args, profile: Profile) -> Result<ChainSettings, String> {
    use qbind_core::fee_mempool::EvictionMode;
    use qbind_net::peers::diversity::DiversityMode;
    let mut s = ChainSettings::of(profile);
    if let Some(mode) = &args.mempool_mode {
        s.payload_mode = match mode.as_str() {
            "fifo" => qbind_core::dag::PayloadMode::Fifo,
            "dag" => qbind_core::dag::PayloadMode::Dag,
            other => return Err(format!("unknown --mempool-mode {other:?} (fifo or dag)")),
        };
    }
    if let Some(mode) = &args.diversity_mode {
        s.diversity = mode_named(
            "--diversity-mode",
            mode,
            [
                DiversityMode::Off,
                DiversityMode::Warn,
                DiversityMode::Enforce,
            ],
        )?;
    }
    if let Some(mode) = &args.mempool_eviction_mode {
        s.fee_mempool.eviction_mode = mode_named(
            "--mempool-eviction-mode",
            mode,
            [EvictionMode::Off, EvictionMode::Warn, EvictionMode::Enforce],
        )?;
    }
    if let Some(n) = args.mempool_eviction_max_per_interval {
        s.fee_mempool.max_evictions_per_interval = n;
    }
    if let Some(secs) = args.mempool_eviction_interval_secs {
        s.fee_mempool.eviction_interval_ms = secs.saturating_mul(1_000).max(1);
    }
    if let Some(n) = args.mempool_max_pending_txs {
        s.fee_mempool.capacity = n.max(1);
    }
    if let Some(mode) = &args.monetary_mode {
        s.monetary_mode =
            Some(monetary_mode_named(mode).ok_or_else(|| {
                format!("unknown --monetary-mode {mode:?} (off, shadow or active)")
            })?);
    }
    s.system_tx_activation = qbind_core::types::Height(args.system_tx_activation_height);
    s.p2p_listen = args.p2p_listen_addr;
    s.p2p_advertised = args.p2p_advertised_addr;
    s.bootstrap_peers = args.bootstrap_peers.clone();
    s.fee_priority = args.enable_fee_priority.unwrap_or(true);
    s.discovery = args.enable_discovery.unwrap_or(true);
    let full = args.role == RoleArg::Full;
    if args.role != RoleArg::Validator
        && (args.load_generator == Some(true) || args.load_accounts.is_some())
    {
        return Err(format!(
            "--role {} takes no transactions: drop --load-generator and --load-accounts",
            if full { "full" } else { "sentry" }
        ));
    }
    if full && args.sentry_link_addr.is_some() {
        return Err("--sentry-link-addr is for validators and sentries".into());
    }
    if args.role != RoleArg::Sentry && args.sentry_validator_pub.is_some() {
        return Err("--sentry-validator-pub is a sentry's flag (--role sentry)".into());
    }
    if args.role == RoleArg::Validator && args.sentry_link_addr.is_some() {
        // Behind a sentry the validator's only peer is its sentry: the
        // network-facing settings belong to the sentry.
        let network_flags = [
            ("--full-node-keys", args.full_node_keys.is_some()),
            ("--p2p-listen-addr", args.p2p_listen_addr.is_some()),
            ("--p2p-advertised-addr", args.p2p_advertised_addr.is_some()),
            ("--bootstrap-peers", !args.bootstrap_peers.is_empty()),
        ];
        if let Some((flag, _)) = network_flags.iter().find(|(_, given)| *given) {
            return Err(format!(
                "{flag} has no effect behind a sentry (--sentry-link-addr): give it to the \
                 sentry"
            ));
        }
    }
    if full && args.full_node_keys.is_some() {
        return Err(
            "--full-node-keys is a validator's flag: full nodes admit no full nodes".into(),
        );
    }
    // Checked here, before `--validate-only` reports, so that a config file
    // it passes is not refused at start.
    if full && (args.validator_index.is_some() || args.signer_mode.is_some()) {
        return Err(
            "--role full runs no validator: drop --validator-index and --signer-mode".into(),
        );
    }
    if args.role == RoleArg::Sentry {
        crate::sentry::check_flags(args)?;
    }
    s.sentry_link = args.sentry_link_addr;
    s.load = match (args.load_generator, &args.load_accounts) {
        _ if args.role != RoleArg::Validator => Load::Off,
        (Some(false), _) => Load::Off,
        (_, Some(path)) => Load::Keys(load_account_keys(path).map_err(|e| e.to_string())?),
        (Some(true), None) | (None, None) if profile == Profile::Devnet => Load::SeedAccounts,
        (Some(true), None) => Load::SeedAccounts,
        (None, None) => Load::Off,
    };
    Ok(s)
}

/// The configuration the MainNet checks look at.
pub(crate) fn node_config(
    args: &Args,
    settings: &ChainSettings,
    genesis: Option<&Genesis>,
) -> Result<NodeConfig, String> {
    let signer_exit_on_failure = match args.signer_failure_mode.as_deref() {
        None => settings.profile.preset().signer_exit_on_failure,
        Some("exit-on-failure") => true,
        Some(_) => false,
    };
    let monetary_mode = settings.monetary_mode.unwrap_or_else(|| {
        genesis.map_or(settings.profile.preset().monetary, Genesis::monetary_mode)
    });
    if let (Some(g), Some(m)) = (genesis, settings.monetary_mode)
        && g.monetary_mode() != m
    {
        return Err(format!(
            "--monetary-mode {m:?} differs from the genesis's {:?}: every validator must run \
             the chain's monetary mode",
            g.monetary_mode()
        ));
    }
    let own_keys = args.validator_set.is_some() || genesis.is_some();
    Ok(NodeConfig {
        profile: settings.profile,
        genesis_env: genesis.map_or(Profile::Devnet.env(), |g| g.profile.env()),
        genesis_file: genesis.is_some(),
        data_dir: args.data_dir.clone(),
        gas_enabled: true,
        fee_priority: settings.fee_priority,
        payload_mode: settings.payload_mode,
        p2p: args.p2p == "kemtls" || own_keys,
        validators_in_process: if args.validator_index.is_some() || own_keys {
            1
        } else {
            args.local_validators
        },
        discovery: settings.discovery,
        signer_mode: args.signer_mode.clone(),
        signer_exit_on_failure,
        diversity: settings.diversity,
        monetary_mode,
        snapshot_interval: args.snapshot_dir.as_ref().map(|_| args.snapshot_interval),
        eviction_mode: settings.fee_mempool.eviction_mode,
        load_generator: !matches!(settings.load, Load::Off),
        role: match args.role {
            RoleArg::Validator => NodeRole::Validator,
            RoleArg::Full => NodeRole::Full,
            RoleArg::Sentry => NodeRole::Sentry,
        },
    })
}

/// Apply the MainNet checks: print them with `--validate-only` (and exit),
/// refuse a MainNet start that breaks one (exit status 2).
pub(crate) fn validate(args: &Args, config: &NodeConfig) -> Result<Option<ExitCode>, Failure> {
    let violations = validate_mainnet_invariants(config);
    let mainnet = config.profile == Profile::Mainnet;
    if args.validate_only {
        println!("effective configuration:");
        for line in config.describe() {
            println!("  {line}");
        }
        println!(
            "MainNet invariants (runbook §3.2){}:",
            if mainnet {
                ""
            } else {
                ", informational for this profile"
            }
        );
        for line in config.check_lines() {
            println!("  {line}");
        }
        return Ok(Some(if mainnet && !violations.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        }));
    }
    if mainnet && !violations.is_empty() {
        let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
        return Err(format!(
            "refusing to start on MainNet, the configuration breaks {} invariant(s):\n  {}",
            list.len(),
            list.join("\n  ")
        )
        .into());
    }
    Ok(None)
}
