//! The queue's plain data: the jobs, each with its attempt and copy, and
//! what the scheduler keeps between passes. Only ever touched under the
//! queue's lock, and a job's state only through [`Entry::apply`].

use crate::dispatch::machine::{self, JobAction};
use crate::dispatch::models::Needs;
use crate::dispatch::options::Retention;
use crate::dispatch::placement::{Load, Planner};
use crate::dispatch::speed::SpeedBook;
use crate::dispatch::store::Revision;
use chrono::Utc;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storycore_types::{Job, JobState};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub(crate) struct QueueState {
    pub(super) jobs: HashMap<String, Entry>,
    /// Job ids in submission order (the order jobs are placed in).
    pub(super) order: Vec<String>,
    pub(super) speeds: SpeedBook,
    pub(super) planner: Planner,
    /// Instances that just failed to answer: no new work until then.
    pub(super) cooldown: HashMap<String, Instant>,
    /// Instances whose `/ws` stream is followed, and how its connection
    /// went (`follower::ensure`).
    pub(super) followers: HashMap<String, tokio::sync::watch::Receiver<Option<bool>>>,
    /// No job is sent before this: writing a `dispatched` record just failed.
    pub(super) storage_blocked_until: Option<Instant>,
    /// Prompts left on an instance that did not answer when its jobs were
    /// taken back: deleted and interrupted there when it answers again, so
    /// they do not run beside the new attempt.
    pub(super) orphans: HashMap<String, Vec<String>>,
    /// How long finished jobs are kept, and how many.
    pub(super) retention: Retention,
    /// Instances running their calibration (no work for them until it ends).
    pub(super) calibrating: HashSet<String>,
    /// Instances calibrated (or tried) in this run.
    pub(super) calibrated: HashSet<String>,
    /// The job each prompt id this app sent belongs to (attempts and
    /// copies): a `/ws` message finds its job without a scan of every job.
    /// An id stays until its job is forgotten; the job's attempt or copy is
    /// what says whether it still counts.
    pub(super) by_prompt: HashMap<String, String>,
    /// The models of the fleet (see `state/models.rs`).
    pub(super) models: super::models::FleetModels,
}

pub(crate) struct Entry {
    pub(super) job: Job,
    /// The workflow as JSON, serialised once: every record of the job holds it.
    pub(super) workflow_json: Arc<[u8]>,
    /// Its submission is durable (the scheduler leaves it alone until then).
    pub(super) accepted: bool,
    /// `workflow::estimate_work` of the job.
    pub(super) work: f64,
    /// Its node classes and model files, read once.
    pub(super) needs: Arc<Needs>,
    /// Its model files, each with its load's prior seconds (placement's
    /// [`Ask`](crate::dispatch::placement::Ask)).
    pub(super) loads: Arc<[(String, f64)]>,
    /// Its nodes' cache keys with their work (`cache::node_keys`).
    pub(super) keys: Arc<[(u64, f64)]>,
    /// When it last became queued (submit, retry, failover), for the dispatch overhead.
    pub(super) queued_at: Instant,
    pub(super) submit_to_post: Option<Duration>,
    pub(super) attempt: Option<Attempt>,
    /// A copy running on another instance beside `attempt` (see
    /// `speculate`); recorded in the job's `copy`.
    pub(super) copy: Option<Attempt>,
    /// Queued but not sent because its record could not be written: the
    /// error says so, and goes once it is sent.
    pub(super) held_for_storage: bool,
    /// Every prompt id it was sent as (attempts and copies), for the index.
    pub(super) prompts: Vec<String>,
    /// The revision of its record as this process last wrote or read it:
    /// the next write names it (see `store::Revision`).
    pub(super) revision: Revision,
}

/// One sending of a job to one instance.
pub(crate) struct Attempt {
    pub(super) instance_id: String,
    pub(super) prompt_id: String,
    /// Cancelled when the attempt is taken away from its runner (cancel,
    /// failover, pause); the runner then stops without touching the job.
    pub(super) token: CancellationToken,
    /// Poked by the `/ws` follower when the prompt ended.
    pub(super) done: Arc<Notify>,
    pub(super) dispatched: Instant,
    pub(super) started: Option<Instant>,
    /// ComfyUI finished executing it (success, error or interrupt): its slot
    /// is free, though outputs may still be on their way.
    pub(super) executed: bool,
    pub(super) last_progress: Instant,
    /// Its instance was lost and the prompt is being stopped there before
    /// the job may run elsewhere (see `recall`).
    pub(super) recalling: bool,
    /// The node ComfyUI executes now, and since when.
    pub(super) node: Option<(String, Instant)>,
    /// Its model files the instance was not to hold when it was sent: their
    /// loaders' times are loads, measured.
    pub(super) loads: Vec<String>,
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
            node: None,
            loads: Vec::new(),
        }
    }
}

