//! Benchmarks of qbind-core's hot paths, run with `cargo bench -p qbind-core --bench core`.
//!
//! - `mldsa44/*`: ML-DSA-44 key generation from a seed, signing and verification, through the
//!   public types (default backend, libcrux) and through each backend's seam explicitly, with a
//!   key decoded once (`PreparedPublicKey`) and decoded on every call (`crypto::verify`).
//! - `qc_verify/*`: what verifying a quorum certificate costs on a node that has not seen its
//!   votes, at n = 4, 16 and 64 validators of equal stake.
//! - `sig_cache/*`: a signature check answered by `SigVerifier`'s cache (the key digest, the
//!   keyed fingerprint of the 2,420 signature bytes, one lookup) and the same check on a
//!   verifier that has not seen it (a full verification), for the ratio of the two.
//! - `codec/*`: encoding and decoding a proposal (3-of-4 QC, 100 transactions of 100 bytes) and
//!   a vote.
//! - `sim/*`: committed blocks per CPU-second of the deterministic simulator, which runs every
//!   validator of the network on one thread.
//!
//! Before the timed groups the binary prints the encoded size of a quorum certificate at
//! n = 4, 16, 64 and 100 (computed, not timed). `docs/benchmarks.md` records a run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use qbind_core::codec::{CodecLimits, Encode};
use qbind_core::consensus::{
    Block, BlockHeader, ConsensusMsg, Payload, Proposal, QuorumCert, SignerBitmap, Vote, VoteData,
};
use qbind_core::crypto::backend::{Libcrux, MlDsa44Backend, RustCrypto};
use qbind_core::crypto::{self, KeyPair, ML_DSA_44_SIGNATURE_BYTES, PreparedPublicKey};
use qbind_core::quorum::SigVerifier;
use qbind_core::signing::{SignKind, sign_domain, signing_preimage};
use qbind_core::sim::{Report, Scenario};
use qbind_core::types::{Epoch, Hash32, Height, NetworkEnvironment, ValidatorId, View};
use qbind_core::validator::ValidatorSet;

const ENV: NetworkEnvironment = NetworkEnvironment::Devnet;

/// Validator counts whose certificate sizes DESIGN.md asks for.
const CERT_SIZE_NS: [usize; 4] = [4, 16, 64, 100];
/// Validator counts for the timed certificate verification.
const QC_VERIFY_NS: [usize; 3] = [4, 16, 64];
/// `(validators, blocks to commit)` per simulated run; K is chosen so that one run takes
/// 0.6–0.8 CPU-seconds on the machine in `docs/benchmarks.md`.
const SIM_RUNS: [(usize, u64); 2] = [(4, 400), (16, 50)];

