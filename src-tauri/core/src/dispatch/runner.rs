//! One attempt of one job on one instance: send it (unless following a prompt
//! sent before an app restart), then follow it to its end. The `/ws` follower
//! reports progress and pokes the runner when the prompt ends; the runner
//! itself asks `/queue` then `/history/{prompt_id}`, which also covers a
//! dropped socket. Asking in that order leaves no gap: ComfyUI moves a prompt
//! from its running list into its history in one step.

use super::outputs;
use super::state::{Mode, Sent, Shared};
use super::workflow;
use super::writer::Durable;
use crate::client::{ClientError, ComfyClient, HistoryEntry};
use std::sync::Arc;
use std::time::Duration;
use storycore_types::{JobError, JobState};

/// After the follower says "ended", ask again this quickly for a while: the
/// history entry lands a moment after the last `/ws` message.
const QUICK_POLL: Duration = Duration::from_millis(25);
const QUICK_POLLS: u32 = 40;
/// How long a prompt waits for its instance's first `/ws` connection
/// before it is sent all the same.
const FOLLOWER_WAIT: Duration = Duration::from_secs(2);

/// `durable`: the answer of the write of this attempt's `dispatched` record,
/// when it was not awaited before: nothing is sent until it says durable.
pub(crate) async fn run(shared: Arc<Shared>, job_id: String, mode: Mode, durable: Option<Durable>) {
    run_as(shared, job_id, mode, durable, false).await
}

/// Runs the job's copy (see `scheduler::speculate`) like an attempt. If it
/// ends without having taken the attempt's place (refused, failed, lost),
/// it is dropped and its prompt stopped; the attempt carries on. At the
/// app's shutdown it stays recorded, so the next start stops it.
pub(crate) async fn run_copy(shared: Arc<Shared>, job_id: String, durable: Durable) {
    let Some(prompt_id) = shared
        .lock()
        .entry(&job_id)
        .and_then(|e| e.copy().map(|c| c.prompt().to_string()))
    else {
        return;
    };
    run_as(
        shared.clone(),
        job_id.clone(),
        Mode::Submit,
        Some(durable),
        true,
    )
    .await;
    if shared.cancel.is_cancelled() {
        return;
    }
    let stop = shared.drop_copy(&job_id, &prompt_id);
    if let Some(stop) = stop {
        tracing::info!(job = %job_id, instance = %stop.0, "its copy is dropped");
        shared.stop_prompts([stop]);
        shared.wake.notify_one();
    }
}

