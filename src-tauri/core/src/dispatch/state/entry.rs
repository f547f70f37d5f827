//! The queue's plain data: the jobs, each with its attempt and copy, and
//! what the scheduler keeps between passes. Only ever touched under the
//! queue's lock, and a job's state only through [`Entry::apply`].

use crate::dispatch::machine::{self, JobAction};
use crate::dispatch::options::Retention;
use crate::dispatch::placement::Planner;
use crate::dispatch::speed::SpeedBook;
use chrono::Utc;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storycore_types::{Job, JobState};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub(crate) struct QueueState {
    pub jobs: HashMap<String, Entry>,
    /// Job ids in submission order (the order jobs are placed in).
    pub order: Vec<String>,
    pub speeds: SpeedBook,
    pub planner: Planner,
    /// Instances that just failed to answer: no new work until then.
    pub cooldown: HashMap<String, Instant>,
    /// Instances whose `/ws` stream is followed, and how its connection
    /// went (`follower::ensure`).
    pub followers: HashMap<String, tokio::sync::watch::Receiver<Option<bool>>>,
    /// No job is sent before this: writing a `dispatched` record just failed.
    pub storage_blocked_until: Option<Instant>,
    /// Prompts left on an instance that did not answer when its jobs were
    /// taken back: deleted and interrupted there when it answers again, so
    /// they do not run beside the new attempt.
    pub orphans: HashMap<String, Vec<String>>,
    /// How long finished jobs are kept, and how many.
    pub retention: Retention,
    /// Instances running their calibration (no work for them until it ends).
    pub calibrating: HashSet<String>,
    /// Instances calibrated (or tried) in this run.
    pub calibrated: HashSet<String>,
    /// The job each prompt id this app sent belongs to (attempts and
    /// copies): a `/ws` message finds its job without a scan of every job.
    /// An id stays until its job is forgotten; the job's attempt or copy is
    /// what says whether it still counts.
    pub by_prompt: HashMap<String, String>,
}

pub(crate) struct Entry {
    pub job: Job,
    /// The workflow as JSON, serialised once: every record of the job holds it.
    pub workflow_json: Arc<[u8]>,
    /// Its submission is durable (the scheduler leaves it alone until then).
    pub accepted: bool,
    /// `workflow::estimate_work` of the job.
    pub work: f64,
    /// When it last became queued (submit, retry, failover), for the dispatch overhead.
    pub queued_at: Instant,
    pub submit_to_post: Option<Duration>,
    pub attempt: Option<Attempt>,
    /// A copy running on another instance beside `attempt` (see
    /// `speculate`); recorded in the job's `copy`.
    pub copy: Option<Attempt>,
    /// Queued but not sent because its record could not be written: the
    /// error says so, and goes once it is sent.
    pub held_for_storage: bool,
    /// Every prompt id it was sent as (attempts and copies), for the index.
    pub prompts: Vec<String>,
}

/// One sending of a job to one instance.
pub(crate) struct Attempt {
    pub instance_id: String,
    pub prompt_id: String,
    /// Cancelled when the attempt is taken away from its runner (cancel,
    /// failover, pause); the runner then stops without touching the job.
    pub token: CancellationToken,
    /// Poked by the `/ws` follower when the prompt ended.
    pub done: Arc<Notify>,
    pub dispatched: Instant,
    pub started: Option<Instant>,
    /// ComfyUI finished executing it (success, error or interrupt): its slot
    /// is free, though outputs may still be on their way.
    pub executed: bool,
    pub last_progress: Instant,
    /// Its instance was lost and the prompt is being stopped there before
    /// the job may run elsewhere (see `recall`).
    pub recalling: bool,
}

impl Attempt {
    pub fn new(instance_id: String, prompt_id: String, parent: &CancellationToken) -> Self {
        let now = Instant::now();
        Self {
            instance_id,
            prompt_id,
            token: parent.child_token(),
            done: Arc::new(Notify::new()),
            dispatched: now,
            started: None,
            executed: false,
            last_progress: now,
            recalling: false,
        }
    }
}

impl Entry {
    /// The attempt or the copy sent as `prompt_id`.
    pub fn sent_as(&mut self, prompt_id: &str) -> Option<&mut Attempt> {
        [self.attempt.as_mut(), self.copy.as_mut()]
            .into_iter()
            .flatten()
            .find(|a| a.prompt_id == prompt_id)
    }

