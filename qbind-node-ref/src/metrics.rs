//! Prometheus text exposition (format 0.0.4) and the node's `/metrics`
//! endpoint: a deliberately small HTTP/1.1 responder on tokio that answers
//! `GET /metrics` and nothing else, with a bounded request size and a read
//! timeout so a slow or hostile client cannot hold a task for long.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Largest request head the endpoint reads.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

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
    pub fn gauge_labeled(&mut self, name: &str, help: &str, label: (&str, &str), value: u64) {
        self.declare(name, "gauge", help);
        let _ = writeln!(
            self.out,
            "{name}{{{}=\"{}\"}} {value}",
            label.0,
            escape(label.1)
        );
    }

    /// One counter sample with one label (the value is escaped).
    pub fn counter_labeled(&mut self, name: &str, help: &str, label: (&str, &str), value: u64) {
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

/// Serve `GET /metrics` on `listener` until `shutdown` becomes true.
pub async fn serve(listener: TcpListener, render: Renderer, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let _ = answer(stream, render).await;
        });
    }
}

/// Bind the endpoint (separately from [`serve`], so a bad address is an
/// error at start-up rather than in a background task).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
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
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
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

    #[tokio::test]
    async fn endpoint_serves_metrics_and_refuses_other_requests() {
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = watch::channel(false);
        let render: Renderer = Arc::new(|| "qbind_up 1\n".to_string());
        let server = tokio::spawn(serve(listener, render, stopped));
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
}
