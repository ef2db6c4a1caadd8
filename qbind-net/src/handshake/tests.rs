//! Sans-I/O tests of the handshake: round trip, golden bytes, tampering,
//! wrong keys, replay, cookies, and forward secrecy via the key schedule.

use std::net::IpAddr;

use qbind_core::crypto::{KemCiphertext, KemKeyPair, kem_decapsulate};

use super::cookie::{CookieJar, ReplayGuard};
use super::keys::{hash, traffic_from_transcript};
use super::machine::*;
use super::messages::*;
use crate::error::NetError;
use crate::identity::{PeerPublic, StaticIdentity};
use crate::record::CipherSuite;

const CHAIN: u64 = 0x5142_4E44_4445_5600;

fn ident(n: u8) -> StaticIdentity {
    StaticIdentity::from_seed(&[n; 32], &[n.wrapping_add(100); 32])
}

fn cfg() -> HandshakeConfig {
    HandshakeConfig {
        chain_id: CHAIN,
        suites: vec![CipherSuite::Aes256Gcm, CipherSuite::ChaCha20Poly1305],
    }
}

fn irand(n: u8) -> InitiatorRandomness {
    InitiatorRandomness {
        nonce: [n; 32],
        ephemeral_d: [n ^ 1; 32],
        ephemeral_z: [n ^ 2; 32],
        encaps_static: [n ^ 3; 32],
    }
}

fn rrand(n: u8) -> ResponderRandomness {
    ResponderRandomness {
        encaps_ephemeral: [n ^ 4; 32],
        encaps_static: [n ^ 5; 32],
    }
}

fn ip() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

struct Run {
    m: [Vec<u8>; 5],
    init: Session,
    resp: Session,
}

fn run(i: &StaticIdentity, r: &StaticIdentity, n: u8) -> Run {
    let responder = Responder::new(r, &cfg(), CookieJar::with_secret([42u8; 32], 30));
    let allowed = vec![i.public().clone()];
    let mut replay = ReplayGuard::new(16, 60);
    let (st, m0) = Initiator::start(i, r.public(), &cfg(), irand(n)).unwrap();
    let m1 = responder.on_client_hello(ip(), 100, &m0).unwrap();
    let (st, m2) = st.on_cookie(&m1).unwrap();
    let (rst, m3) = responder
        .on_key_exchange(ip(), 100, &m2, &allowed, &mut replay, rrand(n))
        .unwrap();
    let (m4, init) = st.on_server_finished(&m3).unwrap();
    let resp = rst.on_client_finished(&m4).unwrap();
    Run {
        m: [m0, m1, m2, m3, m4],
        init,
        resp,
    }
}

#[test]
fn handshake_agrees_on_keys_and_peers() {
    let (i, r) = (ident(1), ident(2));
    let out = run(&i, &r, 7);
    assert_eq!(*out.init.send_secret, *out.resp.recv_secret);
    assert_eq!(*out.init.recv_secret, *out.resp.send_secret);
    assert_ne!(
        *out.init.send_secret, *out.init.recv_secret,
        "one key per direction"
    );
    assert_eq!(out.init.peer, *r.public());
    assert_eq!(out.resp.peer, *i.public());
    assert_eq!(out.init.transcript_hash, out.resp.transcript_hash);
    assert_eq!(out.init.suite, CipherSuite::Aes256Gcm);
    let sizes: Vec<usize> = out.m.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![43, 35, 2398, 2210, 33]);
}

fn hex_hash(b: &[u8]) -> String {
    hex::encode(hash(&[b]))
}

#[test]
fn golden_bytes_of_every_handshake_message() {
    let out = run(&ident(1), &ident(2), 7);
    // M0 and M1 in full; M2/M3 by layout prefix and hash (2.4 KB each).
    assert_eq!(
        hex::encode(&out.m[0]),
        format!("01000151424e4444455600{}", "07".repeat(32))
    );
    assert_eq!(&out.m[1][..3], &[TYPE_COOKIE, 0, 1]);
    assert_eq!(
        &out.m[2][..11],
        &[3, 0, 1, 0x51, 0x42, 0x4e, 0x44, 0x44, 0x45, 0x56, 0]
    );
    assert_eq!(&out.m[2][75..78], &[2, 1, 2], "suite list");
    assert_eq!(&out.m[3][..2], &[TYPE_SERVER_FINISHED, 1]);
    assert_eq!(out.m[4][0], TYPE_CLIENT_FINISHED);
    let got: Vec<String> = out.m.iter().map(|m| hex_hash(m)).collect();
    let want = GOLDEN_HASHES;
    assert_eq!(
        got, want,
        "handshake encodings changed: update docs/kemtls.md and these vectors"
    );
}

