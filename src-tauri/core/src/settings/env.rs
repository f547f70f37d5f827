//! Settings read from the environment at start (and `serve`'s flags),
//! each validated with a message that says what to set.

use std::time::Duration;

/// Health probe interval for every monitored instance (default: the seed's 30 s).
pub const HEALTH_INTERVAL_ENV: &str = "STORYCORE_HEALTH_INTERVAL_MS";

/// The gateway's address (`off`: none), over the Settings' (tests use
/// `127.0.0.1:0`: any free port, so apps started together do not clash).
pub const GATEWAY_ENV: &str = "STORYCORE_GATEWAY";

/// The token a gateway on the network requires (over the Settings').
pub const GATEWAY_TOKEN_ENV: &str = "STORYCORE_GATEWAY_TOKEN";
/// How the token is sent: `bearer` (default), `basic` or `header:<Name>`.
pub const GATEWAY_AUTH_ENV: &str = "STORYCORE_GATEWAY_AUTH";
/// Host names clients use for this machine besides its own, comma-separated
/// (over the Settings').
pub const GATEWAY_HOSTS_ENV: &str = "STORYCORE_GATEWAY_HOSTS";

#[derive(Debug, Clone, Default)]
pub struct EnvSettings {
    pub health_interval: Option<Duration>,
    /// `Some(None)`: the gateway is off; `Some(Some(addr))`: it listens there.
    pub gateway: Option<Option<std::net::SocketAddr>>,
    /// The gateway's token, from the environment.
    pub gateway_access: Option<crate::gateway::Access>,
    /// The gateway's other host names, from the environment.
    pub gateway_hosts: Option<Vec<String>>,
}

impl EnvSettings {
    pub fn from_env() -> Result<Self, String> {
        let var = |k: &str| std::env::var(k).ok();
        let mut s = Self::parse(var(HEALTH_INTERVAL_ENV).as_deref())?;
        s.gateway_access = parse_access(
            var(GATEWAY_TOKEN_ENV).as_deref(),
            var(GATEWAY_AUTH_ENV).as_deref(),
        )?;
        s.gateway = parse_gateway(var(GATEWAY_ENV).as_deref(), s.gateway_access.is_some())?;
        s.gateway_hosts = parse_hosts(var(GATEWAY_HOSTS_ENV).as_deref())?;
        Ok(s)
    }

    fn parse(health_interval: Option<&str>) -> Result<Self, String> {
        let health_interval = match health_interval {
            None => None,
            Some(s) => match s.trim().parse::<u64>() {
                Ok(ms) if (100..=3_600_000).contains(&ms) => Some(Duration::from_millis(ms)),
                _ => {
                    return Err(format!(
                        "{HEALTH_INTERVAL_ENV}={s:?} is not a number of milliseconds between 100 and 3600000 \
                         (e.g. 30000); unset it for the default of 30 s"
                    ))
                }
            },
        };
        Ok(Self {
            health_interval,
            ..Self::default()
        })
    }
}

fn parse_gateway(
    value: Option<&str>,
    has_token: bool,
) -> Result<Option<Option<std::net::SocketAddr>>, String> {
    match value.map(str::trim) {
        None => Ok(None),
        Some("off") => Ok(Some(None)),
        Some(s) => match s.parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_loopback() || has_token => Ok(Some(Some(a))),
            Ok(a) => Err(format!(
                "{GATEWAY_ENV}={s:?}: {a} is on the network, so the gateway needs a token: set {GATEWAY_TOKEN_ENV} (at least {} characters), or use a loopback address such as 127.0.0.1:8288",
                crate::gateway::MIN_TOKEN_CHARS
            )),
            Err(_) => Err(format!(
                "{GATEWAY_ENV}={s:?} is not an address and port (e.g. 127.0.0.1:8288) nor \"off\"; unset it to use the Settings'"
            )),
        },
    }
}

fn parse_hosts(value: Option<&str>) -> Result<Option<Vec<String>>, String> {
    let Some(v) = value else { return Ok(None) };
    let hosts: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(String::from)
        .collect();
    crate::gateway::Access::open()
        .with_hosts(&hosts)
        .map_err(|e| format!("{GATEWAY_HOSTS_ENV}: {e}; separate names with commas"))?;
    Ok(Some(hosts))
}

fn parse_access(
    token: Option<&str>,
    auth: Option<&str>,
) -> Result<Option<crate::gateway::Access>, String> {
    let auth = match auth {
        None => storycore_types::KeyAuth::Bearer,
        Some(a) => {
            storycore_types::KeyAuth::parse(a).map_err(|e| format!("{GATEWAY_AUTH_ENV}: {e}"))?
        }
    };
    match token {
        None => Ok(None),
        Some(t) => crate::gateway::Access::token(t, auth)
            .map(Some)
            .map_err(|e| format!("{GATEWAY_TOKEN_ENV}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_override_is_checked() {
        assert_eq!(parse_gateway(None, false).unwrap(), None);
        assert_eq!(parse_gateway(Some("off"), false).unwrap(), Some(None));
        assert_eq!(
            parse_gateway(Some("127.0.0.1:0"), false).unwrap(),
            Some(Some("127.0.0.1:0".parse().unwrap()))
        );
        for bad in ["", "on", "8288", "0.0.0.0:8288"] {
            assert!(parse_gateway(Some(bad), false)
                .unwrap_err()
                .contains(GATEWAY_ENV));
        }
        let lan = parse_gateway(Some("0.0.0.0:8288"), false).unwrap_err();
        assert!(lan.contains(GATEWAY_TOKEN_ENV), "{lan}");
        assert_eq!(
            parse_gateway(Some("0.0.0.0:8288"), true).unwrap(),
            Some(Some("0.0.0.0:8288".parse().unwrap()))
        );
    }

    #[test]
    fn the_gateway_host_names_are_checked() {
        assert_eq!(parse_hosts(None).unwrap(), None);
        assert_eq!(
            parse_hosts(Some(" box.lan , 10.0.0.7,")).unwrap(),
            Some(vec!["box.lan".to_string(), "10.0.0.7".to_string()])
        );
        let bad = parse_hosts(Some("box.lan:8288")).unwrap_err();
        assert!(bad.contains(GATEWAY_HOSTS_ENV), "{bad}");
    }

    #[test]
    fn the_gateway_token_is_checked() {
        assert!(parse_access(None, None).unwrap().is_none());
        assert!(parse_access(Some("0123456789abcdef"), None)
            .unwrap()
            .is_some());
        let short = parse_access(Some("abc"), None).unwrap_err();
        assert!(
            short.contains(GATEWAY_TOKEN_ENV) && short.contains("16"),
            "{short}"
        );
        let how = parse_access(Some("0123456789abcdef"), Some("cookie")).unwrap_err();
        assert!(how.contains(GATEWAY_AUTH_ENV), "{how}");
    }

    #[test]
    fn health_interval_is_checked() {
        assert_eq!(EnvSettings::parse(None).unwrap().health_interval, None);
        assert_eq!(
            EnvSettings::parse(Some("500")).unwrap().health_interval,
            Some(Duration::from_millis(500))
        );
        for bad in ["", "abc", "50", "-1", "99999999"] {
            let e = EnvSettings::parse(Some(bad)).unwrap_err();
            assert!(e.contains(HEALTH_INTERVAL_ENV), "{e}");
        }
    }
}
