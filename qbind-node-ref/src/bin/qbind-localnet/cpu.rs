//! The CPU split of the summary: each validator's
//! `qbind_cpu_seconds_total{activity}` read from its `/metrics` (every few
//! seconds, just before a kill, and at the end), summed over its processes
//! and over the validators; `other` is the processes' CPU time that no
//! section was charged with.

use std::net::SocketAddr;
use std::time::Duration;

use qbind_core::cpu::Activity;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Seconds per activity, in [`Activity::ALL`] order.
pub(crate) type Split = [f64; Activity::ALL.len()];

/// Most bytes of a metrics page read.
const MAX_PAGE: u64 = 4 << 20;
/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);

/// The split on a `/metrics` page (`None` if the page has none of it).
pub(crate) fn parse(page: &str) -> Option<Split> {
    let mut split = Split::default();
    let mut found = false;
    for line in page.lines() {
        let Some(rest) = line.strip_prefix("qbind_cpu_seconds_total{activity=\"") else {
            continue;
        };
        let Some((name, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let (Some(a), Ok(v)) = (
            Activity::ALL.iter().find(|a| a.name() == name),
            value.trim().parse::<f64>(),
        ) else {
            continue;
        };
        split[a.index()] = v;
        found = true;
    }
    found.then_some(split)
}

/// Read `addr`'s `/metrics` and its split.
pub(crate) async fn scrape(addr: SocketAddr) -> Option<Split> {
    let page = tokio::time::timeout(SCRAPE_TIMEOUT, async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut body = Vec::new();
        stream.take(MAX_PAGE).read_to_end(&mut body).await.ok()?;
        Some(String::from_utf8_lossy(&body).into_owned())
    })
    .await
    .ok()??;
    parse(&page)
}

/// `a + b`, activity by activity.
pub(crate) fn add(a: Split, b: Split) -> Split {
    std::array::from_fn(|i| a[i] + b[i])
}

/// The summary's split, seconds (to the millisecond).
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct CpuSplit {
    pub(crate) verification: f64,
    pub(crate) execution: f64,
    pub(crate) consensus: f64,
    pub(crate) storage: f64,
    pub(crate) network: f64,
    /// CPU time of the processes outside every section (HTTP, JSON,
    /// logging, runtime, the store's compaction).
    pub(crate) other: f64,
}

impl CpuSplit {
    /// From the summed `split` and the processes' total CPU seconds.
    pub(crate) fn of(split: Split, total_cpu: f64) -> CpuSplit {
        let r = |v: f64| (v * 1000.0).round() / 1000.0;
        let charged: f64 = split.iter().sum();
        let at = |a: Activity| r(split[a.index()]);
        CpuSplit {
            verification: at(Activity::Verification),
            execution: at(Activity::Execution),
            consensus: at(Activity::Consensus),
            storage: at(Activity::Storage),
            network: at(Activity::Network),
            other: r((total_cpu - charged).max(0.0)),
        }
    }

    /// "41 % verification, 12 % execution, ..." of the total.
    pub(crate) fn shares(&self) -> String {
        let parts = [
            ("verification", self.verification),
            ("execution", self.execution),
            ("consensus", self.consensus),
            ("storage", self.storage),
            ("network", self.network),
            ("other", self.other),
        ];
        let total: f64 = parts.iter().map(|(_, v)| v).sum();
        if total <= 0.0 {
            return "not measured".to_string();
        }
        parts
            .iter()
            .map(|(name, v)| format!("{:.0} % {name}", v / total * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_read_from_a_metrics_page() {
        let page = "# HELP qbind_cpu_seconds_total CPU seconds.\n\
            # TYPE qbind_cpu_seconds_total counter\n\
            qbind_cpu_seconds_total{activity=\"verification\"} 4.5\n\
            qbind_cpu_seconds_total{activity=\"execution\"} 1.25\n\
            qbind_cpu_seconds_total{activity=\"consensus\"} 2\n\
            qbind_cpu_seconds_total{activity=\"storage\"} 0.5\n\
            qbind_cpu_seconds_total{activity=\"network\"} 0.75\n\
            qbind_cpu_seconds_total{activity=\"bogus\"} 99\n\
            qbind_consensus_committed_height{validator=\"0\"} 7\n";
        let split = parse(page).expect("split");
        assert_eq!(split, [4.5, 1.25, 2.0, 0.5, 0.75]);
        assert_eq!(parse("qbind_consensus_committed_height 7\n"), None);
        let s = CpuSplit::of(add(split, split), 20.0);
        assert_eq!(s.verification, 9.0);
        assert_eq!(s.other, 2.0, "20 s in all, 18 s charged");
        assert_eq!(
            s.shares(),
            "45 % verification, 12 % execution, 20 % consensus, 5 % storage, 8 % network, 10 % other"
        );
        assert_eq!(CpuSplit::default().shares(), "not measured");
    }
}
