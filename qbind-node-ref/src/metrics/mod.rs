//! The process's metrics: one `prometheus_client` [`Registry`] per process,
//! filled by collectors that read the components' plain counters at scrape
//! time ([`families`], [`components`]), rendered in the Prometheus text
//! format 0.0.4 ([`render`]), and the `/metrics` endpoint serving it: a
//! deliberately small HTTP/1.1 responder on tokio that answers
//! `GET /metrics` and nothing else, with a bounded request size, read and
//! write timeouts, and at most [`MAX_CONNECTIONS`] connections open at once,
//! so slow or hostile clients cannot hold tasks or file descriptors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;

pub mod components;
pub mod cpu;
pub mod families;

pub use prometheus_client::registry::Registry;

/// The page of `registry` in the Prometheus text format 0.0.4 (what
/// `promtool check metrics` and every Prometheus scraper read; counters keep
/// their `_total` name on the `# HELP`/`# TYPE` lines too).
#[must_use]
pub fn render(registry: &Registry) -> String {
    let mut page = String::new();
    // Writing to a `String` cannot fail; the collectors only write.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut page, registry);
    page
}

/// Largest request head the endpoint reads.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing the response may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once. A new connection beyond it closes the
/// oldest one still open, so idle clients cannot lock scrapers out and the
/// endpoint never holds more than this many sockets.
pub const MAX_CONNECTIONS: usize = 32;

/// Something that can render the current metrics page.
pub type Renderer = Arc<dyn Fn() -> String + Send + Sync>;

/// Connections being served, oldest first; at most [`MAX_CONNECTIONS`].
#[derive(Default)]
struct OpenConnections {
    next: u64,
    open: BTreeMap<u64, AbortHandle>,
}

fn lock(open: &Mutex<OpenConnections>) -> std::sync::MutexGuard<'_, OpenConnections> {
    // The table is a plain map; a panicking holder cannot leave it unusable.
    open.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serve `GET /metrics` on `listener` until `shutdown` becomes true.
pub async fn serve(listener: TcpListener, render: Renderer, mut shutdown: watch::Receiver<bool>) {
    let open = Arc::new(Mutex::new(OpenConnections::default()));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            // E.g. out of file descriptors: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let render = Arc::clone(&render);
        let mut table = lock(&open);
        while table.open.len() >= MAX_CONNECTIONS {
            match table.open.pop_first() {
                // Dropping the aborted task's future closes its socket.
                Some((_, oldest)) => oldest.abort(),
                None => break,
            }
        }
        table.next += 1;
        let id = table.next;
        let done = Arc::clone(&open);
        let task = tokio::spawn(async move {
            let _ = answer(stream, render).await;
            lock(&done).open.remove(&id);
        });
        table.open.insert(id, task.abort_handle());
    }
    for (_, task) in std::mem::take(&mut lock(&open).open) {
        task.abort();
    }
}

/// The warning logged when the endpoint is bound beyond loopback.
pub const EXPOSED_WARNING: &str = "the /metrics endpoint is bound to a non-loopback address: \
     anyone who can reach it can read the node's metrics; prefer 127.0.0.1 behind a proxy or tunnel";

/// Whether binding `addr` exposes the endpoint beyond this host.
#[must_use]
pub fn exposed_beyond_localhost(addr: SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

/// Bind the endpoint (separately from [`serve`], so a bad address is an
/// error at start-up rather than in a background task). Logs a warning when
/// the address is not loopback: the page is unauthenticated.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if exposed_beyond_localhost(addr) {
        tracing::warn!(%addr, "{EXPOSED_WARNING}");
    }
    TcpListener::bind(addr).await
}

