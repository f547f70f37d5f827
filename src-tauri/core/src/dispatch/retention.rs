//! Finished jobs are kept for a set time and up to a set count (the app's
//! settings; 30 days and 10,000 by default), then deleted with their output
//! copies; each instance's `instance_{id}_workflows.json` drops entries older
//! than the same age. Pruned when the queue opens, daily, and when the
//! settings change. Unfinished jobs are never pruned.

use super::outputs;
use super::state::Shared;
use chrono::Utc;
use std::sync::Arc;
use storycore_types::AppEvent;

/// Deletes what is past the limits; returns how many jobs went.
pub(crate) fn prune(shared: &Shared) -> usize {
    let now = Utc::now();
    let (removed, cutoff) = {
        let mut st = shared.lock();
        let r = st.retention();
        let cutoff = now - chrono::Duration::from_std(r.max_age).unwrap_or(chrono::Duration::MAX);
        let mut finished: Vec<(chrono::DateTime<Utc>, String)> = st
            .entries()
            .filter(|e| e.job().state.is_final())
            .map(|e| {
                (
                    e.job().finished_at.unwrap_or(e.job().updated_at),
                    e.job().id.clone(),
                )
            })
            .collect();
        finished.sort_by_key(|f| std::cmp::Reverse(f.0)); // newest first
        let removed: Vec<String> = finished
            .into_iter()
            .enumerate()
            .filter(|(i, (at, _))| *i >= r.max_finished || *at < cutoff)
            .map(|(_, (_, id))| id)
            .collect();
        st.remove_jobs(&removed);
        (removed, cutoff)
    };
    for id in &removed {
        shared.journal.remove(id);
        let folder = outputs::job_folder(&shared.dir, id);
        if folder.exists() {
            if let Err(e) = std::fs::remove_dir_all(&folder) {
                tracing::warn!("could not delete {}: {e}", folder.display());
            }
        }
        shared.emit(AppEvent::JobRemoved { id: id.clone() });
    }
    if !removed.is_empty() {
        tracing::info!(
            n = removed.len(),
            "finished jobs past the retention limits deleted"
        );
    }
    prune_instance_logs(shared, cutoff);
    removed.len()
}

/// Drops entries older than `cutoff` from every `instance_{id}_workflows.json`.
fn prune_instance_logs(shared: &Shared, cutoff: chrono::DateTime<Utc>) {
    let Ok(entries) = std::fs::read_dir(&shared.dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name
            .strip_prefix("instance_")
            .and_then(|n| n.strip_suffix("_workflows.json"))
        else {
            continue;
        };
        shared.edit_log(id, |f| f.prune_before(cutoff));
    }
}

/// Prunes once a day while the queue is open.
pub(crate) async fn run_daily(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(super::options::DAY) => {}
        }
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || prune(&s)).await;
    }
}
