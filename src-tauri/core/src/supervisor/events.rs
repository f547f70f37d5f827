//! What a supervisor tells its owner. The manager maps these onto the
//! instance's lifecycle (`Spawned` -> starting until `/system_stats` answers,
//! `Exited` unasked -> error, `GaveUp` -> error plus an alert).

use super::cause::{ExitCause, ExitInfo};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SupervisorEvent {
    /// A process started; `start` counts the starts of this supervisor from 1.
    #[serde(rename_all = "camelCase")]
    Spawned { pid: u32, start: u32 },
    /// A restart could not even spawn the program.
    #[serde(rename_all = "camelCase")]
    SpawnFailed { message: String },
    /// The process ended. `asked` is false for a crash or any exit nobody asked for.
    #[serde(rename_all = "camelCase")]
    Exited {
        pid: u32,
        exit: ExitInfo,
        asked: bool,
        uptime_ms: u64,
        last_lines: Vec<String>,
        cause: Option<ExitCause>,
        /// `cause.describe()`, or the exit status in words.
        summary: String,
    },
    #[serde(rename_all = "camelCase")]
    RestartScheduled { delay_ms: u64, attempt: u32 },
    /// The start limit is reached: no more automatic restarts.
    #[serde(rename_all = "camelCase")]
    GaveUp {
        starts: usize,
        window_ms: u64,
        last_exit: Option<ExitInfo>,
        cause: Option<ExitCause>,
    },
    /// The supervisor ended after a stop; no process is left.
    Stopped,
    /// The supervisor ended leaving its process running (app exit with "keep running").
    #[serde(rename_all = "camelCase")]
    Detached { pid: u32 },
}

/// Where the process is now (a `watch` value; events tell how it got there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum ProcessState {
    Running {
        pid: u32,
    },
    /// Exited; a restart is scheduled.
    #[serde(rename_all = "camelCase")]
    WaitingToRestart {
        attempt: u32,
    },
    /// Exited and the policy does not restart it (a `restart()` still can).
    Down,
    /// The start limit is reached (a `restart()` is refused too).
    GaveUp,
    /// Stopped or detached: the supervisor has ended.
    Ended,
}
