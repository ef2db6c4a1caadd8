//! `qbind-validator-registry`: put a signed key-rotation event on chain
//! (runbook §6.2; docs/key-rotation.md).
//!
//! ```text
//! qbind-key-rotation init ... --output rotation-event.json
//! qbind-validator-registry submit-rotation --event rotation-event.json \
//!     --api http://127.0.0.1:8080
//! qbind-validator-registry encode-rotation --event rotation-event.json
//! ```
//!
//! `submit-rotation` sends the event as a system transaction to a
//! validator's public API (`POST /v1/tx`), which checks it against the keys
//! in force (signature, effective epoch at least two epochs ahead, no key
//! reuse, no rotation pending) before its pool takes it; every validator
//! applies it when it executes the block that carries it, and consensus
//! accepts the new key from the effective epoch (no file edit, no restart).
//! `encode-rotation` prints the transaction's hex for any other client.
//!
//! Exit status: 0 accepted (or encoded); 1 the node refused the
//! transaction or could not take it (any HTTP error reply, its reason
//! printed); 2 bad arguments, an unreadable event file, or the node
//! unreachable.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use qbind_core::codec::Encode;
use qbind_core::system_tx::SystemTx;
use qbind_node_ref::cli::{Failure, Output, finish};
use qbind_signer::rotation::RotationEventJson;

#[derive(Debug, Parser)]
#[command(
    name = "qbind-validator-registry",
    version,
    about = "Submit validator key rotations as on-chain system transactions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// `text` (default) or `json` (one object on stdout).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit a signed rotation event (from `qbind-key-rotation`) to a
    /// validator's public API.
    SubmitRotation {
        /// The event (`rotation-event.json`).
        #[arg(long)]
        event: PathBuf,
        /// The validator's public API, e.g. `http://127.0.0.1:8080`.
        #[arg(long)]
        api: String,
        /// Give up on a reply after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
    /// Print the system transaction of a signed rotation event as hex.
    EncodeRotation {
        /// The event (`rotation-event.json`).
        #[arg(long)]
        event: PathBuf,
    },
}

/// The system transaction of the event in `path` (its signature is checked
/// by the node, which knows the keys in force).
fn load(path: &Path) -> Result<(SystemTx, Vec<u8>), Failure> {
    const MAX_EVENT_FILE: u64 = 1 << 20;
    let meta =
        std::fs::metadata(path).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    if meta.len() > MAX_EVENT_FILE {
        return Err(Failure::usage(format!(
            "{}: larger than {MAX_EVENT_FILE} bytes: not a rotation event",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    let json: RotationEventJson = serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    let signed = json
        .to_signed()
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    let tx = SystemTx::KeyRotation(signed);
    let bytes = tx.to_bytes();
    Ok((tx, bytes))
}

#[derive(serde::Deserialize)]
struct Accepted {
    hash: String,
}

#[derive(serde::Deserialize)]
struct Refused {
    code: String,
    message: String,
}

fn submit(api: &str, bytes: &[u8], timeout: Duration) -> Result<String, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("starting the runtime: {e}")))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .build()
            .map_err(|e| Failure::usage(format!("HTTP client: {e}")))?;
        let url = format!("{}/v1/tx", api.trim_end_matches('/'));
        let response = client
            .post(&url)
            .json(&serde_json::json!({ "tx": hex::encode(bytes) }))
            .send()
            .await
            .map_err(|e| Failure::usage(format!("cannot reach the API at {api}: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::usage(format!("reading the reply from {api}: {e}")))?;
        if status.is_success() {
            let reply: Accepted = serde_json::from_slice(&body)
                .map_err(|e| Failure::usage(format!("unexpected reply from {api}: {e}")))?;
            return Ok(reply.hash);
        }
        let message = serde_json::from_slice::<Refused>(&body).map_or_else(
            |_| String::from_utf8_lossy(&body).into_owned(),
            |r| format!("{} ({})", r.message, r.code),
        );
        // The node answered: it refused (4xx) or could not take it now
        // (5xx, e.g. still starting): 1 either way, as `qbind-admin`.
        Err(Failure::failed(format!(
            "the node refused the rotation: HTTP {status}: {message}"
        )))
    })
}

fn run(cli: &Cli) -> Result<String, Failure> {
    match &cli.command {
        Command::EncodeRotation { event } => {
            let (_, bytes) = load(event)?;
            Ok(match cli.output {
                Output::Text => hex::encode(&bytes),
                Output::Json => serde_json::json!({ "tx": hex::encode(&bytes) }).to_string(),
            })
        }
        Command::SubmitRotation {
            event,
            api,
            timeout_secs,
        } => {
            let (tx, bytes) = load(event)?;
            let hash = submit(api, &bytes, Duration::from_secs(*timeout_secs))?;
            let SystemTx::KeyRotation(signed) = &tx;
            let ev = &signed.event;
            Ok(match cli.output {
                Output::Text => format!(
                    "rotation of validator {} ({}) accepted by {api}: transaction {hash}; \
                     the new key is accepted from epoch {}",
                    ev.validator_id.0,
                    ev.key_kind.cli_name(),
                    ev.effective_epoch.0
                ),
                Output::Json => serde_json::json!({
                    "hash": hash,
                    "validator_id": ev.validator_id.0,
                    "key_role": ev.key_kind.cli_name(),
                    "effective_epoch": ev.effective_epoch.0,
                    "grace_epochs": ev.grace_epochs,
                    "emergency": ev.emergency,
                })
                .to_string(),
            })
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    finish("qbind-validator-registry", cli.output, run(&cli))
}
