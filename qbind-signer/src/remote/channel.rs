//! The byte channel under the remote-signer protocol.
//!
//! [`SignerChannel`] is the seam between the protocol (this crate) and the
//! authenticated transport: in production a KEMTLS session of `qbind-net`,
//! which authenticates both ends and reports the peer's identity; in tests
//! an in-memory duplex ([`framed_duplex_pair`]). The daemon authorises the
//! client by the [`PeerIdentity`] the channel reports, so a channel
//! implementation must only report an identity the transport proved.

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::protocol::MAX_FRAME_BYTES;

/// The authenticated identity of the peer: the SHA3-256 digest of its
/// long-term transport public key (for KEMTLS, its ML-KEM-768 static key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerIdentity(pub [u8; 32]);

impl PeerIdentity {
    /// The identity of a transport public key.
    #[must_use]
    pub fn of_key(public_key: &[u8]) -> Self {
        use sha3::{Digest, Sha3_256};
        PeerIdentity(Sha3_256::digest(public_key).into())
    }

    /// Lowercase hex.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Its first 16 hex digits: the fingerprint `qbind-keygen` prints for
    /// a key and the node shows for a loaded one.
    #[must_use]
    pub fn short_hex(&self) -> String {
        let mut hex = self.to_hex();
        hex.truncate(16);
        hex
    }

    /// Parse 64 hex digits.
    #[must_use]
    pub fn from_hex(s: &str) -> Option<Self> {
        let v = hex::decode(s.trim()).ok()?;
        Some(PeerIdentity(v.try_into().ok()?))
    }
}

impl std::fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerIdentity({})", self.short_hex())
    }
}

/// Channel failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The peer closed the channel or it broke.
    #[error("channel closed")]
    Closed,
    /// An I/O error.
    #[error("channel I/O: {0}")]
    Io(String),
    /// A frame larger than the protocol allows.
    #[error("frame of {0} bytes exceeds the limit")]
    FrameTooLarge(usize),
}

/// An authenticated, ordered, reliable message channel.
#[async_trait]
pub trait SignerChannel: Send {
    /// Send one frame.
    async fn send(&mut self, frame: &[u8]) -> Result<(), ChannelError>;
    /// Receive the next frame.
    async fn recv(&mut self) -> Result<Vec<u8>, ChannelError>;
    /// The transport-authenticated identity of the peer.
    fn peer(&self) -> PeerIdentity;
}

/// A length-prefixed (`u32` BE) framing over any byte stream whose peer
/// identity was established by whoever built it.
pub struct FramedChannel<S> {
    stream: S,
    peer: PeerIdentity,
}

impl<S> FramedChannel<S> {
    /// Frame `stream`, whose peer has been authenticated as `peer`.
    pub fn new(stream: S, peer: PeerIdentity) -> Self {
        FramedChannel { stream, peer }
    }
}

fn io(e: std::io::Error) -> ChannelError {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::ConnectionReset => ChannelError::Closed,
        _ => ChannelError::Io(e.to_string()),
    }
}

#[async_trait]
impl<S: AsyncRead + AsyncWrite + Unpin + Send> SignerChannel for FramedChannel<S> {
    async fn send(&mut self, frame: &[u8]) -> Result<(), ChannelError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(ChannelError::FrameTooLarge(frame.len()));
        }
        let len =
            u32::try_from(frame.len()).map_err(|_| ChannelError::FrameTooLarge(frame.len()))?;
        self.stream
            .write_all(&len.to_be_bytes())
            .await
            .map_err(io)?;
        self.stream.write_all(frame).await.map_err(io)?;
        self.stream.flush().await.map_err(io)
    }

    async fn recv(&mut self) -> Result<Vec<u8>, ChannelError> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).await.map_err(io)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(ChannelError::FrameTooLarge(len));
        }
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf).await.map_err(io)?;
        Ok(buf)
    }

    fn peer(&self) -> PeerIdentity {
        self.peer
    }
}

/// Two connected in-memory channels: the first is the client end (its peer
/// is `server`), the second the daemon end (its peer is `client`). For tests
/// and benchmarks; production uses KEMTLS.
#[must_use]
pub fn framed_duplex_pair(
    client: PeerIdentity,
    server: PeerIdentity,
) -> (
    FramedChannel<tokio::io::DuplexStream>,
    FramedChannel<tokio::io::DuplexStream>,
) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (FramedChannel::new(a, server), FramedChannel::new(b, client))
}
