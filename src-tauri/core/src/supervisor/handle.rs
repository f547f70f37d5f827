//! The owner's side of a supervisor: launch it, send it commands, read its
//! events, state and log. Dropping the handle stops the process (kill what
//! the app launched unless it was detached).

use super::cause::ExitCause;
use super::cause::ExitInfo;
use super::error::SupervisorError;
use super::events::{ProcessState, SupervisorEvent};
use super::layout::InstanceDirs;
use super::logs::InstanceLog;
use super::policy::SupervisorOptions;
use super::port::check_port;
use super::record::ProcessRecord;
use super::spec::{build_launch_spec, LaunchContext, LaunchSpec};
use super::task::{Command, FirstProcess, SupervisorTask};
use std::time::Duration;
use storycore_types::InstanceConfig;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// One supervised local ComfyUI.
pub struct SupervisorHandle {
    id: String,
    spec: LaunchSpec,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<SupervisorEvent>,
    state: watch::Receiver<ProcessState>,
    log: InstanceLog,
    cancel: CancellationToken,
}

impl SupervisorHandle {
    /// Checks the config and the port, starts the process and its supervising
    /// task. Launch problems come back here; later ones as events.
    pub async fn launch(
        config: &InstanceConfig,
        ctx: &LaunchContext,
        options: SupervisorOptions,
    ) -> Result<Self, SupervisorError> {
        Self::launch_under(config, ctx, options, &CancellationToken::new()).await
    }

    /// As [`Self::launch`], and the process is also stopped when `parent` is
    /// cancelled (the app's shutdown token).
    pub async fn launch_under(
        config: &InstanceConfig,
        ctx: &LaunchContext,
        options: SupervisorOptions,
        parent: &CancellationToken,
    ) -> Result<Self, SupervisorError> {
        let spec = build_launch_spec(config, ctx)?;
        for warning in &spec.warnings {
            tracing::warn!("instance {}: {warning}", spec.id);
        }
        check_port(&spec.id, &spec.listen, spec.port).await?;
        Self::supervise(spec, ctx, options, parent, FirstProcess::Spawn)
    }

    /// Supervises a process an earlier run of the app left running (found by
    /// `find_adoptable`): its exit is noticed, it is restarted under the
    /// policy, stopped, detached, exactly like one launched now. Its output
    /// still goes to its log file, which is read from its current end.
    pub fn adopt(
        config: &InstanceConfig,
        ctx: &LaunchContext,
        options: SupervisorOptions,
        record: &ProcessRecord,
    ) -> Result<Self, SupervisorError> {
        let spec = build_launch_spec(config, ctx)?;
        Self::supervise(
            spec,
            ctx,
            options,
            &CancellationToken::new(),
            FirstProcess::Adopt(record.pid),
        )
    }

    fn supervise(
        spec: LaunchSpec,
        ctx: &LaunchContext,
        options: SupervisorOptions,
        parent: &CancellationToken,
        first: FirstProcess,
    ) -> Result<Self, SupervisorError> {
        let log_path = spec.dirs.log_file();
        let log = InstanceLog::open(&log_path, options.log)
            .map_err(|e| SupervisorError::io(&spec.id, "open the log", &log_path, e))?;
        let (events, _) = broadcast::channel(256);
        let (commands, commands_rx) = mpsc::channel(16);
        let cancel = parent.child_token();
        let (task, state) = SupervisorTask::start(
            spec.clone(),
            options,
            log.clone(),
            events.clone(),
            commands_rx,
            cancel.clone(),
            ctx.guardian.clone(),
            first,
        )?;
        tokio::spawn(task.run());
        Ok(Self {
            id: spec.id.clone(),
            spec,
            commands,
            events,
            state,
            log,
            cancel,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The command line, folders and GPU pin used.
    pub fn spec(&self) -> &LaunchSpec {
        &self.spec
    }

    pub fn dirs(&self) -> &InstanceDirs {
        &self.spec.dirs
    }

    /// Events from now on (subscribe before acting to miss none).
    pub fn subscribe(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.events.subscribe()
    }

    pub fn state(&self) -> ProcessState {
        *self.state.borrow()
    }

    pub fn watch_state(&self) -> watch::Receiver<ProcessState> {
        self.state.clone()
    }

    /// The pid of the running process, if one runs.
    pub fn pid(&self) -> Option<u32> {
        match self.state() {
            ProcessState::Running { pid } => Some(pid),
            _ => None,
        }
    }

    /// The process output: tail for the UI, files and export.
    pub fn log(&self) -> &InstanceLog {
        &self.log
    }

    /// Stops the process (SIGINT, grace, SIGKILL of the group) and ends the
    /// supervisor. Returns how the process ended, None if none was running.
    pub async fn stop(&self) -> Result<Option<ExitInfo>, SupervisorError> {
        self.ask(|reply| Command::Stop { reply }).await
    }

    /// Stops the running process (if any) and starts a new one now, under the
    /// start limit. Returns the new pid.
    pub async fn restart(&self) -> Result<u32, SupervisorError> {
        self.ask(|reply| Command::Restart { reply }).await?
    }

    /// Stops the running process as failed (it never answered within its
    /// start timeout, or it hung); the restart policy then decides, as after
    /// a crash. A zero `grace` kills at once. False when none was running.
    pub async fn fail(&self, cause: ExitCause, grace: Duration) -> Result<bool, SupervisorError> {
        self.ask(|reply| Command::Fail {
            cause,
            grace,
            reply,
        })
        .await
    }

    /// Ends the supervisor and leaves the process running (its process.json
    /// stays, for the next launch to re-attach). Returns its pid.
    pub async fn detach(&self) -> Result<Option<u32>, SupervisorError> {
        self.ask(|reply| Command::Detach { reply }).await
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SupervisorError> {
        let gone = || SupervisorError::Gone {
            id: self.id.clone(),
        };
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }
}

impl Drop for SupervisorHandle {
    fn drop(&mut self) {
        // The task stops the process when it sees this (and kills it on its own
        // drop if the runtime goes away first).
        self.cancel.cancel();
    }
}
