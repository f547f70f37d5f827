//! Validation of instance configs, field by field. Pure: it reads the file system
//! only to check the paths of instances this app launches on this machine.
//!
//! Every check reports in words a user understands, names the field as it is
//! spelled in `comfyui_instances.json` (camelCase, `envVars.NAME`, `extraArgs[2]`),
//! and says what to do. All problems come back at once, never the first only.

mod host;
mod launch;
mod paths;
mod project;
mod text;
mod validate;

pub use host::{is_local_host, machine_key, same_machine};
pub use launch::{refused_env_name, CODE_PATH_VARS};
pub use project::check_project;
pub use text::{check_text, is_invisible, quote, TextRules, QUOTE_MAX};
pub use validate::{
    validate_config, validate_entries, validate_file, validate_id, Checks, InstanceProblems,
};
