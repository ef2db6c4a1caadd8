//! `qbind-localnet`: a local QBIND network of real validator processes,
//! loaded with signed transfers through the public API (docs/node.md
//! "Local network").
//!
//! ```text
//! qbind-localnet                          # 4 validators, 30 s, closed loop
//! qbind-localnet --rate 500 --kill 2@5 --output json
//! ```
//!
//! It generates a DevNet genesis with fresh validator and account keys
//! (`qbind_node_ref::genesis_dir`, the writer `qbind-genesis` uses),
//! `qbind-node init`s the stores and starts one `qbind-node` per validator
//! (own keystore, KEMTLS on 127.0.0.1, the public API on its own port, no
//! built-in load generator). The load generator signs transfers and
//! submits them through the validators' APIs; a follower reads every
//! committed block. A progress line per second; at the end every
//! validator's state root at one common height, every accepted transfer's
//! status and every account's nonce and balance are checked, and the
//! summary printed. Exit status: 0 if the roots are equal, no accepted
//! transfer was lost or applied twice and every validator progressed; 1
//! otherwise; 2 for bad options or a network that did not start; 130 when
//! interrupted (Ctrl-C, SIGTERM: every validator is stopped first).

mod args;
mod cpu;
mod load;
mod net;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use qbind_client::QbindClient;
use qbind_core::types::{AccountId, NetworkEnvironment};
use qbind_node_ref::genesis::load_account_keys;

use args::{Args, Output};
use load::{Generator, Tracker, follow_blocks, lock};
use net::LocalNet;
use report::{KillSummary, Summary, ValidatorSummary};

/// How long accepted transfers get to commit after the load stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// How long every validator gets to reach the last transfer's height.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(60);
/// How long the validators get to start.
const START_LIMIT: Duration = Duration::from_secs(60);
/// Progress lines between two reads of the validators' CPU split.
const SPLIT_EVERY: u64 = 5;
/// Progress ticks (seconds) between samples of the validators' resident sets.
const RSS_EVERY: u64 = 5;

