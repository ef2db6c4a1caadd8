//! `qbind-key-rotation`: create signed key rotation events (runbook §6.2,
//! §10.5).
//!
//! ```text
//! qbind-key-rotation init --validator-id 42 --key-role consensus \
//!     --old-key-path current/consensus.pub --new-key-path new/consensus.pub \
//!     --effective-epoch 12345 --grace-epochs 100 --network mainnet \
//!     --sign-with current --passphrase-env QBIND_KEYSTORE_PASSPHRASE \
//!     --output rotation-event.json
//! qbind-key-rotation emergency --validator-id 42 --key-role consensus \
//!     --new-public-key-file emergency/consensus.pub --effective-epoch 501 \
//!     --reason confirmed_compromise --network mainnet \
//!     --sign-with current --passphrase-env QBIND_KEYSTORE_PASSPHRASE \
//!     --output emergency-rotation.json
//! ```
//!
//! The event is signed with the validator's *current* consensus key, from
//! wherever it lives: the encrypted keystore `--sign-with`, the PKCS#11
//! token of `--hsm-config`, or a `qbind-remote-signer` daemon
//! (`--remote-signer-url`, `--remote-signer-pub`, `--p2p-identity-key`). For
//! a consensus rotation the old key defaults to that key's public key. `init --emergency` is the same
//! as `emergency` (effective immediately, no grace period). The output JSON
//! is `rotation-event.json` of the runbook plus `emergency`, `reason` and
//! `signature`; the signature is checked before the file is written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use qbind_core::key_rotation::{KeyRole, KeyRotationEvent, SignedKeyRotationEvent};
use qbind_core::traits::Signer;
use qbind_core::types::{Epoch, NetworkEnvironment, ValidatorId};
use qbind_node_ref::cli::{Failure, Output, finish};
use qbind_signer::keystore::{self, KdfPolicy, Passphrase};
use qbind_signer::rotation::RotationEventJson;
use qbind_signer::{
    EncryptedFsSigner, RemoteSettings, SignerFailureMode, SignerMetrics, SignerMode,
    SignerSettings, build_signer,
};

#[derive(Parser)]
#[command(
    name = "qbind-key-rotation",
    version,
    about = "Create signed QBIND key rotation events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A planned rotation with a grace period (both keys valid meanwhile).
    Init(RotationArgs),
    /// An emergency rotation: the old key is refused at once.
    Emergency(RotationArgs),
}

#[derive(Args, Clone)]
struct RotationArgs {
    /// Validator ID.
    #[arg(long)]
    validator_id: u32,
    /// consensus, batch-signing or p2p-identity.
    #[arg(long)]
    key_role: String,
    /// The current public key file (`*.pub`); default for consensus: the
    /// key in `--sign-with`.
    #[arg(long, alias = "old-public-key-file")]
    old_key_path: Option<PathBuf>,
    /// The new public key file (`*.pub`).
    #[arg(long, alias = "new-public-key-file")]
    new_key_path: PathBuf,
    /// First epoch of the new key.
    #[arg(long)]
    effective_epoch: u64,
    /// Epochs during which both keys are valid (ignored for emergencies).
    #[arg(long, default_value_t = 0)]
    grace_epochs: u64,
    /// Emergency rotation (same as the `emergency` subcommand).
    #[arg(long)]
    emergency: bool,
    /// Reason, recorded in the JSON (not signed).
    #[arg(long)]
    reason: Option<String>,
    /// mainnet, testnet or devnet (selects chain ID and domain tag).
    #[arg(long, default_value = "mainnet")]
    network: String,
    /// Keystore directory holding the current consensus key.
    #[arg(long, required_unless_present_any = ["hsm_config", "remote_signer_url"])]
    sign_with: Option<PathBuf>,
    /// Sign with the consensus key on the PKCS#11 token of this HSM config
    /// instead (the PIN comes from the config's `pin_env_var`).
    #[arg(long, conflicts_with_all = ["sign_with", "remote_signer_url"])]
    hsm_config: Option<PathBuf>,
    /// Sign through the qbind-remote-signer daemon at kemtls://host:port.
    #[arg(long, conflicts_with = "sign_with", requires_all = ["remote_signer_pub", "p2p_identity_key"])]
    remote_signer_url: Option<String>,
    /// The daemon's p2p_identity.pub.
    #[arg(long)]
    remote_signer_pub: Option<PathBuf>,
    /// The node's encrypted p2p_identity.key (the daemon admits only it).
    #[arg(long)]
    p2p_identity_key: Option<PathBuf>,
    /// Environment variable with the keystore passphrase (of --sign-with,
    /// or of --p2p-identity-key).
    #[arg(long, default_value = "QBIND_KEYSTORE_PASSPHRASE")]
    passphrase_env: String,
    /// File with the keystore passphrase (regular, owner-only, at most
    /// 4 KiB); preferred over --passphrase-env (docs/signer.md).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
    /// Output file.
    #[arg(long)]
    output: PathBuf,
}

