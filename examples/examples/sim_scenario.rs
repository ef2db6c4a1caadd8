//! A simulator scenario with a crash and a partition, run and replayed from
//! its seed; see `src/sim_scenario.rs`.
//!
//! `cargo run -p qbind-examples --example sim_scenario [-- SEED [BLOCKS]]`

use qbind_examples::sim_scenario::{Params, run};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut params = Params::default();
    let mut args = std::env::args().skip(1);
    if let Some(seed) = args.next() {
        params.seed = seed.parse()?;
    }
    if let Some(blocks) = args.next() {
        params.blocks = blocks.parse()?;
    }
    let summary = run(&params, &mut |line| println!("{line}"))?;
    let h = params.blocks;
    println!(
        "state root at height {h} on every validator: {:?}",
        summary.first.common_root(h)
    );
    Ok(())
}
