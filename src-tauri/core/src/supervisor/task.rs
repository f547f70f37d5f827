//! The task that owns one process: it reaps it, restarts it under the policy,
//! and obeys the handle's commands. Nothing else touches the process.

use super::cause::{detect_exit_cause, ExitCause, ExitInfo};
use super::error::SupervisorError;
use super::events::{ProcessState, SupervisorEvent};
use super::guardian::Guardian;
use super::logs::InstanceLog;
use super::policy::SupervisorOptions;
use super::policy::{RestartDecision, RestartTracker};
use super::process::{adopt_process, spawn_process, SpawnedProcess};
use super::record::{process_cmdline, ProcessRecord};
use super::spec::LaunchSpec;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Lines of log quoted in an `Exited` event.
const LAST_LINES: usize = 20;

pub(crate) enum Command {
    Stop {
        reply: oneshot::Sender<Option<ExitInfo>>,
    },
    Restart {
        reply: oneshot::Sender<Result<u32, SupervisorError>>,
    },
    Detach {
        reply: oneshot::Sender<Option<u32>>,
    },
    /// Stop the process as failed (it never answered, or hung): the restart
    /// policy then applies as after a crash. `grace` zero kills at once.
    Fail {
        cause: ExitCause,
        grace: std::time::Duration,
        reply: oneshot::Sender<bool>,
    },
}

pub(crate) struct SupervisorTask {
    spec: LaunchSpec,
    options: SupervisorOptions,
    log: InstanceLog,
    events: broadcast::Sender<SupervisorEvent>,
    state: watch::Sender<ProcessState>,
    commands: mpsc::Receiver<Command>,
    cancel: CancellationToken,
    tracker: RestartTracker,
    process: Option<SpawnedProcess>,
    starts: u32,
    restart_at: Option<tokio::time::Instant>,
    last_exit: Option<(ExitInfo, Option<ExitCause>)>,
    guardian: Option<Arc<Guardian>>,
}

/// How the task gets its first process.
pub(crate) enum FirstProcess {
    Spawn,
    /// A process an earlier run of the app left running (pid = pgid).
    Adopt(u32),
}

