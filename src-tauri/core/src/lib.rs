//! StoryCore Engine's backend parts, as plain Rust (no Tauri): the app's shell,
//! its tests and a future command-line face all use them.
//!
//! | module | owns |
//! | --- | --- |
//! | `model` | validation of configs, field by field |
//! | `store` | the files: instances, health history, backup, export/import, migration |
//! | `client` | one ComfyUI server: HTTP and the `/ws` event stream |
//! | `health` | probe loops, healthy/degraded/unhealthy, alerts |
//! | `manager` | the registry of instances, the lifecycle, the public API |

pub mod client;
pub mod health;
pub mod manager;
pub mod model;
pub mod store;
