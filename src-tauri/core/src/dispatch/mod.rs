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

pub mod cache;
mod driver;
pub mod durable;
mod error;
mod failover;
mod follower;
pub mod instance_log;
pub mod journal;
pub mod machine;
pub mod models;
mod offers;
mod options;
pub mod outputs;
pub mod placement;
mod recall;
pub mod record;
mod recover;
mod retention;
mod runner;
mod scheduler;
pub mod speed;
mod state;
pub mod store;
pub mod templates;
mod views;
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
use state::{Effect, Mode, QueueState, Shared, WorkflowRead};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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
        let journal = Arc::new(journal::Journal::open(&dir)?);
        Self::open_with_store(manager, dir, options, journal)
    }

    /// [`open`](Self::open) on another store than the file journal of `dir`
    /// (outputs, templates and workflow logs stay in `dir`).
    pub fn open_with_store(
        manager: InstanceManager,
        dir: impl Into<PathBuf>,
        options: DispatchOptions,
        journal: Arc<dyn store::JobStore>,
    ) -> Result<(Self, Recovered), DispatchError> {
        let dir = dir.into();
        let replayed = journal.replay()?;
        let cancel = CancellationToken::new();
        let mut report = Recovered {
            notices: replayed.notices,
            ..Recovered::default()
        };
        let mut state = QueueState::new(
            options.initial_secs_per_unit,
            options.policy,
            options.retention,
        );
        let found = state.replay(
            replayed.jobs.into_iter().map(|job| {
                let read = WorkflowRead::of(&job.workflow);
                (job, read)
            }),
            &replayed.revisions,
            &cancel,
        );
        report.queued = found.queued;
        let follow = found.follow;
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
            state: Mutex::new(state),
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
        // Read before the lock: its needs, cache keys and JSON.
        let read = WorkflowRead::of(&workflow);
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
            placed_because: None,
            gateway: context.gateway.clone(),
            input_files: context.input_files.clone(),
        };
        let id = job.id.clone();
        let (durable, placed) = {
            let mut st = self.shared.lock();
            let nothing_waits = st.admit(job, read);
            let placed = nothing_waits && !st.storage_blocked() && {
                let mut fleet = scheduler::Fleet::new(&self.shared, &mut st);
                scheduler::place(&self.shared, &mut st, &mut fleet, &id)
            };
            (
                st.write_now(&self.shared, &id).expect("just admitted"),
                placed,
            )
        };
        // Accepted means durable: refuse rather than hold it only in memory.
        match durable.await {
            Ok(Ok(())) => {}
            // A job of this id is stored already (not this one): it stays.
            Ok(Err(f)) if f.conflict => {
                self.shared.lock().refuse(&id);
                self.shared.reload(&id).await;
                return Err(DispatchError::Moved {
                    id,
                    reason: f.message,
                });
            }
            answer => {
                self.shared.lock().refuse(&id);
                self.shared.journal.remove(&id);
                return Err(outcome(answer).expect_err("not written"));
            }
        }
        let mut st = self.shared.lock();
        let job = st.accept(&id).expect("only removed here");
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
        let c = self.shared.cancel_job(id)?;
        self.shared.wake.notify_one();
        self.shared.stop_prompts(c.copy);
        self.written_cas(id, c.durable).await?;
        if let Some((instance_id, prompt_id)) = c.attempt {
            if let Some(inst) = self.shared.manager.get(&instance_id) {
                if let Ok(client) = crate::client::ComfyClient::for_instance(&inst.config) {
                    let client = client.with_timeout(self.shared.options.request_timeout);
                    if let Err(e) = client
                        .delete_from_queue(std::slice::from_ref(&prompt_id))
                        .await
                    {
                        tracing::warn!(job = %id, "cancel: deleting from the queue: {e}");
                    }
                    if let Err(e) = client.interrupt(Some(&prompt_id)).await {
                        tracing::warn!(job = %id, "cancel: interrupting: {e}");
                    }
                }
            }
            self.shared.log_finished(&instance_id, &c.job);
        }
        Ok(c.job)
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
        let (job, durable) = self
            .shared
            .requeue_by_user(id, transition, action, allowed)?;
        self.shared.wake.notify_one();
        self.written_cas(id, durable).await?;
        Ok(job)
    }

    /// Forgets a finished job (its file and its outputs).
    pub async fn remove(&self, id: &str) -> Result<(), DispatchError> {
        let durable = self.shared.remove_finished(id)?;
        written(durable).await?;
        let folder = outputs::job_folder(&self.shared.dir, id);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(folder)).await;
        Ok(())
    }

    /// Changes how long finished jobs are kept (the settings changed) and
    /// prunes at once. Returns how many jobs were deleted.
    /// How the automatic target picks from now on, and whether long jobs
    /// get copies near the end. Jobs already sent stay where they are.
    pub fn set_placement(&self, policy: Policy, copies: bool) {
        self.shared.lock().set_policy(policy);
        self.shared
            .speculate
            .store(copies, std::sync::atomic::Ordering::Relaxed);
        self.shared.wake.notify_one();
        tracing::info!(policy = policy.name(), copies, "placement settings applied");
    }

    /// The placement policy in use.
    pub fn placement(&self) -> Policy {
        self.shared.lock().planner().policy
    }

    pub async fn set_retention(&self, retention: Retention) -> usize {
        self.shared.lock().set_retention(retention);
        let shared = self.shared.clone();
        let removed = tokio::task::spawn_blocking(move || retention::prune(&shared))
            .await
            .unwrap_or(0);
        self.flush().await;
        removed
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
    outcome(durable.await)
}

fn outcome(
    answer: Result<Result<(), writer::WriteFailure>, tokio::sync::oneshot::error::RecvError>,
) -> Result<(), DispatchError> {
    match answer {
        Ok(Ok(())) => Ok(()),
        Ok(Err(f)) => Err(DispatchError::Store(f.into())),
        Err(_) => Err(DispatchError::ShutDown),
    }
}

impl JobQueue {
    /// Awaits the write of job `id`'s record; when its compare-and-set lost,
    /// the job is read again from the store (the truth) and the caller told.
    async fn written_cas(&self, id: &str, durable: writer::Durable) -> Result<(), DispatchError> {
        match durable.await {
            Ok(Err(f)) if f.conflict => {
                self.shared.reload(id).await;
                Err(DispatchError::Moved {
                    id: id.to_string(),
                    reason: f.message,
                })
            }
            answer => outcome(answer),
        }
    }
}
