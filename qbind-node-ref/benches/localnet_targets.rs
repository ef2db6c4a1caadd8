//! Issue #21's targets for `qbind-localnet`, measured in one run on one
//! machine (ratios only mean something within a run: the machines are
//! shared):
//!
//! 1. the machine's ML-DSA-44 verifications per second on all cores, and the
//!    ceiling = that ÷ validators;
//! 2. the peak: the closed loop (`--rate max`), committed tx/s during the load;
//! 3. overload: an open loop at twice the peak's rate (target: committed tx/s
//!    ≥ 90 % of the peak, nothing accepted lost);
//! 4. one validator down for the whole load (target: ≥ 60 % of the peak);
//! 5. optionally a soak (`--soak 30m`): the resident set after warm-up against
//!    the end, and disk per 1,000 committed transfers, at half the peak's rate.
//!
//! ```text
//! cargo bench -p qbind-node-ref --bench localnet_targets [-- --duration 30s --soak 30m]
//! ```
//!
//! Each run is a real `qbind-localnet` (four `qbind-node` processes over
//! KEMTLS on 127.0.0.1, ports from 40000) with `--output json`; a run that
//! fails its own checks (roots differ, a transfer lost or applied twice) makes
//! this benchmark exit 1. Results go to docs/benchmarks.md by hand, with the
//! load average printed at the start and the end.

use std::process::Command;
use std::time::{Duration, Instant};

use qbind_core::crypto::{KeyPair, PreparedPublicKey};
use qbind_node_ref::localnet::options::parse_duration;

const VALIDATORS: usize = 4;
const BASE_PORT: u16 = 40_000;

fn main() {
    let mut duration = "30s".to_string();
    let mut soak: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--duration" => duration = args.next().expect("--duration VALUE"),
            "--soak" => soak = args.next(),
            // `cargo bench` passes `--bench`; libtest-style filters are ignored.
            _ => {}
        }
    }
    println!("load average at the start: {}", load_average());

    let per_sec = verifications_per_sec(Duration::from_secs(3));
    let ceiling = per_sec / VALIDATORS as f64;
    println!(
        "ML-DSA-44 verifications/s on all cores: {per_sec:.0}; ceiling for {VALIDATORS} \
         validators: {ceiling:.0} tx/s"
    );

    let mut failed = false;
    let peak = localnet(
        &["--duration", &duration],
        "peak (closed loop)",
        &mut failed,
    );
    let peak_tps = peak.tps;
    let rate = format!("{:.0}", (peak_tps * 2.0).max(1.0));
    let over = localnet(
        &["--duration", &duration, "--rate", &rate],
        &format!("overload (open loop, {rate}/s = 2× peak)"),
        &mut failed,
    );
    let secs = parse_duration(&duration)
        .unwrap_or_else(|e| panic!("--duration {e}"))
        .as_secs();
    let kill = format!("{}@1+{}", VALIDATORS - 1, secs.saturating_sub(1).max(1));
    let down = localnet(
        &["--duration", &duration, "--kill", &kill],
        &format!(
            "validator {} down for the load (--kill {kill})",
            VALIDATORS - 1
        ),
        &mut failed,
    );
    println!();
    println!("| measure | value | target | met |");
    println!("|---|---|---|---|");
    let ratio = |x: f64, of: f64| if of > 0.0 { x / of } else { 0.0 };
    let row = |name: &str, value: f64, target: f64| {
        println!(
            "| {name} | {:.1} % | ≥ {:.0} % | {} |",
            value * 100.0,
            target * 100.0,
            if value >= target { "yes" } else { "no" }
        );
    };
    row(
        "peak ÷ verification ceiling",
        ratio(peak_tps, ceiling),
        0.70,
    );
    row("2× overload ÷ peak", ratio(over.tps, peak_tps), 0.90);
    row("one validator down ÷ peak", ratio(down.tps, peak_tps), 0.60);
    for (name, r) in [("peak", &peak), ("overload", &over), ("one down", &down)] {
        println!(
            "{name}: {:.1} tx/s, p50 {} ms, p99 {} ms, lost {}, CPU per validator per committed \
             transfer {} ms, \
             peak RSS {} MiB, disk {} KiB per validator per 1,000",
            r.tps, r.p50, r.p99, r.lost, r.cpu_ms_per_tx, r.peak_rss, r.disk_per_1000
        );
    }
    if let Some(soak) = soak {
        let rate = format!("{:.0}", (peak_tps / 2.0).max(1.0));
        let s = localnet(
            &["--duration", &soak, "--rate", &rate],
            &format!("soak ({soak} at {rate}/s = half the peak)"),
            &mut failed,
        );
        println!(
            "soak: {:.1} tx/s, RSS after warm-up → end per validator: {}; disk {} KiB per \
             validator per 1,000",
            s.tps, s.rss_growth, s.disk_per_1000
        );
    }
    println!("load average at the end: {}", load_average());
    if failed {
        eprintln!("localnet_targets: a run failed its own checks (see above)");
        std::process::exit(1);
    }
}

