//! The `qbind` command line (docs/api.md "The qbind CLI"). [`run`] is the
//! whole program: the binary only calls it, and the tests call it directly.
//!
//! Exit codes ([`exit`]): 0 done; 1 the transaction is final but did not
//! succeed (failed or rejected); 2 bad arguments, key file or input; 3 the
//! node refused the request; 4 the node could not be reached or answered
//! nonsense; 5 `wait` timed out.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use qbind_api::wire::{TxStatusView, parse_account, parse_hash, parse_network};
use qbind_core::execution::{Transaction, TransferPayload, TransferPayloadV1};
use serde::Serialize;

use crate::client::{ClientError, QbindClient};
use crate::keyfile::{account_of, generate_account_key, read_key_file, write_key_file};

/// Exit codes of `qbind`.
pub mod exit {
    /// Done (for `wait` and `transfer --wait`: committed successfully).
    pub const OK: i32 = 0;
    /// The transaction is final but failed or was rejected.
    pub const TX_NOT_SUCCESSFUL: i32 = 1;
    /// Bad arguments, key file or input (clap's usage errors also exit 2).
    pub const USAGE: i32 = 2;
    /// The node answered with an API error.
    pub const REFUSED: i32 = 3;
    /// The node could not be reached or answered outside the API.
    pub const UNREACHABLE: i32 = 4;
    /// `wait` gave up.
    pub const TIMEOUT: i32 = 5;
}

/// Default node URL.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:8080";

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Lines for people.
    Text,
    /// One JSON object (the API's own body where there is one).
    Json,
}

