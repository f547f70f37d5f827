//! Every transition of a job, as methods of the state's owner: each checks
//! the pair with the transition table, writes the record, and hands on
//! what must happen next (a wake-up of the scheduler, a task for the
//! driver). Callers never set a job's state themselves.

use super::{Effect, Entry, QueueState, Sent, Shared, Taken};
use crate::dispatch::machine::JobAction;
use crate::dispatch::writer::Durable;
use chrono::Utc;
use std::time::{Duration, Instant};
use storycore_types::{Job, JobError, JobOutput, JobProgress, JobState};

/// After a failed write of a `dispatched` record, no job is sent for this long.
pub(crate) const STORAGE_RETRY: Duration = Duration::from_secs(2);

impl Shared {
    /// Applies `f` to the job if its current attempt is still `prompt_id`, then
    /// saves it. Returns the job as saved, or None if the attempt was taken away.
    pub fn with_attempt(&self, sent: Sent<'_>, f: impl FnOnce(&mut Entry)) -> Option<Job> {
        let mut st = self.lock();
        let e = st.current(sent)?;
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
        if died_running {
            if let Some(i) = instance.clone() {
                if !e.job.instances_killed.contains(&i) {
                    e.job.instances_killed.push(i);
                }
            }
        }
        if e.copy.is_some() {
            if let Some(n) = note {
                tracing::info!(job = %e.job.id, "its attempt ended: {n}");
            }
            e.promote_copy();
            self.persist(e);
            self.wake.notify_one();
            return;
        }
        e.job.prompt_id = None;
        e.job.started_at = None;
        e.job.progress = JobProgress {
            total_nodes: e.job.progress.total_nodes,
            ..JobProgress::default()
        };
        if e.job.instances_killed.len() >= 2 {
            if e.apply(JobAction::Suspect).is_ok() {
                e.job.error = Some(JobError::new(format!(
                    "held as suspect: the instances {} died while running this job; \
                     release it to run it again",
                    e.job.instances_killed.join(" and ")
                )));
            }
        } else if e.job.attempts >= self.options.max_attempts {
            if e.apply(JobAction::Fail).is_ok() {
                e.job.finished_at = Some(Utc::now());
                e.job.error = Some(JobError::new(format!(
                    "gave up after {} attempts{}",
                    e.job.attempts,
                    note.map(|n| format!(": {n}")).unwrap_or_default()
                )));
            }
        } else if e.apply(JobAction::Requeue).is_ok() {
            e.job.error = note.map(JobError::new);
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
    pub fn instance_lost(&self, instance_id: &str, why: &str) {
        self.lose(instance_id, why, true)
    }

    /// [`instance_lost`](Self::instance_lost) for an instance stopped or
    /// deleted by the user or a pool: no cooldown, which would hold a new
    /// process started soon after (a member started for a burst, an
    /// instance attached as it is created) from work for seconds.
    pub fn instance_gone(&self, instance_id: &str, why: &str) {
        self.lose(instance_id, why, false)
    }

    fn lose(&self, instance_id: &str, why: &str, cool: bool) {
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
                taken.push(Taken {
                    job_id: id,
                    prompt_id: a.prompt_id.clone(),
                    instance_id: instance_id.to_string(),
                    running,
                });
            }
            taken
        };
        if !taken.is_empty() {
            self.effect(Effect::Recall {
                instance_id: instance_id.to_string(),
                why: why.to_string(),
                taken,
            });
        }
    }

    /// The job's copy sent as `prompt_id` ended without taking the
    /// attempt's place: it is dropped. Its (instance, prompt) to stop.
    pub fn drop_copy(&self, job_id: &str, prompt_id: &str) -> Option<(String, String)> {
        let mut st = self.lock();
        let e = st
            .jobs
            .get_mut(job_id)
            .filter(|e| e.copy.as_ref().is_some_and(|c| c.prompt_id == prompt_id))?;
        let stop = e.take_copy();
        self.persist(e);
        stop
    }

