//! The handshake as a sans-I/O state machine (`docs/kemtls.md` "State
//! machine"): each step takes the peer's message bytes and returns the next
//! message to send, so it runs without sockets in tests and fuzzers.
//!
//! ```text
//! Initiator                                 Responder
//!   start ── M0 ClientHello ───────────────▶ on_client_hello   (MAC only, no state)
//!   on_cookie ◀─────────────── M1 Cookie ──┘
//!   on_cookie ── M2 KeyExchange ───────────▶ on_key_exchange   (cookie, replay, KEM)
//!   on_server_finished ◀──── M3 ServerFinished
//!   on_server_finished ── M4 ClientFinished ▶ on_client_finished → Session
//! ```

use std::net::IpAddr;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use qbind_core::crypto::{
    KemCiphertext, KemEncapsulationKey, KemKeyPair, kem_decapsulate, kem_encapsulate,
};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::cookie::{CookieJar, ReplayGuard};
use super::keys::{
    early_secrets, finished_keys, handshake_secret, hash, mac, tags_equal, traffic_secrets,
};
use super::messages::{
    ClientFinished, ClientHello, CookieReply, ENC_IDENTITY_LEN, KeyExchange, MAX_OFFERED_SUITES,
    PROTOCOL_VERSION, ServerFinished,
};
use crate::error::NetError;
use crate::identity::{AllowedPeers, KeyFingerprint, PeerPublic, StaticIdentity};
use crate::record::{CipherSuite, RecordOpener, RecordSealer};

/// What both sides agree on before a handshake.
#[derive(Clone, Debug)]
pub struct HandshakeConfig {
    /// Chain ID bound into the key schedule (`NetworkEnvironment::chain_id`).
    pub chain_id: u64,
    /// Acceptable record suites, most preferred first (1..=4).
    pub suites: Vec<CipherSuite>,
}

/// The initiator's random inputs (fresh OS randomness, or fixed in tests).
/// Wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct InitiatorRandomness {
    /// M0 nonce.
    pub nonce: [u8; 32],
    /// Ephemeral key-generation seed `d`.
    pub ephemeral_d: [u8; 32],
    /// Ephemeral key-generation seed `z`.
    pub ephemeral_z: [u8; 32],
    /// Encapsulation randomness for the responder's static key.
    pub encaps_static: [u8; 32],
}

impl InitiatorRandomness {
    /// Fresh randomness from the OS.
    #[must_use]
    pub fn random() -> Self {
        let mut r = InitiatorRandomness {
            nonce: [0; 32],
            ephemeral_d: [0; 32],
            ephemeral_z: [0; 32],
            encaps_static: [0; 32],
        };
        let mut rng = rand::rngs::OsRng;
        rng.fill_bytes(&mut r.nonce);
        rng.fill_bytes(&mut r.ephemeral_d);
        rng.fill_bytes(&mut r.ephemeral_z);
        rng.fill_bytes(&mut r.encaps_static);
        r
    }
}

/// The responder's random inputs. Wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ResponderRandomness {
    /// Encapsulation randomness for the initiator's ephemeral key.
    pub encaps_ephemeral: [u8; 32],
    /// Encapsulation randomness for the initiator's static key.
    pub encaps_static: [u8; 32],
}

impl ResponderRandomness {
    /// Fresh randomness from the OS.
    #[must_use]
    pub fn random() -> Self {
        let mut r = ResponderRandomness {
            encaps_ephemeral: [0; 32],
            encaps_static: [0; 32],
        };
        rand::rngs::OsRng.fill_bytes(&mut r.encaps_ephemeral);
        rand::rngs::OsRng.fill_bytes(&mut r.encaps_static);
        r
    }
}

/// An established session: the authenticated peer and one traffic secret per direction.
pub struct Session {
    /// Negotiated record suite.
    pub suite: CipherSuite,
    /// Secret of the direction we send in.
    pub send_secret: Zeroizing<[u8; 32]>,
    /// Secret of the direction we receive in.
    pub recv_secret: Zeroizing<[u8; 32]>,
    /// The authenticated peer.
    pub peer: PeerPublic,
    /// `H(M2 || M3 || M4)`, the same on both sides (channel binding).
    pub transcript_hash: [u8; 32],
}

impl Session {
    /// Build the record layer; both sides must use the same `rekey_after`.
    #[must_use]
    pub fn into_records(self, rekey_after: u64) -> (RecordSealer, RecordOpener) {
        (
            RecordSealer::new(self.suite, self.send_secret, rekey_after),
            RecordOpener::new(self.suite, self.recv_secret, rekey_after),
        )
    }
}

