//! The router, its limits and the server's lifecycle (docs/api.md).
//!
//! Every request passes, outermost first: a panic guard (a panic in a
//! handler becomes a JSON 500, never a dropped connection or a dead task),
//! the per-client rate limit, the request timeout, then the route's body
//! limit and handler.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;

use crate::backend::ApiBackend;
use crate::codes;
use crate::error::ApiError;
use crate::handlers::{self, ClientIp};
use crate::limiter::{ClientRateLimiter, RateLimitConfig};
use crate::listener::{BoundedListener, PeerAddr};
use crate::state_sync;

/// Submit one transaction.
pub const ROUTE_SUBMIT_TX: &str = "/v1/tx";
/// Submit a batch.
pub const ROUTE_SUBMIT_BATCH: &str = "/v1/txs";
/// Transaction status and receipt.
pub const ROUTE_TX: &str = "/v1/tx/{hash}";
/// Account balance and nonce.
pub const ROUTE_ACCOUNT: &str = "/v1/account/{id}";
/// Block by height.
pub const ROUTE_BLOCK: &str = "/v1/block/{height}";
/// Chain status.
pub const ROUTE_STATUS: &str = "/v1/status";
/// State sync: the snapshot heights served (JSON).
pub const ROUTE_STATE_SNAPSHOTS: &str = "/v1/state-sync/snapshots";
/// State sync: a snapshot's commit proof (binary).
pub const ROUTE_STATE_PROOF: &str = "/v1/state-sync/{height}/proof";
/// State sync: a snapshot's manifest (binary).
pub const ROUTE_STATE_MANIFEST: &str = "/v1/state-sync/{height}/manifest";
/// State sync: the on-chain key rotations a snapshot records (binary
/// `qbind_core::state_sync::KeyLog`).
pub const ROUTE_STATE_KEY_ROTATIONS: &str = "/v1/state-sync/{height}/key-rotations";
/// State sync: one page of a chunk, `?after=<account id hex>` (binary).
pub const ROUTE_STATE_CHUNK: &str = "/v1/state-sync/{height}/chunk/{index}";

/// Every route the router serves, as `(method, path)`; docs/openapi.yaml
/// describes exactly these (a test checks it).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", ROUTE_SUBMIT_TX),
    ("POST", ROUTE_SUBMIT_BATCH),
    ("GET", ROUTE_TX),
    ("GET", ROUTE_ACCOUNT),
    ("GET", ROUTE_BLOCK),
    ("GET", ROUTE_STATUS),
    ("GET", ROUTE_STATE_SNAPSHOTS),
    ("GET", ROUTE_STATE_PROOF),
    ("GET", ROUTE_STATE_MANIFEST),
    ("GET", ROUTE_STATE_KEY_ROTATIONS),
    ("GET", ROUTE_STATE_CHUNK),
];

/// Limits of the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    /// Largest body of `POST /v1/tx` (a transaction is 3,816 bytes, 7,632 in
    /// hex).
    pub max_tx_body_bytes: usize,
    /// Most transactions in one `POST /v1/txs`.
    pub max_batch_txs: usize,
    /// Largest body of `POST /v1/txs`.
    pub max_batch_body_bytes: usize,
    /// Per-client rate limit; `None` turns it off (tests, trusted proxies).
    pub rate_limit: Option<RateLimitConfig>,
    /// A request that takes longer (including reading its body) gets 408.
    pub request_timeout: Duration,
    /// Most open connections; beyond that the server stops accepting until
    /// one closes.
    pub max_connections: usize,
    /// A connection with no bytes read or written for this long is closed
    /// (keep it above `request_timeout`).
    pub idle_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_tx_body_bytes: 16 * 1024,
            max_batch_txs: 128,
            max_batch_body_bytes: 128 * 8 * 1024 + 4 * 1024,
            rate_limit: Some(RateLimitConfig::default()),
            request_timeout: Duration::from_secs(10),
            max_connections: 1024,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// What every handler shares.
pub(crate) struct Shared<B> {
    pub(crate) backend: Arc<B>,
    pub(crate) config: ApiConfig,
    pub(crate) limiter: Option<ClientRateLimiter>,
}

