//! The project's main job for now: a 4-validator simulated DevNet that runs
//! chained HotStuff with real ML-DSA-44 signatures, commits signed VM v0
//! transfers between 32 funded accounts (fee-priority pool, gas, hybrid
//! fees), executes every committed block on every validator, prints each
//! block with its view, commit latency, transfer outcomes and state root,
//! and stops after a bounded number of blocks.
//!
//! ```text
//! cargo run --release -p qbind-core --features sim --example devnet -- [BLOCKS] [SEED]
//! ```

use std::time::Instant;

use qbind_core::sim::{Scenario, Transfers};

fn main() {
    let mut args = std::env::args().skip(1);
    let blocks: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let transfers = Transfers::default();
    println!("QBIND DevNet: 4 validators, ML-DSA-44 signatures, chained HotStuff (3-chain)");
    println!(
        "simulated links 5-15 ms; a signed transfer every 5 ms between {} funded accounts; \
         seed {seed}; {blocks} blocks\n",
        transfers.accounts
    );
    let started = Instant::now();
    let report = Scenario::new(4)
        .seed(seed)
        .transactions_every(5)
        .transfers(transfers)
        .min_commits(blocks)
        .run();
    let cpu = started.elapsed();
    println!(
        "{:>7} {:>6} {:>5} {:>10} {:>12} {:>4} {:>5} {:>5} {:>8}  state root",
        "height", "view", "txs", "at (ms)", "latency (ms)", "ok", "fail", "rej", "fees"
    );
    let executed = &report.executions[0];
    for c in report.commits[0].iter().take(blocks as usize) {
        let (ok, fail, rej, fees, root) = executed.iter().find(|e| e.height == c.height).map_or(
            (0, 0, 0, 0, String::from("(not executed)")),
            |e| {
                (
                    e.succeeded,
                    e.failed,
                    e.rejected,
                    e.fees,
                    short(e.state_root.as_bytes()),
                )
            },
        );
        println!(
            "{:>7} {:>6} {:>5} {:>10} {:>12} {:>4} {:>5} {:>5} {:>8}  {}",
            c.height.0, c.view.0, c.txs, c.at, c.latency, ok, fail, rej, fees, root
        );
    }
    let txs: usize = report.commits[0].iter().map(|c| c.txs).sum();
    let transfers_ok: u64 = executed.iter().map(|e| e.succeeded).sum();
    let burned: u128 = executed.iter().map(|e| e.burned).sum();
    println!(
        "\ncommitted {} blocks ({} transactions) on every validator in {} ms of simulated time; \
         mean commit latency {} ms; {} messages; {:.2} s of CPU",
        report.min_honest_height(),
        txs,
        report.end_time,
        report.mean_latency(),
        report.delivered,
        cpu.as_secs_f64()
    );
    let roots_equal = report.executions.iter().all(|node| {
        node.iter().all(|e| {
            executed
                .iter()
                .find(|x| x.height == e.height)
                .is_none_or(|x| x.state_root == e.state_root)
        })
    });
    println!(
        "executed {transfers_ok} signed transfers; {burned} units of fees burned; \
         state roots equal on all validators at every height: {roots_equal}"
    );
    if let Some((held, minted)) = report.supply_check {
        println!("supply: balances + burned = {held}, genesis + issuance = {minted}");
        if held != minted {
            println!("VIOLATION: supply not conserved");
            std::process::exit(1);
        }
    }
    if report.violations.is_empty() {
        println!("safety checks: agreement, chain links, no double signing, equal state roots: OK");
    } else {
        println!("VIOLATIONS: {:?}", report.violations);
        std::process::exit(1);
    }
}

/// The first 8 bytes of a hash in hex, for display.
fn short(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
