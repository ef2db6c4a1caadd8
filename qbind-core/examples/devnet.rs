//! The project's main job for now: a 4-validator simulated DevNet that runs
//! chained HotStuff with real ML-DSA-44 signatures, prints every committed
//! block with its view and commit latency, and stops after a bounded number
//! of blocks.
//!
//! ```text
//! cargo run --release -p qbind-core --features sim --example devnet -- [BLOCKS] [SEED]
//! ```

use std::time::Instant;

use qbind_core::sim::Scenario;

fn main() {
    let mut args = std::env::args().skip(1);
    let blocks: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    println!("QBIND DevNet: 4 validators, ML-DSA-44 signatures, chained HotStuff (3-chain)");
    println!("simulated links 5-15 ms, one transaction every 5 ms, seed {seed}, {blocks} blocks\n");
    let started = Instant::now();
    let report = Scenario::new(4)
        .seed(seed)
        .transactions_every(5)
        .min_commits(blocks)
        .run();
    let cpu = started.elapsed();
    println!(
        "{:>7} {:>6} {:>5} {:>10} {:>12}  block",
        "height", "view", "txs", "at (ms)", "latency (ms)"
    );
    for c in report.commits[0].iter().take(blocks as usize) {
        println!(
            "{:>7} {:>6} {:>5} {:>10} {:>12}  {:?}",
            c.height.0, c.view.0, c.txs, c.at, c.latency, c.id
        );
    }
    let txs: usize = report.commits[0].iter().map(|c| c.txs).sum();
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
    if report.violations.is_empty() {
        println!("safety checks: agreement, chain links, no double signing: OK");
    } else {
        println!("VIOLATIONS: {:?}", report.violations);
        std::process::exit(1);
    }
}
