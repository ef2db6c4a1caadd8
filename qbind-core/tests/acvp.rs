//! NIST ACVP vectors for ML-DSA-44 (FIPS 204) and ML-KEM-768 (FIPS 203), run against every
//! enabled crypto backend and against the public API (which uses the default backend).
//!
//! The vectors are kept in the repository, in `tests/data/acvp/` (its README gives their
//! provenance, checksums and which interface each case uses). Nothing here reads outside the
//! repository and nothing can skip a file: a missing or short file fails the test.
//!
//! Coverage by group (every count is asserted, so an empty loop cannot pass):
//! - ML-DSA keyGen (25), sigVer/sigGen tgId 1 "external / pure" (15 + 15), ML-KEM keyGen (25)
//!   and encapDecap (55, including the §7.2/§7.3 key checks): every enabled backend, plus the
//!   public API for the cases it can express.
//! - ML-DSA tgId 8 "internal" (`Sign_internal` / `Verify_internal` on M'): needs feature `acvp`;
//!   then both backends (libcrux through its own `acvp` feature).
//! - ML-DSA tgId 7 "internal, external μ": needs feature `acvp` and backend `rustcrypto`;
//!   libcrux 0.0.11 has no external-μ interface, so RustCrypto alone covers it.
//!
//! Without those features the tgId 7/8 cases are counted and reported as not run.

use std::collections::BTreeMap;
use std::path::PathBuf;

#[cfg(feature = "libcrux")]
use qbind_core::crypto::backend::Libcrux;
#[cfg(feature = "rustcrypto")]
use qbind_core::crypto::backend::RustCrypto;
use qbind_core::crypto::backend::{MlDsa44Backend, MlKem768Backend};
use qbind_core::crypto::{
    KemCiphertext, KemDecapsulationKey, KemEncapsulationKey, KemKeyPair, KeyPair, PublicKey,
    Signature, kem_decapsulate, kem_encapsulate, verify,
};
use serde_json::Value;

const BACKENDS: usize = cfg!(feature = "libcrux") as usize + cfg!(feature = "rustcrypto") as usize;

/// Where the repository keeps its copy of the NIST files.
fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/acvp")
}

/// The `cases` array of one vector file, checked against the size its README promises.
fn load(name: &str, expected_cases: usize) -> Vec<Value> {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let cases = doc["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no cases"))
        .clone();
    assert_eq!(cases.len(), expected_cases, "{name}: case count");
    cases
}

fn bytes(case: &Value, field: &str) -> Vec<u8> {
    let s = case[field]
        .as_str()
        .unwrap_or_else(|| panic!("tcId {}: missing {field}", case["tcId"]));
    hex::decode(s).unwrap_or_else(|e| panic!("tcId {}: {field}: {e}", case["tcId"]))
}

fn array<const N: usize>(case: &Value, field: &str) -> [u8; N] {
    let v = bytes(case, field);
    v.as_slice().try_into().unwrap_or_else(|_| {
        panic!(
            "tcId {}: {field} has {} bytes, want {N}",
            case["tcId"],
            v.len()
        )
    })
}

fn tc(case: &Value) -> u64 {
    case["tcId"].as_u64().expect("tcId")
}

fn test_passed(case: &Value) -> bool {
    case["testPassed"].as_bool().expect("testPassed")
}

/// The three ML-DSA interfaces in the vectors (README: "Which ML-DSA interface to call").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DsaGroup {
    /// tgId 1: external / pure — `Sign(sk, M, ctx)`, `Verify(pk, M, σ, ctx)`.
    Pure,
    /// tgId 8: internal — `Sign_internal` / `Verify_internal` on M'.
    Internal,
    /// tgId 7: internal with external μ.
    ExternalMu,
}

fn dsa_group(case: &Value) -> DsaGroup {
    let interface = case["signatureInterface"].as_str();
    let pre_hash = case["preHash"].as_str();
    let external_mu = case["externalMu"].as_bool();
    match (interface, pre_hash, external_mu) {
        (Some("external"), Some("pure"), _) => DsaGroup::Pure,
        (Some("internal"), _, Some(false)) => DsaGroup::Internal,
        (Some("internal"), _, Some(true)) => DsaGroup::ExternalMu,
        other => panic!("tcId {}: unexpected ML-DSA interface {other:?}", tc(case)),
    }
}

