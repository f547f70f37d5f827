//! The scheduler task: whenever something changes (a job queued, a slot freed,
//! an instance back), it places queued jobs in submission order and starts a
//! runner for each one placed. The job is written to disk as `dispatched`,
//! with its instance and prompt id, before its runner may send it.

use super::placement::{Candidate, Decision};
use super::runner::{self, Mode};
use super::shared::{Attempt, Shared};
use crate::manager::balance;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storycore_types::{Instance, JobError, JobState, JobTarget};

/// Also re-plan this often without a wake-up: cooldowns expire and health
/// figures move without an event that concerns the queue.
const REPLAN_EVERY: Duration = Duration::from_millis(250);

pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(REPLAN_EVERY) => {}
        }
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
        e.job.state = JobState::Dispatched;
        e.job.instance_id = Some(instance_id.clone());
        e.job.prompt_id = Some(prompt_id.clone());
        e.job.attempts += 1;
        e.job.finished_at = None;
        e.attempt = Some(Attempt::new(instance_id, prompt_id, &shared.cancel));
        // Write-ahead: on disk before the runner may send it.
        shared.persist(&mut e.job);
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