const GOLDEN_HASHES: [&str; 5] = [
    "ae57ad716458d282ba79f3060a9d1f726a55ac1a63857f0382b282f73af18520",
    "42633e709a2ffcf036a815f417947c998a68074dee34a266867be4c31d2f60d6",
    "9984934455706140a1d78cc2ba025eb12f73e4f4d167b577d240baa4c44b17d6",
    "31718f68c10306f8478db01a17aaca1a89e1c9369ee3e4e998e4cea3806d7026",
    "eece5bcff61f953f5b342732a1f8b85d22252e63d09a4d7b090e131340e23ad9",
];

#[test]
fn decoders_round_trip_and_reject_trailing_and_truncated() {
    let out = run(&ident(1), &ident(2), 9);
    assert_eq!(ClientHello::decode(&out.m[0]).unwrap().encode(), out.m[0]);
    assert_eq!(CookieReply::decode(&out.m[1]).unwrap().encode(), out.m[1]);
    assert_eq!(KeyExchange::decode(&out.m[2]).unwrap().encode(), out.m[2]);
    assert_eq!(
        ServerFinished::decode(&out.m[3]).unwrap().encode(),
        out.m[3]
    );
    assert_eq!(
        ClientFinished::decode(&out.m[4]).unwrap().encode(),
        out.m[4]
    );
    for m in &out.m {
        let mut long = m.clone();
        long.push(0);
        let short = &m[..m.len() - 1];
        let dec = |b: &[u8]| -> Result<(), NetError> {
            match b.first() {
                Some(1) => ClientHello::decode(b).map(|_| ()),
                Some(2) => CookieReply::decode(b).map(|_| ()),
                Some(3) => KeyExchange::decode(b).map(|_| ()),
                Some(4) => ServerFinished::decode(b).map(|_| ()),
                _ => ClientFinished::decode(b).map(|_| ()),
            }
        };
        assert!(matches!(
            dec(&long),
            Err(NetError::TrailingBytes { count: 1, .. })
        ));
        assert!(matches!(dec(short), Err(NetError::Truncated { .. })));
    }
    assert!(matches!(
        ClientHello::decode(&out.m[1]),
        Err(NetError::UnexpectedMessage {
            expected: 1,
            got: 2
        })
    ));
    let mut dup = out.m[2].clone();
    dup[77] = 1; // suites [1, 1]
    assert!(matches!(
        KeyExchange::decode(&dup),
        Err(NetError::InvalidField { .. })
    ));
    let mut zero = out.m[2].clone();
    zero[75] = 0;
    assert!(KeyExchange::decode(&zero).is_err());
}

#[test]
fn wrong_responder_static_key_is_rejected_by_both_sides() {
    // The initiator expects identity 3, but 2 answers (or a MITM holding another key).
    let (i, real, expected) = (ident(1), ident(2), ident(3));
    let responder = Responder::new(&real, &cfg(), CookieJar::with_secret([1u8; 32], 30));
    let mut replay = ReplayGuard::new(16, 60);
    let (st, m0) = Initiator::start(&i, expected.public(), &cfg(), irand(1)).unwrap();
    let m1 = responder.on_client_hello(ip(), 0, &m0).unwrap();
    let (_st, m2) = st.on_cookie(&m1).unwrap();
    let allowed = vec![i.public().clone()];
    let r = responder.on_key_exchange(ip(), 0, &m2, &allowed, &mut replay, rrand(1));
    assert!(matches!(r, Err(NetError::AuthenticationFailed)));
}

