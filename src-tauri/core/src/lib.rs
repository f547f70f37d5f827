//! StoryCore Engine's backend parts, as plain Rust (no Tauri): the app's shell,
//! its tests and a future command-line face all use them.
//!
//! | module | owns |
//! | --- | --- |
//! | `model` | validation of configs, field by field |
//! | `store` | the files: instances, health history, backup, export/import, migration |
//! | `client` | one ComfyUI server: HTTP and the `/ws` event stream |
//! | `health` | probe loops, healthy/degraded/unhealthy, alerts |
//! | `dispatch` | the durable job queue: placement, failover, progress, outputs, templates |
//! | `manager` | the registry of instances, the lifecycle, the public API |
//! | `supervisor` | one local ComfyUI process: launch spec, isolation, logs, stop, restart |
//! | `pool` | pools: members started when work waits, stopped when idle, within memory |
//! | `telemetry` | GPUs (NVML) and process trees (sysinfo): CPU, RAM, VRAM |
//! | `secrets` | API keys in the OS keyring (or, by choice, a 0600 file) |
//! | `privacy` | files 0600 and folders 0700; the umask ComfyUI gets back |
//! | `settings` | `settings.json`, its rules, what each part takes from it |
//! | `paths` | the config, data and log folders |
//! | `events` | the one event bus every part publishes on |
//! | `engine` | the composition root: opens, begins and stops every part in one order |

pub mod client;
pub mod dispatch;
pub mod engine;
pub mod events;
pub mod gateway;
pub mod health;
pub mod manager;
pub mod model;
pub mod paths;
pub mod pool;
pub mod privacy;
pub mod projects;
pub mod secrets;
pub mod settings;
pub mod store;
pub mod supervisor;
pub mod telemetry;