async fn run_as(
    shared: Arc<Shared>,
    job_id: String,
    mode: Mode,
    durable: Option<Durable>,
    copy: bool,
) {
    let Some((instance_id, prompt_id, workflow, input_files, token, done)) = ({
        let st = shared.lock();
        st.entry(&job_id).and_then(|e| {
            let sent = if copy { e.copy() } else { e.attempt() };
            sent.map(|a| {
                (
                    a.instance().to_string(),
                    a.prompt().to_string(),
                    e.job().workflow.clone(),
                    e.job().input_files.clone(),
                    a.token().clone(),
                    a.done().clone(),
                )
            })
        })
    }) else {
        return;
    };
    let sent = Sent {
        job: &job_id,
        prompt: &prompt_id,
        instance: &instance_id,
    };
    let requeue = |died: bool, note: String| {
        shared.requeue_attempt(sent, died, note);
    };
    let Some(instance) = shared.manager.get(&instance_id) else {
        requeue(
            false,
            format!("instance \"{instance_id}\" no longer exists"),
        );
        return;
    };
    let timeout = Duration::from_millis(instance.config.timeout());
    let client = match ComfyClient::for_instance(&instance.config) {
        // Polls must fail fast; the job's own timeout is enforced below.
        Ok(c) => c.with_timeout(shared.options.request_timeout),
        Err(e) => {
            shared.fail_attempt(sent, JobError::new(e.to_string()));
            return;
        }
    };
    let mut following = shared.follow(&instance_id, &client);

    if mode == Mode::Submit {
        if let Some(durable) = durable {
            let written = tokio::select! {
                _ = token.cancelled() => return,
                r = durable => r,
            };
            let why = match written {
                Ok(Ok(())) => None,
                // Another holder of the store moved the job first: not
                // sent here; the store says where it is.
                Ok(Err(f)) if f.conflict => {
                    tracing::warn!(job = %job_id, "not sent: {}", f.message);
                    shared.reload(&job_id).await;
                    return;
                }
                Ok(Err(f)) => Some(f.message),
                Err(_) => Some("the journal writer stopped".to_string()),
            };
            if let Some(why) = why {
                shared.hold_for_storage(sent, &why);
                return;
            }
        }
        {
            shared.lock().posted(&job_id);
        }
        // The instance's stream opened first (its first connection only: a
        // lost one is not waited for), so the prompt's first messages (its
        // start, its first node's progress) are not sent to no one. Not for
        // long: the polls below learn the outcome without it.
        let waited = std::time::Instant::now();
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::timeout(FOLLOWER_WAIT, following.wait_for(Option::is_some)) => {}
        }
        tracing::debug!(job = %job_id, instance = %instance_id, waited_ms = waited.elapsed().as_millis() as u64, "sending the prompt");
        // The files its prompt reads go first, at every attempt: the
        // instance that runs it may never have seen them.
        let uploaded = tokio::select! {
            _ = token.cancelled() => return,
            r = upload_inputs(&client, &input_files) => r,
        };
        match uploaded {
            Ok(()) => {}
            Err(UploadFailed::Lost(why)) => {
                shared.fail_attempt(sent, JobError::new(why));
                return;
            }
            Err(UploadFailed::Refused(e)) => {
                let why = format!("the instance refused the files its prompt needs: {e}");
                shared.fail_attempt(sent, JobError::new(why));
                return;
            }
            Err(UploadFailed::Unreachable(e)) => {
                cool_down(&shared, &instance_id);
                requeue(false, format!("its input files could not be sent: {e}"));
                return;
            }
        }
        let client_id = Shared::client_id(&instance_id);
        let posted = tokio::select! {
            _ = token.cancelled() => return,
            r = client.submit_prompt(workflow, &prompt_id, &client_id) => r,
        };
        match posted {
            Ok(_) => {}
            Err(e) if workflow::is_rejection(&e) => {
                let err = match e.comfy_body() {
                    Some(body) => workflow::rejection_error(body, &instance_id),
                    None => JobError::new(e.to_string()),
                };
                shared.fail_attempt(sent, err);
                return;
            }
            // Refused, or answered with an error: the prompt is not there.
            Err(e @ (ClientError::Refused { .. } | ClientError::Http { .. })) => {
                cool_down(&shared, &instance_id);
                requeue(false, e.to_string());
                return;
            }
            // No answer: the request may have reached the server (a frozen
            // process reads it when it thaws) and the prompt run there. It is
            // stopped there, or the instance known dead, before the job may
            // run elsewhere.
            Err(e) => {
                shared.instance_lost(
                    &instance_id,
                    &format!("did not answer when the job was sent ({e})"),
                );
                return;
            }
        }
    }

    let mut failures = 0u32;
    let mut quick = if mode == Mode::Follow { 1 } else { 0 };
    loop {
        let wait = if quick > 0 {
            quick -= 1;
            QUICK_POLL
        } else {
            shared.options.poll_interval
        };
        tokio::select! {
            _ = token.cancelled() => return,
            _ = done.notified() => quick = QUICK_POLLS,
            _ = tokio::time::sleep(wait) => {}
        }
        if let Some(why) = overdue(&shared, sent, timeout) {
            time_out(&shared, &client, sent, why).await;
            return;
        }
        let step = tokio::select! {
            _ = token.cancelled() => return,
            s = check(&shared, &client, sent) => s,
        };
        match step {
            Ok(None) => failures = 0,
            Ok(Some(entry)) => {
                if !shared.mark_executed(sent, entry.succeeded()) {
                    return; // its copy won, or it is a copy that lost
                }
                match outputs::fetch(&shared, &client, &job_id, &entry).await {
                    Ok(files) => {
                        finish(&shared, sent, &entry, files);
                        return;
                    }
                    // The files stay on the instance: try again at the next poll.
                    Err(e) => tracing::warn!(job = %job_id, "fetching outputs: {e}"),
                }
            }
            Err(Gone) => {
                let died = shared
                    .lock()
                    .entry(&job_id)
                    .is_some_and(|e| e.job().state == JobState::Running);
                requeue(
                    died,
                    format!("prompt {prompt_id} vanished from instance \"{instance_id}\""),
                );
                return;
            }
            Err(Unanswered(e)) => {
                failures += 1;
                if failures >= shared.options.lost_after_failures {
                    shared.instance_lost(&instance_id, &format!("stopped answering ({e})"));
                    return;
                }
            }
        }
    }
}