    /// Makes the copy the job's attempt (its instance, prompt and state);
    /// returns the attempt it replaces, whose runner the caller stops.
    pub fn promote_copy(&mut self) -> Option<Attempt> {
        let copy = self.copy.take()?;
        tracing::info!(job = %self.job.id, instance = %copy.instance_id, "its copy carries on as the job");
        self.job.copy = None;
        self.job.instance_id = Some(copy.instance_id.clone());
        self.job.prompt_id = Some(copy.prompt_id.clone());
        // From dispatched or running, as an attempt is: always allowed.
        let _ = self.apply(if copy.started.is_some() {
            JobAction::HandOverRunning
        } else {
            JobAction::HandOverWaiting
        });
        if copy.started.is_some() {
            self.job.started_at.get_or_insert_with(Utc::now);
        }
        self.attempt.replace(copy)
    }

    /// Takes the copy away from its runner; the caller stops its prompt
    /// (see [`Shared::stop_prompts`]) once the lock is let go.
    pub fn take_copy(&mut self) -> Option<(String, String)> {
        let c = self.copy.take()?;
        c.token.cancel();
        self.job.copy = None;
        Some((c.instance_id, c.prompt_id))
    }
}

impl Entry {
    /// The job's one way to change state: the pair is checked by the
    /// transition table ([`machine::next`]). A refused pair changes nothing
    /// and answers why (it would be a fault of the queue: logged).
    pub fn apply(&mut self, action: JobAction) -> Result<JobState, String> {
        let from = self.job.state;
        match machine::next(from, action) {
            Some(to) => {
                self.job.state = to;
                Ok(to)
            }
            None => {
                let why = machine::refusal(&self.job.id, from, action);
                tracing::error!("{why}");
                Err(why)
            }
        }
    }

    /// Whether `action` is allowed from the job's state now (a user's
    /// request is checked so, before [`Self::apply`]).
    pub fn can(&self, action: JobAction) -> bool {
        machine::next(self.job.state, action).is_some()
    }

    /// Whether its attempt is (still) the one sent as `prompt_id`.
    pub fn is_attempt(&self, prompt_id: &str) -> bool {
        self.attempt
            .as_ref()
            .is_some_and(|a| a.prompt_id == prompt_id)
    }
}

/// One sending of a job: its attempt or copy, sent as `prompt`. The ids
/// that sit side by side are named, so they cannot be swapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent<'a> {
    pub job: &'a str,
    pub prompt: &'a str,
}

/// The load of one instance: prompts of this app sent there and not done
/// executing (attempts and copies), and their expected seconds left.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    pub in_flight: u32,
    pub backlog_secs: f64,
}

impl QueueState {
    /// The job `job_id` if its attempt is (still) the one sent as
    /// `prompt_id`: the one check of "is this still the attempt?".
    pub fn current(&mut self, sent: Sent<'_>) -> Option<&mut Entry> {
        self.jobs
            .get_mut(sent.job)
            .filter(|e| e.is_attempt(sent.prompt))
    }

    /// Records that `job_id` was sent as `prompt_id` (an attempt or a copy).
    pub fn index_prompt(&mut self, job_id: &str, prompt_id: &str) {
        self.by_prompt
            .insert(prompt_id.to_string(), job_id.to_string());
        if let Some(e) = self.jobs.get_mut(job_id) {
            e.prompts.push(prompt_id.to_string());
        }
    }

    /// The job sent as `prompt_id`, if this app sent it.
    pub fn job_of_prompt(&self, prompt_id: &str) -> Option<&str> {
        self.by_prompt.get(prompt_id).map(String::as_str)
    }

    /// Forgets a job and its prompt ids.
    pub fn remove_job(&mut self, job_id: &str) -> Option<Entry> {
        let e = self.jobs.remove(job_id)?;
        for p in &e.prompts {
            self.by_prompt.remove(p);
        }
        Some(e)
    }

    /// The one load measure per instance (see [`Load`]): the scheduler's
    /// candidates, the pools' outlook and the seed's balancing read it.
    pub fn load(&self) -> HashMap<String, Load> {
        let mut load: HashMap<String, Load> = HashMap::new();
        let sent = self
            .jobs
            .values()
            .flat_map(|e| [(e, e.attempt.as_ref()), (e, e.copy.as_ref())]);
        for (e, a) in sent {
            let Some(a) = a.filter(|a| !a.executed) else {
                continue;
            };
            let cost = self.speeds.expected_secs(&a.instance_id, e.work);
            let left = match a.started {
                Some(t) => (cost - t.elapsed().as_secs_f64()).max(cost * 0.05),
                None => cost,
            };
            let l = load.entry(a.instance_id.clone()).or_default();
            l.in_flight += 1;
            l.backlog_secs += left;
        }
        load
    }
}