#[test]
fn wrong_initiator_static_key_fails_confirmation() {
    // The responder believes the initiator holds `claimed`'s key (it is
    // allowed), but the initiator only holds `i`; the identity it encrypts
    // names `claimed` because the attacker edits the allowed lookup result.
    let (i, r, other) = (ident(1), ident(2), ident(4));
    struct Liar(PeerPublic);
    impl crate::identity::AllowedPeers for Liar {
        fn lookup(&self, _: &crate::identity::KeyFingerprint) -> Option<PeerPublic> {
            Some(self.0.clone())
        }
    }
    let responder = Responder::new(&r, &cfg(), CookieJar::with_secret([1u8; 32], 30));
    let mut replay = ReplayGuard::new(16, 60);
    let (st, m0) = Initiator::start(&i, r.public(), &cfg(), irand(2)).unwrap();
    let m1 = responder.on_client_hello(ip(), 0, &m0).unwrap();
    let (st, m2) = st.on_cookie(&m1).unwrap();
    let (rst, m3) = responder
        .on_key_exchange(
            ip(),
            0,
            &m2,
            &Liar(other.public().clone()),
            &mut replay,
            rrand(2),
        )
        .unwrap();
    // The initiator cannot decapsulate to `other`'s key, so its keys differ.
    assert!(matches!(
        st.on_server_finished(&m3),
        Err(NetError::AuthenticationFailed)
    ));
    // And a forged M4 does not pass the responder.
    assert!(matches!(
        rst.on_client_finished(&ClientFinished { confirm: [0u8; 32] }.encode()),
        Err(NetError::AuthenticationFailed)
    ));
}

#[test]
fn unknown_initiator_is_refused() {
    let (i, r) = (ident(1), ident(2));
    let responder = Responder::new(&r, &cfg(), CookieJar::with_secret([1u8; 32], 30));
    let mut replay = ReplayGuard::new(16, 60);
    let (st, m0) = Initiator::start(&i, r.public(), &cfg(), irand(3)).unwrap();
    let m1 = responder.on_client_hello(ip(), 0, &m0).unwrap();
    let (_, m2) = st.on_cookie(&m1).unwrap();
    let allowed = vec![ident(5).public().clone()];
    assert!(matches!(
        responder.on_key_exchange(ip(), 0, &m2, &allowed, &mut replay, rrand(3)),
        Err(NetError::UnknownPeer)
    ));
}

#[test]
fn every_single_bit_flip_in_m2_m3_m4_is_rejected() {
    let (i, r) = (ident(1), ident(2));
    let allowed = vec![i.public().clone()];
    // Flip one bit at a spread of positions of each message; each run must fail.
    for which in 2..=4usize {
        let len = run(&i, &r, 11).m[which].len();
        for pos in (0..len).step_by(len / 23 + 1).chain([len - 1]) {
            let responder = Responder::new(&r, &cfg(), CookieJar::with_secret([42u8; 32], 30));
            let mut replay = ReplayGuard::new(16, 60);
            let (st, m0) = Initiator::start(&i, r.public(), &cfg(), irand(11)).unwrap();
            let m1 = responder.on_client_hello(ip(), 100, &m0).unwrap();
            let (st, mut m2) = st.on_cookie(&m1).unwrap();
            if which == 2 {
                m2[pos] ^= 0x01;
            }
            let Ok((rst, mut m3)) =
                responder.on_key_exchange(ip(), 100, &m2, &allowed, &mut replay, rrand(11))
            else {
                continue;
            };
            if which == 3 {
                m3[pos] ^= 0x01;
            }
            let Ok((mut m4, _)) = st.on_server_finished(&m3) else {
                continue;
            };
            if which == 4 {
                m4[pos] ^= 0x01;
            }
            assert!(
                rst.on_client_finished(&m4).is_err(),
                "flip in M{which} at byte {pos} went undetected"
            );
        }
    }
}

