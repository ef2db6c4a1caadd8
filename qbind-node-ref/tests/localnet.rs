//! `qbind-localnet` end to end: four `qbind-node` processes over KEMTLS on
//! 127.0.0.1, transfers signed and submitted through the public API,
//! validator 2 SIGKILLed five seconds in and restarted; the run exits 0
//! and its JSON summary shows equal state roots, no transfer lost or
//! applied twice, and progress on every validator (the restarted one
//! included).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn four_validators_with_a_kill_and_restart_agree_and_lose_nothing() {
    // Eight ports (P2P and API of four validators) derived from the pid.
    let base_port = 38_000 + (std::process::id() % 2_500) as u16 * 8;
    let mut child = Command::new(env!("CARGO_BIN_EXE_qbind-localnet"))
        .args(["--validators", "4", "--duration", "14s", "--rate", "80"])
        .args(["--accounts", "64", "--kill", "2@5", "--output", "json"])
        .args(["--base-timeout-ms", "500"])
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
    common::wait_until(Duration::from_secs(85), || {
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
    assert!(
        status.is_some_and(|s| s.success()),
        "qbind-localnet: {status:?}\n{context}"
    );
    let summary: serde_json::Value = serde_json::from_str(&out).expect(&context);
    assert_eq!(summary["ok"], true, "{context}");
    assert_eq!(summary["roots_equal"], true, "{context}");
    for field in ["lost", "applied_twice_accounts", "inconsistent_accounts"] {
        assert_eq!(summary[field], 0, "{field}: {context}");
    }
    let committed = summary["committed"].as_u64().expect("committed");
    assert!(
        committed > 50,
        "only {committed} transfers committed: {context}"
    );
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
    let kill = &summary["kills"][0];
    assert_eq!(kill["validator"], 2, "{context}");
    assert!(kill["restarted_at_secs"].is_number(), "{context}");
    assert_eq!(validators[2]["restarts"], 1, "{context}");
    assert!(
        validators[2]["executed_height"].as_u64() > kill["height_at_kill"].as_u64(),
        "the restarted validator did not catch up: {context}"
    );
}
