//! The remote signer (spec §6.5 "Remote Signer"; runbook §4.1 option B,
//! §10.2): a client [`Signer`](qbind_core::traits::Signer)
//! ([`client::RemoteSigner`]) and the daemon logic
//! ([`daemon::RemoteSignerDaemon`]) behind `qbind-remote-signer`, speaking
//! the messages of [`protocol`] over an authenticated [`channel::SignerChannel`].

pub mod channel;
pub mod client;
pub mod daemon;
pub mod kemtls;
pub mod protocol;

pub use channel::{ChannelError, FramedChannel, PeerIdentity, SignerChannel, framed_duplex_pair};
pub use client::{RemoteConnectError, RemoteSigner, parse_remote_signer_url};
pub use daemon::{
    BackendMode, DaemonConfig, DaemonMetrics, KindPolicy, RemoteSignerDaemon, ServeError,
    TokenBucket,
};
pub use kemtls::{KemtlsChannel, KemtlsListener, connect_kemtls};
