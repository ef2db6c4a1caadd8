//! Monetary engine tables and properties (spec §3.6; runbook §8).

use proptest::prelude::*;
use qbind_core::execution::{Ledger, credit};
use qbind_core::monetary::*;
use qbind_core::types::AccountId;

fn cfg() -> MonetaryConfig {
    MonetaryConfig::mainnet()
}

/// A previous state in `phase` at `epoch - 1` with rate `r`.
fn prev(phase: MonetaryPhase, epoch: u64, r: u32) -> MonetaryEpochState {
    MonetaryEpochState {
        epoch: epoch - 1,
        phase,
        r_inf_annual_bps: r,
        ..MonetaryEpochState::genesis(&cfg())
    }
}

const SUPPLY: u128 = 1_000_000_000_000;

/// Inputs whose fee coverage (with EMA already at the given level) and stake
/// ratio are about the given bps, under the Bootstrap/Transition target.
fn state_with_ema(phase: MonetaryPhase, epoch: u64, coverage_bps: u32) -> MonetaryEpochState {
    let c = cfg();
    let budget = SUPPLY * u128::from(c.params(phase).r_target_bps) / 10_000;
    let ema = budget * u128::from(coverage_bps) / 10_000 / u128::from(c.epochs_per_year) + 1;
    MonetaryEpochState {
        ema_fees_per_epoch: ema,
        ..prev(phase, epoch, c.params(phase).r_target_bps)
    }
}

fn step(previous: &MonetaryEpochState, stake_bps: u32) -> MonetaryEpochState {
    let inputs = EpochInputs {
        fees: previous.ema_fees_per_epoch, // keeps the EMA where it is
        staked: SUPPLY * u128::from(stake_bps) / 10_000,
        total_supply: SUPPLY,
    };
    compute_epoch_state(&cfg(), previous, previous.epoch + 1, &inputs).unwrap()
}

#[test]
fn every_gate_table() {
    use MonetaryPhase::*;
    // (phase, epoch, coverage bps, stake bps, expected phase, recommendation)
    let t = TRANSITION_TIME_GATE_EPOCH;
    let m = MATURE_TIME_GATE_EPOCH;
    let rows = [
        (Bootstrap, t - 1, 2_000, 3_000, Bootstrap, true), // time gate closed
        (Bootstrap, t, 2_000, 3_000, Transition, true),    // all gates open
        (Bootstrap, t, 1_999, 3_000, Bootstrap, false),    // coverage short
        (Bootstrap, t, 2_000, 2_999, Bootstrap, false),    // stake short
        (Bootstrap, m, 9_000, 9_000, Transition, true),    // no skipping to Mature
        (Transition, m - 1, 5_000, 4_000, Transition, true),
        (Transition, m, 5_000, 4_000, Mature, true),
        (Transition, m, 4_999, 4_000, Transition, false),
        (Transition, m, 5_000, 3_999, Transition, false),
        (Mature, m + 10, 0, 0, Mature, false), // terminal, no way back
        (Mature, m + 10, 10_000, 10_000, Mature, false),
        (Transition, m, 0, 0, Transition, false), // no backward step
    ];
    for (i, (phase, epoch, cov, stake, want, rec)) in rows.into_iter().enumerate() {
        let (got, got_rec) = compute_phase_transition(&cfg(), phase, epoch, cov, stake);
        assert_eq!((got, got_rec), (want, rec), "row {i}");
    }
    // The same through the full epoch computation (coverage from the EMA).
    let s = step(&state_with_ema(Bootstrap, t, 2_100), 3_100);
    assert_eq!(s.phase, Transition);
    let s = step(&state_with_ema(Bootstrap, t, 1_900), 3_100);
    assert_eq!(s.phase, Bootstrap);
}

