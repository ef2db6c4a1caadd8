//! The operations files (`deploy/prometheus/alerts.yml`, `alerts_test.yml`,
//! `deploy/grafana/qbind.json`) parse, have the runbook's alerts and the
//! dashboard's rows, and use only metric names listed in `docs/metrics.md`;
//! every metric the exporters render is listed there with its type.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Yaml {
    let docs = YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one YAML document");
    docs.into_iter().next().expect("one document")
}

/// Metric name → type, from the tables of docs/metrics.md.
fn documented() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in read("docs/metrics.md").lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let mut cols = rest.split('|');
        let name = cols.next().expect("name").trim().trim_end_matches('`');
        let kind = cols.next().expect("type column").trim();
        assert!(
            matches!(kind, "gauge" | "counter"),
            "docs/metrics.md: {name} has type {kind:?}"
        );
        assert!(
            out.insert(name.to_string(), kind.to_string()).is_none(),
            "docs/metrics.md lists {name} twice"
        );
    }
    assert!(out.len() > 50, "docs/metrics.md tables not found");
    out
}

/// The QBIND metric names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_')
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if !starts {
            i += 1;
            continue;
        }
        let end = bytes[i..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b':'))
            .map_or(bytes.len(), |n| i + n);
        let word = &expr[i..end];
        if word.starts_with("qbind_") || word.starts_with("stage_b_") {
            out.insert(word.to_string());
        }
        i = end;
    }
    out
}

fn assert_documented(names: &BTreeSet<String>, docs: &BTreeMap<String, String>, file: &str) {
    let missing: Vec<_> = names.iter().filter(|n| !docs.contains_key(*n)).collect();
    assert!(
        missing.is_empty(),
        "{file} uses metrics not in docs/metrics.md: {missing:?}"
    );
}

#[test]
fn metric_names_are_found_in_expressions() {
    let names = metric_names(
        "sum without (reason) (rate(qbind_p2p_x_total{validator=~\"$validator\"}[5m])) > 2 * stage_b_y offset 1h",
    );
    let expected: BTreeSet<String> = ["qbind_p2p_x_total", "stage_b_y"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, expected);
}

/// Every rule: alert name, expression, severity and summary.
fn alert_rules() -> Vec<(String, String, String)> {
    let doc = yaml("deploy/prometheus/alerts.yml");
    let mut rules = Vec::new();
    for group in doc["groups"].as_vec().expect("groups") {
        assert!(group["name"].as_str().is_some(), "group without a name");
        for rule in group["rules"].as_vec().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name").to_string();
            let expr = rule["expr"].as_str().expect("expr").to_string();
            let severity = rule["labels"]["severity"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: severity"))
                .to_string();
            assert!(
                matches!(severity.as_str(), "critical" | "warning" | "info"),
                "{name}: severity {severity}"
            );
            assert!(
                rule["annotations"]["summary"].as_str().is_some(),
                "{name}: summary"
            );
            rules.push((name, expr, severity));
        }
    }
    rules
}

#[test]
fn alert_rules_cover_the_runbook_with_documented_metrics() {
    let docs = documented();
    let rules = alert_rules();
    let mut names = BTreeSet::new();
    let mut used = BTreeSet::new();
    for (name, expr, _) in &rules {
        assert!(names.insert(name.clone()), "alert {name} defined twice");
        let metrics = metric_names(expr);
        assert!(!metrics.is_empty(), "{name}: no QBIND metric in {expr}");
        used.extend(metrics);
    }
    assert_documented(&used, &docs, "alerts.yml");
    // Runbook §9.1 categories: consensus, P2P, signer/HSM, state/storage, monetary.
    for required in [
        "QbindViewLagHigh",
        "QbindCommitStalled",
        "QbindEquivocationDetected",
        "QbindP2PFewOutboundPeers",
        "QbindP2PLowDiversity",
        "QbindSignerSignFailures",
        "QbindHsmSignErrors",
        "QbindRemoteSignerFailures",
        "QbindStateGrowthHigh",
        "QbindSnapshotFailed",
        "QbindMonetaryFeeCoverageDrop",
        "QbindDagBatchEquivocation",
    ] {
        assert!(names.contains(required), "alerts.yml lacks {required}");
    }
}

#[test]
fn alert_unit_tests_cover_view_lag_signer_failures_and_state_growth() {
    let alerts: BTreeSet<String> = alert_rules().into_iter().map(|(n, _, _)| n).collect();
    let doc = yaml("deploy/prometheus/alerts_test.yml");
    let files: Vec<&str> = doc["rule_files"]
        .as_vec()
        .expect("rule_files")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(files, ["alerts.yml"]);
    // alert name -> (has a case where it fires, has a case where it does not)
    let mut cases: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for test in doc["tests"].as_vec().expect("tests") {
        for case in test["alert_rule_test"].as_vec().expect("alert_rule_test") {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            assert!(
                alerts.contains(&name),
                "alerts_test.yml tests unknown {name}"
            );
            let fires = case["exp_alerts"].as_vec().is_some_and(|v| !v.is_empty());
            let entry = cases.entry(name).or_default();
            if fires {
                entry.0 = true;
            } else {
                entry.1 = true;
            }
        }
    }
    for required in [
        "QbindViewLagHigh",
        "QbindSignerSignFailures",
        "QbindStateGrowthHigh",
    ] {
        assert_eq!(
            cases.get(required),
            Some(&(true, true)),
            "{required} needs a firing and a silent case"
        );
    }
}

