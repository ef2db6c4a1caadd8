//! `qbind-genesis`: make a genesis for a local network (DevNet, or a
//! local TestNet with `-P testnet`).
//!
//! ```text
//! qbind-genesis devnet --validators 4 --accounts 16 --out /tmp/net \
//!     --passphrase-env QBIND_KEYSTORE_PASSPHRASE
//! ```
//!
//! writes `OUT/genesis.json` (docs/node.md "Genesis file"), one encrypted
//! keystore per validator in `OUT/v<i>` (`consensus.key`, `p2p_identity.key`,
//! their `.pub` files and the double-sign record, as `qbind-keygen generate`
//! makes them) and `OUT/accounts.json` with the funded accounts' secret
//! seeds (mode 0600) for `qbind-node --load-accounts`. Validator `i` listens
//! on `--ip` port `--base-port + i` (for TestNet and MainNet profiles on one
//! machine: `127.0.i.1`, so that diversity Enforce admits every peer). It
//! prints the genesis hash.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use qbind_core::crypto::KeyPair;
use qbind_core::key_rotation::KeyRole;
use qbind_core::types::ValidatorId;
use qbind_node_ref::genesis::{Genesis, GenesisValidator, save_account_keys};
use qbind_node_ref::profile::Profile;
use qbind_signer::guard::DoubleSignGuard;
use qbind_signer::keystore::{self, KdfParams, KdfPolicy, Passphrase};

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "qbind-genesis", version, about = "Make a QBIND genesis")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// A genesis for a local network with fresh validator and account keys
    /// (DevNet by default; `--profile` for a local TestNet).
    Devnet(DevnetArgs),
}

/// `qbind-genesis devnet` flags.
#[derive(Debug, clap::Args)]
struct DevnetArgs {
    /// The genesis's profile: devnet, testnet-alpha, testnet-beta (or
    /// testnet), mainnet.
    #[arg(short = 'P', long, default_value = "devnet")]
    profile: String,
    /// Validators (fresh keys each).
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Funded accounts (fresh keys each).
    #[arg(long, default_value_t = 16)]
    accounts: usize,
    /// Output directory (created; must not hold a genesis already).
    #[arg(long)]
    out: PathBuf,
    /// Address every validator listens on (default 127.0.0.1; see
    /// --loopback-per-validator).
    #[arg(long)]
    ip: Option<IpAddr>,
    /// Put validator i on 127.0.i.1 (one /24 each, so that diversity
    /// Enforce admits them all on one machine). Default: on for TestNet
    /// and MainNet profiles without --ip.
    #[arg(long, action = clap::ArgAction::Set)]
    loopback_per_validator: Option<bool>,
    /// Validator `i` listens on this port + i.
    #[arg(long, default_value_t = 29_000)]
    base_port: u16,
    /// Environment variable holding the keystores' passphrase.
    #[arg(long, default_value = "QBIND_KEYSTORE_PASSPHRASE")]
    passphrase_env: String,
    /// Argon2id memory of the keystores, KiB.
    #[arg(long, default_value_t = KdfParams::DEFAULT.memory_kib)]
    kdf_memory_kib: u32,
    /// Argon2id passes of the keystores.
    #[arg(long, default_value_t = KdfParams::DEFAULT.iterations)]
    kdf_iterations: u32,
}

/// Validator `i`'s keystore; its genesis entry.
fn validator(
    args: &DevnetArgs,
    profile: Profile,
    i: usize,
    pass: &Passphrase,
) -> Result<GenesisValidator, String> {
    let dir = args.out.join(format!("v{i}"));
    let id = ValidatorId(i as u32);
    let params = KdfParams {
        memory_kib: args.kdf_memory_kib,
        iterations: args.kdf_iterations,
        ..KdfParams::DEFAULT
    };
    let key = |role| {
        keystore::generate_key(&dir, id, role, pass, params, &KdfPolicy::PRODUCTION)
            .map_err(|e| format!("validator {i}: {e}"))
    };
    let consensus = key(KeyRole::Consensus)?;
    let p2p = key(KeyRole::P2pIdentity)?;
    DoubleSignGuard::init(&dir, id, profile.env())
        .map_err(|e| format!("validator {i}: double-sign record: {e}"))?;
    let port = u16::try_from(i)
        .ok()
        .and_then(|i| args.base_port.checked_add(i))
        .ok_or("--base-port + validators exceeds 65535")?;
    let spread = args
        .loopback_per_validator
        .unwrap_or(args.ip.is_none() && profile != Profile::Devnet);
    let ip = match (spread, args.ip) {
        (true, _) => {
            let third = u8::try_from(i).map_err(|_| "--loopback-per-validator: at most 256")?;
            IpAddr::V4(std::net::Ipv4Addr::new(127, 0, third, 1))
        }
        (false, ip) => ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
    };
    Ok(GenesisValidator {
        id: i as u32,
        stake: 1,
        consensus_pub: hex::encode(consensus),
        p2p_pub: hex::encode(p2p),
        address: std::net::SocketAddr::new(ip, port).to_string(),
    })
}

fn devnet(args: &DevnetArgs) -> Result<Vec<String>, String> {
    let profile = Profile::parse(&args.profile).map_err(|e| e.to_string())?;
    if args.validators == 0 {
        return Err("--validators must be at least 1".into());
    }
    let genesis_path = args.out.join("genesis.json");
    if genesis_path.exists() {
        return Err(format!("{} exists already", genesis_path.display()));
    }
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let pass = Passphrase::from_env(&args.passphrase_env).map_err(|e| e.to_string())?;
    let validators = (0..args.validators)
        .map(|i| validator(args, profile, i, &pass))
        .collect::<Result<Vec<_>, _>>()?;
    let seeds: Vec<[u8; 32]> = (0..args.accounts)
        .map(|_| {
            let mut seed = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
            seed
        })
        .collect();
    let keys: Vec<KeyPair> = seeds.iter().map(KeyPair::from_seed).collect();
    let genesis = Genesis::local(profile, validators, &keys);
    genesis.check().map_err(|e| e.to_string())?;
    let accounts_path = args.out.join("accounts.json");
    save_account_keys(&accounts_path, &seeds).map_err(|e| e.to_string())?;
    genesis.save(&genesis_path).map_err(|e| e.to_string())?;
    Ok(vec![
        format!("genesis: {}", genesis_path.display()),
        format!("genesis hash: {}", genesis.hash()),
        format!(
            "validator keystores: {}/v0 .. v{}",
            args.out.display(),
            args.validators - 1
        ),
        format!("funded account keys (secret): {}", accounts_path.display()),
    ])
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Devnet(args) => devnet(args),
    };
    match result {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("qbind-genesis: {message}");
            ExitCode::from(2)
        }
    }
}
