//! `qbind-snapshot`: the runbook's snapshot tool (§5.2, §5.3) over a
//! stopped node's fjall store.
//!
//! ```text
//! qbind-snapshot create   --data-dir DIR/validator-0 --snapshot-dir SNAPS (-P PROFILE | --genesis FILE)
//! qbind-snapshot list     SNAPS
//! qbind-snapshot validate SNAPS/500000 [--trusted-snapshot-anchor A] (-P PROFILE | --genesis FILE)
//! qbind-snapshot restore  SNAPS/500000 --data-dir NEW --trusted-snapshot-anchor A (-P | --genesis)
//! ```
//!
//! Every subcommand takes `--output json`. Exit status: 0 success; 1 the
//! snapshot or store is invalid, damaged or for another chain, or the
//! restore target is not empty; 2 bad arguments or an unreadable genesis.
//! `create` is for a stopped node (a running node writes its own
//! snapshots with `--snapshot-dir`). `validate` without an anchor shows only that the snapshot is
//! intact and self-consistent; with the anchor of a node you trust it
//! shows it is that chain's state.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use qbind_node_ref::cli::{Failure, Output, finish};
use qbind_node_ref::genesis::Genesis;

use qbind_node_ref::profile::Profile;
use qbind_node_ref::store::{NodeStore, StoreBackend};
use qbind_store::FjallBackend;
use qbind_store::metrics::StoreMetrics;
use qbind_store::snapshot::{
    SnapshotConfig, SnapshotMeta, TrustAnchor, list_snapshots, qbind_block_id, read_meta,
    validate_snapshot,
};

#[derive(Debug, Parser)]
#[command(
    name = "qbind-snapshot",
    version,
    about = "Create, list, validate and restore QBIND state snapshots"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// `text` (default) or `json` (one object on stdout).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Which chain: its ID comes from the genesis file or the profile.
#[derive(Debug, Args)]
struct Chain {
    /// The network's genesis file (chain ID and epoch length).
    #[arg(long, conflicts_with = "profile")]
    genesis: Option<PathBuf>,
    /// The network profile (chain ID) when there is no genesis file.
    #[arg(short = 'P', long)]
    profile: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Snapshot a stopped node's store into SNAPSHOT_DIR/HEIGHT.
    Create {
        /// The validator's store (e.g. /data/qbind/validator-0).
        #[arg(short = 'd', long)]
        data_dir: PathBuf,
        /// Where snapshots are kept.
        #[arg(long)]
        snapshot_dir: PathBuf,
        /// Snapshots to keep in SNAPSHOT_DIR (older ones are removed).
        #[arg(long, default_value_t = 5)]
        max_snapshots: usize,
        #[command(flatten)]
        chain: Chain,
    },
    /// List the snapshots in a directory, oldest first.
    List {
        /// The snapshot directory.
        snapshot_dir: PathBuf,
    },
    /// Check every file, the block hash and the state root of a snapshot.
    Validate {
        /// The snapshot (SNAPSHOT_DIR/HEIGHT).
        path: PathBuf,
        /// HEIGHT:BLOCK_HASH:STATE_ROOT printed by a node you trust.
        #[arg(long)]
        trusted_snapshot_anchor: Option<TrustAnchor>,
        /// Scratch space for the trial restore (default: beside the
        /// snapshot).
        #[arg(long)]
        scratch_dir: Option<PathBuf>,
        #[command(flatten)]
        chain: Chain,
    },
    /// Restore a snapshot into a new, empty data directory (atomically).
    Restore {
        /// The snapshot (SNAPSHOT_DIR/HEIGHT).
        path: PathBuf,
        /// The new store directory (absent or empty).
        #[arg(short = 'd', long)]
        data_dir: PathBuf,
        /// HEIGHT:BLOCK_HASH:STATE_ROOT printed by a node you trust.
        #[arg(long)]
        trusted_snapshot_anchor: TrustAnchor,
        #[command(flatten)]
        chain: Chain,
    },
}

/// Chain ID and epoch length of the chosen chain.
fn chain(c: &Chain) -> Result<(u64, Option<u64>), Failure> {
    match (&c.genesis, &c.profile) {
        (Some(path), _) => {
            let g = Genesis::load(path).map_err(|e| Failure::usage(e.to_string()))?;
            Ok((g.chain_id, g.epoch_length))
        }
        (None, Some(name)) => {
            let p = Profile::parse(name).map_err(|e| Failure::usage(e.to_string()))?;
            Ok((p.env().chain_id().0, None))
        }
        (None, None) => Err(Failure::usage(
            "say which chain: --genesis FILE or -P PROFILE",
        )),
    }
}

