//! Messages between validators inside an established channel
//! (`docs/kemtls.md` "Peer messages"): payloads for the core, heartbeats and
//! peer exchange. One type byte, fixed-width fields, a bounded peer list,
//! no trailing bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use qbind_core::types::ValidatorId;

use crate::error::NetError;

/// Most peer records in one [`PeerMessage::Peers`].
pub const MAX_PEERS_PER_MESSAGE: usize = 100;

/// A validator and an address it was reported at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerRecord {
    /// The validator.
    pub id: ValidatorId,
    /// Its reported listen address (unauthenticated until a handshake succeeds).
    pub addr: SocketAddr,
}

/// One message of the peer protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMessage {
    /// Bytes for the core (`Transport::recv`).
    Payload(Vec<u8>),
    /// Heartbeat request with a nonce.
    Ping(u64),
    /// Heartbeat answer echoing the nonce.
    Pong(u64),
    /// Peer-exchange request.
    GetPeers,
    /// Peer-exchange answer.
    Peers(Vec<PeerRecord>),
}

impl PeerMessage {
    /// Encode.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            PeerMessage::Payload(b) => {
                v.reserve(1 + b.len());
                v.push(0);
                v.extend_from_slice(b);
            }
            PeerMessage::Ping(n) => {
                v.push(1);
                v.extend_from_slice(&n.to_be_bytes());
            }
            PeerMessage::Pong(n) => {
                v.push(2);
                v.extend_from_slice(&n.to_be_bytes());
            }
            PeerMessage::GetPeers => v.push(3),
            PeerMessage::Peers(list) => {
                v.push(4);
                let n = list.len().min(MAX_PEERS_PER_MESSAGE);
                v.push(u8::try_from(n).unwrap_or(0));
                for p in &list[..n] {
                    v.extend_from_slice(&p.id.0.to_be_bytes());
                    match p.addr.ip() {
                        IpAddr::V4(a) => {
                            v.push(4);
                            v.extend_from_slice(&a.octets());
                        }
                        IpAddr::V6(a) => {
                            v.push(6);
                            v.extend_from_slice(&a.octets());
                        }
                    }
                    v.extend_from_slice(&p.addr.port().to_be_bytes());
                }
            }
        }
        v
    }

    /// Decode.
    ///
    /// # Errors
    /// [`NetError::Truncated`], [`NetError::TrailingBytes`], [`NetError::InvalidField`].
    pub fn decode(b: &[u8]) -> Result<Self, NetError> {
        let (&t, rest) = b.split_first().ok_or(NetError::Truncated {
            what: "peer message",
            need: 1,
            have: 0,
        })?;
        let exact = |rest: &[u8], n: usize| -> Result<(), NetError> {
            if rest.len() < n {
                Err(NetError::Truncated {
                    what: "peer message",
                    need: n,
                    have: rest.len(),
                })
            } else if rest.len() > n {
                Err(NetError::TrailingBytes {
                    what: "peer message",
                    count: rest.len() - n,
                })
            } else {
                Ok(())
            }
        };
        let u64_of = |rest: &[u8]| -> Result<u64, NetError> {
            exact(rest, 8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(rest);
            Ok(u64::from_be_bytes(a))
        };
        match t {
            0 => Ok(PeerMessage::Payload(rest.to_vec())),
            1 => Ok(PeerMessage::Ping(u64_of(rest)?)),
            2 => Ok(PeerMessage::Pong(u64_of(rest)?)),
            3 => {
                exact(rest, 0)?;
                Ok(PeerMessage::GetPeers)
            }
            4 => decode_peers(rest),
            _ => Err(NetError::InvalidField {
                field: "peer message type",
            }),
        }
    }
}

fn decode_peers(b: &[u8]) -> Result<PeerMessage, NetError> {
    let trunc = |need: usize, have: usize| NetError::Truncated {
        what: "peer list",
        need,
        have,
    };
    let (&n, mut rest) = b.split_first().ok_or(trunc(1, 0))?;
    let n = usize::from(n);
    if n > MAX_PEERS_PER_MESSAGE {
        return Err(NetError::InvalidField {
            field: "peer count",
        });
    }
    let mut list = Vec::with_capacity(n);
    for _ in 0..n {
        if rest.len() < 5 {
            return Err(trunc(5, rest.len()));
        }
        let id = ValidatorId(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
        let ip_len = match rest[4] {
            4 => 4,
            6 => 16,
            _ => {
                return Err(NetError::InvalidField {
                    field: "address family",
                });
            }
        };
        let need = 5 + ip_len + 2;
        if rest.len() < need {
            return Err(trunc(need, rest.len()));
        }
        let ip = if ip_len == 4 {
            IpAddr::V4(Ipv4Addr::new(rest[5], rest[6], rest[7], rest[8]))
        } else {
            let mut a = [0u8; 16];
            a.copy_from_slice(&rest[5..21]);
            IpAddr::V6(Ipv6Addr::from(a))
        };
        let port = u16::from_be_bytes([rest[5 + ip_len], rest[6 + ip_len]]);
        list.push(PeerRecord {
            id,
            addr: SocketAddr::new(ip, port),
        });
        rest = &rest[need..];
    }
    if !rest.is_empty() {
        return Err(NetError::TrailingBytes {
            what: "peer list",
            count: rest.len(),
        });
    }
    Ok(PeerMessage::Peers(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_and_round_trip() {
        let peers = PeerMessage::Peers(vec![
            PeerRecord {
                id: ValidatorId(7),
                addr: "127.1.2.3:9000".parse().unwrap(),
            },
            PeerRecord {
                id: ValidatorId(1),
                addr: "[::1]:80".parse().unwrap(),
            },
        ]);
        let bytes = peers.encode();
        assert_eq!(
            hex::encode(&bytes),
            "04020000000704 7f010203 2328 0000000106 00000000000000000000000000000001 0050"
                .replace(' ', "")
        );
        assert_eq!(PeerMessage::decode(&bytes).unwrap(), peers);
        assert_eq!(
            hex::encode(PeerMessage::Ping(5).encode()),
            "010000000000000005"
        );
        assert_eq!(PeerMessage::Payload(vec![9]).encode(), vec![0, 9]);
        for m in [
            PeerMessage::Ping(1),
            PeerMessage::Pong(u64::MAX),
            PeerMessage::GetPeers,
            PeerMessage::Payload(vec![]),
        ] {
            assert_eq!(PeerMessage::decode(&m.encode()).unwrap(), m);
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            PeerMessage::decode(&long),
            Err(NetError::TrailingBytes { .. })
        ));
        assert!(matches!(
            PeerMessage::decode(&bytes[..bytes.len() - 1]),
            Err(NetError::Truncated { .. })
        ));
        assert!(matches!(
            PeerMessage::decode(&[4, 101]),
            Err(NetError::InvalidField { .. })
        ));
        assert!(matches!(
            PeerMessage::decode(&[9]),
            Err(NetError::InvalidField { .. })
        ));
        assert!(PeerMessage::decode(&[]).is_err());
        assert!(PeerMessage::decode(&[1, 0]).is_err());
    }
}