#[test]
fn floor_cap_then_delta_limit() {
    let c = cfg();
    let inputs = |fees: u128| EpochInputs {
        fees,
        staked: 0,
        total_supply: SUPPLY,
    };
    // Zero coverage: raw = target 850, within cap 900; previous 800 → +25 only.
    let s =
        compute_epoch_state(&c, &prev(MonetaryPhase::Bootstrap, 5, 800), 5, &inputs(0)).unwrap();
    assert_eq!(s.r_inf_annual_bps, 825);
    // Previous far above the cap: clamp to cap (900) first, then Δ from 1_200 → 1_175,
    // so the Δ-limit (applied last) wins over the cap.
    let s =
        compute_epoch_state(&c, &prev(MonetaryPhase::Bootstrap, 5, 1_200), 5, &inputs(0)).unwrap();
    assert_eq!(s.r_inf_annual_bps, 1_175);
    // Transition floor 500: full coverage gives raw 0 → floor 500; previous 520 → 510.
    let full = EpochInputs {
        fees: SUPPLY,
        staked: 0,
        total_supply: SUPPLY,
    };
    let s = compute_epoch_state(&c, &prev(MonetaryPhase::Transition, 5, 520), 5, &full).unwrap();
    assert_eq!(s.fee_coverage_bps, 10_000);
    assert_eq!(s.r_inf_annual_bps, 510);
    // Mature: Δ 5.
    let s = compute_epoch_state(&c, &prev(MonetaryPhase::Mature, 5, 400), 5, &full).unwrap();
    assert_eq!(s.r_inf_annual_bps, 395);
    // Previous within Δ of the clamped value: exactly the clamped value.
    let s =
        compute_epoch_state(&c, &prev(MonetaryPhase::Bootstrap, 5, 845), 5, &inputs(0)).unwrap();
    assert_eq!(s.r_inf_annual_bps, 850);
}

#[test]
fn ema_uses_the_phase_lambda() {
    let c = cfg();
    for (phase, lambda) in [
        (MonetaryPhase::Bootstrap, 700u128),
        (MonetaryPhase::Transition, 300),
        (MonetaryPhase::Mature, 150),
    ] {
        let mut p = prev(phase, 2, 500);
        p.ema_fees_per_epoch = 1_000_000;
        let inputs = EpochInputs {
            fees: 2_000_000,
            staked: 0,
            total_supply: SUPPLY,
        };
        let s = compute_epoch_state(&c, &p, 2, &inputs).unwrap();
        assert_eq!(
            s.ema_fees_per_epoch,
            (2_000_000 * lambda + 1_000_000 * (10_000 - lambda)) / 10_000
        );
    }
}

#[test]
fn shadow_changes_no_balance_and_active_does() {
    let c = cfg();
    let to = SeigniorageRecipients {
        validators: AccountId([1; 32]),
        treasury: AccountId([2; 32]),
        insurance: AccountId([3; 32]),
        community: AccountId([4; 32]),
    };
    let ledger = Ledger::genesis([(AccountId([9; 32]), SUPPLY)]).unwrap();
    let inputs = EpochInputs {
        fees: 0,
        staked: 0,
        total_supply: SUPPLY,
    };
    let s = compute_epoch_state(&c, &MonetaryEpochState::genesis(&c), 1, &inputs).unwrap();
    assert!(s.issuance > 0);
    assert!(s.credits(MonetaryMode::Shadow, &to).is_empty());
    let shadow = credit(&ledger, &s.credits(MonetaryMode::Shadow, &to)).unwrap();
    assert!(shadow.changes.is_empty());
    assert_eq!(shadow.root(), ledger.root());
    let mut active = ledger.clone();
    active
        .apply(&credit(&ledger, &s.credits(MonetaryMode::Active, &to)).unwrap())
        .unwrap();
    assert_eq!(active.get(&to.validators).balance, s.to_validators);
    assert_eq!(active.total_balance(), Some(SUPPLY + s.issuance));
    assert_eq!(active.summary_value().minted, SUPPLY + s.issuance);
    // Off computes nothing; Off is refused on MainNet.
    let off = MonetaryConfig {
        mode: MonetaryMode::Off,
        ..c
    };
    assert_eq!(
        compute_epoch_state(&off, &MonetaryEpochState::genesis(&off), 1, &inputs),
        Err(MonetaryError::Off)
    );
    assert_eq!(off.validate(true), Err(MonetaryError::OffOnMainnet));
    assert_eq!(MonetaryGauges::from_state(&s, MonetaryMode::Active).mode, 2);
}

