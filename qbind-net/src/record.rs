//! The record layer: AEAD-protected records with per-direction keys, counter
//! nonces and in-band rekeying (issue #4 "Transport"; `docs/kemtls.md`
//! "Records").
//!
//! A record's plaintext is `payload || content_type (1)` (the type last, as
//! in TLS 1.3, so the receiver strips it without moving the payload); the nonce is
//! `0x00000000 || counter (u64 BE)`; the associated data is the record's
//! frame length (u32 BE) so a record cannot be moved into a frame of another
//! size. Before the send counter reaches the rekey threshold the sender emits
//! a `KeyUpdate` record and both sides replace that direction's secret with
//! `HKDF-Expand(secret, "rekey")`, so no (key, nonce) pair is ever used twice.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use zeroize::Zeroizing;

use crate::error::NetError;
use crate::handshake::keys::expand_label;

/// AEAD tag length of both suites.
pub const TAG_LEN: usize = 16;
/// Record overhead: content type byte plus tag.
pub const RECORD_OVERHEAD: usize = 1 + TAG_LEN;
/// Highest rekey threshold accepted: far below 2^64, and small enough that a
/// single AES-GCM key never protects more than 2^32 records.
pub const MAX_REKEY_AFTER: u64 = 1 << 32;

/// A record protection suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// AES-256-GCM (default: hardware AES on x86-64/aarch64).
    Aes256Gcm,
    /// ChaCha20-Poly1305 (for CPUs without AES instructions).
    ChaCha20Poly1305,
}

impl CipherSuite {
    /// Wire byte.
    #[must_use]
    pub fn to_byte(self) -> u8 {
        match self {
            CipherSuite::Aes256Gcm => 0x01,
            CipherSuite::ChaCha20Poly1305 => 0x02,
        }
    }

    /// From a wire byte.
    #[must_use]
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(CipherSuite::Aes256Gcm),
            0x02 => Some(CipherSuite::ChaCha20Poly1305),
            _ => None,
        }
    }
}

/// What a record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    /// Application bytes.
    Data,
    /// The sender switched this direction to the next key after this record.
    KeyUpdate,
}

impl ContentType {
    fn to_byte(self) -> u8 {
        match self {
            ContentType::Data => 0,
            ContentType::KeyUpdate => 1,
        }
    }
}

enum Aead2 {
    Aes(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

impl Aead2 {
    fn new(suite: CipherSuite, secret: &[u8; 32]) -> Self {
        let key = expand_label(secret, b"key", &[]);
        match suite {
            CipherSuite::Aes256Gcm => Aead2::Aes(Box::new(Aes256Gcm::new((&*key).into()))),
            CipherSuite::ChaCha20Poly1305 => {
                Aead2::ChaCha(Box::new(ChaCha20Poly1305::new((&*key).into())))
            }
        }
    }

    /// Encrypt `buf` in place and return the tag.
    fn seal_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], NetError> {
        match self {
            Aead2::Aes(c) => c.encrypt_in_place_detached(nonce.into(), aad, buf),
            Aead2::ChaCha(c) => c.encrypt_in_place_detached(nonce.into(), aad, buf),
        }
        .map(Into::into)
        .map_err(|_| NetError::State("AEAD seal failed"))
    }

    /// Decrypt `buf` in place after checking `tag`.
    fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> Result<(), NetError> {
        match self {
            Aead2::Aes(c) => c.decrypt_in_place_detached(nonce.into(), aad, buf, tag.into()),
            Aead2::ChaCha(c) => c.decrypt_in_place_detached(nonce.into(), aad, buf, tag.into()),
        }
        .map_err(|_| NetError::AuthenticationFailed)
    }
}

fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

/// One direction's key state (shared by sealer and opener).
struct Direction {
    suite: CipherSuite,
    secret: Zeroizing<[u8; 32]>,
    aead: Aead2,
    counter: u64,
    rekey_after: u64,
    epoch: u64,
}

impl Direction {
    fn new(suite: CipherSuite, secret: Zeroizing<[u8; 32]>, rekey_after: u64) -> Self {
        let aead = Aead2::new(suite, &secret);
        Direction {
            suite,
            secret,
            aead,
            counter: 0,
            rekey_after: rekey_after.clamp(2, MAX_REKEY_AFTER),
            epoch: 0,
        }
    }

