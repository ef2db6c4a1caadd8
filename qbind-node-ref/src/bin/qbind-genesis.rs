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
use qbind_node_ref::cli::{Failure, Output, finish};
use qbind_node_ref::genesis_dir::{LocalGenesisSpec, write_local_genesis};
use qbind_node_ref::profile::Profile;
use qbind_signer::keystore::{KdfParams, Passphrase};

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

fn devnet(args: &DevnetArgs) -> Result<Vec<String>, String> {
    let profile = Profile::parse(&args.profile).map_err(|e| e.to_string())?;
    let pass = Passphrase::from_env(&args.passphrase_env).map_err(|e| e.to_string())?;
    let spec = LocalGenesisSpec {
        profile,
        validators: args.validators,
        accounts: args.accounts,
        out: args.out.clone(),
        ip: args.ip,
        loopback_per_validator: args.loopback_per_validator,
        base_port: args.base_port,
        cli_key_files: true,
        kdf: KdfParams {
            memory_kib: args.kdf_memory_kib,
            iterations: args.kdf_iterations,
            ..KdfParams::DEFAULT
        },
    };
    let written = write_local_genesis(&spec, &pass).map_err(|e| e.to_string())?;
    Ok(vec![
        format!("genesis: {}", written.genesis_path.display()),
        format!("genesis hash: {}", written.genesis.hash()),
        format!(
            "validator keystores: {}/v0 .. v{}",
            args.out.display(),
            args.validators - 1
        ),
        format!(
            "funded account keys (secret): {}",
            written.accounts_path.display()
        ),
        format!(
            "the same keys for the qbind CLI (secret): {}/accounts/account-0.key .. account-{}.key",
            args.out.display(),
            args.accounts.saturating_sub(1)
        ),
    ])
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Devnet(args) => devnet(args),
    };
    finish(
        "qbind-genesis",
        Output::Text,
        result.map(|lines| lines.join("\n")).map_err(Failure::usage),
    )
}
