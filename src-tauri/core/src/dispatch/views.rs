//! What the queue shows without changing anything: its jobs, the gateway's
//! view of them, the outlook the pools size themselves from, the cost
//! models, and the files it keeps.

use super::instance_log;
use super::options::{Outlook, Preview, WaitingJob};
use super::placement;
use super::templates::TemplateStore;
use super::writer;
use super::JobQueue;
use std::path::Path;
use std::time::Duration;
use storycore_types::{Instance, InstanceModels, Job, JobState};

impl JobQueue {
    /// Every job, in submission order.
    pub fn list(&self) -> Vec<Job> {
        let st = self.shared.lock();
        st.in_order().map(|e| e.job().clone()).collect()
    }

    /// Every job without its workflow ([`Job::summary`]), in submission
    /// order: what the UI lists.
    pub fn summaries(&self) -> Vec<Job> {
        let st = self.shared.lock();
        st.in_order().map(|e| e.job().summary()).collect()
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
        st.entries()
            .filter(|e| {
                counted(e.job().state)
                    && e.job()
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
        st.in_order()
            .filter(|e| e.job().gateway.is_some() && keep(e.job()))
            .map(|e| {
                if with_workflow(e.job()) {
                    e.job().clone()
                } else {
                    e.job().summary()
                }
            })
            .collect()
    }

    /// What waits and what runs where, as the placement model expects it:
    /// pools size themselves from it.
    pub fn outlook(&self) -> Outlook {
        let st = self.shared.lock();
        let mut out = Outlook::default();
        for e in st.entries() {
            if e.accepted() && e.job().state == JobState::Queued {
                out.waiting.push(WaitingJob {
                    target: e.job().target.clone(),
                    pins: e.job().pinned_instances.clone(),
                    secs: st.speeds().typical_secs(e.work()),
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

    /// The seed's `getInstancesByLoad`: the instances that take work, best
    /// first, on the queue's own load measure (see [`placement::by_load`]).
    /// The gateway asks the first for what is not a job.
    pub fn instances_by_load(&self) -> Vec<Instance> {
        let fleet = self.shared.manager.list();
        let active = self.shared.manager.chosen_active_id();
        let st = self.shared.lock();
        let load = st.load();
        placement::by_load(
            &fleet,
            |id| load.get(id).copied().unwrap_or_default(),
            |id| st.cooling(id),
            active.as_deref(),
        )
        .into_iter()
        .cloned()
        .collect()
    }

    /// The seed's `getHealthyInstance`: the first of
    /// [`instances_by_load`](Self::instances_by_load), if any.
    pub fn healthy_instance(&self) -> Option<Instance> {
        self.instances_by_load().into_iter().next()
    }

    /// What the instance offers (its model files, by loader input), what it
    /// has loaded now, and the loads measured there; `None` before its
    /// `/object_info` was read in its current run.
    pub fn instance_models(&self, instance_id: &str) -> Option<InstanceModels> {
        let st = self.shared.lock();
        let offer = st.offer_of(instance_id)?;
        Some(InstanceModels {
            files: offer
                .model_files()
                .into_iter()
                .map(|(input, files)| (input, files.into_iter().collect()))
                .collect(),
            loaded: st.loaded(instance_id).to_vec(),
            load_secs: st.measured_loads(instance_id).into_iter().collect(),
        })
    }

    /// Reads what the instance offers again, now (files were added or
    /// removed), and answers it; `None` when it is not running.
    pub async fn refresh_models(&self, instance_id: &str) -> Option<InstanceModels> {
        let instance = self.shared.manager.get(instance_id)?;
        if !instance.takes_work() {
            return None;
        }
        self.shared.lock().reread_offer(instance_id);
        super::offers::read(self.shared.clone(), instance).await;
        self.instance_models(instance_id)
    }

    /// The bus the queue publishes its job events on.
    pub fn bus(&self) -> &crate::events::EventBus {
        &self.shared.bus
    }

    pub fn get(&self, id: &str) -> Option<Job> {
        self.shared.lock().entry(id).map(|e| e.job().clone())
    }

    /// The job without its workflow (which can be megabytes).
    pub fn summary(&self, id: &str) -> Option<Job> {
        self.shared.lock().entry(id).map(|e| e.job().summary())
    }

    /// Time from the job's submission (or its last requeue) to the moment its
    /// `POST /prompt` was sent: the app's dispatch overhead, when the fleet had room.
    pub fn submit_to_post(&self, id: &str) -> Option<Duration> {
        self.shared
            .lock()
            .entry(id)
            .and_then(|e| e.submit_to_post())
    }

    /// The measured seconds per unit of work of an instance, if measured.
    pub fn secs_per_unit(&self, instance_id: &str) -> Option<f64> {
        let st = self.shared.lock();
        st.speeds()
            .measured(instance_id)
            .then(|| st.speeds().secs_per_unit(instance_id))
    }

    /// What the journal's writer did so far (syncs, records, groups).
    pub fn writer_counts(&self) -> writer::WriterCounts {
        self.shared.journal.counts()
    }

    /// Resolves once every record handed to the writer so far is on disk
    /// (or failed): for readers of the files, such as tests.
    pub async fn flush(&self) {
        self.shared.journal.flush().await;
    }

    /// Instances whose cost model has a measure.
    pub fn measured(&self) -> Vec<String> {
        let st = self.shared.lock();
        self.shared
            .manager
            .list()
            .into_iter()
            .map(|i| i.id)
            .filter(|id| st.speeds().measured(id))
            .collect()
    }

    /// The fitted cost model of an instance: (fixed seconds, seconds per unit).
    pub fn cost_model(&self, instance_id: &str) -> Option<(f64, f64)> {
        self.shared.lock().speeds().params(instance_id)
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
}