fn split_dsa(cases: &[Value]) -> BTreeMap<DsaGroup, Vec<&Value>> {
    let mut groups: BTreeMap<DsaGroup, Vec<&Value>> = BTreeMap::new();
    for c in cases {
        groups.entry(dsa_group(c)).or_default().push(c);
    }
    for g in [DsaGroup::Pure, DsaGroup::Internal, DsaGroup::ExternalMu] {
        assert_eq!(groups.get(&g).map_or(0, Vec::len), 15, "{g:?} group size");
    }
    groups
}

// ---------------------------------------------------------------- ML-DSA-44

fn dsa_keygen<B: MlDsa44Backend>(cases: &[Value]) -> usize {
    for c in cases {
        let (sk, pk) = B::dsa_keygen(&array(c, "seed"));
        assert_eq!(
            pk.as_bytes(),
            bytes(c, "pk"),
            "{} keyGen tcId {}: pk",
            B::NAME,
            tc(c)
        );
        let sk_bytes = B::expanded_signing_key_bytes(&sk);
        assert_eq!(
            &sk_bytes[..],
            bytes(c, "sk"),
            "{} keyGen tcId {}: sk",
            B::NAME,
            tc(c)
        );
    }
    cases.len()
}

fn dsa_sigver_pure<B: MlDsa44Backend>(cases: &[&Value]) -> usize {
    for c in cases {
        let pk = PublicKey::from_bytes(&bytes(c, "pk")).expect("pk length");
        let vk = B::prepare(&pk).expect("prepare");
        let ok = Signature::from_bytes(&bytes(c, "signature"))
            .is_ok_and(|s| B::verify(&vk, &bytes(c, "message"), &bytes(c, "context"), &s).is_ok());
        assert_eq!(
            ok,
            test_passed(c),
            "{} sigVer pure tcId {} ({})",
            B::NAME,
            tc(c),
            c["reason"]
        );
    }
    cases.len()
}

fn dsa_siggen_pure<B: MlDsa44Backend>(cases: &[&Value]) -> usize {
    for c in cases {
        let sk = B::signing_key_from_expanded(&array(c, "sk")).expect("sk");
        let sig = B::sign(&sk, &bytes(c, "message"), &bytes(c, "context")).expect("sign");
        assert_eq!(
            sig.as_bytes(),
            bytes(c, "signature"),
            "{} sigGen pure tcId {}",
            B::NAME,
            tc(c)
        );
    }
    cases.len()
}

#[cfg(feature = "acvp")]
fn dsa_sigver_internal<B: qbind_core::crypto::backend::MlDsa44Internal>(cases: &[&Value]) -> usize {
    for c in cases {
        let pk = PublicKey::from_bytes(&bytes(c, "pk")).expect("pk length");
        let vk = B::prepare(&pk).expect("prepare");
        let ok = Signature::from_bytes(&bytes(c, "signature"))
            .is_ok_and(|s| B::verify_internal(&vk, &bytes(c, "message"), &s).is_ok());
        assert_eq!(
            ok,
            test_passed(c),
            "{} sigVer internal tcId {}",
            B::NAME,
            tc(c)
        );
    }
    cases.len()
}

#[cfg(feature = "acvp")]
fn dsa_siggen_internal<B: qbind_core::crypto::backend::MlDsa44Internal>(cases: &[&Value]) -> usize {
    for c in cases {
        let sk = B::signing_key_from_expanded(&array(c, "sk")).expect("sk");
        let sig = B::sign_internal(&sk, &bytes(c, "message")).expect("sign");
        assert_eq!(
            sig.as_bytes(),
            bytes(c, "signature"),
            "{} sigGen internal tcId {}",
            B::NAME,
            tc(c)
        );
    }
    cases.len()
}

#[cfg(all(feature = "acvp", feature = "rustcrypto"))]
fn dsa_sigver_mu<B: qbind_core::crypto::backend::MlDsa44ExternalMu>(cases: &[&Value]) -> usize {
    for c in cases {
        let pk = PublicKey::from_bytes(&bytes(c, "pk")).expect("pk length");
        let vk = B::prepare(&pk).expect("prepare");
        let ok = Signature::from_bytes(&bytes(c, "signature"))
            .is_ok_and(|s| B::verify_mu(&vk, &array(c, "mu"), &s).is_ok());
        assert_eq!(
            ok,
            test_passed(c),
            "{} sigVer external-mu tcId {}",
            B::NAME,
            tc(c)
        );
    }
    cases.len()
}