#[test]
fn replayed_key_exchange_is_refused_and_cookies_are_checked() {
    let (i, r) = (ident(1), ident(2));
    let allowed = vec![i.public().clone()];
    let responder = Responder::new(&r, &cfg(), CookieJar::with_secret([3u8; 32], 30));
    let mut replay = ReplayGuard::new(16, 60);
    let (st, m0) = Initiator::start(&i, r.public(), &cfg(), irand(4)).unwrap();
    let m1 = responder.on_client_hello(ip(), 0, &m0).unwrap();
    let (_, m2) = st.on_cookie(&m1).unwrap();
    responder
        .on_key_exchange(ip(), 0, &m2, &allowed, &mut replay, rrand(4))
        .unwrap();
    assert!(matches!(
        responder.on_key_exchange(ip(), 1, &m2, &allowed, &mut replay, rrand(4)),
        Err(NetError::Replay)
    ));
    // Same M2 from another address: the cookie is bound to the first one.
    let mut fresh = ReplayGuard::new(16, 60);
    assert!(matches!(
        responder.on_key_exchange(
            "127.0.0.9".parse().unwrap(),
            1,
            &m2,
            &allowed,
            &mut fresh,
            rrand(4)
        ),
        Err(NetError::BadCookie)
    ));
    // After the cookie expired.
    assert!(matches!(
        responder.on_key_exchange(ip(), 61, &m2, &allowed, &mut fresh, rrand(4)),
        Err(NetError::BadCookie)
    ));
    // A key exchange with a made-up cookie costs no KEM work and is refused.
    let mut forged = KeyExchange::decode(&m2).unwrap();
    forged.cookie = [0u8; 32];
    forged.client_nonce = [99u8; 32];
    assert!(matches!(
        responder.on_key_exchange(ip(), 0, &forged.encode(), &allowed, &mut fresh, rrand(4)),
        Err(NetError::BadCookie)
    ));
    assert!(fresh.is_empty(), "nothing stored for cookie-less attempts");
}

#[test]
fn version_chain_and_suite_mismatches_are_typed() {
    let (i, r) = (ident(1), ident(2));
    let responder = Responder::new(&r, &cfg(), CookieJar::with_secret([3u8; 32], 30));
    let mut hello = ClientHello::decode(
        &Initiator::start(&i, r.public(), &cfg(), irand(5))
            .unwrap()
            .1,
    )
    .unwrap();
    hello.version = 2;
    assert!(matches!(
        responder.on_client_hello(ip(), 0, &hello.encode()),
        Err(NetError::UnsupportedVersion(2))
    ));
    hello.version = PROTOCOL_VERSION;
    hello.chain_id = 1;
    assert!(matches!(
        responder.on_client_hello(ip(), 0, &hello.encode()),
        Err(NetError::ChainMismatch { .. })
    ));
    let chacha_only = HandshakeConfig {
        chain_id: CHAIN,
        suites: vec![CipherSuite::ChaCha20Poly1305],
    };
    let aes_only = HandshakeConfig {
        chain_id: CHAIN,
        suites: vec![CipherSuite::Aes256Gcm],
    };
    let responder = Responder::new(&r, &aes_only, CookieJar::with_secret([3u8; 32], 30));
    let (st, m0) = Initiator::start(&i, r.public(), &chacha_only, irand(6)).unwrap();
    let m1 = responder.on_client_hello(ip(), 0, &m0).unwrap();
    let (_, m2) = st.on_cookie(&m1).unwrap();
    let mut replay = ReplayGuard::new(16, 60);
    assert!(matches!(
        responder.on_key_exchange(
            ip(),
            0,
            &m2,
            &vec![i.public().clone()],
            &mut replay,
            rrand(6)
        ),
        Err(NetError::NoCommonSuite)
    ));
}

#[test]
fn chacha_is_negotiated_when_preferred() {
    let (i, r) = (ident(1), ident(2));
    let pref = HandshakeConfig {
        chain_id: CHAIN,
        suites: vec![CipherSuite::ChaCha20Poly1305, CipherSuite::Aes256Gcm],
    };
    let responder = Responder::new(&r, &cfg(), CookieJar::with_secret([3u8; 32], 30));
    let (st, m0) = Initiator::start(&i, r.public(), &pref, irand(8)).unwrap();
    let m1 = responder.on_client_hello(ip(), 0, &m0).unwrap();
    let (st, m2) = st.on_cookie(&m1).unwrap();
    let mut replay = ReplayGuard::new(16, 60);
    let (rst, m3) = responder
        .on_key_exchange(
            ip(),
            0,
            &m2,
            &vec![i.public().clone()],
            &mut replay,
            rrand(8),
        )
        .unwrap();
    let (m4, s) = st.on_server_finished(&m3).unwrap();
    assert_eq!(s.suite, CipherSuite::ChaCha20Poly1305);
    assert_eq!(
        rst.on_client_finished(&m4).unwrap().suite,
        CipherSuite::ChaCha20Poly1305
    );
}

