//! Follows the manager's events: an instance that errors, stops, vanishes or
//! turns unhealthy gives its jobs back to the queue; a paused instance has its
//! not-yet-started prompts taken back; an instance back at work wakes the
//! scheduler.

use super::state::{Effect, Sent, Shared};
use crate::client::ComfyClient;
use std::sync::Arc;
use std::time::Duration;
use storycore_types::{AppEvent, HealthStatus, InstanceStatus, JobState};
use tokio::sync::broadcast::error::RecvError;

pub(crate) async fn run(
    shared: Arc<Shared>,
    mut events: tokio::sync::broadcast::Receiver<AppEvent>,
) {
    loop {
        let ev = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            ev = events.recv() => ev,
        };
        match ev {
            Ok(AppEvent::InstanceUpdated(inst)) => match inst.status {
                InstanceStatus::Paused => shared.effect(Effect::TakeBack {
                    instance_id: inst.id.clone(),
                }),
                InstanceStatus::Error => shared.instance_lost(&inst.id, "failed"),
                InstanceStatus::Stopping | InstanceStatus::Stopped => {
                    shared.instance_gone(&inst.id, "was stopped")
                }
                _ => shared.wake.notify_one(),
            },
            Ok(AppEvent::HealthChanged { id, health }) => match health.status {
                HealthStatus::Unhealthy => shared.instance_lost(&id, "became unhealthy"),
                HealthStatus::Healthy | HealthStatus::Degraded => {
                    shared.effect(Effect::ClearOrphans {
                        instance_id: id.clone(),
                    });
                    shared.wake.notify_one();
                }
                HealthStatus::Unknown => shared.wake.notify_one(),
            },
            Ok(AppEvent::InstanceRemoved { id }) => {
                shared.instance_gone(&id, "was deleted");
                shared.wake.notify_one();
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => shared.wake.notify_one(),
            Err(RecvError::Closed) => return,
        }
    }
}

/// Deletes the paused instance's not-yet-started prompts from its queue and
/// puts their jobs back in the app's queue (to run elsewhere, or there after
/// resume). A prompt that started meanwhile, or already ended, stays.
pub(crate) async fn take_back(shared: Arc<Shared>, instance_id: String) {
    let waiting: Vec<(String, String)> = {
        let st = shared.lock();
        st.entries()
            .filter(|e| e.job().state == JobState::Dispatched)
            .filter_map(|e| {
                let a = e.attempt()?;
                (a.instance() == instance_id).then(|| (e.job().id.clone(), a.prompt().to_string()))
            })
            .collect()
    };
    if waiting.is_empty() {
        return;
    }
    let Some(inst) = shared.manager.get(&instance_id) else {
        return;
    };
    let Ok(client) = ComfyClient::for_instance(&inst.config) else {
        return;
    };
    let client = client.with_timeout(Duration::from_secs(5));
    let prompts: Vec<String> = waiting.iter().map(|(_, p)| p.clone()).collect();
    if let Err(e) = client.delete_from_queue(&prompts).await {
        tracing::warn!(instance = %instance_id, "taking back queued prompts: {e}");
        return;
    }
    let Ok(queue) = client.queue().await else {
        return;
    };
    for (job_id, prompt_id) in waiting {
        if queue.contains(&prompt_id) {
            continue; // started before the delete arrived
        }
        if !matches!(client.history(&prompt_id).await, Ok(None)) {
            continue; // ended (its runner collects it), or unknown: leave it
        }
        shared.take_back(Sent {
            job: &job_id,
            prompt: &prompt_id,
            instance: &instance_id,
        });
    }
}
