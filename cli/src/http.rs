//! HTTP calls of the CLI over tokio (readiness checks, prompts, worker
//! reports, Prometheus queries): the project's one HTTP/1.1 client,
//! [`edge_telemetry::http1`], with a connect and a deadline around it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use edge_telemetry::http1::Request;

/// A response: status, headers and body bytes.
pub use edge_telemetry::http1::Answer as Response;

/// The most of an answer read (a batch of images as base64 JSON fits).
const MAX_ANSWER: u64 = 512 << 20;

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<Response> {
    let host = addr.to_string();
    exchange(addr, Request::get(&host, path), timeout).await
}

/// `POST path` with a JSON body.
pub async fn post_json(addr: SocketAddr, path: &str, body: &str, timeout: Duration) -> anyhow::Result<Response> {
    let host = addr.to_string();
    exchange(addr, Request::post_json(&host, path, body.as_bytes()), timeout).await
}

async fn exchange(addr: SocketAddr, request: Request<'_>, timeout: Duration) -> anyhow::Result<Response> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        request
            .send(stream, MAX_ANSWER)
            .await
            .with_context(|| format!("{} http://{addr}{}", request.method, request.path))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => bail!("{} http://{addr}{}: no answer within {timeout:?}", request.method, request.path),
    }
}

/// Splits `http://host:port[/prefix]` into a socket address and the path
/// prefix (without a trailing `/`).
pub async fn parse_url(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url {url:?}: expected http://HOST:PORT (https is not supported)"))?;
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let addr = tokio::net::lookup_host(authority)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .with_context(|| format!("--url {url:?}: {authority:?} is not HOST:PORT"))?;
    let prefix = if path.is_empty() { String::new() } else { format!("/{}", path.trim_end_matches('/')) };
    Ok((addr, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_give_an_address_and_a_prefix() {
        let (addr, prefix) = parse_url("http://127.0.0.1:8080").await.unwrap();
        assert_eq!((addr.to_string().as_str(), prefix.as_str()), ("127.0.0.1:8080", ""));
        let (_, prefix) = parse_url("http://127.0.0.1:8080/api/").await.unwrap();
        assert_eq!(prefix, "/api");
        assert!(parse_url("https://127.0.0.1:8080").await.unwrap_err().to_string().contains("--url"));
        assert!(parse_url("http://nowhere").await.is_err());
    }
}