/// What one run reported.
#[derive(Default)]
struct Run {
    tps: f64,
    p50: String,
    p99: String,
    lost: u64,
    cpu_ms_per_tx: String,
    peak_rss: String,
    disk_per_1000: String,
    rss_growth: String,
}

/// Run `qbind-localnet` with `args` and read its JSON summary.
fn localnet(args: &[&str], name: &str, failed: &mut bool) -> Run {
    println!("\n== {name}: qbind-localnet {}", args.join(" "));
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_qbind-localnet"))
        .args(args)
        .args(["--output", "json", "--base-port", &BASE_PORT.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running qbind-localnet");
    let text = String::from_utf8_lossy(&out.stdout);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        eprintln!("{name}: no JSON summary (exit {:?})", out.status.code());
        *failed = true;
        return Run::default();
    };
    if !out.status.success() || v["ok"] != serde_json::Value::Bool(true) {
        eprintln!("{name}: FAILED: {}", v["failures"]);
        *failed = true;
    }
    let num = |x: &serde_json::Value| x.as_f64().map_or("-".to_string(), |f| format!("{f:.1}"));
    let validators = v["per_validator"].as_array().cloned().unwrap_or_default();
    let committed = v["committed"].as_f64().unwrap_or(0.0);
    let cpu: f64 = validators
        .iter()
        .filter_map(|p| p["cpu_secs"].as_f64())
        .sum();
    let peak_rss = validators
        .iter()
        .filter_map(|p| p["peak_rss_mib"].as_f64())
        .fold(0.0, f64::max);
    let rss_growth = validators
        .iter()
        .map(|p| {
            let g = &p["rss_growth"];
            if g.is_null() {
                format!("v{} -", p["index"])
            } else {
                format!(
                    "v{} {} → {} MiB ({:+.1} %; last quarter {} %)",
                    p["index"],
                    num(&g["after_warmup_mib"]),
                    num(&g["end_mib"]),
                    g["growth_pct"].as_f64().unwrap_or(0.0),
                    num(&g["last_quarter_pct"])
                )
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!("{name}: done in {:.0} s", started.elapsed().as_secs_f64());
    Run {
        tps: v["tx_per_sec"].as_f64().unwrap_or(0.0),
        p50: num(&v["latency_ms"]["p50"]),
        p99: num(&v["latency_ms"]["p99"]),
        lost: v["lost"].as_u64().unwrap_or(0),
        cpu_ms_per_tx: if committed > 0.0 {
            format!("{:.2}", cpu / VALIDATORS as f64 / committed * 1e3)
        } else {
            "-".to_string()
        },
        peak_rss: format!("{peak_rss:.0}"),
        disk_per_1000: num(&v["disk"]["kib_per_validator_per_1000"]),
        rss_growth,
    }
}

/// ML-DSA-44 verifications per second with one thread per core, over `span`.
fn verifications_per_sec(span: Duration) -> f64 {
    let key = KeyPair::from_seed(&[7u8; 32]);
    let message = b"QBIND localnet_targets: one verification".to_vec();
    let signature = key.sign(&message);
    let prepared = PreparedPublicKey::new(key.public_key()).expect("own key decodes");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < span {
                        prepared
                            .verify(&message, &signature)
                            .expect("own signature verifies");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

/// `/proc/loadavg`'s first three fields.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
}