#[cfg(all(feature = "acvp", feature = "rustcrypto"))]
fn dsa_siggen_mu<B: qbind_core::crypto::backend::MlDsa44ExternalMu>(cases: &[&Value]) -> usize {
    for c in cases {
        let sk = B::signing_key_from_expanded(&array(c, "sk")).expect("sk");
        let sig = B::sign_mu(&sk, &array(c, "mu")).expect("sign");
        assert_eq!(
            sig.as_bytes(),
            bytes(c, "signature"),
            "{} sigGen external-mu tcId {}",
            B::NAME,
            tc(c)
        );
    }
    cases.len()
}

/// Reports, per group, how many backend runs happened; a group nobody ran is named loudly.
fn report(file: &str, runs: &BTreeMap<DsaGroup, Vec<&'static str>>) {
    for (group, backends) in runs {
        if backends.is_empty() {
            eprintln!(
                "{file}: {group:?} cases NOT RUN in this build (need features `acvp`{})",
                if *group == DsaGroup::ExternalMu {
                    " + `rustcrypto`"
                } else {
                    ""
                }
            );
        } else {
            eprintln!("{file}: {group:?} cases run on {backends:?}");
        }
    }
}

#[test]
fn ml_dsa_44_keygen() {
    let cases = load("ml-dsa-44-keygen.json", 25);
    let mut run = 0;
    #[cfg(feature = "libcrux")]
    {
        run += dsa_keygen::<Libcrux>(&cases);
    }
    #[cfg(feature = "rustcrypto")]
    {
        run += dsa_keygen::<RustCrypto>(&cases);
    }
    assert_eq!(run, 25 * BACKENDS);
    // Public API (default backend): the seed is ξ, so the public key must match too.
    for c in &cases {
        let kp = KeyPair::from_seed(&array(c, "seed"));
        assert_eq!(
            kp.public_key().as_bytes(),
            bytes(c, "pk"),
            "KeyPair tcId {}",
            tc(c)
        );
        run += 1;
    }
    assert_eq!(run, 25 * (BACKENDS + 1));
}

/// One group of signature cases run on one backend.
type GroupRun = fn(&[&Value]) -> usize;

/// The signature runners of one backend for one operation (sigVer or
/// sigGen): a row of the table the tests below drive.
struct DsaRunners {
    backend: &'static str,
    pure: GroupRun,
    /// `Sign_internal` / `Verify_internal` (feature `acvp`).
    internal: Option<GroupRun>,
    /// External μ (feature `acvp`, RustCrypto only).
    external_mu: Option<GroupRun>,
}

/// Which signature operation a table is for.
#[derive(Clone, Copy)]
enum SigOp {
    Verify,
    Generate,
}

/// Every enabled backend's runners for `op`.
fn dsa_runners(op: SigOp) -> Vec<DsaRunners> {
    #[allow(unused_mut)]
    let mut rows = Vec::new();
    #[cfg(feature = "libcrux")]
    {
        #[cfg(feature = "acvp")]
        let internal: Option<GroupRun> = Some(match op {
            SigOp::Verify => dsa_sigver_internal::<Libcrux>,
            SigOp::Generate => dsa_siggen_internal::<Libcrux>,
        });
        #[cfg(not(feature = "acvp"))]
        let internal: Option<GroupRun> = None;
        rows.push(DsaRunners {
            backend: "libcrux",
            pure: match op {
                SigOp::Verify => dsa_sigver_pure::<Libcrux>,
                SigOp::Generate => dsa_siggen_pure::<Libcrux>,
            },
            internal,
            external_mu: None,
        });
    }
    #[cfg(feature = "rustcrypto")]
    {
        #[cfg(feature = "acvp")]
        let (internal, external_mu): (Option<GroupRun>, Option<GroupRun>) = match op {
            SigOp::Verify => (
                Some(dsa_sigver_internal::<RustCrypto>),
                Some(dsa_sigver_mu::<RustCrypto>),
            ),
            SigOp::Generate => (
                Some(dsa_siggen_internal::<RustCrypto>),
                Some(dsa_siggen_mu::<RustCrypto>),
            ),
        };
        #[cfg(not(feature = "acvp"))]
        let (internal, external_mu): (Option<GroupRun>, Option<GroupRun>) = (None, None);
        rows.push(DsaRunners {
            backend: "rustcrypto",
            pure: match op {
                SigOp::Verify => dsa_sigver_pure::<RustCrypto>,
                SigOp::Generate => dsa_siggen_pure::<RustCrypto>,
            },
            internal,
            external_mu,
        });
    }
    let _ = op;
    rows
}

