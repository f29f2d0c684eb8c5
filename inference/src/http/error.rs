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
    /// The model failed: 500.
    #[error("generation failed: {0}")]
    Generate(#[from] GenerateError),
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
        };
        let body = serde_json::json!({"error": {"message": message, "type": kind, "param": param}});
        let mut response = (self.status(), Json(body)).into_response();
        if let Self::Full { retry_after } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
        }
        response
    }
}
