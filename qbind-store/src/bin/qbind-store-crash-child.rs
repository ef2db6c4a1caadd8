//! Child process of the crash campaign (tests/store/crash.rs): opens a store,
//! continues committing blocks of the [`Workload`] from its committed height
//! (real protocol state: a genesis credit, then transfers, each block's
//! account changes, state summary, body, QC and height markers in one durable
//! batch), and prints each height on stdout once its durable write has
//! returned. Before the first block it prints `ready <height>` once the store
//! is open (recovery done), so the parent can aim its kill either at
//! recovery or at the commits.
//! The parent kills it with SIGKILL at random moments.
//!
//! Usage: `qbind-store-crash-child <fjall|fjall-small|rocksdb> <dir> <max-height>`
//! (`fjall-small`: fjall with [`FjallConfig::small_memtables`]).
//!
//! `qbind-store-crash-child restore <snapshot> <data-dir> <chain-id> <anchor>`
//! instead restores a fjall snapshot of the workload (block hash: SHA3-256
//! of the body) into `data-dir` and prints `restored <height>`; the parent
//! kills it mid-restore (tests/store/restore.rs).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use qbind_core::traits::{StateBackend, StorageError};
use qbind_store::snapshot::{SnapshotError, TrustAnchor, restore_snapshot};
use qbind_store::workload::{Workload, committed_height};
use qbind_store::{FjallBackend, FjallConfig, PersistentBackend};

fn run<B: StateBackend>(store: Result<B, StorageError>, max_height: u64) -> Result<(), String> {
    let store = store.map_err(|e| e.to_string())?;
    let workload = Workload::default();
    let start = committed_height(&store).map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready {start}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    for height in start + 1..=max_height {
        workload.commit(&store, height).map_err(|e| e.to_string())?;
        writeln!(out, "{height}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn restore(args: &[String]) -> Result<(), String> {
    use sha3::Digest;
    let [snapshot, data_dir, chain_id, anchor] = args else {
        return Err("usage: restore <snapshot> <data-dir> <chain-id> <anchor>".into());
    };
    let chain_id = chain_id.parse::<u64>().map_err(|e| e.to_string())?;
    let anchor: TrustAnchor = anchor.parse().map_err(|e: SnapshotError| e.to_string())?;
    let hash = |_height: u64, body: &[u8]| -> Result<[u8; 32], SnapshotError> {
        Ok(sha3::Sha3_256::digest(body).into())
    };
    let (_, meta) = restore_snapshot::<FjallBackend>(
        Path::new(snapshot),
        chain_id,
        &anchor,
        Path::new(data_dir),
        &hash,
    )
    .map_err(|e| e.to_string())?;
    println!("restored {}", meta.height);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("restore") {
        return match restore(args.get(2..).unwrap_or_default()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("restore child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let (Some(kind), Some(dir), Some(max)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: qbind-store-crash-child <fjall|fjall-small|rocksdb> <dir> <max-height>");
        return ExitCode::from(2);
    };
    let Ok(max_height) = max.parse::<u64>() else {
        eprintln!("max-height must be a number");
        return ExitCode::from(2);
    };
    let dir = Path::new(dir);
    let result = match kind.as_str() {
        "fjall" => run(FjallBackend::open_dir(dir), max_height),
        "fjall-small" => run(
            FjallBackend::open_with(dir, &FjallConfig::small_memtables()),
            max_height,
        ),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => run(qbind_store::RocksDbBackend::open_dir(dir), max_height),
        other => Err(format!("unknown backend {other}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash child: {e}");
            ExitCode::FAILURE
        }
    }
}
