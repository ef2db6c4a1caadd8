//! Property tests of the decoders reachable from the network: arbitrary
//! bytes never panic, and accepted bytes re-encode identically; encoded
//! values decode to themselves.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use qbind_core::types::ValidatorId;
use qbind_net::frame::decode_frame;
use qbind_net::handshake::messages::{
    ClientFinished, ClientHello, CookieReply, KeyExchange, ServerFinished,
};
use qbind_net::wire::{PeerMessage, PeerRecord};

fn peer_record() -> impl Strategy<Value = PeerRecord> {
    (
        any::<u32>(),
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from)
        ],
        any::<u16>(),
    )
        .prop_map(|(id, ip, port)| PeerRecord {
            id: ValidatorId(id),
            addr: SocketAddr::new(ip, port),
        })
}

fn peer_message() -> impl Strategy<Value = PeerMessage> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(PeerMessage::Payload),
        any::<u64>().prop_map(PeerMessage::Ping),
        any::<u64>().prop_map(PeerMessage::Pong),
        Just(PeerMessage::GetPeers),
        proptest::collection::vec(peer_record(), 0..=100).prop_map(PeerMessage::Peers),
    ]
}

proptest! {
    #[test]
    fn peer_messages_round_trip(m in peer_message()) {
        prop_assert_eq!(PeerMessage::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_bytes_are_canonical(
        b in proptest::collection::vec(any::<u8>(), 0..300),
        t in 1u8..=5,
    ) {
        let mut b = b;
        if let Some(first) = b.first_mut() {
            *first = t;
        }
        if let Ok(m) = PeerMessage::decode(&b) { prop_assert_eq!(m.encode(), b.clone()); }
        if let Ok(m) = ClientHello::decode(&b) { prop_assert_eq!(m.encode(), b.clone()); }
        if let Ok(m) = CookieReply::decode(&b) { prop_assert_eq!(m.encode(), b.clone()); }
        if let Ok(m) = KeyExchange::decode(&b) { prop_assert_eq!(m.encode(), b.clone()); }
        if let Ok(m) = ServerFinished::decode(&b) { prop_assert_eq!(m.encode(), b.clone()); }
        if let Ok(m) = ClientFinished::decode(&b) { prop_assert_eq!(m.encode(), b.clone()); }
        if let Ok(Some((body, used))) = decode_frame(&b, 64) {
            prop_assert!(!body.is_empty() && body.len() <= 64 && used == body.len() + 4);
        }
    }

    #[test]
    fn fixed_size_messages_round_trip(nonce in any::<[u8; 32]>(), chain in any::<u64>(), v in any::<u16>()) {
        let h = ClientHello { version: v, chain_id: chain, client_nonce: nonce };
        prop_assert_eq!(ClientHello::decode(&h.encode()).unwrap(), h);
        let c = CookieReply { version: v, cookie: nonce };
        prop_assert_eq!(CookieReply::decode(&c.encode()).unwrap(), c);
        let f = ClientFinished { confirm: nonce };
        prop_assert_eq!(ClientFinished::decode(&f.encode()).unwrap(), f);
    }
}
