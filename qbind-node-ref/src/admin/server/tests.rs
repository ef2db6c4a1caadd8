//! The admin server against a fake backend: authentication, routes,
//! request bounds, and what slow or hostile clients can hold.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Answers `status`; `snapshot` fails as with snapshots off; `prune` is
/// not ready; `peers` sleeps (a slow action).
struct Fake;

impl AdminBackend for Fake {
    fn run(&self, action: Action) -> Result<serde_json::Value, AdminError> {
        match action {
            Action::Snapshot => Err(AdminError::Failed(NodeError::SnapshotsOff)),
            Action::Prune => Err(AdminError::NotReady),
            Action::Peers => {
                std::thread::sleep(Duration::from_secs(2));
                Ok(serde_json::json!({"nodes": []}))
            }
            _ => Ok(serde_json::json!({"fake": action.name()})),
        }
    }
}

struct Running {
    addr: SocketAddr,
    metrics: Arc<AdminMetrics>,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn start(config: AdminConfig) -> Running {
    let metrics = Arc::new(AdminMetrics::default());
    let server = AdminServer::bind(
        "127.0.0.1:0".parse().expect("addr"),
        AdminToken::parse(TOKEN).expect("token"),
        Arc::new(Fake),
        Arc::clone(&metrics),
        config,
    )
    .await
    .expect("bind");
    let addr = server.local_addr();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(server.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    Running {
        addr,
        metrics,
        stop,
    }
}

/// Send `request` raw and read the whole response (the server closes).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn post(path: &str, token: Option<&str>, body: &str) -> Vec<u8> {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_token_is_checked_before_anything_else() {
    let server = start(AdminConfig::default()).await;
    let addr = server.addr;
    let ok = raw(addr, &post("/admin/v1/status", Some(TOKEN), "")).await;
    assert_eq!(status_of(&ok), 200, "{ok}");
    assert!(ok.contains(r#""fake":"status""#), "{ok}");
    assert_eq!(
        status_of(&raw(addr, &post("/admin/v1/status", Some(TOKEN), "{}")).await),
        200
    );
    let mut wrong = TOKEN.to_string();
    wrong.replace_range(63.., "e");
    for token in [None, Some(wrong.as_str()), Some("short"), Some("")] {
        let denied = raw(addr, &post("/admin/v1/status", token, "")).await;
        assert_eq!(status_of(&denied), 401, "{denied}");
        assert!(denied.contains(r#""error":"unauthorized""#), "{denied}");
        assert!(
            denied
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer")
        );
    }
    // Without the token, unknown routes and methods are 401 too.
    assert_eq!(status_of(&raw(addr, &post("/nope", None, "")).await), 401);
    assert_eq!(
        status_of(
            &raw(
                addr,
                b"GET /admin/v1/status HTTP/1.1\r\nConnection: close\r\n\r\n"
            )
            .await
        ),
        401
    );
    // Basic (not Bearer) is refused.
    let basic = format!(
        "POST /admin/v1/status HTTP/1.1\r\nAuthorization: Basic {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(status_of(&raw(addr, basic.as_bytes()).await), 401);
    let m = &server.metrics;
    assert_eq!(m.count(Some(Action::Status), Outcome::Ok), 2);
    assert_eq!(m.count(Some(Action::Status), Outcome::Unauthorized), 6);
    assert_eq!(m.count(None, Outcome::Unauthorized), 1);
    let page = crate::metrics::render(&crate::metrics::families::registry({
        let m = Arc::clone(m);
        move || m.families()
    }));
    assert!(
        page.contains(r#"qbind_admin_requests_total{action="status",result="unauthorized"} 6"#),
        "{page}"
    );
    let _ = server.stop.send(true);
}

#[tokio::test]
async fn routes_methods_bodies_and_failures_get_their_codes() {
    let server = start(AdminConfig::default()).await;
    let addr = server.addr;
    let cases: [(Vec<u8>, u16, &str); 6] = [
        (post("/admin/v1/reboot", Some(TOKEN), ""), 404, "not_found"),
        (
            format!("GET /admin/v1/status HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n")
                .into_bytes(),
            405,
            "method_not_allowed",
        ),
        (
            post("/admin/v1/status", Some(TOKEN), r#"{"height":1}"#),
            400,
            "bad_request",
        ),
        (
            post("/admin/v1/status", Some(TOKEN), &"x".repeat(5_000)),
            413,
            "payload_too_large",
        ),
        (post("/admin/v1/snapshot", Some(TOKEN), ""), 409, "action_failed"),
        (post("/admin/v1/prune", Some(TOKEN), ""), 503, "unavailable"),
    ];
    for (request, want, code) in cases {
        let response = raw(addr, &request).await;
        assert_eq!(status_of(&response), want, "{response}");
        assert!(
            response.contains(&format!(r#""error":"{code}""#)),
            "{response}"
        );
    }
    assert!(
        raw(addr, &post("/admin/v1/snapshot", Some(TOKEN), ""))
            .await
            .contains("--snapshot-dir")
    );
    let m = &server.metrics;
    assert_eq!(m.count(None, Outcome::Rejected), 1);
    assert_eq!(m.count(Some(Action::Status), Outcome::Rejected), 3);
    assert_eq!(m.count(Some(Action::Snapshot), Outcome::Failed), 2);
    assert_eq!(m.count(Some(Action::Prune), Outcome::Failed), 1);
    let _ = server.stop.send(true);
}

/// A body announced but never sent is answered 408 after the read timeout;
/// an action slower than the action timeout is answered 503.
#[tokio::test]
async fn slow_bodies_and_slow_actions_are_cut_off() {
    let server = start(AdminConfig {
        read_timeout: Duration::from_millis(300),
        action_timeout: Duration::from_millis(300),
        ..AdminConfig::default()
    })
    .await;
    let head = format!(
        "POST /admin/v1/status HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{"
    );
    let started = Instant::now();
    let response = raw(server.addr, head.as_bytes()).await;
    assert_eq!(status_of(&response), 408, "{response}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let response = raw(server.addr, &post("/admin/v1/peers", Some(TOKEN), "")).await;
    assert_eq!(status_of(&response), 503, "{response}");
    assert!(response.contains("did not finish"), "{response}");
    let _ = server.stop.send(true);
}

/// An action that takes longer than the idle timeout is answered: nothing
/// moves on the connection while it runs, and the idle timeout once cut it
/// off (review finding: a slow snapshot looked like an unreachable node).
#[tokio::test]
async fn an_action_slower_than_the_idle_timeout_is_answered() {
    let server = start(AdminConfig {
        idle_timeout: Duration::from_millis(500),
        read_timeout: Duration::from_millis(300),
        action_timeout: Duration::from_secs(5),
        ..AdminConfig::default()
    })
    .await;
    // `peers` takes 2 s in the fake backend.
    let response = raw(server.addr, &post("/admin/v1/peers", Some(TOKEN), "")).await;
    assert_eq!(status_of(&response), 200, "{response}");
    let _ = server.stop.send(true);
}

/// Slowloris: clients that trickle their request head a byte at a time
/// hold at most `max_connections` slots, each for at most `max_lifetime`;
/// then an operator's request goes through, and the tricklers are closed.
#[tokio::test]
async fn trickling_and_idle_clients_hold_bounded_slots_for_bounded_time() {
    let config = AdminConfig {
        max_connections: 3,
        idle_timeout: Duration::from_millis(800),
        max_lifetime: Duration::from_millis(1_500),
        ..AdminConfig::default()
    };
    let server = start(config.clone()).await;
    let addr = server.addr;
    let mut tricklers = Vec::new();
    for _ in 0..config.max_connections + 2 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        tricklers.push(tokio::spawn(async move {
            // One byte every 200 ms: never idle long enough to be closed
            // by the idle timeout.
            for b in
                b"POST /admin/v1/status HTTP/1.1\r\nHost: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            {
                if s.write_all(&[*b]).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            false
        }));
    }
    // Plus idle connections that send nothing.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let started = Instant::now();
    let ok = tokio::time::timeout(
        Duration::from_secs(10),
        raw(addr, &post("/admin/v1/status", Some(TOKEN), "")),
    )
    .await
    .expect("answered while tricklers hold the slots");
    assert_eq!(status_of(&ok), 200, "{ok}");
    // Waiting for a slot took at most about two lifetimes (the first
    // tricklers, then the ones admitted after them).
    assert!(
        started.elapsed() < config.max_lifetime * 3,
        "{:?}",
        started.elapsed()
    );
    for t in tricklers {
        assert!(
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("trickler ended")
                .expect("task"),
            "a trickler was never cut off"
        );
    }
    let _ = server.stop.send(true);
}
