//! The one mapping from a request's failure to an HTTP answer. Bodies follow
//! the OpenAI error shape: `{"error": {"message", "type", "param"}}`, where
//! `param` names the offending field.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::model::pipeline::GenerateError;
use crate::queue::Rejected;
use crate::validation::ValidationError;

/// Why a generation request was not served.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field is wrong: 400.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Every queue slot is taken: 429 with Retry-After.
    #[error("the queue is full; retry after {} s", retry_after.as_secs())]
    Full {
        /// The estimate sent in Retry-After.
        retry_after: Duration,
    },
    /// Shutting down: 503.
    #[error("the worker is shutting down and takes no new work")]
    Draining,
    /// The model is still loading or warming up: 503.
    #[error("the model is not loaded yet")]
    NotReady,
    /// The proxy's upstream server did not answer, or is down until its
    /// health URL answers again: 502.
    #[error("upstream {upstream} {reason}")]
    Upstream {
        /// The upstream's base URL.
        upstream: String,
        /// What went wrong, a sentence fragment ("is down: …").
        reason: String,
    },
    /// The body could not be read: over the size limit (413) or cut off (400).
    #[error("{message}")]
    Body {
        /// Whether it was over the limit.
        too_large: bool,
        /// What happened and what the limit is.
        message: String,
    },
    /// The model failed: 500.
    #[error("generation failed: {0}")]
    Generate(#[from] GenerateError),
}

/// `Retry-After` of a 503: the model loads in seconds to minutes, and a
/// draining worker's endpoint has left the inventory by then.
pub const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(5);

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        Self::body(r, super::MAX_BODY_BYTES)
    }
}

impl ApiError {
    /// A body that could not be read on a route whose limit is `limit` bytes.
    pub fn body(r: axum::extract::rejection::BytesRejection, limit: usize) -> Self {
        let too_large = r.status() == StatusCode::PAYLOAD_TOO_LARGE;
        let message = if too_large {
            format!("the body is over the limit of {limit} bytes")
        } else {
            format!("the body could not be read: {}", r.body_text())
        };
        Self::Body { too_large, message }
    }
}

impl From<Rejected> for ApiError {
    fn from(r: Rejected) -> Self {
        match r {
            Rejected::Full { retry_after } => Self::Full { retry_after },
            Rejected::Draining => Self::Draining,
            Rejected::Unavailable => Self::NotReady,
        }
    }
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Full { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Draining | Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::Generate(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::Body { too_large: true, .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body { too_large: false, .. } => StatusCode::BAD_REQUEST,
        }
    }

    /// The bounded `reason` label for rejections, if this is one. (The
    /// proxy counts its own, `upstream_down`, where it refuses admission: an
    /// upstream failing a request it already queued is not a rejection.)
    pub fn rejection(&self) -> Option<&'static str> {
        match self {
            Self::Full { .. } => Some("full"),
            Self::Draining => Some("draining"),
            Self::NotReady => Some("not_ready"),
            Self::Body { too_large: true, .. } => Some("too_large"),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (kind, param, message) = match &self {
            Self::Invalid(e) => ("invalid_request_error", Some(e.field.clone()), e.to_string()),
            Self::Full { .. } => ("rate_limit_error", None, self.to_string()),
            Self::Draining | Self::NotReady => ("unavailable", None, self.to_string()),
            Self::Generate(_) => ("server_error", None, self.to_string()),
            Self::Upstream { .. } => ("upstream_error", None, self.to_string()),
            Self::Body { .. } => ("invalid_request_error", Some("body".to_owned()), self.to_string()),
        };
        let body = serde_json::json!({"error": {"message": message, "type": kind, "param": param}});
        let mut response = (self.status(), Json(body)).into_response();
        let retry_after = match self {
            Self::Full { retry_after } => Some(retry_after),
            Self::Draining | Self::NotReady => Some(UNAVAILABLE_RETRY_AFTER),
            _ => None,
        };
        if let Some(after) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn unavailable_says_when_to_retry_in_the_openai_shape() {
        for e in [ApiError::Draining, ApiError::NotReady] {
            let response = e.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "5");
            let body = body_of(response).await;
            assert_eq!(body["error"]["type"], "unavailable", "{body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_naming_the_body() {
        let e = ApiError::Body { too_large: true, message: "the body is over the limit of 65536 bytes".into() };
        assert_eq!(e.rejection(), Some("too_large"));
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = body_of(response).await;
        assert_eq!(body["error"]["param"], "body");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}
