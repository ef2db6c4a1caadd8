//! `qbind-snapshot` against a real node's store: create, list, validate
//! (with and without the trusted anchor), refusals of a tampered snapshot,
//! a wrong anchor, another chain, missing or malformed arguments and a
//! non-empty restore target, and a restore that a node then runs on.

use std::path::Path;
use std::process::{Command, Output};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tool(args: &[&str], paths: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qbind-snapshot"));
    cmd.args(args);
    for p in paths {
        cmd.arg(p);
    }
    cmd.output().expect("run qbind-snapshot")
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn create_list_validate_restore_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let snaps = dir.path().join("snaps");
    // One DevNet validator commits some blocks, then stops.
    let o = Command::new(env!("CARGO_BIN_EXE_qbind-node"))
        .args([
            "--local-validators",
            "1",
            "--blocks",
            "10",
            "--tx-interval-ms",
            "5",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run qbind-node");
    assert!(o.status.success(), "{}", text(&o));
    let store = data.join("validator-0");

    // create
    let o = Command::new(env!("CARGO_BIN_EXE_qbind-snapshot"))
        .args(["--output", "json", "create", "-P", "devnet", "-d"])
        .arg(&store)
        .arg("--snapshot-dir")
        .arg(&snaps)
        .output()
        .expect("create");
    assert!(o.status.success(), "{}", text(&o));
    let created = json(&o);
    let height = created["height"].as_u64().expect("height");
    assert!(height >= 10, "{created}");
    let anchor = created["trust_anchor"].as_str().expect("anchor").to_owned();
    let snap = snaps.join(height.to_string());

    // list
    let o = tool(&["--output", "json", "list"], &[&snaps]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&o)[0]["height"].as_u64(), Some(height));

    // validate, without and with the anchor (text output as in the runbook)
    let o = tool(&["validate", "-P", "devnet"], &[&snap]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("Snapshot height: {height}")));
    assert!(text(&o).contains("Validation: OK"), "{}", text(&o));
    let o = tool(
        &[
            "validate",
            "-P",
            "devnet",
            "--trusted-snapshot-anchor",
            &anchor,
        ],
        &[&snap],
    );
    assert!(
        text(&o).contains("matches the trusted anchor"),
        "{}",
        text(&o)
    );

    // Another chain, a wrong anchor: exit 1 with the reason.
    let o = tool(&["validate", "-P", "mainnet"], &[&snap]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("chain"), "{}", text(&o));
    let (h, rest) = anchor.split_once(':').expect("anchor");
    let wrong = format!("{}:{rest}", h.parse::<u64>().expect("height") + 1);
    let o = tool(
        &[
            "validate",
            "-P",
            "devnet",
            "--trusted-snapshot-anchor",
            &wrong,
        ],
        &[&snap],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // No chain given, a malformed anchor: usage errors, exit 2.
    let o = tool(&["validate"], &[&snap]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = tool(
        &[
            "validate",
            "-P",
            "devnet",
            "--trusted-snapshot-anchor",
            "12:zz",
        ],
        &[&snap],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // restore, then a node runs on the restored store.
    let restored = dir.path().join("restored");
    let o = tool(
        &[
            "restore",
            "-P",
            "devnet",
            "--trusted-snapshot-anchor",
            &anchor,
            "-d",
        ],
        &[&restored.join("validator-0"), &snap],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_qbind-node"))
        .args([
            "--local-validators",
            "1",
            "--blocks",
            &(height + 3).to_string(),
        ])
        .arg("--data-dir")
        .arg(&restored)
        .output()
        .expect("run qbind-node on the restored store");
    assert!(o.status.success(), "{}", text(&o));
    // Restoring over a non-empty store is refused.
    let o = tool(
        &[
            "restore",
            "-P",
            "devnet",
            "--trusted-snapshot-anchor",
            &anchor,
            "-d",
        ],
        &[&restored.join("validator-0"), &snap],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // A tampered state file: validation fails with exit 1.
    let state = snap.join("state");
    let victim = std::fs::read_dir(&state)
        .expect("state dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_file() && std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .or_else(|| {
            walk(&state)
                .into_iter()
                .find(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        })
        .expect("a state file");
    let mut bytes = std::fs::read(&victim).expect("read");
    bytes[0] ^= 0xff;
    std::fs::write(&victim, bytes).expect("write");
    let o = tool(&["validate", "-P", "devnet"], &[&snap]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

/// Every regular file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
