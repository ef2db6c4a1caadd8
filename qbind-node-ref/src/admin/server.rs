//! The admin endpoint's HTTP server: axum over `qbind-api`'s bounded
//! listener, the HTTP stack of the public API.
//!
//! Every request is checked in this order: the token (missing or wrong:
//! 401, before anything else is looked at, so an unauthenticated client
//! learns nothing about routes), the method and route, the body (read
//! within [`AdminConfig::read_timeout`], at most
//! [`AdminConfig::max_body_bytes`]), then the action runs on a blocking
//! thread, never on the node's async workers, answered within
//! [`AdminConfig::action_timeout`]. The listener holds at most
//! [`AdminConfig::max_connections`] connections, closes one idle for
//! [`AdminConfig::idle_timeout`] and any open for
//! [`AdminConfig::max_lifetime`], so slow or hostile clients hold a bounded
//! number of sockets for a bounded time and never stall the node. Every
//! request is counted in `qbind_admin_requests_total{action,result}`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use qbind_api::listener::BoundedListener;

use super::token::AdminToken;
use super::wire::{Action, ErrorReply, codes};
use crate::metrics::families::Family;
use crate::node::NodeError;

/// Limits of the admin endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// Largest request body (actions take none; `{}` fits easily).
    pub max_body_bytes: usize,
    /// Most connections open at once; further clients wait in the
    /// kernel's backlog.
    pub max_connections: usize,
    /// A connection that sends nothing for this long after it was accepted
    /// is closed; once it has sent a byte only `max_lifetime` bounds it
    /// (nothing moves on a connection while its action runs, and an idle
    /// timer cut off a slow snapshot or prune: review finding).
    pub idle_timeout: Duration,
    /// A connection open for this long is closed, however busy (a client
    /// trickling its request cannot hold a slot longer). Keep it above
    /// `read_timeout + action_timeout`.
    pub max_lifetime: Duration,
    /// The body must arrive within this.
    pub read_timeout: Duration,
    /// An action not finished by then is answered 503 (it goes on).
    pub action_timeout: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            max_body_bytes: 4 * 1024,
            max_connections: 8,
            idle_timeout: Duration::from_secs(10),
            max_lifetime: Duration::from_secs(90),
            read_timeout: Duration::from_secs(5),
            action_timeout: Duration::from_secs(60),
        }
    }
}

/// Why an action was not done.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The node has not started its engines yet (e.g. state sync runs).
    #[error("the node is still starting; try again once it runs")]
    NotReady,
    /// The node refused the action or it failed.
    #[error(transparent)]
    Failed(#[from] NodeError),
}

/// What the admin endpoint runs actions on.
pub trait AdminBackend: Send + Sync + 'static {
    /// Run `action` and return its JSON reply (one of the reply types of
    /// [`super::wire`]). Called on a blocking thread: it may take a while
    /// (snapshot, prune).
    ///
    /// # Errors
    /// [`AdminError`].
    fn run(&self, action: Action) -> Result<serde_json::Value, AdminError>;
}

/// How a request ended, for `qbind_admin_requests_total{result}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Ok,
    /// Authenticated, but the node refused or the action failed.
    Failed,
    /// No token or a wrong one.
    Unauthorized,
    /// Authenticated, but not a valid request (route, method, body).
    Rejected,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Failed,
        Outcome::Unauthorized,
        Outcome::Rejected,
    ];

    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Rejected => "rejected",
        }
    }
}

/// The `action` label of a request naming no action.
const UNKNOWN_ACTION: &str = "unknown";

/// `qbind_admin_requests_total{action,result}`: one counter per action
/// (and `unknown`) and outcome, a fixed set a client cannot grow.
#[derive(Debug)]
pub struct AdminMetrics {
    counts: [[AtomicU64; 4]; Action::ALL.len() + 1],
}