/// Reading an attempt; only the state's owner changes it.
impl Attempt {
    pub fn instance(&self) -> &str {
        &self.instance_id
    }
    pub fn prompt(&self) -> &str {
        &self.prompt_id
    }
    /// Poked by the `/ws` follower when the prompt ended.
    pub fn done(&self) -> &Arc<Notify> {
        &self.done
    }
    /// Cancelled when the attempt is taken away from its runner.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
    pub fn dispatched(&self) -> Instant {
        self.dispatched
    }
    pub fn started(&self) -> Option<Instant> {
        self.started
    }
    pub fn last_progress(&self) -> Instant {
        self.last_progress
    }
    pub fn executed(&self) -> bool {
        self.executed
    }
    pub fn recalling(&self) -> bool {
        self.recalling
    }
}

/// Reading a job's entry; only the state's owner changes it.
impl Entry {
    pub fn job(&self) -> &Job {
        &self.job
    }
    pub fn accepted(&self) -> bool {
        self.accepted
    }
    pub fn work(&self) -> f64 {
        self.work
    }
    pub fn needs(&self) -> &Needs {
        &self.needs
    }
    /// Its model files with their loads' prior seconds.
    pub fn loads(&self) -> Arc<[(String, f64)]> {
        self.loads.clone()
    }
    /// Its nodes' cache keys with their work.
    pub fn keys(&self) -> Arc<[(u64, f64)]> {
        self.keys.clone()
    }
    pub fn queued_at(&self) -> Instant {
        self.queued_at
    }
    pub fn submit_to_post(&self) -> Option<Duration> {
        self.submit_to_post
    }
    pub fn attempt(&self) -> Option<&Attempt> {
        self.attempt.as_ref()
    }
    pub fn copy(&self) -> Option<&Attempt> {
        self.copy.as_ref()
    }
    /// The attempt or the copy sent as `prompt_id`, to read.
    pub fn sending(&self, prompt_id: &str) -> Option<&Attempt> {
        [self.attempt.as_ref(), self.copy.as_ref()]
            .into_iter()
            .flatten()
            .find(|a| a.prompt_id == prompt_id)
    }
}

/// Reading the queue's state; only the state's owner changes it.
impl QueueState {
    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.jobs.get(id)
    }
    /// Every job, in no order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.jobs.values()
    }
    /// Every job, in submission order.
    pub fn in_order(&self) -> impl Iterator<Item = &Entry> {
        self.order.iter().filter_map(|id| self.jobs.get(id))
    }
    pub fn speeds(&self) -> &SpeedBook {
        &self.speeds
    }
    pub fn planner(&self) -> &Planner {
        &self.planner
    }
    pub fn retention(&self) -> Retention {
        self.retention
    }
    /// Whether the instance is in its cooldown (it just failed to answer).
    pub fn cooling(&self, instance_id: &str) -> bool {
        self.cooldown
            .get(instance_id)
            .is_some_and(|until| *until > Instant::now())
    }
    pub fn calibrating(&self, instance_id: &str) -> bool {
        self.calibrating.contains(instance_id)
    }
    /// No job is sent now: writing a `dispatched` record just failed.
    pub fn storage_blocked(&self) -> bool {
        self.storage_blocked_until
            .is_some_and(|t| t > Instant::now())
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

/// One sending of a job: its attempt or copy, sent as `prompt` to
/// `instance`. The three ids that sit side by side are named, so they
/// cannot be swapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent<'a> {
    pub job: &'a str,
    pub prompt: &'a str,
    pub instance: &'a str,
}

impl QueueState {
    /// The job `job_id` if its attempt is (still) the one sent as
    /// `prompt_id`: the one check of "is this still the attempt?".
    pub fn current(&mut self, sent: Sent<'_>) -> Option<&mut Entry> {
        self.jobs.get_mut(sent.job).filter(|e| {
            e.attempt
                .as_ref()
                .is_some_and(|a| a.prompt_id == sent.prompt && a.instance_id == sent.instance)
        })
    }

    /// Records that `job_id` was sent as `prompt_id` (an attempt or a copy).
    pub fn index_prompt(&mut self, job_id: &str, prompt_id: &str) {
        self.by_prompt
            .insert(prompt_id.to_string(), job_id.to_string());
        if let Some(e) = self.jobs.get_mut(job_id) {
            e.prompts.push(prompt_id.to_string());
        }
    }

    /// Forgets a job, its place in the order and its prompt ids.
    pub fn remove_job(&mut self, job_id: &str) -> Option<Entry> {
        let e = self.forget(job_id)?;
        self.order.retain(|j| j != job_id);
        Some(e)
    }

