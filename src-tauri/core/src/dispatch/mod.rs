//! The job queue (the seed's WizardService, for a fleet): workflows submitted
//! by the user or any part of the app run on the instance expected to finish
//! them first, survive crashes of an instance and of the app, report their
//! progress as events and keep their outputs.
//!
//! | file | concern |
//! | --- | --- |
//! | `workflow.rs` | checking a workflow's shape; ComfyUI's refusals as job errors |
//! | `placement.rs` | the pure placement policy (and the ones it is compared to) |
//! | `speed.rs` | each instance's moving-average seconds per unit of work |
//! | `writer.rs` | the one writer thread: group commit, one sync per group |
//! | `journal.rs` | one file per job, durable before the job is sent |
//! | `scheduler.rs` | places queued jobs, starts their runners |
//! | `runner.rs` | one attempt: send, follow, time out, finish |
//! | `follower.rs` | one `/ws` stream per instance: progress and end-of-prompt |
//! | `failover.rs` | instance lost / paused / back, from the manager's events |
//! | `recall.rs` | taking jobs back from a lost instance without running them twice |
//! | `retention.rs` | finished jobs and histories kept for a time and a count |
//! | `outputs.rs` | images fetched through `/view` into the job's folder |
//! | `instance_log.rs` | `instance_{id}_workflows.json` |
//! | `templates.rs` | workflows with named parameters; the built-in smoke test |
//!
//! Nothing accepted is lost: a job is on disk before `POST /prompt`, with a
//! prompt id chosen here; [`JobQueue::open`] asks each instance about the jobs
//! a previous run left in flight (`/queue`, `/history/{id}`) and follows,
//! collects or queues them again.

mod driver;
mod error;
mod failover;
mod follower;
pub mod instance_log;
mod journal;
pub mod machine;
mod options;
pub mod outputs;
pub mod placement;
mod recall;
mod retention;
mod runner;
mod scheduler;
pub mod speed;
mod state;
pub mod templates;
pub mod workflow;
pub mod writer;

pub use error::DispatchError;
pub use journal::JOBS_FOLDER;
pub use options::{
    DispatchOptions, JobContext, Outlook, Preview, Recovered, Retention, WaitingJob,
};
pub use placement::target_allows;
pub use placement::Policy;
pub use templates::TemplateStore;

use crate::manager::InstanceManager;
use chrono::Utc;
use machine::JobAction;
use options::PREVIEWS_KEPT;
use serde_json::{Map, Value};
use state::{Attempt, Effect, Entry, Mode, QueueState, Shared};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storycore_types::{AppEvent, Job, JobProgress, JobState, JobTarget};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A cheap-to-clone handle on the job queue.
#[derive(Clone)]
pub struct JobQueue {
    shared: Arc<Shared>,
}