#[test]
fn configuration_bounds_are_validated() {
    assert_eq!(cfg().validate(true), Ok(()));
    let mut c = cfg();
    c.split = SeigniorageSplit {
        validators_bps: 9_100,
        treasury_bps: 900,
        insurance_bps: 0,
        community_bps: 0,
    };
    assert!(matches!(
        c.validate(true),
        Err(MonetaryError::OutOfBounds {
            what: "validators_bps",
            ..
        })
    ));
    c.split = SeigniorageSplit {
        validators_bps: 7_500,
        treasury_bps: 1_000,
        insurance_bps: 1_000,
        community_bps: 400,
    };
    assert_eq!(
        c.validate(true),
        Err(MonetaryError::SplitNotWhole { sum: 9_900 })
    );
    let mut c = cfg();
    c.phases[0].ema_lambda_bps = 1_501;
    assert!(c.validate(true).is_err());
    let mut c = cfg();
    c.phases[2].ema_lambda_bps = 9;
    assert!(c.validate(true).is_err());
    let mut c = cfg();
    c.phases[1].floor_bps = 700;
    c.phases[1].r_target_bps = 600;
    assert!(matches!(
        c.validate(true),
        Err(MonetaryError::RateOrder { .. })
    ));
    assert_eq!(
        compute_epoch_state(
            &cfg(),
            &MonetaryEpochState::genesis(&cfg()),
            2,
            &EpochInputs::default()
        ),
        Err(MonetaryError::EpochNotNext {
            previous: 0,
            got: 2
        })
    );
}

#[test]
fn epochs_are_detected_by_height() {
    assert_eq!(epoch_for_height(0, 600), 0);
    assert_eq!(epoch_for_height(599, 600), 0);
    assert_eq!(epoch_for_height(600, 600), 1);
    assert!(!is_epoch_boundary(0, 600));
    assert!(!is_epoch_boundary(599, 600));
    assert!(is_epoch_boundary(1_200, 600));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Issuance over an epoch is exactly the chosen annual rate divided over
    /// the year (rounded down), the split adds up to it, the rate moves at
    /// most Δ, and the phase never goes back or skips.
    #[test]
    fn issuance_matches_the_chosen_rate(
        supply in 0u128..(u128::MAX / 2),
        fees in prop_oneof![0u128..1_000_000, any::<u128>()],
        staked_bps in 0u32..=10_000,
        prev_r in 0u32..2_000,
        phase in prop_oneof![Just(MonetaryPhase::Bootstrap), Just(MonetaryPhase::Transition), Just(MonetaryPhase::Mature)],
        epoch in 1u64..500_000,
        ema in any::<u128>(),
    ) {
        let c = cfg();
        let p = MonetaryEpochState { ema_fees_per_epoch: ema, ..prev(phase, epoch, prev_r) };
        let inputs = EpochInputs { fees, staked: mul_bps(supply, staked_bps), total_supply: supply };
        let s = compute_epoch_state(&c, &p, epoch, &inputs).unwrap();
        // Exact: floor(supply * r / (10_000 * epochs_per_year)), via big-int free check.
        let expected = mul_bps(supply, s.r_inf_annual_bps) / u128::from(c.epochs_per_year);
        prop_assert_eq!(s.issuance, expected);
        if supply < u128::MAX / 20_000 {
            prop_assert_eq!(s.issuance, supply * u128::from(s.r_inf_annual_bps) / (10_000 * u128::from(c.epochs_per_year)));
        }
        prop_assert_eq!(s.to_validators + s.to_treasury + s.to_insurance + s.to_community, s.issuance);
        prop_assert!(s.r_inf_annual_bps.abs_diff(prev_r) <= c.params(s.phase).max_delta_bps);
        prop_assert!(s.phase >= phase);
        prop_assert!(s.phase as u8 <= phase as u8 + 1);
        prop_assert!(s.fee_coverage_bps <= 10_000);
    }
}

