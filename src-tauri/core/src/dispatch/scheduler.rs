//! The scheduler task: whenever something changes (a job queued, a slot freed,
//! an instance back), it places queued jobs in submission order and starts a
//! runner for each one placed. The job is written to disk as `dispatched`,
//! with its instance and prompt id, before its runner may send it; when that
//! write fails, nothing is sent: the job stays queued with an error saying
//! what to do, and placing resumes by itself once writing works again.

use super::placement::{Candidate, Decision};
use super::runner::{self, Mode};
use super::shared::{Attempt, Shared};
use crate::manager::balance;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storycore_types::{AppEvent, Instance, JobError, JobState, JobTarget};

/// Also re-plan this often without a wake-up: cooldowns expire and health
/// figures move without an event that concerns the queue.
const REPLAN_EVERY: Duration = Duration::from_millis(250);

/// After a failed write of a `dispatched` record, no job is sent for this long.
const STORAGE_RETRY: Duration = Duration::from_secs(2);

pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(REPLAN_EVERY) => {}
        }
        shared.retry_unsaved();
        for (job_id, mode) in plan(&shared) {
            let s = shared.clone();
            shared.tasks.spawn(runner::run(s, job_id, mode));
        }
    }
}

/// One pass: returns the jobs placed.
pub(crate) fn plan(shared: &Arc<Shared>) -> Vec<(String, Mode)> {
    let fleet = shared.manager.list();
    let active = shared.manager.active_instance().map(|i| i.id);
    let now = Instant::now();
    let mut placed = Vec::new();
    let mut st = shared.lock();
    if st.storage_blocked_until.is_some_and(|t| t > now) {
        return placed;
    }
    st.cooldown.retain(|_, until| *until > now);
    let mut candidates: Vec<Candidate> = fleet
        .iter()
        .filter(|i| balance::eligible(i) && !st.cooldown.contains_key(&i.id))
        .map(|i| candidate(i, &st))
        .collect();
    let order = st.order.clone();
    for id in order {
        let st = &mut *st;
        let Some(e) = st.jobs.get_mut(&id) else {
            continue;
        };
        if e.job.state != JobState::Queued {
            continue;
        }
        if let JobTarget::Instance { id: want } = &e.job.target {
            if !fleet.iter().any(|i| &i.id == want) {
                e.job.state = JobState::Held;
                e.job.error = Some(JobError::new(format!(
                    "its instance \"{want}\" no longer exists: retarget or cancel it"
                )));
                shared.persist(&mut e.job);
                continue;
            }
        }
        let killed = e.job.instances_killed.clone();
        let others_exist = candidates.iter().any(|c| !killed.contains(&c.id));
        let target = e.job.target.clone();
        let active = active.clone();
        let allowed = move |c: &Candidate| match &target {
            JobTarget::Auto => !others_exist || !killed.contains(&c.id),
            JobTarget::Active => active.as_deref() == Some(c.id.as_str()),
            JobTarget::Instance { id } => &c.id == id,
        };
        let decision = st.planner.place(&mut candidates, allowed, e.work);
        let Decision::Place(i) = decision else {
            continue;
        };
        let instance_id = candidates[i].id.clone();
        let prompt_id = uuid::Uuid::new_v4().to_string();
        let before = (e.job.instance_id.clone(), e.job.error.clone());
        e.job.state = JobState::Dispatched;
        e.job.instance_id = Some(instance_id.clone());
        e.job.prompt_id = Some(prompt_id.clone());
        e.job.attempts += 1;
        e.job.finished_at = None;
        if e.held_for_storage {
            e.job.error = None;
        }
        e.job.updated_at = chrono::Utc::now();
        // Write-ahead: on disk before the runner may send it, or not sent.
        if let Err(err) = shared.write(&e.job) {
            e.job.state = JobState::Queued;
            (e.job.instance_id, e.job.error) = before;
            e.job.prompt_id = None;
            e.job.attempts -= 1;
            e.held_for_storage = true;
            e.job.error = Some(JobError::new(format!(
                "Not sent: its record could not be saved ({err}). Free disk space or make the \
                 folder writable; it is sent by itself once saving works again."
            )));
            tracing::error!(job = %id, "not sent, its record could not be written: {err}");
            shared.emit(AppEvent::JobUpdated(Box::new(e.job.summary())));
            st.storage_blocked_until = Some(now + STORAGE_RETRY);
            break;
        }
        e.held_for_storage = false;
        e.attempt = Some(Attempt::new(instance_id, prompt_id, &shared.cancel));
        shared.emit(AppEvent::JobUpdated(Box::new(e.job.summary())));
        placed.push((id, Mode::Submit));
    }
    placed
}

fn candidate(i: &Instance, st: &super::shared::QueueState) -> Candidate {
    let (mut in_flight, mut in_flight_work) = (0u32, 0.0f64);
    for e in st.jobs.values() {
        if e.attempt.as_ref().is_some_and(|a| a.instance_id == i.id) {
            in_flight += 1;
            in_flight_work += e.work;
        }
    }
    Candidate {
        id: i.id.clone(),
        capacity: i.config.max_concurrent(),
        in_flight,
        in_flight_work,
        secs_per_unit: st.speeds.secs_per_unit(&i.id),
        reported_queue: i
            .health
            .system_stats
            .as_ref()
            .map_or(0, |s| s.active_workflows),
        waiting_work: 0.0,
    }
}
