//! Prometheus text exposition (format 0.0.4) and the node's `/metrics`
//! endpoint: a deliberately small HTTP/1.1 responder on tokio that answers
//! `GET /metrics` and nothing else, with a bounded request size, read and
//! write timeouts, and at most [`MAX_CONNECTIONS`] connections open at once,
//! so slow or hostile clients cannot hold tasks or file descriptors.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::AbortHandle;

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

/// Builds a Prometheus text page. Each metric name gets its `# HELP` and
/// `# TYPE` lines once, before its first sample.
#[derive(Debug, Default)]
pub struct PromText {
    out: String,
    declared: std::collections::BTreeSet<String>,
}

impl PromText {
    /// An empty page.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn declare(&mut self, name: &str, kind: &str, help: &str) {
        if self.declared.insert(name.to_string()) {
            let _ = writeln!(self.out, "# HELP {name} {help}");
            let _ = writeln!(self.out, "# TYPE {name} {kind}");
        }
    }

    /// One gauge sample without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.declare(name, "gauge", help);
        let _ = writeln!(self.out, "{name} {value}");
    }

    /// One counter sample without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.declare(name, "counter", help);
        let _ = writeln!(self.out, "{name} {value}");
    }

    /// One gauge sample with one label (the value is escaped).
    pub fn gauge_labeled(
        &mut self,
        name: &str,
        help: &str,
        label: (&str, &str),
        value: impl std::fmt::Display,
    ) {
        self.declare(name, "gauge", help);
        let _ = writeln!(
            self.out,
            "{name}{{{}=\"{}\"}} {value}",
            label.0,
            escape(label.1)
        );
    }

    /// One counter sample with one label (the value is escaped).
    pub fn counter_labeled(
        &mut self,
        name: &str,
        help: &str,
        label: (&str, &str),
        value: impl std::fmt::Display,
    ) {
        self.declare(name, "counter", help);
        let _ = writeln!(
            self.out,
            "{name}{{{}=\"{}\"}} {value}",
            label.0,
            escape(label.1)
        );
    }

    /// Append a page rendered elsewhere (e.g. by `qbind-net` or
    /// `qbind-signer`), which must already be in the text format.
    pub fn append_rendered(&mut self, text: &str) {
        self.out.push_str(text);
        if !text.is_empty() && !text.ends_with('\n') {
            self.out.push('\n');
        }
    }

    /// Append a page rendered elsewhere (e.g. by `qbind-net`), adding the
    /// label `label` to every sample and keeping one `# HELP`/`# TYPE` pair
    /// per metric name, so pages of several components (or several local
    /// validators) merge into one valid page.
    pub fn append_labeled(&mut self, text: &str, label: (&str, &str)) {
        let extra = format!("{}=\"{}\"", label.0, escape(label.1));
        for line in text.lines() {
            if let Some(rest) = line
                .strip_prefix("# HELP ")
                .or(line.strip_prefix("# TYPE "))
            {
                let name = rest.split_whitespace().next().unwrap_or_default();
                let kind = if line.starts_with("# HELP") {
                    "help"
                } else {
                    "type"
                };
                if self.declared.insert(format!("{name}#{kind}")) {
                    let _ = writeln!(self.out, "{line}");
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let (name, rest) = line.split_at(name_end);
            let labeled = match rest.strip_prefix('{') {
                Some(inner) if inner.starts_with('}') => format!("{name}{{{extra}{inner}"),
                Some(inner) => format!("{name}{{{extra},{inner}"),
                None => format!("{name}{{{extra}}}{rest}"),
            };
            let _ = writeln!(self.out, "{labeled}");
        }
    }

    /// The page.
    #[must_use]
    pub fn finish(self) -> String {
        self.out
    }
}

/// Escape a label value (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

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
        (Some("GET"), Some("/metrics")) => ("200 OK", render(), "text/plain; version=0.0.4"),
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

    #[test]
    fn text_format_declares_each_metric_once_and_escapes_labels() {
        let mut p = PromText::new();
        p.gauge("qbind_x", "An x.", 3);
        p.counter_labeled("qbind_y_total", "Ys.", ("reason", "a\"b"), 2);
        p.counter_labeled("qbind_y_total", "Ys.", ("reason", "c"), 5);
        let text = p.finish();
        assert_eq!(text.matches("# TYPE qbind_y_total counter").count(), 1);
        assert!(text.contains("qbind_x 3\n"));
        assert!(text.contains("qbind_y_total{reason=\"a\\\"b\"} 2\n"));
        assert!(text.contains("qbind_y_total{reason=\"c\"} 5\n"));
    }

    #[test]
    fn foreign_pages_are_relabeled_and_merged() {
        let page = "# HELP qbind_p2p_x X.\n# TYPE qbind_p2p_x gauge\nqbind_p2p_x 4\n\
                    # HELP qbind_p2p_y Y.\n# TYPE qbind_p2p_y counter\nqbind_p2p_y{reason=\"a\"} 1\n";
        let mut p = PromText::new();
        p.append_labeled(page, ("validator", "0"));
        p.append_labeled(page, ("validator", "1"));
        let text = p.finish();
        assert_eq!(text.matches("# TYPE qbind_p2p_x gauge").count(), 1);
        assert!(text.contains("qbind_p2p_x{validator=\"0\"} 4\n"));
        assert!(text.contains("qbind_p2p_x{validator=\"1\"} 4\n"));
        assert!(text.contains("qbind_p2p_y{validator=\"1\",reason=\"a\"} 1\n"));
    }

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
