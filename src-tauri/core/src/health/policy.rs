//! The health state machine of one instance, pure (no I/O, no clock): it is fed
//! probe outcomes with their time and answers with the new health and the alerts
//! to raise. In the spirit of Kubernetes probes: a failure threshold before
//! declaring the server unhealthy, a success threshold before trusting it again.
//!
//! ```text
//!            fast answer                 slow answer or 1..threshold failures
//! unknown ─────────────▶ healthy ◀──────▶ degraded
//!                           ▲                │ `failure_threshold` failures in a row
//!                           │                ▼
//!                           └──────────── unhealthy
//!                   `success_threshold` answers in a row
//! ```

use super::alerts::Alarms;
use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::time::Duration;
use storycore_types::{AlertKind, HealthStatus, InstanceHealth, SystemStats};

const MAX_REMEMBERED_FAILURES: usize = 1000;

/// Every threshold of the monitor, with the seed's values as defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthPolicy {
    /// Between health probes of a server that has answered (seed: 30 s).
    pub interval: Duration,
    /// Between resource samples (RAM, VRAM, queue), which refresh the figures
    /// and resource alerts but do not move the health status (seed: 5 s).
    pub resource_interval: Duration,
    /// Between health probes until the server first answers, so a starting
    /// server is seen as up within a second or so rather than 30 s.
    pub starting_interval: Duration,
    /// A probe without an answer within this time counts as failed.
    pub probe_timeout: Duration,
    /// An answer slower than this counts as a success but makes the server degraded.
    pub degraded_response_ms: f64,
    /// Failed probes in a row that make the server unhealthy (fewer: degraded).
    pub failure_threshold: u32,
    /// Answers in a row that make an unhealthy server healthy again.
    pub success_threshold: u32,
    /// Window over which failed probes are counted for the error-rate alert.
    pub error_window: Duration,
    /// More failures than this within `error_window` raise `HighErrorRate`.
    pub max_errors_per_window: u32,
    /// RAM or VRAM use above this percentage raises `ResourceHigh`.
    pub resource_high_percent: f64,
    /// No answer at all for longer than this raises `NoAnswer`.
    pub no_answer_after: Duration,
    /// Also read `/queue` to count active workflows (the instance's
    /// `enableQueueMonitoring`).
    pub watch_queue: bool,
    /// The monitor begins in the start phase (the server was just started):
    /// until its first answer, failed probes are progress, not ill health;
    /// they move no status and raise no alert (Kubernetes' startup probe).
    /// The start's deadline is the manager's business.
    pub starting: bool,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            resource_interval: Duration::from_secs(5),
            starting_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(5),
            degraded_response_ms: 2000.0,
            failure_threshold: 3,
            success_threshold: 2,
            error_window: Duration::from_secs(60),
            max_errors_per_window: 5,
            resource_high_percent: 90.0,
            no_answer_after: Duration::from_secs(30),
            watch_queue: true,
            starting: false,
        }
    }
}

impl HealthPolicy {
    /// The policy with the user's settings over the defaults.
    pub fn from_settings(h: &storycore_types::HealthSettings) -> Self {
        Self {
            interval: Duration::from_millis(u64::from(h.interval_ms)),
            probe_timeout: Duration::from_millis(u64::from(h.probe_timeout_ms)),
            degraded_response_ms: f64::from(h.degraded_response_ms),
            failure_threshold: h.failure_threshold,
            success_threshold: h.success_threshold,
            resource_high_percent: f64::from(h.resource_high_percent),
            ..Self::default()
        }
    }

    /// The defaults, with the instance's own setting for queue monitoring.
    pub fn for_instance(config: &storycore_types::InstanceConfig) -> Self {
        Self {
            watch_queue: config.queue_monitoring(),
            ..Self::default()
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeOutcome {
    Answered {
        response_ms: f64,
        resources: Option<ResourceSample>,
    },
    Failed {
        error: String,
    },
    /// The server answered but refused the probe (401: a proxy in front of
    /// it wants an API key). It is up, so a start is over; it is no use,
    /// so it counts as a failure.
    Refused {
        error: String,
    },
}

/// Resource figures of one sample, already turned into percentages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceSample {
    pub stats: SystemStats,
    /// `(resource name, percent used)`, e.g. `("RAM", 42.0)`.
    pub usage: Vec<(String, f64)>,
}

/// What changed with one observation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// `(from, to)` when the status changed.
    pub status_change: Option<(HealthStatus, HealthStatus)>,
    pub alerts: Vec<AlertKind>,
    /// The health figures differ enough from before to be worth publishing.
    pub worth_publishing: bool,
}

#[derive(Debug, Clone)]
pub struct HealthState {
    policy: HealthPolicy,
    health: InstanceHealth,
    success_streak: u32,
    answered_once: bool,
    /// In the start phase (see [`HealthPolicy::starting`]).
    starting: bool,
    /// Monitoring start until the first answer, so a server that never
    /// answers also raises `NoAnswer`.
    last_answer: DateTime<Utc>,
    recent_failures: VecDeque<DateTime<Utc>>,
    last_error: Option<String>,
    alarms: Alarms,
}

impl HealthState {
    pub fn new(policy: HealthPolicy, now: DateTime<Utc>) -> Self {
        Self {
            starting: policy.starting,
            policy,
            health: InstanceHealth::default(),
            success_streak: 0,
            answered_once: false,
            last_answer: now,
            recent_failures: VecDeque::new(),
            last_error: None,
            alarms: Alarms::default(),
        }
    }

