//! When an exited process is started again: the restart policy, the
//! exponential back-off and the start limit. Pure (time is passed in).

use super::logs::LogLimits;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Never,
    /// Restart after a crash (nonzero exit or a signal), not after a clean exit.
    #[default]
    OnFailure,
    Always,
}

impl RestartPolicy {
    /// Whether an exit nobody asked for leads to a restart.
    pub fn restarts_after(self, clean_exit: bool) -> bool {
        match self {
            Self::Never => false,
            Self::OnFailure => !clean_exit,
            Self::Always => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartOptions {
    pub policy: RestartPolicy,
    /// Delay before the first restart; doubled after each quick crash.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A process that stayed up this long resets the back-off.
    pub stable_after: Duration,
    /// At most `max_starts` starts within `start_window`; one more gives up.
    pub max_starts: usize,
    pub start_window: Duration,
}

impl Default for RestartOptions {
    fn default() -> Self {
        Self {
            policy: RestartPolicy::OnFailure,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            stable_after: Duration::from_secs(60),
            max_starts: 5,
            start_window: Duration::from_secs(600),
        }
    }
}

/// What to do after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// The policy says no restart.
    StayDown,
    RestartIn(Duration),
    /// The start limit is reached.
    GiveUp,
}

/// The starts of one instance and its current back-off.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    options: RestartOptions,
    starts: VecDeque<Instant>,
    quick_crashes: u32,
}

impl RestartTracker {
    pub fn new(options: RestartOptions) -> Self {
        Self {
            options,
            starts: VecDeque::new(),
            quick_crashes: 0,
        }
    }

    pub fn options(&self) -> &RestartOptions {
        &self.options
    }

    /// Counts a start (first start, restart, or a restart that was asked for).
    pub fn record_start(&mut self, now: Instant) {
        self.starts.push_back(now);
    }

    /// Whether one more start is allowed at `now` under the start limit.
    pub fn may_start(&mut self, now: Instant) -> bool {
        let window = self.options.start_window;
        while self
            .starts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.starts.pop_front();
        }
        self.starts.len() < self.options.max_starts
    }

    /// The starts counted in the window at `now`.
    pub fn starts_in_window(&mut self, now: Instant) -> usize {
        self.may_start(now);
        self.starts.len()
    }

    /// Decides after an unasked exit of a process that ran for `uptime`.
    pub fn after_exit(
        &mut self,
        clean_exit: bool,
        uptime: Duration,
        now: Instant,
    ) -> RestartDecision {
        if !self.options.policy.restarts_after(clean_exit) {
            return RestartDecision::StayDown;
        }
        if uptime >= self.options.stable_after {
            self.quick_crashes = 0;
        }
        if !self.may_start(now) {
            return RestartDecision::GiveUp;
        }
        let delay = backoff_delay(&self.options, self.quick_crashes);
        self.quick_crashes = self.quick_crashes.saturating_add(1);
        RestartDecision::RestartIn(delay)
    }
}

/// `initial * 2^n`, capped at `max`.
pub fn backoff_delay(options: &RestartOptions, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
    options
        .backoff_initial
        .checked_mul(factor)
        .map_or(options.backoff_max, |d| d.min(options.backoff_max))
}

/// A supervisor's restart policy, stop grace and log limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorOptions {
    pub restart: RestartOptions,
    /// How long ComfyUI gets to exit after SIGINT before the group is killed.
    pub stop_grace: Duration,
    pub log: LogLimits,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        Self {
            restart: RestartOptions::default(),
            // Real ComfyUI took 5.7 s to stop in the middle of a job (FACTS 6).
            stop_grace: Duration::from_secs(10),
            log: LogLimits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert!(!RestartPolicy::Never.restarts_after(false));
        assert!(RestartPolicy::OnFailure.restarts_after(false));
        assert!(!RestartPolicy::OnFailure.restarts_after(true));
        assert!(RestartPolicy::Always.restarts_after(true));
        assert_eq!(
            serde_json::to_string(&RestartPolicy::OnFailure).unwrap(),
            "\"on-failure\""
        );
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let o = RestartOptions::default();
        let secs: Vec<u64> = (0..9).map(|n| backoff_delay(&o, n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff_delay(&o, 500), Duration::from_secs(60));
    }

    #[test]
    fn start_limit_gives_up_and_the_window_slides() {
        let o = RestartOptions {
            max_starts: 3,
            start_window: Duration::from_secs(10),
            ..RestartOptions::default()
        };
        let mut t = RestartTracker::new(o);
        let t0 = Instant::now();
        let quick = Duration::from_millis(100);
        t.record_start(t0);
        assert_eq!(
            t.after_exit(false, quick, t0),
            RestartDecision::RestartIn(Duration::from_secs(1))
        );
        t.record_start(t0 + Duration::from_secs(1));
        assert_eq!(
            t.after_exit(false, quick, t0 + Duration::from_secs(1)),
            RestartDecision::RestartIn(Duration::from_secs(2))
        );
        t.record_start(t0 + Duration::from_secs(3));
        assert_eq!(
            t.after_exit(false, quick, t0 + Duration::from_secs(3)),
            RestartDecision::GiveUp
        );
        // Ten seconds after the first start it has left the window.
        assert!(matches!(
            t.after_exit(false, quick, t0 + Duration::from_secs(10)),
            RestartDecision::RestartIn(_)
        ));
    }

    #[test]
    fn a_stable_run_resets_the_backoff_and_clean_exits_stay_down() {
        let mut t = RestartTracker::new(RestartOptions::default());
        let now = Instant::now();
        for _ in 0..3 {
            t.after_exit(false, Duration::ZERO, now);
        }
        assert_eq!(
            t.after_exit(false, Duration::from_secs(61), now),
            RestartDecision::RestartIn(Duration::from_secs(1))
        );
        assert_eq!(
            t.after_exit(true, Duration::ZERO, now),
            RestartDecision::StayDown
        );
    }
}