/// [`bind`] for a node: a failure is a [`crate::node::NodeError`] naming
/// the address, and `out` gets the `metrics on http://ADDR/metrics` line.
pub async fn bind_announced(
    addr: SocketAddr,
    out: &dyn Fn(&str),
) -> Result<TcpListener, crate::node::NodeError> {
    let listener = bind(addr)
        .await
        .map_err(|source| crate::node::NodeError::Io {
            what: format!("binding the metrics endpoint {addr}"),
            source,
        })?;
    out(&format!(
        "metrics on http://{}/metrics",
        listener.local_addr().map_or(addr, |a| a)
    ));
    Ok(listener)
}

async fn answer(mut stream: tokio::net::TcpStream, render: Renderer) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let head_complete = |b: &[u8]| b.windows(4).any(|w| w == b"\r\n\r\n");
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        while !head_complete(&buf) && buf.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next(), parts.next());
    let (status, body, kind) = match (method, path) {
        (Some("GET"), Some("/metrics")) => (
            "200 OK",
            render(),
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        ),
        (Some("GET"), Some(_)) => ("404 Not Found", "not found\n".into(), "text/plain"),
        _ => (
            "405 Method Not Allowed",
            "only GET /metrics\n".into(),
            "text/plain",
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await
    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The endpoint on a free loopback port, serving `qbind_up 1`: its
    /// address, its stop switch and its task.
    async fn start_endpoint() -> (
        std::net::SocketAddr,
        watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = watch::channel(false);
        let render: Renderer = Arc::new(|| "qbind_up 1\n".to_string());
        (addr, stop, tokio::spawn(serve(listener, render, stopped)))
    }

    #[tokio::test]
    async fn endpoint_serves_metrics_and_refuses_other_requests() {
        let (addr, stop, server) = start_endpoint().await;
        let get = |req: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        let ok = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK"));
        assert!(ok.ends_with("qbind_up 1\n"));
        assert!(
            get("GET /other HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404")
        );
        assert!(
            get("POST /metrics HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 405")
        );
        stop.send(true).expect("server listening");
        server.await.expect("server task");
    }

    /// Issue #22 finding 9: idle connections used to be held (one task and
    /// one socket each) until their read timeout, without limit. Now the
    /// endpoint keeps at most `MAX_CONNECTIONS` open: the oldest are closed
    /// at once, and a new scrape is answered while the idle ones stay open.
    #[tokio::test]
    async fn idle_connections_are_bounded_and_scrapes_still_succeed() {
        let (addr, stop, server) = start_endpoint().await;
        let extra = 8;
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS + extra {
            idle.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
        }
        // The oldest `extra` are closed by the server well before the read timeout.
        let quick = READ_TIMEOUT / 5;
        for (i, s) in idle.iter_mut().take(extra).enumerate() {
            let mut b = [0u8; 1];
            let r = tokio::time::timeout(quick, s.read(&mut b)).await;
            assert!(
                matches!(r, Ok(Ok(0)) | Ok(Err(_))),
                "idle connection {i} still open beyond the cap"
            );
        }
        let scrape = async {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
                .await
                .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        let page = tokio::time::timeout(quick, scrape)
            .await
            .expect("scrape answered while idle connections are open");
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
        // The server's side of the still-open idle connections is bounded.
        let mut still_open = 0;
        for s in idle.iter_mut().skip(extra) {
            let mut b = [0u8; 1];
            if tokio::time::timeout(Duration::from_millis(20), s.read(&mut b))
                .await
                .is_err()
            {
                still_open += 1;
            }
        }
        assert!(still_open < MAX_CONNECTIONS, "{still_open} open");
        stop.send(true).expect("server listening");
        server.await.expect("server task");
    }

    #[test]
    fn non_loopback_binds_are_flagged() {
        assert!(!exposed_beyond_localhost(
            "127.0.0.1:9100".parse().expect("addr")
        ));
        assert!(!exposed_beyond_localhost(
            "[::1]:9100".parse().expect("addr")
        ));
        assert!(exposed_beyond_localhost(
            "0.0.0.0:9100".parse().expect("addr")
        ));
        assert!(exposed_beyond_localhost(
            "10.0.0.5:9100".parse().expect("addr")
        ));
    }
}
