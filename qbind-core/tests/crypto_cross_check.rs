//! The two crypto backends must be interchangeable byte for byte (DESIGN.md, "Decisions already
//! taken"): same ML-DSA-44 public keys and deterministic signatures (FIPS 204), same ML-KEM-768
//! keys, ciphertexts and shared secrets (FIPS 203), and each accepts exactly what the other does.
//!
//! Runs only when both features `libcrux` and `rustcrypto` are enabled
//! (e.g. `cargo test -p qbind-core --all-features`); otherwise it shows up as one ignored test.

#[cfg(not(all(feature = "libcrux", feature = "rustcrypto")))]
#[test]
#[ignore = "needs both features `libcrux` and `rustcrypto`"]
fn backends_agree_needs_both_backends() {}

#[cfg(all(feature = "libcrux", feature = "rustcrypto"))]
mod both {

    use qbind_core::crypto::backend::{Libcrux, MlDsa44Backend, MlKem768Backend, RustCrypto};
    use qbind_core::crypto::{CryptoError, Signature};

    const ROUNDS: usize = 50;
    const BASE_SEED: u64 = 0x5142_4E44_4445_5600;

    /// SplitMix64: small, seedable, and independent of any RNG crate's version.
    struct TestRng(u64);

    impl TestRng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn fill(&mut self, out: &mut [u8]) {
            for chunk in out.chunks_mut(8) {
                let v = self.next_u64().to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
        }

        fn array<const N: usize>(&mut self) -> [u8; N] {
            let mut a = [0u8; N];
            self.fill(&mut a);
            a
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
    }

    fn flip_bit(bytes: &[u8], bit: usize) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[bit / 8] ^= 1 << (bit % 8);
        out
    }

    #[test]
    fn ml_dsa_44_backends_agree() {
        let mut rng = TestRng(BASE_SEED);
        let mut checked = 0;
        for round in 0..ROUNDS {
            let seed: [u8; 32] = rng.array();
            let ctx = format!("round {round}, seed {seed:02x?}");
            let len = rng.below(4097);
            let mut message = vec![0u8; len];
            rng.fill(&mut message);

            let (sk_l, pk_l) = Libcrux::dsa_keygen(&seed);
            let (sk_r, pk_r) = RustCrypto::dsa_keygen(&seed);
            assert_eq!(pk_l, pk_r, "{ctx}: public keys differ");
            assert_eq!(
                *Libcrux::expanded_signing_key_bytes(&sk_l),
                *RustCrypto::expanded_signing_key_bytes(&sk_r),
                "{ctx}: expanded signing keys differ"
            );

            let sig_l = Libcrux::sign(&sk_l, &message, &[]).unwrap();
            let sig_r = RustCrypto::sign(&sk_r, &message, &[]).unwrap();
            assert_eq!(
                sig_l, sig_r,
                "{ctx}: signatures differ (message length {len})"
            );

            let vk_l = Libcrux::prepare(&pk_l).unwrap();
            let vk_r = RustCrypto::prepare(&pk_r).unwrap();
            // Each verifies the other's signature.
            Libcrux::verify(&vk_l, &message, &[], &sig_r).unwrap();
            RustCrypto::verify(&vk_r, &message, &[], &sig_l).unwrap();

            // A flipped bit in the message fails on both.
            let bad_message = if message.is_empty() {
                vec![0u8]
            } else {
                flip_bit(&message, rng.below(message.len() * 8))
            };
            assert_eq!(
                Libcrux::verify(&vk_l, &bad_message, &[], &sig_l),
                Err(CryptoError::InvalidSignature),
                "{ctx}"
            );
            assert_eq!(
                RustCrypto::verify(&vk_r, &bad_message, &[], &sig_l),
                Err(CryptoError::InvalidSignature),
                "{ctx}"
            );

            // A flipped bit anywhere in the signature fails on both.
            let bit = rng.below(sig_l.as_bytes().len() * 8);
            let bad_sig = Signature::from_bytes(&flip_bit(sig_l.as_bytes(), bit)).unwrap();
            assert!(
                Libcrux::verify(&vk_l, &message, &[], &bad_sig).is_err(),
                "{ctx}: bit {bit}"
            );
            assert!(
                RustCrypto::verify(&vk_r, &message, &[], &bad_sig).is_err(),
                "{ctx}: bit {bit}"
            );

            // A non-empty context gives a different signature, identical across backends.
            let context = rng.array::<16>();
            let sig_ctx_l = Libcrux::sign(&sk_l, &message, &context).unwrap();
            assert_eq!(
                sig_ctx_l,
                RustCrypto::sign(&sk_r, &message, &context).unwrap(),
                "{ctx}"
            );
            assert_ne!(sig_ctx_l, sig_l, "{ctx}");
            assert!(
                RustCrypto::verify(&vk_r, &message, &[], &sig_ctx_l).is_err(),
                "{ctx}"
            );

            // Keys imported from skEncode sign identically on both backends.
            let imported =
                RustCrypto::signing_key_from_expanded(&Libcrux::expanded_signing_key_bytes(&sk_l))
                    .unwrap();
            assert_eq!(
                RustCrypto::sign(&imported, &message, &[]).unwrap(),
                sig_l,
                "{ctx}"
            );
            checked += 1;
        }
        assert_eq!(checked, ROUNDS);
    }

