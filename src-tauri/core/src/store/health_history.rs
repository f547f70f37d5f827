//! `instance_{id}_health.json`: what the health monitor saw over time, bounded
//! so the file never grows without limit. The caller decides how often to save.

use super::atomic::atomic_write;
use super::format::{format_age, FormatAge};
use super::recovery::{file_name, move_aside, remove_stray_partials};
use super::StoreError;
use crate::model::validate_id;
use chrono::{DateTime, Utc};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use storycore_types::HealthStatus;

pub const HEALTH_FILE_VERSION: &str = "1.0";
/// Probe results kept (at one probe every 5 s, the last 80 minutes or so).
pub const MAX_SAMPLES: usize = 1000;
/// Error messages kept.
pub const MAX_ERRORS: usize = 200;
/// Hourly figures kept: one week.
pub const MAX_HOURS: usize = 24 * 7;
/// Longer messages are cut: one runaway traceback must not fill the file.
const MAX_MESSAGE_CHARS: usize = 1000;

pub use storycore_types::health::{HealthHistoryFile, HealthSample, HourlyFigures, LoggedError};

/// One instance's health history, loaded and ready to record into.
#[derive(Debug, Clone)]
pub struct HealthHistory {
    path: PathBuf,
    data: HealthHistoryFile,
    notice: Option<String>,
    /// Set when the file on disk is from a newer app: never overwrite it.
    newer_format: Option<String>,
}

/// A history bigger than this is not read (it is bounded far below it).
const MAX_HISTORY_FILE_BYTES: u64 = 64 << 20;

/// About the size of one sample in the file, to size the write buffer.
const SAMPLE_BYTES: usize = 224;

static FILES_WRITTEN: AtomicU64 = AtomicU64::new(0);
static BYTES_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Health history files this process has written so far, and their bytes
/// (what the monitoring benchmark reports; two relaxed atomic adds per save).
pub fn histories_written() -> (u64, u64) {
    (
        FILES_WRITTEN.load(Ordering::Relaxed),
        BYTES_WRITTEN.load(Ordering::Relaxed),
    )
}

impl HealthHistory {
    /// `{dir}/instance_{id}_health.json`; refuses ids that could name another path.
    pub fn file_path(dir: &Path, id: &str) -> Result<PathBuf, StoreError> {
        validate_id(id).map_err(|e| StoreError::BadInstanceId {
            id: id.to_string(),
            reason: e.message,
        })?;
        Ok(dir.join(format!("instance_{id}_health.json")))
    }

    /// Reads the history, or starts an empty one when there is none. A corrupt
    /// file is moved aside and a fresh history started (see [`Self::notice`]);
    /// a file from a newer app is left alone and this history is read-only.
    pub fn load(dir: &Path, id: &str) -> Result<Self, StoreError> {
        let path = Self::file_path(dir, id)?;
        remove_stray_partials(dir, &file_name(&path));
        let mut history = Self {
            data: empty(id),
            path,
            notice: None,
            newer_format: None,
        };
        let bytes = match super::read_regular(&history.path, MAX_HISTORY_FILE_BYTES) {
            Ok(Some(b)) => Some(b),
            Ok(None) => return Ok(history),
            // Not a file, or too big: it is moved aside like an unreadable one.
            Err(super::ReadProblem::NotAFile(_) | super::ReadProblem::TooBig { .. }) => None,
            Err(super::ReadProblem::Io(source)) => {
                return Err(StoreError::Read {
                    path: history.path,
                    source,
                })
            }
        };
        let value: Option<serde_json::Value> = bytes.and_then(|b| serde_json::from_slice(&b).ok());
        let age = value
            .as_ref()
            .and_then(|v| v["version"].as_str())
            .map(|v| format_age(v, HEALTH_FILE_VERSION));
        if let Some(FormatAge::Newer(found)) = age {
            history.notice = Some(format!(
                "{} was written by a newer version of StoryCore Engine (format {found}); its history is not shown or updated until you update the app.",
                file_name(&history.path)
            ));
            history.newer_format = Some(found);
            return Ok(history);
        }
        match value.map(serde_json::from_value::<HealthHistoryFile>) {
            Some(Ok(mut data)) => {
                data.instance_id = id.to_string();
                history.data = data;
            }
            _ => {
                let kept = move_aside(&history.path)?;
                history.notice = Some(format!(
                    "The health history of instance {id} could not be read; it was kept as {} and a new history was started.",
                    file_name(&kept)
                ));
            }
        }
        Ok(history)
    }

