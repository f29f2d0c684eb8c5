//! A tiny blocking HTTP/1.1 client for tests: one request per connection,
//! over TCP or a Unix socket, no dependencies to mock anything.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// `GET path`; returns status and body.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    request(connect(addr)?, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"))
}

/// A whole answer: status, header lines and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// `(name, value)` per header line, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: String,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// `GET path`; the whole answer, headers included.
pub fn get_response(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    get_response_with(addr, path, &[])
}

/// [`get_response`] with extra header lines (each `Name: value`).
pub fn get_response_with(addr: SocketAddr, path: &str, headers: &[&str]) -> std::io::Result<Response> {
    let mut stream = connect(addr)?;
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n").as_bytes())?;
    read_response(stream)
}

/// `POST path` with a JSON body, waiting up to `timeout`; the whole answer,
/// headers included (a 429's `Retry-After`).
pub fn post_response(addr: SocketAddr, path: &str, body: &str, timeout: Duration) -> std::io::Result<Response> {
    let mut stream = connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(post(path, &addr.to_string(), body).as_bytes())?;
    read_response(stream)
}

fn read_response(mut stream: TcpStream) -> std::io::Result<Response> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {head:?}")))?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
    Ok(Response { status, headers, body: if chunked { dechunk(body) } else { body.to_owned() } })
}

/// `GET path` with extra header lines (each `Name: value`).
pub fn get_with(addr: SocketAddr, path: &str, headers: &[&str]) -> std::io::Result<(u16, String)> {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    request(connect(addr)?, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"))
}

/// `POST path` with a JSON body.
pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    request(connect(addr)?, &post(path, &addr.to_string(), body))
}

/// `POST path` with a JSON body over a Unix socket.
pub fn post_json_unix(socket: &Path, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    request(stream, &post(path, "localhost", body))
}

/// `POST path` with a JSON body, waiting up to `timeout` for the answer (a
/// request that queues behind others, e.g. an image generation).
pub fn post_json_timeout(
    addr: SocketAddr,
    path: &str,
    body: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let stream = connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    request(stream, &post(path, &addr.to_string(), body))
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

fn post(path: &str, host: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn request(mut stream: impl Read + Write, req: &str) -> std::io::Result<(u16, String)> {
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {head:?}")))?;
    let chunked = head.lines().any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    Ok((status, if chunked { dechunk(body) } else { body.to_owned() }))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
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
        let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        self.exchange(&format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{extra}\r\n", self.host))
    }

    /// `POST path` with a JSON body; returns status and body (Content-Length framed).
    pub fn post_json(&mut self, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.exchange(&head)
    }

    fn exchange(&mut self, req: &str) -> std::io::Result<(u16, String)> {
        use std::io::BufRead;
        self.stream.get_mut().write_all(req.as_bytes())?;
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
