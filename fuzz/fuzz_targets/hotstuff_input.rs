//! A fresh `HotStuff` for validator 0 of a 4-validator DevNet set, started,
//! then fed the input as one message from validator 1 (or as a malformed
//! message if it does not decode). Signing requests that follow are
//! answered with validator 0's key, as the engine would. Nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qbind_core::codec::CodecLimits;
use qbind_core::consensus::{ConsensusMsg, Effect, HotStuff, Input};
use qbind_core::signing::sign_domain;
use qbind_core::types::{Millis, ValidatorId};
use qbind_fuzz::{ENV, setup};

/// Rounds of answering signing requests (vote, then possibly a proposal).
const SIGN_ROUNDS: usize = 3;

fuzz_target!(|data: &[u8]| {
    let s = setup();
    let mut hs = HotStuff::new(
        s.config.clone(),
        ValidatorId(0),
        s.schedule.clone(),
        None,
        Vec::new(),
        Vec::new(),
    );
    let _ = hs.handle(Millis(0), Input::Start);
    let from = ValidatorId(1);
    let input = match ConsensusMsg::decode_message(data, &CodecLimits::default()) {
        Ok(msg) => Input::Message { from, msg },
        Err(error) => Input::Malformed { from, error },
    };
    let mut effects = hs.handle(Millis(1), input);
    for _ in 0..SIGN_ROUNDS {
        let jobs: Vec<_> = effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Sign(job) => Some(job),
                _ => None,
            })
            .collect();
        if jobs.is_empty() {
            break;
        }
        effects = Vec::new();
        for job in jobs {
            let signature = sign_domain(&s.keys[0], ENV, job.request.kind, &job.request.message);
            effects.extend(hs.handle(Millis(2), Input::Signed { job, signature }));
        }
    }
});
