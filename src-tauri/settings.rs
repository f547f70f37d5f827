//! Settings read from the environment at start, each validated with a message
//! that says what to set.

use std::time::Duration;

/// Health probe interval for every monitored instance (default: the seed's 30 s).
pub const HEALTH_INTERVAL_ENV: &str = "STORYCORE_HEALTH_INTERVAL_MS";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvSettings {
    pub health_interval: Option<Duration>,
}

impl EnvSettings {
    pub fn from_env() -> Result<Self, String> {
        Self::parse(std::env::var(HEALTH_INTERVAL_ENV).ok().as_deref())
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
        Ok(Self { health_interval })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
