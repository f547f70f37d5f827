//! The health state machine, table by table: statuses, counters, and alerts
//! that fire once per episode.

use chrono::{DateTime, TimeZone, Utc};
use std::time::Duration;
use storycore_core::health::{HealthPolicy, HealthState, ProbeOutcome, ResourceSample};
use storycore_types::{AlertKind, HealthStatus, SystemStats};
use HealthStatus::{Degraded as D, Healthy as H, Unhealthy as U};

#[derive(Clone, Copy)]
enum Step {
    /// An answer taking this many ms, `at` seconds after the start.
    Ok(f64, i64),
    /// A failed probe, `at` seconds after the start.
    Fail(i64),
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
}

/// Runs the steps and returns the status after each, and every alert with the
/// index of the step that raised it.
fn run(steps: &[Step]) -> (HealthState, Vec<HealthStatus>, Vec<(usize, AlertKind)>) {
    let mut state = HealthState::new(HealthPolicy::default(), t0());
    let mut statuses = Vec::new();
    let mut alerts = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let (outcome, at) = match *step {
            Step::Ok(ms, at) => (
                ProbeOutcome::Answered {
                    response_ms: ms,
                    resources: None,
                },
                at,
            ),
            Step::Fail(at) => (
                ProbeOutcome::Failed {
                    error: "connection refused".into(),
                },
                at,
            ),
        };
        let obs = state.on_probe(outcome, t0() + chrono::Duration::seconds(at));
        statuses.push(state.health().status);
        alerts.extend(obs.alerts.into_iter().map(|a| (i, a)));
    }
    (state, statuses, alerts)
}

/// Steps a probe interval apart (30 s), for tables where time does not matter.
fn spaced(kinds: &[&str]) -> Vec<Step> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let at = i as i64 * 30;
            match *k {
                "ok" => Step::Ok(20.0, at),
                "slow" => Step::Ok(2500.0, at),
                "fail" => Step::Fail(at),
                other => panic!("unknown step {other}"),
            }
        })
        .collect()
}

#[test]
fn statuses_follow_the_thresholds() {
    let table: &[(&str, &[&str], &[HealthStatus])] = &[
        ("a fast answer is healthy", &["ok"], &[H]),
        (
            "a slow answer is degraded",
            &["ok", "slow", "ok"],
            &[H, D, H],
        ),
        (
            "failures below the threshold degrade",
            &["ok", "fail", "fail"],
            &[H, D, D],
        ),
        (
            "three failures in a row are unhealthy",
            &["ok", "fail", "fail", "fail"],
            &[H, D, D, U],
        ),
        (
            "an answer resets the failure count",
            &["fail", "fail", "ok", "fail", "fail"],
            &[D, D, H, D, D],
        ),
        (
            "recovery needs two answers in a row",
            &["fail", "fail", "fail", "ok", "ok"],
            &[D, D, U, U, H],
        ),
        (
            "a failure restarts the recovery",
            &["fail", "fail", "fail", "ok", "fail", "ok", "ok"],
            &[D, D, U, U, U, U, H],
        ),
        (
            "slow recovery ends degraded",
            &["fail", "fail", "fail", "slow", "slow"],
            &[D, D, U, U, D],
        ),
        (
            "a first failure while starting is degraded",
            &["fail", "ok"],
            &[D, H],
        ),
    ];
    for (name, steps, want) in table {
        let (_, got, _) = run(&spaced(steps));
        assert_eq!(&got, want, "{name}");
    }
}

#[test]
fn counters_and_figures_are_kept() {
    let (state, _, _) = run(&spaced(&["ok", "fail", "fail", "ok", "fail"]));
    let h = state.health();
    assert_eq!(h.error_count, 3);
    assert_eq!(h.consecutive_failures, 1);
    assert_eq!(
        h.response_time, 20.0,
        "the last answer's time is kept through a failure"
    );
    assert_eq!(h.last_checked, Some(t0() + chrono::Duration::seconds(120)));
    assert_eq!(state.last_error(), Some("connection refused"));

    let fresh = HealthState::new(HealthPolicy::default(), t0());
    assert_eq!(fresh.health().status, HealthStatus::Unknown);
    assert_eq!(
        fresh.next_probe_in(),
        Duration::from_secs(1),
        "fast while starting"
    );
    let (state, _, _) = run(&spaced(&["ok"]));
    assert_eq!(state.next_probe_in(), Duration::from_secs(30));
}

