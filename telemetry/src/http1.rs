//! One small JSON `POST` over HTTP/1.1, for the calls between the project's
//! own processes (a worker's report to its node agent, a scaler replica's
//! sync with its peers): one request per connection, the answer read to the
//! end and bounded, so a wrong peer cannot make the caller buffer without
//! limit. Not a general client: the answers it reads carry a
//! `Content-Length` (axum's `Json`, plain strings).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body (empty when there is none).
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
}

/// Why a `POST` got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    /// The connection failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Something answered that is not HTTP.
    #[error("no HTTP status in the answer")]
    NoStatus,
}

/// `POST path` with a JSON `body` on `stream`, closing the connection after
/// the answer; at most `max_answer` bytes of it are read.
pub async fn post_json(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    host: &str,
    path: &str,
    body: &[u8],
    max_answer: u64,
) -> Result<Answer, Http1Error> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut answer = Vec::new();
    stream.take(max_answer).read_to_end(&mut answer).await?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n");
    let head = String::from_utf8_lossy(&answer[..split.unwrap_or(answer.len())]);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or(Http1Error::NoStatus)?;
    let body = split.map_or_else(Vec::new, |at| answer[at + 4..].to_vec());
    Ok(Answer { status, body })
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
        assert_eq!(answer, Answer { status: 409, body: b"self".to_vec() });
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
}