    fn ratchet(&mut self) {
        self.secret = expand_label(&self.secret, b"rekey", &[]);
        self.aead = Aead2::new(self.suite, &self.secret);
        self.counter = 0;
        self.epoch += 1;
    }
}

/// Seals outgoing records of one direction.
pub struct RecordSealer {
    dir: Direction,
}

impl RecordSealer {
    /// A sealer from a traffic secret. `rekey_after` (clamped to `2..=2^32`)
    /// is how many records one key protects, the `KeyUpdate` included.
    #[must_use]
    pub fn new(suite: CipherSuite, secret: Zeroizing<[u8; 32]>, rekey_after: u64) -> Self {
        RecordSealer {
            dir: Direction::new(suite, secret, rekey_after),
        }
    }

    /// How many times this direction has been rekeyed.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.dir.epoch
    }

    /// Change how many records one key protects (clamped to `2..=2^32`).
    #[must_use]
    pub fn with_rekey_after(mut self, rekey_after: u64) -> Self {
        self.dir.rekey_after = rekey_after.clamp(2, MAX_REKEY_AFTER);
        self
    }

    fn seal_one(
        &mut self,
        ct: ContentType,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), NetError> {
        let body_len = payload.len() + RECORD_OVERHEAD;
        let len = u32::try_from(body_len).map_err(|_| NetError::FrameTooLarge {
            len: body_len,
            max: u32::MAX as usize,
        })?;
        let header = len.to_be_bytes();
        out.reserve(4 + body_len);
        out.extend_from_slice(&header);
        let start = out.len();
        out.extend_from_slice(payload);
        out.push(ct.to_byte());
        let tag =
            self.dir
                .aead
                .seal_in_place(&nonce(self.dir.counter), &header, &mut out[start..])?;
        out.extend_from_slice(&tag);
        self.dir.counter += 1;
        Ok(())
    }

    /// Append the frames (length prefix + record) carrying `payload` to
    /// `out`: one data record, preceded by a `KeyUpdate` record when this
    /// key's budget is used up.
    ///
    /// # Errors
    /// [`NetError::FrameTooLarge`] if the record would not fit a u32 length.
    pub fn seal_data(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), NetError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Network);
        if self.dir.counter + 1 >= self.dir.rekey_after {
            self.seal_one(ContentType::KeyUpdate, &[], out)?;
            self.dir.ratchet();
        }
        self.seal_one(ContentType::Data, payload, out)
    }
}

/// Opens incoming records of one direction.
pub struct RecordOpener {
    dir: Direction,
}

impl RecordOpener {
    /// An opener from a traffic secret, with the sender's `rekey_after`.
    #[must_use]
    pub fn new(suite: CipherSuite, secret: Zeroizing<[u8; 32]>, rekey_after: u64) -> Self {
        RecordOpener {
            dir: Direction::new(suite, secret, rekey_after),
        }
    }

