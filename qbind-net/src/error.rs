//! The crate's one error type. Every malformed, oversized, replayed or
//! unauthenticated input ends here, never in a panic (DESIGN "Bad input"),
//! and so does a transport configuration refused at start.

use std::io;

/// Why a handshake, a frame or a channel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The socket failed or was closed by the peer.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection cleanly.
    #[error("connection closed by peer")]
    Closed,
    /// A frame announced more bytes than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A message ended before all of its fields were read.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// Which message or field.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A message had bytes after its last field.
    #[error("{count} trailing bytes after {what}")]
    TrailingBytes {
        /// Which message.
        what: &'static str,
        /// How many bytes were left over.
        count: usize,
    },
    /// A message type byte was not the one expected in this state.
    #[error("unexpected message type {got:#04x}, expected {expected:#04x}")]
    UnexpectedMessage {
        /// The type byte expected.
        expected: u8,
        /// The type byte received.
        got: u8,
    },
    /// A field had a value outside its allowed range.
    #[error("invalid field {field}")]
    InvalidField {
        /// Which field.
        field: &'static str,
    },
    /// The peer speaks another protocol version.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// The peer belongs to another chain.
    #[error("chain ID mismatch: ours {ours:#018x}, theirs {theirs:#018x}")]
    ChainMismatch {
        /// Our chain ID.
        ours: u64,
        /// The peer's.
        theirs: u64,
    },
    /// No cipher suite is acceptable to both sides.
    #[error("no common cipher suite")]
    NoCommonSuite,
    /// The echoed cookie is not one this responder issued for this address and nonce recently.
    #[error("invalid or expired handshake cookie")]
    BadCookie,
    /// A first message with cookie was seen before (replay).
    #[error("replayed handshake message")]
    Replay,
    /// The initiator's identity is not in the allowed set.
    #[error("peer identity not allowed")]
    UnknownPeer,
    /// A key or ciphertext failed its FIPS 203 input check.
    #[error("invalid key material: {0}")]
    Crypto(#[from] qbind_core::crypto::CryptoError),
    /// A key confirmation or record authentication tag did not verify
    /// (wrong static key, tampering, or a replayed/reordered record).
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The handshake did not finish in time.
    #[error("handshake timed out")]
    Timeout,
    /// Too many handshakes from this IP address.
    #[error("handshake rate limit exceeded")]
    RateLimited,
    /// A record counter reached its limit without the peer rekeying.
    #[error("record counter exhausted without rekey")]
    CounterExhausted,
    /// The state machine was driven out of order (a caller bug, not peer input).
    #[error("handshake state machine misuse: {0}")]
    State(&'static str),
    /// The transport's validator and follower lists contradict each other
    /// (refused at start).
    #[error("invalid peer directory: {0}")]
    Directory(#[from] crate::peers::directory::DirectoryError),
}
