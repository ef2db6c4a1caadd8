//! `qbind-keygen`: create and check validator keys (runbook §4.1, §6.2,
//! §10.5).
//!
//! ```text
//! qbind-keygen generate --output DIR --validator-id 42 \
//!     --key-roles consensus,p2p-identity,batch-signing --encrypt \
//!     --passphrase-env QBIND_KEYSTORE_PASSPHRASE
//! qbind-keygen generate --output DIR --validator-id 42 --hsm-config /etc/qbind/hsm.toml
//! qbind-keygen verify --keystore DIR --passphrase-env QBIND_KEYSTORE_PASSPHRASE
//! qbind-keygen init-token --hsm-config /etc/qbind/hsm.toml --so-pin-env QBIND_HSM_SO_PIN
//! ```
//!
//! `generate` writes one encrypted `<role>.key` (mode 0600) and `<role>.pub`
//! per role, or — with `--hsm-config` — generates the ML-DSA-44 consensus
//! key *on the PKCS#11 token* and writes only `consensus.pub`. Either way it
//! creates the empty double-sign record `double_sign_record.json` for the
//! validator and `--network` next to the keys (kept if one exists): a node
//! refuses to start without a record (docs/signer.md). `verify`
//! decrypts every key present and checks it against its `.pub` file; it
//! exits 1 on the first problem, naming it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use qbind_core::key_rotation::KeyRole;
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use qbind_node_ref::cli::{Failure, Output, finish};
use qbind_signer::DoubleSignGuard;
use qbind_signer::keystore::{self, KdfParams, KdfPolicy, Passphrase};
use qbind_signer::pkcs11::{HsmConfig, admin};

#[derive(Parser)]
#[command(
    name = "qbind-keygen",
    version,
    about = "Generate and verify QBIND validator keys"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate new keys into an encrypted keystore directory (or on an HSM).
    Generate(GenerateArgs),
    /// Decrypt and check every key of a keystore directory.
    Verify(VerifyArgs),
    /// Initialise (ERASE) the PKCS#11 token of an HSM config: set its label,
    /// the SO PIN and the user PIN (from the config's `pin_env_var`).
    InitToken(InitTokenArgs),
}

#[derive(Args)]
struct InitTokenArgs {
    /// The HSM config (library_path, token_label, key_label, pin_env_var).
    #[arg(long)]
    hsm_config: PathBuf,
    /// Environment variable holding the security officer PIN.
    #[arg(long)]
    so_pin_env: String,
}

#[derive(Args)]
struct GenerateArgs {
    /// Keystore directory to create or extend (mode 0700).
    #[arg(long)]
    output: PathBuf,
    /// Validator ID the keys belong to.
    #[arg(long)]
    validator_id: u32,
    /// Comma-separated roles: consensus, batch-signing, p2p-identity.
    #[arg(long, value_delimiter = ',', default_value = "consensus")]
    key_roles: Vec<String>,
    /// A single role (alias of --key-roles with one value).
    #[arg(long, conflicts_with = "key_roles")]
    key_role: Option<String>,
    /// Encrypt the keys (required: plaintext keystores are not supported).
    #[arg(long)]
    encrypt: bool,
    /// Environment variable holding the keystore passphrase.
    #[arg(long)]
    passphrase_env: Option<String>,
    /// File holding the keystore passphrase (regular, owner-only, at most
    /// 4 KiB); preferred over --passphrase-env (docs/signer.md).
    #[arg(long, conflicts_with = "passphrase_env")]
    passphrase_file: Option<PathBuf>,
    /// Network of the double-sign record created with the keys: mainnet,
    /// testnet or devnet.
    #[arg(long, default_value = "devnet")]
    network: String,
    /// Argon2id memory in KiB (default 65536; minimum 19456).
    #[arg(long, default_value_t = KdfParams::DEFAULT.memory_kib)]
    kdf_memory_kib: u32,
    /// Argon2id passes (default 3; minimum 2).
    #[arg(long, default_value_t = KdfParams::DEFAULT.iterations)]
    kdf_iterations: u32,
    /// Argon2id lanes (default 1).
    #[arg(long, default_value_t = KdfParams::DEFAULT.parallelism)]
    kdf_parallelism: u32,
    /// Generate the consensus key on the PKCS#11 token of this HSM config
    /// instead (the PIN comes from the config's `pin_env_var`).
    #[arg(long, conflicts_with_all = ["encrypt", "passphrase_env", "passphrase_file"])]
    hsm_config: Option<PathBuf>,
}

#[derive(Args)]
struct VerifyArgs {
    /// Keystore directory.
    #[arg(long)]
    keystore: PathBuf,
    /// Environment variable holding the keystore passphrase.
    #[arg(long, default_value = "QBIND_KEYSTORE_PASSPHRASE")]
    passphrase_env: String,
    /// File holding the keystore passphrase (preferred over --passphrase-env).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
    /// Also require every key to belong to this validator.
    #[arg(long)]
    validator_id: Option<u32>,
}

