//! Four validators embedded with the integrator's own store, network, signer,
//! clock and application; see `src/embed/`.
//!
//! `cargo run -p qbind-examples --example embed [-- BLOCKS]`

use qbind_examples::embed::{Params, run};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut params = Params::default();
    if let Some(blocks) = std::env::args().nth(1) {
        params.blocks = blocks.parse()?;
    }
    let summary = run(&params, &mut |line| println!("{line}"))?;
    println!(
        "done: executed heights {:?}; root at height {}: {:?}…; {:?} transactions applied, \
         {:?} rejected; signer refusals {:?}",
        summary.executed,
        params.blocks,
        summary.roots_at_target.first(),
        summary.applied_txs,
        summary.rejected_txs,
        summary.signer_refusals,
    );
    Ok(())
}
