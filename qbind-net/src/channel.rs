//! A point-to-point secure channel over TCP: the KEMTLS handshake of
//! [`crate::handshake`] driven over a socket with a timeout, then records.
//! This is the API the remote signer uses (`connect` / `accept` /
//! [`SecureChannel`]); the validator transport builds on the same pieces.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qbind_core::types::NetworkEnvironment;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::NetError;
use crate::frame::{read_frame, write_frame};
use crate::handshake::cookie::{CookieJar, ReplayGuard};
use crate::handshake::machine::{
    HandshakeConfig, Initiator, InitiatorRandomness, Responder, ResponderRandomness, Session,
};
use crate::handshake::messages::MAX_HANDSHAKE_MESSAGE;
use crate::identity::{AllowedPeers, PeerPublic, StaticIdentity};
use crate::metrics::NetMetrics;
use crate::ratelimit::HandshakeRateLimiter;
use crate::record::{CipherSuite, MAX_REKEY_AFTER, RECORD_OVERHEAD, RecordOpener, RecordSealer};

/// Settings of a channel; both ends must agree on `chain_id` and share at
/// least one suite.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    /// Chain ID bound into the key schedule.
    pub chain_id: u64,
    /// Record suites, most preferred first. Default: AES-256-GCM, then ChaCha20-Poly1305.
    pub suites: Vec<CipherSuite>,
    /// Largest message `send` accepts and `recv` allocates for (default 16 MiB).
    pub max_message: usize,
    /// Time allowed for the whole handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// Records sent under one key before rekeying (default 2^24; at most 2^32).
    pub rekey_after: u64,
    /// Cookie time bucket in seconds; a cookie lives one to two buckets (default 30).
    pub cookie_period_secs: u64,
    /// Handshakes per second per source IP an [`Acceptor`] starts (default 5).
    pub handshakes_per_ip_per_sec: f64,
    /// Burst of the per-IP handshake limit (default 20).
    pub handshake_burst: u32,
    /// Client nonces an [`Acceptor`]'s replay set remembers (default 65,536);
    /// when full it forgets the oldest rather than refuse handshakes.
    pub replay_capacity: usize,
    /// Source addresses (IPv4, IPv6 /64) an [`Acceptor`]'s rate limiter
    /// tracks (default 16,384).
    pub rate_limit_sources: usize,
}

impl ChannelConfig {
    /// Defaults for a network.
    #[must_use]
    pub fn new(env: NetworkEnvironment) -> Self {
        ChannelConfig {
            chain_id: env.chain_id().0,
            suites: vec![CipherSuite::Aes256Gcm, CipherSuite::ChaCha20Poly1305],
            max_message: 16 << 20,
            handshake_timeout: Duration::from_secs(10),
            rekey_after: 1 << 24,
            cookie_period_secs: 30,
            handshakes_per_ip_per_sec: 5.0,
            handshake_burst: 20,
            replay_capacity: 1 << 16,
            rate_limit_sources: 1 << 14,
        }
    }

    fn handshake(&self) -> HandshakeConfig {
        HandshakeConfig {
            chain_id: self.chain_id,
            suites: self.suites.clone(),
        }
    }

    fn max_frame(&self) -> usize {
        self.max_message.saturating_add(RECORD_OVERHEAD)
    }
}

/// Sending half of a [`SecureChannel`].
pub struct SecureSender {
    writer: OwnedWriteHalf,
    sealer: RecordSealer,
    max_message: usize,
    buf: Vec<u8>,
}

