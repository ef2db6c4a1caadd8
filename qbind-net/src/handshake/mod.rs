//! The KEMTLS handshake with pre-distributed keys (spec §5.1, `docs/kemtls.md`):
//! wire messages, key schedule, stateless cookie, and the sans-I/O state machine.

pub mod cookie;
pub mod keys;
pub mod machine;
pub mod messages;

#[cfg(test)]
mod tests;