fn check_version(v: u16) -> Result<(), NetError> {
    if v == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(NetError::UnsupportedVersion(v))
    }
}

fn check_chain(ours: u64, theirs: u64) -> Result<(), NetError> {
    if ours == theirs {
        Ok(())
    } else {
        Err(NetError::ChainMismatch { ours, theirs })
    }
}

fn identity_aead(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
}

/// The initiator before M1.
pub struct Initiator {
    local: StaticIdentity,
    peer: PeerPublic,
    cfg: HandshakeConfig,
    rand: Zeroizing<[u8; 96]>,
    nonce: [u8; 32],
}

impl Initiator {
    /// Start a handshake with `peer`; returns the state and M0.
    ///
    /// # Errors
    /// [`NetError::InvalidField`] if `cfg.suites` is empty or too long.
    pub fn start(
        local: &StaticIdentity,
        peer: &PeerPublic,
        cfg: &HandshakeConfig,
        rand: InitiatorRandomness,
    ) -> Result<(Initiator, Vec<u8>), NetError> {
        if cfg.suites.is_empty() || cfg.suites.len() > MAX_OFFERED_SUITES {
            return Err(NetError::InvalidField {
                field: "suite count",
            });
        }
        let m0 = ClientHello {
            version: PROTOCOL_VERSION,
            chain_id: cfg.chain_id,
            client_nonce: rand.nonce,
        }
        .encode();
        let mut secret = Zeroizing::new([0u8; 96]);
        secret[..32].copy_from_slice(&rand.ephemeral_d);
        secret[32..64].copy_from_slice(&rand.ephemeral_z);
        secret[64..].copy_from_slice(&rand.encaps_static);
        Ok((
            Initiator {
                local: local.clone(),
                peer: peer.clone(),
                cfg: cfg.clone(),
                rand: secret,
                nonce: rand.nonce,
            },
            m0,
        ))
    }

    /// Process M1; returns the next state and M2.
    ///
    /// # Errors
    /// Decoding errors of [`CookieReply::decode`]; [`NetError::UnsupportedVersion`].
    pub fn on_cookie(self, m1: &[u8]) -> Result<(InitiatorAwaitFinished, Vec<u8>), NetError> {
        let reply = CookieReply::decode(m1)?;
        check_version(reply.version)?;
        let mut d = [0u8; 32];
        let mut z = [0u8; 32];
        let mut m = [0u8; 32];
        d.copy_from_slice(&self.rand[..32]);
        z.copy_from_slice(&self.rand[32..64]);
        m.copy_from_slice(&self.rand[64..]);
        let ephemeral = KemKeyPair::from_seed(&d, &z);
        let (ct_r, ss_r) = kem_encapsulate(self.peer.key(), &m);
        d.zeroize();
        z.zeroize();
        m.zeroize();
        let mut msg = KeyExchange {
            version: PROTOCOL_VERSION,
            chain_id: self.cfg.chain_id,
            client_nonce: self.nonce,
            cookie: reply.cookie,
            suites: self.cfg.suites.clone(),
            ephemeral_ek: ephemeral.encapsulation_key().as_bytes().to_vec(),
            ct_responder_static: ct_r.as_bytes().to_vec(),
            encrypted_identity: [0u8; ENC_IDENTITY_LEN],
        };
        let head_len = msg.encode().len() - ENC_IDENTITY_LEN;
        let mut m2 = msg.encode();
        m2.truncate(head_len);
        let th_m2 = hash(&[&m2]);
        let early = early_secrets(self.cfg.chain_id, ss_r.as_bytes(), &th_m2);
        let enc = identity_aead(&early.identity_key)
            .encrypt(
                (&[0u8; 12]).into(),
                Payload {
                    msg: &self.local.public().fingerprint().0,
                    aad: &th_m2,
                },
            )
            .map_err(|_| NetError::State("identity encryption failed"))?;
        msg.encrypted_identity.copy_from_slice(&enc);
        m2.extend_from_slice(&enc);
        Ok((
            InitiatorAwaitFinished {
                local: self.local,
                peer: self.peer,
                offered: self.cfg.suites,
                ephemeral,
                early_secret: early.early_secret,
                m2: m2.clone(),
            },
            m2,
        ))
    }
}

/// The initiator after sending M2.
pub struct InitiatorAwaitFinished {
    local: StaticIdentity,
    peer: PeerPublic,
    offered: Vec<CipherSuite>,
    ephemeral: KemKeyPair,
    early_secret: Zeroizing<[u8; 32]>,
    m2: Vec<u8>,
}