fn parse_roles(args: &GenerateArgs) -> Result<Vec<KeyRole>, String> {
    let names: Vec<String> = match &args.key_role {
        Some(r) => vec![r.clone()],
        None => args.key_roles.clone(),
    };
    let mut roles = Vec::new();
    for n in names {
        let role = KeyRole::from_cli_name(n.trim()).ok_or_else(|| {
            format!("unknown key role {n:?} (consensus, batch-signing, p2p-identity)")
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(roles)
}

fn fingerprint(public_key: &[u8]) -> String {
    use qbind_signer::remote::PeerIdentity;
    PeerIdentity::of_key(public_key).short_hex()
}

/// Write the encrypted keys; returns one line per key for the operator.
fn generate_encrypted(
    dir: &Path,
    validator: ValidatorId,
    roles: &[KeyRole],
    passphrase: &Passphrase,
    params: KdfParams,
    policy: &KdfPolicy,
) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for role in roles {
        let pk = keystore::generate_key(dir, validator, *role, passphrase, params, policy)
            .map_err(|e| e.to_string())?;
        lines.push(format!(
            "{}: {} (public key sha3 {})",
            role.cli_name(),
            keystore::key_path(dir, *role).display(),
            fingerprint(&pk)
        ));
    }
    Ok(lines)
}

/// Check every key present in `dir`; returns one line per key.
fn verify_keystore(
    dir: &Path,
    validator: Option<ValidatorId>,
    passphrase: &Passphrase,
    policy: &KdfPolicy,
) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for role in KeyRole::ALL {
        let path = keystore::key_path(dir, role);
        if !path.exists() {
            continue;
        }
        let key = keystore::load_key(dir, validator, role, passphrase, policy)
            .map_err(|e| e.to_string())?;
        let pk = key.public_key_bytes();
        let pub_file = keystore::pub_path(dir, role);
        if pub_file.exists() {
            let listed = keystore::read_pub_file(&pub_file, role).map_err(|e| e.to_string())?;
            if listed != pk {
                return Err(format!(
                    "{} does not match {}",
                    pub_file.display(),
                    path.display()
                ));
            }
        }
        let info = keystore::inspect(&path).map_err(|e| e.to_string())?;
        lines.push(format!(
            "{}: OK (validator {}, {}, public key sha3 {}, argon2id m={} KiB t={} p={})",
            role.cli_name(),
            info.validator_id.0,
            info.algorithm,
            fingerprint(&pk),
            info.kdf.memory_kib,
            info.kdf.iterations,
            info.kdf.parallelism
        ));
    }
    if lines.is_empty() {
        return Err(format!("no key files in {}", dir.display()));
    }
    Ok(lines)
}

fn generate_on_hsm(
    config_path: &Path,
    out: &Path,
    roles: &[KeyRole],
) -> Result<Vec<String>, String> {
    if roles != [KeyRole::Consensus] {
        return Err("--hsm-config generates only the consensus key".into());
    }
    let cfg = HsmConfig::load(config_path).map_err(|e| e.to_string())?;
    let pin = cfg.pin_from_env().map_err(|e| e.to_string())?;
    let pk = admin::generate_ml_dsa_44(&cfg.library_path, &cfg.token_label, &pin, &cfg.key_label)
        .map_err(|e| e.to_string())?;
    qbind_signer::durable::create_private_dir(out).map_err(|e| e.to_string())?;
    let pub_file = keystore::pub_path(out, KeyRole::Consensus);
    let mut text = hex::encode(pk.as_bytes());
    text.push('\n');
    qbind_signer::durable::write_atomic(&pub_file, text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(vec![format!(
        "consensus: on token {:?} as {:?}; public key {} (sha3 {})",
        cfg.token_label,
        cfg.key_label,
        pub_file.display(),
        fingerprint(pk.as_bytes())
    )])
}

fn run(cli: Cli) -> Result<Vec<String>, String> {
    match cli.command {
        Command::Generate(args) => {
            let roles = parse_roles(&args)?;
            let env = match args.network.as_str() {
                "mainnet" => NetworkEnvironment::Mainnet,
                "testnet" => NetworkEnvironment::Testnet,
                "devnet" => NetworkEnvironment::Devnet,
                other => return Err(format!("unknown --network {other:?}")),
            };
            let mut lines = if let Some(cfg) = &args.hsm_config {
                generate_on_hsm(cfg, &args.output, &roles)?
            } else {
                if !args.encrypt {
                    return Err(
                        "--encrypt is required: plaintext keystores are not supported".into(),
                    );
                }
                let passphrase = match (&args.passphrase_file, args.passphrase_env.as_deref()) {
                    (Some(f), _) => Passphrase::from_file(f),
                    (None, Some(var)) => Passphrase::from_env(var),
                    (None, None) => {
                        return Err(
                            "--passphrase-file or --passphrase-env is required with --encrypt"
                                .into(),
                        );
                    }
                }
                .map_err(|e| e.to_string())?;
                let params = KdfParams {
                    memory_kib: args.kdf_memory_kib,
                    iterations: args.kdf_iterations,
                    parallelism: args.kdf_parallelism,
                };
                generate_encrypted(
                    &args.output,
                    ValidatorId(args.validator_id),
                    &roles,
                    &passphrase,
                    params,
                    &KdfPolicy::PRODUCTION,
                )?
            };
            // The record is born with the key: a node never has to create one.
            let guard = DoubleSignGuard::init(&args.output, ValidatorId(args.validator_id), env)
                .map_err(|e| e.to_string())?;
            lines.push(format!(
                "double-sign record: {} ({})",
                guard.record_path().display(),
                args.network
            ));
            Ok(lines)
        }
        Command::Verify(args) => {
            let passphrase =
                Passphrase::from_file_or_env(args.passphrase_file.as_deref(), &args.passphrase_env)
                    .map_err(|e| e.to_string())?;
            verify_keystore(
                &args.keystore,
                args.validator_id.map(ValidatorId),
                &passphrase,
                &KdfPolicy::PRODUCTION,
            )
        }
        Command::InitToken(args) => {
            let cfg = HsmConfig::load(&args.hsm_config).map_err(|e| e.to_string())?;
            admin::init_token_from_env(&cfg, &args.so_pin_env).map_err(|e| e.to_string())?;
            Ok(vec![format!(
                "initialised token {:?} of {} (user PIN from {})",
                cfg.token_label,
                cfg.library_path.display(),
                cfg.pin_env_var
            )])
        }
    }
}

fn main() -> ExitCode {
    finish(
        "qbind-keygen",
        Output::Text,
        run(Cli::parse())
            .map(|lines| lines.join("\n"))
            .map_err(|e| Failure::failed(format!("error: {e}"))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_like_the_runbook() {
        let cli = Cli::try_parse_from([
            "qbind-keygen",
            "generate",
            "--output",
            "/tmp/x",
            "--validator-id",
            "42",
            "--key-roles",
            "consensus,p2p-identity,batch-signing",
            "--encrypt",
            "--passphrase-env",
            "QBIND_KEYSTORE_PASSPHRASE",
        ])
        .unwrap();
        let Command::Generate(args) = cli.command else {
            panic!("not generate")
        };
        assert_eq!(
            parse_roles(&args).unwrap(),
            vec![
                KeyRole::Consensus,
                KeyRole::P2pIdentity,
                KeyRole::BatchSigning
            ]
        );
        let cli = Cli::try_parse_from([
            "qbind-keygen",
            "generate",
            "--output",
            "/tmp/x",
            "--validator-id",
            "42",
            "--key-role",
            "nonsense",
            "--encrypt",
            "--passphrase-env",
            "V",
        ])
        .unwrap();
        let Command::Generate(args) = cli.command else {
            panic!("not generate")
        };
        assert!(parse_roles(&args).is_err());
    }

    #[test]
    fn generate_then_verify_and_detect_problems() {
        let dir = tempfile::tempdir().unwrap();
        let pass = Passphrase::new("correct horse battery staple".into());
        let policy = KdfPolicy::INSECURE_TEST_ONLY;
        let lines = generate_encrypted(
            dir.path(),
            ValidatorId(42),
            &KeyRole::ALL,
            &pass,
            KdfParams::INSECURE_TEST,
            &policy,
        )
        .unwrap();
        assert_eq!(lines.len(), 3);
        let ok = verify_keystore(dir.path(), Some(ValidatorId(42)), &pass, &policy).unwrap();
        assert_eq!(ok.len(), 3);
        assert!(ok.iter().all(|l| l.contains(": OK")));
        let wrong = Passphrase::new("not the passphrase at all".into());
        assert!(
            verify_keystore(dir.path(), None, &wrong, &policy)
                .unwrap_err()
                .contains("wrong passphrase")
        );
        assert!(verify_keystore(dir.path(), Some(ValidatorId(1)), &pass, &policy).is_err());
        // Production policy refuses cheap test parameters.
        assert!(verify_keystore(dir.path(), None, &pass, &KdfPolicy::PRODUCTION).is_err());
        // A swapped .pub file is detected.
        std::fs::copy(
            keystore::pub_path(dir.path(), KeyRole::BatchSigning),
            keystore::pub_path(dir.path(), KeyRole::Consensus),
        )
        .unwrap();
        assert!(
            verify_keystore(dir.path(), None, &pass, &policy)
                .unwrap_err()
                .contains("does not match")
        );
        // Regenerating over an existing key is refused.
        assert!(
            generate_encrypted(
                dir.path(),
                ValidatorId(42),
                &[KeyRole::Consensus],
                &pass,
                KdfParams::INSECURE_TEST,
                &policy
            )
            .is_err()
        );
    }
}