    pub fn health(&self) -> &InstanceHealth {
        &self.health
    }

    pub fn policy(&self) -> &HealthPolicy {
        &self.policy
    }

    pub fn set_policy(&mut self, policy: HealthPolicy) {
        self.policy = policy;
    }

    /// Why the last probe failed, for alert messages and logs.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// When the next health probe is due after the one just done.
    pub fn next_probe_in(&self) -> Duration {
        if self.answered_once {
            self.policy.interval
        } else {
            self.policy.starting_interval
        }
    }

    /// Records a health probe: moves the status and counters.
    pub fn on_probe(&mut self, outcome: ProbeOutcome, now: DateTime<Utc>) -> Observation {
        let before = self.health.status;
        let mut obs = Observation {
            worth_publishing: true,
            ..Observation::default()
        };
        self.health.last_checked = Some(now);
        if self.starting {
            if let ProbeOutcome::Failed { error } = outcome {
                // Still starting: nothing is wrong yet.
                self.last_error = Some(error);
                return obs;
            }
            self.starting = false;
            self.last_error = None; // refusals while starting were no error
        }
        match outcome {
            ProbeOutcome::Answered {
                response_ms,
                resources,
            } => {
                self.note_answer(now);
                self.health.consecutive_failures = 0;
                self.health.response_time = response_ms;
                self.success_streak = self.success_streak.saturating_add(1);
                let slow = response_ms > self.policy.degraded_response_ms;
                self.health.status = match before {
                    // An unhealthy server must prove itself before work is routed to it again.
                    HealthStatus::Unhealthy
                        if self.success_streak < self.policy.success_threshold =>
                    {
                        HealthStatus::Unhealthy
                    }
                    _ if slow => HealthStatus::Degraded,
                    _ => HealthStatus::Healthy,
                };
                if let Some(sample) = resources {
                    obs.alerts.extend(self.take_resources(sample));
                }
            }
            ProbeOutcome::Failed { error } | ProbeOutcome::Refused { error } => {
                self.success_streak = 0;
                self.health.consecutive_failures =
                    self.health.consecutive_failures.saturating_add(1);
                self.health.error_count = self.health.error_count.saturating_add(1);
                self.last_error = Some(error);
                self.push_failure(now);
                let down = before == HealthStatus::Unhealthy
                    || self.health.consecutive_failures >= self.policy.failure_threshold;
                self.health.status = if down {
                    HealthStatus::Unhealthy
                } else {
                    HealthStatus::Degraded
                };
            }
        }
        let after = self.health.status;
        if before != after {
            obs.status_change = Some((before, after));
            obs.alerts.extend(self.alarms.status_changed(before, after));
        }
        if self.health.consecutive_failures > 0 {
            let silent = (now - self.last_answer).to_std().unwrap_or_default();
            obs.alerts
                .extend(self.alarms.no_answer(silent, self.policy.no_answer_after));
        }
        let in_window = self.failures_in_window(now);
        obs.alerts.extend(
            self.alarms
                .error_rate(in_window, self.policy.max_errors_per_window),
        );
        obs
    }

    /// Whether the server has not answered yet since it was started.
    pub fn is_starting(&self) -> bool {
        self.starting
    }

    /// Records an error that is not a probe (a workflow failed on the
    /// instance): it counts toward the error-rate alert.
    pub fn on_error(&mut self, now: DateTime<Utc>) -> Observation {
        self.health.error_count = self.health.error_count.saturating_add(1);
        self.push_failure(now);
        let in_window = self.failures_in_window(now);
        Observation {
            status_change: None,
            alerts: self
                .alarms
                .error_rate(in_window, self.policy.max_errors_per_window)
                .into_iter()
                .collect(),
            worth_publishing: true,
        }
    }

    fn push_failure(&mut self, now: DateTime<Utc>) {
        self.recent_failures.push_back(now);
        // Only "more than the limit" matters; a long outage must not grow this.
        if self.recent_failures.len() > MAX_REMEMBERED_FAILURES {
            self.recent_failures.pop_front();
        }
    }

    /// Records a resource sample: refreshes the figures and resource alerts only.
    pub fn on_resources(&mut self, sample: ResourceSample, now: DateTime<Utc>) -> Observation {
        self.note_answer(now);
        let worth_publishing = match &self.health.system_stats {
            None => true,
            Some(old) => {
                old.active_workflows != sample.stats.active_workflows
                    || (old.memory_usage - sample.stats.memory_usage).abs() >= 1.0
                    || old.vram_used_bytes != sample.stats.vram_used_bytes
            }
        };
        let alerts = self.take_resources(sample);
        Observation {
            status_change: None,
            alerts,
            worth_publishing,
        }
    }

    fn note_answer(&mut self, now: DateTime<Utc>) {
        self.answered_once = true;
        self.last_answer = now;
        self.alarms.answered();
    }

    fn take_resources(&mut self, sample: ResourceSample) -> Vec<AlertKind> {
        let alerts = self
            .alarms
            .resources(&sample.usage, self.policy.resource_high_percent);
        self.health.system_stats = Some(sample.stats);
        alerts
    }

    fn failures_in_window(&mut self, now: DateTime<Utc>) -> u32 {
        let window =
            chrono::Duration::from_std(self.policy.error_window).unwrap_or(chrono::Duration::MAX);
        while self
            .recent_failures
            .front()
            .is_some_and(|t| now - *t > window)
        {
            self.recent_failures.pop_front();
        }
        u32::try_from(self.recent_failures.len()).unwrap_or(u32::MAX)
    }
}
