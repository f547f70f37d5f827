//! The entry points: one config against the others, and a whole file.

use super::host::{check_host, is_local_host, same_machine};
use super::launch::{check_env_vars, check_extra_args, check_gpu_device};
use super::paths::{check_local_path, check_path_text, PathKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use storycore_types::{FieldError, InstanceConfig, InstancesFile};

const MAX_ID_LEN: usize = 64;
const MAX_NAME_LEN: usize = 100;
const MAX_DESCRIPTION_LEN: usize = 2000;
const MAX_CONCURRENT_RANGE: std::ops::RangeInclusive<u32> = 1..=64;
const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 1_000..=86_400_000;

/// Checks `c` alone and against `others`, and returns every problem at once.
///
/// An entry of `others` with the same id as `c` is taken as `c`'s stored
/// version (the caller is updating it) and ignored; whether an id is free is
/// the caller's question (see [`validate_file`] for whole files).
pub fn validate_config(
    c: &InstanceConfig,
    others: &[InstanceConfig],
) -> Result<(), Vec<FieldError>> {
    let errors = check_config(c, others.iter().filter(|o| o.id != c.id));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The problems of one instance of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceProblems {
    /// Position in the file's `instances`, since an id may be missing or repeated.
    pub index: usize,
    pub id: String,
    pub errors: Vec<FieldError>,
}

/// Checks every instance of a file against all the others, duplicate ids
/// included. Returns only the instances that have problems.
pub fn validate_file(f: &InstancesFile) -> Vec<InstanceProblems> {
    let mut first_index_of_id: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for (index, c) in f.instances.iter().enumerate() {
        let others = f
            .instances
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != index)
            .map(|(_, o)| o);
        let mut errors = check_config(c, others);
        match first_index_of_id.get(c.id.as_str()) {
            Some(first) => errors.push(FieldError::new(
                "id",
                format!(
                    "The id '{}' is already used by instance number {} of the file: give each instance its own id.",
                    c.id,
                    first + 1
                ),
            )),
            None => {
                first_index_of_id.insert(&c.id, index);
            }
        }
        if !errors.is_empty() {
            out.push(InstanceProblems {
                index,
                id: c.id.clone(),
                errors,
            });
        }
    }
    out
}

/// Checks an id alone. Ids end up in file names (`instance_{id}_health.json`),
/// so this also keeps them from naming a path.
pub fn validate_id(id: &str) -> Result<(), FieldError> {
    let problem = |m: String| Err(FieldError::new("id", m));
    if id.is_empty() {
        return problem("The id is empty: enter one, for example instance_002.".into());
    }
    if id.chars().count() > MAX_ID_LEN {
        return problem(format!(
            "The id is {} characters long; use at most {MAX_ID_LEN}.",
            id.chars().count()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return problem(format!(
            "The id contains {c:?}: use only letters, digits, '_' and '-'."
        ));
    }
    Ok(())
}

fn check_config<'a>(
    c: &InstanceConfig,
    others: impl Iterator<Item = &'a InstanceConfig> + Clone,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Err(e) = validate_id(&c.id) {
        errors.push(e);
    }
    check_name(c, others.clone(), &mut errors);
    check_port(c, others, &mut errors);
    if let Some(h) = &c.host {
        check_host(h, &mut errors);
    }
    if let Some(d) = &c.gpu_device {
        check_gpu_device(d, &mut errors);
    }
    if let Some(vars) = &c.env_vars {
        check_env_vars(vars, &mut errors);
    }
    if let Some(args) = &c.extra_args {
        check_extra_args(args, &mut errors);
    }
    check_paths(c, &mut errors);
    check_numbers(c, &mut errors);
    check_texts(c, &mut errors);
    errors
}

fn check_name<'a>(
    c: &InstanceConfig,
    mut others: impl Iterator<Item = &'a InstanceConfig>,
    errors: &mut Vec<FieldError>,
) {
    let name = c.name.trim();
    if name.is_empty() {
        errors.push(FieldError::new("name", "The name is required: enter one."));
        return;
    }
    if name.contains('\0') {
        errors.push(FieldError::new(
            "name",
            "The name contains a NUL character: retype it.",
        ));
    }
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        errors.push(FieldError::new(
            "name",
            format!("The name is {len} characters long; shorten it to {MAX_NAME_LEN} at most."),
        ));
    }
    let lower = name.to_lowercase();
    if let Some(o) = others.find(|o| o.name.trim().to_lowercase() == lower) {
        errors.push(FieldError::new(
            "name",
            format!(
                "The name '{name}' is already used by instance '{}': choose another name.",
                o.id
            ),
        ));
    }
}