impl InitiatorAwaitFinished {
    /// The M2 bytes sent (for tests of replay and transcript binding).
    #[must_use]
    pub fn sent_key_exchange(&self) -> &[u8] {
        &self.m2
    }

    /// Process M3: authenticates the responder (only the holder of its
    /// static key can produce the confirmation). Returns M4 and the session.
    ///
    /// # Errors
    /// Decoding errors; [`NetError::NoCommonSuite`] if the suite was not
    /// offered; [`NetError::AuthenticationFailed`] if the confirmation fails.
    pub fn on_server_finished(self, m3: &[u8]) -> Result<(Vec<u8>, Session), NetError> {
        let msg = ServerFinished::decode(m3)?;
        if !self.offered.contains(&msg.suite) {
            return Err(NetError::NoCommonSuite);
        }
        let ct_e = KemCiphertext::from_bytes(&msg.ct_ephemeral)?;
        let ct_i = KemCiphertext::from_bytes(&msg.ct_initiator_static)?;
        let ss_e = kem_decapsulate(self.ephemeral.decapsulation_key(), &ct_e);
        let ss_i = kem_decapsulate(self.local.decapsulation_key(), &ct_i);
        let hs = handshake_secret(&self.early_secret, ss_e.as_bytes(), ss_i.as_bytes());
        let th3 = hash(&[&self.m2, &m3[..m3.len() - 32]]);
        let fin = finished_keys(&hs, &th3);
        if !tags_equal(&mac(fin.responder.as_ref(), &[&th3]), &msg.confirm) {
            return Err(NetError::AuthenticationFailed);
        }
        let th4 = hash(&[&self.m2, m3]);
        let m4 = ClientFinished {
            confirm: mac(fin.initiator.as_ref(), &[&th4]),
        }
        .encode();
        let traffic = traffic_secrets(&hs, &th4);
        Ok((
            m4.clone(),
            Session {
                suite: msg.suite,
                send_secret: traffic.initiator_to_responder,
                recv_secret: traffic.responder_to_initiator,
                peer: self.peer,
                transcript_hash: hash(&[&self.m2, m3, &m4]),
            },
        ))
    }
}

/// The responder: a static identity, a cookie jar and its suite preferences.
/// It keeps no per-initiator state until a valid cookie comes back.
pub struct Responder {
    local: StaticIdentity,
    cfg: HandshakeConfig,
    cookies: CookieJar,
}

impl Responder {
    /// A responder.
    #[must_use]
    pub fn new(local: &StaticIdentity, cfg: &HandshakeConfig, cookies: CookieJar) -> Self {
        Responder {
            local: local.clone(),
            cfg: cfg.clone(),
            cookies,
        }
    }

    /// The cookie jar (its lifetime sizes the replay guard).
    #[must_use]
    pub fn cookies(&self) -> &CookieJar {
        &self.cookies
    }

    /// Answer M0 from `ip` with M1. Costs one MAC; nothing is stored.
    ///
    /// # Errors
    /// Decoding errors; [`NetError::UnsupportedVersion`]; [`NetError::ChainMismatch`].
    pub fn on_client_hello(
        &self,
        ip: IpAddr,
        now_secs: u64,
        m0: &[u8],
    ) -> Result<Vec<u8>, NetError> {
        let hello = ClientHello::decode(m0)?;
        check_version(hello.version)?;
        check_chain(self.cfg.chain_id, hello.chain_id)?;
        Ok(CookieReply {
            version: PROTOCOL_VERSION,
            cookie: self
                .cookies
                .issue(ip, &hello.client_nonce, hello.chain_id, now_secs),
        }
        .encode())
    }

