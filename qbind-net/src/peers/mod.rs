//! The peer manager's decisions, separate from sockets (spec §5.3–§5.5, §6.4;
//! runbook §7): who may connect and as what ([`directory`]), where to connect
//! ([`book`]), whom to refuse for diversity ([`diversity`]), whom to evict
//! ([`liveness`]) and when to retry ([`backoff`]).
//! [`crate::transport`] applies them.

pub mod backoff;
pub mod book;
pub mod directory;
pub mod diversity;
pub mod liveness;
