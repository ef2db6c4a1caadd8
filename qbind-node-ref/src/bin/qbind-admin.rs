//! `qbind-admin`: admin actions on a running `qbind-node` over its
//! authenticated local admin endpoint (`--admin-addr`,
//! `--admin-token-file`; never the public API).
//!
//! ```text
//! qbind-admin gen-token /etc/qbind/admin.token
//! qbind-admin --addr 127.0.0.1:9102 --token-file /etc/qbind/admin.token status
//! qbind-admin --addr 127.0.0.1:9102 --token-file /etc/qbind/admin.token --output json peers
//! qbind-admin ... dag-status | snapshot | prune | load-next-key
//! ```
//!
//! Exit status (as `qbind-snapshot` and `qbind-envelope`): 0 done; 1 the
//! node refused or the action failed (snapshots or pruning off, a store
//! error, still starting); 2 bad arguments, an unreadable or insecure
//! token file, the node unreachable, or the token refused (401).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use qbind_node_ref::admin::wire::{
    DagStatusReply, ErrorReply, NextKeyReply, PeersReply, PruneReply, SnapshotReply, StatusReply,
};
use qbind_node_ref::admin::{Action, AdminToken};
use qbind_node_ref::cli::{EXIT_FAILED, EXIT_USAGE, Failure, Output, finish};

#[derive(Debug, Parser)]
#[command(
    name = "qbind-admin",
    version,
    about = "Admin actions on a running qbind-node over its authenticated admin endpoint"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The node's admin endpoint (its --admin-addr).
    #[arg(long, global = true)]
    addr: Option<SocketAddr>,
    /// The node's token file (its --admin-token-file; owner-only).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// `text` (default) or `json` (the node's reply, one object on stdout).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Give up on a reply after this many seconds (snapshots of large
    /// stores take a while; the node answers within a minute).
    #[arg(long, global = true, default_value_t = 120)]
    timeout_secs: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Executed and committed height, view, epoch and role.
    Status,
    /// The connected peers: id, key fingerprint, address, direction, kind.
    Peers,
    /// What the DAG availability layer reports (or that payloads are FIFO).
    DagStatus,
    /// Take a snapshot now into the node's --snapshot-dir.
    Snapshot,
    /// Prune now to the node's --state-retain-height.
    Prune,
    /// Load the validator's next consensus key from its
    /// --next-signer-keystore-path now (once; docs/key-rotation.md): it
    /// signs from the epoch an executed rotation to it takes effect.
    LoadNextKey,
    /// Write a new random token (32 bytes, hex) to OUT, readable by its
    /// owner only; give it to the node's --admin-token-file.
    GenToken {
        /// The new file (never overwritten).
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    finish("qbind-admin", cli.output, run(&cli))
}

fn run(cli: &Cli) -> Result<String, Failure> {
    let action = match &cli.command {
        Command::GenToken { out } => {
            AdminToken::generate()
                .write_new(out)
                .map_err(|e| Failure::usage(e.to_string()))?;
            return Ok(match cli.output {
                Output::Text => format!("wrote a new admin token to {}", out.display()),
                Output::Json => serde_json::json!({ "token_file": out }).to_string(),
            });
        }
        Command::Status => Action::Status,
        Command::Peers => Action::Peers,
        Command::DagStatus => Action::DagStatus,
        Command::Snapshot => Action::Snapshot,
        Command::Prune => Action::Prune,
        Command::LoadNextKey => Action::LoadNextKey,
    };
    let addr = cli.addr.ok_or_else(|| {
        Failure::usage("say where the node's admin endpoint is: --addr HOST:PORT")
    })?;
    let path = cli
        .token_file
        .as_ref()
        .ok_or_else(|| Failure::usage("say which token to use: --token-file FILE"))?;
    let token = AdminToken::load(path).map_err(|e| Failure::usage(e.to_string()))?;
    let reply = request(addr, &token, action, Duration::from_secs(cli.timeout_secs))?;
    match cli.output {
        Output::Json => Ok(reply.to_string()),
        Output::Text => render(action, reply),
    }
}

