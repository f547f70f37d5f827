//! When to raise an alert, and what it says. Each alert fires once per episode:
//! a latch is set when it fires and cleared only when the condition is over, so
//! a server that stays down raises `BecameUnhealthy` once, not at every probe.

use std::collections::BTreeSet;
use std::time::Duration;
use storycore_types::{AlertKind, HealthStatus};

/// Points below the threshold a resource must fall to before it can alert
/// again, so a figure hovering around 90% does not alert at every sample.
const RESOURCE_HYSTERESIS: f64 = 5.0;

#[derive(Debug, Clone, Default)]
pub struct Alarms {
    /// A problem alert (unhealthy, no answer) was raised and `Recovered` is owed.
    problem_raised: bool,
    high_error_rate: bool,
    no_answer: bool,
    resources_high: BTreeSet<String>,
}

impl Alarms {
    /// `Recovered` is owed only after an episode that alerted: a single slow
    /// answer that made the server degraded for one probe is not worth a
    /// notification either way.
    pub fn status_changed(&mut self, from: HealthStatus, to: HealthStatus) -> Option<AlertKind> {
        match to {
            HealthStatus::Unhealthy if from != HealthStatus::Unhealthy => {
                self.problem_raised = true;
                Some(AlertKind::BecameUnhealthy)
            }
            HealthStatus::Healthy if self.problem_raised => {
                self.problem_raised = false;
                Some(AlertKind::Recovered)
            }
            _ => None,
        }
    }

    pub fn error_rate(&mut self, failures_in_window: u32, limit: u32) -> Option<AlertKind> {
        if failures_in_window <= limit {
            self.high_error_rate = false;
            return None;
        }
        if self.high_error_rate {
            return None;
        }
        self.high_error_rate = true;
        Some(AlertKind::HighErrorRate {
            errors_per_minute: failures_in_window,
        })
    }

    pub fn no_answer(&mut self, silent_for: Duration, limit: Duration) -> Option<AlertKind> {
        if silent_for <= limit || self.no_answer {
            return None;
        }
        self.no_answer = true;
        self.problem_raised = true;
        Some(AlertKind::NoAnswer {
            seconds: silent_for.as_secs(),
        })
    }

    /// The server answered: the no-answer episode is over.
    pub fn answered(&mut self) {
        self.no_answer = false;
    }

    pub fn resources(&mut self, usage: &[(String, f64)], threshold: f64) -> Vec<AlertKind> {
        let mut alerts = Vec::new();
        for (resource, percent) in usage {
            if *percent > threshold {
                if self.resources_high.insert(resource.clone()) {
                    alerts.push(AlertKind::ResourceHigh {
                        resource: resource.clone(),
                        percent: (*percent * 10.0).round() / 10.0,
                    });
                }
            } else if *percent < threshold - RESOURCE_HYSTERESIS {
                self.resources_high.remove(resource);
            }
        }
        alerts
    }
}

/// A sentence for the user (window, tray, OS notification).
pub fn describe(
    kind: &AlertKind,
    instance_id: &str,
    url: &str,
    last_error: Option<&str>,
) -> String {
    let cause = last_error
        .map(|e| format!(" Last error: {e}"))
        .unwrap_or_default();
    match kind {
        AlertKind::BecameUnhealthy => format!(
            "Instance '{instance_id}' ({url}) is unhealthy: it failed several health checks in a row; no new work is sent to it.{cause}"
        ),
        AlertKind::Recovered => {
            format!("Instance '{instance_id}' ({url}) is healthy again.")
        }
        AlertKind::HighErrorRate { errors_per_minute } => format!(
            "Instance '{instance_id}' ({url}) had {errors_per_minute} errors (failed health checks and failed workflows) within a minute.{cause}"
        ),
        AlertKind::ResourceHigh { resource, percent } => format!(
            "Instance '{instance_id}' ({url}) uses {percent:.1}% of its {resource}."
        ),
        AlertKind::NoAnswer { seconds } => format!(
            "Instance '{instance_id}' ({url}) has not answered for {seconds} s.{cause}"
        ),
        AlertKind::Crashed { summary } => {
            format!("Instance '{instance_id}' ({url}) crashed: {summary}")
        }
        AlertKind::StartTimedOut { seconds } => format!(
            "Instance '{instance_id}' ({url}) did not answer within {seconds} s of its start. Check the end of its log; if it loads many custom nodes, raise its start timeout.{cause}"
        ),
        AlertKind::GaveUp { starts } => format!(
            "Instance '{instance_id}' ({url}) crashed {starts} times in a row: the app stopped restarting it. Check its log, then restart it by hand.{cause}"
        ),
    }
}
