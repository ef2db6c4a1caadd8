//! `qbind-localnet` end to end: four `qbind-node` processes over KEMTLS on
//! 127.0.0.1, transfers signed and submitted through the public API, one
//! validator SIGKILLed and restarted; the run exits 0 and its JSON summary
//! shows equal state roots, no transfer lost or applied twice, and progress
//! on every validator (the restarted one included). The two runs take turns
//! (each saturates the machine).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// One localnet run at a time.
static RUNS: Mutex<()> = Mutex::new(());

/// Run `qbind-localnet` with `args` (plus JSON output and its own ports:
/// eight per slot, four slots per test process);
/// SIGTERM if it overruns `limit`. Returns the exit status and the JSON
/// summary, and the whole output for messages.
fn run_localnet(
    args: &[&str],
    port_slot: u16,
    limit: Duration,
) -> (Option<std::process::ExitStatus>, serde_json::Value, String) {
    let _turn = RUNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Twelve ports (P2P, API and metrics of four validators) derived from
    // the pid, in this binary's range (10,000–19,599), below the ephemeral
    // ports (see multi_process.rs).
    let base_port = 10_000 + (std::process::id() % 200) as u16 * 48 + port_slot * 12;
    let mut child = Command::new(env!("CARGO_BIN_EXE_qbind-localnet"))
        .args(args)
        .args(["--output", "json"])
        .args(["--base-port", &base_port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qbind-localnet");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // SIGTERM (a clean stop of the validators) if it overruns, then SIGKILL.
    let mut status = None;
    common::wait_until(limit, || {
        status = child.try_wait().expect("wait");
        status.is_some()
    });
    if status.is_none() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        status = common::wait_exit(&mut child, Duration::from_secs(25));
    }
    let out = out.join().expect("stdout reader");
    let err = err.join().expect("stderr reader");
    let context = format!("stdout:\n{out}\nstderr:\n{err}");
    let summary = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    (status, summary, context)
}

/// What every run must show: exit 0, equal roots, nothing lost or applied
/// twice, every validator at the common height; returns the per-validator
/// summaries.
fn assert_clean(
    status: Option<std::process::ExitStatus>,
    summary: &serde_json::Value,
    context: &str,
) -> Vec<serde_json::Value> {
    assert!(
        status.is_some_and(|s| s.success()),
        "qbind-localnet: {status:?}\n{context}"
    );
    assert_eq!(summary["ok"], true, "{context}");
    assert_eq!(summary["roots_equal"], true, "{context}");
    for field in ["lost", "applied_twice_accounts", "inconsistent_accounts"] {
        assert_eq!(summary[field], 0, "{field}: {context}");
    }
    assert_eq!(summary["accepted"], summary["committed"], "{context}");
    let common_height = summary["common_height"].as_u64().expect("height");
    assert!(common_height > 0, "{context}");
    let validators = summary["per_validator"].as_array().expect("validators");
    assert_eq!(validators.len(), 4);
    let root = &validators[0]["state_root"];
    for v in validators {
        assert!(
            v["executed_height"].as_u64().expect("height") >= common_height,
            "{context}"
        );
        assert_eq!(&v["state_root"], root, "{context}");
        assert!(v["peak_rss_mib"].as_f64().expect("rss") > 0.0, "{context}");
        assert!(v["cpu_secs"].as_f64().expect("cpu") > 0.0, "{context}");
    }
    // The CPU split: every activity was charged (docs/node.md "CPU split").
    for activity in [
        "verification",
        "execution",
        "consensus",
        "storage",
        "network",
    ] {
        let secs = summary["cpu_split"][activity].as_f64();
        assert!(secs.is_some_and(|s| s > 0.0), "{activity}: {context}");
    }
    validators.clone()
}

#[test]
fn four_validators_with_a_kill_and_restart_agree_and_lose_nothing() {
    let (status, summary, context) = run_localnet(
        &[
            "--validators",
            "4",
            "--duration",
            "14s",
            "--rate",
            "80",
            "--accounts",
            "64",
            "--kill",
            "2@5",
            "--base-timeout-ms",
            "500",
        ],
        0,
        Duration::from_secs(85),
    );
    let validators = assert_clean(status, &summary, &context);
    let committed = summary["committed"].as_u64().expect("committed");
    assert!(
        committed > 50,
        "only {committed} transfers committed: {context}"
    );
    let kill = &summary["kills"][0];
    assert_eq!(kill["validator"], 2, "{context}");
    assert!(kill["restarted_at_secs"].is_number(), "{context}");
    assert_eq!(validators[2]["restarts"], 1, "{context}");
    assert!(
        validators[2]["executed_height"].as_u64() > kill["height_at_kill"].as_u64(),
        "the restarted validator did not catch up: {context}"
    );
    // The progress lines show each validator's pool depth.
    let pools: Vec<&str> = context
        .lines()
        .filter_map(|l| l.split("pools [").nth(1))
        .filter_map(|rest| rest.split(']').next())
        .collect();
    assert!(
        pools
            .iter()
            .any(|p| p.split(' ').filter(|v| v.parse::<u64>().is_ok()).count() == 4),
        "no progress line with four pool depths: {context}"
    );
}

/// Issue #18 as measured with processes: a validator down for a while under
/// full load misses blocks of hundreds of transfers; its peers used to
/// answer its catch-up with sync responses larger than a KEMTLS message,
/// every answer closed the connection, and it never caught up. Down 12 s
/// here (hundreds of blocks of ~1 MB); it must reach the height of the last
/// transfer (the run fails otherwise) with the same root.
#[test]
fn a_validator_down_under_full_load_catches_up() {
    let (status, summary, context) = run_localnet(
        &[
            "--validators",
            "4",
            "--duration",
            "24s",
            "--rate",
            "max",
            "--in-flight",
            "800",
            "--accounts",
            "400",
            "--kill",
            "3@2+12",
        ],
        1,
        Duration::from_secs(110),
    );
    let validators = assert_clean(status, &summary, &context);
    let kill = &summary["kills"][0];
    assert_eq!(kill["validator"], 3, "{context}");
    assert_eq!(validators[3]["restarts"], 1, "{context}");
    let committed = summary["committed"].as_u64().expect("committed");
    assert!(
        committed > 2_000,
        "only {committed} transfers committed: {context}"
    );
}

/// Issue #18's process case: validator 3 is down while the other three
/// commit thousands of mostly empty blocks (light load), then restarts on
/// its data directory and must catch up over KEMTLS to the common height
/// with the same root. About 3 minutes; run with `--ignored`.
#[test]
#[ignore = "slow: ~3 minutes of four processes; run with --ignored"]
fn a_validator_thousands_of_blocks_behind_catches_up_slow() {
    let (status, summary, context) = run_localnet(
        &[
            "--validators",
            "4",
            "--duration",
            "140s",
            "--rate",
            "50",
            "--accounts",
            "64",
            "--kill",
            "3@2+130",
            "--base-timeout-ms",
            "500",
        ],
        2,
        Duration::from_secs(300),
    );
    let validators = assert_clean(status, &summary, &context);
    let kill = &summary["kills"][0];
    assert_eq!(validators[3]["restarts"], 1, "{context}");
    let at_kill = kill["height_at_kill"].as_u64().expect("height at kill");
    let common = summary["common_height"].as_u64().expect("common height");
    eprintln!(
        "validator 3 killed at height {at_kill}; all four at common height {common} with equal \
         roots ({} blocks later)",
        common.saturating_sub(at_kill)
    );
    assert!(
        common >= at_kill + 5_000,
        "only {} blocks while validator 3 was down or catching up: {context}",
        common - at_kill
    );
}

/// The `qbind-node` processes whose command line names `needle`: pids.
fn nodes_with(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (cmd.contains("qbind-node ") && cmd.contains(needle)).then_some(pid)
    })
    .collect()
}

/// Issue #21: validators used to outlive a `qbind-localnet` killed with
/// SIGKILL. They hold the read end of a pipe from it (`--stop-with-stdin`)
/// and stop cleanly when it closes.
#[test]
fn validators_stop_when_localnet_is_killed() {
    let _turn = RUNS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let base_port = 10_000 + (std::process::id() % 200) as u16 * 48 + 3 * 12;
    let mut child = Command::new(env!("CARGO_BIN_EXE_qbind-localnet"))
        .args(["--validators", "4", "--duration", "60s", "--rate", "10"])
        .args(["--accounts", "16", "--base-port", &base_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qbind-localnet");
    // Validator i's API is on base port + 4 + i, on its command line.
    let api = |i: u16| format!("127.0.0.1:{}", base_port + 4 + i);
    let all = || -> Vec<u32> { (0..4).flat_map(|i| nodes_with(&api(i))).collect() };
    let up = common::wait_until(Duration::from_secs(60), || all().len() == 4);
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "the four validators did not start");
    let gone = common::wait_until(Duration::from_secs(20), || all().is_empty());
    let left = all();
    for pid in &left {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert!(gone, "validators outlived the killed localnet: {left:?}");
}
