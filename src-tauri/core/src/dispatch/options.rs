//! The queue's knobs and the plain values it hands out.

use super::placement::Policy;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use storycore_types::{JobTarget, DEFAULT_JOB_RETENTION_DAYS, DEFAULT_MAX_FINISHED_JOBS};

/// The queue's knobs; the defaults suit a real fleet, tests shorten them.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    pub policy: Policy,
    /// Between `/queue` + `/history` checks of a job in flight (the `/ws`
    /// stream usually reports the end sooner).
    pub poll_interval: Duration,
    /// Per HTTP request of the queue (not the job's own `timeoutMs`).
    pub request_timeout: Duration,
    /// A running job with no progress message for this long is stalled.
    pub stall_after: Option<Duration>,
    /// Times a timed-out job is sent again before it fails (0: fail at once).
    pub timeout_retries: u32,
    /// Sends of one job before it fails (instance errors, take-backs).
    pub max_attempts: u32,
    /// Failed checks in a row after which a job's instance counts as lost.
    pub lost_after_failures: u32,
    /// No new work to an instance for this long after it failed to answer.
    pub cooldown: Duration,
    /// Seconds per unit of work assumed before any instance was measured.
    pub initial_secs_per_unit: f64,
    /// A job that waited this long is placed before longer ones (the bound
    /// on longest-first ordering: no job waits forever).
    pub fifo_after: Duration,
    /// Run the built-in smoke test on each instance when it first becomes
    /// healthy, to seed its cost model (the default policy only).
    pub calibrate: bool,
    /// When nothing waits and a calibrated instance is idle, run there a
    /// copy of a job expected to end much sooner there than where it runs
    /// (see `scheduler::speculate`).
    pub speculate: bool,
    /// Finished jobs kept: for how long, how many.
    pub retention: Retention,
    /// Placement weighs the loads of the models a job needs (off only to
    /// measure what that gains: `model_bench`'s "models ignored").
    pub model_costs: bool,
}

impl Default for DispatchOptions {
    fn default() -> Self {
        Self {
            policy: Policy::EarliestFinish,
            poll_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            stall_after: Some(Duration::from_secs(600)),
            timeout_retries: 0,
            max_attempts: 5,
            lost_after_failures: 3,
            cooldown: Duration::from_secs(5),
            initial_secs_per_unit: 0.5,
            fifo_after: Duration::from_secs(600),
            calibrate: true,
            speculate: true,
            retention: Retention::default(),
            model_costs: true,
        }
    }
}

/// What a job belongs to besides its workflow and target: the project it
/// runs in (a tag the Workflows view filters by) and the folder its outputs
/// are copied to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobContext {
    pub project_id: Option<String>,
    pub output_folder: Option<String>,
    /// The prompt as a gateway client posted it.
    pub gateway: Option<storycore_types::GatewayPrompt>,
    /// Files to upload to the instance before the prompt.
    pub input_files: Vec<storycore_types::InputFile>,
}

impl JobContext {
    /// Jobs run in `project`: tagged with it, outputs copied to its folder.
    pub fn project(project: &storycore_types::Project) -> Self {
        Self {
            project_id: Some(project.id.clone()),
            output_folder: Some(project.outputs_folder()),
            gateway: None,
            input_files: Vec::new(),
        }
    }
}

/// A preview image of a running job (a sampler's latent, a node's
/// progress picture), as its instance sent it. Not kept: a listener that
/// falls behind misses some, as with ComfyUI's own.
#[derive(Debug, Clone)]
pub struct Preview {
    pub job_id: String,
    pub node_id: Option<String>,
    pub display_node_id: Option<String>,
    pub parent_node_id: Option<String>,
    pub real_node_id: Option<String>,
    /// `image/png` or `image/jpeg`.
    pub image_type: String,
    pub image: Arc<[u8]>,
}

/// Previews a slow listener may be behind by before it misses some.
pub(crate) const PREVIEWS_KEPT: usize = 64;

/// A queued job as a pool sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingJob {
    pub target: JobTarget,
    /// The instances its template is pinned to (empty: any).
    pub pins: Vec<String>,
    /// Its expected seconds on a typical instance of the fleet.
    pub secs: f64,
}

/// See [`JobQueue::outlook`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outlook {
    /// Queued jobs, in no order.
    pub waiting: Vec<WaitingJob>,
    /// Per instance: prompts of this app sent there and not finished
    /// (attempts and copies), and their expected seconds left.
    pub in_flight: HashMap<String, (u32, f64)>,
}

/// What opening the queue found, for the user.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    pub notices: Vec<String>,
    /// Jobs left in flight by a previous run, now followed again.
    pub followed: usize,
    pub queued: usize,
}

/// How long finished jobs are kept, and how many (see `retention`).
pub(crate) const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Finished jobs older than this (by when they finished) are deleted.
    pub max_age: Duration,
    /// At most this many finished jobs are kept, the newest.
    pub max_finished: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self::from_settings(DEFAULT_JOB_RETENTION_DAYS, DEFAULT_MAX_FINISHED_JOBS)
    }
}

impl Retention {
    pub fn from_settings(days: u32, max_finished: u32) -> Self {
        Self {
            max_age: DAY * days,
            max_finished: max_finished as usize,
        }
    }
}
