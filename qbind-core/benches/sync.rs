//! Block sync benchmark (issue #18): how fast a validator at genesis
//! catches up a certified chain from honest peers, against how fast this
//! machine verifies ML-DSA-44 signatures on one core. Without the
//! `parallel` feature the state machine verifies a certificate's signatures
//! one after another on its own task; with it (as `qbind-node` builds the
//! core), on rayon's pool.
//!
//! `cargo bench -p qbind-core --features sim[,parallel] --bench sync [-- BLOCKS]`
//! prints blocks/s, signatures verified per block, verifications/s and the
//! ratio (sync's signature rate ÷ the one-core verification rate; above 1
//! only with more than one core at work). Results in docs/benchmarks.md.

use std::time::Instant;

use qbind_core::codec::Encode;
use qbind_core::consensus::{
    ConsensusConfig, ConsensusMsg, Effect, HotStuff, Input, Proposal, SyncResponse, VoteData,
};
use qbind_core::crypto::KeyPair;
use qbind_core::signing::{SignKind, sign_domain, verify_domain};
use qbind_core::sim::chain::certified_chain;
use qbind_core::types::{Epoch, Hash32, Millis, NetworkEnvironment, ValidatorId, View};

const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

/// Single-core ML-DSA-44 verifications per second (vote signatures).
fn verifications_per_second(key: &KeyPair) -> f64 {
    let data = VoteData {
        epoch: Epoch(0),
        view: View(7),
        block_id: Hash32([7; 32]),
    }
    .to_bytes();
    let sig = sign_domain(key, ENV, SignKind::Vote, &data);
    let n = 3_000;
    let started = Instant::now();
    for _ in 0..n {
        if verify_domain(key.public_key(), ENV, SignKind::Vote, &data, &sig).is_err() {
            eprintln!("verification failed");
            std::process::exit(1);
        }
    }
    f64::from(n) / started.elapsed().as_secs_f64()
}

fn main() {
    let blocks: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000);
    let keys: Vec<KeyPair> = (0..4u8)
        .map(|i| KeyPair::from_seed(&[90 + i; 32]))
        .collect();
    // Every QC carries a quorum's signatures: 3 of 4.
    let (schedule, chain) = match certified_chain(ENV, &keys, 3, blocks) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chain: {e}");
            std::process::exit(1);
        }
    };
    let mut hs = HotStuff::new(
        ConsensusConfig::new(ENV),
        ValidatorId(3),
        schedule,
        None,
        Vec::new(),
        Vec::new(),
    );
    let _ = hs.handle(Millis(0), Input::Start);
    let tip = chain[blocks].clone();
    let proposer = tip.header().proposer;
    let signature = sign_domain(
        &keys[proposer.0 as usize],
        ENV,
        SignKind::Proposal,
        &tip.id().to_bytes(),
    );
    let started = Instant::now();
    let mut effects = hs.handle(
        Millis(1),
        Input::Message {
            from: proposer,
            msg: ConsensusMsg::Proposal(Proposal {
                block: tip,
                tc: None,
                signature,
            }),
        },
    );
    let mut now = 2;
    let mut answered = 0u64;
    loop {
        let requests: Vec<(ValidatorId, u64, u32)> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send {
                    to,
                    msg: ConsensusMsg::SyncRange(r),
                } => Some((*to, r.from_height.0, r.max_blocks)),
                _ => None,
            })
            .collect();
        if requests.is_empty() {
            break;
        }
        effects = Vec::new();
        for (peer, from, max) in requests {
            now += 1;
            answered += 1;
            let mut answer: Vec<_> = chain
                .iter()
                .skip(from as usize)
                .take(max as usize)
                .cloned()
                .collect();
            answer.reverse();
            effects.extend(hs.handle(
                Millis(now),
                Input::Message {
                    from: peer,
                    msg: ConsensusMsg::SyncResponse(SyncResponse { blocks: answer }),
                },
            ));
        }
    }
    let took = started.elapsed().as_secs_f64();
    let committed = hs.committed_height().0;
    if committed + 16 < blocks as u64 {
        eprintln!(
            "sync stopped at {committed} of {blocks}: {:?}",
            hs.metrics()
        );
        std::process::exit(1);
    }
    let rate = committed as f64 / took;
    let verify = verifications_per_second(&keys[0]);
    // Each block's QC: 3 signatures.
    let sigs_per_block = 3.0;
    println!("sync: {committed} blocks committed in {took:.2} s from {answered} range answers");
    println!(
        "sync: {rate:.0} blocks/s ({:.0} signatures/s)",
        rate * sigs_per_block
    );
    println!("ML-DSA-44 verify, one core: {verify:.0}/s");
    println!(
        "certificate signatures verified: {}",
        if cfg!(feature = "parallel") {
            "in parallel (feature `parallel`)"
        } else {
            "one after another"
        }
    );
    println!(
        "ratio (sync signature rate / verification rate): {:.2}",
        rate * sigs_per_block / verify
    );
}