/// Why the run ended without a summary.
enum Failure {
    /// Bad options, or the network did not start (exit status 2).
    Setup(String),
    /// Ctrl-C or SIGTERM (exit status 130).
    Interrupted,
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Setup(s)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.check() {
        eprintln!("qbind-localnet: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("qbind-localnet: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Failure::Setup(e)) => {
            eprintln!("qbind-localnet: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Interrupted) => {
            eprintln!("qbind-localnet: interrupted; validators stopped");
            ExitCode::from(130)
        }
    }
}

/// Set `flag` on the first SIGINT or SIGTERM.
fn watch_signals(flag: Arc<AtomicBool>) {
    tokio::spawn(async move {
        // `None` (no signal can be listened for): never stop by signal.
        if qbind_node_ref::signals::stop_signal().await.is_some() {
            flag.store(true, Ordering::Relaxed);
        }
    });
}

/// The directory the network lives in: `--data-dir` (new or empty), or a
/// temporary one.
fn data_root(args: &Args) -> Result<(PathBuf, Option<tempfile::TempDir>), String> {
    match &args.data_dir {
        Some(dir) => {
            let empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
            if !empty {
                return Err(format!(
                    "--data-dir {} is not empty (qbind-localnet makes a new network there)",
                    dir.display()
                ));
            }
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            Ok((dir.clone(), None))
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("qbind-localnet-")
                .tempdir()
                .map_err(|e| format!("temporary directory: {e}"))?;
            Ok((t.path().to_owned(), Some(t)))
        }
    }
}

/// The network, run: set up, load, check, stop.
async fn run(args: Args) -> Result<bool, Failure> {
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_signals(Arc::clone(&interrupted));
    let (root, temp) = data_root(&args)?;
    let n = args.validators;
    eprintln!(
        "qbind-localnet: generating a DevNet genesis ({n} validators, {} accounts) in {}",
        args.accounts,
        root.display()
    );
    let mut net = LocalNet::create(
        &root,
        n,
        args.accounts,
        args.base_port,
        args.base_timeout_ms,
    )?;
    let keys = load_account_keys(&net.genesis.accounts_path).map_err(|e| e.to_string())?;
    let ids: Vec<AccountId> = keys
        .iter()
        .map(|k| AccountId::from_public_key(k.public_key()))
        .collect();
    let balances = net.genesis.genesis.balances().map_err(|e| e.to_string())?;
    let genesis_balance: Vec<u128> = ids
        .iter()
        .map(|id| {
            balances
                .iter()
                .find(|(a, _)| a == id)
                .map_or(0, |(_, b)| *b)
        })
        .collect();
    for i in 0..n {
        net.start(i)?;
    }
    let ready = tokio::select! {
        r = net.wait_ready(START_LIMIT) => r,
        () = until(&interrupted) => Err(String::new()),
    };
    if interrupted.load(Ordering::Relaxed) {
        net.stop();
        return Err(Failure::Interrupted);
    }
    if let Err(e) = ready {
        net.stop();
        keep_dir(temp);
        return Err(Failure::Setup(e));
    }
    let apis: Vec<String> = net
        .validators
        .iter()
        .map(|v| format!("http://{}", v.api))
        .collect();
    eprintln!(
        "qbind-localnet: {n} validators up (APIs {}); load: rate {}, {:?}",
        apis.join(" "),
        args.rate,
        args.duration
    );
    let clients: Vec<QbindClient> = net.validators.iter().map(|v| v.client.clone()).collect();
    let tracker = Tracker::new(n, keys.len());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let generator = Generator {
        env: NetworkEnvironment::Devnet,
        keys,
        clients: clients.clone(),
        rate: args.rate,
        in_flight: args.in_flight,
        tracker: Arc::clone(&tracker),
    };
    let gen_task = tokio::spawn(generator.run(Arc::clone(&stop), Arc::clone(&done)));
    let follow_task = tokio::spawn(follow_blocks(
        clients.clone(),
        Arc::clone(&tracker),
        Arc::clone(&done),
    ));

    let disk_at_start = net.data_bytes();
    let start = Instant::now();
    let load_end = start + args.duration;
    // (when, validator, kill?) in time order.
    let mut events: Vec<(Instant, usize, bool)> = args
        .kill
        .iter()
        .flat_map(|k| {
            [
                (start + k.at, k.validator, true),
                (start + k.at + k.restart_after, k.validator, false),
            ]
        })
        .collect();
    events.sort_by_key(|e| e.0);
    let mut kills: Vec<KillSummary> = Vec::new();
    let mut heights: Vec<Option<u64>> = vec![Some(0); n];
    let mut last = Instant::now();
    let mut next_progress = start + Duration::from_secs(1);
    let mut progress_ticks = 0u64;
    let mut phase_end: Option<Instant> = None;
    let mut target: Option<u64> = None;
    let mut caught_up = false;
    loop {
        if interrupted.load(Ordering::Relaxed) {
            done.store(true, Ordering::Relaxed);
            gen_task.abort();
            follow_task.abort();
            net.stop();
            keep_dir(temp);
            return Err(Failure::Interrupted);
        }
        let now = Instant::now();
        while events.first().is_some_and(|e| e.0 <= now) {
            let (_, v, kill) = events.remove(0);
            let mut t = now.duration_since(start).as_secs_f64();
            if kill {
                // Its CPU split up to now (the process's counters die with it).
                net.refresh_splits(Some(v)).await;
                t = start.elapsed().as_secs_f64();
                lock(&tracker).validator_down(v);
                net.kill(v);
                eprintln!("qbind-localnet: {t:.1} s: validator {v} killed (SIGKILL)");
                kills.push(KillSummary {
                    validator: v,
                    killed_at_secs: t,
                    restarted_at_secs: None,
                    height_at_kill: heights.get(v).copied().flatten().unwrap_or(0),
                });
            } else {
                net.restart(v)?;
                eprintln!(
                    "qbind-localnet: {t:.1} s: validator {v} restarted on its data directory"
                );
                if let Some(k) = kills
                    .iter_mut()
                    .rev()
                    .find(|k| k.validator == v && k.restarted_at_secs.is_none())
                {
                    k.restarted_at_secs = Some(t);
                }
            }
        }
        if now >= load_end && !stop.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
            eprintln!("qbind-localnet: load stopped; waiting for the accepted transfers to commit");
            phase_end = Some(now + DRAIN_LIMIT);
        }
        if now >= next_progress {
            let statuses = report::statuses(&clients).await;
            heights = statuses
                .iter()
                .map(|s| s.as_ref().map(|s| s.executed_height))
                .collect();
            // Pool depth: transactions in the pool plus those on their way.
            let pools: Vec<Option<u64>> = statuses
                .iter()
                .map(|s| {
                    s.as_ref()
                        .and_then(|s| s.pool)
                        .map(|p| p.pending.saturating_add(p.queued))
                })
                .collect();
            let line = report::progress_line(
                &tracker,
                now.duration_since(start),
                &heights,
                &pools,
                &mut last,
            );
            eprintln!("{line}");
            next_progress += Duration::from_secs(1);
            progress_ticks += 1;
            if progress_ticks.is_multiple_of(SPLIT_EVERY) {
                net.refresh_splits(None).await;
            }
            if progress_ticks.is_multiple_of(RSS_EVERY) {
                let at = now.duration_since(start).as_secs_f64();
                for v in &mut net.validators {
                    v.record_rss(at);
                }
            }
        }
        if events.is_empty() && stop.load(Ordering::Relaxed) {
            match target {
                None => {
                    let drained = lock(&tracker).drained();
                    if drained || phase_end.is_some_and(|e| now > e) {
                        // Every validator must reach the last transfer's block.
                        let t = lock(&tracker);
                        target = Some(
                            t.sent
                                .iter()
                                .filter_map(|s| s.inclusions.first())
                                .max()
                                .copied()
                                .unwrap_or(1),
                        );
                        drop(t);
                        phase_end = Some(now + CATCH_UP_LIMIT);
                    }
                }
                Some(goal) => {
                    let h = report::heights(&clients).await;
                    if h.iter().all(|h| h.is_some_and(|h| h >= goal)) {
                        heights = h;
                        caught_up = true;
                        break;
                    }
                    if phase_end.is_some_and(|e| now > e) {
                        heights = h;
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done.store(true, Ordering::Relaxed);
    let _ = gen_task.await;
    let _ = follow_task.await;
    let target = target.unwrap_or(0);

    let mut summary = finish(
        &args,
        &mut net,
        &tracker,
        &clients,
        &ids,
        &genesis_balance,
        &heights,
        kills,
        target,
        caught_up,
        start,
        load_end,
    )
    .await;
    if args.keep {
        print(&args, &summary);
        eprintln!("qbind-localnet: the network keeps running; Ctrl-C stops it. APIs:");
        for a in &apis {
            eprintln!("  {a}");
        }
        until(&interrupted).await;
    }
    let unclean = tokio::task::block_in_place(|| net.stop());
    summary.disk = report::DiskSummary::of(
        disk_at_start,
        net.data_bytes(),
        summary.validators,
        summary.committed,
    );
    for v in unclean {
        summary.ok = false;
        summary
            .failures
            .push(format!("validator {v} did not stop cleanly on SIGTERM"));
    }
    drop(net);
    if !summary.ok || args.data_dir.is_some() {
        summary.data_dir = Some(root.display().to_string());
        keep_dir(temp);
    }
    if !args.keep || !summary.ok {
        print(&args, &summary);
    }
    Ok(summary.ok)
}

/// Resolves once `flag` is set.
async fn until(flag: &AtomicBool) {
    while !flag.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Keep a temporary directory (for a failed or interrupted run's logs).
fn keep_dir(temp: Option<tempfile::TempDir>) {
    if let Some(t) = temp {
        let path = t.keep();
        eprintln!("qbind-localnet: data and logs kept in {}", path.display());
    }
}

fn print(args: &Args, summary: &Summary) {
    match args.output {
        Output::Text => report::print_text(summary),
        Output::Json => match serde_json::to_string_pretty(summary) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("qbind-localnet: summary: {e}"),
        },
    }
}

/// The end-of-run checks and the summary.
#[allow(clippy::too_many_arguments)]
async fn finish(
    args: &Args,
    net: &mut LocalNet,
    tracker: &load::Shared,
    clients: &[QbindClient],
    ids: &[AccountId],
    genesis_balance: &[u128],
    heights: &[Option<u64>],
    kills: Vec<KillSummary>,
    target: u64,
    caught_up: bool,
    start: Instant,
    load_end: Instant,
) -> Summary {
    let mut failures = Vec::new();
    if !caught_up {
        failures.push(format!(
            "not every validator reached height {target} (the last transfer's block) within \
             {CATCH_UP_LIMIT:?}: {heights:?}"
        ));
    }
    // The common height: the lowest executed height among the validators.
    let common = heights.iter().flatten().min().copied().unwrap_or(0);
    let mut roots: Vec<Option<String>> = Vec::with_capacity(clients.len());
    for c in clients {
        let mut root = None;
        for _ in 0..20 {
            if let Ok(b) = c.block(common).await
                && b.state_root.is_some()
            {
                root = b.state_root;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        roots.push(root);
    }
    let roots_equal = roots.iter().all(Option::is_some) && roots.windows(2).all(|w| w[0] == w[1]);
    if !roots_equal {
        failures.push(format!("state roots at height {common} differ: {roots:?}"));
    }
    // The ledger from a validator that was never restarted; then each
    // restarted one must report the same (its receipts are in its store).
    let mut killed: Vec<usize> = kills.iter().map(|k| k.validator).collect();
    killed.sort_unstable();
    killed.dedup();
    let reference = (0..clients.len())
        .find(|i| !killed.contains(i))
        .unwrap_or(0);
    let ledger = report::ledger(&clients[reference], tracker, ids, genesis_balance).await;
    for &v in killed
        .iter()
        .filter(|v| **v != reference && **v < clients.len())
    {
        let theirs = report::ledger(&clients[v], tracker, ids, genesis_balance).await;
        if theirs.applied != ledger.applied || theirs.lost.len() != ledger.lost.len() {
            failures.push(format!(
                "validator {v}, restarted, reports {} transfers applied and {} lost where \
                 validator {reference} reports {} and {}: receipts did not survive its restart",
                theirs.applied,
                theirs.lost.len(),
                ledger.applied,
                ledger.lost.len()
            ));
        }
    }
    if !ledger.lost.is_empty() {
        failures.push(format!(
            "{} accepted transfers lost (not applied), e.g. {}",
            ledger.lost.len(),
            ledger.lost[0]
        ));
    }
    if !ledger.applied_twice.is_empty() {
        failures.push(format!(
            "{} accounts show more applied transfers than were sent (applied twice)",
            ledger.applied_twice.len()
        ));
    }
    if !ledger.inconsistent.is_empty() {
        failures.push(format!(
            "{} accounts' nonce or balance differ from what their transfers imply",
            ledger.inconsistent.len()
        ));
    }
    for k in &kills {
        let after = heights.get(k.validator).copied().flatten().unwrap_or(0);
        if after <= k.height_at_kill {
            failures.push(format!(
                "validator {} made no progress after its restart (height {after})",
                k.validator
            ));
        }
    }
    net.refresh_splits(None).await;
    let load_secs = load_end.duration_since(start).as_secs_f64();
    let split = net
        .validators
        .iter()
        .fold(cpu::Split::default(), |sum, v| cpu::add(sum, v.split()));
    let per_validator: Vec<ValidatorSummary> = net
        .validators
        .iter_mut()
        .zip(&roots)
        .map(|(v, root)| {
            let usage = v.usage();
            ValidatorSummary {
                index: v.index,
                api: format!("http://{}", v.api),
                executed_height: heights.get(v.index).copied().flatten(),
                state_root: root.clone(),
                peak_rss_mib: usage.peak_rss_kib as f64 / 1024.0,
                cpu_secs: (usage.cpu_secs * 10.0).round() / 10.0,
                restarts: v.restarts,
                rss_growth: (v.restarts == 0)
                    .then(|| report::RssGrowth::of(&v.rss_series, load_secs))
                    .flatten(),
                rss_mib: std::mem::take(&mut v.rss_series),
            }
        })
        .collect();
    let t = lock(tracker);
    let during = t.committed_at.iter().filter(|at| **at <= load_end).count() as u64;
    Summary {
        ok: failures.is_empty(),
        failures,
        validators: clients.len(),
        accounts: ids.len(),
        rate: args.rate.to_string(),
        duration_secs: load_secs,
        signed: t.sent.len() as u64,
        accepted: t.sent.iter().filter(|s| s.accepted).count() as u64,
        committed: ledger.applied,
        committed_during_load: during,
        tx_per_sec: (during as f64 / load_secs * 10.0).round() / 10.0,
        latency_ms: report::Latency::of(t.latencies.clone()),
        lost: ledger.lost.len() as u64,
        applied_twice_accounts: ledger.applied_twice.len() as u64,
        inconsistent_accounts: ledger.inconsistent.len() as u64,
        reincluded: ledger.reincluded.len() as u64,
        refused: t.sent.iter().filter(|s| s.refused.is_some()).count() as u64,
        backoffs: t.backoffs,
        transport_errors: t.transport_errors,
        common_height: common,
        roots_equal,
        cpu_split: cpu::CpuSplit::of(split, per_validator.iter().map(|v| v.cpu_secs).sum()),
        per_validator,
        kills,
        disk: report::DiskSummary::default(),
        data_dir: None,
    }
}