#[test]
fn dashboard_has_the_rows_and_documented_queries() {
    let docs = documented();
    let dash: Value =
        serde_json::from_str(&read("deploy/grafana/qbind.json")).expect("qbind.json is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    let mut rows = Vec::new();
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let title = p["title"].as_str().expect("title");
        if p["type"] == "row" {
            rows.push(title.to_string());
            continue;
        }
        assert!(!rows.is_empty(), "panel {title} before the first row");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let metrics = metric_names(expr);
            assert!(!metrics.is_empty(), "{title}: no QBIND metric in {expr}");
            used.extend(metrics);
        }
    }
    assert_eq!(
        rows,
        [
            "Consensus",
            "DAG",
            "Mempool",
            "Execution",
            "Storage",
            "P2P",
            "Signer",
            "Monetary"
        ]
    );
    assert_documented(&used, &docs, "qbind.json");
}

/// `# TYPE` lines of a page: name → type.
fn page_types(page: &str) -> BTreeMap<String, String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next().expect("name").to_string();
            (name, it.next().expect("type").to_string())
        })
        .collect()
}

fn assert_page_documented(page: &str, what: &str) {
    let docs = documented();
    let types = page_types(page);
    assert!(!types.is_empty(), "{what}: no metrics");
    for (name, kind) in &types {
        assert_eq!(
            docs.get(name),
            Some(kind),
            "{what}: {name} is a {kind}; docs/metrics.md must list it with that type"
        );
        if kind == "counter" {
            assert!(name.ends_with("_total"), "{what}: counter {name}");
        }
        assert!(
            !has_abbreviated_unit(name),
            "{what}: {name} has an abbreviated unit, which `promtool check metrics` refuses"
        );
    }
}

/// Whether a metric name has a word promtool reads as an abbreviated unit
/// (its lint refused `stage_b_blocks_parallel`, and `_ms` durations before
/// it; CI runs promtool on a live page, this catches it in every test run).
fn has_abbreviated_unit(name: &str) -> bool {
    const ABBREVIATED: [&str; 12] = [
        "ms", "us", "ns", "b", "kb", "mb", "gb", "tb", "pb", "eb", "kib", "mib",
    ];
    name.split('_').any(|word| ABBREVIATED.contains(&word))
}

#[test]
fn abbreviated_units_are_recognised() {
    assert!(has_abbreviated_unit("stage_b_blocks_parallel"));
    assert!(has_abbreviated_unit(
        "qbind_consensus_qc_formation_latency_ms"
    ));
    assert!(!has_abbreviated_unit(
        "qbind_execution_parallel_blocks_total"
    ));
    assert!(!has_abbreviated_unit("qbind_state_size_bytes"));
}

#[test]
fn net_and_signer_pages_are_documented() {
    use qbind_node_ref::metrics::components;
    assert_page_documented(
        &components::net_page(&qbind_net::NetMetrics::default()),
        "qbind-net",
    );
    assert_page_documented(
        &components::signer_page(&qbind_signer::SignerMetrics::default()),
        "qbind-signer",
    );
    let daemon = std::sync::Arc::new(qbind_signer::remote::daemon::DaemonMetrics::default());
    assert_page_documented(
        &qbind_node_ref::metrics::render(&components::remote_signer_registry(
            daemon,
            qbind_signer::SignerMetrics::shared(),
        )),
        "qbind-remote-signer",
    );
}

/// The node process, killed (by its PID) when dropped.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Regression: the store gauges (`qbind_state_size_bytes`,
/// `qbind_state_prune_retained_height`, `qbind_snapshot_last_height`,
/// `qbind_snapshot_last_duration_ms`) were declared as counters, and three
/// durations were named in `_ms`: `promtool check metrics` rejected both
/// ("counter metrics should have \"_total\" suffix", "metric names should
/// not contain abbreviated units").
#[test]
fn a_live_node_page_is_documented_and_typed() {
    let data = tempfile::tempdir().expect("tempdir");
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let node = Node(
        Command::new(env!("CARGO_BIN_EXE_qbind-node"))
            .arg("--data-dir")
            .arg(data.path())
            .args(["--local-validators", "4", "--blocks", "0"])
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qbind-node"),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let page = loop {
        if let Some(page) = scrape(port)
            && page.contains("qbind_state_size_bytes")
            && !page.contains("qbind_consensus_committed_height{validator=\"0\"} 0\n")
        {
            break page;
        }
        assert!(Instant::now() < deadline, "no committed block within 120 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(node);
    assert_page_documented(&page, "qbind-node");
    assert_eq!(
        qbind_node_ref::metrics::families::duplicate_families(&page),
        Vec::<String>::new(),
        "one # TYPE line per metric name"
    );
    let types = page_types(&page);
    for name in types.keys() {
        assert!(
            !name
                .split('_')
                .any(|t| matches!(t, "ms" | "us" | "ns" | "sec" | "kb" | "mb")),
            "{name}: abbreviated unit"
        );
    }
    for gauge in [
        "qbind_state_size_bytes",
        "qbind_state_prune_retained_height",
        "qbind_snapshot_last_height",
        "qbind_snapshot_last_duration_seconds",
    ] {
        assert_eq!(
            types.get(gauge).map(String::as_str),
            Some("gauge"),
            "{gauge}"
        );
    }
}