    /// Deletes `prompts` from their instances' queues and interrupts them
    /// there (now, or when the instance answers again). Call without the lock.
    pub fn stop_prompts(&self, prompts: impl IntoIterator<Item = (String, String)>) {
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
        for instance_id in instances {
            self.effect(Effect::ClearOrphans { instance_id });
        }
    }

    /// The instance started executing the prompt sent as `prompt_id` (the
    /// attempt's or the copy's). The job's own state follows its attempt.
    pub fn mark_running(&self, sent: Sent<'_>) {
        let (job_id, prompt_id) = (sent.job, sent.prompt);
        let mut st = self.lock();
        let Some(e) = st.jobs.get_mut(job_id) else {
            return;
        };
        let is_attempt = e.is_attempt(prompt_id);
        let Some(a) = e.sent_as(prompt_id) else {
            return;
        };
        if a.started.is_none() {
            a.started = Some(Instant::now());
            a.last_progress = Instant::now();
        }
        if !is_attempt || e.job.state != JobState::Dispatched {
            return;
        }
        if e.apply(JobAction::Start).is_ok() {
            e.job.started_at.get_or_insert_with(Utc::now);
            self.persist(e);
        }
    }

    /// ComfyUI finished executing the prompt: its slot is free for the next
    /// job while the outputs are fetched and the job's end is written.
    ///
    /// Of a job's attempt and its copy, the first to end decides: the
    /// attempt ending in any way drops the copy; the copy succeeding takes
    /// the attempt's place, and the attempt is interrupted. Both are decided
    /// under the lock, so only one of them ever fetches outputs. False when
    /// this prompt no longer counts for the job: its runner stops.
    pub fn mark_executed(&self, sent: Sent<'_>, succeeded: bool) -> bool {
        let (job_id, prompt_id) = (sent.job, sent.prompt);
        let mut st = self.lock();
        let Some(e) = st.jobs.get_mut(job_id) else {
            return false;
        };
        let stop = if let Some(a) = e.attempt.as_mut().filter(|a| a.prompt_id == prompt_id) {
            a.executed = true;
            let stop = e.take_copy();
            if stop.is_some() {
                tracing::info!(job = %job_id, "it ended before its copy, which is stopped");
                self.persist(e);
            }
            stop
        } else if succeeded && e.copy.as_ref().is_some_and(|c| c.prompt_id == prompt_id) {
            let c = e.copy.as_mut().expect("checked");
            c.executed = true;
            c.started.get_or_insert(c.dispatched);
            tracing::info!(job = %job_id, "its copy finished first");
            let lost = e.promote_copy().map(|old| {
                old.token.cancel();
                (old.instance_id, old.prompt_id)
            });
            self.persist(e);
            lost
        } else {
            return false;
        };
        drop(st);
        self.wake.notify_one();
        if let Some(stop) = stop {
            self.stop_prompts([stop]);
        }
        true
    }

    /// The job's attempt ended in failure (`err` says why).
    pub fn fail_attempt(&self, sent: Sent<'_>, err: JobError) {
        let job = self.with_attempt(sent, |e| {
            if e.apply(JobAction::Fail).is_ok() {
                e.attempt = None;
                e.job.finished_at = Some(Utc::now());
                e.job.error = Some(err);
            }
        });
        self.wake.notify_one();
        if let (Some(job), Some(i)) = (
            job.as_ref(),
            job.as_ref().and_then(|j| j.instance_id.clone()),
        ) {
            self.log_finished(&i, job);
        }
    }