    /// Process M2 from `ip`. Order matters for DoS: decode, version, chain
    /// and cookie (cheap) before the replay set, and only then KEM work.
    /// Returns the pending state and M3.
    ///
    /// # Errors
    /// Decoding errors; [`NetError::BadCookie`]; [`NetError::Replay`];
    /// [`NetError::NoCommonSuite`];
    /// [`NetError::Crypto`] (invalid ephemeral key);
    /// [`NetError::AuthenticationFailed`] (identity does not decrypt: the
    /// initiator encapsulated to another static key); [`NetError::UnknownPeer`].
    pub fn on_key_exchange(
        &self,
        ip: IpAddr,
        now_secs: u64,
        m2: &[u8],
        allowed: &dyn AllowedPeers,
        replay: &mut ReplayGuard,
        rand: ResponderRandomness,
    ) -> Result<(ResponderAwaitFinished, Vec<u8>), NetError> {
        let msg = KeyExchange::decode(m2)?;
        check_version(msg.version)?;
        check_chain(self.cfg.chain_id, msg.chain_id)?;
        self.cookies
            .check(ip, &msg.client_nonce, msg.chain_id, now_secs, &msg.cookie)?;
        replay.check_and_insert(&msg.client_nonce, now_secs)?;
        let suite = msg
            .suites
            .iter()
            .copied()
            .find(|s| self.cfg.suites.contains(s))
            .ok_or(NetError::NoCommonSuite)?;
        let eph_ek = KemEncapsulationKey::from_bytes(&msg.ephemeral_ek)?;
        let ct_r = KemCiphertext::from_bytes(&msg.ct_responder_static)?;
        let ss_r = kem_decapsulate(self.local.decapsulation_key(), &ct_r);
        let m2_head = &m2[..m2.len() - ENC_IDENTITY_LEN];
        let th_m2 = hash(&[m2_head]);
        let early = early_secrets(self.cfg.chain_id, ss_r.as_bytes(), &th_m2);
        let fp = identity_aead(&early.identity_key)
            .decrypt(
                (&[0u8; 12]).into(),
                Payload {
                    msg: &msg.encrypted_identity,
                    aad: &th_m2,
                },
            )
            .map_err(|_| NetError::AuthenticationFailed)?;
        let fp: [u8; 32] = fp
            .as_slice()
            .try_into()
            .map_err(|_| NetError::InvalidField { field: "identity" })?;
        let peer = allowed
            .lookup(&KeyFingerprint(fp))
            .ok_or(NetError::UnknownPeer)?;
        let (ct_e, ss_e) = kem_encapsulate(&eph_ek, &rand.encaps_ephemeral);
        let (ct_i, ss_i) = kem_encapsulate(peer.key(), &rand.encaps_static);
        let hs = handshake_secret(&early.early_secret, ss_e.as_bytes(), ss_i.as_bytes());
        let mut reply = ServerFinished {
            suite,
            ct_ephemeral: ct_e.as_bytes().to_vec(),
            ct_initiator_static: ct_i.as_bytes().to_vec(),
            confirm: [0u8; 32],
        };
        let mut m3 = reply.encode();
        m3.truncate(m3.len() - 32);
        let th3 = hash(&[m2, &m3]);
        let fin = finished_keys(&hs, &th3);
        reply.confirm = mac(fin.responder.as_ref(), &[&th3]);
        m3.extend_from_slice(&reply.confirm);
        let th4 = hash(&[m2, &m3]);
        let traffic = traffic_secrets(&hs, &th4);
        Ok((
            ResponderAwaitFinished {
                suite,
                peer,
                initiator_finished: fin.initiator,
                traffic_i2r: traffic.initiator_to_responder,
                traffic_r2i: traffic.responder_to_initiator,
                th4,
                m2: m2.to_vec(),
                m3: m3.clone(),
            },
            m3,
        ))
    }
}

/// The responder after sending M3.
pub struct ResponderAwaitFinished {
    suite: CipherSuite,
    peer: PeerPublic,
    initiator_finished: Zeroizing<[u8; 32]>,
    traffic_i2r: Zeroizing<[u8; 32]>,
    traffic_r2i: Zeroizing<[u8; 32]>,
    th4: [u8; 32],
    m2: Vec<u8>,
    m3: Vec<u8>,
}

impl ResponderAwaitFinished {
    /// The initiator this handshake claims (not yet confirmed).
    #[must_use]
    pub fn claimed_peer(&self) -> &PeerPublic {
        &self.peer
    }

    /// Process M4: authenticates the initiator (its confirmation needs the
    /// shared secret encapsulated to its static key).
    ///
    /// # Errors
    /// Decoding errors; [`NetError::AuthenticationFailed`].
    pub fn on_client_finished(self, m4: &[u8]) -> Result<Session, NetError> {
        let msg = ClientFinished::decode(m4)?;
        if !tags_equal(
            &mac(self.initiator_finished.as_ref(), &[&self.th4]),
            &msg.confirm,
        ) {
            return Err(NetError::AuthenticationFailed);
        }
        Ok(Session {
            suite: self.suite,
            send_secret: self.traffic_r2i,
            recv_secret: self.traffic_i2r,
            peer: self.peer,
            transcript_hash: hash(&[&self.m2, &self.m3, m4]),
        })
    }
}
