//! KEMTLS wiring of the remote signer: [`SignerChannel`] over a
//! `qbind_net::SecureChannel` (ML-KEM-768 mutual authentication, AEAD
//! records). The daemon accepts only the one node key it is configured
//! with — an unknown initiator fails the handshake — and additionally checks
//! the authenticated peer in [`super::RemoteSignerDaemon::serve`].

use std::time::Duration;

use async_trait::async_trait;
use qbind_core::types::NetworkEnvironment;
use qbind_net::{Acceptor, ChannelConfig, NetError, PeerPublic, SecureChannel, StaticIdentity};

use super::channel::{ChannelError, PeerIdentity, SignerChannel};
use super::client::{RemoteConnectError, parse_remote_signer_url};

/// A KEMTLS session as a [`SignerChannel`].
pub struct KemtlsChannel {
    inner: SecureChannel,
    peer: PeerIdentity,
}

impl KemtlsChannel {
    /// Wrap an established session.
    #[must_use]
    pub fn new(inner: SecureChannel) -> Self {
        let peer = PeerIdentity(inner.peer().fingerprint().0);
        KemtlsChannel { inner, peer }
    }
}

fn net(e: NetError) -> ChannelError {
    match e {
        NetError::Closed => ChannelError::Closed,
        other => ChannelError::Io(other.to_string()),
    }
}

#[async_trait]
impl SignerChannel for KemtlsChannel {
    async fn send(&mut self, frame: &[u8]) -> Result<(), ChannelError> {
        self.inner.send(frame).await.map_err(net)
    }

    async fn recv(&mut self) -> Result<Vec<u8>, ChannelError> {
        self.inner.recv().await.map_err(net)
    }

    fn peer(&self) -> PeerIdentity {
        self.peer
    }
}

/// Connect to `kemtls://host:port` as `local`, expecting the daemon key
/// `daemon`, within `timeout` (resolution, TCP and handshake together).
///
/// # Errors
/// [`RemoteConnectError`].
pub async fn connect_kemtls(
    url: &str,
    local: &StaticIdentity,
    daemon: &PeerPublic,
    env: NetworkEnvironment,
    timeout: Duration,
) -> Result<KemtlsChannel, RemoteConnectError> {
    let (host, port) = parse_remote_signer_url(url)?;
    let cfg = ChannelConfig::new(env);
    let fut = async {
        let mut last = RemoteConnectError::Unreachable(format!("{host}:{port} did not resolve"));
        let addrs = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| RemoteConnectError::Unreachable(e.to_string()))?;
        for addr in addrs {
            match qbind_net::connect_addr(addr, local, daemon, &cfg).await {
                Ok(ch) => return Ok(KemtlsChannel::new(ch)),
                Err(e) => last = RemoteConnectError::Unreachable(format!("{addr}: {e}")),
            }
        }
        Err(last)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| RemoteConnectError::Unreachable("KEMTLS connect timed out".into()))?
}

/// The daemon's KEMTLS listener: one acceptor (cookie secret, replay set,
/// per-IP handshake limit) and the one allowed node key.
pub struct KemtlsListener {
    listener: tokio::net::TcpListener,
    acceptor: Acceptor,
    allowed: Vec<PeerPublic>,
    handshake_timeout: Duration,
}

impl KemtlsListener {
    /// Listen with identity `local`, accepting only `allowed_node`.
    #[must_use]
    pub fn new(
        listener: tokio::net::TcpListener,
        local: &StaticIdentity,
        allowed_node: PeerPublic,
        env: NetworkEnvironment,
    ) -> Self {
        let cfg = ChannelConfig::new(env);
        let handshake_timeout = cfg.handshake_timeout;
        KemtlsListener {
            listener,
            acceptor: Acceptor::new(local, &cfg),
            allowed: vec![allowed_node],
            handshake_timeout,
        }
    }

    /// The bound address.
    ///
    /// # Errors
    /// I/O error from the socket.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept the next TCP connection (run [`Self::handshake`] on it, in its
    /// own task, so that a slow peer cannot hold up the listener).
    ///
    /// # Errors
    /// I/O errors.
    pub async fn accept_tcp(&self) -> std::io::Result<tokio::net::TcpStream> {
        Ok(self.listener.accept().await?.0)
    }

    /// Run the KEMTLS handshake on `stream`. A peer that is not the allowed
    /// node fails here.
    ///
    /// # Errors
    /// [`NetError`] (handshake failure, unknown peer, timeout, I/O).
    pub async fn handshake(
        &self,
        stream: tokio::net::TcpStream,
    ) -> Result<KemtlsChannel, NetError> {
        let (ch, _peer) = tokio::time::timeout(
            self.handshake_timeout,
            self.acceptor.accept(stream, &self.allowed),
        )
        .await
        .map_err(|_| NetError::Timeout)??;
        Ok(KemtlsChannel::new(ch))
    }

    /// Accept and handshake one connection.
    ///
    /// # Errors
    /// [`NetError`].
    pub async fn accept(&self) -> Result<KemtlsChannel, NetError> {
        let stream = self.accept_tcp().await?;
        self.handshake(stream).await
    }
}
