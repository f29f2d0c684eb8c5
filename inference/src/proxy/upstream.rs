//! The server behind the proxy: its base URL, parsed once, and the URIs of
//! forwarded requests and of its health check.

use hyper::Uri;
use hyper::http::uri::{Authority, PathAndQuery};

/// `--upstream`: `http://HOST:PORT` with an optional base path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    authority: Authority,
    /// The base path without its trailing `/` ("" for none).
    base: String,
}

impl Upstream {
    /// Parses `http://HOST:PORT[/BASE]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let rest = s.strip_prefix("http://").ok_or_else(|| {
            format!("--upstream {s:?}: expected http://HOST:PORT[/BASE] (plain HTTP: the upstream runs beside the proxy, on loopback)")
        })?;
        let (authority, base) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let authority: Authority =
            authority.parse().map_err(|e| format!("--upstream {s:?}: {authority:?} is not HOST:PORT ({e})"))?;
        if authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(format!("--upstream {s:?}: expected http://HOST:PORT[/BASE]"));
        }
        let base = base.trim_end_matches('/');
        if base.contains(['?', '#']) {
            return Err(format!("--upstream {s:?}: the base path may not have a query or fragment"));
        }
        Ok(Self { authority, base: base.to_owned() })
    }

    /// `HOST:PORT`, for the forwarded `Host` header.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The upstream URI for a request's path and query.
    pub fn uri(&self, path_and_query: Option<&PathAndQuery>) -> Uri {
        let pq = path_and_query.map_or("/", PathAndQuery::as_str);
        let joined = format!("{}{pq}", self.base);
        Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(joined)
            .build()
            // Both parts were valid URI pieces on their own; joined they still are.
            .unwrap_or_else(|_| Uri::from_static("http://127.0.0.1/"))
    }

    /// `--upstream-health`: a path on the upstream, or a whole http:// URL.
    pub fn health_uri(&self, health: &str) -> Result<Uri, String> {
        let health = health.trim();
        let expected = "expected a path starting with / (on --upstream) or an http://HOST:PORT/PATH URL";
        if health.starts_with('/') {
            let pq: PathAndQuery =
                health.parse().map_err(|e| format!("--upstream-health {health:?}: {e}; {expected}"))?;
            Ok(self.uri(Some(&pq)))
        } else if health.starts_with("http://") {
            health.parse().map_err(|e| format!("--upstream-health {health:?}: {e}; {expected}"))
        } else {
            Err(format!("--upstream-health {health:?}: {expected}"))
        }
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loopback_servers_with_an_optional_base_path() {
        let u = Upstream::parse("http://127.0.0.1:7860").unwrap();
        assert_eq!(u.to_string(), "http://127.0.0.1:7860");
        let pq: PathAndQuery = "/sdapi/v1/txt2img?x=1".parse().unwrap();
        assert_eq!(u.uri(Some(&pq)).to_string(), "http://127.0.0.1:7860/sdapi/v1/txt2img?x=1");
        let based = Upstream::parse("http://[::1]:8188/comfy/").unwrap();
        assert_eq!(based.uri(Some(&pq)).to_string(), "http://[::1]:8188/comfy/sdapi/v1/txt2img?x=1");
        assert_eq!(based.health_uri("/healthz").unwrap().to_string(), "http://[::1]:8188/comfy/healthz");
        assert_eq!(u.health_uri("http://127.0.0.1:9000/ping").unwrap().to_string(), "http://127.0.0.1:9000/ping");
        for bad in ["127.0.0.1:7860", "https://127.0.0.1:7860", "http://", "http://a b:1", "http://u@h:1"] {
            let err = Upstream::parse(bad).unwrap_err();
            assert!(err.starts_with("--upstream"), "{bad}: {err}");
        }
        for bad in ["healthz", "ftp://x/y", "/a b"] {
            assert!(u.health_uri(bad).unwrap_err().starts_with("--upstream-health"), "{bad}");
        }
    }
}