/// Run `file`'s three groups on every backend of the table for `op`,
/// asserting 15 cases per run and the expected number of runs per group.
fn run_dsa_table(file: &str, op: SigOp, groups: &BTreeMap<DsaGroup, Vec<&Value>>) {
    let mut runs: BTreeMap<DsaGroup, Vec<&'static str>> =
        [DsaGroup::Pure, DsaGroup::Internal, DsaGroup::ExternalMu]
            .map(|g| (g, vec![]))
            .into();
    for row in dsa_runners(op) {
        let columns = [
            (DsaGroup::Pure, Some(row.pure)),
            (DsaGroup::Internal, row.internal),
            (DsaGroup::ExternalMu, row.external_mu),
        ];
        for (group, run) in columns {
            if let Some(run) = run {
                assert_eq!(
                    run(&groups[&group]),
                    15,
                    "{file} {group:?} on {}",
                    row.backend
                );
                runs.entry(group).or_default().push(row.backend);
            }
        }
    }
    assert_eq!(runs[&DsaGroup::Pure].len(), BACKENDS);
    assert_eq!(
        runs[&DsaGroup::Internal].len(),
        if cfg!(feature = "acvp") { BACKENDS } else { 0 }
    );
    let mu_expected = cfg!(all(feature = "acvp", feature = "rustcrypto")) as usize;
    assert_eq!(runs[&DsaGroup::ExternalMu].len(), mu_expected);
    report(file, &runs);
}

#[test]
fn ml_dsa_44_sigver() {
    let cases = load("ml-dsa-44-sigver.json", 45);
    let groups = split_dsa(&cases);
    run_dsa_table("sigVer", SigOp::Verify, &groups);
    // Public API: `verify` has an empty context, so only cases with an empty context apply;
    // with a non-empty one, a valid signature must *fail* under the empty context.
    let mut public = 0;
    for c in &groups[&DsaGroup::Pure] {
        let pk = PublicKey::from_bytes(&bytes(c, "pk")).unwrap();
        let sig = Signature::from_bytes(&bytes(c, "signature")).unwrap();
        let ok = verify(&pk, &bytes(c, "message"), &sig).is_ok();
        let expected = test_passed(c) && bytes(c, "context").is_empty();
        assert_eq!(ok, expected, "public verify tcId {}", tc(c));
        public += 1;
    }
    assert_eq!(public, 15);
}

#[test]
fn ml_dsa_44_siggen() {
    let cases = load("ml-dsa-44-siggen.json", 45);
    run_dsa_table("sigGen", SigOp::Generate, &split_dsa(&cases));
}

// ---------------------------------------------------------------- ML-KEM-768

fn kem_keygen<B: MlKem768Backend>(cases: &[Value]) -> usize {
    for c in cases {
        let (dk, ek) = B::kem_keygen(&array(c, "d"), &array(c, "z"));
        assert_eq!(
            &B::encapsulation_key_bytes(&ek)[..],
            bytes(c, "ek"),
            "{} tcId {}",
            B::NAME,
            tc(c)
        );
        assert_eq!(
            &B::decapsulation_key_bytes(&dk)[..],
            bytes(c, "dk"),
            "{} tcId {}",
            B::NAME,
            tc(c)
        );
    }
    cases.len()
}

/// Runs one encapDecap case on backend `B`; returns the `function` it exercised.
fn kem_case<B: MlKem768Backend>(c: &Value) -> &'static str {
    let id = (B::NAME, tc(c));
    match c["function"].as_str() {
        Some("encapsulation") => {
            let ek = B::encapsulation_key_from_bytes(&array(c, "ek")).expect("ek check");
            let (ct, k) = B::encapsulate(&ek, &array(c, "m"));
            assert_eq!(&ct[..], bytes(c, "c"), "{id:?} c");
            assert_eq!(&k[..], bytes(c, "k"), "{id:?} k");
            let dk = B::decapsulation_key_from_bytes(&array(c, "dk")).expect("dk check");
            assert_eq!(
                &B::decapsulate(&dk, &ct)[..],
                bytes(c, "k"),
                "{id:?} decaps"
            );
            "encapsulation"
        }
        Some("decapsulation") => {
            let dk = B::decapsulation_key_from_bytes(&array(c, "dk")).expect("dk check");
            assert_eq!(
                &B::decapsulate(&dk, &array(c, "c"))[..],
                bytes(c, "k"),
                "{id:?} ({})",
                c["reason"]
            );
            "decapsulation"
        }
        Some("decapsulationKeyCheck") => {
            let ok = B::decapsulation_key_from_bytes(&array(c, "dk")).is_ok();
            assert_eq!(ok, test_passed(c), "{id:?} dk check ({})", c["reason"]);
            "decapsulationKeyCheck"
        }
        Some("encapsulationKeyCheck") => {
            let ok = B::encapsulation_key_from_bytes(&array(c, "ek")).is_ok();
            assert_eq!(ok, test_passed(c), "{id:?} ek check ({})", c["reason"]);
            "encapsulationKeyCheck"
        }
        other => panic!("tcId {}: unknown function {other:?}", tc(c)),
    }
}

