//! Health monitoring of instances: a pure state machine (`policy`), the alert
//! latches and texts (`alerts`), one probe (`probe`) and the per-instance task
//! that runs them (`monitor`).
//!
//! Two cadences, as in the seed: health probes (`interval`, 30 s; 1 s until
//! the server first answers) move the status, and resource samples
//! (`resource_interval`, 5 s) only refresh RAM/VRAM/queue figures and resource
//! alerts. A health probe reads `/system_stats`; it reads `/queue` as well
//! only when that is older than `resource_interval` (or when asked to check
//! now), so probing every second costs one request, not two. A failed resource sample is not counted as a failure: the status
//! changes at the health probe's pace, so one cadence decides it.
//!
//! Events go out on the app's broadcast: `HealthChanged` after every health
//! probe and after resource samples whose figures moved, then the alerts that
//! observation raised, in that order.

mod alerts;
mod monitor;
mod policy;
mod probe;

pub use alerts::describe as describe_alert;
pub use monitor::{HealthError, HealthHandle, HealthMonitor};
pub use policy::{HealthPolicy, HealthState, Observation, ProbeOutcome, ResourceSample};
pub use probe::{active_workflows, probe, resource_sample};
