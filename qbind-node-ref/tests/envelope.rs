//! `qbind-envelope` end to end: council thresholds (5 of 7 normal, 4 of 7
//! emergency), per-signature verdicts, tampering, binary hashes, malformed
//! input and the golden digest (runbook §11.6, docs/operator-tools.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use qbind_core::crypto::KeyPair;
use qbind_core::key_rotation::KeyRole;
use qbind_core::types::{Hash32, ValidatorId};
use qbind_signer::keystore::{self, KdfParams, KdfPolicy, Passphrase};
use serde_json::{Value, json};

const PASSPHRASE: &str = "council test passphrase";
const PASS_ENV: &str = "QBIND_COUNCIL_PASSPHRASE";
/// The cheapest parameters the production policy (which `sign` uses) accepts.
const KDF: KdfParams = KdfParams {
    memory_kib: 19 * 1024,
    iterations: 2,
    parallelism: 1,
};

fn seed(i: u8) -> [u8; 32] {
    [i.wrapping_add(0x40); 32]
}

/// Seven council members `council-0..6` and one outsider `mallory`, each
/// with an encrypted key file, and the council file.
struct Fixture {
    dir: tempfile::TempDir,
    council: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let pass = Passphrase::new(PASSPHRASE.to_string());
        let mut members = Vec::new();
        for i in 0..8u8 {
            let pk = keystore::write_key(
                &dir.path().join(Self::name(i)),
                ValidatorId(u32::from(i)),
                KeyRole::Consensus,
                &seed(i),
                &pass,
                KDF,
                &KdfPolicy::PRODUCTION,
            )
            .expect("write key");
            if i < 7 {
                members.push(json!({ "name": Self::name(i), "public_key": hex::encode(pk) }));
            }
        }
        let council = dir.path().join("council-pubkeys.json");
        std::fs::write(
            &council,
            serde_json::to_vec_pretty(&json!({ "format_version": 1, "members": members }))
                .expect("json"),
        )
        .expect("write council");
        Fixture { dir, council }
    }

    fn name(i: u8) -> String {
        if i < 7 {
            format!("council-{i}")
        } else {
            "mallory".to_string()
        }
    }

    fn key(&self, i: u8) -> PathBuf {
        keystore::key_path(&self.dir.path().join(Self::name(i)), KeyRole::Consensus)
    }

    /// An unsigned envelope file of `kind` with a hash for `binary` (as
    /// linux-x86_64).
    fn envelope(&self, file: &str, kind: &str, binary: &[u8]) -> PathBuf {
        let path = self.dir.path().join(file);
        let doc = json!({
            "format_version": 1,
            "network": "mainnet",
            "protocol_version": "1.3.0",
            "kind": kind,
            "activation": { "height": 2_000_000 },
            "binary_hashes": {
                "linux-x86_64": hex::encode(Hash32::digest(binary).as_bytes()),
                "linux-aarch64": "00".repeat(32),
            },
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&doc).expect("json")).expect("write");
        path
    }

    /// `signer` (key index) signs `envelope` as `member`.
    fn sign_as(&self, envelope: &Path, signer: u8, member: &str) -> Output {
        envelope_cmd()
            .arg("sign")
            .arg(envelope)
            .args(["--member", member])
            .arg("--key")
            .arg(self.key(signer))
            .env(PASS_ENV, PASSPHRASE)
            .output()
            .expect("run sign")
    }

    fn sign(&self, envelope: &Path, members: impl IntoIterator<Item = u8>) {
        for i in members {
            let out = self.sign_as(envelope, i, &Self::name(i));
            assert!(out.status.success(), "sign {i}: {}", text(&out));
        }
    }

    fn verify(&self, envelope: &Path, extra: &[&str]) -> (i32, Value) {
        let out = envelope_cmd()
            .arg("verify")
            .arg("--envelope")
            .arg(envelope)
            .arg("--council-keys")
            .arg(&self.council)
            .args(["--output", "json"])
            .args(extra)
            .output()
            .expect("run verify");
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("verify output is not JSON ({e}): {}", text(&out)));
        (out.status.code().expect("exit code"), report)
    }
}

fn envelope_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qbind-envelope"))
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn verdicts(report: &Value) -> Vec<String> {
    report["signatures"]["approvals"]
        .as_array()
        .expect("approvals")
        .iter()
        .map(|a| a["verdict"].as_str().expect("verdict").to_string())
        .collect()
}

fn edit(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut doc: Value = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    f(&mut doc);
    std::fs::write(path, serde_json::to_vec_pretty(&doc).expect("json")).expect("write");
}