    /// The job's attempt ended with an outcome: succeeded with `outputs`
    /// (and `error` when some could not be copied), or failed with `error`.
    /// Returns the job as saved and what its attempt ran (seconds of
    /// ComfyUI's own execution time, else the time since it started), or
    /// `None` when the attempt was taken away meanwhile.
    pub fn finish_attempt(
        &self,
        sent: Sent<'_>,
        ok: bool,
        outputs: Vec<JobOutput>,
        error: Option<JobError>,
        execution_secs: Option<f64>,
    ) -> Option<(Job, Duration, f64)> {
        let mut measure = None;
        let mut loads = None;
        let job = self.with_attempt(sent, |e| {
            loads = Some(e.loads.clone());
            let action = if ok {
                JobAction::Succeed
            } else {
                JobAction::Fail
            };
            if e.apply(action).is_err() {
                return;
            }
            let a = e.attempt.take().expect("checked by with_attempt");
            let ran = execution_secs
                .map(Duration::from_secs_f64)
                .unwrap_or_else(|| a.started.unwrap_or(a.dispatched).elapsed());
            measure = Some((ran, e.work));
            e.job.finished_at = Some(Utc::now());
            e.job.progress.node = None;
            e.job.error = error;
            if ok {
                e.job.outputs = outputs;
            }
        })?;
        let (ran, work) = measure?;
        {
            let mut st = self.lock();
            if ok {
                st.speeds.record(sent.instance, ran.as_secs_f64(), work);
                st.models_ran(sent.instance, loads.as_deref().unwrap_or_default());
            } else if job
                .error
                .as_ref()
                .is_some_and(|e| e.message.to_ascii_lowercase().contains("out of memory"))
            {
                // ComfyUI lets its models go when memory runs out.
                st.models_dropped(sent.instance);
            }
        }
        self.wake.notify_one();
        Some((job, ran, work))
    }

    /// The attempt ran past its time (it was interrupted on its instance):
    /// sent again while timeouts may be retried, else failed. Returns the
    /// job when it failed.
    pub fn time_out_attempt(&self, sent: Sent<'_>, note: String) -> Option<Job> {
        let mut st = self.lock();
        let e = st.current(sent)?;
        if e.job.attempts <= self.options.timeout_retries {
            self.requeue(e, false, Some(note));
            return None;
        }
        e.apply(JobAction::Fail).ok()?;
        e.attempt = None;
        e.job.finished_at = Some(Utc::now());
        e.job.error = Some(JobError::new(note));
        self.persist(e);
        let job = e.job.clone();
        drop(st);
        self.wake.notify_one();
        Some(job)
    }

    /// Puts the job back in the queue when its attempt (still `prompt_id`)
    /// ended without an outcome. `died_running`: its instance died under it.
    pub fn requeue_attempt(&self, sent: Sent<'_>, died_running: bool, note: String) {
        let mut st = self.lock();
        if let Some(e) = st.current(sent) {
            self.requeue(e, died_running, Some(note));
        }
    }

    /// Its prompt, not started on a paused instance, was deleted there: the
    /// job goes back to the app's queue (to run elsewhere, or there after
    /// resume), and the instance's log says so.
    pub fn take_back(&self, sent: Sent<'_>) {
        {
            let mut st = self.lock();
            let Some(e) = st.current(sent) else {
                return;
            };
            let note = format!(
                "taken back from instance \"{}\" when it was paused",
                sent.instance
            );
            self.requeue(e, false, Some(note));
        }
        self.log_taken_back(sent);
    }

    /// The `dispatched` record of this attempt did not become durable: the
    /// job goes back to the queue unsent, saying why, and no job is sent
    /// for [`STORAGE_RETRY`].
    pub fn hold_for_storage(&self, sent: Sent<'_>, why: &str) {
        let job_id = sent.job;
        let mut st = self.lock();
        st.storage_blocked_until = Some(Instant::now() + STORAGE_RETRY);
        let Some(e) = st.current(sent) else {
            return;
        };
        if e.apply(JobAction::Requeue).is_err() {
            return;
        }
        if let Some(a) = e.attempt.take() {
            a.token.cancel();
        }
        e.job.prompt_id = None;
        e.job.attempts = e.job.attempts.saturating_sub(1);
        e.held_for_storage = true;
        e.job.error = Some(JobError::new(format!(
            "Not sent: its record could not be saved ({why}). Free disk space or make the \
             folder writable; it is sent by itself once saving works again."
        )));
        tracing::error!(job = %job_id, "not sent, its record could not be written: {why}");
        self.persist(e);
        drop(st);
        self.wake.notify_one();
    }