/// `qbind`: keys, transfers, balances and receipts over a node's API.
#[derive(Debug, Parser)]
#[command(name = "qbind", version, about)]
pub struct Cli {
    /// The node's API URL.
    #[arg(long, global = true, env = "QBIND_NODE", default_value = DEFAULT_NODE)]
    pub node: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Account keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Sign a transfer with a key file and submit it.
    Transfer {
        /// The sender's key file.
        #[arg(long)]
        key: PathBuf,
        /// The recipient account id (64 hex digits).
        #[arg(long)]
        to: String,
        /// Amount in base units.
        #[arg(long)]
        amount: u128,
        /// Gas limit (a transfer uses 37,352).
        #[arg(long, default_value_t = 40_000)]
        gas_limit: u64,
        /// Price per gas; the fee is at most `gas_limit × max_fee_per_gas`.
        #[arg(long, alias = "fee", default_value_t = 1)]
        max_fee_per_gas: u128,
        /// The nonce; default: the account's committed nonce from the node
        /// (pass it explicitly to send several transfers without waiting).
        #[arg(long)]
        nonce: Option<u64>,
        /// Wait until the transfer is committed or rejected.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait with `--wait`.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// An account's balance and next nonce.
    Balance {
        /// The account id (64 hex digits).
        account: String,
    },
    /// A transaction's status and receipt.
    Tx {
        /// The transaction hash (64 hex digits).
        hash: String,
    },
    /// Wait until a transaction is committed or rejected.
    Wait {
        /// The transaction hash (64 hex digits).
        hash: String,
        /// Seconds to wait.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// The node's chain status.
    Status,
}

/// `qbind key ...`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a new ML-DSA-44 account key file (mode 0600, never overwrites).
    New {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the account id of a key file.
    Show {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
    },
}

/// How often `wait` polls.
const POLL: Duration = Duration::from_millis(200);

struct Failure {
    code: i32,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: exit::USAGE,
            message: message.into(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let code = match e {
            ClientError::BadUrl { .. } => exit::USAGE,
            ClientError::Api { .. } => exit::REFUSED,
            ClientError::Transport { .. } | ClientError::Unexpected { .. } => exit::UNREACHABLE,
            ClientError::WaitTimedOut { .. } => exit::TIMEOUT,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

/// Run `qbind` with `args` (the first is the program name); results go to
/// `out`, errors and usage to `err`. Returns the exit code.
pub async fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                err.write_all(text.as_bytes())
            } else {
                out.write_all(text.as_bytes())
            };
            return code;
        }
    };
    match execute(cli, out).await {
        Ok(code) => code,
        Err(f) => {
            let _ = writeln!(err, "qbind: {}", f.message);
            f.code
        }
    }
}

fn print<T: Serialize>(
    out: &mut dyn Write,
    format: OutputFormat,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<(), Failure> {
    let line = match format {
        OutputFormat::Json => serde_json::to_string(value)
            .map_err(|e| Failure::usage(format!("cannot print JSON: {e}")))?,
        OutputFormat::Text => text(),
    };
    writeln!(out, "{line}").map_err(|e| Failure {
        code: exit::USAGE,
        message: format!("cannot write output: {e}"),
    })
}

fn status_text(view: &TxStatusView) -> String {
    match view {
        TxStatusView::Pending { hash } => format!("{hash} pending"),
        TxStatusView::Committed {
            hash,
            height,
            index,
            outcome,
        } => {
            let mut s = format!(
                "{hash} committed at height {height} (index {index}): {} (code {}), gas {}, fee {}",
                outcome.result, outcome.code, outcome.gas_used, outcome.fee
            );
            if let Some(reason) = &outcome.reason {
                s.push_str(&format!(", {reason}"));
            }
            s
        }
        TxStatusView::Rejected {
            hash,
            height,
            code,
            message,
            ..
        } => match height {
            Some(h) => format!("{hash} rejected at height {h}: {code} ({message})"),
            None => format!("{hash} rejected: {code} ({message})"),
        },
        TxStatusView::Dropped {
            hash,
            reason,
            message,
        } => format!("{hash} dropped: {reason} ({message})"),
    }
}

fn final_code(view: &TxStatusView) -> i32 {
    match view {
        TxStatusView::Committed { outcome, .. } if outcome.code == 0 => exit::OK,
        TxStatusView::Pending { .. } => exit::OK,
        _ => exit::TX_NOT_SUCCESSFUL,
    }
}

async fn execute(cli: Cli, out: &mut dyn Write) -> Result<i32, Failure> {
    let format = cli.output;
    match cli.command {
        Command::Key(KeyCommand::New { out: path }) => {
            let key = generate_account_key();
            write_key_file(&path, &key).map_err(|e| Failure::usage(e.to_string()))?;
            let account = hex::encode(account_of(&key).0);
            let json =
                serde_json::json!({ "account": account, "file": path.display().to_string() });
            print(out, format, &json, || {
                format!("account {account}\nkey written to {}", path.display())
            })?;
            Ok(exit::OK)
        }
        Command::Key(KeyCommand::Show { key }) => {
            let key = read_key_file(&key).map_err(|e| Failure::usage(e.to_string()))?;
            let account = hex::encode(account_of(&key).0);
            let json = serde_json::json!({ "account": account });
            print(out, format, &json, || format!("account {account}"))?;
            Ok(exit::OK)
        }
        Command::Transfer {
            key,
            to,
            amount,
            gas_limit,
            max_fee_per_gas,
            nonce,
            wait,
            timeout,
        } => {
            let key = read_key_file(&key).map_err(|e| Failure::usage(e.to_string()))?;
            let recipient = parse_account(&to)
                .ok_or_else(|| Failure::usage("--to: an account id is 64 hex digits"))?;
            let client = QbindClient::new(&cli.node)?;
            let status = client.status().await?;
            let env = parse_network(&status.network).ok_or_else(|| Failure {
                code: exit::UNREACHABLE,
                message: format!("the node reports an unknown network {:?}", status.network),
            })?;
            let nonce = match nonce {
                Some(n) => n,
                None => client.account(account_of(&key)).await?.nonce,
            };
            let payload = TransferPayload::V1(TransferPayloadV1 {
                recipient,
                amount,
                gas_limit,
                max_fee_per_gas,
            });
            let tx = Transaction::sign(&key, env, nonce, payload);
            let hash = client.submit(&tx).await?;
            let hash_hex = hex::encode(hash.0);
            if !wait {
                let json = serde_json::json!({ "hash": hash_hex, "nonce": nonce });
                print(out, format, &json, || {
                    format!("submitted {hash_hex} (nonce {nonce})")
                })?;
                return Ok(exit::OK);
            }
            let view = client
                .wait(hash, Duration::from_secs(timeout), POLL)
                .await?;
            print(out, format, &view, || status_text(&view))?;
            Ok(final_code(&view))
        }
        Command::Balance { account } => {
            let id = parse_account(&account)
                .ok_or_else(|| Failure::usage("an account id is 64 hex digits"))?;
            let view = QbindClient::new(&cli.node)?.account(id).await?;
            print(out, format, &view, || {
                format!("balance {} nonce {}", view.balance, view.nonce)
            })?;
            Ok(exit::OK)
        }
        Command::Tx { hash } => {
            let hash =
                parse_hash(&hash).ok_or_else(|| Failure::usage("a hash is 64 hex digits"))?;
            let view = QbindClient::new(&cli.node)?.tx_status(hash).await?;
            print(out, format, &view, || status_text(&view))?;
            Ok(exit::OK)
        }
        Command::Wait { hash, timeout } => {
            let hash =
                parse_hash(&hash).ok_or_else(|| Failure::usage("a hash is 64 hex digits"))?;
            let view = QbindClient::new(&cli.node)?
                .wait(hash, Duration::from_secs(timeout), POLL)
                .await?;
            print(out, format, &view, || status_text(&view))?;
            Ok(final_code(&view))
        }
        Command::Status => {
            let view = QbindClient::new(&cli.node)?.status().await?;
            print(out, format, &view, || {
                let sync = match &view.sync {
                    qbind_api::wire::SyncView::Synced => "synced".to_string(),
                    qbind_api::wire::SyncView::CatchingUp {
                        target_height,
                        behind_by,
                        blocks_per_sec,
                        source_peers,
                    } => {
                        catching_up_text(*target_height, *behind_by, *blocks_per_sec, *source_peers)
                    }
                    qbind_api::wire::SyncView::StateSync {
                        phase,
                        target_height,
                        chunks_done,
                        chunks_total,
                        bytes,
                        peers,
                        peers_dropped,
                    } => format!(
                        "state sync ({phase}) to {target_height}: {chunks_done} of \
                         {chunks_total} chunks, {:.1} MB, {peers} peers ({peers_dropped} dropped)",
                        *bytes as f64 / 1e6
                    ),
                };
                let pool = view.pool.map_or(String::new(), |p| {
                    format!(
                        " pool {} pending {} queued of {}",
                        p.pending, p.queued, p.capacity
                    )
                });
                format!(
                    "{} chain {} height {} executed {} view {} epoch {} peers {} {sync}{pool}",
                    view.network,
                    view.chain_id,
                    view.height,
                    view.executed_height,
                    view.view,
                    view.epoch,
                    view.peers
                )
            })?;
            Ok(exit::OK)
        }
    }
}

/// The `qbind status` text of a node catching up; the figures a node of an
/// earlier version does not report are left out.
fn catching_up_text(
    target: u64,
    behind_by: Option<u64>,
    blocks_per_sec: Option<u64>,
    source_peers: Option<u64>,
) -> String {
    let mut parts = Vec::new();
    if let Some(n) = behind_by {
        parts.push(format!("{n} behind"));
    }
    if let Some(r) = blocks_per_sec {
        parts.push(format!("{r} blocks/s"));
    }
    if let Some(p) = source_peers {
        parts.push(format!(
            "from {p} {}",
            if p == 1 { "peer" } else { "peers" }
        ));
    }
    if parts.is_empty() {
        format!("catching up to {target}")
    } else {
        format!("catching up to {target} ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::catching_up_text;

    #[test]
    fn catching_up_shows_what_the_node_reports() {
        assert_eq!(
            catching_up_text(9_000, Some(4_000), Some(700), Some(1)),
            "catching up to 9000 (4000 behind, 700 blocks/s, from 1 peer)"
        );
        assert_eq!(catching_up_text(9, None, None, None), "catching up to 9");
    }
}
