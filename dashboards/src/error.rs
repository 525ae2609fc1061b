//! [`ApiError`]: every way a request can fail, and the JSON body each one answers with.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A query parameter is missing or invalid; names it.
    #[error("invalid parameter `{parameter}`: {reason}")]
    BadParameter {
        /// The parameter's name.
        parameter: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing with that id.
    #[error("{0} not found")]
    NotFound(String),
    /// The query ran longer than allowed.
    #[error("query exceeded its time limit of {0} ms")]
    Timeout(u64),
    /// As many searches as allowed run already; answered 429 with `Retry-After`.
    #[error("too many searches at once; retry in {0} s")]
    Busy(u64),
    /// The index is not open yet (the server listens while it waits for it).
    #[error("the index is not open yet")]
    NotReady,
    /// Something failed on our side; details go to the log, not the client.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A bad-parameter error.
    pub fn bad(parameter: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError::BadParameter {
            parameter,
            reason: reason.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Timeout(_) | ApiError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "API request failed");
        }
        let mut body = json!({ "error": { "message": self.to_string() } });
        if let ApiError::BadParameter { parameter, .. } = &self {
            body["error"]["parameter"] = json!(parameter);
        }
        let mut response = (self.status(), Json(body)).into_response();
        match self {
            ApiError::Unauthorized => {
                response.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            ApiError::Busy(secs) => {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, secs.into());
            }
            _ => {}
        }
        response
    }
}