#[test]
fn forward_secrecy_static_keys_alone_do_not_give_session_keys() {
    let (i, r) = (ident(1), ident(2));
    let out = run(&i, &r, 12);
    let m2 = KeyExchange::decode(&out.m[2]).unwrap();
    let m3 = ServerFinished::decode(&out.m[3]).unwrap();
    // Later compromise: the attacker learns both static decapsulation keys
    // and has recorded M2 and M3.
    let ct = |b: &[u8]| KemCiphertext::from_bytes(b).unwrap();
    let ss_r = kem_decapsulate(r.decapsulation_key(), &ct(&m2.ct_responder_static));
    let ss_i = kem_decapsulate(i.decapsulation_key(), &ct(&m3.ct_initiator_static));
    let target = (*out.init.send_secret, *out.init.recv_secret);
    let derive = |ss_e: &[u8; 32]| {
        let t = traffic_from_transcript(
            CHAIN,
            ss_r.as_bytes(),
            ss_e,
            ss_i.as_bytes(),
            &out.m[2],
            &out.m[3],
        );
        (*t.initiator_to_responder, *t.responder_to_initiator)
    };
    // Every guess available to the attacker for ss_E fails: decapsulating the
    // ephemeral ciphertext with either static key, zero, or the static secrets.
    for guess in [
        *kem_decapsulate(r.decapsulation_key(), &ct(&m3.ct_ephemeral)).as_bytes(),
        *kem_decapsulate(i.decapsulation_key(), &ct(&m3.ct_ephemeral)).as_bytes(),
        [0u8; 32],
        *ss_r.as_bytes(),
        *ss_i.as_bytes(),
    ] {
        assert_ne!(derive(&guess), target);
    }
    // Sanity check of the schedule itself: with the ephemeral secret (erased
    // by the initiator after the handshake) the keys are reproduced.
    let r12 = irand(12);
    let eph = KemKeyPair::from_seed(&r12.ephemeral_d, &r12.ephemeral_z);
    let ss_e = kem_decapsulate(eph.decapsulation_key(), &ct(&m3.ct_ephemeral));
    assert_eq!(derive(ss_e.as_bytes()), target);
}

#[test]
fn sessions_are_unique_per_handshake() {
    let (i, r) = (ident(1), ident(2));
    let a = run(&i, &r, 20);
    let b = run(&i, &r, 21);
    assert_ne!(*a.init.send_secret, *b.init.send_secret);
    assert_ne!(a.init.transcript_hash, b.init.transcript_hash);
}

/// Writes the fuzz seed corpora (`fuzz/seeds/net_*`) from a real handshake.
/// Run with `cargo test -p qbind-net --lib write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes files; run by hand to regenerate fuzz seeds"]
fn write_fuzz_seeds() {
    use crate::record::RecordSealer;
    use crate::wire::{PeerMessage, PeerRecord};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let out = run(&ident(1), &ident(2), 7);
    let names = [
        "net_client_hello",
        "net_cookie_reply",
        "net_key_exchange",
        "net_server_finished",
        "net_client_finished",
    ];
    for (m, target) in out.m.iter().zip(names) {
        put(target, "valid.bin", m);
        put(target, "truncated.bin", &m[..m.len() / 2]);
    }
    let mut frame = Vec::new();
    crate::frame::encode_frame(&out.m[0], 4096, &mut frame).unwrap();
    put("net_frame", "hello.bin", &frame);
    put("net_frame", "oversized.bin", &[0xff, 0xff, 0xff, 0xff, 1]);
    let mut sealer = RecordSealer::new(
        CipherSuite::Aes256Gcm,
        zeroize::Zeroizing::new([7u8; 32]),
        4,
    );
    let mut rec = vec![0u8];
    let mut sealed = Vec::new();
    sealer.seal_data(b"payload", &mut sealed).unwrap();
    rec.extend_from_slice(&sealed[4..]);
    put("net_record", "aes.bin", &rec);
    put("net_record", "chacha_short.bin", &[1, 0, 0, 0]);
    put(
        "net_peer_message",
        "ping.bin",
        &PeerMessage::Ping(1).encode(),
    );
    put(
        "net_peer_message",
        "get_peers.bin",
        &PeerMessage::GetPeers.encode(),
    );
    put(
        "net_peer_message",
        "peers.bin",
        &PeerMessage::Peers(vec![PeerRecord {
            id: qbind_core::types::ValidatorId(3),
            addr: "127.1.2.3:9000".parse().unwrap(),
        }])
        .encode(),
    );
    put(
        "net_peer_message",
        "payload.bin",
        &PeerMessage::Payload(vec![1, 2, 3]).encode(),
    );
}