fn network(name: &str) -> Result<NetworkEnvironment, String> {
    match name {
        "mainnet" => Ok(NetworkEnvironment::Mainnet),
        "testnet" => Ok(NetworkEnvironment::Testnet),
        "devnet" => Ok(NetworkEnvironment::Devnet),
        other => Err(format!("unknown network {other:?}")),
    }
}

/// The current consensus key's signer, from the source the flags name.
async fn current_signer(
    args: &RotationArgs,
    env: NetworkEnvironment,
    passphrase: &Passphrase,
    policy: &KdfPolicy,
) -> Result<Box<dyn Signer>, String> {
    let validator = ValidatorId(args.validator_id);
    if let Some(dir) = &args.sign_with {
        let signer =
            EncryptedFsSigner::open(dir, validator, KeyRole::Consensus, env, passphrase, policy)
                .map_err(|e| format!("--sign-with: {e}"))?;
        return Ok(Box::new(signer));
    }
    let (mode, remote) = match (&args.hsm_config, &args.remote_signer_url) {
        (Some(_), _) => (SignerMode::HsmPkcs11, None),
        (None, Some(url)) => (
            SignerMode::RemoteSigner,
            Some(RemoteSettings {
                url: url.clone(),
                identity_key_path: args
                    .p2p_identity_key
                    .clone()
                    .ok_or("--remote-signer-url needs --p2p-identity-key")?,
                identity_passphrase_env: args.passphrase_env.clone(),
                identity_passphrase_file: args.passphrase_file.clone(),
                daemon_public_key_path: args
                    .remote_signer_pub
                    .clone()
                    .ok_or("--remote-signer-url needs --remote-signer-pub")?,
                expected_consensus_pub: None,
                timeout: std::time::Duration::from_secs(10),
            }),
        ),
        (None, None) => {
            return Err("give --sign-with, --hsm-config or --remote-signer-url".into());
        }
    };
    let settings = SignerSettings {
        mode,
        env,
        validator,
        // A failure ends this tool anyway; the mode only decides logging.
        failure_mode: SignerFailureMode::ExitOnFailure,
        // A rotation event is no consensus message: no double-sign record.
        double_sign_dir: None,
        init_double_sign_record: false,
        keystore_path: None,
        passphrase_env: None,
        passphrase_file: None,
        hsm_config_path: args.hsm_config.clone(),
        remote,
        loopback_key: None,
    };
    let signer = build_signer(settings, SignerMetrics::shared())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Box::new(signer))
}

async fn create_event(
    args: &RotationArgs,
    emergency: bool,
    passphrase: &Passphrase,
    policy: &KdfPolicy,
) -> Result<RotationEventJson, String> {
    let env = network(&args.network)?;
    let role = KeyRole::from_cli_name(&args.key_role)
        .ok_or_else(|| format!("unknown key role {:?}", args.key_role))?;
    let validator = ValidatorId(args.validator_id);
    let signer = current_signer(args, env, passphrase, policy).await?;
    let old_key = match (&args.old_key_path, role) {
        (Some(p), _) => keystore::read_pub_file(p, role).map_err(|e| e.to_string())?,
        (None, KeyRole::Consensus) => signer.public_key().as_bytes().to_vec(),
        (None, _) => return Err("--old-key-path is required for this key role".into()),
    };
    let new_key = keystore::read_pub_file(&args.new_key_path, role).map_err(|e| e.to_string())?;
    let event = KeyRotationEvent {
        validator_id: validator,
        key_kind: role,
        old_key,
        new_key,
        effective_epoch: Epoch(args.effective_epoch),
        grace_epochs: if emergency { 0 } else { args.grace_epochs },
        emergency,
    };
    event.check().map_err(|e| e.to_string())?;
    let signature = signer
        .sign(&event.sign_request())
        .await
        .map_err(|e| format!("signing the event: {e}"))?;
    let signed = SignedKeyRotationEvent { event, signature };
    signed
        .verify(env, signer.public_key())
        .map_err(|e| format!("self-check failed: {e}"))?;
    Ok(RotationEventJson::from_signed(&signed, args.reason.clone()))
}