    /// Deletes an instance's history (when the instance is deleted).
    pub fn remove(dir: &Path, id: &str) -> Result<(), StoreError> {
        let path = Self::file_path(dir, id)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StoreError::Write { path, source: e })
            }
            _ => Ok(()),
        }
    }

    pub fn record_sample(&mut self, sample: HealthSample) {
        if let Some(hour) = self.hour_figures(sample.at) {
            add_to_hour(hour, &sample);
        }
        push_bounded(&mut self.data.samples, sample, MAX_SAMPLES);
    }

    pub fn record_error(&mut self, at: DateTime<Utc>, message: impl Into<String>) {
        if let Some(hour) = self.hour_figures(at) {
            hour.failures += 1;
        }
        let mut message: String = message.into();
        if message.chars().count() > MAX_MESSAGE_CHARS {
            message = message.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
        }
        push_bounded(
            &mut self.data.errors,
            LoggedError { at, message },
            MAX_ERRORS,
        );
    }

    /// Writes the history atomically; refused for a history from a newer app.
    pub fn save(&self) -> Result<(), StoreError> {
        if let Some(found) = &self.newer_format {
            return Err(StoreError::NewerFormat {
                path: self.path.clone(),
                found: found.clone(),
            });
        }
        // Compact, not pretty: a machine's file, written whole every minute
        // for each monitored instance (indentation made it 1.6 times as big).
        // Sized up front: growing the buffer copied it over and over.
        let mut bytes = Vec::with_capacity(
            SAMPLE_BYTES * self.data.samples.len() + 128 * self.data.errors.len() + 4096,
        );
        serde_json::to_writer(&mut bytes, &self.data).map_err(|source| StoreError::Encode {
            path: self.path.clone(),
            source,
        })?;
        bytes.push(b'\n');
        atomic_write(&self.path, &bytes)?;
        FILES_WRITTEN.fetch_add(1, Ordering::Relaxed);
        BYTES_WRITTEN.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    pub fn data(&self) -> &HealthHistoryFile {
        &self.data
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A sentence for the user when loading had to repair or refuse something.
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    pub fn is_read_only(&self) -> bool {
        self.newer_format.is_some()
    }

    /// The figures of the hour holding `at`, created in order if missing;
    /// `None` for an hour older than all the kept ones when the list is full.
    fn hour_figures(&mut self, at: DateTime<Utc>) -> Option<&mut HourlyFigures> {
        let secs = at.timestamp();
        let hour = DateTime::from_timestamp(secs - secs.rem_euclid(3600), 0)?;
        let hourly = &mut self.data.hourly;
        let pos = hourly.iter().rposition(|h| h.hour <= hour);
        let index = match pos {
            Some(p) if hourly[p].hour == hour => p,
            None if hourly.len() >= MAX_HOURS => return None,
            _ => {
                let at_index = pos.map_or(0, |p| p + 1);
                hourly.insert(at_index, new_hour(hour));
                if hourly.len() > MAX_HOURS {
                    hourly.pop_front();
                    at_index - 1
                } else {
                    at_index
                }
            }
        };
        hourly.get_mut(index)
    }
}

fn new_hour(hour: DateTime<Utc>) -> HourlyFigures {
    HourlyFigures {
        hour,
        samples: 0,
        average_response_time: 0.0,
        max_response_time: 0.0,
        degraded_samples: 0,
        unhealthy_samples: 0,
        failures: 0,
    }
}

fn add_to_hour(h: &mut HourlyFigures, sample: &HealthSample) {
    h.samples += 1;
    // A running mean: the samples of the hour are not all kept.
    h.average_response_time +=
        (sample.response_time - h.average_response_time) / f64::from(h.samples);
    h.max_response_time = h.max_response_time.max(sample.response_time);
    match sample.status {
        HealthStatus::Degraded => h.degraded_samples += 1,
        HealthStatus::Unhealthy => h.unhealthy_samples += 1,
        HealthStatus::Healthy | HealthStatus::Unknown => {}
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, item: T, max: usize) {
    q.push_back(item);
    while q.len() > max {
        q.pop_front();
    }
}

fn empty(id: &str) -> HealthHistoryFile {
    HealthHistoryFile {
        version: HEALTH_FILE_VERSION.to_string(),
        instance_id: id.to_string(),
        samples: VecDeque::new(),
        errors: VecDeque::new(),
        hourly: VecDeque::new(),
    }
}
