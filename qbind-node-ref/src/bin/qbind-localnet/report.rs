//! The live progress line, the end-of-run checks through the API (state
//! roots at one common height, every accepted transfer's status, the
//! accounts) and the summary, as text or JSON.

use std::time::{Duration, Instant};

use qbind_api::wire::{StatusView, TxStatusView};
use qbind_client::QbindClient;
use qbind_core::types::AccountId;
use qbind_node_ref::localnet::ledger::{
    AccountState, LedgerReport, Outcome, SentTransfer, check_ledger,
};
use qbind_node_ref::localnet::percentile::percentile;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::load::{Shared, lock};

/// Requests the final checks keep in flight.
const CHECK_CONCURRENCY: usize = 32;

/// Latency percentiles, milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: Option<f64>,
    pub(crate) p90: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) max: Option<f64>,
}

impl Latency {
    pub(crate) fn of(mut secs: Vec<f64>) -> Latency {
        let mut ms = |p| percentile(&mut secs, p).map(|s| (s * 1e4).round() / 10.0);
        Latency {
            p50: ms(50.0),
            p90: ms(90.0),
            p99: ms(99.0),
            max: ms(100.0),
        }
    }
}

/// One validator at the end.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ValidatorSummary {
    pub(crate) index: usize,
    pub(crate) api: String,
    /// Executed height at the end (`None`: its API did not answer).
    pub(crate) executed_height: Option<u64>,
    /// Its state root at the common height.
    pub(crate) state_root: Option<String>,
    pub(crate) peak_rss_mib: f64,
    pub(crate) cpu_secs: f64,
    pub(crate) restarts: u32,
    /// Resident set over the run: (seconds since the load started, MiB),
    /// one sample every few seconds while its process runs.
    pub(crate) rss_mib: Vec<(f64, f64)>,
    /// Resident set growth after warm-up, if it ran the whole load.
    pub(crate) rss_growth: Option<RssGrowth>,
}

/// A validator's resident set after warm-up and at the end of the load.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct RssGrowth {
    /// The first sample at or after a quarter of the load, MiB.
    pub(crate) after_warmup_mib: f64,
    /// The last sample of the load, MiB.
    pub(crate) end_mib: f64,
    /// The highest sample after warm-up, MiB.
    pub(crate) max_after_warmup_mib: f64,
    /// `end / after_warmup - 1`, percent.
    pub(crate) growth_pct: f64,
    /// Growth over the last quarter of the load (from the first sample at
    /// or after three quarters), percent: near 0 when the resident set has
    /// levelled off, even if it was still filling caches after warm-up.
    /// `None` when that sample is the last one (a short run).
    pub(crate) last_quarter_pct: Option<f64>,
}

impl RssGrowth {
    /// From one process's samples over a load of `load_secs` seconds
    /// (`None` if no sample falls after warm-up).
    pub(crate) fn of(series: &[(f64, f64)], load_secs: f64) -> Option<RssGrowth> {
        let during: Vec<(f64, f64)> = series
            .iter()
            .copied()
            .filter(|(t, _)| *t <= load_secs)
            .collect();
        let first = during.iter().position(|(t, _)| *t >= load_secs / 4.0)?;
        let after = &during[first..];
        let after_warmup_mib = after[0].1;
        let end_mib = after.last()?.1;
        let max_after_warmup_mib = after.iter().map(|s| s.1).fold(0.0, f64::max);
        let pct = |from: f64| {
            if from > 0.0 {
                ((end_mib / from - 1.0) * 1e3).round() / 10.0
            } else {
                0.0
            }
        };
        let last_quarter_from = after
            .iter()
            .position(|(t, _)| *t >= load_secs * 0.75)
            .filter(|i| i + 1 < after.len())
            .map(|i| after[i].1);
        Some(RssGrowth {
            after_warmup_mib,
            end_mib,
            max_after_warmup_mib,
            growth_pct: pct(after_warmup_mib),
            last_quarter_pct: last_quarter_from.map(pct),
        })
    }
}

/// The validators' data directory before and after the run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct DiskSummary {
    /// Bytes of every validator's store when the load started.
    pub(crate) bytes_at_start: u64,
    /// Bytes after the clean stop.
    pub(crate) bytes_at_end: u64,
    /// Growth per validator per 1,000 committed transfers, KiB (`None`
    /// without a committed transfer).
    pub(crate) kib_per_validator_per_1000: Option<f64>,
}

impl DiskSummary {
    /// `validators` stores that grew from `start` to `end` bytes while
    /// `committed` transfers were applied.
    pub(crate) fn of(start: u64, end: u64, validators: usize, committed: u64) -> DiskSummary {
        let per = (committed > 0 && validators > 0).then(|| {
            let grown = end.saturating_sub(start) as f64 / validators as f64;
            (grown / committed as f64 * 1000.0 / 1024.0 * 10.0).round() / 10.0
        });
        DiskSummary {
            bytes_at_start: start,
            bytes_at_end: end,
            kib_per_validator_per_1000: per,
        }
    }
}