    /// A prompt that finished on a lost instance after all: its runner
    /// follows it again to collect the outcome instead of running it twice.
    pub fn collect(&self, sent: Sent<'_>) {
        let job_id = sent.job;
        {
            let mut st = self.lock();
            let Some(a) = st.current(sent).and_then(|e| e.attempt.as_mut()) else {
                return;
            };
            // A fresh token: the old one was cancelled with the runner.
            a.token = self.cancel.child_token();
            a.recalling = false;
        }
        self.effect(Effect::Run {
            job_id: job_id.to_string(),
            mode: super::Mode::Follow,
            durable: None,
        });
    }

    /// Sends the job's attempt to `instance_id`: a new attempt with a new
    /// prompt id, the job `dispatched` (the caller writes its record).
    pub fn dispatch(
        &self,
        st: &mut QueueState,
        job_id: &str,
        instance_id: &str,
        because: &str,
    ) -> bool {
        let Some(e) = st.jobs.get_mut(job_id) else {
            return false;
        };
        if e.apply(JobAction::Place).is_err() {
            return false;
        }
        let prompt_id = uuid::Uuid::new_v4().to_string();
        e.job.instance_id = Some(instance_id.to_string());
        e.job.placed_because = Some(because.to_string());
        e.job.prompt_id = Some(prompt_id.clone());
        e.job.attempts += 1;
        e.job.finished_at = None;
        e.job.waiting = None;
        if e.held_for_storage {
            e.job.error = None;
            e.held_for_storage = false;
        }
        e.attempt = Some(super::Attempt::new(
            instance_id.to_string(),
            prompt_id.clone(),
            &self.cancel,
        ));
        let (loads, keys) = (e.loads.clone(), e.keys.clone());
        let held = st.holds(instance_id).to_vec();
        if let Some(a) = st.jobs.get_mut(job_id).and_then(|e| e.attempt.as_mut()) {
            a.loads = loads
                .iter()
                .map(|(f, _)| f.clone())
                .filter(|f| !held.contains(f))
                .collect();
        }
        st.index_prompt(job_id, &prompt_id);
        st.models_sent(instance_id, &loads, &keys);
        true
    }

    /// Holds a job whose target instance is gone, saying so.
    pub fn hold_missing_target(&self, st: &mut QueueState, job_id: &str, want: &str) {
        let Some(e) = st.jobs.get_mut(job_id) else {
            return;
        };
        if e.apply(JobAction::Hold).is_ok() {
            e.job.error = Some(JobError::new(format!(
                "its instance \"{want}\" no longer exists: retarget or cancel it"
            )));
            self.persist(e);
        }
    }
}

impl Shared {
    /// A copy of the job starts on `here` (see `scheduler::speculate`):
    /// recorded in the job, its record handed to the store now.
    pub fn start_copy(&self, st: &mut QueueState, job_id: &str, here: &str) -> Option<Durable> {
        let e = st.jobs.get_mut(job_id)?;
        let prompt_id = uuid::Uuid::new_v4().to_string();
        e.job.copy = Some(storycore_types::JobCopy {
            instance_id: here.to_string(),
            prompt_id: prompt_id.clone(),
        });
        e.copy = Some(super::Attempt::new(
            here.to_string(),
            prompt_id.clone(),
            &self.cancel,
        ));
        let durable = self.persist_durable(e);
        st.index_prompt(job_id, &prompt_id);
        Some(durable)
    }

    /// Why the queued job waits (`None`: only for room), written when it changed.
    pub fn explain_wait(&self, st: &mut QueueState, job_id: &str, why: Option<String>) {
        if let Some(e) = st.jobs.get_mut(job_id).filter(|e| e.job.waiting != why) {
            e.job.waiting = why;
            self.persist(e);
        }
    }

    /// Hands the job's record to the store now (see [`Self::persist_durable`]).
    pub fn persist_now(&self, st: &mut QueueState, job_id: &str) -> Option<Durable> {
        st.jobs.get_mut(job_id).map(|e| self.persist_durable(e))
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
