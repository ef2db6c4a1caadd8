//! # qbind-net
//!
//! The QBIND transport (spec §5, §6.4; runbook §7): KEMTLS with
//! pre-distributed ML-KEM-768 keys over TCP, and a peer manager that resists
//! eclipse attacks. Post-quantum on every path; there is no plaintext or
//! dummy-crypto mode.
//!
//! - [`handshake`]: the sans-I/O handshake — byte-exact messages
//!   ([`handshake::messages`]), the HKDF-SHA3-256 key schedule
//!   ([`handshake::keys`]), the stateless cookie and replay set
//!   ([`handshake::cookie`]) and the state machine ([`handshake::machine`]).
//!   The layouts, key schedule and security argument are in `docs/kemtls.md`.
//! - [`record`] and [`frame`]: AES-256-GCM (default) or ChaCha20-Poly1305
//!   records with counter nonces and in-band rekeying, in length-prefixed
//!   frames with a maximum size.
//! - [`channel`]: one authenticated point-to-point channel over TCP —
//!   [`connect`] / [`Acceptor::accept`] / [`SecureChannel`]. This is the
//!   stable API the remote signer uses.
//! - [`transport`]: [`TcpTransport`], the `qbind_core::Transport` for
//!   validators and the full nodes (followers) they admit, with the peer
//!   manager of [`peers`] and the metrics of [`metrics`].
//!
//! ## Secure channel API (stable)
//!
//! ```
//! use qbind_core::types::NetworkEnvironment;
//! use qbind_net::{Acceptor, ChannelConfig, StaticIdentity, connect_addr};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), qbind_net::NetError> {
//! // Each side has a static ML-KEM-768 identity; the public halves are
//! // distributed in advance (validator set, signer configuration).
//! let server = StaticIdentity::from_seed(&[1; 32], &[2; 32]);
//! let client = StaticIdentity::from_seed(&[3; 32], &[4; 32]);
//! let cfg = ChannelConfig::new(NetworkEnvironment::Devnet);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! // Keep one Acceptor per listener: it owns the cookie secret, the replay
//! // set and the per-IP handshake rate limiter.
//! let acceptor = Acceptor::new(&server, &cfg);
//! let allowed = vec![client.public().clone()];
//! let server_side = async {
//!     let (stream, _) = listener.accept().await?;
//!     let (mut chan, peer) = acceptor.accept(stream, &allowed).await?;
//!     assert_eq!(&peer, client.public());
//!     let msg = chan.recv().await?;
//!     chan.send(&msg).await?;
//!     Ok::<_, qbind_net::NetError>(())
//! };
//! let client_side = async {
//!     let mut chan = connect_addr(addr, &client, server.public(), &cfg).await?;
//!     chan.send(b"sign this").await?;
//!     assert_eq!(chan.recv().await?, b"sign this");
//!     Ok::<_, qbind_net::NetError>(())
//! };
//! let (a, b) = tokio::join!(server_side, client_side);
//! a?;
//! b?;
//! # Ok(())
//! # }
//! ```
//!
//! Exact signatures: `connect(TcpStream, &StaticIdentity, &PeerPublic,
//! &ChannelConfig) -> Result<SecureChannel, NetError>`, [`connect_addr`] (same
//! with a `SocketAddr`), `Acceptor::accept(&self, TcpStream, &dyn AllowedPeers)
//! -> Result<(SecureChannel, PeerPublic), NetError>`, the one-shot [`accept`],
//! `SecureChannel::send(&mut self, &[u8])`, `SecureChannel::recv(&mut self) ->
//! Result<Vec<u8>, NetError>` and [`SecureChannel::into_split`].
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod channel;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod identity;
pub mod metrics;
pub mod peers;
pub mod ratelimit;
pub mod record;
pub mod sentry;
pub mod transport;
pub mod wire;

pub use channel::{
    Acceptor, ChannelConfig, SecureChannel, SecureReceiver, SecureSender, accept, connect,
    connect_addr,
};
pub use error::NetError;
pub use identity::{AllowedPeers, KeyFingerprint, PeerPublic, StaticIdentity};
pub use metrics::NetMetrics;
pub use record::CipherSuite;
pub use transport::{ConnectedPeer, PeerManagerConfig, PeerView, TcpTransport, TransportConfig};