/// The 429 for a client out of tokens.
pub(crate) fn rate_limited(wait: Duration) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError {
        retry_after_secs: Some(secs.max(1)),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            "too many requests from this client",
        )
    }
}

async fn guard<B: ApiBackend>(
    State(shared): State<Arc<Shared<B>>>,
    mut request: Request,
    next: Next,
) -> Response {
    // Without connection info (a router driven directly, not through
    // `ApiServer`) every request counts as one client.
    let extensions = request.extensions();
    let ip = extensions
        .get::<ConnectInfo<PeerAddr>>()
        .map(|c| c.0.0.ip())
        .or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if let Some(limiter) = &shared.limiter
        && let Err(wait) = limiter.try_acquire(ip, 1, Instant::now())
    {
        return rate_limited(wait).into_response();
    }
    request.extensions_mut().insert(ClientIp(ip));
    match tokio::time::timeout(shared.config.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            codes::TIMEOUT,
            "request took too long",
        )
        .into_response(),
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("API handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        codes::INTERNAL,
        "internal error",
    )
    .into_response()
}

/// The API router over `backend`. Serve it with connection info
/// (`into_make_service_with_connect_info::<SocketAddr>()`, as [`ApiServer`]
/// does) so that the rate limit is per client.
pub fn router<B: ApiBackend>(backend: Arc<B>, config: ApiConfig) -> Router {
    let limiter = config.rate_limit.map(ClientRateLimiter::new);
    let tx_limit = config.max_tx_body_bytes;
    let batch_limit = config.max_batch_body_bytes;
    let shared = Arc::new(Shared {
        backend,
        config,
        limiter,
    });
    Router::new()
        .route(
            ROUTE_SUBMIT_TX,
            post(handlers::submit_tx::<B>).layer(DefaultBodyLimit::max(tx_limit)),
        )
        .route(
            ROUTE_SUBMIT_BATCH,
            post(handlers::submit_batch::<B>).layer(DefaultBodyLimit::max(batch_limit)),
        )
        .route(ROUTE_TX, get(handlers::tx_status::<B>))
        .route(ROUTE_ACCOUNT, get(handlers::account::<B>))
        .route(ROUTE_BLOCK, get(handlers::block::<B>))
        .route(ROUTE_STATUS, get(handlers::status::<B>))
        .route(ROUTE_STATE_SNAPSHOTS, get(state_sync::snapshots::<B>))
        .route(ROUTE_STATE_PROOF, get(state_sync::proof::<B>))
        .route(ROUTE_STATE_MANIFEST, get(state_sync::manifest::<B>))
        .route(
            ROUTE_STATE_KEY_ROTATIONS,
            get(state_sync::key_rotations::<B>),
        )
        .route(ROUTE_STATE_CHUNK, get(state_sync::chunk::<B>))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            guard::<B>,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(shared)
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("API server failed: {0}")]
    Serve(std::io::Error),
}

/// A bound API server; [`ApiServer::run`] serves until the shutdown future
/// resolves, then finishes the requests in flight.
#[derive(Debug)]
pub struct ApiServer {
    listener: BoundedListener,
    local_addr: SocketAddr,
    app: Router,
}

impl ApiServer {
    /// Bind `addr` (port 0 picks a free port) and build the router.
    pub async fn bind<B: ApiBackend>(
        addr: SocketAddr,
        backend: Arc<B>,
        config: ApiConfig,
    ) -> Result<ApiServer, ApiServerError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ApiServerError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ApiServerError::Bind { addr, source })?;
        let listener = BoundedListener::new(listener, config.max_connections, config.idle_timeout);
        Ok(ApiServer {
            listener,
            local_addr,
            app: router(backend, config),
        })
    }

    /// The address the server listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve until `shutdown` resolves; then stop accepting, let requests in
    /// flight finish and return.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ApiServerError> {
        axum::serve(
            self.listener,
            self.app.into_make_service_with_connect_info::<PeerAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ApiServerError::Serve)
    }
}
