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
//! The event is signed with the validator's *current* consensus key, taken
//! from the encrypted keystore `--sign-with`. For a consensus rotation the
//! old key defaults to that key's public key. `init --emergency` is the same
//! as `emergency` (effective immediately, no grace period). The output JSON
//! is `rotation-event.json` of the runbook plus `emergency`, `reason` and
//! `signature`; the signature is checked before the file is written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use qbind_core::key_rotation::{KeyRole, KeyRotationEvent};
use qbind_core::types::{Epoch, NetworkEnvironment, ValidatorId};
use qbind_signer::keystore::{self, KdfPolicy, Passphrase};
use qbind_signer::rotation::RotationEventJson;

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
    #[arg(long)]
    sign_with: PathBuf,
    /// Environment variable with that keystore's passphrase.
    #[arg(long)]
    passphrase_env: String,
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

fn create_event(
    args: &RotationArgs,
    emergency: bool,
    passphrase: &Passphrase,
    policy: &KdfPolicy,
) -> Result<RotationEventJson, String> {
    let env = network(&args.network)?;
    let role = KeyRole::from_cli_name(&args.key_role)
        .ok_or_else(|| format!("unknown key role {:?}", args.key_role))?;
    let validator = ValidatorId(args.validator_id);
    let signing = keystore::load_key(
        &args.sign_with,
        Some(validator),
        KeyRole::Consensus,
        passphrase,
        policy,
    )
    .map_err(|e| format!("--sign-with: {e}"))?
    .into_signing_key()
    .ok_or("--sign-with must hold a consensus key")?;
    let old_key = match (&args.old_key_path, role) {
        (Some(p), _) => keystore::read_pub_file(p, role).map_err(|e| e.to_string())?,
        (None, KeyRole::Consensus) => signing.public_key().as_bytes().to_vec(),
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
    let signed = event.sign(env, &signing).map_err(|e| e.to_string())?;
    signed
        .verify(env, signing.public_key())
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
    let passphrase = Passphrase::from_env(&args.passphrase_env).map_err(|e| e.to_string())?;
    let doc = create_event(&args, emergency, &passphrase, &KdfPolicy::PRODUCTION)?;
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
    match run(Cli::parse()) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("qbind-key-rotation: error: {e}");
            ExitCode::FAILURE
        }
    }
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
        let doc = create_event(&args, false, &pass, &policy).unwrap();
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
        let doc = create_event(&eargs, true, &pass, &policy).unwrap();
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
            create_event(&args, false, &wrong, &policy)
                .unwrap_err()
                .contains("wrong passphrase")
        );
    }
}