#[test]
fn four_of_seven_fails_a_normal_upgrade_and_passes_an_emergency_one() {
    let fx = Fixture::new();
    let normal = fx.envelope("normal.json", "normal", b"bin");
    fx.sign(&normal, 0..4);
    let (code, report) = fx.verify(&normal, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["result"], "failed");
    assert_eq!(report["signatures"]["valid"], 4);
    assert_eq!(report["signatures"]["threshold"], 5);
    assert_eq!(verdicts(&report), vec!["valid"; 4]);

    let emergency = fx.envelope("emergency.json", "emergency", b"bin");
    fx.sign(&emergency, 0..4);
    let (code, report) = fx.verify(&emergency, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["result"], "passed");
    assert_eq!(report["signatures"]["threshold"], 4);

    // A fifth signature makes the normal upgrade pass.
    fx.sign(&normal, [6]);
    let (code, report) = fx.verify(&normal, &[]);
    assert_eq!(code, 0, "{report}");
    // The text report gives a verdict per signature.
    let out = envelope_cmd()
        .args(["verify", "--envelope"])
        .arg(&normal)
        .arg("--council-keys")
        .arg(&fx.council)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("signature #4 by council-6: valid"),
        "{stdout}"
    );
    assert!(stdout.contains("VERIFIED"), "{stdout}");
}

#[test]
fn a_duplicate_signer_is_counted_once() {
    let fx = Fixture::new();
    let path = fx.envelope("dup.json", "normal", b"bin");
    fx.sign(&path, 0..4);
    // `sign` refuses a second signature by the same member...
    let out = fx.sign_as(&path, 0, "council-0");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already signed"), "{}", text(&out));
    // ...but a hand-edited envelope can repeat one: it counts once.
    edit(&path, |doc| {
        let approvals = doc["council_approvals"].as_array_mut().expect("array");
        let first = approvals[0].clone();
        approvals.push(first);
    });
    let (code, report) = fx.verify(&path, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["signatures"]["valid"], 4);
    assert_eq!(
        verdicts(&report),
        vec!["valid", "valid", "valid", "valid", "duplicate"]
    );
}

/// An edit of a signed envelope.
type Tamper = fn(&mut Value);

#[test]
fn a_tampered_field_invalidates_every_signature() {
    let fx = Fixture::new();
    let signed = fx.envelope("signed.json", "normal", b"bin");
    fx.sign(&signed, 0..7);
    assert_eq!(fx.verify(&signed, &[]).0, 0);
    let tampers: [(&str, Tamper); 5] = [
        ("activation height", |d| {
            d["activation"]["height"] = json!(2_000_001)
        }),
        ("protocol version", |d| {
            d["protocol_version"] = json!("1.3.1")
        }),
        ("binary hash", |d| {
            d["binary_hashes"]["linux-aarch64"] = json!("11".repeat(32));
        }),
        ("kind", |d| d["kind"] = json!("emergency")),
        ("network", |d| d["network"] = json!("testnet")),
    ];
    for (what, tamper) in tampers {
        let path = fx.dir.path().join("tampered.json");
        std::fs::copy(&signed, &path).expect("copy");
        edit(&path, tamper);
        let (code, report) = fx.verify(&path, &[]);
        assert_eq!(code, 1, "{what}: {report}");
        assert_eq!(verdicts(&report), vec!["invalid"; 7], "{what}");
        assert_eq!(report["signatures"]["valid"], 0, "{what}");
    }
}