/// One `--kill`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct KillSummary {
    pub(crate) validator: usize,
    pub(crate) killed_at_secs: f64,
    pub(crate) restarted_at_secs: Option<f64>,
    /// Its executed height when it was killed (from the last progress poll).
    pub(crate) height_at_kill: u64,
}

/// The summary.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Summary {
    pub(crate) ok: bool,
    pub(crate) failures: Vec<String>,
    pub(crate) validators: usize,
    pub(crate) accounts: usize,
    pub(crate) rate: String,
    pub(crate) duration_secs: f64,
    /// Transfers signed.
    pub(crate) signed: u64,
    /// Transfers an API accepted.
    pub(crate) accepted: u64,
    /// Accepted transfers applied (receipts and accounts agree).
    pub(crate) committed: u64,
    /// Transfers first seen in a block while the load ran.
    pub(crate) committed_during_load: u64,
    /// `committed_during_load` per second of load.
    pub(crate) tx_per_sec: f64,
    /// Submit → first block listing it.
    pub(crate) latency_ms: Latency,
    pub(crate) lost: u64,
    pub(crate) applied_twice_accounts: u64,
    pub(crate) inconsistent_accounts: u64,
    pub(crate) reincluded: u64,
    /// Transfers refused for good by an API (not accepted).
    pub(crate) refused: u64,
    /// 429/503 and "nonce ahead" answers, each retried after a back-off.
    pub(crate) backoffs: u64,
    /// Requests without an answer (e.g. to a killed validator), retried.
    pub(crate) transport_errors: u64,
    /// The height at which the state roots were compared.
    pub(crate) common_height: u64,
    pub(crate) roots_equal: bool,
    /// The validators' CPU seconds by activity, summed.
    pub(crate) cpu_split: crate::cpu::CpuSplit,
    pub(crate) per_validator: Vec<ValidatorSummary>,
    pub(crate) kills: Vec<KillSummary>,
    /// Disk use of the validators' stores.
    pub(crate) disk: DiskSummary,
    /// Where the network's files are (kept), if anywhere.
    pub(crate) data_dir: Option<String>,
}

/// The progress line of second `t`.
pub(crate) fn progress_line(
    tracker: &Shared,
    t: Duration,
    heights: &[Option<u64>],
    pools: &[Option<u64>],
    last: &mut Instant,
) -> String {
    let now = Instant::now();
    let window = now.duration_since(*last).as_secs_f64().max(1e-3);
    let since = *last;
    *last = now;
    let tr = lock(tracker);
    let recent: Vec<f64> = tr
        .committed_at
        .iter()
        .zip(&tr.latencies)
        .rev()
        .take_while(|(at, _)| **at > since)
        .map(|(_, l)| *l)
        .collect();
    let rate = recent.len() as f64 / window;
    let lat = Latency::of(recent);
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let top = heights.iter().flatten().max().copied().unwrap_or(0);
    let per: Vec<String> = heights
        .iter()
        .map(|h| h.map_or("down".to_string(), |h| h.to_string()))
        .collect();
    let pool: Vec<String> = pools
        .iter()
        .map(|p| p.map_or("-".to_string(), |p| p.to_string()))
        .collect();
    format!(
        "{:>5.1}s  height {top:>6}  {rate:>7.1} tx/s  p50 {:>5} ms  p99 {:>5} ms  in flight {:>5}  \
         committed {:>7}  back-offs {}  validators [{}]  pools [{}]",
        t.as_secs_f64(),
        fmt(lat.p50),
        fmt(lat.p99),
        tr.in_flight,
        tr.latencies.len(),
        tr.backoffs,
        per.join(" "),
        pool.join(" ")
    )
}

/// Every validator's executed height (`None`: no answer).
pub(crate) async fn heights(clients: &[QbindClient]) -> Vec<Option<u64>> {
    statuses(clients)
        .await
        .iter()
        .map(|s| s.as_ref().map(|s| s.executed_height))
        .collect()
}

/// Every validator's `GET /v1/status` (`None`: no answer within 800 ms).
pub(crate) async fn statuses(clients: &[QbindClient]) -> Vec<Option<StatusView>> {
    let mut set = JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let c = c.clone();
        set.spawn(async move {
            let answer = tokio::time::timeout(Duration::from_millis(800), c.status()).await;
            (i, answer.ok().and_then(Result::ok))
        });
    }
    let mut out = vec![None; clients.len()];
    while let Some(Ok((i, s))) = set.join_next().await {
        out[i] = s;
    }
    out
}