fn describe(meta: &SnapshotMeta, verdict: Option<&str>, output: Output) -> String {
    let anchor = TrustAnchor::of(meta).map_or_else(|e| e.to_string(), |a| a.to_string());
    match output {
        Output::Json => serde_json::json!({
            "height": meta.height,
            "chain_id": meta.chain_id,
            "epoch": meta.epoch,
            "block_hash": meta.block_hash,
            "state_root": meta.state_root,
            "executed_height": meta.executed_height,
            "backend": meta.backend,
            "created_at_unix_ms": meta.created_at_unix_ms,
            "files": meta.files.len(),
            "trust_anchor": anchor,
            "validation": verdict,
        })
        .to_string(),
        Output::Text => {
            let mut s = format!(
                "Snapshot height: {}\nChain ID: {}\nEpoch: {}\nBlock hash: 0x{}\nState root: 0x{}\n\
                 Executed height: {}\nBackend: {}\nFiles: {}\nTrust anchor: {anchor}",
                meta.height,
                meta.chain_id,
                meta.epoch,
                meta.block_hash,
                meta.state_root,
                meta.executed_height,
                meta.backend,
                meta.files.len()
            );
            if let Some(v) = verdict {
                s.push_str(&format!("\nValidation: {v}"));
            }
            s
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> Failure {
    Failure::failed(e.to_string())
}

fn run(cli: Cli) -> Result<String, Failure> {
    let out = cli.output;
    match cli.command {
        Command::Create {
            data_dir,
            snapshot_dir,
            max_snapshots,
            chain: c,
        } => {
            let (chain_id, epoch_length) = chain(&c)?;
            if !data_dir.is_dir() {
                return Err(Failure::usage(format!(
                    "{}: no such store directory",
                    data_dir.display()
                )));
            }
            let backend = StoreBackend::of_dir(&data_dir).ok_or_else(|| {
                invalid(format!(
                    "{}: neither a fjall nor a RocksDB store",
                    data_dir.display()
                ))
            })?;
            let store = NodeStore::open(backend, &data_dir).map_err(|e| {
                invalid(format!(
                    "cannot open the store {} (is the node still running?): {e}",
                    data_dir.display()
                ))
            })?;
            let committed =
                qbind_core::schema::read_height(&store, qbind_core::schema::COMMITTED_HEIGHT_KEY)
                    .map_err(invalid)?
                    .ok_or_else(|| {
                        invalid(format!(
                            "{}: no committed height: not a node's store",
                            data_dir.display()
                        ))
                    })?;
            let epoch = epoch_length.map_or(0, |len| committed.0 / len.max(1));
            let config = SnapshotConfig {
                snapshot_dir,
                interval_blocks: 1,
                max_snapshots: max_snapshots.max(1),
                chain_id,
            };
            let meta = store
                .create_snapshot(&config, epoch, &qbind_block_id, &StoreMetrics::default())
                .map_err(invalid)?;
            Ok(describe(&meta, None, out))
        }
        Command::List { snapshot_dir } => {
            let heights = list_snapshots(&snapshot_dir).map_err(invalid)?;
            let metas: Vec<Result<SnapshotMeta, String>> = heights
                .iter()
                .map(|h| read_meta(&snapshot_dir.join(h.to_string())).map_err(|e| e.to_string()))
                .collect();
            Ok(match out {
                Output::Json => serde_json::Value::Array(
                    heights
                        .iter()
                        .zip(&metas)
                        .map(|(h, m)| match m {
                            Ok(m) => serde_json::json!({
                                "height": h, "block_hash": m.block_hash,
                                "state_root": m.state_root, "epoch": m.epoch,
                                "created_at_unix_ms": m.created_at_unix_ms,
                            }),
                            Err(e) => serde_json::json!({ "height": h, "error": e }),
                        })
                        .collect(),
                )
                .to_string(),
                Output::Text => heights
                    .iter()
                    .zip(&metas)
                    .map(|(h, m)| match m {
                        Ok(m) => format!("{h}\tblock 0x{}\tstate 0x{}", m.block_hash, m.state_root),
                        Err(e) => format!("{h}\tunreadable: {e}"),
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            })
        }
        Command::Validate {
            path,
            trusted_snapshot_anchor,
            scratch_dir,
            chain: c,
        } => {
            let (chain_id, _) = chain(&c)?;
            let scratch = scratch_dir
                .or_else(|| path.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from("."));
            let meta = match snapshot_backend(&path)? {
                StoreBackend::Fjall => validate_snapshot::<FjallBackend>(
                    &path,
                    chain_id,
                    trusted_snapshot_anchor.as_ref(),
                    &scratch,
                    &qbind_block_id,
                ),
                #[cfg(feature = "rocksdb")]
                StoreBackend::RocksDb => validate_snapshot::<qbind_store::RocksDbBackend>(
                    &path,
                    chain_id,
                    trusted_snapshot_anchor.as_ref(),
                    &scratch,
                    &qbind_block_id,
                ),
                #[cfg(not(feature = "rocksdb"))]
                other => {
                    return Err(invalid(
                        qbind_node_ref::node::NodeError::BackendUnavailable(other),
                    ));
                }
            }
            .map_err(invalid)?;
            let verdict = if trusted_snapshot_anchor.is_some() {
                "OK (matches the trusted anchor)"
            } else {
                "OK (intact and self-consistent; give --trusted-snapshot-anchor to check it is the chain's state)"
            };
            Ok(describe(&meta, Some(verdict), out))
        }
        Command::Restore {
            path,
            data_dir,
            trusted_snapshot_anchor,
            chain: c,
        } => {
            let (chain_id, _) = chain(&c)?;
            let (_store, meta) = NodeStore::restore(
                snapshot_backend(&path)?,
                &path,
                chain_id,
                &trusted_snapshot_anchor,
                &data_dir,
                &qbind_block_id,
            )
            .map_err(invalid)?;
            Ok(describe(&meta, Some("restored"), out))
        }
    }
}

/// The backend a snapshot was taken from (its `meta.json`).
fn snapshot_backend(path: &Path) -> Result<StoreBackend, Failure> {
    let meta = read_meta(path).map_err(invalid)?;
    StoreBackend::named(&meta.backend).ok_or_else(|| {
        invalid(format!(
            "{}: snapshot of an unknown backend {:?}",
            path.display(),
            meta.backend
        ))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = cli.output;
    finish("qbind-snapshot", output, run(cli))
}
