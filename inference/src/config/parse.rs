//! The flag values that are parsed beyond clap's own types: labels, the
//! advertised URL, the sampler, the weight type and image sizes. Each error
//! says what the flag allows; clap names the flag.

use std::collections::BTreeMap;

use candle_core::DType;

use super::ConfigError;
use crate::model::schedulers::SamplerKind;

/// `k=v,k=v` into a map, checked as the agent checks a report's labels.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let refuse = |reason: String| ConfigError::Labels { reason };
    let mut out = BTreeMap::new();
    if s.trim().is_empty() {
        return Ok(out);
    }
    for item in s.split(',').map(str::trim) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(refuse(format!("{item:?} is not KEY=VALUE; expected e.g. app=sd,tier=gold")));
        };
        let (key, value) = (key.trim(), value.trim());
        if out.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(refuse(format!("label {key:?} is given twice")));
        }
    }
    edge_telemetry::report::check_labels(&out).map_err(|e| refuse(e.to_string()))?;
    Ok(out)
}

/// Checks an advertised URL as the agent checks a report's `endpoint`, after
/// putting an IPv6 host in brackets: in Kubernetes the URL is built from the
/// downward API's `status.hostIP`, a bare address on IPv6 clusters.
pub fn parse_advertise_url(s: &str) -> Result<String, ConfigError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    let url = match s.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
            match authority.rsplit_once(':') {
                Some((host, port)) if host.contains(':') && !host.starts_with('[') => {
                    format!("{scheme}://[{host}]:{port}{path}")
                }
                _ => s.to_owned(),
            }
        }
        None => s.to_owned(),
    };
    edge_telemetry::report::check_endpoint(&url).map_err(|reason| ConfigError::AdvertiseUrl { reason })?;
    Ok(url)
}

pub(super) fn parse_sampler(s: &str) -> Result<SamplerKind, ConfigError> {
    SamplerKind::parse(s).ok_or_else(|| ConfigError::Sampler { value: s.to_owned(), allowed: SamplerKind::ALLOWED })
}

pub(super) fn parse_dtype(s: &str) -> Result<DType, ConfigError> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        _ => Err(ConfigError::Dtype { value: s.to_owned() }),
    }
}

/// `--default-size`: WIDTHxHEIGHT; the bounds are checked with the others.
pub(super) fn parse_size_flag(s: &str) -> Result<(usize, usize), ConfigError> {
    parse_size(s).ok_or_else(|| ConfigError::DefaultSizeShape { value: s.to_owned() })
}

/// `WIDTHxHEIGHT`.
pub fn parse_size(s: &str) -> Option<(usize, usize)> {
    let (w, h) = s.split_once(['x', 'X'])?;
    Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
}
