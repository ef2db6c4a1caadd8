//! docs/operator-guide.md is run: every ```sh block of the page, in order,
//! as one bash script (`set -euo pipefail`) in a fresh temporary directory
//! with the built binaries first on `PATH`. A command that stops working
//! fails this test. The script is one process group, killed if it runs
//! longer than four minutes; whatever it started is killed at the end.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const LIMIT: Duration = Duration::from_secs(240);

/// The ```sh blocks of `markdown`, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_start() == "```sh" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_start() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "an unterminated ```sh block");
    blocks
}

/// Where the binaries of this build are (`qbind-node`'s directory; the
/// `qbind` CLI of qbind-client is built there by `cargo test --workspace`).
fn bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_qbind-node"))
        .parent()
        .expect("the binaries' directory")
        .to_path_buf();
    assert!(
        dir.join("qbind").is_file(),
        "no qbind CLI in {}: build it (cargo build -p qbind-client --bin qbind; cargo test \
         --workspace does)",
        dir.display()
    );
    dir
}

#[test]
fn sh_blocks_are_found_in_order() {
    let md = "text\n```sh\na\nb\n```\nmore\n```rust\nx\n```\n```sh\nc\n```\n";
    assert_eq!(sh_blocks(md), vec!["a\nb\n".to_string(), "c\n".to_string()]);
}

#[test]
fn every_command_of_the_operator_guide_runs() {
    let guide = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/operator-guide.md"
    ));
    let blocks = sh_blocks(guide);
    assert!(blocks.len() >= 8, "only {} command blocks", blocks.len());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut script = String::from(
        "set -euo pipefail\n\
         cleanup() { if [ -f node.pids ]; then kill -KILL $(cat node.pids) 2>/dev/null || true; fi; }\n\
         trap cleanup EXIT\n",
    );
    for (i, block) in blocks.iter().enumerate() {
        script.push_str(&format!("echo '== operator guide block {}' >&2\n", i + 1));
        script.push_str(block);
    }
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("QBIND_NODE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start bash");
    let (out, err) = common::collect_output(&mut child);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > LIMIT {
            // The whole group: the script and the validators it started.
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = out.join().expect("stdout");
    let err = err.join().expect("stderr");
    let logs: String = (0..4)
        .map(|i| format!("node-{i}.log"))
        .chain(["full-node.log".to_string()])
        .filter_map(|name| std::fs::read_to_string(dir.path().join(name)).ok())
        .map(|l| l.lines().rev().take(15).collect::<Vec<_>>().join("\n"))
        .collect::<Vec<_>>()
        .join("\n--\n");
    assert!(
        status.is_some_and(|s| s.success()),
        "the operator guide failed ({status:?}) after {:?}\nstdout:\n{out}\nstderr:\n{err}\n\
         validator logs (last lines, newest first):\n{logs}",
        start.elapsed()
    );
    // What the guide says happens, happened.
    assert!(out.contains("committed at height"), "{out}");
    assert!(out.contains(" pool "), "status shows the pool: {out}");
    let after = std::fs::read_to_string(dir.path().join("tx-after-restart.txt")).expect("file");
    assert!(
        after.contains("committed at height"),
        "the restarted validator knows the receipt: {after}"
    );
    let full = std::fs::read_to_string(dir.path().join("full-node-tx.txt")).expect("file");
    assert!(
        full.contains("committed at height"),
        "the full node knows the receipt: {full}"
    );
    let refused = std::fs::read_to_string(dir.path().join("refused.txt")).expect("file");
    assert!(
        refused.contains("not_a_validator"),
        "the full node refuses submissions by name: {refused}"
    );
    assert!(
        out.contains("FAIL"),
        "the MainNet check names its failures: {out}"
    );
}
