//! The queue's state and every transition of a job. One `std::sync::Mutex`,
//! never held across an `.await`. A job's file is written while the lock is
//! held: that keeps the writes of one job in order (an older snapshot never
//! lands after a newer one), at the cost of a short fsync under the lock. A
//! write that fails (full disk, read-only folder) is remembered and tried
//! again until it succeeds; a job whose `dispatched` record cannot be written
//! is not sent (see `scheduler`).

use super::instance_log::InstanceWorkflowsFile;
use super::journal::Journal;
use super::placement::Planner;
use super::speed::SpeedBook;
use super::DispatchOptions;
use crate::manager::InstanceManager;
use crate::store::StoreError;
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
    pub manager: InstanceManager,
    pub dir: PathBuf,
    pub journal: Journal,
    pub options: DispatchOptions,
    pub state: Mutex<QueueState>,
    /// Wakes the scheduler: a job was queued, a slot freed, an instance came back.
    pub wake: Notify,
    pub cancel: CancellationToken,
    pub tasks: TaskTracker,
    /// Serialises the read-modify-write of `instance_{id}_workflows.json`.
    pub logs: Mutex<()>,
    /// Jobs whose last state could not be written: written again until it is.
    pub unsaved: Mutex<HashSet<String>>,
}

pub(crate) struct QueueState {
    pub jobs: HashMap<String, Entry>,
    /// Job ids in submission order (the order jobs are placed in).
    pub order: Vec<String>,
    pub speeds: SpeedBook,
    pub planner: Planner,
    /// Instances that just failed to answer: no new work until then.
    pub cooldown: HashMap<String, Instant>,
    /// Instances whose `/ws` stream is followed.
    pub followers: HashSet<String>,
    /// No job is sent before this: writing a `dispatched` record just failed.
    pub storage_blocked_until: Option<Instant>,
    /// Prompts left on an instance that did not answer when its jobs were
    /// taken back: deleted and interrupted there when it answers again, so
    /// they do not run beside the new attempt.
    pub orphans: HashMap<String, Vec<String>>,
    /// How long finished jobs are kept, and how many.
    pub retention: super::Retention,
}

pub(crate) struct Entry {
    pub job: Job,
    /// `workflow::estimate_work` of the job.
    pub work: f64,
    /// When it last became queued (submit, retry, failover), for the dispatch overhead.
    pub queued_at: Instant,
    pub submit_to_post: Option<Duration>,
    pub attempt: Option<Attempt>,
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
            last_progress: now,
            recalling: false,
        }
    }
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn emit(&self, e: AppEvent) {
        let _ = self.manager.events().send(e);
    }

    /// Writes the job's file and tells the listeners. Called with the lock
    /// held. A failed write is logged and tried again later (nothing about
    /// the job is lost while the app runs; the file catches up).
    pub fn persist(&self, job: &mut Job) {
        job.updated_at = Utc::now();
        if let Err(e) = self.write(job) {
            tracing::error!(job = %job.id, "could not write the job's file (will retry): {e}");
        }
        self.emit(AppEvent::JobUpdated(Box::new(job.summary())));
    }

    /// Writes the job's file, remembering a failure for [`Self::retry_unsaved`].
    pub fn write(&self, job: &Job) -> Result<(), StoreError> {
        let result = self.journal.write(job);
        let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
        if result.is_ok() {
            unsaved.remove(&job.id);
        } else {
            unsaved.insert(job.id.clone());
        }
        result
    }

    /// Writes again the jobs whose last write failed.
    pub fn retry_unsaved(&self) {
        let ids: Vec<String> = {
            let unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
            if unsaved.is_empty() {
                return;
            }
            unsaved.iter().cloned().collect()
        };
        let st = self.lock();
        for id in ids {
            match st.jobs.get(&id) {
                Some(e) => {
                    if self.write(&e.job).is_err() {
                        return; // still failing: try later
                    }
                }
                None => {
                    self.unsaved
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                }
            }
        }
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
        self.persist(&mut e.job);
        Some(e.job.clone())
    }

    /// Ends the attempt and puts the job back in the app's queue (or holds it).
    /// `died_running`: its instance died while running it.
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
        self.persist(&mut e.job);
        self.wake.notify_one();
    }

    /// An instance crashed, stopped, became unhealthy or vanished: every job in
    /// flight there is taken from its runner and, once the instance is known
    /// not to run it any more, goes back to the queue (see `recall`).
    pub fn instance_lost(self: &Arc<Self>, instance_id: &str, why: &str) {
        let taken = {
            let mut st = self.lock();
            st.cooldown.insert(
                instance_id.to_string(),
                Instant::now() + self.options.cooldown,
            );
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

    /// Folds a finished job into `instance_{id}_workflows.json`.
    pub fn log_finished(&self, instance_id: &str, job: &Job) {
        let _g = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = InstanceWorkflowsFile::load(&self.dir, instance_id);
        f.record_finished(job);
        if let Err(e) = f.save(&self.dir) {
            tracing::warn!("could not write the workflows file of {instance_id}: {e}");
        }
    }

    pub fn log_taken_back(&self, instance_id: &str, job_id: &str, prompt_id: &str) {
        let _g = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = InstanceWorkflowsFile::load(&self.dir, instance_id);
        f.record_taken_back(job_id, prompt_id);
        if let Err(e) = f.save(&self.dir) {
            tracing::warn!("could not write the workflows file of {instance_id}: {e}");
        }
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
