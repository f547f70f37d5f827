//! What a user (or a part of the app) asks of a job: admit it, cancel it,
//! run it again, forget it. Each is a transition checked by the table, made
//! under the lock; the caller awaits the record's write after letting go.

use super::{Entry, QueueState, Shared};
use crate::dispatch::machine::JobAction;
use crate::dispatch::writer::Durable;
use crate::dispatch::DispatchError;
use chrono::Utc;
use std::time::Instant;
use storycore_types::{AppEvent, Job, JobProgress};

/// A job cancelled: its record's write, and the prompts to stop.
pub(crate) struct Cancelled {
    pub job: Job,
    pub durable: Durable,
    /// The attempt's (instance, prompt), deleted and interrupted there.
    pub attempt: Option<(String, String)>,
    /// The copy's (instance, prompt).
    pub copy: Option<(String, String)>,
}

impl QueueState {
    /// Takes in a job submitted now, not yet accepted (its record is not
    /// durable yet). Whether nothing else waited before it.
    pub fn admit(&mut self, job: Job, read: super::replay::WorkflowRead) -> bool {
        let nothing_waits = !self
            .jobs
            .values()
            .any(|e| e.job.state == storycore_types::JobState::Queued);
        let id = job.id.clone();
        self.order.push(id.clone());
        self.jobs.insert(id, Entry::new(job, read, false));
        nothing_waits
    }

    /// The job's submission is durable: the scheduler may place it.
    pub fn accept(&mut self, id: &str) -> Option<Job> {
        let e = self.jobs.get_mut(id)?;
        e.accepted = true;
        e.queued_at = Instant::now();
        Some(e.job.clone())
    }

    /// Drops a job whose submission could not be made durable.
    pub fn refuse(&mut self, id: &str) {
        if let Some(a) = self.remove_job(id).and_then(|e| e.attempt) {
            a.token.cancel();
        }
    }

    /// Stamps the job and hands its record to the store now.
    pub fn write_now(&mut self, shared: &Shared, id: &str) -> Option<Durable> {
        let e = self.jobs.get_mut(id)?;
        e.job.updated_at = Utc::now();
        let cas = crate::dispatch::store::Cas::over(e.revision);
        let durable = shared.journal.put_durable(&e.job, &e.workflow_json, cas);
        e.revision = cas.next;
        Some(durable)
    }

    /// The time from its (re)queueing to its `POST /prompt` was measured.
    pub fn posted(&mut self, id: &str) {
        if let Some(e) = self.jobs.get_mut(id) {
            e.submit_to_post = Some(e.queued_at.elapsed());
        }
    }

    /// How the automatic target picks from now on.
    pub fn set_policy(&mut self, policy: crate::dispatch::Policy) {
        self.planner.policy = policy;
    }

    pub fn set_retention(&mut self, retention: crate::dispatch::Retention) {
        self.retention = retention;
    }
}

impl Shared {
    /// Cancels a job that has not finished.
    pub fn cancel_job(&self, id: &str) -> Result<Cancelled, DispatchError> {
        let mut st = self.lock();
        let e = st.jobs.get_mut(id).ok_or_else(|| not_found(id))?;
        if !e.can(JobAction::Cancel) {
            return Err(wrong_state(e, "cancelling", "not finished"));
        }
        let _ = e.apply(JobAction::Cancel);
        let attempt = e.attempt.take().map(|a| {
            a.token.cancel();
            (a.instance_id, a.prompt_id)
        });
        let copy = e.take_copy();
        e.job.finished_at = Some(Utc::now());
        e.job.progress.node = None;
        let durable = self.persist_durable(e);
        Ok(Cancelled {
            job: e.job.clone(),
            durable,
            attempt,
            copy,
        })
    }

    /// Queues a finished job again (`action`: retry or release), as new.
    pub fn requeue_by_user(
        &self,
        id: &str,
        action: JobAction,
        doing: &'static str,
        allowed: &'static str,
    ) -> Result<(Job, Durable), DispatchError> {
        let mut st = self.lock();
        let e = st.jobs.get_mut(id).ok_or_else(|| not_found(id))?;
        if !e.can(action) {
            return Err(wrong_state(e, doing, allowed));
        }
        let _ = e.apply(action);
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
        Ok((e.job.summary(), self.persist_durable(e)))
    }

    /// Forgets a finished job; the answer says when that is durable.
    pub fn remove_finished(&self, id: &str) -> Result<Durable, DispatchError> {
        let mut st = self.lock();
        let e = st.jobs.get(id).ok_or_else(|| not_found(id))?;
        if !e.job.state.is_final() {
            return Err(wrong_state(e, "removing", "finished (cancel it first)"));
        }
        st.remove_job(id);
        let durable = self.journal.remove_durable(id);
        drop(st);
        self.emit(AppEvent::JobRemoved { id: id.to_string() });
        Ok(durable)
    }
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

impl Shared {
    /// Reads job `id` again from the store and takes it as stored (see
    /// [`QueueState::reload`]), telling the listeners.
    pub async fn reload(&self, id: &str) {
        let stored = match self.journal.get(id).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(job = %id, "could not read the job again from its store: {e}");
                return;
            }
        };
        let mut st = self.lock();
        match st.reload(id, stored) {
            Some(job) => {
                tracing::info!(job = %id, state = job.state.as_str(), "read again from the store");
                self.emit(AppEvent::JobUpdated(Box::new(job.summary())));
            }
            None => self.emit(AppEvent::JobRemoved { id: id.to_string() }),
        }
        drop(st);
        self.wake.notify_one();
    }
}