    /// How many times this direction has been rekeyed.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.dir.epoch
    }

    /// Open one frame body (the bytes after the u32 length). Returns the
    /// payload of a data record, or `None` after processing a `KeyUpdate`.
    ///
    /// # Errors
    /// [`NetError::AuthenticationFailed`] for a forged, modified, replayed or
    /// reordered record; [`NetError::CounterExhausted`] if the peer exceeded
    /// the key's budget without rekeying; [`NetError::InvalidField`] for an
    /// unknown content type or a non-empty `KeyUpdate`.
    pub fn open(&mut self, body: &[u8]) -> Result<Option<Vec<u8>>, NetError> {
        self.open_owned(body.to_vec())
    }

    /// [`RecordOpener::open`] on an owned frame body, decrypting in place
    /// (no copy of the payload).
    ///
    /// # Errors
    /// As [`RecordOpener::open`].
    pub fn open_owned(&mut self, mut body: Vec<u8>) -> Result<Option<Vec<u8>>, NetError> {
        let _cpu = qbind_core::cpu::Section::enter(qbind_core::cpu::Activity::Network);
        if body.len() < RECORD_OVERHEAD {
            return Err(NetError::Truncated {
                what: "record",
                need: RECORD_OVERHEAD,
                have: body.len(),
            });
        }
        if self.dir.counter >= self.dir.rekey_after {
            return Err(NetError::CounterExhausted);
        }
        let len = u32::try_from(body.len()).map_err(|_| NetError::FrameTooLarge {
            len: body.len(),
            max: u32::MAX as usize,
        })?;
        let split = body.len() - TAG_LEN;
        let (pt, tag) = body.split_at_mut(split);
        self.dir
            .aead
            .open_in_place(&nonce(self.dir.counter), &len.to_be_bytes(), pt, tag)?;
        self.dir.counter += 1;
        body.truncate(split);
        match body.pop() {
            Some(0) => Ok(Some(body)),
            Some(1) if body.is_empty() => {
                self.dir.ratchet();
                Ok(None)
            }
            Some(1) => Err(NetError::InvalidField {
                field: "key update payload",
            }),
            _ => Err(NetError::InvalidField {
                field: "content type",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(suite: CipherSuite, rekey: u64) -> (RecordSealer, RecordOpener) {
        let s = Zeroizing::new([7u8; 32]);
        (
            RecordSealer::new(suite, s.clone(), rekey),
            RecordOpener::new(suite, s, rekey),
        )
    }

    fn frames(buf: &[u8]) -> Vec<&[u8]> {
        let mut v = Vec::new();
        let mut rest = buf;
        while !rest.is_empty() {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            v.push(&rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
        v
    }

    #[test]
    fn round_trip_both_suites_and_tamper() {
        for suite in [CipherSuite::Aes256Gcm, CipherSuite::ChaCha20Poly1305] {
            let (mut s, mut o) = pair(suite, 1 << 20);
            let mut out = Vec::new();
            s.seal_data(b"hello", &mut out).unwrap();
            s.seal_data(b"world", &mut out).unwrap();
            let f = frames(&out);
            assert_eq!(f.len(), 2);
            // Reordering fails: the counter nonce does not match.
            let mut o2 = pair(suite, 1 << 20).1;
            assert!(matches!(o2.open(f[1]), Err(NetError::AuthenticationFailed)));
            let mut bad = f[0].to_vec();
            bad[3] ^= 1;
            let mut o3 = pair(suite, 1 << 20).1;
            assert!(matches!(o3.open(&bad), Err(NetError::AuthenticationFailed)));
            assert_eq!(o.open(f[0]).unwrap().unwrap(), b"hello");
            assert_eq!(o.open(f[1]).unwrap().unwrap(), b"world");
            // Replay of the first record fails.
            assert!(matches!(o.open(f[0]), Err(NetError::AuthenticationFailed)));
        }
    }

    #[test]
    fn golden_record_bytes() {
        let (mut s, _) = pair(CipherSuite::Aes256Gcm, 1 << 20);
        let mut out = Vec::new();
        s.seal_data(b"qbind", &mut out).unwrap();
        assert_eq!(&out[..4], &[0, 0, 0, 22], "5 payload + 1 type + 16 tag");
        assert_eq!(hex::encode(&out), GOLDEN_AES);
        let (mut s, _) = pair(CipherSuite::ChaCha20Poly1305, 1 << 20);
        let mut out = Vec::new();
        s.seal_data(b"qbind", &mut out).unwrap();
        assert_eq!(hex::encode(&out), GOLDEN_CHACHA);
    }

    const GOLDEN_AES: &str = "00000016ce12d76eb5ed9ca3512183f67f64241043e4da72fe1d";
    const GOLDEN_CHACHA: &str = "00000016a9729cdaf71c556c1f774dd647a84662f214a8d09962";

    #[test]
    fn rekey_happens_before_budget_and_keys_change() {
        let (mut s, mut o) = pair(CipherSuite::Aes256Gcm, 4);
        let mut out = Vec::new();
        for i in 0..10u8 {
            s.seal_data(&[i], &mut out).unwrap();
        }
        assert!(s.epoch() >= 3, "epoch {}", s.epoch());
        let mut got = Vec::new();
        for f in frames(&out) {
            if let Some(p) = o.open(f).unwrap() {
                got.push(p[0]);
            }
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(o.epoch(), s.epoch());
    }

    #[test]
    fn receiver_refuses_a_sender_that_never_rekeys() {
        // A sender with a larger budget than the receiver expects.
        let secret = Zeroizing::new([9u8; 32]);
        let mut s = RecordSealer::new(CipherSuite::Aes256Gcm, secret.clone(), 100);
        let mut o = RecordOpener::new(CipherSuite::Aes256Gcm, secret, 3);
        let mut out = Vec::new();
        for _ in 0..4 {
            s.seal_data(b"x", &mut out).unwrap();
        }
        let f = frames(&out);
        for fr in &f[..3] {
            o.open(fr).unwrap();
        }
        assert!(matches!(o.open(f[3]), Err(NetError::CounterExhausted)));
    }
}