impl SupervisorTask {
    /// Spawns (or adopts) the first process; an error here means nothing was
    /// started.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        spec: LaunchSpec,
        options: SupervisorOptions,
        log: InstanceLog,
        events: broadcast::Sender<SupervisorEvent>,
        commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
        guardian: Option<Arc<Guardian>>,
        first: FirstProcess,
    ) -> Result<(Self, watch::Receiver<ProcessState>), SupervisorError> {
        let (state, state_rx) = watch::channel(ProcessState::Down);
        let mut task = Self {
            tracker: RestartTracker::new(options.restart),
            spec,
            options,
            log,
            events,
            state,
            commands,
            cancel,
            process: None,
            starts: 0,
            restart_at: None,
            last_exit: None,
            guardian,
        };
        match first {
            FirstProcess::Spawn => {
                task.spawn()?;
            }
            FirstProcess::Adopt(pid) => task.adopt(pid),
        }
        Ok((task, state_rx))
    }

    fn emit(&self, event: SupervisorEvent) {
        // No subscriber is fine: the state watch still tells.
        let _ = self.events.send(event);
    }

    fn spawn(&mut self) -> Result<u32, SupervisorError> {
        self.tracker.record_start(Instant::now());
        self.starts += 1;
        let process = spawn_process(&self.spec, &self.log)?;
        let pid = process.pid;
        let mut cmdline = vec![self.spec.program.to_string_lossy().into_owned()];
        cmdline.extend(self.spec.args.iter().cloned());
        // Record what /proc will show, so a re-attach can recognise the process.
        let cmdline = process_cmdline(pid)
            .filter(|c| !c.is_empty())
            .unwrap_or(cmdline);
        let record = ProcessRecord {
            pid,
            pgid: pid,
            host: self.spec.listen.clone(),
            port: self.spec.port,
            cmdline,
            started_at: chrono::Utc::now(),
        };
        if let Err(e) = record.save(&self.spec.dirs) {
            tracing::warn!("{e}");
        }
        if let Some(g) = &self.guardian {
            g.watch(pid);
        }
        self.process = Some(process);
        self.restart_at = None;
        self.state.send_replace(ProcessState::Running { pid });
        self.emit(SupervisorEvent::Spawned {
            pid,
            start: self.starts,
        });
        Ok(pid)
    }

    /// Takes over a running process; counts as its first start.
    fn adopt(&mut self, pid: u32) {
        self.tracker.record_start(Instant::now());
        self.starts += 1;
        self.process = Some(adopt_process(pid, &self.log));
        if let Some(g) = &self.guardian {
            g.watch(pid);
        }
        self.state.send_replace(ProcessState::Running { pid });
        self.emit(SupervisorEvent::Spawned {
            pid,
            start: self.starts,
        });
    }

    fn forget_group(&self, pid: u32) {
        if let Some(g) = &self.guardian {
            g.unwatch(pid);
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            let restart_at = self.restart_at;
            let exited = async {
                match self.process.as_mut() {
                    Some(p) => p.wait().await,
                    None => std::future::pending().await,
                }
            };
            let timer = async {
                match restart_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    self.stop_process(true).await;
                    break;
                }
                exit = exited => self.on_unasked_exit(exit).await,
                () = timer => self.automatic_restart(),
                command = self.commands.recv() => match command {
                    // The handle is gone: same as a cancel.
                    None => {
                        self.stop_process(true).await;
                        break;
                    }
                    Some(Command::Stop { reply }) => {
                        let exit = self.stop_process(true).await;
                        let _ = reply.send(exit);
                        break;
                    }
                    Some(Command::Restart { reply }) => {
                        let _ = reply.send(self.asked_restart().await);
                    }
                    Some(Command::Fail { cause, grace, reply }) => {
                        let _ = reply.send(self.fail_process(cause, grace).await);
                    }
                    Some(Command::Detach { reply }) => {
                        // The guardian keeps it listed: whether it survives the
                        // app is the "keep running" setting's call.
                        let pid = self.process.take().map(SpawnedProcess::release);
                        self.state.send_replace(ProcessState::Ended);
                        self.emit(SupervisorEvent::Detached { pid: pid.unwrap_or_default() });
                        let _ = reply.send(pid);
                        return;
                    }
                },
            }
        }
        self.state.send_replace(ProcessState::Ended);
        self.emit(SupervisorEvent::Stopped);
    }

    /// Stops the current process, if any, and reports its exit as asked for.
    async fn stop_process(&mut self, forget_record: bool) -> Option<ExitInfo> {
        self.restart_at = None;
        let mut process = self.process.take()?;
        let exit = process.stop(self.options.stop_grace).await;
        self.forget_group(process.pid);
        if forget_record {
            ProcessRecord::remove(&self.spec.dirs);
        }
        self.report_exit(&process, exit, true, None);
        Some(exit)
    }

    /// Stops the process as a failure the app detected; the restart policy
    /// decides what follows. False when no process was running.
    async fn fail_process(&mut self, cause: ExitCause, grace: std::time::Duration) -> bool {
        let Some(mut process) = self.process.take() else {
            return false;
        };
        self.restart_at = None;
        let exit = process.stop(grace).await;
        self.forget_group(process.pid);
        ProcessRecord::remove(&self.spec.dirs);
        self.report_exit(&process, exit, false, Some(cause));
        self.decide(false, process.started.elapsed());
        true
    }

    fn report_exit(
        &mut self,
        process: &SpawnedProcess,
        exit: ExitInfo,
        asked: bool,
        known: Option<ExitCause>,
    ) {
        let last_lines = self.log.tail(LAST_LINES);
        let cause = match known {
            Some(c) => Some(c),
            None if asked => None,
            None => detect_exit_cause(&exit, &last_lines),
        };
        let summary = match &cause {
            Some(c) => format!("{exit}: {}", c.describe()),
            None => exit.to_string(),
        };
        self.last_exit = Some((exit, cause.clone()));
        self.emit(SupervisorEvent::Exited {
            pid: process.pid,
            exit,
            asked,
            uptime_ms: process.started.elapsed().as_millis() as u64,
            last_lines,
            cause,
            summary,
        });
    }

    async fn on_unasked_exit(&mut self, exit: ExitInfo) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        ProcessRecord::remove(&self.spec.dirs);
        // Leftovers of the group go with their leader; the tail must be complete.
        super::process::signal_group(process.pid, libc::SIGKILL);
        self.forget_group(process.pid);
        process.drain_output().await;
        self.report_exit(&process, exit, false, None);
        let uptime = process.started.elapsed();
        self.decide(exit.success(), uptime);
    }

    fn decide(&mut self, clean: bool, uptime: std::time::Duration) {
        match self.tracker.after_exit(clean, uptime, Instant::now()) {
            RestartDecision::RestartIn(delay) => {
                let attempt = self.starts;
                self.restart_at = Some(tokio::time::Instant::now() + delay);
                self.state
                    .send_replace(ProcessState::WaitingToRestart { attempt });
                self.emit(SupervisorEvent::RestartScheduled {
                    delay_ms: delay.as_millis() as u64,
                    attempt,
                });
            }
            RestartDecision::StayDown => {
                self.state.send_replace(ProcessState::Down);
            }
            RestartDecision::GiveUp => self.give_up(),
        }
    }

    fn give_up(&mut self) {
        self.restart_at = None;
        self.state.send_replace(ProcessState::GaveUp);
        let window = self.tracker.options().start_window;
        let starts = self.tracker.starts_in_window(Instant::now());
        let (last_exit, cause) = match self.last_exit.clone() {
            Some((e, c)) => (Some(e), c),
            None => (None, None),
        };
        self.emit(SupervisorEvent::GaveUp {
            starts,
            window_ms: window.as_millis() as u64,
            last_exit,
            cause,
        });
    }

    fn automatic_restart(&mut self) {
        self.restart_at = None;
        if !self.tracker.may_start(Instant::now()) {
            return self.give_up();
        }
        if let Err(e) = self.spawn() {
            self.emit(SupervisorEvent::SpawnFailed {
                message: e.to_string(),
            });
            self.decide(false, std::time::Duration::ZERO);
        }
    }

    async fn asked_restart(&mut self) -> Result<u32, SupervisorError> {
        self.stop_process(false).await;
        if !self.tracker.may_start(Instant::now()) {
            self.give_up();
            return Err(SupervisorError::StartLimit {
                id: self.spec.id.clone(),
                starts: self.tracker.starts_in_window(Instant::now()),
            });
        }
        self.spawn().inspect_err(|e| {
            self.emit(SupervisorEvent::SpawnFailed {
                message: e.to_string(),
            });
            self.state.send_replace(ProcessState::Down);
        })
    }
}

impl Drop for SupervisorTask {
    fn drop(&mut self) {
        // The runtime is shutting down (or the task panicked) while a process
        // runs: kill it rather than leave it behind.
        if let Some(process) = self.process.as_mut() {
            process.kill_now();
            ProcessRecord::remove(&self.spec.dirs);
            if let Some(g) = &self.guardian {
                g.unwatch(process.pid);
            }
        }
    }
}