#[test]
fn unknown_signers_and_signatures_without_the_domain_tag_fail() {
    let fx = Fixture::new();
    let path = fx.envelope("e.json", "normal", b"bin");
    fx.sign(&path, 0..5);
    // An outsider under their own name, and under a member's name.
    assert!(fx.sign_as(&path, 7, "mallory").status.success());
    assert!(fx.sign_as(&path, 7, "council-6").status.success());
    let (code, report) = fx.verify(&path, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["signatures"]["valid"], 5);
    let v = verdicts(&report);
    assert_eq!(v[5], "unknown_signer");
    assert_eq!(v[6], "invalid");

    // Member 5's key over the bare digest (no domain tag, no chain ID).
    let clean = fx.envelope("clean.json", "normal", b"bin");
    fx.sign(&clean, 0..4);
    let digest = envelope_cmd()
        .arg("digest")
        .arg(&clean)
        .output()
        .expect("run");
    let digest = hex::decode(String::from_utf8_lossy(&digest.stdout).trim()).expect("hex");
    let raw = KeyPair::from_seed(&seed(5)).sign(&digest);
    edit(&clean, |doc| {
        doc["council_approvals"]
            .as_array_mut()
            .expect("array")
            .push(json!({ "member": "council-5", "signature": hex::encode(raw.as_bytes()) }));
    });
    let (code, report) = fx.verify(&clean, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(verdicts(&report)[4], "invalid");

    // `sign --council-keys` refuses a key that is not the member's.
    let out = envelope_cmd()
        .arg("sign")
        .arg(&clean)
        .args(["--member", "council-6", "--key"])
        .arg(fx.key(7))
        .arg("--council-keys")
        .arg(&fx.council)
        .env(PASS_ENV, PASSPHRASE)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("is not council-6's key"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_binary_hash_must_match_the_envelope() {
    let fx = Fixture::new();
    let binary = fx.dir.path().join("qbind-node");
    std::fs::write(&binary, b"release build 1.3.0").expect("write");
    let path = fx.envelope("e.json", "normal", b"release build 1.3.0");
    fx.sign(&path, 0..5);
    let bin = binary.to_str().expect("utf-8 path");
    let (code, report) = fx.verify(&path, &["--binary", bin, "--platform", "linux-x86_64"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["binary"]["matches"], true);

    std::fs::write(&binary, b"release build 1.3.0 (patched)").expect("write");
    let (code, report) = fx.verify(&path, &["--binary", bin, "--platform", "linux-x86_64"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["binary"]["matches"], false);
    assert!(
        report["failures"]
            .to_string()
            .contains("binary hash mismatch"),
        "{report}"
    );

    // A platform the envelope does not list fails too.
    let (code, report) = fx.verify(&path, &["--binary", bin, "--platform", "windows-x86_64"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report["failures"]
            .to_string()
            .contains("no hash for platform"),
        "{report}"
    );
}

#[test]
fn malformed_files_are_clear_errors_not_panics() {
    let fx = Fixture::new();
    let path = fx.dir.path().join("bad.json");
    let cases: [(&str, &str); 8] = [
        ("", "not a valid upgrade envelope"),
        ("{\"format_version\": 1, \"network\": ", "line 1 column"),
        ("[1, 2, 3]", "not a valid upgrade envelope"),
        (
            r#"{"format_version":1,"network":"mainnet","protocol_version":"1","kind":"normal","activation":{"height":1},"binary_hashes":{"linux-x86_64":"zz"}}"#,
            "not a SHA3-256 hash",
        ),
        (
            r#"{"format_version":2,"network":"mainnet","protocol_version":"1","kind":"normal","activation":{"height":1},"binary_hashes":{}}"#,
            "unsupported format_version 2",
        ),
        (
            r#"{"format_version":1,"network":"moonnet","protocol_version":"1","kind":"normal","activation":{"height":1},"binary_hashes":{}}"#,
            "unknown network",
        ),
        (
            r#"{"format_version":1,"network":"mainnet","protocol_version":"1","kind":"urgent","activation":{"height":1},"binary_hashes":{}}"#,
            "unknown variant `urgent`",
        ),
        (
            r#"{"format_version":1,"network":"mainnet","protocol_version":"1","kind":"normal","activation":{"height":1},"binary_hashes":{"a":"00"},"note":"unsigned"}"#,
            "unknown field `note`",
        ),
    ];
    for (body, expected) in cases {
        std::fs::write(&path, body).expect("write");
        for args in [&["digest"][..], &["inspect"][..]] {
            let out = envelope_cmd().args(args).arg(&path).output().expect("run");
            let all = text(&out);
            assert_eq!(out.status.code(), Some(2), "{body}: {all}");
            assert!(
                all.contains(expected),
                "{body}: expected {expected:?} in {all}"
            );
            assert!(!all.contains("panicked"), "{all}");
        }
        let out = envelope_cmd()
            .args(["verify", "--output", "json", "--envelope"])
            .arg(&path)
            .arg("--council-keys")
            .arg(&fx.council)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let report: Value = serde_json::from_slice(&out.stdout).expect("JSON error report");
        assert_eq!(report["result"], "error");
    }
    // A council file with six members, and a missing file.
    let ok = fx.envelope("ok.json", "normal", b"bin");
    edit(&fx.council, |doc| {
        doc["members"].as_array_mut().expect("members").pop();
    });
    let out = envelope_cmd()
        .args(["verify", "--envelope"])
        .arg(&ok)
        .arg("--council-keys")
        .arg(&fx.council)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("6 members listed, the council has 7"),
        "{}",
        text(&out)
    );
    let out = envelope_cmd()
        .args(["digest", "/nonexistent/envelope.json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // An oversized file is refused before parsing.
    std::fs::write(&path, vec![b' '; 2 * 1024 * 1024]).expect("write");
    let out = envelope_cmd()
        .arg("digest")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("larger than"), "{}", text(&out));
}

#[test]
fn the_digest_of_the_golden_envelope_is_frozen() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let golden = data.join("envelope-golden.json");
    let expected = std::fs::read_to_string(data.join("envelope-golden.digest")).expect("read");
    let out = envelope_cmd()
        .arg("digest")
        .arg(&golden)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected.trim());

    let out = envelope_cmd()
        .args(["digest", "--output", "json"])
        .arg(&golden)
        .output()
        .expect("run");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["digest"], expected.trim());

    // Approvals are not part of the digest; `inspect` shows it too.
    let fx = Fixture::new();
    let copy = fx.dir.path().join("golden.json");
    std::fs::copy(&golden, &copy).expect("copy");
    fx.sign(&copy, [0]);
    let out = envelope_cmd()
        .arg("inspect")
        .arg(&copy)
        .output()
        .expect("run");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(shown.contains(expected.trim()), "{shown}");
    assert!(shown.contains("activation height: 1500000"), "{shown}");
    assert!(shown.contains("#0 council-0"), "{shown}");
}