    #[test]
    fn ml_kem_768_backends_agree() {
        let mut rng = TestRng(BASE_SEED ^ 0x4B45_4D00);
        let mut checked = 0;
        for round in 0..ROUNDS {
            let d: [u8; 32] = rng.array();
            let z: [u8; 32] = rng.array();
            let m: [u8; 32] = rng.array();
            let ctx = format!("round {round}, d {d:02x?}");

            let (dk_l, ek_l) = Libcrux::kem_keygen(&d, &z);
            let (dk_r, ek_r) = RustCrypto::kem_keygen(&d, &z);
            let ek_bytes = Libcrux::encapsulation_key_bytes(&ek_l);
            let dk_bytes = Libcrux::decapsulation_key_bytes(&dk_l);
            assert_eq!(
                ek_bytes,
                RustCrypto::encapsulation_key_bytes(&ek_r),
                "{ctx}: ek differs"
            );
            assert_eq!(
                **dk_bytes,
                **RustCrypto::decapsulation_key_bytes(&dk_r),
                "{ctx}: dk differs"
            );

            let (ct_l, ss_l) = Libcrux::encapsulate(&ek_l, &m);
            let (ct_r, ss_r) = RustCrypto::encapsulate(&ek_r, &m);
            assert_eq!(ct_l, ct_r, "{ctx}: ciphertexts differ");
            assert_eq!(ss_l, ss_r, "{ctx}: shared secrets differ");

            // Each decapsulates the other's ciphertext, also after re-importing the keys from bytes.
            assert_eq!(Libcrux::decapsulate(&dk_l, &ct_r), ss_r, "{ctx}");
            assert_eq!(RustCrypto::decapsulate(&dk_r, &ct_l), ss_l, "{ctx}");
            let dk_l2 = Libcrux::decapsulation_key_from_bytes(&dk_bytes).unwrap();
            let dk_r2 = RustCrypto::decapsulation_key_from_bytes(&dk_bytes).unwrap();
            let ek_r2 = RustCrypto::encapsulation_key_from_bytes(&ek_bytes).unwrap();
            assert_eq!(RustCrypto::encapsulate(&ek_r2, &m).0, ct_l, "{ctx}");
            assert_eq!(Libcrux::decapsulate(&dk_l2, &ct_l), ss_l, "{ctx}");
            assert_eq!(RustCrypto::decapsulate(&dk_r2, &ct_l), ss_l, "{ctx}");

            // A flipped ciphertext bit gives the same implicit-rejection key on both, not the real one.
            let bit = rng.below(ct_l.len() * 8);
            let bad: [u8; 1088] = flip_bit(&ct_l[..], bit).try_into().unwrap();
            let rej_l = Libcrux::decapsulate(&dk_l, &bad);
            assert_eq!(
                rej_l,
                RustCrypto::decapsulate(&dk_r, &bad),
                "{ctx}: bit {bit}"
            );
            assert_ne!(rej_l, ss_l, "{ctx}: bit {bit}");

            // Both input checks refuse the same tampered keys.
            let bad_dk: [u8; 2400] = flip_bit(&dk_bytes[..], 8 * 2336 + rng.below(256))
                .try_into()
                .unwrap();
            assert!(
                Libcrux::decapsulation_key_from_bytes(&bad_dk).is_err(),
                "{ctx}"
            );
            assert!(
                RustCrypto::decapsulation_key_from_bytes(&bad_dk).is_err(),
                "{ctx}"
            );
            let mut bad_ek = *ek_bytes;
            let coeff = rng.below(768);
            set_coefficient(&mut bad_ek, coeff, 3329 + rng.below(4096 - 3329) as u16);
            assert!(
                Libcrux::encapsulation_key_from_bytes(&bad_ek).is_err(),
                "{ctx}: coeff {coeff}"
            );
            assert!(
                RustCrypto::encapsulation_key_from_bytes(&bad_ek).is_err(),
                "{ctx}: coeff {coeff}"
            );
            checked += 1;
        }
        assert_eq!(checked, ROUNDS);
    }

    /// Writes the 12-bit coefficient `index` of `t̂` (FIPS 203 ByteEncode₁₂, little-endian bits).
    fn set_coefficient(ek: &mut [u8; 1184], index: usize, value: u16) {
        let (byte, odd) = (index / 2 * 3, index % 2 == 1);
        if odd {
            ek[byte + 1] = (ek[byte + 1] & 0x0f) | ((value as u8 & 0x0f) << 4);
            ek[byte + 2] = (value >> 4) as u8;
        } else {
            ek[byte] = value as u8;
            ek[byte + 1] = (ek[byte + 1] & 0xf0) | ((value >> 8) as u8 & 0x0f);
        }
    }
}