fn kem_encap_decap<B: MlKem768Backend>(cases: &[Value]) -> BTreeMap<&'static str, usize> {
    let mut seen = BTreeMap::new();
    for c in cases {
        *seen.entry(kem_case::<B>(c)).or_insert(0) += 1;
    }
    seen
}

/// The same case through the public API (default backend).
fn kem_case_public(c: &Value) {
    let id = tc(c);
    match c["function"].as_str() {
        Some("encapsulation") => {
            let ek = KemEncapsulationKey::from_bytes(&bytes(c, "ek")).expect("ek check");
            let (ct, k) = kem_encapsulate(&ek, &array(c, "m"));
            assert_eq!(ct.as_bytes(), bytes(c, "c"), "public tcId {id}");
            assert_eq!(&k.as_bytes()[..], bytes(c, "k"), "public tcId {id}");
        }
        Some("decapsulation") => {
            let dk = KemDecapsulationKey::from_bytes(&bytes(c, "dk")).expect("dk check");
            let ct = KemCiphertext::from_bytes(&bytes(c, "c")).expect("ct");
            assert_eq!(
                &kem_decapsulate(&dk, &ct).as_bytes()[..],
                bytes(c, "k"),
                "public tcId {id}"
            );
        }
        Some("decapsulationKeyCheck") => {
            let ok = KemDecapsulationKey::from_bytes(&bytes(c, "dk")).is_ok();
            assert_eq!(ok, test_passed(c), "public tcId {id}");
        }
        Some("encapsulationKeyCheck") => {
            let ok = KemEncapsulationKey::from_bytes(&bytes(c, "ek")).is_ok();
            assert_eq!(ok, test_passed(c), "public tcId {id}");
        }
        other => panic!("tcId {id}: unknown function {other:?}"),
    }
}

#[test]
fn ml_kem_768_keygen() {
    let cases = load("ml-kem-768-keygen.json", 25);
    let mut run = 0;
    #[cfg(feature = "libcrux")]
    {
        run += kem_keygen::<Libcrux>(&cases);
    }
    #[cfg(feature = "rustcrypto")]
    {
        run += kem_keygen::<RustCrypto>(&cases);
    }
    assert_eq!(run, 25 * BACKENDS);
    for c in &cases {
        let kp = KemKeyPair::from_seed(&array(c, "d"), &array(c, "z"));
        assert_eq!(
            kp.encapsulation_key().as_bytes(),
            bytes(c, "ek"),
            "public tcId {}",
            tc(c)
        );
        assert_eq!(
            kp.decapsulation_key().as_bytes(),
            bytes(c, "dk"),
            "public tcId {}",
            tc(c)
        );
        run += 1;
    }
    assert_eq!(run, 25 * (BACKENDS + 1));
}

#[test]
fn ml_kem_768_encap_decap() {
    let cases = load("ml-kem-768-encapdecap.json", 55);
    let expected: BTreeMap<&'static str, usize> = [
        ("decapsulation", 10),
        ("decapsulationKeyCheck", 10),
        ("encapsulation", 25),
        ("encapsulationKeyCheck", 10),
    ]
    .into();
    let mut backends = 0;
    #[cfg(feature = "libcrux")]
    {
        assert_eq!(kem_encap_decap::<Libcrux>(&cases), expected, "libcrux");
        backends += 1;
    }
    #[cfg(feature = "rustcrypto")]
    {
        assert_eq!(
            kem_encap_decap::<RustCrypto>(&cases),
            expected,
            "rustcrypto"
        );
        backends += 1;
    }
    assert_eq!(backends, BACKENDS);
    cases.iter().for_each(kem_case_public);
}