/// Send `action` and return the node's JSON reply.
fn request(
    addr: SocketAddr,
    token: &AdminToken,
    action: Action,
    timeout: Duration,
) -> Result<serde_json::Value, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("starting the runtime: {e}")))?;
    runtime.block_on(async {
        // No proxy: the token must go to the node and nowhere else.
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .build()
            .map_err(|e| Failure::usage(format!("HTTP client: {e}")))?;
        let url = format!("http://{addr}{}", action.path());
        let response = client
            .post(&url)
            .bearer_auth(token.to_hex().as_str())
            .json(&serde_json::json!({}))
            .send()
            .await
            .map_err(|e| {
                Failure::usage(format!("cannot reach the admin endpoint at {addr}: {e}"))
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::usage(format!("reading the reply from {addr}: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| Failure::usage(format!("the reply from {addr} is not JSON: {e}")));
        }
        let message = serde_json::from_slice::<ErrorReply>(&body).map_or_else(
            |_| String::from_utf8_lossy(&body).into_owned(),
            |e| format!("{} ({})", e.message, e.error),
        );
        Err(Failure {
            code: match status.as_u16() {
                401 => EXIT_USAGE,
                409 | 500..=599 => EXIT_FAILED,
                _ => EXIT_USAGE,
            },
            message: format!(
                "{} refused by the node: HTTP {status}: {message}",
                action.name()
            ),
        })
    })
}

fn parse<T: serde::de::DeserializeOwned>(reply: serde_json::Value) -> Result<T, Failure> {
    serde_json::from_value(reply).map_err(|e| Failure::usage(format!("unexpected reply: {e}")))
}

/// The reply for a person.
fn render(action: Action, reply: serde_json::Value) -> Result<String, Failure> {
    let mut lines = Vec::new();
    match action {
        Action::Status => {
            let r: StatusReply = parse(reply)?;
            for n in &r.nodes {
                lines.push(format!(
                    "{} {} ({}): executed height {}, committed height {}, view {}, epoch {}",
                    r.role, n.id, r.profile, n.executed_height, n.committed_height, n.view, n.epoch
                ));
            }
        }
        Action::Peers => {
            let r: PeersReply = parse(reply)?;
            for n in &r.nodes {
                lines.push(match n.transport.as_str() {
                    "memory" => format!("node {}: in-process network, no connections", n.id),
                    "sentry-link" => {
                        format!(
                            "node {}: behind its sentry (ask the sentry for peers)",
                            n.id
                        )
                    }
                    _ => format!("node {}: {} connected peers", n.id, n.peers.len()),
                });
                for p in &n.peers {
                    lines.push(format!(
                        "  peer {:>4}  {:<9}  {:<8}  {:<21}  key {}",
                        p.id, p.kind, p.direction, p.address, p.key_fingerprint
                    ));
                }
            }
        }
        Action::DagStatus => {
            let r: DagStatusReply = parse(reply)?;
            if r.payload_mode != "dag" {
                lines.push(format!(
                    "payload mode {}: this node runs no DAG availability layer",
                    r.payload_mode
                ));
            }
            for n in &r.nodes {
                if let Some(dag) = &n.dag {
                    lines.push(format!("node {} DAG:", n.id));
                    for (k, v) in dag {
                        lines.push(format!("  {k:<36} {v}"));
                    }
                } else if r.payload_mode == "dag" {
                    lines.push(format!("node {}: no DAG counters reported yet", n.id));
                }
            }
        }
        Action::Snapshot => {
            let r: SnapshotReply = parse(reply)?;
            for s in &r.snapshots {
                lines.push(format!(
                    "node {}: snapshot at height {} written to {}\n  trust anchor {}",
                    s.id, s.height, s.path, s.trust_anchor
                ));
            }
        }
        Action::LoadNextKey => {
            let r: NextKeyReply = parse(reply)?;
            lines.push(format!(
                "validator {}: next consensus key {} {} from {}",
                r.id,
                r.key_fingerprint,
                if r.loaded_now {
                    "loaded"
                } else {
                    "was already loaded (unchanged until the node restarts)"
                },
                r.dir
            ));
        }
        Action::Prune => {
            let r: PruneReply = parse(reply)?;
            for p in &r.nodes {
                lines.push(format!(
                    "node {}: pruned {} entries; lowest height kept {}{}",
                    p.id,
                    p.deleted_keys,
                    p.floor,
                    if p.complete {
                        ""
                    } else {
                        " (stopped early: the node is stopping)"
                    }
                ));
            }
        }
    }
    Ok(lines.join("\n"))
}