fn key_seed(i: usize) -> [u8; 32] {
    let mut seed = [0xb5u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
    seed
}

fn keys(n: usize) -> Vec<KeyPair> {
    (0..n).map(|i| KeyPair::from_seed(&key_seed(i))).collect()
}

fn equal_stake_set(keys: &[KeyPair]) -> ValidatorSet {
    ValidatorSet::new(keys.iter().map(|k| (k.public_key().clone(), 1)).collect())
        .expect("distinct keys with stake 1 form a valid set")
}

/// Smallest number of equal-stake signers that is more than two thirds of `n`.
fn quorum(n: usize) -> usize {
    2 * n / 3 + 1
}

/// A QC on `data` signed by validators `0..quorum(n)` under the VOTE tag, in signer order, as
/// the vote collector builds it.
fn quorum_cert(keys: &[KeyPair], data: VoteData) -> QuorumCert {
    let n = keys.len();
    let message = data.to_bytes();
    let mut signers = SignerBitmap::new(n);
    let mut signatures = Vec::with_capacity(quorum(n));
    for (i, key) in keys.iter().enumerate().take(quorum(n)) {
        assert!(signers.set(ValidatorId(i as u32)));
        signatures.push(sign_domain(key, ENV, SignKind::Vote, &message));
    }
    QuorumCert {
        data,
        signers,
        signatures,
    }
}

fn vote_data(view: u64, block_id: Hash32) -> VoteData {
    VoteData {
        epoch: Epoch(0),
        view: View(view),
        block_id,
    }
}

fn block(
    view: u64,
    parent: &Block,
    proposer: ValidatorId,
    justify: QuorumCert,
    payload: Payload,
) -> Block {
    let header = BlockHeader {
        epoch: Epoch(0),
        view: View(view),
        height: Height(parent.height().0 + 1),
        parent_id: parent.id(),
        justify_view: View(0),
        proposer,
        payload_digest: Hash32([0; 32]),
        batch_commitment: Hash32([0; 32]),
        exec_height: Height(0),
        exec_state_root: Hash32::ZERO,
    };
    Block::new(header, justify, payload)
}

// ---------------------------------------------------------------------------------------------
// Certificate sizes (computed)

fn print_certificate_sizes() {
    let all_keys = keys(CERT_SIZE_NS.iter().copied().max().unwrap_or(0));
    println!("Encoded QuorumCert size (equal stake, quorum = floor(2n/3) + 1 signatures):");
    println!(
        "{:>5} {:>7} {:>10} {:>9} {:>14}",
        "n", "quorum", "bytes", "KiB", "sig bytes %"
    );
    for n in CERT_SIZE_NS {
        let qc = quorum_cert(&all_keys[..n], vote_data(1, Hash32::digest(b"sized block")));
        let bytes = qc.to_bytes().len();
        let q = quorum(n);
        // VoteData (8 + 8 + 32), bitmap (u32 + ceil(n/8)), signature count (u32), signatures.
        assert_eq!(
            bytes,
            48 + 4 + n.div_ceil(8) + 4 + q * ML_DSA_44_SIGNATURE_BYTES
        );
        let sig_share = 100.0 * (q * ML_DSA_44_SIGNATURE_BYTES) as f64 / bytes as f64;
        println!(
            "{n:>5} {q:>7} {bytes:>10} {:>9.1} {sig_share:>14.2}",
            bytes as f64 / 1024.0
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ML-DSA-44

/// The message a vote signs: `QBIND:DEV:VOTE:v1 || chain id || VoteData` (73 bytes).
fn vote_preimage() -> Vec<u8> {
    let data = vote_data(7, Hash32::digest(b"benchmarked block"));
    signing_preimage(ENV, SignKind::Vote, &data.to_bytes())
}

fn mldsa_public_api(c: &mut Criterion) {
    let mut g = c.benchmark_group("mldsa44");
    let seed = key_seed(1);
    let message = vote_preimage();
    let key = KeyPair::from_seed(&seed);
    let signature = key.sign(&message);
    let prepared = PreparedPublicKey::new(key.public_key()).expect("own key decodes");

    g.bench_function("keygen/public-default", |b| {
        b.iter(|| KeyPair::from_seed(black_box(&seed)))
    });
    g.bench_function("sign/public-default", |b| {
        b.iter(|| key.sign(black_box(&message)))
    });
    g.bench_function("verify_prepared/public-default", |b| {
        b.iter(|| prepared.verify(black_box(&message), black_box(&signature)))
    });
    g.bench_function("verify_decode/public-default", |b| {
        b.iter(|| crypto::verify(key.public_key(), black_box(&message), black_box(&signature)))
    });
    g.finish();
}

/// The same four operations on one backend through the backend seam, so that the two backends
/// are compared on identical work.
fn mldsa_backend<B: MlDsa44Backend>(c: &mut Criterion) {
    let mut g = c.benchmark_group("mldsa44");
    let seed = key_seed(1);
    let message = vote_preimage();
    let (signing_key, public_key) = B::dsa_keygen(&seed);
    let signature = B::sign(&signing_key, &message, &[]).expect("signing succeeds");
    let verifying_key = B::prepare(&public_key).expect("own key decodes");

    g.bench_function(BenchmarkId::new("keygen", B::NAME), |b| {
        b.iter(|| B::dsa_keygen(black_box(&seed)))
    });
    g.bench_function(BenchmarkId::new("sign", B::NAME), |b| {
        b.iter(|| B::sign(&signing_key, black_box(&message), &[]))
    });
    g.bench_function(BenchmarkId::new("verify_prepared", B::NAME), |b| {
        b.iter(|| {
            B::verify(
                &verifying_key,
                black_box(&message),
                &[],
                black_box(&signature),
            )
        })
    });
    g.bench_function(BenchmarkId::new("verify_decode", B::NAME), |b| {
        b.iter(|| {
            let vk = B::prepare(black_box(&public_key)).expect("own key decodes");
            B::verify(&vk, black_box(&message), &[], black_box(&signature))
        })
    });
    g.finish();
}

fn mldsa_libcrux(c: &mut Criterion) {
    mldsa_backend::<Libcrux>(c);
}

fn mldsa_rustcrypto(c: &mut Criterion) {
    mldsa_backend::<RustCrypto>(c);
}

// ---------------------------------------------------------------------------------------------
// Quorum-certificate verification

/// Every signature of `qc` checked with [`ValidatorSet::verify`] over the VOTE preimage: the
/// cryptographic work of a QC verification on a node that has none of the votes cached.
fn verify_qc_signatures(set: &ValidatorSet, qc: &QuorumCert) -> bool {
    let message = qc.data.to_bytes();
    qc.signers.iter().zip(&qc.signatures).all(|(signer, sig)| {
        set.verify(signer, ENV, SignKind::Vote, &message, sig)
            .is_ok()
    })
}

/// The signature checks plus the bookkeeping `consensus::certs::Verifier::verify_qc` does on a
/// cache miss (it is crate-private, so this mirrors it): a digest of the whole certificate, the
/// signer/quorum checks, and one cache digest per signature over the message and signature.
fn verify_qc_cold(set: &ValidatorSet, qc: &QuorumCert) -> bool {
    let qc_digest = Hash32::digest(&qc.to_bytes());
    let ids: Vec<ValidatorId> = qc.signers.iter().collect();
    if qc.signers.len() != set.len()
        || ids.len() != qc.signatures.len()
        || !set.is_quorum(set.stake_of(&ids))
    {
        return false;
    }
    let message = qc.data.to_bytes();
    let all_valid = ids.iter().zip(&qc.signatures).all(|(signer, sig)| {
        let sig_digest = Hash32::digest_parts(&[
            &[SignKind::Vote as u8],
            &qc.data.epoch.0.to_be_bytes(),
            &signer.0.to_be_bytes(),
            &message,
            sig.as_bytes(),
        ]);
        black_box(sig_digest);
        set.verify(*signer, ENV, SignKind::Vote, &message, sig)
            .is_ok()
    });
    black_box(qc_digest);
    all_valid
}

fn qc_verification(c: &mut Criterion) {
    let mut g = c.benchmark_group("qc_verify");
    let all_keys = keys(QC_VERIFY_NS.iter().copied().max().unwrap_or(0));
    for n in QC_VERIFY_NS {
        let set = equal_stake_set(&all_keys[..n]);
        let qc = quorum_cert(
            &all_keys[..n],
            vote_data(1, Hash32::digest(b"certified block")),
        );
        assert_eq!(qc.signatures.len() as u64, set.quorum_stake());
        assert!(verify_qc_signatures(&set, &qc) && verify_qc_cold(&set, &qc));
        g.throughput(Throughput::Elements(qc.signatures.len() as u64));
        g.bench_with_input(BenchmarkId::new("signatures", n), &qc, |b, qc| {
            b.iter(|| verify_qc_signatures(&set, black_box(qc)))
        });
        g.bench_with_input(BenchmarkId::new("cold_with_digests", n), &qc, |b, qc| {
            b.iter(|| verify_qc_cold(&set, black_box(qc)))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Signature cache

fn sig_cache(c: &mut Criterion) {
    let mut g = c.benchmark_group("sig_cache");
    let keys = keys(4);
    let set = equal_stake_set(&keys);
    let message = vote_data(1, Hash32::digest(b"certified block")).to_bytes();
    let sig = sign_domain(&keys[1], ENV, SignKind::Vote, &message);
    let check = |v: &mut SigVerifier| {
        v.verify_sig(
            &set,
            Epoch(0),
            ValidatorId(1),
            SignKind::Vote,
            &message,
            &sig,
        )
    };
    let mut cached = SigVerifier::new(ENV, 1024);
    assert_eq!(check(&mut cached), Ok(()));
    g.bench_function("hit", |b| b.iter(|| black_box(check(&mut cached))));
    g.bench_function("miss", |b| {
        b.iter_batched(
            || SigVerifier::new(ENV, 16),
            |mut fresh| black_box(check(&mut fresh)),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Codec

/// A proposal for view 2 carrying a 3-of-4 QC on the view-1 block and 100 transactions of 100
/// bytes, and validator 0's vote on it.
fn consensus_messages() -> (ConsensusMsg, ConsensusMsg) {
    let keys = keys(4);
    let set = equal_stake_set(&keys);
    let genesis = Block::genesis(ENV.chain_id());
    let first = block(
        1,
        &genesis,
        set.leader(View(1)),
        genesis.justify().clone(),
        Payload::empty(),
    );
    let qc = quorum_cert(&keys, vote_data(1, first.id()));
    let txs = (0..100u8).map(|i| vec![i; 100]).collect();
    let leader = set.leader(View(2));
    let second = block(2, &first, leader, qc, Payload::Transactions(txs));
    let signature = sign_domain(
        &keys[leader.0 as usize],
        ENV,
        SignKind::Proposal,
        &second.id().to_bytes(),
    );
    let data = vote_data(2, second.id());
    let vote = Vote {
        data,
        voter: ValidatorId(0),
        signature: sign_domain(&keys[0], ENV, SignKind::Vote, &data.to_bytes()),
    };
    let proposal = Proposal {
        block: second,
        tc: None,
        signature,
    };
    (ConsensusMsg::Proposal(proposal), ConsensusMsg::Vote(vote))
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let limits = CodecLimits::default();
    let (proposal, vote) = consensus_messages();
    for (name, msg) in [("proposal", proposal), ("vote", vote)] {
        let bytes = msg.to_bytes();
        let decoded = ConsensusMsg::decode_message(&bytes, &limits).expect("round trip");
        assert_eq!(decoded, msg);
        println!("codec: encoded {name} is {} bytes", bytes.len());
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| black_box(&msg).to_bytes())
        });
        g.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| ConsensusMsg::decode_message(black_box(&bytes), &limits))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// Simulated throughput

/// CPU time of the calling thread from `/proc/thread-self/schedstat` (nanoseconds on CPU), so
/// that another process sharing the machine does not inflate the figure; wall time where that
/// file is unavailable.
enum Clock {
    ThreadCpu,
    Wall,
}

impl Clock {
    fn detect() -> Self {
        if thread_cpu_time().is_some() {
            Clock::ThreadCpu
        } else {
            Clock::Wall
        }
    }

    fn time(&self, run: impl FnOnce() -> Report) -> (Duration, Report) {
        match self {
            Clock::ThreadCpu => {
                let start = thread_cpu_time().unwrap_or_default();
                let report = run();
                let end = thread_cpu_time().unwrap_or_default();
                (end.saturating_sub(start), report)
            }
            Clock::Wall => {
                let start = Instant::now();
                let report = run();
                (start.elapsed(), report)
            }
        }
    }
}

fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Signing and message counts of one run, summed over nodes, for the cost-per-block figures.
fn print_run_stats(n: usize, k: u64, report: &Report) {
    let metrics: Vec<_> = report.metrics.iter().flatten().collect();
    let sum = |f: fn(&qbind_core::consensus::ConsensusMetrics) -> u64| -> u64 {
        metrics.iter().map(|m| f(m)).sum()
    };
    let committed = report.min_honest_height();
    println!(
        "sim n={n} K={k}: committed height {committed}, final views {:?}, simulated {} ms, \
         {} events, {} messages delivered; summed over nodes: proposals made {}, votes sent {}, \
         timeouts sent {}, proposals received {}, votes received {}, views timed out {}, \
         rejected {}",
        report.views,
        report.end_time,
        report.events,
        report.delivered,
        sum(|m| m.proposals_made),
        sum(|m| m.votes_sent),
        sum(|m| m.timeouts_sent),
        sum(|m| m.proposals_received),
        sum(|m| m.votes_received),
        sum(|m| m.views_timed_out),
        sum(|m| m.rejected_total()),
    );
}

fn simulated_throughput(c: &mut Criterion) {
    let clock = Clock::detect();
    println!(
        "sim: timing with {}",
        match clock {
            Clock::ThreadCpu => "thread CPU time (/proc/thread-self/schedstat)",
            Clock::Wall => "wall time (thread CPU time unavailable)",
        }
    );
    let mut g = c.benchmark_group("sim");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8));
    for (n, k) in SIM_RUNS {
        let mut printed = false;
        g.throughput(Throughput::Elements(k));
        g.bench_function(BenchmarkId::new("committed_blocks", n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (spent, report) = clock.time(|| {
                        Scenario::new(n)
                            .seed(1)
                            .transactions_every(5)
                            .min_commits(k)
                            .run()
                    });
                    total += spent;
                    assert!(
                        report.violations.is_empty() && report.min_honest_height() >= k,
                        "{}",
                        report.summary()
                    );
                    if !printed {
                        printed = true;
                        print_run_stats(n, k, &report);
                    }
                }
                total
            })
        });
    }
    g.finish();
}

fn main() {
    print_certificate_sizes();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    mldsa_public_api(&mut c);
    mldsa_libcrux(&mut c);
    mldsa_rustcrypto(&mut c);
    qc_verification(&mut c);
    sig_cache(&mut c);
    codec(&mut c);
    simulated_throughput(&mut c);
    c.final_summary();
}
