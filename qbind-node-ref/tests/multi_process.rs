//! Four `qbind-node` processes, one validator each, over KEMTLS on
//! 127.0.0.1: they commit and execute signed transfers, report the same
//! state root at every height they all executed, and stop cleanly on SIGINT.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Reaper, Roots};

const VALIDATORS: usize = 4;
const TARGET: u64 = 12;

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
    common::follow(i, &mut child, roots);
    child
}

#[test]
fn four_processes_agree_over_kemtls_and_stop_on_sigint() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Four ports from the pid, in this binary's range (2,000–2,999): below
    // the kernel's ephemeral ports (32,768–60,999), where an outgoing
    // connection could hold one, and apart from the other process tests'.
    let base_port = 2_000 + (std::process::id() % 250) as u16 * 4;
    let roots = common::roots(VALIDATORS);
    let mut nodes = Reaper(
        (0..VALIDATORS)
            .map(|i| spawn(i, dir.path(), base_port, &roots))
            .collect(),
    );
    let reached = common::wait_until(Duration::from_secs(120), || {
        common::heights(&roots).iter().all(|h| *h >= TARGET)
    });
    assert!(
        reached,
        "not every validator executed {TARGET} blocks: {:?}",
        common::heights(&roots)
    );
    common::interrupt_all_and_expect_clean_exit(&mut nodes.0);
    common::assert_equal_roots(&roots, TARGET);
}

/// SIGTERM (what service managers send) stops a node as cleanly as SIGINT:
/// it finishes the block, flushes, prints its summary and exits with 0.
#[test]
fn sigterm_stops_cleanly_like_sigint() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_qbind-node"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--local-validators", "1", "--base-timeout-ms", "300"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qbind-node");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut nodes = Reaper(vec![child]);
    let committed = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(60)).ok())
        .any(|line| line.starts_with("height"));
    assert!(committed, "the node executed no block");
    let _ = Command::new("kill")
        .args(["-TERM", &nodes.0[0].id().to_string()])
        .status();
    let status = common::wait_exit(&mut nodes.0[0], Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM did not stop the node cleanly: {status:?}"
    );
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.starts_with("stopped:")),
        "no summary after SIGTERM: {rest:?}"
    );
}
