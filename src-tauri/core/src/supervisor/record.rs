//! `instances/<id>/process.json`: the pid, group and port of a running local
//! instance, so that the next app launch can re-attach to a server it left
//! running instead of starting a duplicate. Deleted when the process ends.

use super::error::SupervisorError;
use super::layout::InstanceDirs;
use super::port::comfyui_version_at;
use super::process::{group_alive, pid_alive, signal_group};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessRecord {
    pub pid: u32,
    pub pgid: u32,
    pub host: String,
    pub port: u16,
    /// The program and its arguments, as `/proc/<pid>/cmdline` shows them:
    /// a reused pid runs another command line.
    pub cmdline: Vec<String>,
    pub started_at: DateTime<Utc>,
}

impl ProcessRecord {
    /// Writes the record (temp file, then rename: a crash leaves the old or the new).
    pub fn save(&self, dirs: &InstanceDirs) -> Result<(), SupervisorError> {
        let path = dirs.process_record();
        let tmp = path.with_extension("json.partial");
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| SupervisorError::io(&dirs.id, "write", &path, e))
    }

    pub fn load(dirs: &InstanceDirs) -> Result<Option<Self>, SupervisorError> {
        let path = dirs.process_record();
        match crate::store::read_regular(&path, 1 << 20) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                SupervisorError::io(&dirs.id, "read", &path, std::io::Error::other(e))
            }),
            Ok(None) => Ok(None),
            Err(e) => Err(SupervisorError::io(
                &dirs.id,
                "read",
                &path,
                std::io::Error::other(e.to_string()),
            )),
        }
    }

    pub fn remove(dirs: &InstanceDirs) {
        let _ = std::fs::remove_file(dirs.process_record());
    }
}

/// The command line of a live process (Linux), or None.
pub fn process_cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect(),
    )
}

/// The recorded process of instance `id`, when it can be re-attached: the pid
/// lives, runs the recorded command line, and a ComfyUI answers on the port.
/// A record that no longer fits is deleted.
pub async fn find_adoptable(dirs: &InstanceDirs) -> Result<ProcessRecord, SupervisorError> {
    let refuse = |reason: String| SupervisorError::NotAdoptable {
        id: dirs.id.clone(),
        reason,
    };
    let record = ProcessRecord::load(dirs)?.ok_or_else(|| refuse("no process.json".into()))?;
    if !pid_alive(record.pid) {
        ProcessRecord::remove(dirs);
        return Err(refuse(format!("process {} has ended", record.pid)));
    }
    if process_cmdline(record.pid).as_ref() != Some(&record.cmdline) {
        ProcessRecord::remove(dirs);
        return Err(refuse(format!(
            "pid {} now runs another program",
            record.pid
        )));
    }
    if comfyui_version_at(&record.host, record.port)
        .await
        .is_none()
    {
        return Err(refuse(format!(
            "process {} lives but no ComfyUI answers on port {}",
            record.pid, record.port
        )));
    }
    Ok(record)
}

/// Stops a re-attached process (not our child: it cannot be waited for, so its
/// group is polled). SIGINT, `grace`, then SIGKILL; the record is removed.
pub async fn stop_adopted(dirs: &InstanceDirs, record: &ProcessRecord, grace: Duration) {
    signal_group(record.pgid, libc::SIGINT);
    let deadline = tokio::time::Instant::now() + grace;
    while pid_alive(record.pid) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal_group(record.pgid, libc::SIGKILL);
    while group_alive(record.pgid) && tokio::time::Instant::now() < deadline + grace {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ProcessRecord::remove(dirs);
}