/// Run `f` over `items` with [`CHECK_CONCURRENCY`] in flight; results in
/// item order (`None` where a task failed).
async fn concurrently<T, R, F, Fut>(items: Vec<T>, f: F) -> Vec<Option<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let mut set = JoinSet::new();
    for (i, item) in items.into_iter().enumerate() {
        if set.len() >= CHECK_CONCURRENCY
            && let Some(Ok((j, r))) = set.join_next().await
        {
            out[j] = Some(r);
        }
        let fut = f(item);
        set.spawn(async move { (i, fut.await) });
    }
    while let Some(Ok((j, r))) = set.join_next().await {
        out[j] = Some(r);
    }
    out
}

/// What a validator's API says about transfer `hash`.
async fn outcome(client: QbindClient, hash: qbind_core::types::Hash32) -> Outcome {
    match client.tx_status(hash).await {
        Ok(TxStatusView::Committed {
            height, outcome, ..
        }) => Outcome::Applied {
            height,
            fee: outcome.fee,
            success: outcome.result == "success",
        },
        Ok(TxStatusView::Rejected { height, .. }) => Outcome::Refused { height },
        // Accepted and then let go by the pool: not on the chain.
        Ok(TxStatusView::Pending { .. } | TxStatusView::Dropped { .. }) | Err(_) => {
            Outcome::Missing
        }
    }
}

/// The ledger check through `client`: every accepted transfer's status,
/// every account's nonce and balance, against the genesis balances.
pub(crate) async fn ledger(
    client: &QbindClient,
    tracker: &Shared,
    accounts: &[AccountId],
    genesis_balance: &[u128],
) -> LedgerReport {
    // Transfers an API accepted, and those whose request got no answer
    // (they count if the chain has them).
    let (candidates, certain): (Vec<SentTransfer>, Vec<bool>) = {
        let t = lock(tracker);
        t.sent
            .iter()
            .filter(|s| s.accepted || s.maybe_accepted)
            .map(|s| {
                (
                    SentTransfer {
                        hash: s.hash,
                        sender: s.sender,
                        recipient: s.recipient,
                        amount: s.amount,
                        fee: s.fee,
                    },
                    s.accepted,
                )
            })
            .unzip()
    };
    let inclusions: Vec<Vec<u64>> = {
        let t = lock(tracker);
        t.sent
            .iter()
            .filter(|s| s.accepted || s.maybe_accepted)
            .map(|s| s.inclusions.clone())
            .collect()
    };
    let hashes: Vec<_> = candidates.iter().map(|s| s.hash).collect();
    let c = client.clone();
    let outcomes: Vec<Outcome> = concurrently(hashes, move |h| outcome(c.clone(), h))
        .await
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Missing))
        .collect();
    let c = client.clone();
    let unknown = AccountState {
        nonce: 0,
        balance: 0,
    };
    let after: Vec<AccountState> = concurrently(accounts.to_vec(), move |id| {
        let c = c.clone();
        async move {
            c.account(id).await.ok().map(|a| AccountState {
                nonce: a.nonce,
                balance: a.balance,
            })
        }
    })
    .await
    .into_iter()
    .map(|a| a.flatten().unwrap_or(unknown))
    .collect();
    let before: Vec<AccountState> = genesis_balance
        .iter()
        .map(|b| AccountState {
            nonce: 0,
            balance: *b,
        })
        .collect();
    // An unanswered request whose transfer the chain does not have was
    // simply not accepted.
    let mut sent = Vec::new();
    let mut outs = Vec::new();
    let mut incl = Vec::new();
    for (((s, o), i), certain) in candidates
        .into_iter()
        .zip(outcomes)
        .zip(inclusions)
        .zip(certain)
    {
        let applied = matches!(o, Outcome::Applied { .. }) || !i.is_empty();
        if certain || applied {
            sent.push(s);
            outs.push(o);
            incl.push(i);
        }
    }
    check_ledger(&sent, &outs, &incl, &before, &after)
}

