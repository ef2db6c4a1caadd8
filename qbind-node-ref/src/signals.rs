//! The stop signals every long-running binary of this crate obeys.

/// Resolves with the name of the first SIGINT (Ctrl-C) or SIGTERM; `None`
/// if neither can be listened for. `qbind-node` stops cleanly on either
/// (the engines finish their block and flush, the signer's double-sign
/// record is released); `qbind-localnet` stops its validators.
pub async fn stop_signal() -> Option<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let sigterm = async {
        match term.as_mut() {
            Some(t) => t.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.ok().map(|()| "SIGINT"),
        Some(()) = sigterm => Some("SIGTERM"),
    }
}
