//! Which paths are generations: queued, counted and reported. Everything
//! else (UIs, model lists, options) passes straight through.

/// The default `--route` list: OpenAI's images API (our worker, sd-server,
/// the Neuron reference server), AUTOMATIC1111's txt2img/img2img,
/// stable-diffusion.cpp's sd-server, and Gradio apps (the seeds' server):
/// `/run/predict` (Gradio 3) and, of `/gradio_api/*` (Gradio 5), the calls
/// that run a function: `run/*`, `call/*` (the POST and its result stream)
/// and `queue/join`. Not all of `/gradio_api/*`: its `heartbeat/*` is an
/// event stream open as long as a browser tab is, which would hold a runner
/// for that long; uploads, `info` and the UI's assets pass through.
pub const DEFAULT: &str = "/v1/images/*,/sdapi/v1/txt2img,/sdapi/v1/img2img,/txt2img,/img2img,/run/predict,\
                           /gradio_api/run/*,/gradio_api/call/*,/gradio_api/queue/join";

/// One `--route` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This path exactly.
    Exact(String),
    /// Every path under this prefix (the entry without its trailing `*`).
    Prefix(String),
}

impl Route {
    /// `/path` or `/prefix/*`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = |why: &str| {
            format!("--route {s:?}: {why}; expected a path like /sdapi/v1/txt2img, or a prefix like /v1/images/*")
        };
        if !s.starts_with('/') {
            return Err(bad("does not start with /"));
        }
        if s.chars().any(|c| c.is_whitespace() || c == '?' || c == '#') {
            return Err(bad("has a space, ? or #"));
        }
        match s.strip_suffix('*') {
            Some(prefix) if prefix.ends_with('/') && !prefix.contains('*') => Ok(Self::Prefix(prefix.to_owned())),
            Some(_) => Err(bad("* is allowed only as a last segment, after /")),
            None if s.contains('*') => Err(bad("* is allowed only as a last segment, after /")),
            None => Ok(Self::Exact(s.to_owned())),
        }
    }

    /// Whether `path` (no query) is this route.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == p,
            Self::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// Whether any route matches `path`.
pub fn is_generation(routes: &[Route], path: &str) -> bool {
    routes.iter().any(|r| r.matches(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<Route> {
        DEFAULT.split(',').map(|r| Route::parse(r).unwrap()).collect()
    }

    #[test]
    fn the_defaults_cover_every_known_generation_path_and_nothing_else() {
        let routes = defaults();
        for path in [
            "/v1/images/generations",
            "/v1/images/edits",
            "/sdapi/v1/txt2img",
            "/sdapi/v1/img2img",
            "/txt2img",
            "/run/predict",
            "/gradio_api/call/predict",
            "/gradio_api/call/predict/3f2a9c",
            "/gradio_api/run/predict",
            "/gradio_api/queue/join",
        ] {
            assert!(is_generation(&routes, path), "{path}");
        }
        for path in [
            "/",
            "/sdapi/v1/options",
            "/sdapi/v1/sd-models",
            "/v1/images",
            "/run/predictx",
            "/internal/ping",
            "/gradio_api/heartbeat/3f2a9c",
            "/gradio_api/upload",
            "/gradio_api/info",
        ] {
            assert!(!is_generation(&routes, path), "{path}");
        }
    }

    #[test]
    fn a_bad_route_is_refused_naming_the_flag() {
        for bad in ["sdapi/v1/txt2img", "/a b", "/x?y=1", "/v1/*/gen", "/v1*", "/**"] {
            let err = Route::parse(bad).unwrap_err();
            assert!(err.starts_with("--route") && err.contains("expected a path"), "{bad}: {err}");
        }
        assert_eq!(Route::parse(" /prompt ").unwrap(), Route::Exact("/prompt".into()));
        assert_eq!(Route::parse("/api/*").unwrap(), Route::Prefix("/api/".into()));
    }
}
