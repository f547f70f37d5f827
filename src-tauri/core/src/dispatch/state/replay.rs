//! The queue's state as a previous run left it: built from the jobs its
//! store kept.

use super::{Attempt, Entry, QueueState};
use crate::dispatch::machine::JobAction;
use crate::dispatch::options::Retention;
use crate::dispatch::placement::{Planner, Policy};
use crate::dispatch::speed::SpeedBook;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use storycore_types::{Job, JobState};
use tokio_util::sync::CancellationToken;

/// What [`QueueState::replay`] found besides the jobs.
pub(crate) struct Replay {
    /// Jobs left in flight with a prompt id: followed on their instance.
    pub follow: Vec<String>,
    /// Jobs waiting to be placed.
    pub queued: usize,
}

impl QueueState {
    /// An empty queue.
    pub fn new(initial_secs_per_unit: f64, policy: Policy, retention: Retention) -> Self {
        Self {
            jobs: HashMap::new(),
            order: Vec::new(),
            speeds: SpeedBook::new(initial_secs_per_unit),
            planner: Planner::new(policy),
            cooldown: HashMap::new(),
            followers: HashMap::new(),
            storage_blocked_until: None,
            orphans: HashMap::new(),
            retention,
            calibrating: HashSet::new(),
            calibrated: HashSet::new(),
            by_prompt: HashMap::new(),
        }
    }

    /// Takes in the jobs a previous run kept, in submission order, each
    /// with its workflow as JSON and its work: a job left in flight with a
    /// prompt id gets its attempt back (to follow), one in flight without
    /// one was never sent (queued again), and a copy left running is
    /// stopped when its instance answers, not followed.
    pub fn replay(
        &mut self,
        jobs: impl IntoIterator<Item = (Job, Arc<[u8]>, f64)>,
        cancel: &CancellationToken,
    ) -> Replay {
        let mut found = Replay {
            follow: Vec::new(),
            queued: 0,
        };
        for (mut job, workflow_json, work) in jobs {
            let attempt = match (&job.state, &job.instance_id, &job.prompt_id) {
                (JobState::Dispatched | JobState::Running, Some(i), Some(p)) => {
                    found.follow.push(job.id.clone());
                    Some(Attempt::new(i.clone(), p.clone(), cancel))
                }
                _ => None,
            };
            if let Some(c) = job.copy.take() {
                self.add_orphans(&c.instance_id, [c.prompt_id]);
            }
            let mut entry = Entry::new(job, workflow_json, work, true);
            if let Some(a) = attempt {
                entry.prompts.push(a.prompt_id.clone());
                entry.attempt = Some(a);
            }
            if entry.attempt.is_none() && entry.job.state.is_in_flight() {
                // In flight without a prompt id: never sent.
                let _ = entry.apply(JobAction::Requeue);
            }
            if entry.job.state == JobState::Queued {
                found.queued += 1;
            }
            let id = entry.job.id.clone();
            for p in &entry.prompts {
                self.by_prompt.insert(p.clone(), id.clone());
            }
            self.order.push(id.clone());
            self.jobs.insert(id, entry);
        }
        found
    }
}

impl Entry {
    /// A job new to the queue; `accepted` once its record is durable.
    pub fn new(job: Job, workflow_json: Arc<[u8]>, work: f64, accepted: bool) -> Self {
        Self {
            job,
            workflow_json,
            accepted,
            work,
            queued_at: Instant::now(),
            submit_to_post: None,
            attempt: None,
            copy: None,
            held_for_storage: false,
            prompts: Vec::new(),
        }
    }
}