/// Print the summary as text.
pub(crate) fn print_text(s: &Summary) {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} ms"));
    println!();
    println!(
        "qbind-localnet: {} validators, {} accounts, rate {}, {:.1} s of load",
        s.validators, s.accounts, s.rate, s.duration_secs
    );
    println!(
        "  transfers: {} signed, {} accepted, {} committed ({} during the load: {:.1} tx/s)",
        s.signed, s.accepted, s.committed, s.committed_during_load, s.tx_per_sec
    );
    println!(
        "  submit -> commit latency: p50 {}  p90 {}  p99 {}  max {}",
        ms(s.latency_ms.p50),
        ms(s.latency_ms.p90),
        ms(s.latency_ms.p99),
        ms(s.latency_ms.max)
    );
    println!(
        "  lost {}  applied twice (accounts) {}  inconsistent accounts {}  re-included {}  \
         refused {}  back-offs {}  transport errors {}",
        s.lost,
        s.applied_twice_accounts,
        s.inconsistent_accounts,
        s.reincluded,
        s.refused,
        s.backoffs,
        s.transport_errors
    );
    for k in &s.kills {
        println!(
            "  validator {} killed at {:.1} s (height {}), restarted at {}",
            k.validator,
            k.killed_at_secs,
            k.height_at_kill,
            k.restarted_at_secs
                .map_or("never".to_string(), |t| format!("{t:.1} s"))
        );
    }
    println!(
        "  state roots at height {}: {}",
        s.common_height,
        if s.roots_equal { "equal" } else { "DIFFER" }
    );
    println!(
        "  CPU of the validators ({:.1} s): {}",
        s.per_validator.iter().map(|v| v.cpu_secs).sum::<f64>(),
        s.cpu_split.shares()
    );
    for v in &s.per_validator {
        println!(
            "  validator {}: height {}  root {}  peak RSS {:.1} MiB  CPU {:.1} s  restarts {}  ({})",
            v.index,
            v.executed_height.map_or("-".to_string(), |h| h.to_string()),
            v.state_root
                .as_deref()
                .map_or("-", |r| r.get(..16).unwrap_or(r)),
            v.peak_rss_mib,
            v.cpu_secs,
            v.restarts,
            v.api
        );
    }
    for v in &s.per_validator {
        if let Some(g) = v.rss_growth {
            println!(
                "  validator {} RSS: {:.1} MiB after warm-up (a quarter of the load), {:.1} MiB at \
                 the end ({:+.1} %; {} over the last quarter), at most {:.1} MiB",
                v.index,
                g.after_warmup_mib,
                g.end_mib,
                g.growth_pct,
                g.last_quarter_pct
                    .map_or("one sample".to_string(), |p| format!("{p:+.1} %")),
                g.max_after_warmup_mib
            );
        }
    }
    println!(
        "  disk: the {} stores grew from {:.1} to {:.1} MiB: {} per validator per 1,000 \
         committed transfers",
        s.validators,
        s.disk.bytes_at_start as f64 / 1048576.0,
        s.disk.bytes_at_end as f64 / 1048576.0,
        s.disk
            .kib_per_validator_per_1000
            .map_or("-".to_string(), |k| format!("{k:.1} KiB"))
    );
    if let Some(dir) = &s.data_dir {
        println!("  data and logs: {dir}");
    }
    if s.ok {
        println!("OK");
    } else {
        for f in &s.failures {
            println!("FAILED: {f}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_growth_is_measured_from_a_quarter_of_the_load() {
        let series = [
            (0.0, 50.0),
            (10.0, 100.0),
            (25.0, 200.0),
            (60.0, 210.0),
            (80.0, 215.6),
            (100.0, 220.0),
        ];
        let g = RssGrowth::of(&series, 100.0).expect("samples after warm-up");
        assert_eq!(g.after_warmup_mib, 200.0);
        assert_eq!(g.end_mib, 220.0);
        assert_eq!(g.max_after_warmup_mib, 220.0);
        assert_eq!(g.growth_pct, 10.0);
        // From the sample at 80 (the first at or after 75).
        assert_eq!(g.last_quarter_pct, Some(2.0));
        // One sample in the last quarter: nothing to compare it with.
        let short = [(5.0, 100.0), (10.0, 150.0), (25.0, 160.0)];
        let g = RssGrowth::of(&short, 30.0).expect("samples after warm-up");
        assert_eq!(g.last_quarter_pct, None);
        // Samples after the load (the drain) do not count.
        let drained = [(30.0, 100.0), (90.0, 100.0), (130.0, 400.0)];
        assert_eq!(
            RssGrowth::of(&drained, 100.0).map(|g| g.growth_pct),
            Some(0.0)
        );
        // No sample after warm-up: nothing to say.
        assert_eq!(RssGrowth::of(&[(1.0, 5.0)], 100.0), None);
    }

    #[test]
    fn disk_growth_is_per_validator_per_thousand_transfers() {
        // 4 stores grew by 8 MiB in all while 2,048 transfers were applied:
        // 2 MiB each, 1,000 KiB per 1,000 transfers.
        let d = DiskSummary::of(1 << 20, 9 << 20, 4, 2048);
        assert_eq!(d.kib_per_validator_per_1000, Some(1000.0));
        assert_eq!(
            DiskSummary::of(0, 10, 4, 0).kib_per_validator_per_1000,
            None
        );
        // A store that shrank (compaction) counts as no growth.
        assert_eq!(
            DiskSummary::of(10, 5, 1, 1).kib_per_validator_per_1000,
            Some(0.0)
        );
    }
}
