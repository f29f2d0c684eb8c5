//! Blocking HTTP for tests: the project's one HTTP/1.1 client
//! ([`edge_telemetry::http1`]) over std TCP and Unix sockets, one request
//! per connection; and [`KeepAlive`], one held connection for latency
//! benchmarks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub use edge_telemetry::http1::{Answer as Response, Request};
use edge_telemetry::http1::{Http1Error, receive_blocking};

/// How long a plain call waits for its answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// More than any answer a test reads (a batch of PNGs).
const MAX_ANSWER: u64 = 1 << 30;

/// What tests read from an answer beyond status, headers and bytes.
pub trait ResponseExt {
    /// The body as JSON; panics with the body when it is not.
    fn json(&self) -> serde_json::Value;
    /// A metric's `dur` from the `Server-Timing` header, in milliseconds.
    fn server_timing(&self, name: &str) -> Option<f64>;
}

impl ResponseExt for Response {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn server_timing(&self, name: &str) -> Option<f64> {
        self.header("server-timing")?
            .split(',')
            .find_map(|part| part.trim().strip_prefix(name)?.strip_prefix(";dur=")?.parse().ok())
    }
}

/// Sends `request` on a fresh connection to `addr` and reads the answer,
/// waiting up to `timeout` for it.
pub fn exchange(addr: SocketAddr, request: &Request, timeout: Duration) -> std::io::Result<Response> {
    receive(send(addr, request, timeout)?)
}

/// Writes `request` on a fresh connection and returns the open stream (for
/// requests that overlap: read each answer later with [`receive`], or drop
/// the stream to hang up).
pub fn send(addr: SocketAddr, request: &Request, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut stream = connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    request.write_blocking(&mut stream)?;
    Ok(stream)
}

/// [`send`] of a JSON `POST` that may wait long for its answer (an image
/// generation queued behind others).
pub fn send_json(addr: SocketAddr, path: &str, body: &str) -> std::io::Result<TcpStream> {
    let host = addr.to_string();
    send(addr, &Request::post_json(&host, path, body.as_bytes()), crate::process::GENERATION_PATIENCE)
}

/// Reads the whole answer from a stream [`send`] returned.
pub fn receive(stream: impl Read) -> std::io::Result<Response> {
    receive_blocking(stream, MAX_ANSWER).map_err(io_error)
}

/// `GET path`; returns status and body.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    get_response(addr, path).map(status_and_text)
}

/// `GET path`; the whole answer, headers included.
pub fn get_response(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    get_response_with(addr, path, &[])
}

/// [`get_response`] with extra header lines (each `Name: value`).
pub fn get_response_with(addr: SocketAddr, path: &str, headers: &[&str]) -> std::io::Result<Response> {
    let host = addr.to_string();
    exchange(addr, &Request { headers, ..Request::get(&host, path) }, TIMEOUT)
}

/// `POST path` with a JSON body.
pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    post_json_timeout(addr, path, body, TIMEOUT)
}

/// `POST path` with a JSON body over a Unix socket.
pub fn post_json_unix(socket: &Path, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    Request::post_json("localhost", path, body.as_bytes())
        .send_blocking(stream, MAX_ANSWER)
        .map(status_and_text)
        .map_err(io_error)
}

/// `POST path` with a JSON body, waiting up to `timeout` for the answer (a
/// request that queues behind others, e.g. an image generation).
pub fn post_json_timeout(
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    post_response(addr, path, body, timeout).map(status_and_text)
}

/// `POST path` with a JSON body, waiting up to `timeout`; the whole answer,
/// headers included (a 429's `Retry-After`).
pub fn post_response(addr: SocketAddr, path: &str, body: &str, timeout: Duration) -> std::io::Result<Response> {
    let host = addr.to_string();
    exchange(addr, &Request::post_json(&host, path, body.as_bytes()), timeout)
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

fn status_and_text(r: Response) -> (u16, String) {
    (r.status, r.text())
}

fn io_error(e: Http1Error) -> std::io::Error {
    match e {
        Http1Error::Io(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

/// One kept-alive HTTP/1.1 connection, as a Prometheus scraper holds it, for
/// latency measurements that should not include a TCP handshake each time.
pub struct KeepAlive {
    stream: std::io::BufReader<TcpStream>,
    host: String,
}

impl KeepAlive {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self { stream: std::io::BufReader::new(stream), host: addr.to_string() })
    }

    /// `GET path` with optional extra header lines; returns status and body.
    /// The response must carry a Content-Length (axum's do for full bodies).
    pub fn get(&mut self, path: &str, headers: &[&str]) -> std::io::Result<(u16, String)> {
        let host = self.host.clone();
        self.exchange(&Request { headers, ..Request::get(&host, path) })
    }

    /// `POST path` with a JSON body; returns status and body (Content-Length framed).
    pub fn post_json(&mut self, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        let host = self.host.clone();
        self.exchange(&Request::post_json(&host, path, body.as_bytes()))
    }

    fn exchange(&mut self, request: &Request) -> std::io::Result<(u16, String)> {
        use std::io::BufRead;
        let stream = self.stream.get_mut();
        stream.write_all(request.head_with_connection("keep-alive").as_bytes())?;
        stream.write_all(request.body.map_or(&[], |(_, body)| body))?;
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line)?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let mut length = None;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let length = length.ok_or_else(|| std::io::Error::other("response without Content-Length"))?;
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    #[test]
    fn keep_alive_sends_both_requests_on_one_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut heads = Vec::new();
            for answer in ["one", "second"] {
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        length = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                heads.push((head, String::from_utf8(body).unwrap()));
                let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{answer}", answer.len());
                (&stream).write_all(reply.as_bytes()).unwrap();
            }
            heads
        });
        let mut conn = KeepAlive::connect(addr).unwrap();
        assert_eq!(conn.get("/a", &["Accept: text/plain"]).unwrap(), (200, "one".to_owned()));
        assert_eq!(conn.post_json("/b", "{}").unwrap(), (200, "second".to_owned()));
        let heads = server.join().unwrap();
        assert!(heads[0].0.starts_with("GET /a HTTP/1.1\r\n"), "{heads:?}");
        assert!(heads[0].0.contains("Accept: text/plain\r\nConnection: keep-alive\r\n"), "{heads:?}");
        assert!(heads[1].0.starts_with("POST /b HTTP/1.1\r\n") && heads[1].1 == "{}", "{heads:?}");
    }
}