// ---------------------------------------------------------------- encoding, storage, stake split

use qbind_core::codec::{Decode, Encode};
use qbind_core::traits::{Durability, MemoryBackend, Namespace, StateBackend, WriteBatch};

fn sample_state() -> MonetaryEpochState {
    MonetaryEpochState {
        epoch: 7,
        phase: MonetaryPhase::Transition,
        ema_fees_per_epoch: 0x0102_0304,
        fee_coverage_bps: 2_500,
        stake_ratio_bps: 6_000,
        r_target_annual_bps: 400,
        r_inf_annual_bps: 350,
        phase_recommendation: true,
        issuance: 1_000,
        to_validators: 820,
        to_treasury: 100,
        to_insurance: 50,
        to_community: 30,
    }
}

/// Golden bytes of the 122-byte layout documented in monetary/record.rs and
/// docs/wire-format.md; written field by field, independently of the encoder.
#[test]
fn golden_monetary_epoch_state() {
    let expected = [
        "0000000000000007",                 // epoch
        "01",                               // phase = Transition
        "00000000000000000000000001020304", // ema_fees_per_epoch
        "000009c4",                         // fee_coverage_bps = 2,500
        "00001770",                         // stake_ratio_bps = 6,000
        "00000190",                         // r_target_annual_bps = 400
        "0000015e",                         // r_inf_annual_bps = 350
        "01",                               // phase_recommendation
        "000000000000000000000000000003e8", // issuance = 1,000
        "00000000000000000000000000000334", // to_validators = 820
        "00000000000000000000000000000064", // to_treasury = 100
        "00000000000000000000000000000032", // to_insurance = 50
        "0000000000000000000000000000001e", // to_community = 30
    ]
    .concat();
    let bytes = sample_state().to_bytes();
    assert_eq!(bytes.len(), MONETARY_STATE_BYTES);
    assert_eq!(hex::encode(&bytes), expected);
    assert_eq!(MonetaryEpochState::from_bytes(&bytes), Ok(sample_state()));
}

#[test]
fn monetary_state_decoder_refuses_inconsistent_bytes() {
    let good = sample_state().to_bytes();
    let with = |offset: usize, byte: u8| {
        let mut b = good.clone();
        b[offset] = byte;
        MonetaryEpochState::from_bytes(&b)
    };
    assert!(with(8, 3).is_err(), "unknown phase");
    assert!(with(41, 2).is_err(), "recommendation flag not 0/1");
    assert!(with(27, 0xff).is_err(), "fee coverage above 10,000 bps");
    assert!(
        with(57, 0xe9).is_err(),
        "parts no longer add up to the issuance"
    );
    assert!(MonetaryEpochState::from_bytes(&good[..121]).is_err());
    let mut longer = good.clone();
    longer.push(0);
    assert!(MonetaryEpochState::from_bytes(&longer).is_err());
}

#[test]
fn monetary_state_is_stored_per_epoch_and_as_latest() {
    let store = MemoryBackend::new();
    assert_eq!(MonetaryEpochState::load_latest(&store), Ok(None));
    let first = sample_state();
    let second = MonetaryEpochState {
        epoch: 8,
        ..sample_state()
    };
    for s in [first, second] {
        let mut batch = WriteBatch::new();
        s.write_to(&mut batch);
        store.write(batch, Durability::Durable).unwrap();
    }
    assert_eq!(MonetaryEpochState::load_latest(&store), Ok(Some(second)));
    assert_eq!(MonetaryEpochState::load_epoch(&store, 7), Ok(Some(first)));
    assert_eq!(MonetaryEpochState::load_epoch(&store, 9), Ok(None));
    let mut corrupt = WriteBatch::new();
    corrupt.put(
        Namespace::Monetary,
        MONETARY_STATE_KEY.to_vec(),
        vec![1, 2, 3],
    );
    store.write(corrupt, Durability::Durable).unwrap();
    assert!(matches!(
        MonetaryEpochState::load_latest(&store),
        Err(qbind_core::traits::StorageError::Corruption { .. })
    ));
}

