//! The node's admin endpoint (issue #20, runbook §5): an opt-in,
//! authenticated HTTP/JSON endpoint on a loopback address
//! (`--admin-addr`, `--admin-token-file`), apart from the public API, over
//! which `qbind-admin` asks a running node for its status, its peers and
//! its DAG counters, and has it take a snapshot or prune now. The actions
//! run on the node's own engine and store (`crate::node::StoreControl`):
//! no second process ever opens the store.
//!
//! - [`token`]: the shared secret, its file and the constant-time check;
//! - [`wire`]: the routes, the JSON replies and the error shape;
//! - [`server`]: the server, its bounds and its metric.

use std::net::SocketAddr;

pub mod server;
pub mod token;
pub mod wire;

pub use server::{AdminBackend, AdminConfig, AdminError, AdminMetrics, AdminServer};
pub use token::AdminToken;
pub use wire::Action;

/// Refuse an admin address beyond this host unless the operator said so
/// (`--admin-allow-non-loopback`): the endpoint is plain HTTP, and the
/// token crosses the network in the clear.
///
/// # Errors
/// What to do instead.
pub fn check_addr(addr: SocketAddr, allow_non_loopback: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || allow_non_loopback {
        Ok(())
    } else {
        Err(format!(
            "--admin-addr {addr} is not a loopback address: the admin endpoint is plain HTTP \
             and its token would cross the network in the clear. Bind 127.0.0.1 (reach it \
             over an SSH tunnel), or pass --admin-allow-non-loopback if the network is \
             protected otherwise"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_unless_allowed() {
        let ok = |a: &str, allow| check_addr(a.parse().expect("addr"), allow).is_ok();
        assert!(ok("127.0.0.1:9100", false));
        assert!(ok("[::1]:9100", false));
        assert!(!ok("0.0.0.0:9100", false));
        assert!(!ok("10.1.2.3:9100", false));
        assert!(ok("10.1.2.3:9100", true));
    }
}
