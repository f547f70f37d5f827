//! Hosts: what a valid `host` looks like, and when two hosts are the same machine.
//!
//! A host whose last part is a number is an IPv4 address, read the way URL
//! parsers (and so the app's HTTP client) read it: `127.1`, `0x7f.1`,
//! `2130706433` and `0177.0.0.1` all mean 127.0.0.1, so they clash with
//! each other on the same port; `999.999.999.999`, `1.2.3.4.5` and
//! `example.123` are no address at all and are refused.

use super::text::quote;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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
    if host.chars().any(char::is_control) {
        return problem(format!(
            "The host {} contains a control character: retype it.",
            quote(host)
        ));
    }
    if host.len() > MAX_HOST_LEN + 2 {
        return problem(format!(
            "The host is {} characters long; a hostname has at most {MAX_HOST_LEN}.",
            host.chars().count()
        ));
    }
    let host_q = quote(host);
    if let Some((scheme, _)) = host.split_once("://") {
        return problem(format!(
            "The host {host_q} starts with '{scheme}://': enter only the machine's name or IP address (for HTTPS, set scheme to https)."
        ));
    }
    if host.chars().any(char::is_whitespace) {
        return problem(format!("The host {host_q} contains spaces: remove them."));
    }
    if host.contains('/') {
        return problem(format!(
            "The host {host_q} contains a path: enter only the machine's name or IP address."
        ));
    }
    if parse_ip(host).is_some() {
        return;
    }
    if ends_in_number(host) {
        return problem(format!(
            "The host {host_q} ends in a number, so it must be an IPv4 address, and it is not one (four numbers from 0 to 255, like 192.168.1.20): check it."
        ));
    }
    if let Some((name, port)) = host.rsplit_once(':') {
        if !name.contains(':') && port.chars().all(|c| c.is_ascii_digit()) {
            return problem(format!(
                "The host {host_q} includes a port: put '{name}' in host and {port} in port."
            ));
        }
        return problem(format!(
            "The host {host_q} is not a valid IPv6 address or hostname: check it."
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
            return problem(format!("The host {host_q} is not a valid hostname: {why}."));
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
            "the part {} is longer than {MAX_LABEL_LEN} characters",
            quote(label)
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
        return Some(format!("the part {} starts or ends with '-'", quote(label)));
    }
    None
}

/// An IP address: IPv6 with or without brackets (`::1`, `[::1]`), or IPv4 in
/// any form a URL parser takes (`127.1`, `0x7f.0.0.1`, `2130706433`).
fn parse_ip(host: &str) -> Option<IpAddr> {
    let inner = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = inner.parse() {
        return Some(ip);
    }
    parse_ipv4_url(inner).map(IpAddr::V4)
}

/// The host's last dot-separated part is a number (decimal, or `0x` hex):
/// URL parsers then read the whole host as an IPv4 address.
fn ends_in_number(host: &str) -> bool {
    let h = host.strip_suffix('.').unwrap_or(host);
    let last = h.rsplit('.').next().unwrap_or_default();
    !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || ipv4_number(last).is_some())
}

/// IPv4 as the WHATWG URL standard reads it: 1 to 4 numbers separated by
/// dots, each decimal, octal (a leading 0) or hex (0x); the last one fills
/// the remaining bytes.
fn parse_ipv4_url(host: &str) -> Option<Ipv4Addr> {
    let h = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = h.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let numbers: Vec<u64> = parts
        .iter()
        .map(|p| ipv4_number(p))
        .collect::<Option<_>>()?;
    let (last, first) = numbers.split_last()?;
    if first.iter().any(|n| *n > 255) || *last >= 256u64.pow(5 - numbers.len() as u32) {
        return None;
    }
    let mut value = *last;
    for (i, n) in first.iter().enumerate() {
        value += n << (8 * (3 - i));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() || part.len() > 12 {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, radix).ok()
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
    machine_key(a) == machine_key(b)
}

/// One key per machine: equal keys, same machine. This machine's names and
/// addresses share one key; an address in any form, its canonical form; a
/// hostname, itself without case or a final dot.
pub fn machine_key(host: &str) -> String {
    if is_local_host(host) {
        return "this machine".into();
    }
    match parse_ip(host) {
        Some(ip) => format!("ip {}", canonical_ip(ip)),
        None => format!("name {}", host.trim_end_matches('.').to_ascii_lowercase()),
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
