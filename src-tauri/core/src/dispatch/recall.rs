//! Taking jobs back from a lost instance without running them twice.
//!
//! An instance can be "lost" (unhealthy, stopped, in error) and still be
//! running the job: a server that answers health checks slowly, a remote box
//! whose monitoring the user stopped, a frozen process that will thaw. So a
//! job goes back to the queue only once its instance is known not to run it:
//!
//! 1. its local process has ended: nothing runs it;
//! 2. else the prompts are deleted from the instance's queue and the running
//!    one interrupted, then the queue is read until none of them is there. A
//!    prompt that finished meanwhile is collected, not run again;
//! 3. else (no answer) a local process is killed as hung, then requeued; a
//!    remote one is requeued as before (a strike toward "suspect") and its
//!    prompts are remembered, to be deleted and interrupted there as soon as
//!    it answers again.

use super::state::{Shared, Taken};
use crate::client::{ClientError, ComfyClient, HistoryEntry};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Per request to the lost instance: it has already failed to answer once.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an interrupted prompt may take to leave the instance's queue
/// (ComfyUI stops at the next node or sampler step).
const STOP_WAIT: Duration = Duration::from_secs(10);

/// What became of the prompts on the instance.
enum Stopped {
    /// Every prompt is gone from its queue; those that ended are listed.
    Yes(HashMap<String, HistoryEntry>),
    /// The instance did not answer.
    NoAnswer(ClientError),
}

pub(crate) async fn recall(
    shared: Arc<Shared>,
    instance_id: String,
    why: String,
    taken: Vec<Taken>,
) {
    let client = shared
        .manager
        .get(&instance_id)
        .and_then(|i| ComfyClient::for_instance(&i.config).ok())
        .map(|c| c.with_timeout(ASK_TIMEOUT));
    let alive = shared.manager.process_alive(&instance_id);
    let outcome = match (&client, alive) {
        // Its process has ended: nothing runs the prompts any more.
        (_, Some(false)) | (None, _) => None,
        (Some(c), _) => Some(stop_prompts(c, &taken).await),
    };
    let note = format!("instance \"{instance_id}\" {why}");
    match outcome {
        None => requeue_all(&shared, &taken, true, &note),
        Some(Stopped::Yes(ended)) => {
            for t in &taken {
                match ended.get(&t.prompt_id) {
                    Some(entry) if entry.succeeded() => shared.collect(t.sent()),
                    _ => requeue_one(
                        &shared,
                        t,
                        false,
                        &format!("{note}; it was stopped there first"),
                    ),
                }
            }
        }
        Some(Stopped::NoAnswer(e)) => {
            if alive == Some(true) {
                // Ours, alive, silent: hung. Kill it so it cannot finish the
                // job beside the new attempt (its supervisor restarts it).
                shared.manager.kill_hung(&instance_id, ASK_TIMEOUT).await;
            } else {
                tracing::warn!(instance = %instance_id, "could not stop its prompts ({e}): they are requeued and will be stopped there when it answers");
                shared
                    .lock()
                    .add_orphans(&instance_id, taken.iter().map(|t| t.prompt_id.clone()));
            }
            requeue_all(&shared, &taken, true, &note);
        }
    }
}

/// Deletes the prompts from the instance's queue, interrupts the running
/// one, and waits until the queue holds none of them.
async fn stop_prompts(client: &ComfyClient, taken: &[Taken]) -> Stopped {
    let ids: Vec<String> = taken.iter().map(|t| t.prompt_id.clone()).collect();
    if let Err(e) = client.delete_from_queue(&ids).await {
        return Stopped::NoAnswer(e);
    }
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    loop {
        let q = match client.queue().await {
            Ok(q) => q,
            Err(e) => return Stopped::NoAnswer(e),
        };
        let running: Vec<&String> = ids
            .iter()
            .filter(|id| q.running.iter().any(|r| &r.prompt_id == *id))
            .collect();
        let pending = ids.iter().any(|id| q.contains(id));
        if !pending {
            break;
        }
        for id in running {
            if let Err(e) = client.interrupt(Some(id)).await {
                return Stopped::NoAnswer(e);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Stopped::NoAnswer(ClientError::TimedOut {
                url: client.base_url().to_string(),
                action: "waiting for an interrupted prompt to stop".into(),
                timeout_ms: STOP_WAIT.as_millis() as u64,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ended = HashMap::new();
    for id in ids {
        match client.history(&id).await {
            Ok(Some(entry)) => {
                ended.insert(id, entry);
            }
            Ok(None) => {}
            Err(e) => return Stopped::NoAnswer(e),
        }
    }
    Stopped::Yes(ended)
}

fn requeue_all(shared: &Shared, taken: &[Taken], died: bool, note: &str) {
    for t in taken {
        requeue_one(shared, t, died && t.running, note);
    }
}

fn requeue_one(shared: &Shared, t: &Taken, died_running: bool, note: &str) {
    shared.requeue_attempt(t.sent(), died_running, note.to_string());
}

/// Deletes and interrupts, on an instance that answers again, the prompts
/// it did not answer about when their jobs were requeued (run by the driver).
pub(crate) async fn clear_orphans(shared: Arc<Shared>, instance_id: String) {
    let Some(prompts) = shared.lock().take_orphans(&instance_id) else {
        return;
    };
    let Some(client) = shared
        .manager
        .get(&instance_id)
        .and_then(|i| ComfyClient::for_instance(&i.config).ok())
    else {
        return;
    };
    let client = client.with_timeout(ASK_TIMEOUT);
    let ok = client.delete_from_queue(&prompts).await.is_ok() && {
        let mut all = true;
        for p in &prompts {
            all &= client.interrupt(Some(p)).await.is_ok();
        }
        all
    };
    if ok {
        tracing::info!(instance = %instance_id, n = prompts.len(), "stopped the prompts it held when it was lost");
    } else {
        // Still unwell: try again when it next comes back.
        shared.lock().add_orphans(&instance_id, prompts);
    }
}
