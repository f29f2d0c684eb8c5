//! Asking the upstream's health URL: the one place that marks it up again
//! after a failure (or at start, while the upstream loads its model).

use std::time::Duration;

use hyper::Uri;

use super::Client;
use crate::queue::Queue;

/// How long one health check may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `uri` answers 2xx within [`TIMEOUT`].
pub async fn check(client: &Client, uri: &Uri) -> Result<(), String> {
    let request = hyper::Request::get(uri.clone()).body(axum::body::Body::empty()).map_err(|e| e.to_string())?;
    match tokio::time::timeout(TIMEOUT, client.request(request)).await {
        Ok(Ok(r)) if r.status().is_success() => Ok(()),
        Ok(Ok(r)) => Err(format!("answered {}", r.status())),
        Ok(Err(e)) => Err(super::forward::chain(&e)),
        Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
    }
}

/// Checks `uri` every `interval` forever, setting the queue's availability
/// from the answer and logging each change.
pub async fn watch(client: Client, uri: Uri, interval: Duration, queue: Queue) {
    let mut first = true;
    loop {
        let result = check(&client, &uri).await;
        // A failed request may have marked the upstream down since the last check.
        let was_up = !queue.counts().unavailable;
        match &result {
            Ok(()) if first || !was_up => tracing::info!(health = %uri, "upstream is up; taking work"),
            Err(error) if first || was_up => {
                tracing::warn!(health = %uri, %error, "upstream is down; generations get 502, endpoint withdrawn")
            }
            _ => {}
        }
        queue.set_available(result.is_ok());
        first = false;
        tokio::time::sleep(interval).await;
    }
}
