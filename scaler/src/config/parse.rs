//! The value lists of the scaler's flags, parsed and checked: host lists, zone=host maps, DNS
//! names, PEM files.

use super::*;

/// Splits and checks `host:port,host:port`.
pub(super) fn parse_host_list(flag: &'static str, list: &str) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(err(flag, format!("empty entry in {list:?}; expected host:port,host:port")));
        }
        let Some((host, port)) = item.rsplit_once(':') else {
            return Err(err(flag, format!("{item:?} has no port; expected host:port, e.g. 10.0.0.5:9400")));
        };
        if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
            return Err(err(flag, format!("{item:?}: port {port:?} is not in 1..=65535")));
        }
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if host.is_empty() || (!bracketed && host.contains(':')) || host.contains(|c: char| c.is_whitespace()) {
            return Err(err(
                flag,
                format!("{item:?}: {host:?} is not a host name or address (IPv6 goes in brackets: [::1]:9400)"),
            ));
        }
        if !out.iter().any(|a| a == item) {
            out.push(item.to_owned());
        }
    }
    Ok(out)
}

/// Splits `ZONE=HOST,ZONE=HOST`; a zone twice, or a host that is not a DNS
/// name or an address, is refused.
pub(super) fn parse_advertise_host(list: &str) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    let mut out = std::collections::BTreeMap::new();
    let Some(list) = non_empty(list) else { return Ok(out) };
    for item in list.split(',').map(str::trim) {
        let Some((zone, host)) = item.split_once('=').map(|(z, h)| (z.trim(), h.trim())) else {
            return Err(err(
                "advertise-host",
                format!("{item:?} is not ZONE=HOST, e.g. us-west-2-lax-1a=sd-lax.example.com"),
            ));
        };
        if !crate::values::is_name(zone) {
            return Err(err("advertise-host", format!("{zone:?} is not a zone name")));
        }
        let bracketed = host.starts_with('[')
            && host.ends_with(']')
            && host[1..host.len() - 1].parse::<std::net::Ipv6Addr>().is_ok();
        let dns = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
            });
        if !(bracketed || dns) {
            return Err(err(
                "advertise-host",
                format!("{host:?} for {zone} is not a DNS name or address (IPv6 in brackets); no port or scheme"),
            ));
        }
        if out.insert(zone.to_owned(), host.to_owned()).is_some() {
            return Err(err("advertise-host", format!("zone {zone} given twice")));
        }
    }
    Ok(out)
}

/// Kubernetes object names: lowercase letters, digits, `-` and `.`, at most
/// 253 characters.
pub(super) fn check_dns_name(flag: &'static str, name: &str) -> Result<(), ConfigError> {
    let ok = name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(err(flag, format!("{name:?} is not a Kubernetes name (lowercase letters, digits, '-', '.')")))
    }
}

pub(super) fn read_pem(flag: &'static str, path: &str) -> Result<Vec<u8>, ConfigError> {
    let bytes = std::fs::read(PathBuf::from(path)).map_err(|e| err(flag, format!("cannot read {path:?}: {e}")))?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        return Err(err(flag, format!("{path:?} is not PEM (no -----BEGIN line)")));
    }
    Ok(bytes)
}

pub(super) fn non_empty(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}
