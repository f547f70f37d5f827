//! Settings read from the environment at start, each validated with a message
//! that says what to set.

use std::time::Duration;

/// Health probe interval for every monitored instance (default: the seed's 30 s).
pub const HEALTH_INTERVAL_ENV: &str = "STORYCORE_HEALTH_INTERVAL_MS";

/// The gateway's address (`off`: none), over the Settings' (tests use
/// `127.0.0.1:0`: any free port, so apps started together do not clash).
pub const GATEWAY_ENV: &str = "STORYCORE_GATEWAY";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvSettings {
    pub health_interval: Option<Duration>,
    /// `Some(None)`: the gateway is off; `Some(Some(addr))`: it listens there.
    pub gateway: Option<Option<std::net::SocketAddr>>,
}

impl EnvSettings {
    pub fn from_env() -> Result<Self, String> {
        let mut s = Self::parse(std::env::var(HEALTH_INTERVAL_ENV).ok().as_deref())?;
        s.gateway = parse_gateway(std::env::var(GATEWAY_ENV).ok().as_deref())?;
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
            gateway: None,
        })
    }
}

fn parse_gateway(value: Option<&str>) -> Result<Option<Option<std::net::SocketAddr>>, String> {
    match value.map(str::trim) {
        None => Ok(None),
        Some("off") => Ok(Some(None)),
        Some(s) => match s.parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => Ok(Some(Some(a))),
            _ => Err(format!(
                "{GATEWAY_ENV}={s:?} is not a loopback address and port (e.g. 127.0.0.1:8288) nor \"off\"; unset it to use the Settings'"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_override_is_checked() {
        assert_eq!(parse_gateway(None).unwrap(), None);
        assert_eq!(parse_gateway(Some("off")).unwrap(), Some(None));
        assert_eq!(
            parse_gateway(Some("127.0.0.1:0")).unwrap(),
            Some(Some("127.0.0.1:0".parse().unwrap()))
        );
        for bad in ["", "on", "8288", "0.0.0.0:8288"] {
            assert!(parse_gateway(Some(bad)).unwrap_err().contains(GATEWAY_ENV));
        }
    }

    #[test]
    fn health_interval_is_checked() {
        assert_eq!(EnvSettings::parse(None).unwrap(), EnvSettings::default());
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
