//! A fresh DAG `Availability` for validator 0 of the 4-validator DevNet set
//! (small window: `max_rounds_ahead` 8, `retain_delivered_blocks` 4), fed a
//! sequence of inputs decoded from the data: DAG messages from any sender
//! (decoded as consensus messages), batches signed by Byzantine validator 3
//! for any epoch and round, ticks, submitted transactions, committed blocks
//! ordering what was seen, epoch changes, and answers to its signing
//! requests. After every input: no panic, and `footprint()` within
//! `footprint_limits()`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_core::codec::{CodecLimits, Encode};
use qbind_core::consensus::{ConsensusMsg, SignerBitmap};
use qbind_core::dag::{
    Availability, AvailabilityParams, Batch, BatchCertificate, BatchRef, CommittedBlock, DagConfig,
    DagEffect, DagInput, DagMsg, DagSignPurpose, SignedBatch,
};
use qbind_core::mempool::TxPool;
use qbind_core::signing::{SignKind, sign_domain};
use qbind_core::types::{Epoch, Hash32, Height, Millis, ValidatorId};
use qbind_fuzz::{ENV, setup};

/// Most inputs one run feeds (keeps each run short).
const MAX_INPUTS: usize = 64;

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if data.len() < n {
        return None;
    }
    let (head, tail) = data.split_at(n);
    *data = tail;
    Some(head)
}

fn take_up_to<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    take(data, n).unwrap_or(&[])
}

fn byte(data: &mut &[u8]) -> Option<u8> {
    take(data, 1).map(|b| b[0])
}

fn u64_of(data: &mut &[u8]) -> Option<u64> {
    take(data, 8).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
}

fn dag_msg(msg: ConsensusMsg) -> Option<DagMsg> {
    match msg {
        ConsensusMsg::Batch(b) => Some(DagMsg::Batch(b)),
        ConsensusMsg::BatchAck(a) => Some(DagMsg::BatchAck(a)),
        ConsensusMsg::BatchCert(c) => Some(DagMsg::BatchCert(c)),
        ConsensusMsg::BatchFetch(d) => Some(DagMsg::BatchFetch(d)),
        _ => None,
    }
}

fuzz_target!(|input: &[u8]| {
    let s = setup();
    let cfg = s.config.clone();
    let max_tx_bytes = cfg.limits.max_tx_bytes as usize;
    let mut dag = Availability::new(
        ValidatorId(0),
        s.schedule.clone(),
        AvailabilityParams {
            env: ENV,
            dag: DagConfig {
                max_rounds_ahead: 8,
                retain_delivered_blocks: 4,
                ..DagConfig::default()
            },
            max_tx_bytes,
            tx_meta: None,
            pool: TxPool::new(None, cfg.fee_mempool.clone(), 64, max_tx_bytes),
            verify_cache: 256,
        },
    );
    let mut data = input;
    let mut now = 0u64;
    let mut epoch = Epoch(0);
    let mut height = 0u64;
    let mut seen: Vec<BatchRef> = Vec::new();
    let mut jobs: Vec<(DagSignPurpose, Vec<u8>)> = Vec::new();
    for _ in 0..MAX_INPUTS {
        let Some(op) = byte(&mut data) else { break };
        now += u64::from(op >> 3);
        let input = match op % 8 {
            0 => {
                let from = ValidatorId(u32::from(byte(&mut data).unwrap_or(1) % 4));
                let len = usize::from(byte(&mut data).unwrap_or(0)) * 16;
                let bytes = take_up_to(&mut data, len);
                match ConsensusMsg::decode_message(bytes, &CodecLimits::default())
                    .ok()
                    .and_then(dag_msg)
                {
                    Some(msg) => DagInput::Message { from, msg },
                    None => continue,
                }
            }
            1 => DagInput::Tick,
            2 => {
                let len = usize::from(byte(&mut data).unwrap_or(1));
                DagInput::Submit(take_up_to(&mut data, len).to_vec())
            }
            3 => {
                // Commit a block ordering up to three references seen.
                height += 1;
                let n = usize::from(byte(&mut data).unwrap_or(0) % 4).min(seen.len());
                let certs = seen
                    .drain(..n)
                    .map(|r| BatchCertificate {
                        batch: r,
                        signers: SignerBitmap::new(4),
                        signatures: Vec::new(),
                    })
                    .collect();
                DagInput::Committed(vec![CommittedBlock {
                    height: Height(height),
                    id: Hash32::digest(&height.to_be_bytes()),
                    proposer: ValidatorId(1),
                    certs,
                }])
            }
            4 => {
                let b = byte(&mut data).unwrap_or(1);
                if b & 0x80 == 0 {
                    epoch = Epoch(epoch.0.saturating_add(u64::from(b % 3)));
                    DagInput::Tick
                } else {
                    // A validated proposal ordering references seen, each
                    // with the signers of a bitmap byte (prefetched now).
                    let bits = byte(&mut data).unwrap_or(0xff);
                    let signers: Vec<ValidatorId> = (0..4)
                        .filter(|i| bits >> i & 1 == 1)
                        .map(ValidatorId)
                        .collect();
                    DagInput::Proposed {
                        proposer: ValidatorId(u32::from(b % 4)),
                        batches: seen
                            .iter()
                            .take(usize::from(b & 0x3f))
                            .map(|r| (r.clone(), signers.clone()))
                            .collect(),
                    }
                }
            }
            5 => match jobs.pop() {
                Some((purpose, message)) => DagInput::Signed {
                    signature: sign_domain(&s.keys[0], ENV, kind_of(&purpose), &message),
                    purpose,
                },
                None => continue,
            },
            6 | 7 => {
                // A batch signed by Byzantine validator 3.
                let e = Epoch(u64::from(byte(&mut data).unwrap_or(0) % 4));
                let round = u64_of(&mut data).unwrap_or(1) % 32;
                let tx = take(&mut data, 4).unwrap_or(b"tx").to_vec();
                let batch = Batch {
                    epoch: e,
                    author: ValidatorId(3),
                    round,
                    txs: vec![tx],
                };
                let signature =
                    sign_domain(&s.keys[3], ENV, SignKind::Batch, &batch.digest().to_bytes());
                seen.push(batch.reference());
                let from = ValidatorId(if op % 8 == 6 { 3 } else { 2 });
                DagInput::Message {
                    from,
                    msg: DagMsg::Batch(SignedBatch { batch, signature }),
                }
            }
            _ => continue,
        };
        now += 1;
        for effect in dag.handle(Millis(now), epoch, input) {
            match effect {
                DagEffect::Sign(job) => jobs.push((job.purpose, job.request.message)),
                DagEffect::Broadcast(DagMsg::Batch(sb)) => seen.push(sb.batch.reference()),
                _ => {}
            }
        }
        jobs.truncate(8);
        seen.truncate(32);
        let fp = dag.footprint();
        if let Some(field) = fp.exceeds(&dag.footprint_limits()) {
            panic!("{field} over its bound: {fp:?}");
        }
    }
});

fn kind_of(purpose: &DagSignPurpose) -> SignKind {
    match purpose {
        DagSignPurpose::Batch { .. } => SignKind::Batch,
        DagSignPurpose::BatchAck { .. } => SignKind::BatchAck,
    }
}