enum CheckError {
    /// Neither queued, running nor in the history: lost (restart, deleted).
    Gone,
    Unanswered(ClientError),
}
use CheckError::{Gone, Unanswered};

/// `Ok(None)`: still queued or running; `Ok(Some)`: ended.
async fn check(
    shared: &Shared,
    client: &ComfyClient,
    sent: Sent<'_>,
) -> Result<Option<HistoryEntry>, CheckError> {
    let prompt_id = sent.prompt;
    let q = client.queue().await.map_err(Unanswered)?;
    if q.running.iter().any(|i| i.prompt_id == prompt_id) {
        shared.mark_running(sent);
    }
    if q.contains(prompt_id) {
        return Ok(None);
    }
    match client.history(prompt_id).await.map_err(Unanswered)? {
        Some(entry) => Ok(Some(entry)),
        None => Err(Gone),
    }
}

/// Past the instance's `timeoutMs` (counted from the start of execution, or
/// from sending while it waits in the instance's queue), or no progress for
/// `stall_after` while running.
fn overdue(shared: &Shared, sent: Sent<'_>, timeout: Duration) -> Option<String> {
    let st = shared.lock();
    let a = st.entry(sent.job)?.sending(sent.prompt)?;
    let since = a.started().unwrap_or(a.dispatched());
    if since.elapsed() > timeout {
        return Some(format!("timed out after {} ms", timeout.as_millis()));
    }
    match shared.options.stall_after {
        Some(stall) if a.started().is_some() && a.last_progress().elapsed() > stall => {
            Some(format!("stalled: no progress for {} ms", stall.as_millis()))
        }
        _ => None,
    }
}

async fn time_out(shared: &Shared, client: &ComfyClient, sent: Sent<'_>, why: String) {
    let (job_id, prompt_id, instance_id) = (sent.job, sent.prompt, sent.instance);
    tracing::warn!(job = %job_id, instance = %instance_id, "{why}: interrupting");
    // Stop it there first, so a retry elsewhere never runs beside it.
    let ids = [prompt_id.to_string()];
    let _ = client.delete_from_queue(&ids).await;
    let _ = client.interrupt(Some(prompt_id)).await;
    let note = format!("{why} on instance \"{instance_id}\"; it was interrupted");
    if let Some(job) = shared.time_out_attempt(sent, note) {
        shared.log_finished(instance_id, &job);
    }
}

enum UploadFailed {
    /// The app's copy is gone: no attempt can succeed.
    Lost(String),
    /// The instance answered, and said no (4xx): so would the next.
    Refused(ClientError),
    /// No answer, or a server error: another instance may take them.
    Unreachable(ClientError),
}

/// Uploads the files a job's prompt reads to the instance about to run it.
async fn upload_inputs(
    client: &ComfyClient,
    files: &[storycore_types::InputFile],
) -> Result<(), UploadFailed> {
    for f in files {
        let path = std::path::PathBuf::from(&f.path);
        let data = match tokio::fs::read(&path).await {
            Ok(d) => d,
            Err(e) => {
                return Err(UploadFailed::Lost(format!(
                    "the file {} its prompt reads ({}) cannot be read: {e}; upload it again and resubmit",
                    f.filename,
                    path.display()
                )))
            }
        };
        if let Err(e) = client
            .upload(data, &f.filename, &f.subfolder, &f.kind, None)
            .await
        {
            return Err(match &e {
                ClientError::Http { status, .. } if (400..500).contains(status) => {
                    UploadFailed::Refused(e)
                }
                _ => UploadFailed::Unreachable(e),
            });
        }
    }
    Ok(())
}

fn cool_down(shared: &Shared, instance_id: &str) {
    shared
        .lock()
        .cool_down(instance_id, shared.options.cooldown);
}

fn finish(shared: &Shared, sent: Sent<'_>, entry: &HistoryEntry, files: outputs::Fetched) {
    let instance_id = sent.instance;
    let ok = entry.succeeded();
    let error = if ok {
        files.not_copied.map(JobError::new)
    } else {
        Some(workflow::execution_error(entry, instance_id))
    };
    let Some((job, ran, _)) =
        shared.finish_attempt(sent, ok, files.outputs, error, entry.execution_secs())
    else {
        return;
    };
    shared.manager.record_workflow(
        instance_id,
        ok,
        ran.as_secs_f64() * 1000.0,
        job.error.as_ref().map(|e| e.message.clone()),
    );
    shared.log_finished(instance_id, &job);
}
