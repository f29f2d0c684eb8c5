//! A minimal HTTP/1.1 client over tokio (one request per connection): enough
//! for readiness checks, prompts, worker reports and Prometheus queries,
//! without pulling a full HTTP client into the CLI.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response: status and body bytes.
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The (de-chunked) body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<Response> {
    request(addr, "GET", path, None, timeout).await
}

/// `POST path` with a JSON body.
pub async fn post_json(addr: SocketAddr, path: &str, body: &str, timeout: Duration) -> anyhow::Result<Response> {
    request(addr, "POST", path, Some(body), timeout).await
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Response> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(body) = body {
            req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
        } else {
            req.push_str("\r\n");
        }
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse(&raw)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => bail!("{method} http://{addr}{path}: no answer within {timeout:?}"),
    }
}

fn parse(raw: &[u8]) -> anyhow::Result<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("HTTP answer without a header end")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {:?}", head.lines().next().unwrap_or_default()))?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = &raw[split + 4..];
    Ok(Response { status, body: if chunked { dechunk(body) } else { body.to_vec() } })
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let Ok(n) = usize::from_str_radix(String::from_utf8_lossy(&body[..eol]).trim(), 16) else { break };
        if n == 0 || body.len() < eol + 2 + n {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + n]);
        body = &body[(eol + 4 + n).min(body.len())..];
    }
    out
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

    #[test]
    fn chunked_and_plain_bodies_are_read() {
        let r =
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "abcde"));
        let r = parse(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\n\r\nno").unwrap();
        assert_eq!((r.status, r.text().as_str()), (429, "no"));
        assert!(parse(b"garbage").is_err());
    }

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