#[test]
fn validators_share_follows_stake() {
    let (a, b, c) = (AccountId([1; 32]), AccountId([2; 32]), AccountId([3; 32]));
    // 820 over stakes 1:1:2 -> 205, 205, 410.
    assert_eq!(
        split_by_stake(820, &[(a, 10), (b, 10), (c, 20)]),
        vec![(a, 205), (b, 205), (c, 410)]
    );
    // 10 over 1:1:1 -> the one left-over unit goes to the smallest id.
    assert_eq!(
        split_by_stake(10, &[(c, 1), (b, 1), (a, 1)]),
        vec![(a, 4), (b, 3), (c, 3)]
    );
    // Zero stake gets nothing; no stake at all splits nothing.
    assert_eq!(split_by_stake(5, &[(a, 0), (b, 3)]), vec![(b, 5)]);
    assert!(split_by_stake(5, &[(a, 0)]).is_empty());

    let pools = SeigniorageRecipients {
        validators: AccountId([9; 32]),
        treasury: AccountId([10; 32]),
        insurance: AccountId([11; 32]),
        community: AccountId([12; 32]),
    };
    let s = sample_state();
    let credits = s.credits_by_stake(MonetaryMode::Active, &pools, &[(a, 1), (b, 3)]);
    assert_eq!(
        credits,
        vec![
            (a, 205),
            (b, 615),
            (pools.treasury, 100),
            (pools.insurance, 50),
            (pools.community, 30)
        ]
    );
    assert_eq!(credits.iter().map(|c| c.1).sum::<u128>(), s.issuance);
    assert!(
        s.credits_by_stake(MonetaryMode::Shadow, &pools, &[(a, 1)])
            .is_empty()
    );
    let no_stake = s.credits_by_stake(MonetaryMode::Active, &pools, &[]);
    assert!(no_stake.contains(&(pools.validators, 820)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// The stake split adds up exactly, gives everyone their exact share
    /// within one unit, and does not depend on the order of the input.
    #[test]
    fn stake_split_is_exact_fair_and_order_free(
        total in prop_oneof![0u128..10_000, any::<u128>()],
        stakes in proptest::collection::vec((0u8..40, 0u64..1_000_000), 1..30),
    ) {
        let list: Vec<(AccountId, u64)> = stakes.iter().map(|(i, s)| (AccountId([*i; 32]), *s)).collect();
        let parts = split_by_stake(total, &list);
        let sum_stake: u128 = list.iter().map(|(_, s)| u128::from(*s)).sum();
        let given: u128 = parts.iter().map(|p| p.1).sum();
        if sum_stake == 0 || total == 0 {
            prop_assert!(parts.is_empty());
        } else {
            prop_assert_eq!(given, total);
        }
        let mut reversed = list.clone();
        reversed.reverse();
        prop_assert!(split_by_stake(total, &reversed) == parts, "order changed the split");
        if total < u128::MAX / 2u128.pow(60) && sum_stake > 0 {
            for (id, amount) in &parts {
                let stake: u128 = list.iter().filter(|(i, _)| i == id).map(|(_, s)| u128::from(*s)).sum();
                let exact_floor = total * stake / sum_stake;
                prop_assert!(*amount == exact_floor || *amount == exact_floor + 1);
            }
        }
    }

    /// Every state the engine computes round-trips through its encoding.
    #[test]
    fn computed_states_round_trip(
        supply in 0u128..(u128::MAX / 2),
        fees in any::<u128>(),
        staked_bps in 0u32..=10_000,
        epoch in 1u64..500_000,
    ) {
        let p = prev(MonetaryPhase::Bootstrap, epoch, 500);
        let inputs = EpochInputs { fees, staked: mul_bps(supply, staked_bps), total_supply: supply };
        let s = compute_epoch_state(&cfg(), &p, epoch, &inputs).unwrap();
        prop_assert_eq!(MonetaryEpochState::from_bytes(&s.to_bytes()), Ok(s));
    }
}