fn kinds(alerts: &[(usize, AlertKind)]) -> Vec<(usize, &'static str)> {
    alerts
        .iter()
        .map(|(i, a)| {
            let k = match a {
                AlertKind::BecameUnhealthy => "unhealthy",
                AlertKind::Recovered => "recovered",
                AlertKind::HighErrorRate { .. } => "error-rate",
                AlertKind::ResourceHigh { .. } => "resource",
                AlertKind::NoAnswer { .. } => "no-answer",
                AlertKind::Crashed { .. } => "crashed",
                AlertKind::GaveUp { .. } => "gave-up",
                AlertKind::StartTimedOut { .. } => "start-timed-out",
            };
            (*i, k)
        })
        .collect()
}

/// (name, steps, expected alerts as (step index, kind)).
type AlertCase = (&'static str, Vec<Step>, Vec<(usize, &'static str)>);

#[test]
fn alerts_fire_once_per_episode() {
    use Step::{Fail as F, Ok as O};
    let table: &[AlertCase] = &[
        (
            "a long outage alerts unhealthy once, then no-answer once",
            vec![O(20.0, 0), F(10), F(20), F(30), F(45), F(60), F(75)],
            vec![(3, "unhealthy"), (4, "no-answer")],
        ),
        (
            "recovery after an outage alerts once",
            vec![
                O(20.0, 0),
                F(5),
                F(10),
                F(15),
                O(20.0, 20),
                O(20.0, 25),
                O(20.0, 30),
            ],
            vec![(3, "unhealthy"), (5, "recovered")],
        ),
        (
            "one slow answer is not worth an alert either way",
            vec![O(20.0, 0), O(2500.0, 30), O(20.0, 60)],
            vec![],
        ),
        (
            "more than five failures within a minute, never three in a row",
            vec![
                F(0),
                F(5),
                O(9.0, 9),
                F(10),
                F(15),
                O(9.0, 19),
                F(20),
                F(25),
                O(9.0, 31),
            ],
            vec![(7, "error-rate")],
        ),
        (
            "six failures spread over more than a minute are no high rate",
            vec![
                F(0),
                O(9.0, 1),
                F(20),
                O(9.0, 21),
                F(40),
                O(9.0, 41),
                F(61),
                O(9.0, 62),
                F(81),
                O(9.0, 82),
                F(101),
            ],
            vec![],
        ),
        (
            "a server that never answers raises no-answer after 30 s",
            vec![F(0), F(10), F(31), F(50)],
            vec![(2, "unhealthy"), (2, "no-answer")],
        ),
        (
            "no-answer is re-armed by an answer",
            vec![F(0), F(31), O(9.0, 32), F(40), F(80)],
            vec![(1, "no-answer"), (2, "recovered"), (4, "no-answer")],
        ),
    ];
    for (name, steps, want) in table {
        let (_, _, alerts) = run(steps);
        assert_eq!(&kinds(&alerts), want, "{name}");
    }
}

#[test]
fn the_error_rate_alert_counts_failures() {
    let steps: Vec<Step> = (0..6).map(|i| Step::Fail(i * 5)).collect();
    let (_, _, alerts) = run(&steps);
    assert!(
        alerts.contains(&(
            5,
            AlertKind::HighErrorRate {
                errors_per_minute: 6
            }
        )),
        "{alerts:?}"
    );
}

fn ram(percent: f64) -> ResourceSample {
    ResourceSample {
        stats: SystemStats {
            memory_usage: percent,
            ..SystemStats::default()
        },
        usage: vec![("RAM".into(), percent)],
    }
}

