//! Four `qbind-node` processes, one validator each, over KEMTLS on
//! 127.0.0.1: they commit and execute signed transfers, report the same
//! state root at every height they all executed, and stop cleanly on SIGINT.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VALIDATORS: usize = 4;
const TARGET: u64 = 12;

type Roots = Arc<Mutex<Vec<BTreeMap<u64, String>>>>;

fn spawn(i: usize, dir: &std::path::Path, base_port: u16, roots: &Roots) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qbind-node"))
        .args(["--data-dir"])
        .arg(dir)
        .args([
            "--p2p",
            "kemtls",
            "--p2p-base-port",
            &base_port.to_string(),
            "--validator-index",
            &i.to_string(),
            "--base-timeout-ms",
            "500",
            "--tx-interval-ms",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qbind-node");
    let stdout = child.stdout.take().expect("stdout");
    let roots = Arc::clone(roots);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // "height     12  transfers ok ... state root 9e7baf9552aba061"
            let Some(rest) = line.strip_prefix("height") else {
                continue;
            };
            let height = rest.split_whitespace().next().and_then(|h| h.parse().ok());
            let root = line.rsplit(' ').next().map(str::to_string);
            if let (Some(h), Some(r)) = (height, root) {
                roots.lock().expect("lock")[i].insert(h, r);
            }
        }
    });
    child
}

#[test]
fn four_processes_agree_over_kemtls_and_stop_on_sigint() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port range unlikely to collide with another test run on this host.
    let base_port = 30_000 + (std::process::id() % 8_000) as u16 * 4;
    let roots: Roots = Arc::new(Mutex::new(vec![BTreeMap::new(); VALIDATORS]));
    let mut children: Vec<Child> = (0..VALIDATORS)
        .map(|i| spawn(i, dir.path(), base_port, &roots))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let reached = loop {
        let done = roots
            .lock()
            .expect("lock")
            .iter()
            .all(|m| m.keys().next_back().copied().unwrap_or(0) >= TARGET);
        if done || Instant::now() > deadline {
            break done;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for child in &children {
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
    }
    let stop_deadline = Instant::now() + Duration::from_secs(30);
    let mut statuses = Vec::new();
    for child in &mut children {
        let status = loop {
            match child.try_wait().expect("wait") {
                Some(s) => break Some(s),
                None if Instant::now() > stop_deadline => {
                    let _ = child.kill();
                    break None;
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        statuses.push(status);
    }
    assert!(
        reached,
        "not every validator executed {TARGET} blocks in time"
    );
    for (i, s) in statuses.iter().enumerate() {
        assert!(
            s.is_some_and(|s| s.success()),
            "validator {i} did not stop cleanly: {s:?}"
        );
    }
    let roots = roots.lock().expect("lock");
    for h in 1..=TARGET {
        let first = &roots[0][&h];
        for (i, m) in roots.iter().enumerate() {
            assert_eq!(&m[&h], first, "validator {i} state root at height {h}");
        }
    }
}