    /// Forgets the jobs (one pass over the order for all of them).
    pub fn remove_jobs(&mut self, ids: &[String]) {
        let gone: HashSet<&String> = ids.iter().collect();
        for id in ids {
            self.forget(id);
        }
        self.order.retain(|id| !gone.contains(id));
    }

    fn forget(&mut self, job_id: &str) -> Option<Entry> {
        let e = self.jobs.remove(job_id)?;
        for p in &e.prompts {
            self.by_prompt.remove(p);
        }
        Some(e)
    }

    /// The job a `/ws` message about `prompt_id` from `instance_id` is
    /// about, while that sending still counts, and whether it is the job's
    /// copy. Any message of a copy is a sign of life for its stall check.
    pub fn heard(&mut self, instance_id: &str, prompt_id: &str) -> Option<(String, bool)> {
        let id = self.by_prompt.get(prompt_id)?;
        let e = self.jobs.get_mut(id)?;
        let ours = |a: &Attempt| a.prompt_id == prompt_id && a.instance_id == instance_id;
        if let Some(c) = e.copy.as_mut().filter(|c| ours(c)) {
            c.last_progress = Instant::now();
            return Some((id.clone(), true));
        }
        e.attempt
            .as_ref()
            .is_some_and(ours)
            .then(|| (id.clone(), false))
    }

    /// Changes the job's progress in memory (not on disk: progress is redone
    /// by a restarted app); a sign of life of its attempt. The job when `f`
    /// says it changed, to tell the listeners.
    pub fn progress(&mut self, job_id: &str, f: impl FnOnce(&mut Job) -> bool) -> Option<&Job> {
        let e = self.jobs.get_mut(job_id)?;
        if let Some(a) = e.attempt.as_mut() {
            a.last_progress = Instant::now();
        }
        if !f(&mut e.job) {
            return None;
        }
        e.job.updated_at = Utc::now();
        Some(&e.job)
    }

    /// Prompts to stop on `instance_id` when it answers again.
    pub fn add_orphans(&mut self, instance_id: &str, prompts: impl IntoIterator<Item = String>) {
        self.orphans
            .entry(instance_id.to_string())
            .or_default()
            .extend(prompts);
    }

    /// The prompts to stop on `instance_id`, handed over (none kept).
    pub fn take_orphans(&mut self, instance_id: &str) -> Option<Vec<String>> {
        self.orphans.remove(instance_id)
    }

    /// The instance's `/ws` stream is no longer followed.
    pub fn forget_follower(&mut self, instance_id: &str) {
        self.followers.remove(instance_id);
    }

    /// No new work for the instance for `for_` (it just failed to answer).
    pub fn cool_down(&mut self, instance_id: &str, for_: Duration) {
        self.cooldown
            .insert(instance_id.to_string(), Instant::now() + for_);
    }

    /// The planner's decision for a job of `work` among `candidates`.
    pub fn decide(
        &mut self,
        candidates: &mut [crate::dispatch::placement::Candidate],
        allowed: impl Fn(&crate::dispatch::placement::Candidate) -> bool,
        ask: &crate::dispatch::placement::Ask<'_>,
    ) -> crate::dispatch::placement::Decision {
        self.planner.place_ask(candidates, allowed, ask)
    }

    /// [`Planner::set_demand`](crate::dispatch::placement::Planner::set_demand).
    pub fn set_demand<'a>(&mut self, files: impl IntoIterator<Item = &'a str>) {
        self.planner.set_demand(files);
    }

    /// [`Planner::set_pressure`](crate::dispatch::placement::Planner::set_pressure).
    pub fn set_pressure(&mut self, waiting: &[(&str, f64)], one_free: bool) {
        self.planner.set_pressure(waiting, one_free);
    }

    /// Forgets cooldowns that ended.
    pub fn expire_cooldowns(&mut self) {
        let now = Instant::now();
        self.cooldown.retain(|_, until| *until > now);
    }

    /// Marks the instance as calibrating, once per run: false when it was
    /// calibrated (or tried) before.
    pub fn begin_calibration(&mut self, instance_id: &str) -> bool {
        if !self.calibrated.insert(instance_id.to_string()) {
            return false;
        }
        self.calibrating.insert(instance_id.to_string());
        // Its smoke test replaces what ComfyUI's cache holds there.
        self.forget_cached(instance_id);
        true
    }

    /// The calibration ended; `measure` is what it ran (seconds, work).
    pub fn end_calibration(&mut self, instance_id: &str, measure: Option<(f64, f64)>) {
        self.calibrating.remove(instance_id);
        if let Some((secs, work)) = measure {
            self.speeds.record(instance_id, secs, work);
        }
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