impl JobQueue {
    /// Opens the queue kept in `dir` (jobs/, outputs/, templates/,
    /// instance_{id}_workflows.json), picks up what a previous run left, and
    /// starts placing work. Must be called within a Tokio runtime.
    pub fn open(
        manager: InstanceManager,
        dir: impl Into<PathBuf>,
        options: DispatchOptions,
    ) -> Result<(Self, Recovered), DispatchError> {
        let dir = dir.into();
        let journal = journal::Journal::open(&dir)?;
        let replayed = journal.replay()?;
        let cancel = CancellationToken::new();
        let mut report = Recovered {
            notices: replayed.notices,
            ..Recovered::default()
        };
        let mut jobs = HashMap::new();
        let mut order = Vec::new();
        let mut follow = Vec::new();
        let mut by_prompt = HashMap::new();
        // Prompts of copies left by the previous run, by instance: stopped
        // when their instance answers (see `recall::clear_orphans`).
        let mut orphans: HashMap<String, Vec<String>> = HashMap::new();
        for job in replayed.jobs {
            let work = workflow::estimate_work(&job.workflow);
            let workflow_json = workflow_json(&job.workflow);
            let attempt = match (&job.state, &job.instance_id, &job.prompt_id) {
                (JobState::Dispatched | JobState::Running, Some(i), Some(p)) => {
                    follow.push(job.id.clone());
                    Some(Attempt::new(i.clone(), p.clone(), &cancel))
                }
                _ => None,
            };
            let mut job = job;
            // A copy left running by the previous run is stopped, not
            // followed: the attempt above is (see `speculate`).
            if let Some(c) = job.copy.take() {
                orphans.entry(c.instance_id).or_default().push(c.prompt_id);
            }
            let mut entry = Entry {
                prompts: attempt.iter().map(|a| a.prompt_id.clone()).collect(),
                job,
                workflow_json,
                accepted: true,
                work,
                queued_at: Instant::now(),
                submit_to_post: None,
                attempt,
                copy: None,
                held_for_storage: false,
            };
            if entry.attempt.is_none() && entry.job.state.is_in_flight() {
                // In flight without a prompt id: never sent.
                let _ = entry.apply(JobAction::Requeue);
            }
            let job = &entry.job;
            if job.state == JobState::Queued {
                report.queued += 1;
            }
            order.push(job.id.clone());
            for p in &entry.prompts {
                by_prompt.insert(p.clone(), job.id.clone());
            }
            jobs.insert(job.id.clone(), entry);
        }
        report.followed = follow.len();
        let bus = manager.bus().clone();
        let events = bus.subscribe();
        let (effects, effects_rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            effects,
            bus,
            manager,
            dir,
            journal,
            state: Mutex::new(QueueState {
                jobs,
                order,
                speeds: speed::SpeedBook::new(options.initial_secs_per_unit),
                planner: placement::Planner::new(options.policy),
                cooldown: HashMap::new(),
                followers: HashMap::new(),
                storage_blocked_until: None,
                orphans,
                retention: options.retention,
                calibrating: HashSet::new(),
                calibrated: HashSet::new(),
                by_prompt,
            }),
            speculate: std::sync::atomic::AtomicBool::new(options.speculate),
            options,
            wake: Notify::new(),
            cancel,
            tasks: TaskTracker::new(),
            logs: Mutex::new(HashMap::new()),
            previews: tokio::sync::broadcast::channel(PREVIEWS_KEPT).0,
        });
        report
            .notices
            .extend(TemplateStore::new(&shared.dir).unreadable());
        let pruned = retention::prune(&shared);
        if pruned > 0 {
            report.notices.push(format!(
                "{pruned} finished job(s) past the retention limits were deleted"
            ));
        }
        driver::start(&shared, effects_rx, events, follow);
        Ok((Self { shared }, report))
    }

    /// Accepts a workflow (API format) for `target`. It is durable when this
    /// returns. A workflow of the wrong shape is refused here; ComfyUI's own
    /// refusals (unknown node, missing input) become the job's error. When the
    /// fleet has room and nothing else waits, the job is placed at once and
    /// its one durable record is already the `dispatched` one.
    pub async fn submit(&self, workflow: Value, target: JobTarget) -> Result<Job, DispatchError> {
        self.submit_in(workflow, target, &JobContext::default())
            .await
    }

    /// [`submit`](Self::submit) within a project (see [`JobContext`]).
    pub async fn submit_in(
        &self,
        workflow: Value,
        target: JobTarget,
        context: &JobContext,
    ) -> Result<Job, DispatchError> {
        self.submit_tagged(workflow, target, None, context).await
    }

    /// [`submit`](Self::submit) for a template with parameter values.
    pub async fn submit_template(
        &self,
        template: &storycore_types::WorkflowTemplate,
        values: &Map<String, Value>,
        target: JobTarget,
    ) -> Result<Job, DispatchError> {
        self.submit_template_in(template, values, target, &JobContext::default())
            .await
    }

    /// [`submit_template`](Self::submit_template) within a project. A
    /// template pinned to instances runs only on them.
    pub async fn submit_template_in(
        &self,
        template: &storycore_types::WorkflowTemplate,
        values: &Map<String, Value>,
        target: JobTarget,
        context: &JobContext,
    ) -> Result<Job, DispatchError> {
        let wf = templates::render(template, values)?;
        self.submit_tagged(wf, target, Some(template), context)
            .await
    }

    async fn submit_tagged(
        &self,
        workflow: Value,
        target: JobTarget,
        template: Option<&storycore_types::WorkflowTemplate>,
        context: &JobContext,
    ) -> Result<Job, DispatchError> {
        if self.shared.cancel.is_cancelled() {
            return Err(DispatchError::ShutDown);
        }
        workflow::check_workflow(&workflow)?;
        if let JobTarget::Instance { id } = &target {
            if self.shared.manager.get(id).is_none() {
                return Err(DispatchError::UnknownInstance { id: id.clone() });
            }
        }
        let pinned_instances = template
            .map(|t| t.pinned_instances.clone())
            .unwrap_or_default();
        if let (JobTarget::Instance { id }, Some(t)) = (&target, template) {
            if !pinned_instances.is_empty() && !pinned_instances.contains(id) {
                return Err(DispatchError::Template {
                    id: t.id.clone(),
                    reason: format!(
                        "it is pinned to {}, not to \"{id}\": run it on one of them, or on the automatic target",
                        pinned_instances.join(", ")
                    ),
                });
            }
        }
        let now = Utc::now();
        let work = workflow::estimate_work(&workflow);
        let workflow_json = workflow_json(&workflow);
        let job = Job {
            id: uuid::Uuid::new_v4().to_string(),
            progress: JobProgress {
                total_nodes: workflow::node_count(&workflow),
                ..JobProgress::default()
            },
            workflow,
            target,
            state: JobState::Queued,
            attempts: 0,
            instance_id: None,
            prompt_id: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            outputs: Vec::new(),
            error: None,
            instances_killed: Vec::new(),
            template_id: template.map(|t| t.id.clone()),
            copy: None,
            project_id: context.project_id.clone(),
            output_folder: context.output_folder.clone(),
            pinned_instances,
            waiting: None,
            gateway: context.gateway.clone(),
            input_files: context.input_files.clone(),
        };
        let id = job.id.clone();
        let (durable, placed) = {
            let mut st = self.shared.lock();
            let nothing_waits = !st.jobs.values().any(|e| e.job.state == JobState::Queued);
            st.order.push(id.clone());
            st.jobs.insert(
                id.clone(),
                Entry {
                    job,
                    workflow_json,
                    accepted: false,
                    work,
                    queued_at: Instant::now(),
                    submit_to_post: None,
                    attempt: None,
                    copy: None,
                    held_for_storage: false,
                    prompts: Vec::new(),
                },
            );
            let placed =
                nothing_waits && st.storage_blocked_until.is_none_or(|t| t <= Instant::now()) && {
                    let mut fleet = scheduler::Fleet::new(&self.shared, &mut st);
                    scheduler::place(&self.shared, &mut st, &mut fleet, &id)
                };
            let e = st.jobs.get_mut(&id).expect("just inserted");
            e.job.updated_at = Utc::now();
            (
                self.shared.journal.put_durable(&e.job, &e.workflow_json),
                placed,
            )
        };
        // Accepted means durable: refuse rather than hold it only in memory.
        let result = written(durable).await;
        let mut st = self.shared.lock();
        if let Err(err) = result {
            if let Some(e) = st.remove_job(&id) {
                if let Some(a) = e.attempt {
                    a.token.cancel();
                }
            }
            st.order.retain(|j| j != &id);
            drop(st);
            self.shared.journal.remove(&id);
            return Err(err);
        }
        let e = st.jobs.get_mut(&id).expect("only removed here");
        e.accepted = true;
        e.queued_at = Instant::now();
        let job = e.job.clone();
        self.shared
            .emit(AppEvent::JobUpdated(Box::new(job.summary())));
        drop(st);
        if placed {
            self.shared.effect(Effect::Run {
                job_id: id,
                mode: Mode::Submit,
                durable: None,
            });
        } else {
            self.shared.wake.notify_one();
        }
        Ok(job)
    }

    /// Cancels a job that has not finished; one in flight is deleted from its
    /// instance's queue and interrupted there.
    pub async fn cancel(&self, id: &str) -> Result<Job, DispatchError> {
        let (job, attempt, durable, copy) = {
            let mut st = self.shared.lock();
            let e = st.jobs.get_mut(id).ok_or_else(|| not_found(id))?;
            if e.apply(JobAction::Cancel).is_err() {
                return Err(wrong_state(e, "cancelling", "not finished"));
            }
            let attempt = e.attempt.take();
            if let Some(a) = &attempt {
                a.token.cancel();
            }
            let copy = e.take_copy();
            e.job.finished_at = Some(Utc::now());
            e.job.progress.node = None;
            let durable = self.shared.persist_durable(e);
            (e.job.clone(), attempt, durable, copy)
        };
        self.shared.wake.notify_one();
        self.shared.stop_prompts(copy);
        written(durable).await?;
        if let Some(a) = attempt {
            if let Some(inst) = self.shared.manager.get(&a.instance_id) {
                if let Ok(client) = crate::client::ComfyClient::for_instance(&inst.config) {
                    let client = client.with_timeout(self.shared.options.request_timeout);
                    let ids = [a.prompt_id.clone()];
                    if let Err(e) = client.delete_from_queue(&ids).await {
                        tracing::warn!(job = %id, "cancel: deleting from the queue: {e}");
                    }
                    if let Err(e) = client.interrupt(Some(&a.prompt_id)).await {
                        tracing::warn!(job = %id, "cancel: interrupting: {e}");
                    }
                }
            }
            self.shared.log_finished(&a.instance_id, &job);
        }
        Ok(job)
    }

    /// Queues a failed or cancelled job again (a new attempt, a new prompt id).
    pub async fn retry(&self, id: &str) -> Result<Job, DispatchError> {
        self.requeue_by_user(id, JobAction::Retry, "retrying", "failed or cancelled")
            .await
    }

    /// Lets a suspect or held job run again.
    pub async fn release(&self, id: &str) -> Result<Job, DispatchError> {
        self.requeue_by_user(id, JobAction::Release, "releasing", "suspect or held")
            .await
    }

    async fn requeue_by_user(
        &self,
        id: &str,
        transition: JobAction,
        action: &'static str,
        allowed: &'static str,
    ) -> Result<Job, DispatchError> {
        let (job, durable) = {
            let mut st = self.shared.lock();
            let e = st.jobs.get_mut(id).ok_or_else(|| not_found(id))?;
            if e.apply(transition).is_err() {
                return Err(wrong_state(e, action, allowed));
            }
            let j = &mut e.job;
            j.error = None;
            j.outputs.clear();
            j.prompt_id = None;
            j.started_at = None;
            j.finished_at = None;
            j.attempts = 0;
            j.progress = JobProgress {
                total_nodes: j.progress.total_nodes,
                ..JobProgress::default()
            };
            e.queued_at = Instant::now();
            (e.job.summary(), self.shared.persist_durable(e))
        };
        self.shared.wake.notify_one();
        written(durable).await?;
        Ok(job)
    }

    /// Forgets a finished job (its file and its outputs).
    pub async fn remove(&self, id: &str) -> Result<(), DispatchError> {
        let durable = {
            let mut st = self.shared.lock();
            let e = st.jobs.get(id).ok_or_else(|| not_found(id))?;
            if !e.job.state.is_final() {
                return Err(wrong_state(e, "removing", "finished (cancel it first)"));
            }
            st.remove_job(id);
            st.order.retain(|j| j != id);
            self.shared.journal.remove_durable(id)
        };
        self.shared
            .emit(AppEvent::JobRemoved { id: id.to_string() });
        written(durable).await?;
        let folder = outputs::job_folder(&self.shared.dir, id);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(folder)).await;
        Ok(())
    }

    /// Every job, in submission order.
    pub fn list(&self) -> Vec<Job> {
        let st = self.shared.lock();
        st.order
            .iter()
            .filter_map(|id| st.jobs.get(id).map(|e| e.job.clone()))
            .collect()
    }

    /// Every job without its workflow ([`Job::summary`]), in submission
    /// order: what the UI lists.
    pub fn summaries(&self) -> Vec<Job> {
        let st = self.shared.lock();
        st.order
            .iter()
            .filter_map(|id| st.jobs.get(id).map(|e| e.job.summary()))
            .collect()
    }

    /// Jobs that came through the gateway and have not finished (queued,
    /// sent or running): ComfyUI's `queue_remaining` for the fleet.
    pub fn gateway_remaining(&self) -> usize {
        self.gateway_remaining_of(None)
    }

    /// [`gateway_remaining`](Self::gateway_remaining), of `owner`'s prompts
    /// only when given.
    pub fn gateway_remaining_of(&self, owner: Option<&str>) -> usize {
        self.gateway_count(owner, |s| {
            matches!(
                s,
                JobState::Queued | JobState::Dispatched | JobState::Running
            )
        })
    }

    /// Prompts of `owner` that wait to be placed (queued).
    pub fn gateway_waiting_of(&self, owner: &str) -> usize {
        self.gateway_count(Some(owner), |s| s == JobState::Queued)
    }

    /// Gateway jobs (of `owner` when given) in a state `counted` takes.
    fn gateway_count(&self, owner: Option<&str>, counted: impl Fn(JobState) -> bool) -> usize {
        let st = self.shared.lock();
        st.jobs
            .values()
            .filter(|e| {
                counted(e.job.state)
                    && e.job
                        .gateway
                        .as_ref()
                        .is_some_and(|g| owner.is_none_or(|o| g.owner.as_deref() == Some(o)))
            })
            .count()
    }

    /// The gateway's jobs in submission order, those `with_workflow` says
    /// with their workflows (a workflow can be megabytes: only the jobs
    /// shown are copied whole), the others as summaries.
    pub fn gateway_jobs(&self, with_workflow: impl Fn(&Job) -> bool) -> Vec<Job> {
        self.gateway_jobs_where(|_| true, with_workflow)
    }

    /// [`gateway_jobs`](Self::gateway_jobs), only those `keep` says (the
    /// others are not copied at all: `/queue` reads a few running ones
    /// among thousands finished).
    pub fn gateway_jobs_where(
        &self,
        keep: impl Fn(&Job) -> bool,
        with_workflow: impl Fn(&Job) -> bool,
    ) -> Vec<Job> {
        let st = self.shared.lock();
        st.order
            .iter()
            .filter_map(|id| st.jobs.get(id))
            .filter(|e| e.job.gateway.is_some() && keep(&e.job))
            .map(|e| {
                if with_workflow(&e.job) {
                    e.job.clone()
                } else {
                    e.job.summary()
                }
            })
            .collect()
    }

    /// What waits and what runs where, as the placement model expects it:
    /// pools size themselves from it.
    pub fn outlook(&self) -> Outlook {
        let st = self.shared.lock();
        let mut out = Outlook::default();
        for e in st.jobs.values() {
            if e.accepted && e.job.state == JobState::Queued {
                out.waiting.push(WaitingJob {
                    target: e.job.target.clone(),
                    pins: e.job.pinned_instances.clone(),
                    secs: st.speeds.typical_secs(e.work),
                });
            }
        }
        out.in_flight = st
            .load()
            .into_iter()
            .map(|(id, l)| (id, (l.in_flight, l.backlog_secs)))
            .collect();
        out
    }

    /// The bus the queue publishes its job events on.
    pub fn bus(&self) -> &crate::events::EventBus {
        &self.shared.bus
    }

    /// Prompts of this app in flight per instance id (attempts and copies
    /// not done executing): the one load measure, as the seed's balancing
    /// takes it.
    pub fn in_flight(&self) -> HashMap<String, u32> {
        self.shared
            .lock()
            .load()
            .into_iter()
            .map(|(id, l)| (id, l.in_flight))
            .collect()
    }

    /// Changes how long finished jobs are kept (the settings changed) and
    /// prunes at once. Returns how many jobs were deleted.
    /// How the automatic target picks from now on, and whether long jobs
    /// get copies near the end. Jobs already sent stay where they are.
    pub fn set_placement(&self, policy: Policy, copies: bool) {
        self.shared.lock().planner.policy = policy;
        self.shared
            .speculate
            .store(copies, std::sync::atomic::Ordering::Relaxed);
        self.shared.wake.notify_one();
        tracing::info!(policy = policy.name(), copies, "placement settings applied");
    }

    /// The placement policy in use.
    pub fn placement(&self) -> Policy {
        self.shared.lock().planner.policy
    }

    pub async fn set_retention(&self, retention: Retention) -> usize {
        self.shared.lock().retention = retention;
        let shared = self.shared.clone();
        let removed = tokio::task::spawn_blocking(move || retention::prune(&shared))
            .await
            .unwrap_or(0);
        self.flush().await;
        removed
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.shared.lock().jobs.get(id).map(|e| e.job.clone())
    }

    /// The job without its workflow (which can be megabytes).
    pub fn summary(&self, id: &str) -> Option<Job> {
        self.shared.lock().jobs.get(id).map(|e| e.job.summary())
    }

    /// Time from the job's submission (or its last requeue) to the moment its
    /// `POST /prompt` was sent: the app's dispatch overhead, when the fleet had room.
    pub fn submit_to_post(&self, id: &str) -> Option<Duration> {
        self.shared
            .lock()
            .jobs
            .get(id)
            .and_then(|e| e.submit_to_post)
    }

    /// The measured seconds per unit of work of an instance, if measured.
    pub fn secs_per_unit(&self, instance_id: &str) -> Option<f64> {
        let st = self.shared.lock();
        st.speeds
            .measured(instance_id)
            .then(|| st.speeds.secs_per_unit(instance_id))
    }

    /// What the journal's writer did so far (syncs, records, groups).
    pub fn writer_counts(&self) -> writer::WriterCounts {
        self.shared.journal.writer.counts()
    }

    /// Resolves once every record handed to the writer so far is on disk
    /// (or failed): for readers of the files, such as tests.
    pub async fn flush(&self) {
        self.shared.journal.writer.flush().await;
    }

    /// Instances whose cost model has a measure.
    pub fn measured(&self) -> Vec<String> {
        let st = self.shared.lock();
        self.shared
            .manager
            .list()
            .into_iter()
            .map(|i| i.id)
            .filter(|id| st.speeds.measured(id))
            .collect()
    }

    /// The fitted cost model of an instance: (fixed seconds, seconds per unit).
    pub fn cost_model(&self, instance_id: &str) -> Option<(f64, f64)> {
        self.shared.lock().speeds.params(instance_id)
    }

    /// What the instance ran, newest first, at most `limit` runs: its
    /// `instance_{id}_workflows.json` as this queue keeps it (also for an
    /// instance that is gone, while the file is there).
    pub fn execution_history(
        &self,
        instance_id: &str,
        limit: usize,
    ) -> Vec<instance_log::Execution> {
        let mut runs = Vec::new();
        self.shared.edit_log(instance_id, |f| {
            runs = f
                .execution_history
                .iter()
                .rev()
                .take(limit)
                .cloned()
                .collect();
            false
        });
        runs
    }

    /// The templates kept with this queue.
    pub fn templates(&self) -> TemplateStore {
        TemplateStore::new(&self.shared.dir)
    }

    /// The global templates and those of a project.
    pub fn project_templates(&self, project_id: &str) -> TemplateStore {
        TemplateStore::in_project(&self.shared.dir, project_id)
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The preview images of running jobs, from now on.
    pub fn subscribe_previews(&self) -> tokio::sync::broadcast::Receiver<Preview> {
        self.shared.previews.subscribe()
    }

    /// Stops placing and following (jobs in flight stay on disk as they are,
    /// and the next [`open`](Self::open) picks them up) and waits for the tasks.
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        self.flush().await;
    }
}

/// Awaits a record's write, as the caller's error.
async fn written(durable: writer::Durable) -> Result<(), DispatchError> {
    match durable.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(f)) => Err(DispatchError::Store(f.into())),
        Err(_) => Err(DispatchError::ShutDown),
    }
}

/// A workflow as the JSON its records hold.
fn workflow_json(workflow: &Value) -> Arc<[u8]> {
    serde_json::to_vec(workflow)
        .unwrap_or_else(|_| b"null".to_vec())
        .into()
}

fn not_found(id: &str) -> DispatchError {
    DispatchError::NotFound { id: id.to_string() }
}

fn wrong_state(e: &Entry, action: &'static str, allowed: &'static str) -> DispatchError {
    DispatchError::WrongState {
        id: e.job.id.clone(),
        state: e.job.state,
        action,
        allowed,
    }
}
