//! Numbers as a person reads them.

use storycore_types::{HealthStatus, InstanceStatus};

pub fn bytes(n: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;
    let n = n as f64;
    if n >= GIB {
        format!("{:.1} GiB", n / GIB)
    } else {
        format!("{:.0} MiB", n / MIB)
    }
}

pub fn duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

pub fn millis(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

pub fn health_label(h: HealthStatus) -> &'static str {
    match h {
        HealthStatus::Unknown => "not checked",
        HealthStatus::Healthy => "healthy",
        HealthStatus::Degraded => "degraded",
        HealthStatus::Unhealthy => "unhealthy",
    }
}

pub fn health_class(h: HealthStatus) -> &'static str {
    match h {
        HealthStatus::Unknown => "h-unknown",
        HealthStatus::Healthy => "h-healthy",
        HealthStatus::Degraded => "h-degraded",
        HealthStatus::Unhealthy => "h-unhealthy",
    }
}

pub fn status_class(s: InstanceStatus) -> &'static str {
    match s {
        InstanceStatus::Stopped => "s-stopped",
        InstanceStatus::Starting => "s-starting",
        InstanceStatus::Running => "s-running",
        InstanceStatus::Paused => "s-paused",
        InstanceStatus::Stopping => "s-stopping",
        InstanceStatus::Error => "s-error",
    }
}

/// A moment in the user's time zone and locale, as the webview formats it.
pub fn local_time(t: chrono::DateTime<chrono::Utc>) -> String {
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(t.timestamp_millis() as f64));
    String::from(d.to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED))
}
