//! Local ComfyUI processes: the command line and per-instance folders, GPU
//! pinning, the port check, log capture, graceful stop then kill, crash
//! detection with a cause, restart with back-off under a start limit, and the
//! record that lets a next app launch re-attach.
//!
//! One [`SupervisorHandle`] per launched instance; its task owns the process.
//! The manager maps [`SupervisorEvent`]s onto the instance lifecycle; readiness
//! (`/system_stats` answering) is the health monitor's question, not this one's.
//!
//! ComfyUI writes its output straight into its log file, and a guardian
//! process stops what the app launched if the app dies without doing so
//! (unless the user keeps instances running): see `logs` and `guardian`.
//!
//! Stop signal: SIGINT. ComfyUI exits 0 on it and removes its temp folder,
//! while SIGTERM kills it with no cleanup (FACTS section 6). The one trap,
//! SIGINT inherited as ignored from a parent without job control, is closed by
//! resetting SIGINT to its default in the child before exec. After the grace
//! time the whole group gets SIGKILL.

mod cause;
mod error;
mod events;
mod gpu;
mod guardian;
mod handle;
mod layout;
mod logs;
mod policy;
mod port;
mod process;
mod record;
mod spec;
mod task;

pub use cause::{detect_exit_cause, signal_name, ExitCause, ExitInfo};
pub use error::{PortHolder, SupervisorError};
pub use events::{ProcessState, SupervisorEvent};
pub use gpu::{parse_gpu_device, pick_auto_gpu, resolve_gpu, GpuPinning, GpuRequest};
pub use guardian::Guardian;
pub use handle::SupervisorHandle;
pub use layout::{extra_model_paths_yaml, InstanceDirs};
pub use logs::{log_files, InstanceLog, LogBatch, LogFollower, LogLimits};
pub use policy::{
    backoff_delay, RestartDecision, RestartOptions, RestartPolicy, RestartTracker,
    SupervisorOptions,
};
pub use port::{
    check_port, comfyui_version_at, listening_process, port_is_free, suggest_free_port,
};
pub use process::{group_alive, pid_alive, process_state};
pub use record::{find_adoptable, process_cmdline, stop_adopted, ProcessRecord};
pub use spec::{build_launch_spec, listen_address, LaunchContext, LaunchSpec};
