//! The project's one HTTP/1.1 client: one request per connection, the
//! answer read to the end (bounded) and de-chunked. The calls between the
//! project's own processes use it (a worker's report to its node agent, a
//! scaler replica's sync with its peers), so does the CLI (readiness checks,
//! prompts, Prometheus queries) over tokio, and the tests over blocking std
//! streams: the request is written and the answer parsed by the same code.
//!
//! Not a general client: no keep-alive, no redirects, no TLS.

use std::io::{Read, Write};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// `(name, value)` per header line, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked (empty when there is none).
    pub body: Vec<u8>,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text, for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    /// The connection failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Something answered that is not HTTP.
    #[error("no HTTP status in the answer")]
    NoStatus,
}

/// One request: method, target, `Host`, an optional body with its content
/// type, and extra header lines (`Name: value`).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, ….
    pub method: &'a str,
    /// The `Host` header.
    pub host: &'a str,
    /// The request target (`/path?query`).
    pub path: &'a str,
    /// `(content type, bytes)`; `None`: no body and no `Content-Length`.
    pub body: Option<(&'a str, &'a [u8])>,
    /// Extra header lines, each `Name: value`.
    pub headers: &'a [&'a str],
}

impl<'a> Request<'a> {
    /// `GET path`.
    pub fn get(host: &'a str, path: &'a str) -> Self {
        Self { method: "GET", host, path, body: None, headers: &[] }
    }

    /// `POST path` with a JSON body.
    pub fn post_json(host: &'a str, path: &'a str, body: &'a [u8]) -> Self {
        Self { method: "POST", host, path, body: Some(("application/json", body)), headers: &[] }
    }

    /// The request line and headers, ending in the blank line; the body
    /// follows it as is. The connection closes after the answer, which the
    /// answer's reader takes as its end.
    pub fn head(&self) -> String {
        self.head_with_connection("close")
    }

    /// [`Request::head`] with another `Connection` header (`keep-alive`, for
    /// a client that frames answers by their `Content-Length`).
    pub fn head_with_connection(&self, connection: &str) -> String {
        let mut head = format!("{} {} HTTP/1.1\r\nHost: {}\r\n", self.method, self.path, self.host);
        if let Some((content_type, body)) = self.body {
            head.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", body.len()));
        }
        for line in self.headers {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str(&format!("Connection: {connection}\r\n\r\n"));
        head
    }

    fn body(&self) -> &'a [u8] {
        self.body.map_or(&[], |(_, b)| b)
    }

    /// Sends the request on `stream` and reads the answer to the end of the
    /// connection, at most `max_answer` bytes of it.
    pub async fn send(
        &self,
        mut stream: impl AsyncRead + AsyncWrite + Unpin,
        max_answer: u64,
    ) -> Result<Answer, Http1Error> {
        stream.write_all(self.head().as_bytes()).await?;
        stream.write_all(self.body()).await?;
        let mut raw = Vec::new();
        stream.take(max_answer).read_to_end(&mut raw).await?;
        parse_answer(&raw)
    }

    /// Writes the request on a blocking stream (tests, benchmarks); read the
    /// answer with [`receive_blocking`], now or later.
    pub fn write_blocking(&self, stream: &mut impl Write) -> std::io::Result<()> {
        stream.write_all(self.head().as_bytes())?;
        stream.write_all(self.body())
    }

    /// [`Request::send`] on a blocking stream.
    pub fn send_blocking(&self, mut stream: impl Read + Write, max_answer: u64) -> Result<Answer, Http1Error> {
        self.write_blocking(&mut stream)?;
        receive_blocking(stream, max_answer)
    }
}

/// Reads an answer to the end of the connection from a blocking stream, at
/// most `max_answer` bytes of it.
pub fn receive_blocking(stream: impl Read, max_answer: u64) -> Result<Answer, Http1Error> {
    let mut raw = Vec::new();
    stream.take(max_answer).read_to_end(&mut raw)?;
    parse_answer(&raw)
}

/// `POST path` with a JSON `body` on `stream`, closing the connection after
/// the answer; at most `max_answer` bytes of it are read.
pub async fn post_json(
    stream: impl AsyncRead + AsyncWrite + Unpin,
    host: &str,
    path: &str,
    body: &[u8],
    max_answer: u64,
) -> Result<Answer, Http1Error> {
    Request::post_json(host, path, body).send(stream, max_answer).await
}

/// Parses a whole answer (status line, headers, body); a chunked body is
/// de-chunked. An answer cut off inside its head has an empty body.
pub fn parse_answer(raw: &[u8]) -> Result<Answer, Http1Error> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let head = String::from_utf8_lossy(&raw[..split.unwrap_or(raw.len())]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or(Http1Error::NoStatus)?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let body = split.map_or(&[][..], |at| &raw[at + 4..]);
    let chunked =
        headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    Ok(Answer { status, headers, body: if chunked { dechunk(body) } else { body.to_vec() } })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sends_the_request_and_reads_status_and_body() {
        let (client, mut server) = tokio::io::duplex(4096);
        let serve = tokio::spawn(async move {
            // Head and body may arrive in two reads.
            let (mut request, mut chunk) = (Vec::new(), [0u8; 1024]);
            while !request.ends_with(b"{}") {
                let n = server.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the client closed before its body");
                request.extend_from_slice(&chunk[..n]);
            }
            server.write_all(b"HTTP/1.1 409 Conflict\r\ncontent-length: 4\r\n\r\nself").await.unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        let answer = post_json(client, "peer", "/v1/x", b"{}", 1024).await.unwrap();
        assert_eq!((answer.status, answer.body.as_slice()), (409, &b"self"[..]));
        assert_eq!(answer.header("Content-Length"), Some("4"));
        assert!(!answer.is_success());
        let request = serve.await.unwrap();
        assert!(request.starts_with("POST /v1/x HTTP/1.1\r\nHost: peer\r\n"), "{request}");
        assert!(request.ends_with("Content-Length: 2\r\nConnection: close\r\n\r\n{}"), "{request}");
    }

    #[tokio::test]
    async fn something_that_is_not_http_is_an_error() {
        let (client, mut server) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let mut buf = [0u8; 256];
            let _ = server.read(&mut buf).await;
            let _ = server.write_all(b"SSH-2.0-OpenSSH\r\n").await;
        });
        assert!(matches!(post_json(client, "h", "/", b"", 1024).await, Err(Http1Error::NoStatus)));
    }

    #[test]
    fn chunked_and_plain_bodies_are_read() {
        let r = parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "abcde"));
        let r =
            parse_answer(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\nRetry-After: 1\r\n\r\nno").unwrap();
        assert_eq!((r.status, r.text().as_str(), r.header("retry-after")), (429, "no", Some("1")));
        assert!(parse_answer(b"garbage").is_err());
    }

    #[test]
    fn a_get_has_no_body_headers_and_extra_lines_go_in_the_head() {
        let head = Request { headers: &["Accept: text/plain"], ..Request::get("h:1", "/metrics") }.head();
        assert_eq!(head, "GET /metrics HTTP/1.1\r\nHost: h:1\r\nAccept: text/plain\r\nConnection: close\r\n\r\n");
    }
}