impl Default for AdminMetrics {
    fn default() -> Self {
        AdminMetrics {
            counts: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl AdminMetrics {
    fn slot(&self, action: Option<Action>, outcome: Outcome) -> Option<&AtomicU64> {
        let row = action.map_or(Action::ALL.len(), Action::index);
        let col = Outcome::ALL.iter().position(|o| *o == outcome)?;
        self.counts.get(row)?.get(col)
    }

    /// Count one request.
    pub fn record(&self, action: Option<Action>, outcome: Outcome) {
        if let Some(c) = self.slot(action, outcome) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests counted for `action` (`None`: unknown) with `outcome`.
    #[must_use]
    pub fn count(&self, action: Option<Action>, outcome: Outcome) -> u64 {
        self.slot(action, outcome)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The family for the node's registry.
    #[must_use]
    pub fn families(&self) -> Vec<Family> {
        let mut family = Family::counter(
            "qbind_admin_requests_total",
            "Admin endpoint requests by action and result (ok, failed, unauthorized, rejected).",
        );
        let actions = Action::ALL
            .into_iter()
            .map(Some)
            .chain(std::iter::once(None));
        for action in actions {
            for outcome in Outcome::ALL {
                family.push(
                    vec![
                        ("action", action.map_or(UNKNOWN_ACTION, Action::name).into()),
                        ("result", outcome.name().into()),
                    ],
                    self.count(action, outcome),
                );
            }
        }
        vec![family]
    }
}

struct Shared<B> {
    token: AdminToken,
    backend: Arc<B>,
    metrics: Arc<AdminMetrics>,
    config: AdminConfig,
}

/// A JSON error response.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ErrorReply {
        error: code.to_string(),
        message: message.into(),
    };
    (status, axum::Json(body)).into_response()
}

/// Whether the `Authorization` header carries the token.
fn authorized(token: &AdminToken, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|presented| token.verify(presented))
}

/// An action's body: empty or an empty JSON object.
fn body_ok(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.trim().is_empty()
        || serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
            .is_ok_and(|m| m.is_empty())
}

async fn handle<B: AdminBackend>(
    State(shared): State<Arc<Shared<B>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let action = Action::of_path(uri.path());
    let (outcome, response) = answer(&shared, action, &method, &headers, body).await;
    shared.metrics.record(action, outcome);
    let (name, status) = (
        action.map_or(UNKNOWN_ACTION, Action::name),
        response.status().as_u16(),
    );
    if outcome == Outcome::Unauthorized {
        // Anyone who can connect can send these, as fast as they like: the
        // counter (qbind_admin_requests_total{result="unauthorized"}) is
        // what to alert on, not one log line each (review finding).
        tracing::debug!(
            action = name,
            result = outcome.name(),
            status,
            "admin request"
        );
    } else {
        tracing::info!(
            action = name,
            result = outcome.name(),
            status,
            "admin request"
        );
    }
    response
}

async fn answer<B: AdminBackend>(
    shared: &Shared<B>,
    action: Option<Action>,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> (Outcome, Response) {
    if !authorized(&shared.token, headers) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "missing or wrong admin token (Authorization: Bearer <token>)",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return (Outcome::Unauthorized, response);
    }
    let Some(action) = action else {
        return (
            Outcome::Rejected,
            error(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such action"),
        );
    };
    if method != Method::POST {
        return (
            Outcome::Rejected,
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                codes::METHOD_NOT_ALLOWED,
                "admin actions are POST",
            ),
        );
    }
    let read = tokio::time::timeout(
        shared.config.read_timeout,
        axum::body::to_bytes(body, shared.config.max_body_bytes),
    )
    .await;
    match read {
        Err(_) => {
            return (
                Outcome::Rejected,
                error(
                    StatusCode::REQUEST_TIMEOUT,
                    codes::TIMEOUT,
                    "request body not received in time",
                ),
            );
        }
        Ok(Err(_)) => {
            return (
                Outcome::Rejected,
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    codes::PAYLOAD_TOO_LARGE,
                    format!("request body above {} bytes", shared.config.max_body_bytes),
                ),
            );
        }
        Ok(Ok(bytes)) if !body_ok(&bytes) => {
            return (
                Outcome::Rejected,
                error(
                    StatusCode::BAD_REQUEST,
                    codes::BAD_REQUEST,
                    "admin actions take no parameters: send no body or {}",
                ),
            );
        }
        Ok(Ok(_)) => {}
    }
    let backend = Arc::clone(&shared.backend);
    let job = tokio::task::spawn_blocking(move || backend.run(action));
    match tokio::time::timeout(shared.config.action_timeout, job).await {
        Ok(Ok(Ok(reply))) => (
            Outcome::Ok,
            (StatusCode::OK, axum::Json(reply)).into_response(),
        ),
        Ok(Ok(Err(AdminError::NotReady))) => (
            Outcome::Failed,
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::UNAVAILABLE,
                AdminError::NotReady.to_string(),
            ),
        ),
        Ok(Ok(Err(AdminError::Failed(e)))) => (
            Outcome::Failed,
            error(StatusCode::CONFLICT, codes::ACTION_FAILED, e.to_string()),
        ),
        Ok(Err(_)) => (
            Outcome::Failed,
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::ACTION_FAILED,
                "the action stopped unexpectedly; see the node's log",
            ),
        ),
        Err(_) => (
            Outcome::Failed,
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::UNAVAILABLE,
                format!(
                    "{} did not finish within {} s; it goes on (see the node's log)",
                    action.name(),
                    shared.config.action_timeout.as_secs()
                ),
            ),
        ),
    }
}

/// The admin router: every path goes through the token check.
pub fn router<B: AdminBackend>(
    token: AdminToken,
    backend: Arc<B>,
    metrics: Arc<AdminMetrics>,
    config: AdminConfig,
) -> Router {
    let shared = Arc::new(Shared {
        token,
        backend,
        metrics,
        config,
    });
    Router::new().fallback(handle::<B>).with_state(shared)
}

/// A bound admin endpoint; [`AdminServer::run`] serves it.
#[derive(Debug)]
pub struct AdminServer {
    listener: BoundedListener,
    local_addr: SocketAddr,
    app: Router,
}

impl AdminServer {
    /// Bind `addr` (port 0: a free port). The caller checks the address
    /// ([`super::check_addr`]).
    ///
    /// # Errors
    /// [`NodeError::Io`] if the address cannot be bound.
    pub async fn bind<B: AdminBackend>(
        addr: SocketAddr,
        token: AdminToken,
        backend: Arc<B>,
        metrics: Arc<AdminMetrics>,
        config: AdminConfig,
    ) -> Result<AdminServer, NodeError> {
        let io = |source| NodeError::Io {
            what: format!("binding the admin endpoint {addr}"),
            source,
        };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(io)?;
        let local_addr = listener.local_addr().map_err(io)?;
        let listener = BoundedListener::new(listener, config.max_connections, config.idle_timeout)
            .with_max_lifetime(config.max_lifetime)
            .with_idle_until_first_read();
        Ok(AdminServer {
            listener,
            local_addr,
            app: router(token, backend, metrics, config),
        })
    }

    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve until `shutdown` resolves.
    ///
    /// # Errors
    /// The server's I/O error.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

#[cfg(test)]
mod tests;
