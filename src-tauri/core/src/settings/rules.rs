//! What a change of settings must pass, field by field, each refusal saying
//! the range or what to give instead.

use storycore_types::{ApiError, AppSettings, ErrorCode, FieldError};

/// The limits of the retention settings, said in the refusal.
pub fn check(s: &AppSettings, has_named_tokens: bool) -> Result<(), ApiError> {
    let mut fields = Vec::new();
    if !(1..=3650).contains(&s.job_retention_days) {
        fields.push(FieldError::new(
            "jobRetentionDays",
            format!(
                "{} days is out of range: keep finished jobs from 1 to 3650 days",
                s.job_retention_days
            ),
        ));
    }
    if !(1..=1_000_000).contains(&s.max_finished_jobs) {
        fields.push(FieldError::new(
            "maxFinishedJobs",
            format!(
                "{} jobs is out of range: keep from 1 to 1000000 finished jobs",
                s.max_finished_jobs
            ),
        ));
    }
    if let Some(how) = &s.gateway.token_auth {
        if let Err(e) = storycore_types::KeyAuth::parse(how) {
            fields.push(FieldError::new("gateway.tokenAuth", e));
        }
    }
    let (cert, key) = (&s.gateway.tls_cert, &s.gateway.tls_key);
    for (field, path) in [("gateway.tlsCert", cert), ("gateway.tlsKey", key)] {
        if path
            .as_deref()
            .is_some_and(|p| !std::path::Path::new(p).is_absolute())
        {
            fields.push(FieldError::new(
                field,
                "give the file's absolute path".to_string(),
            ));
        }
    }
    if cert.is_some() != key.is_some() {
        fields.push(FieldError::new(
            if cert.is_some() {
                "gateway.tlsKey"
            } else {
                "gateway.tlsCert"
            },
            "a certificate and its key go together: give both, or neither (the app then makes one)"
                .to_string(),
        ));
    }
    if let Err(e) = crate::gateway::Access::open().with_hosts(&s.gateway.allowed_hosts) {
        fields.push(FieldError::new("gateway.allowedHosts", e));
    }
    if s.gateway.enabled {
        match s.gateway.address.trim().parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_loopback() || s.gateway.token_ref.is_some() || has_named_tokens => {}
            Ok(a) => fields.push(FieldError::new(
                "gateway.address",
                format!("{a} is on the network: set a token for the gateway first (clients then send it), or use a loopback address such as 127.0.0.1:8288"),
            )),
            Err(_) => fields.push(FieldError::new(
                "gateway.address",
                format!(
                    "'{}' is not an address and port, such as 127.0.0.1:8288",
                    s.gateway.address
                ),
            )),
        }
    }
    let h = &s.health;
    let ranges: [(&str, u32, std::ops::RangeInclusive<u32>, &str); 6] = [
        (
            "health.intervalMs",
            h.interval_ms,
            1_000..=3_600_000,
            "probe every 1000 ms (1 s) to 3600000 ms (1 hour)",
        ),
        (
            "health.probeTimeoutMs",
            h.probe_timeout_ms,
            500..=60_000,
            "give a probe 500 to 60000 ms",
        ),
        (
            "health.degradedResponseMs",
            h.degraded_response_ms,
            50..=60_000,
            "count answers slower than 50 to 60000 ms as degraded",
        ),
        (
            "health.failureThreshold",
            h.failure_threshold,
            1..=20,
            "use 1 to 20 failed probes in a row",
        ),
        (
            "health.successThreshold",
            h.success_threshold,
            1..=20,
            "use 1 to 20 answers in a row",
        ),
        (
            "health.resourceHighPercent",
            h.resource_high_percent,
            50..=100,
            "alert from 50% to 100%",
        ),
    ];
    for (field, value, range, what) in ranges {
        if !range.contains(&value) {
            fields.push(FieldError::new(
                field,
                format!("{value} is out of range: {what}"),
            ));
        }
    }
    if fields.is_empty() {
        return Ok(());
    }
    let mut e = ApiError::new(
        ErrorCode::InvalidInput,
        fields
            .iter()
            .map(|f| f.message.clone())
            .collect::<Vec<_>>()
            .join("; "),
    );
    e.fields = fields;
    Err(e)
}
