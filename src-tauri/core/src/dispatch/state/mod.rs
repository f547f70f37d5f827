//! The queue's state and its one owner, [`Shared`]: every transition of a
//! job is a method here (in `transitions.rs`), checked by the transition
//! table (`machine.rs`), and returns or hands on what must happen next
//! (see `effects.rs`). One `std::sync::Mutex`, never held across an
//! `.await`, and no file I/O under it: a job's record is handed to the
//! journal's writer thread (in order, so an older snapshot never lands
//! after a newer one) and the lock is let go. The writer tries a failed
//! write (full disk, read-only folder) again until it succeeds; a job whose
//! `dispatched` record did not become durable is not sent (see `runner`).

mod effects;
mod entry;
mod models;
mod replay;
mod requests;
mod transitions;

pub(crate) use effects::{Effect, Mode, Taken};
pub(crate) use entry::{Attempt, Entry, QueueState, Sent};
pub(crate) use replay::WorkflowRead;

use super::instance_log::InstanceWorkflowsFile;
use super::options::{DispatchOptions, Preview};
use super::store::{Cas, JobStore};
use crate::client::ComfyClient;
use crate::manager::InstanceManager;
use chrono::Utc;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use storycore_types::{AppEvent, Job};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) struct Shared {
    /// The engine's bus (the one the manager was opened on).
    pub bus: crate::events::EventBus,
    pub manager: InstanceManager,
    pub dir: PathBuf,
    /// Where the records live (the file journal on one machine).
    pub journal: Arc<dyn JobStore>,
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
    pub previews: tokio::sync::broadcast::Sender<Preview>,
    /// To the driver: the tasks transitions ask for.
    pub effects: mpsc::UnboundedSender<Effect>,
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
        let cas = Cas::over(e.revision);
        self.journal.put(&e.job, &e.workflow_json, cas);
        e.revision = cas.next;
        self.emit(AppEvent::JobUpdated(Box::new(e.job.summary())));
    }

    /// Like [`Self::persist`], committed at once; the answer says when the
    /// record is durable. Await it after letting the lock go.
    pub fn persist_durable(&self, e: &mut Entry) -> super::writer::Durable {
        e.job.updated_at = Utc::now();
        let cas = Cas::over(e.revision);
        let durable = self.journal.put_durable(&e.job, &e.workflow_json, cas);
        e.revision = cas.next;
        self.emit(AppEvent::JobUpdated(Box::new(e.job.summary())));
        durable
    }

    /// Folds a finished job into `instance_{id}_workflows.json`.
    pub fn log_finished(&self, instance_id: &str, job: &Job) {
        self.edit_log(instance_id, |f| {
            f.record_finished(job);
            true
        });
    }

    pub fn log_taken_back(&self, sent: Sent<'_>) {
        let (job_id, prompt_id) = (sent.job, sent.prompt);
        self.edit_log(sent.instance, |f| {
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
        self.journal.put_file(path, Box::new(render));
    }

    /// Hands a task to start to the driver (dropped once the queue stops).
    pub fn effect(&self, e: Effect) {
        let _ = self.effects.send(e);
    }

    /// The instance's `/ws` stream, followed once per instance: how its
    /// connection goes, `None` while the first is being made. A prompt sent
    /// before the socket is open loses its first messages (ComfyUI sends to
    /// the sockets open at the time), so a runner waits for it a moment.
    pub fn follow(&self, instance_id: &str, client: &ComfyClient) -> watch::Receiver<Option<bool>> {
        let mut st = self.lock();
        if let Some(c) = st.followers.get(instance_id) {
            return c.clone();
        }
        let (connected, rx) = watch::channel(None);
        st.followers.insert(instance_id.to_string(), rx.clone());
        drop(st);
        self.effect(Effect::Follow {
            instance_id: instance_id.to_string(),
            client: client.clone(),
            connected,
        });
        rx
    }

    /// The `/ws` client id of this app on an instance. Stable across restarts,
    /// so a restarted app receives the progress of prompts it sent before.
    pub fn client_id(instance_id: &str) -> String {
        format!("storycore-dispatch-{instance_id}")
    }
}
