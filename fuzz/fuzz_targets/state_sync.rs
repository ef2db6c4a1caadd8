//! State-sync answers from untrusted peers (`qbind_core::state_sync`): the
//! first byte picks the decoder (commit proof, manifest, page, key log).
//! Decoding must never panic, whatever decodes must re-encode to the input,
//! and the checks a client runs next (`CommitProof::verify`,
//! `StateManifest::check`, `ChunkVerifier::feed`, `KeyLog::replay`) must
//! return a verdict, not panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_core::codec::{Decode, Encode};
use qbind_core::state_sync::{
    CertifiedState, ChunkVerifier, CommitProof, KeyLog, StateManifest, StatePage,
};
use qbind_core::types::{Epoch, Hash32};
use qbind_fuzz::{ENV, setup};

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => {
            if let Ok(proof) = CommitProof::from_bytes(bytes) {
                assert_eq!(proof.to_bytes(), bytes, "non-canonical proof accepted");
                let _ = proof.verify(ENV, &setup().schedule);
            }
        }
        1 => {
            if let Ok(m) = StateManifest::from_bytes(bytes) {
                assert_eq!(m.to_bytes(), bytes, "non-canonical manifest accepted");
                let certified = CertifiedState {
                    height: m.height,
                    block_id: m.block_id,
                    state_root: m.summary.root(),
                    epoch: Epoch(0),
                    key_log: qbind_core::system_tx::EMPTY_KEY_LOG,
                };
                let _ = m.check(&certified);
                for chunk in [0, 1, u32::MAX] {
                    let _ = ChunkVerifier::new(&m, chunk);
                }
            }
        }
        3 => {
            if let Ok(log) = KeyLog::from_bytes(bytes) {
                assert_eq!(log.to_bytes(), bytes, "non-canonical key log accepted");
                let _ = log.replay(ENV, &setup().schedule);
            }
        }
        _ => {
            if let Ok(page) = StatePage::from_bytes(bytes) {
                assert_eq!(page.to_bytes(), bytes, "non-canonical page accepted");
                let m = StateManifest {
                    height: page.height,
                    block_id: Hash32::ZERO,
                    summary: Default::default(),
                    prefix_bits: 1,
                    chunks: vec![Default::default(); 2],
                    monetary: Vec::new(),
                };
                if let Ok(mut v) = ChunkVerifier::new(&m, page.chunk.min(1)) {
                    let _ = v.feed(&page);
                    let _ = v.feed(&page);
                }
            }
        }
    }
});
