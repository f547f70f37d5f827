//! The queue's state and every transition of a job. One `std::sync::Mutex`,
//! never held across an `.await`, and no file I/O under it: a job's record is
//! handed to the journal's writer thread (in order, so an older snapshot never
//! lands after a newer one) and the lock is let go. The writer tries a failed
//! write (full disk, read-only folder) again until it succeeds; a job whose
//! `dispatched` record did not become durable is not sent (see `runner`).

use super::instance_log::InstanceWorkflowsFile;
use super::journal::Journal;
use super::placement::Planner;
use super::speed::SpeedBook;
use super::DispatchOptions;
use crate::manager::InstanceManager;
use chrono::Utc;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use storycore_types::{AppEvent, Job, JobError, JobProgress, JobState};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) struct Shared {
    /// The engine's bus (the one the manager was opened on).
    pub bus: crate::events::EventBus,
    pub manager: InstanceManager,
    pub dir: PathBuf,
    pub journal: Journal,
    pub options: DispatchOptions,
    pub state: Mutex<QueueState>,
    /// Wakes the scheduler: a job was queued, a slot freed, an instance came back.
    pub wake: Notify,
    pub cancel: CancellationToken,
    pub tasks: TaskTracker,
    /// `instance_{id}_workflows.json` of each instance, read once, kept
    /// here and written through the journal's writer.
    pub logs: Mutex<HashMap<String, Arc<Mutex<InstanceWorkflowsFile>>>>,
    /// Copies near the end (`options.speculate` at first; Settings change it).
    pub speculate: std::sync::atomic::AtomicBool,
    /// Preview images of running jobs, as their instances send them.
    pub previews: tokio::sync::broadcast::Sender<super::Preview>,
}

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
    pub retention: super::Retention,
    /// Instances running their calibration (no work for them until it ends).
    pub calibrating: HashSet<String>,
    /// Instances calibrated (or tried) in this run.
    pub calibrated: HashSet<String>,
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
        let job = &mut self.job;
        tracing::info!(job = %job.id, instance = %copy.instance_id, "its copy carries on as the job");
        job.copy = None;
        job.instance_id = Some(copy.instance_id.clone());
        job.prompt_id = Some(copy.prompt_id.clone());
        job.state = if copy.started.is_some() {
            JobState::Running
        } else {
            JobState::Dispatched
        };
        if copy.started.is_some() {
            job.started_at.get_or_insert_with(Utc::now);
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

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn emit(&self, e: AppEvent) {
        self.bus.publish(e);
    }

    /// Hands the job's record to the writer (written in the next group) and
    /// tells the listeners. Called with the lock held; does no I/O.
    pub fn persist(&self, e: &mut Entry) {
        e.job.updated_at = Utc::now();
        self.journal.put(&e.job, &e.workflow_json);
        self.emit(AppEvent::JobUpdated(Box::new(e.job.summary())));
    }

    /// Like [`Self::persist`], committed at once; the answer says when the
    /// record is durable. Await it after letting the lock go.
    pub fn persist_durable(&self, e: &mut Entry) -> super::writer::Durable {
        e.job.updated_at = Utc::now();
        let durable = self.journal.put_durable(&e.job, &e.workflow_json);
        self.emit(AppEvent::JobUpdated(Box::new(e.job.summary())));
        durable
    }

    /// Applies `f` to the job if its current attempt is still `prompt_id`, then
    /// saves it. Returns the job as saved, or None if the attempt was taken away.
    pub fn with_attempt(
        &self,
        job_id: &str,
        prompt_id: &str,
        f: impl FnOnce(&mut Entry),
    ) -> Option<Job> {
        let mut st = self.lock();
        let e = st.jobs.get_mut(job_id)?;
        if e.attempt.as_ref().map(|a| a.prompt_id.as_str()) != Some(prompt_id) {
            return None;
        }
        f(e);
        self.persist(e);
        Some(e.job.clone())
    }

    /// Ends the attempt and puts the job back in the app's queue (or holds it).
    /// `died_running`: its instance died while running it.
    /// A copy running elsewhere takes the attempt's place instead: the job
    /// is not sent a third time.
    pub fn requeue(&self, e: &mut Entry, died_running: bool, note: Option<String>) {
        let instance = e.attempt.take().map(|a| {
            a.token.cancel();
            a.instance_id
        });
        let job = &mut e.job;
        if died_running {
            if let Some(i) = instance.clone() {
                if !job.instances_killed.contains(&i) {
                    job.instances_killed.push(i);
                }
            }
        }
        if e.copy.is_some() {
            if let Some(n) = note {
                tracing::info!(job = %job.id, "its attempt ended: {n}");
            }
            e.promote_copy();
            self.persist(e);
            self.wake.notify_one();
            return;
        }
        job.prompt_id = None;
        job.started_at = None;
        job.progress = JobProgress {
            total_nodes: job.progress.total_nodes,
            ..JobProgress::default()
        };
        if job.instances_killed.len() >= 2 {
            job.state = JobState::Suspect;
            job.error = Some(JobError::new(format!(
                "held as suspect: the instances {} died while running this job; \
                 release it to run it again",
                job.instances_killed.join(" and ")
            )));
        } else if job.attempts >= self.options.max_attempts {
            job.state = JobState::Failed;
            job.finished_at = Some(Utc::now());
            job.error = Some(JobError::new(format!(
                "gave up after {} attempts{}",
                job.attempts,
                note.map(|n| format!(": {n}")).unwrap_or_default()
            )));
        } else {
            job.state = JobState::Queued;
            job.error = note.map(JobError::new);
            e.queued_at = Instant::now();
        }
        self.persist(e);
        self.wake.notify_one();
    }

    /// An instance crashed, stopped, became unhealthy or vanished: every job in
    /// flight there is taken from its runner and, once the instance is known
    /// not to run it any more, goes back to the queue (see `recall`).
    /// Copies there are dropped, their prompts stopped when it answers again.
    /// It also gets no new work for the cooldown: it failed.
    pub fn instance_lost(self: &Arc<Self>, instance_id: &str, why: &str) {
        self.lose(instance_id, why, true)
    }

    /// [`instance_lost`](Self::instance_lost) for an instance stopped or
    /// deleted by the user or a pool: no cooldown, which would hold a new
    /// process started soon after (a member started for a burst, an
    /// instance attached as it is created) from work for seconds.
    pub fn instance_gone(self: &Arc<Self>, instance_id: &str, why: &str) {
        self.lose(instance_id, why, false)
    }

    fn lose(self: &Arc<Self>, instance_id: &str, why: &str, cool: bool) {
        let taken = {
            let mut st = self.lock();
            if cool {
                st.cooldown.insert(
                    instance_id.to_string(),
                    Instant::now() + self.options.cooldown,
                );
            } else {
                st.cooldown.remove(instance_id);
            }
            let mut dropped = Vec::new();
            for e in st.jobs.values_mut() {
                if e.copy
                    .as_ref()
                    .is_some_and(|c| c.instance_id == instance_id)
                {
                    dropped.extend(e.take_copy().map(|(_, p)| p));
                    self.persist(e);
                }
            }
            if !dropped.is_empty() {
                st.orphans
                    .entry(instance_id.to_string())
                    .or_default()
                    .extend(dropped);
            }
            let ids: Vec<String> = st
                .jobs
                .iter()
                .filter(|(_, e)| {
                    e.attempt
                        .as_ref()
                        .is_some_and(|a| a.instance_id == instance_id && !a.recalling)
                })
                .map(|(id, _)| id.clone())
                .collect();
            let blamed = blamed_job(&st, &ids);
            let mut taken = Vec::new();
            for id in ids {
                let e = st.jobs.get_mut(&id).expect("listed above");
                let a = e.attempt.as_mut().expect("listed above");
                a.token.cancel();
                a.recalling = true;
                let running = blamed.as_deref() == Some(id.as_str());
                tracing::warn!(job = %id, instance = %instance_id, running, "instance lost: {why}");
                taken.push(super::recall::Taken {
                    job_id: id,
                    prompt_id: a.prompt_id.clone(),
                    running,
                });
            }
            taken
        };
        if !taken.is_empty() {
            self.tasks.spawn(super::recall::recall(
                self.clone(),
                instance_id.to_string(),
                why.to_string(),
                taken,
            ));
        }
    }

    /// Deletes `prompts` from their instances' queues and interrupts them
    /// there (now, or when the instance answers again). Call without the lock.
    pub fn stop_prompts(self: &Arc<Self>, prompts: impl IntoIterator<Item = (String, String)>) {
        let mut instances = Vec::new();
        {
            let mut st = self.lock();
            for (instance_id, prompt_id) in prompts {
                st.orphans
                    .entry(instance_id.clone())
                    .or_default()
                    .push(prompt_id);
                instances.push(instance_id);
            }
        }
        instances.dedup();
        for i in instances {
            super::recall::clear_orphans(self, &i);
        }
    }

    /// Folds a finished job into `instance_{id}_workflows.json`.
    pub fn log_finished(&self, instance_id: &str, job: &Job) {
        self.edit_log(instance_id, |f| {
            f.record_finished(job);
            true
        });
    }

    pub fn log_taken_back(&self, instance_id: &str, job_id: &str, prompt_id: &str) {
        self.edit_log(instance_id, |f| {
            f.record_taken_back(job_id, prompt_id);
            true
        });
    }

    /// Changes an instance's workflows file in memory (read from disk the
    /// first time) and, when `f` says it changed, hands it to the writer.
    pub fn edit_log(&self, instance_id: &str, f: impl FnOnce(&mut InstanceWorkflowsFile) -> bool) {
        let file = {
            let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
            logs.entry(instance_id.to_string())
                .or_insert_with(|| {
                    Arc::new(Mutex::new(InstanceWorkflowsFile::load(
                        &self.dir,
                        instance_id,
                    )))
                })
                .clone()
        };
        let changed = f(&mut file.lock().unwrap_or_else(|p| p.into_inner()));
        if !changed {
            return;
        }
        let path = super::instance_log::file_path(&self.dir, instance_id);
        let render = move || {
            let f = file.lock().unwrap_or_else(|p| p.into_inner());
            serde_json::to_vec_pretty(&*f).map_err(|e| e.to_string())
        };
        self.journal
            .writer
            .put(path, super::writer::Body::Render(Box::new(render)));
    }

    /// The `/ws` client id of this app on an instance. Stable across restarts,
    /// so a restarted app receives the progress of prompts it sent before.
    pub fn client_id(instance_id: &str) -> String {
        format!("storycore-dispatch-{instance_id}")
    }
}

/// The job the lost instance was running when it died. Known when its `/ws`
/// or `/queue` said so; otherwise ComfyUI runs prompts one at a time in the
/// order sent, so it is the oldest one this app sent there (a crash right at
/// the start of a prompt often leaves no message about it). That guess can
/// blame a job that waited behind another client's prompt: one strike is
/// harmless, two are needed to hold a job as suspect.
fn blamed_job(st: &QueueState, ids: &[String]) -> Option<String> {
    let on_it = || ids.iter().filter_map(|id| st.jobs.get(id).map(|e| (id, e)));
    if let Some((id, _)) = on_it().find(|(_, e)| e.job.state == JobState::Running) {
        return Some(id.clone());
    }
    on_it()
        .filter_map(|(id, e)| e.attempt.as_ref().map(|a| (id, a.dispatched)))
        .min_by_key(|(_, at)| *at)
        .map(|(id, _)| id.clone())
}
