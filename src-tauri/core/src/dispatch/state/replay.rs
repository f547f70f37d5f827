//! The queue's state as a previous run left it: built from the jobs its
//! store kept.

use super::{Attempt, Entry, QueueState};
use crate::dispatch::machine::JobAction;
use crate::dispatch::models::{prior_load_secs, Needs};
use crate::dispatch::options::Retention;
use crate::dispatch::placement::{Planner, Policy};
use crate::dispatch::speed::SpeedBook;
use crate::dispatch::store::Revision;
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
            models: Default::default(),
        }
    }

    /// Takes in the jobs a previous run kept, in submission order, each
    /// with its workflow as JSON and its work: a job left in flight with a
    /// prompt id gets its attempt back (to follow), one in flight without
    /// one was never sent (queued again), and a copy left running is
    /// stopped when its instance answers, not followed.
    pub fn replay(
        &mut self,
        jobs: impl IntoIterator<Item = (Job, WorkflowRead)>,
        revisions: &HashMap<String, Revision>,
        cancel: &CancellationToken,
    ) -> Replay {
        let mut found = Replay {
            follow: Vec::new(),
            queued: 0,
        };
        for (mut job, read) in jobs {
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
            let revision = revisions.get(&job.id).copied().unwrap_or_default();
            let mut entry = Entry::new(job, read, true);
            entry.revision = revision;
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

/// What the queue reads of a job's workflow once, before it takes the job
/// in (never under its lock): the JSON its records hold, its work, what it
/// needs, the loads of its models and its nodes' cache keys.
pub(crate) struct WorkflowRead {
    workflow_json: Arc<[u8]>,
    work: f64,
    needs: Arc<Needs>,
    loads: Arc<[(String, f64)]>,
    keys: Arc<[(u64, f64)]>,
}

impl WorkflowRead {
    pub fn of(workflow: &serde_json::Value) -> Self {
        let needs = Needs::of(workflow);
        let mut loads: Vec<(String, f64)> = Vec::new();
        for m in &needs.models {
            if !loads.iter().any(|(f, _)| *f == m.file) {
                loads.push((m.file.clone(), prior_load_secs(m)));
            }
        }
        Self {
            workflow_json: serde_json::to_vec(workflow)
                .unwrap_or_else(|_| b"null".to_vec())
                .into(),
            work: crate::dispatch::workflow::estimate_work(workflow),
            needs: Arc::new(needs),
            loads: loads.into(),
            keys: crate::dispatch::cache::node_keys(workflow).into(),
        }
    }
}

impl Entry {
    /// A job new to the queue; `accepted` once its record is durable.
    pub fn new(job: Job, read: WorkflowRead, accepted: bool) -> Self {
        Self {
            keys: read.keys,
            needs: read.needs,
            loads: read.loads,
            job,
            workflow_json: read.workflow_json,
            accepted,
            work: read.work,
            queued_at: Instant::now(),
            submit_to_post: None,
            attempt: None,
            copy: None,
            held_for_storage: false,
            prompts: Vec::new(),
            revision: Revision::NONE,
        }
    }
}

impl QueueState {
    /// Takes the job as the store holds it now (after a compare-and-set
    /// lost, the store is the truth): its attempt and copy here are taken
    /// from their runners, as their prompts are not this process's to
    /// follow. A job the store no longer has is forgotten. Returns the job
    /// as it is now, or `None` when forgotten.
    pub fn reload(&mut self, id: &str, stored: Option<(Job, Revision)>) -> Option<&Job> {
        let Some((job, revision)) = stored else {
            if let Some(e) = self.remove_job(id) {
                for a in [e.attempt, e.copy].into_iter().flatten() {
                    a.token.cancel();
                }
            }
            return None;
        };
        let read = WorkflowRead::of(&job.workflow);
        let mut fresh = Entry::new(job, read, true);
        fresh.revision = revision;
        let e = match self.jobs.entry(id.to_string()) {
            std::collections::hash_map::Entry::Vacant(v) => {
                self.order.push(id.to_string());
                v.insert(fresh)
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                let e = o.into_mut();
                for a in [e.attempt.take(), e.copy.take()].into_iter().flatten() {
                    a.token.cancel();
                }
                // Its prompt ids stay indexed until it is forgotten.
                fresh.prompts = std::mem::take(&mut e.prompts);
                *e = fresh;
                e
            }
        };
        Some(&e.job)
    }
}
