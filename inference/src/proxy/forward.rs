//! Forwarding one request. A generation takes a queue slot (or is turned
//! away), waits for a runner, and holds it until the upstream's response body
//! has been streamed to the client; bodies stream both ways, frame by frame,
//! never buffered whole.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Version, header};
use axum::response::{IntoResponse, Response};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;

use super::Proxy;
use crate::http::error::ApiError;
use crate::metrics::Metrics;
use crate::queue::{Rejected, Running};

/// Every path the proxy does not answer itself.
pub async fn handle(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    if !super::routes::is_generation(&proxy.routes, request.uri().path()) {
        return proxy.forward(request, None).await.unwrap_or_else(IntoResponse::into_response);
    }
    crate::http::routes::answered(&proxy.metrics, proxy.generation(request).await)
}

impl Proxy {
    async fn generation(&self, request: Request) -> Result<Response, ApiError> {
        let ticket = self.queue.admit().map_err(|r| match r {
            Rejected::Unavailable => {
                self.metrics.rejected("upstream_down");
                self.down("is down: its health URL has not answered since the last failure")
            }
            other => other.into(),
        })?;
        let running = ticket.start().await;
        self.metrics.queue_wait_seconds.observe(running.waited().as_secs_f64());
        self.forward(request, Some(running)).await
    }

    fn down(&self, reason: impl Into<String>) -> ApiError {
        ApiError::Upstream { upstream: self.upstream.to_string(), reason: reason.into() }
    }

    /// Sends `request` upstream and streams the answer back; `running`, if
    /// any, is released when the answer's body ends.
    ///
    /// The exchange runs on a task of its own that holds the runner: most
    /// servers carry on computing when the client hangs up, so a client that
    /// leaves does not free the runner early; the task reads the answer to its
    /// end instead, and only then is the upstream free for the next request.
    async fn forward(&self, request: Request, running: Option<Running>) -> Result<Response, ApiError> {
        let (mut parts, body) = request.into_parts();
        parts.uri = self.upstream.uri(parts.uri.path_and_query());
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        if let Ok(host) = HeaderValue::from_str(self.upstream.authority().as_str()) {
            parts.headers.insert(header::HOST, host);
        }
        let request = Request::from_parts(parts, body);
        let (client, metrics, timeout) = (self.client.clone(), self.metrics.clone(), self.timeout);
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let answer = match tokio::time::timeout(timeout, client.request(request)).await {
                Ok(Ok(answer)) => {
                    let (parts, body) = answer.into_parts();
                    Ok((parts, Held { inner: body, running, metrics }))
                }
                Ok(Err(e)) => Err(chain(&e)),
                Err(_) => Err(format!("sent no answer within --upstream-timeout {timeout:?}")),
            };
            if let Err(Ok((_, mut held))) = tx.send(answer) {
                while let Some(Ok(_)) = std::future::poll_fn(|cx| Pin::new(&mut held).poll_frame(cx)).await {}
            }
        });
        let answer = rx.await.unwrap_or_else(|_| Err("the forwarding task stopped".to_owned()));
        let (mut parts, held) = answer.map_err(|error| {
            // Down until the health URL answers again: admission refuses and
            // the reports withdraw the endpoint.
            self.queue.set_available(false);
            tracing::warn!(upstream = %self.upstream, %error, "upstream request failed; marked down until its health URL answers");
            self.down(format!("did not answer: {error}"))
        })?;
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(held)))
    }
}

/// An error and its sources, one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Removes the headers that belong to one connection (RFC 9110 §7.6.1),
/// those the `Connection` header names included.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// The upstream's response body, holding the request's runner until the
/// last frame (or until the client goes away and the body is dropped).
struct Held {
    inner: Incoming,
    running: Option<Running>,
    metrics: Arc<Metrics>,
}

impl Held {
    fn finish(&mut self) {
        if let Some(running) = self.running.take() {
            self.metrics.request_seconds.observe(running.admitted().elapsed().as_secs_f64());
        }
    }
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            self.finish();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_stay_on_their_connection() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-trace"),
            ("keep-alive", "timeout=5"),
            ("x-trace", "1"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
            ("content-length", "12"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "content-type"]);
    }
}