fn check_port<'a>(
    c: &InstanceConfig,
    mut others: impl Iterator<Item = &'a InstanceConfig>,
    errors: &mut Vec<FieldError>,
) {
    if !(1..=65535).contains(&c.port) {
        errors.push(FieldError::new(
            "port",
            format!("The port {} is out of range: use a number from 1 to 65535 (ComfyUI's default is 8188).", c.port),
        ));
        return;
    }
    if let Some(o) = others.find(|o| o.port == c.port && same_machine(o.host(), c.host())) {
        errors.push(FieldError::new(
            "port",
            format!(
                "Port {} on {} is already used by instance '{}' ({}): choose another port.",
                c.port,
                c.host(),
                o.name,
                o.id
            ),
        ));
    }
}

fn check_paths(c: &InstanceConfig, errors: &mut Vec<FieldError>) {
    let launched_here = c.is_local_launch() && is_local_host(c.host());
    let fields = [
        (
            "comfyuiPath",
            &c.comfyui_path,
            PathKind::Folder {
                marker: Some("main.py"),
            },
        ),
        (
            "customNodesPath",
            &c.custom_nodes_path,
            PathKind::Folder { marker: None },
        ),
        ("pythonPath", &c.python_path, PathKind::Executable),
    ];
    for (field, value, kind) in fields {
        let Some(value) = value else { continue };
        let before = errors.len();
        check_path_text(field, value, errors);
        if launched_here && errors.len() == before {
            check_local_path(field, value, kind, errors);
        }
    }
}

fn check_numbers(c: &InstanceConfig, errors: &mut Vec<FieldError>) {
    if let Some(n) = c.max_concurrent_workflows {
        if !MAX_CONCURRENT_RANGE.contains(&n) {
            errors.push(FieldError::new(
                "maxConcurrentWorkflows",
                format!("{n} workflows at once is out of range: use a number from 1 to 64."),
            ));
        }
    }
    if let Some(ms) = c.timeout_ms {
        if !TIMEOUT_MS_RANGE.contains(&ms) {
            errors.push(FieldError::new(
                "timeoutMs",
                format!("A timeout of {ms} ms is out of range: use from 1000 (1 second) to 86400000 (24 hours)."),
            ));
        }
    }
    if let Some(ms) = c.start_timeout_ms {
        if !TIMEOUT_MS_RANGE.contains(&ms) {
            errors.push(FieldError::new(
                "startTimeoutMs",
                format!("A start timeout of {ms} ms is out of range: use from 1000 (1 second) to 86400000 (24 hours)."),
            ));
        }
    }
}

fn check_texts(c: &InstanceConfig, errors: &mut Vec<FieldError>) {
    if let Some(d) = &c.description {
        let len = d.chars().count();
        if len > MAX_DESCRIPTION_LEN {
            errors.push(FieldError::new(
                "description",
                format!("The description is {len} characters long; shorten it to {MAX_DESCRIPTION_LEN} at most."),
            ));
        }
        if d.contains('\0') {
            errors.push(FieldError::new(
                "description",
                "The description contains a NUL character: remove it.",
            ));
        }
    }
    if let Some(k) = &c.api_key_ref {
        if k.contains('\0') || k.trim().is_empty() {
            errors.push(FieldError::new(
                "apiKeyRef",
                "The key reference is empty or contains a NUL character: set the API key again.",
            ));
        }
    }
}