#[test]
fn resource_alerts_have_hysteresis() {
    let mut state = HealthState::new(HealthPolicy::default(), t0());
    let table = [
        (50.0, false),
        (95.0, true),
        (97.0, false),
        (89.0, false), // below 90 but not by 5 points: still the same episode
        (92.0, false),
        (80.0, false),
        (91.0, true),
    ];
    for (i, (percent, alerts)) in table.into_iter().enumerate() {
        let obs = state.on_resources(ram(percent), t0() + chrono::Duration::seconds(i as i64));
        let want: Vec<AlertKind> = if alerts {
            vec![AlertKind::ResourceHigh {
                resource: "RAM".into(),
                percent,
            }]
        } else {
            vec![]
        };
        assert_eq!(obs.alerts, want, "sample {i} at {percent}%");
        assert_eq!(
            obs.status_change, None,
            "resource samples never move the status"
        );
    }
    assert_eq!(
        state.health().system_stats.as_ref().unwrap().memory_usage,
        91.0
    );
}

#[test]
fn resource_samples_are_published_only_when_they_change() {
    let mut state = HealthState::new(HealthPolicy::default(), t0());
    assert!(state.on_resources(ram(40.0), t0()).worth_publishing);
    assert!(!state.on_resources(ram(40.4), t0()).worth_publishing);
    assert!(state.on_resources(ram(42.0), t0()).worth_publishing);
}

#[test]
fn failed_workflows_count_toward_the_error_rate_which_fires_at_the_default_intervals() {
    // At the default 30 s interval a minute holds at most 2-3 failed probes:
    // alone they can never exceed 5. Failed workflows count too.
    let t0 = Utc::now();
    let mut s = HealthState::new(HealthPolicy::default(), t0);
    let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
    let failed = || ProbeOutcome::Failed {
        error: "refused".into(),
    };
    let mut alerts = Vec::new();
    alerts.extend(s.on_probe(failed(), at(0)).alerts);
    alerts.extend(s.on_probe(failed(), at(30)).alerts);
    for k in 0..3 {
        alerts.extend(s.on_error(at(31 + k)).alerts);
    }
    assert!(
        !alerts
            .iter()
            .any(|a| matches!(a, AlertKind::HighErrorRate { .. })),
        "5 errors is not more than 5"
    );
    let sixth = s.on_error(at(40)).alerts;
    assert_eq!(
        sixth,
        vec![AlertKind::HighErrorRate {
            errors_per_minute: 6
        }]
    );
    // A minute later the window has emptied: the latch resets.
    assert!(s.on_error(at(200)).alerts.is_empty());
}

#[test]
fn the_start_phase_moves_no_status_and_raises_no_alert() {
    let t0 = Utc::now();
    let policy = HealthPolicy {
        starting: true,
        ..HealthPolicy::default()
    };
    let mut s = HealthState::new(policy, t0);
    for k in 0..100 {
        let obs = s.on_probe(
            ProbeOutcome::Failed {
                error: "refused".into(),
            },
            t0 + chrono::Duration::seconds(k),
        );
        assert!(
            obs.alerts.is_empty() && obs.status_change.is_none(),
            "{obs:?}"
        );
    }
    assert!(s.is_starting());
    assert_eq!(s.health().status, HealthStatus::Unknown);
    assert_eq!(s.health().consecutive_failures, 0);
    let obs = s.on_probe(
        ProbeOutcome::Answered {
            response_ms: 5.0,
            resources: None,
        },
        t0 + chrono::Duration::seconds(101),
    );
    assert_eq!(
        obs.status_change,
        Some((HealthStatus::Unknown, HealthStatus::Healthy))
    );
    assert!(!s.is_starting());
    // From now on failures count as usual.
    for k in 0..3 {
        s.on_probe(
            ProbeOutcome::Failed {
                error: "refused".into(),
            },
            t0 + chrono::Duration::seconds(102 + k),
        );
    }
    assert_eq!(s.health().status, HealthStatus::Unhealthy);
}
