//! `instance_{id}_health.json`: bounded history, hourly figures, repair.

use chrono::{DateTime, TimeZone, Utc};
use std::fs;
use storycore_core::store::{
    HealthHistory, HealthSample, StoreError, MAX_ERRORS, MAX_HOURS, MAX_SAMPLES,
};
use storycore_types::{HealthStatus, SystemStats};

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, hour, minute, 0).unwrap()
}

fn sample(t: DateTime<Utc>, status: HealthStatus, ms: f64) -> HealthSample {
    HealthSample {
        at: t,
        status,
        response_time: ms,
        system_stats: None,
    }
}

#[test]
fn records_survive_a_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = HealthHistory::load(dir.path(), "gpu0").unwrap();
    assert!(h.data().samples.is_empty() && h.notice().is_none());
    let mut s = sample(at(10, 0), HealthStatus::Healthy, 12.5);
    s.system_stats = Some(SystemStats {
        cpu_usage: 20.0,
        memory_usage: 40.0,
        gpu_usage: Some(90.0),
        active_workflows: 1,
        vram_used_bytes: Some(1 << 30),
        vram_total_bytes: Some(8 << 30),
    });
    h.record_sample(s.clone());
    h.record_error(at(10, 1), "connection refused");
    h.save().unwrap();
    assert!(dir.path().join("instance_gpu0_health.json").exists());

    let back = HealthHistory::load(dir.path(), "gpu0").unwrap();
    assert_eq!(back.data().samples, [s]);
    assert_eq!(back.data().errors[0].message, "connection refused");
    assert_eq!(back.data().version, "1.0");
    assert_eq!(back.data(), h.data());
}

#[test]
fn hourly_figures_average_and_count_per_hour() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = HealthHistory::load(dir.path(), "gpu0").unwrap();
    h.record_sample(sample(at(10, 5), HealthStatus::Healthy, 10.0));
    h.record_sample(sample(at(10, 50), HealthStatus::Degraded, 30.0));
    h.record_sample(sample(at(11, 0), HealthStatus::Unhealthy, 100.0));
    h.record_error(at(11, 0), "timeout");
    h.record_error(at(11, 59), "timeout");
    // A late sample of an earlier hour goes into that hour.
    h.record_sample(sample(at(9, 30), HealthStatus::Healthy, 5.0));

    let hours: Vec<_> = h
        .data()
        .hourly
        .iter()
        .map(|f| (f.hour, f.samples, f.failures))
        .collect();
    assert_eq!(
        hours,
        [(at(9, 0), 1, 0), (at(10, 0), 2, 0), (at(11, 0), 1, 2)]
    );
    let ten = &h.data().hourly[1];
    assert_eq!(
        (ten.average_response_time, ten.max_response_time),
        (20.0, 30.0)
    );
    assert_eq!((ten.degraded_samples, ten.unhealthy_samples), (1, 0));
    assert_eq!(h.data().hourly[2].unhealthy_samples, 1);
}

#[test]
fn history_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = HealthHistory::load(dir.path(), "gpu0").unwrap();
    let start = at(0, 0);
    for i in 0..(MAX_HOURS as i64 + 10) {
        let t = start + chrono::Duration::hours(i);
        h.record_sample(sample(t, HealthStatus::Healthy, i as f64));
    }
    let last_hour = start + chrono::Duration::hours(MAX_HOURS as i64 + 9);
    for _ in 0..MAX_ERRORS + 5 {
        h.record_error(last_hour, "x".repeat(5000));
    }
    for i in 0..MAX_SAMPLES as i64 {
        h.record_sample(sample(last_hour, HealthStatus::Healthy, i as f64));
    }
    let d = h.data();
    assert_eq!(d.samples.len(), MAX_SAMPLES);
    assert_eq!(d.errors.len(), MAX_ERRORS);
    assert_eq!(d.hourly.len(), MAX_HOURS);
    assert_eq!(
        d.hourly[0].hour,
        start + chrono::Duration::hours(10),
        "the oldest hours went first"
    );
    assert!(
        d.errors[0].message.chars().count() <= 1001,
        "long messages are cut"
    );
    // An hour older than every kept one is not brought back.
    h.record_sample(sample(start, HealthStatus::Healthy, 1.0));
    assert_eq!(h.data().hourly[0].hour, start + chrono::Duration::hours(10));
    assert_eq!(h.data().hourly.len(), MAX_HOURS);
}

#[test]
fn corrupt_history_is_kept_aside_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instance_gpu0_health.json");
    fs::write(
        &path,
        b"{\"version\": \"1.0\", \"instanceId\": \"gpu0\", \"samples\": [{",
    )
    .unwrap();
    let h = HealthHistory::load(dir.path(), "gpu0").unwrap();
    assert!(h.data().samples.is_empty());
    let notice = h.notice().unwrap();
    let kept: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("instance_gpu0_health.json.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert!(notice.contains(&kept[0]), "{notice}");
    h.save().unwrap();
}

#[test]
fn newer_history_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instance_gpu0_health.json");
    let newer = br#"{"version": "2.0", "instanceId": "gpu0", "buckets": []}"#;
    fs::write(&path, newer).unwrap();
    let mut h = HealthHistory::load(dir.path(), "gpu0").unwrap();
    assert!(h.is_read_only());
    h.record_error(at(1, 0), "x");
    assert!(matches!(h.save(), Err(StoreError::NewerFormat { ref found, .. }) if found == "2.0"));
    assert_eq!(fs::read(&path).unwrap(), newer);
}

#[test]
fn ids_that_name_other_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for id in ["../etc", "a/b", "", "x y"] {
        let err = HealthHistory::load(dir.path(), id).unwrap_err();
        assert!(
            matches!(err, StoreError::BadInstanceId { .. }),
            "{id}: {err}"
        );
    }
}

#[test]
fn remove_deletes_the_file_and_tolerates_its_absence() {
    let dir = tempfile::tempdir().unwrap();
    let h = HealthHistory::load(dir.path(), "gpu0").unwrap();
    h.save().unwrap();
    HealthHistory::remove(dir.path(), "gpu0").unwrap();
    assert!(!h.path().exists());
    HealthHistory::remove(dir.path(), "gpu0").unwrap();
}
