//! Error responses: an HTTP status, a stable code and a message, as the JSON
//! body `{ "code": ..., "message": ... }` (plus `Retry-After` on 429/503).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::backend::BackendError;
use crate::codes;
use crate::submit::SubmitError;
use crate::wire::ErrorBody;

/// One error response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine code ([`crate::codes`]).
    pub code: &'static str,
    /// Explanation for people.
    pub message: String,
    /// Seconds for `Retry-After`, on 429 and 503.
    pub retry_after_secs: Option<u64>,
}

/// Seconds a client is told to wait after a full pool or an unavailable node.
const RETRY_AFTER_BUSY_SECS: u64 = 1;

impl ApiError {
    /// An error without `Retry-After`.
    #[must_use]
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// The JSON body.
    #[must_use]
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.to_string(),
            message: self.message.clone(),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        if let SubmitError::Internal { detail } = &e {
            tracing::warn!(%detail, "API submission failed internally");
        }
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after_secs = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        )
        .then_some(RETRY_AFTER_BUSY_SECS);
        ApiError {
            status,
            code: e.code(),
            message: e.public_message(),
            retry_after_secs,
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> ApiError {
        match e {
            BackendError::Unavailable => ApiError {
                retry_after_secs: Some(RETRY_AFTER_BUSY_SECS),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::UNAVAILABLE,
                    "node unavailable",
                )
            },
            BackendError::Internal { detail } => {
                tracing::warn!(%detail, "API read failed internally");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    codes::INTERNAL,
                    "internal error",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}
