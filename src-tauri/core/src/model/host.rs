//! Hosts: what a valid `host` looks like, and when two hosts are the same machine.

use std::net::{IpAddr, Ipv6Addr};
use storycore_types::FieldError;

const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Checks `host`: a hostname or an IP address, nothing else. Users paste URLs
/// here, so each common mistake (scheme, path, port) gets its own advice.
pub(crate) fn check_host(host: &str, errors: &mut Vec<FieldError>) {
    let mut problem = |message: String| errors.push(FieldError::new("host", message));
    if host.is_empty() {
        return problem(
            "The host is empty: leave the field out for this machine (localhost), or enter a hostname or IP address.".into(),
        );
    }
    if host.contains('\0') {
        return problem("The host contains a NUL character: retype it.".into());
    }
    if let Some((scheme, _)) = host.split_once("://") {
        return problem(format!(
            "The host '{host}' starts with '{scheme}://': enter only the machine's name or IP address (for HTTPS, set scheme to https)."
        ));
    }
    if host.chars().any(char::is_whitespace) {
        return problem(format!("The host '{host}' contains spaces: remove them."));
    }
    if host.contains('/') {
        return problem(format!(
            "The host '{host}' contains a path: enter only the machine's name or IP address."
        ));
    }
    if parse_ip(host).is_some() {
        return;
    }
    if let Some((name, port)) = host.rsplit_once(':') {
        if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) {
            return problem(format!(
                "The host '{host}' includes a port: put '{name}' in host and {port} in port."
            ));
        }
        return problem(format!(
            "The host '{host}' is not a valid IPv6 address or hostname: check it."
        ));
    }
    let bare = host.strip_suffix('.').unwrap_or(host);
    if bare.len() > MAX_HOST_LEN {
        return problem(format!(
            "The host is {} characters long; a hostname has at most {MAX_HOST_LEN}.",
            bare.len()
        ));
    }
    for label in bare.split('.') {
        if let Some(why) = label_problem(label) {
            return problem(format!("The host '{host}' is not a valid hostname: {why}."));
        }
    }
}

/// Why one dot-separated part of a hostname is invalid, if it is.
fn label_problem(label: &str) -> Option<String> {
    if label.is_empty() {
        return Some("it has an empty part between dots".into());
    }
    if label.len() > MAX_LABEL_LEN {
        return Some(format!(
            "the part '{label}' is longer than {MAX_LABEL_LEN} characters"
        ));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Some(format!(
            "'{c}' is not allowed (use letters, digits, '-' and '.')"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Some(format!("the part '{label}' starts or ends with '-'"));
    }
    None
}

/// An IP address, IPv6 with or without brackets (`::1`, `[::1]`).
fn parse_ip(host: &str) -> Option<IpAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    inner.parse().ok()
}

/// True for the names this machine answers to when a server listens on all
/// interfaces: `localhost`, any loopback address, and the "any" addresses
/// (`0.0.0.0`, `::`) that ComfyUI's `--listen` binds.
pub fn is_local_host(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h == "localhost" || h.ends_with(".localhost") {
        return true;
    }
    match parse_ip(&h) {
        Some(ip) => ip.is_loopback() || ip.is_unspecified() || is_mapped_loopback(ip),
        None => false,
    }
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .is_some_and(|v4| v4.is_loopback() || v4.is_unspecified()),
        IpAddr::V4(_) => false,
    }
}

/// True when two hosts name the same machine, so their ports collide.
pub fn same_machine(a: &str, b: &str) -> bool {
    if is_local_host(a) && is_local_host(b) {
        return true;
    }
    match (parse_ip(a), parse_ip(b)) {
        (Some(x), Some(y)) => canonical_ip(x) == canonical_ip(y),
        (None, None) => a
            .trim_end_matches('.')
            .eq_ignore_ascii_case(b.trim_end_matches('.')),
        _ => false,
    }
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(Ipv6Addr::from(v6.octets()))),
        v4 => v4,
    }
}
