//! Which `Host` a request may name. A web page can make a browser send
//! requests to this machine under a name it controls that resolves to
//! 127.0.0.1 (DNS rebinding): the browser then sees one origin, so
//! ComfyUI's own check (`Origin` equal to `Host`) lets it through. The
//! gateway fronts a whole fleet, so it is stricter: a request must name
//! this machine as its clients do, else 403 before any route runs (the
//! `/ws` upgrade included).
//!
//! - On a loopback address: `localhost`, `127.0.0.0/8` or `[::1]`, with or
//!   without a port.
//! - On a network address: those, the machine's own names (its host name
//!   and `<name>.local`) and addresses (every interface's, read again
//!   every few seconds, as they change).
//! - Either way, the names the user adds (Settings → Gateway, or
//!   `STORYCORE_GATEWAY_HOSTS` for `serve`).

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the machine's own names and addresses are trusted.
const OWN_NAMES_FRESH_FOR: Duration = Duration::from_secs(5);

/// The names a request's `Host` may carry.
#[derive(Clone)]
pub(crate) struct HostCheck(Arc<Inner>);

struct Inner {
    /// The gateway listens on the network: the machine's names count too.
    network: bool,
    /// The address it is bound to (a specific one counts as its own name).
    bound: IpAddr,
    /// Names the user added, lower case, without a trailing dot.
    extra: HashSet<String>,
    own: Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
}

impl HostCheck {
    pub(crate) fn new(addr: SocketAddr, extra: &[String]) -> Self {
        Self(Arc::new(Inner {
            network: !addr.ip().is_loopback(),
            bound: addr.ip(),
            extra: extra.iter().filter_map(|h| normal_name(h)).collect(),
            own: Mutex::new(None),
        }))
    }

    /// Whether `host` (a `Host` header's value) names this gateway.
    pub(crate) fn admits(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        if is_loopback_name(&name) || self.0.extra.contains(&name) {
            return true;
        }
        if !self.0.network {
            return false;
        }
        if name.parse::<IpAddr>().ok() == Some(self.0.bound) {
            return true;
        }
        self.own_names().contains(&name)
    }

    fn own_names(&self) -> Arc<HashSet<String>> {
        let mut own = self.0.own.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, names)) = &*own {
            if at.elapsed() < OWN_NAMES_FRESH_FOR {
                return names.clone();
            }
        }
        let names = Arc::new(machine_names());
        *own = Some((Instant::now(), names.clone()));
        names
    }

    fn refusal(&self, host: Option<&str>) -> Response {
        let allowed = if self.0.network {
            "this machine's names and addresses, localhost"
        } else {
            "localhost, 127.0.0.1 or [::1]"
        };
        let body = match host {
            Some(h) => format!(
                "403: this gateway answers requests addressed to {allowed}, not to {h:?} (a web page using a name of its own for this machine is refused); if {h:?} is yours, add it to the gateway's host names (Settings, or STORYCORE_GATEWAY_HOSTS for storycore-engine serve)\n"
            ),
            None => format!(
                "403: a request to this gateway must name its host ({allowed}) in a Host header\n"
            ),
        };
        (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

/// Refuses (403) a request whose `Host` does not name this gateway, before
/// anything else runs.
pub(crate) async fn require_host(
    State(check): State<HostCheck>,
    req: Request,
    next: Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    match host {
        Some(h) if check.admits(&h) => next.run(req).await,
        other => {
            tracing::warn!(host = ?other, path = %req.uri().path(), "gateway: a request addressed to another host refused (DNS rebinding?)");
            check.refusal(other.as_deref())
        }
    }
}

/// The name in a `Host` value, lower case, without its port, its brackets
/// or a trailing dot; `None` when it is not one.
fn host_name(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        inside
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    normal_name(name)
}

/// Whether `name` may be added to the host names: a name or an address,
/// without a port or a scheme; the error says what is wrong with it.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let n = name.trim();
    let bare = n.trim_start_matches('[').trim_end_matches(']');
    let ok_chars = bare
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
    let is_ip = bare.parse::<IpAddr>().is_ok();
    if n.is_empty() || !ok_chars || (bare.contains(':') && !is_ip) {
        return Err(format!(
            "{name:?} is not a host name or address: write a name such as studio-box.lan or an address such as 192.168.1.20, without a scheme or a port"
        ));
    }
    Ok(())
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// A host name or address as compared: lower case, no trailing dot, an
/// address in its canonical form.
fn normal_name(name: &str) -> Option<String> {
    let name = name
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if name.is_empty() || name.contains(['/', ' ', '@', '\\']) {
        return None;
    }
    Some(match name.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => name,
    })
}

fn is_loopback_name(name: &str) -> bool {
    name == "localhost"
        || match name.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => v4.is_loopback(),
            Ok(IpAddr::V6(v6)) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            Err(_) => false,
        }
}

/// This machine's host name (and `<name>.local`, as mDNS names it on a
/// LAN) and the addresses of its interfaces.
pub(crate) fn machine_names() -> HashSet<String> {
    let mut names = HashSet::new();
    if let Ok(h) = sysinfo::System::host_name() {
        if let Some(n) = normal_name(&h) {
            if !n.contains('.') {
                names.insert(format!("{n}.local"));
            }
            names.insert(n);
        }
    }
    if let Ok(interfaces) = sysinfo::Networks::new_with_refreshed_list() {
        for ip in interfaces.values().flat_map(|n| n.ip_networks()) {
            names.insert(ip.addr.to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_gateway_takes_loopback_names_only() {
        let c = HostCheck::new("127.0.0.1:8288".parse().unwrap(), &[]);
        for ok in [
            "localhost",
            "localhost:8288",
            "LOCALHOST:1",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:8288",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:8288",
            "[::ffff:127.0.0.1]:8288",
        ] {
            assert!(c.admits(ok), "{ok}");
        }
        for bad in [
            "evil.example:8288",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.5:8288",
            "[::2]:8288",
            "::1",
            "localhost:http",
            "localhost:8288:1",
            "[::1]x",
            "",
            "user@localhost",
        ] {
            assert!(!c.admits(bad), "{bad}");
        }
    }

    #[test]
    fn names_the_user_adds_are_taken() {
        let c = HostCheck::new(
            "127.0.0.1:8288".parse().unwrap(),
            &["Studio-Box.lan.".into()],
        );
        assert!(c.admits("studio-box.lan:8288"));
        assert!(!c.admits("other.lan:8288"));
    }

    #[test]
    fn a_network_gateway_takes_the_machines_own_names_and_addresses() {
        let c = HostCheck::new("0.0.0.0:8288".parse().unwrap(), &[]);
        let own = machine_names();
        assert!(!own.is_empty(), "this machine has a name or an address");
        for n in &own {
            let host = match n.parse::<IpAddr>() {
                Ok(IpAddr::V6(_)) => format!("[{n}]:8288"),
                _ => format!("{n}:8288"),
            };
            assert!(c.admits(&host), "{host}");
        }
        assert!(c.admits("localhost:8288"));
        assert!(!c.admits("evil.example:8288"));
        let bound = HostCheck::new("192.0.2.7:8288".parse().unwrap(), &[]);
        assert!(bound.admits("192.0.2.7:8288"));
    }
}
