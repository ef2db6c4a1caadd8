//! A light client verifying committed blocks and their QCs knowing only the
//! validator set, and refusing tampered copies; see `src/light_client.rs`.
//!
//! `cargo run -p qbind-examples --example light_client [-- BLOCKS]`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let blocks = match std::env::args().nth(1) {
        Some(b) => b.parse()?,
        None => 12,
    };
    let summary = qbind_examples::light_client::run(blocks, &mut |line| println!("{line}"))?;
    println!(
        "done: {:?}; {} tampered chains refused",
        summary.verified,
        summary.refusals.len()
    );
    Ok(())
}
