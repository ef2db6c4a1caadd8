//! The keystore never leaks its secret: no 16-byte window of the seed (raw
//! or hex) appears in the key file, the .pub file, any Debug or error text,
//! or the log. (Its own test binary: `tracing`'s per-callsite interest cache
//! makes log capture unreliable while other tests log on other threads.)

use std::io::Write;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use qbind_core::key_rotation::KeyRole;
use qbind_core::types::{NetworkEnvironment, ValidatorId};
use qbind_signer::EncryptedFsSigner;
use qbind_signer::keystore::{self, KdfParams, KdfPolicy, Passphrase};

const ENV: NetworkEnvironment = NetworkEnvironment::Testnet;
const PASS: &str = "correct horse battery staple";

/// A `tracing` writer that keeps everything logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains_window(hay: &[u8], secret: &[u8], window: usize) -> Option<usize> {
    let hay_lower = hay.to_ascii_lowercase();
    secret.windows(window).position(|w| {
        hay.windows(window).any(|h| h == w) || {
            let hx = hex::encode(w).into_bytes();
            hay_lower.windows(hx.len()).any(|h| h == hx.as_slice())
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// No 16-byte window of the secret seed (raw or hex) appears in the
    /// keystore file, the .pub file, Debug output, errors, or the log.
    #[test]
    fn secret_never_reaches_file_debug_or_logs(seed in proptest::array::uniform32(any::<u8>())) {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .finish();
        let dir = tempfile::tempdir().unwrap();
        let ks = dir.path().join("ks");
        let mut observed: Vec<u8> = Vec::new();
        tracing::subscriber::with_default(subscriber, || {
            let pass = Passphrase::new(PASS.into());
            keystore::write_key(&ks, ValidatorId(1), KeyRole::Consensus, &seed, &pass,
                KdfParams::INSECURE_TEST, &KdfPolicy::INSECURE_TEST_ONLY).unwrap();
            let unlocked = keystore::load_key(&ks, Some(ValidatorId(1)), KeyRole::Consensus, &pass,
                &KdfPolicy::INSECURE_TEST_ONLY).unwrap();
            observed.extend_from_slice(format!("{unlocked:?} {pass:?}").as_bytes());
            let signer = EncryptedFsSigner::open(&ks, ValidatorId(1), KeyRole::Consensus, ENV, &pass,
                &KdfPolicy::INSECURE_TEST_ONLY).unwrap();
            observed.extend_from_slice(format!("{signer:?}").as_bytes());
            let err = keystore::load_key(&ks, None, KeyRole::Consensus,
                &Passphrase::new("wrong wrong wrong".into()), &KdfPolicy::INSECURE_TEST_ONLY).unwrap_err();
            observed.extend_from_slice(format!("{err} {err:?}").as_bytes());
        });
        observed.extend_from_slice(&std::fs::read(keystore::key_path(&ks, KeyRole::Consensus)).unwrap());
        observed.extend_from_slice(&std::fs::read(keystore::pub_path(&ks, KeyRole::Consensus)).unwrap());
        let logs = log.0.lock().unwrap().clone();
        prop_assert!(String::from_utf8_lossy(&logs).contains("unlocked keystore key"), "logging was not captured: {}", String::from_utf8_lossy(&logs));
        observed.extend_from_slice(&logs);
        prop_assert_eq!(contains_window(&observed, &seed, 16), None);
    }
}
