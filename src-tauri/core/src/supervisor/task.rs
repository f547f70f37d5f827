//! The task that owns one process: it reaps it, restarts it under the policy,
//! and obeys the handle's commands. Nothing else touches the process.

use super::cause::{detect_exit_cause, ExitCause, ExitInfo};
use super::error::SupervisorError;
use super::events::{ProcessState, SupervisorEvent};
use super::handle::SupervisorOptions;
use super::logs::InstanceLog;
use super::policy::{RestartDecision, RestartTracker};
use super::process::{spawn_process, SpawnedProcess};
use super::record::{process_cmdline, ProcessRecord};
use super::spec::LaunchSpec;
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
}

impl SupervisorTask {
    /// Spawns the first process; an error here means nothing was started.
    pub(crate) fn start(
        spec: LaunchSpec,
        options: SupervisorOptions,
        log: InstanceLog,
        events: broadcast::Sender<SupervisorEvent>,
        commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
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
        };
        task.spawn()?;
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
        self.process = Some(process);
        self.restart_at = None;
        self.state.send_replace(ProcessState::Running { pid });
        self.emit(SupervisorEvent::Spawned {
            pid,
            start: self.starts,
        });
        Ok(pid)
    }

    pub(crate) async fn run(mut self) {
        loop {
            let restart_at = self.restart_at;
            let exited = async {
                match self.process.as_mut() {
                    Some(p) => p.child.wait().await,
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
                status = exited => {
                    let exit = match status {
                        Ok(s) => ExitInfo::from_status(s),
                        Err(_) => ExitInfo { code: None, signal: None },
                    };
                    self.on_unasked_exit(exit).await;
                }
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
                    Some(Command::Detach { reply }) => {
                        let pid = self.process.take().map(|p| p.pid);
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
        if forget_record {
            ProcessRecord::remove(&self.spec.dirs);
        }
        self.report_exit(&process, exit, true);
        Some(exit)
    }

    fn report_exit(&mut self, process: &SpawnedProcess, exit: ExitInfo, asked: bool) {
        let last_lines = self.log.tail(LAST_LINES);
        let cause = if asked {
            None
        } else {
            detect_exit_cause(&exit, &last_lines)
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
        process.drain_output().await;
        self.report_exit(&process, exit, false);
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
        }
    }
}