fn write_output(path: &Path, doc: &RotationEventJson) -> Result<(), String> {
    let mut json = serde_json::to_vec_pretty(doc).map_err(|e| e.to_string())?;
    json.push(b'\n');
    qbind_signer::durable::write_atomic(path, &json).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(cli: Cli) -> Result<String, String> {
    let (args, emergency) = match cli.command {
        Command::Init(a) => {
            let e = a.emergency;
            (a, e)
        }
        Command::Emergency(a) => (a, true),
    };
    let passphrase = if args.sign_with.is_some() {
        Passphrase::from_file_or_env(args.passphrase_file.as_deref(), &args.passphrase_env)
            .map_err(|e| e.to_string())?
    } else {
        // Not needed by the HSM; the remote path reads it itself.
        Passphrase::new(String::new())
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let doc = runtime.block_on(create_event(
        &args,
        emergency,
        &passphrase,
        &KdfPolicy::PRODUCTION,
    ))?;
    write_output(&args.output, &doc)?;
    Ok(format!(
        "wrote {} rotation event for validator {} ({}, effective epoch {}, grace {}) to {}",
        if emergency { "EMERGENCY" } else { "planned" },
        doc.validator_id,
        doc.key_kind,
        doc.effective_epoch,
        doc.grace_epochs,
        args.output.display()
    ))
}

fn main() -> ExitCode {
    finish(
        "qbind-key-rotation",
        Output::Text,
        run(Cli::parse()).map_err(|e| Failure::failed(format!("error: {e}"))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use qbind_core::key_rotation::ValidatorKeyRegistry;
    use qbind_core::types::Epoch;
    use qbind_signer::keystore::KdfParams;

    #[test]
    fn init_and_emergency_produce_events_the_registry_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let pass = Passphrase::new("correct horse battery staple".into());
        let policy = KdfPolicy::INSECURE_TEST_ONLY;
        let current = dir.path().join("current");
        let new = dir.path().join("new");
        for d in [&current, &new] {
            keystore::generate_key(
                d,
                ValidatorId(42),
                KeyRole::Consensus,
                &pass,
                KdfParams::INSECURE_TEST,
                &policy,
            )
            .unwrap();
        }
        let cli = Cli::try_parse_from([
            "qbind-key-rotation",
            "init",
            "--validator-id",
            "42",
            "--key-role",
            "consensus",
            "--old-key-path",
            current.join("consensus.pub").to_str().unwrap(),
            "--new-key-path",
            new.join("consensus.pub").to_str().unwrap(),
            "--effective-epoch",
            "10",
            "--grace-epochs",
            "100",
            "--network",
            "testnet",
            "--sign-with",
            current.to_str().unwrap(),
            "--passphrase-env",
            "UNUSED",
            "--output",
            dir.path().join("ev.json").to_str().unwrap(),
        ])
        .unwrap();
        let Command::Init(args) = cli.command else {
            panic!("not init")
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let doc = rt
            .block_on(create_event(&args, false, &pass, &policy))
            .unwrap();
        write_output(&args.output, &doc).unwrap();
        let text = std::fs::read_to_string(&args.output).unwrap();
        for field in [
            "\"validator_id\": 42",
            "\"key_kind\": \"Consensus\"",
            "\"effective_epoch\": 10",
            "\"grace_epochs\": 100",
        ] {
            assert!(text.contains(field), "{field} missing in {text}");
        }
        let parsed: RotationEventJson = serde_json::from_str(&text).unwrap();
        let signed = parsed.to_signed().unwrap();
        let mut reg = ValidatorKeyRegistry::new();
        reg.register(
            ValidatorId(42),
            KeyRole::Consensus,
            signed.event.old_key.clone(),
        );
        reg.apply(&signed, NetworkEnvironment::Testnet, Epoch(1))
            .unwrap();
        assert_eq!(
            reg.accepted_keys(ValidatorId(42), KeyRole::Consensus, Epoch(50))
                .len(),
            2
        );
        // The same event is invalid on another network.
        let mut reg2 = ValidatorKeyRegistry::new();
        reg2.register(
            ValidatorId(42),
            KeyRole::Consensus,
            signed.event.old_key.clone(),
        );
        assert!(
            reg2.apply(&signed, NetworkEnvironment::Mainnet, Epoch(1))
                .is_err()
        );

        // Emergency without --old-key-path: old key = the signing key.
        let mut eargs = args.clone();
        eargs.old_key_path = None;
        let doc = rt
            .block_on(create_event(&eargs, true, &pass, &policy))
            .unwrap();
        assert!(doc.emergency);
        assert_eq!(doc.grace_epochs, 0);
        let signed = doc.to_signed().unwrap();
        let mut reg3 = ValidatorKeyRegistry::new();
        reg3.register(
            ValidatorId(42),
            KeyRole::Consensus,
            signed.event.old_key.clone(),
        );
        reg3.apply(&signed, NetworkEnvironment::Testnet, Epoch(5))
            .unwrap();
        assert_eq!(
            reg3.accepted_keys(ValidatorId(42), KeyRole::Consensus, Epoch(5)),
            vec![signed.event.new_key.as_slice()]
        );
        // Wrong passphrase: no event.
        let wrong = Passphrase::new("wrong wrong wrong wrong".into());
        assert!(
            rt.block_on(create_event(&args, false, &wrong, &policy))
                .unwrap_err()
                .contains("wrong passphrase")
        );
    }
}