impl SecureSender {
    /// Encrypt and send one message.
    ///
    /// # Errors
    /// [`NetError::FrameTooLarge`] above `max_message`; [`NetError::Io`].
    pub async fn send(&mut self, msg: &[u8]) -> Result<(), NetError> {
        if msg.len() > self.max_message {
            return Err(NetError::FrameTooLarge {
                len: msg.len(),
                max: self.max_message,
            });
        }
        self.buf.clear();
        self.sealer.seal_data(msg, &mut self.buf)?;
        self.writer.write_all(&self.buf).await?;
        if self.buf.capacity() > (1 << 20) {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// How many times the send direction was rekeyed.
    #[must_use]
    pub fn rekeys(&self) -> u64 {
        self.sealer.epoch()
    }

    /// Close the sending direction.
    ///
    /// # Errors
    /// [`NetError::Io`].
    pub async fn shutdown(&mut self) -> Result<(), NetError> {
        self.writer.shutdown().await?;
        Ok(())
    }
}

/// Receiving half of a [`SecureChannel`].
pub struct SecureReceiver {
    reader: BufReader<OwnedReadHalf>,
    opener: RecordOpener,
    max_frame: usize,
}

impl SecureReceiver {
    /// Receive and decrypt the next message.
    ///
    /// # Errors
    /// [`NetError::Closed`] at a clean end of stream; [`NetError::FrameTooLarge`],
    /// [`NetError::Truncated`], [`NetError::AuthenticationFailed`] and the
    /// other record errors for bad input (the channel is then unusable).
    pub async fn recv(&mut self) -> Result<Vec<u8>, NetError> {
        loop {
            let frame = read_frame(&mut self.reader, self.max_frame).await?;
            if let Some(msg) = self.opener.open_owned(frame)? {
                return Ok(msg);
            }
        }
    }

    /// How many times the receive direction was rekeyed.
    #[must_use]
    pub fn rekeys(&self) -> u64 {
        self.opener.epoch()
    }
}

/// An authenticated, encrypted, ordered message channel to one peer.
pub struct SecureChannel {
    sender: SecureSender,
    receiver: SecureReceiver,
    peer: PeerPublic,
    transcript_hash: [u8; 32],
    peer_addr: Option<SocketAddr>,
}

impl SecureChannel {
    fn new(stream: TcpStream, session: Session, cfg: &ChannelConfig) -> Self {
        let peer_addr = stream.peer_addr().ok();
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        let peer = session.peer.clone();
        let transcript_hash = session.transcript_hash;
        let (mut sealer, opener) = session.into_records(MAX_REKEY_AFTER);
        // Our own budget for sending; the receiver only enforces the hard maximum.
        sealer = sealer.with_rekey_after(cfg.rekey_after);
        SecureChannel {
            sender: SecureSender {
                writer: w,
                sealer,
                max_message: cfg.max_message,
                buf: Vec::new(),
            },
            receiver: SecureReceiver {
                reader: BufReader::with_capacity(64 << 10, r),
                opener,
                max_frame: cfg.max_frame(),
            },
            peer,
            transcript_hash,
            peer_addr,
        }
    }

    /// Encrypt and send one message (see [`SecureSender::send`]).
    ///
    /// # Errors
    /// As [`SecureSender::send`].
    pub async fn send(&mut self, msg: &[u8]) -> Result<(), NetError> {
        self.sender.send(msg).await
    }

    /// Receive the next message (see [`SecureReceiver::recv`]).
    ///
    /// # Errors
    /// As [`SecureReceiver::recv`].
    pub async fn recv(&mut self) -> Result<Vec<u8>, NetError> {
        self.receiver.recv().await
    }

    /// The authenticated peer.
    #[must_use]
    pub fn peer(&self) -> &PeerPublic {
        &self.peer
    }

    /// The peer's socket address, if known.
    #[must_use]
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// `H(M2 || M3 || M4)`: equal on both ends, unique per session.
    #[must_use]
    pub fn transcript_hash(&self) -> [u8; 32] {
        self.transcript_hash
    }

    /// Rekeys so far in (send, receive) direction.
    #[must_use]
    pub fn rekeys(&self) -> (u64, u64) {
        (self.sender.rekeys(), self.receiver.rekeys())
    }

    /// Split into independently usable halves (e.g. one task each).
    #[must_use]
    pub fn into_split(self) -> (SecureSender, SecureReceiver) {
        (self.sender, self.receiver)
    }
}

async fn initiator_handshake(
    stream: &mut TcpStream,
    local: &StaticIdentity,
    expected: &PeerPublic,
    cfg: &ChannelConfig,
) -> Result<Session, NetError> {
    let (init, m0) = Initiator::start(
        local,
        expected,
        &cfg.handshake(),
        InitiatorRandomness::random(),
    )?;
    write_frame(stream, &m0, MAX_HANDSHAKE_MESSAGE).await?;
    let m1 = read_frame(stream, MAX_HANDSHAKE_MESSAGE).await?;
    let (wait, m2) = init.on_cookie(&m1)?;
    write_frame(stream, &m2, MAX_HANDSHAKE_MESSAGE).await?;
    let m3 = read_frame(stream, MAX_HANDSHAKE_MESSAGE).await?;
    let (m4, session) = wait.on_server_finished(&m3)?;
    write_frame(stream, &m4, MAX_HANDSHAKE_MESSAGE).await?;
    Ok(session)
}

/// Run the initiator side on a connected stream, authenticating the peer as
/// `expected` (its pre-distributed public identity).
///
/// # Errors
/// [`NetError::Timeout`] after `cfg.handshake_timeout`;
/// [`NetError::AuthenticationFailed`] if the peer does not hold `expected`'s
/// key (or does not accept ours); decoding and I/O errors.
pub async fn connect(
    mut stream: TcpStream,
    local: &StaticIdentity,
    expected: &PeerPublic,
    cfg: &ChannelConfig,
) -> Result<SecureChannel, NetError> {
    let session = tokio::time::timeout(
        cfg.handshake_timeout,
        initiator_handshake(&mut stream, local, expected, cfg),
    )
    .await
    .map_err(|_| NetError::Timeout)??;
    Ok(SecureChannel::new(stream, session, cfg))
}

/// Connect to `addr` (TCP, bounded by the handshake timeout) and run [`connect`].
///
/// # Errors
/// As [`connect`].
pub async fn connect_addr(
    addr: SocketAddr,
    local: &StaticIdentity,
    expected: &PeerPublic,
    cfg: &ChannelConfig,
) -> Result<SecureChannel, NetError> {
    let stream = tokio::time::timeout(cfg.handshake_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| NetError::Timeout)??;
    connect(stream, local, expected, cfg).await
}

/// The responder side, kept for the lifetime of a listener: it owns the
/// cookie secret, the replay set and the per-IP rate limiter, so that replay
/// and flood protection work across connections.
pub struct Acceptor {
    responder: Responder,
    cfg: ChannelConfig,
    replay: Mutex<ReplayGuard>,
    limiter: Mutex<HandshakeRateLimiter>,
    start: Instant,
    metrics: Option<Arc<NetMetrics>>,
}

impl Acceptor {
    /// An acceptor for `local` with a fresh cookie secret.
    #[must_use]
    pub fn new(local: &StaticIdentity, cfg: &ChannelConfig) -> Self {
        let cookies = CookieJar::new(cfg.cookie_period_secs);
        let lifetime = cookies.lifetime_secs();
        Acceptor {
            responder: Responder::new(local, &cfg.handshake(), cookies),
            cfg: cfg.clone(),
            replay: Mutex::new(ReplayGuard::new(cfg.replay_capacity, lifetime)),
            limiter: Mutex::new(HandshakeRateLimiter::new(
                cfg.handshakes_per_ip_per_sec,
                cfg.handshake_burst,
                cfg.rate_limit_sources,
            )),
            start: Instant::now(),
            metrics: None,
        }
    }

    /// Count handshake failures in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<NetMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn now_secs(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    async fn respond(
        &self,
        stream: &mut TcpStream,
        ip: IpAddr,
        allowed: &dyn AllowedPeers,
    ) -> Result<Session, NetError> {
        let m0 = read_frame(stream, MAX_HANDSHAKE_MESSAGE).await?;
        let m1 = self.responder.on_client_hello(ip, self.now_secs(), &m0)?;
        write_frame(stream, &m1, MAX_HANDSHAKE_MESSAGE).await?;
        let m2 = read_frame(stream, MAX_HANDSHAKE_MESSAGE).await?;
        let (wait, m3) = {
            let mut replay = self
                .replay
                .lock()
                .map_err(|_| NetError::State("replay set poisoned"))?;
            self.responder.on_key_exchange(
                ip,
                self.now_secs(),
                &m2,
                allowed,
                &mut replay,
                ResponderRandomness::random(),
            )?
        };
        write_frame(stream, &m3, MAX_HANDSHAKE_MESSAGE).await?;
        let m4 = read_frame(stream, MAX_HANDSHAKE_MESSAGE).await?;
        wait.on_client_finished(&m4)
    }

    /// Run the responder side on an accepted stream; returns the channel and
    /// the authenticated initiator. Failures are counted in the metrics.
    ///
    /// # Errors
    /// [`NetError::RateLimited`], [`NetError::BadCookie`], [`NetError::Replay`],
    /// [`NetError::UnknownPeer`], [`NetError::AuthenticationFailed`],
    /// [`NetError::Timeout`], decoding and I/O errors.
    pub async fn accept(
        &self,
        mut stream: TcpStream,
        allowed: &dyn AllowedPeers,
    ) -> Result<(SecureChannel, PeerPublic), NetError> {
        let result = self.accept_inner(&mut stream, allowed).await;
        match result {
            Ok(session) => {
                let peer = session.peer.clone();
                Ok((SecureChannel::new(stream, session, &self.cfg), peer))
            }
            Err(e) => {
                if let Some(m) = &self.metrics {
                    m.handshake_failed(&e);
                }
                Err(e)
            }
        }
    }

    async fn accept_inner(
        &self,
        stream: &mut TcpStream,
        allowed: &dyn AllowedPeers,
    ) -> Result<Session, NetError> {
        let ip = stream.peer_addr()?.ip();
        let allowed_now = self
            .limiter
            .lock()
            .map_err(|_| NetError::State("rate limiter poisoned"))?
            .allow(ip, Instant::now());
        if !allowed_now {
            return Err(NetError::RateLimited);
        }
        tokio::time::timeout(
            self.cfg.handshake_timeout,
            self.respond(stream, ip, allowed),
        )
        .await
        .map_err(|_| NetError::Timeout)?
    }
}

/// Accept one connection with a throwaway [`Acceptor`]. Servers that accept
/// repeatedly should keep one [`Acceptor`] instead, so replayed handshakes and
/// per-IP floods are recognised across connections.
///
/// # Errors
/// As [`Acceptor::accept`].
pub async fn accept(
    stream: TcpStream,
    local: &StaticIdentity,
    allowed: &dyn AllowedPeers,
    cfg: &ChannelConfig,
) -> Result<(SecureChannel, PeerPublic), NetError> {
    Acceptor::new(local, cfg).accept(stream, allowed).await
}
