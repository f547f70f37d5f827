//! The entry points: one config against the others, and a whole file. One
//! validation serves create, update, import and load; it is linear in the
//! number of instances (each clash is a lookup in an index, not a scan).

use super::host::{check_host, is_local_host, machine_key};
use super::launch::{check_env_vars, check_extra_args, check_gpu_device};
use super::paths::{check_local_path, check_path_text, PathKind};
use super::text::{check_text, quote, TextRules};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use storycore_types::{FieldError, InstanceConfig, InstancesFile};

const MAX_ID_LEN: usize = 64;
const MAX_NAME_LEN: usize = 100;
const MAX_DESCRIPTION_LEN: usize = 2000;
const MAX_KEY_REF_LEN: usize = 200;
const MAX_CONCURRENT_RANGE: std::ops::RangeInclusive<u32> = 1..=64;
const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 1_000..=86_400_000;

/// How far the validation looks beyond the config's own text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Everything, the folders and interpreter of a local instance on disk
    /// included: what the user enters now (create, update, import).
    Full,
    /// All but what is on disk: a stored instance stays in the list while its
    /// ComfyUI folder is on a drive that is not mounted (load).
    Stored,
}

/// Checks `c` alone and against `others` (the other instances: one with `c`'s
/// id is a clash, so an update passes the fleet without the stored `c`), and
/// returns every problem at once.
pub fn validate_config(
    c: &InstanceConfig,
    others: &[InstanceConfig],
) -> Result<(), Vec<FieldError>> {
    let index = FleetIndex::new(others.iter());
    let mut errors = check_config(c, &index, None, Checks::Full);
    if let Some(o) = index.first(&index.ids, c.id.as_str(), None) {
        errors.push(FieldError::new(
            "id",
            format!(
                "The id {} is already used by instance {}: choose another id.",
                quote(&c.id),
                quote(&o.name)
            ),
        ));
    }
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
/// included (the first of an id keeps it). Returns only the instances that
/// have problems.
pub fn validate_file(f: &InstancesFile, checks: Checks) -> Vec<InstanceProblems> {
    validate_entries(f, checks, |_| true)
}

/// [`validate_file`] for the instances at the positions `wanted` accepts
/// (the others are still what they are compared with).
pub fn validate_entries(
    f: &InstancesFile,
    checks: Checks,
    wanted: impl Fn(usize) -> bool,
) -> Vec<InstanceProblems> {
    let index = FleetIndex::new(f.instances.iter());
    let mut out = Vec::new();
    for (i, c) in f.instances.iter().enumerate() {
        if !wanted(i) {
            continue;
        }
        let mut errors = check_config(c, &index, Some(i), checks);
        let first = index.ids.get(c.id.as_str()).and_then(|v| v.first());
        if let Some(&first) = first.filter(|&&first| first != i) {
            errors.push(FieldError::new(
                "id",
                format!(
                    "The id {} is already used by instance number {} of the file: give each instance its own id.",
                    quote(&c.id),
                    first + 1
                ),
            ));
        }
        if !errors.is_empty() {
            out.push(InstanceProblems {
                index: i,
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
            "The id {} contains {}: use only letters, digits, '_' and '-'.",
            quote(id),
            quote(&c.to_string())
        ));
    }
    Ok(())
}

/// The instances a config is compared with, by id, by name and by port on
/// one machine.
struct FleetIndex<'a> {
    configs: Vec<&'a InstanceConfig>,
    ids: HashMap<&'a str, Vec<usize>>,
    names: HashMap<String, Vec<usize>>,
    ports: HashMap<(String, u32), Vec<usize>>,
}

/// Names compare as the user sees them: case and surrounding spaces aside.
fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

impl<'a> FleetIndex<'a> {
    fn new(configs: impl Iterator<Item = &'a InstanceConfig>) -> Self {
        let mut index = Self {
            configs: Vec::new(),
            ids: HashMap::new(),
            names: HashMap::new(),
            ports: HashMap::new(),
        };
        for (i, c) in configs.enumerate() {
            index.configs.push(c);
            index.ids.entry(c.id.as_str()).or_default().push(i);
            index.names.entry(name_key(&c.name)).or_default().push(i);
            index
                .ports
                .entry((machine_key(c.host()), c.port))
                .or_default()
                .push(i);
        }
        index
    }

    /// The first instance under `key` that is not the one at `except`.
    fn first<K, Q>(
        &self,
        map: &HashMap<K, Vec<usize>>,
        key: &Q,
        except: Option<usize>,
    ) -> Option<&'a InstanceConfig>
    where
        K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        map.get(key)?
            .iter()
            .find(|i| Some(**i) != except)
            .map(|i| self.configs[*i])
    }
}

fn check_config(
    c: &InstanceConfig,
    index: &FleetIndex<'_>,
    me: Option<usize>,
    checks: Checks,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Err(e) = validate_id(&c.id) {
        errors.push(e);
    }
    check_name(c, index, me, &mut errors);
    check_port(c, index, me, &mut errors);
    if let Some(h) = &c.host {
        check_host(h, &mut errors);
    }
    if let Some(d) = &c.gpu_device {
        check_gpu_device(d, &mut errors);
    }
    if let Some(vars) = &c.env_vars {
        check_env_vars(vars, c.allow_risky_env_vars == Some(true), &mut errors);
    }
    if let Some(secret) = &c.secret_env_vars {
        super::launch::check_secret_env_vars(
            secret,
            c.env_vars.as_ref(),
            c.allow_risky_env_vars == Some(true),
            &mut errors,
        );
    }
    if let Some(args) = &c.extra_args {
        check_extra_args(args, &mut errors);
    }
    check_paths(c, checks, &mut errors);
    check_numbers(c, &mut errors);
    check_texts(c, &mut errors);
    errors
}

fn check_name(
    c: &InstanceConfig,
    index: &FleetIndex<'_>,
    me: Option<usize>,
    errors: &mut Vec<FieldError>,
) {
    let before = errors.len();
    let rules = TextRules {
        max_chars: MAX_NAME_LEN,
        multiline: false,
        required: true,
    };
    check_text("name", "The name", &c.name, rules, errors);
    if errors.len() > before {
        return;
    }
    let name = c.name.trim();
    if let Some(o) = index.first(&index.names, &name_key(name), me) {
        errors.push(FieldError::new(
            "name",
            format!(
                "The name {} is already used by instance {}: choose another name.",
                quote(name),
                quote(&o.id)
            ),
        ));
    }
}

fn check_port(
    c: &InstanceConfig,
    index: &FleetIndex<'_>,
    me: Option<usize>,
    errors: &mut Vec<FieldError>,
) {
    if !(1..=65535).contains(&c.port) {
        errors.push(FieldError::new(
            "port",
            format!("The port {} is out of range: use a number from 1 to 65535 (ComfyUI's default is 8188).", c.port),
        ));
        return;
    }
    let key = (machine_key(c.host()), c.port);
    if let Some(o) = index.first(&index.ports, &key, me) {
        errors.push(FieldError::new(
            "port",
            format!(
                "Port {} on {} is already used by instance {} ({}): choose another port.",
                c.port,
                quote(c.host()),
                quote(&o.name),
                quote(&o.id)
            ),
        ));
    }
}

fn check_paths(c: &InstanceConfig, checks: Checks, errors: &mut Vec<FieldError>) {
    let launched_here = checks == Checks::Full && c.is_local_launch() && is_local_host(c.host());
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
    if let Some(ca) = &c.ca_file {
        let before = errors.len();
        check_path_text("caFile", ca, errors);
        if c.scheme() != storycore_types::Scheme::Https {
            errors.push(FieldError::new(
                "caFile",
                "A CA file is only used over https: set the scheme to https, or clear the CA file.",
            ));
        } else if checks == Checks::Full && errors.len() == before {
            check_ca_file(ca, errors);
        }
    }
}

/// The CA file must be a readable PEM certificate: found now, not at the
/// first request.
fn check_ca_file(path: &str, errors: &mut Vec<FieldError>) {
    match std::fs::read_to_string(path) {
        Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => {}
        Ok(_) => errors.push(FieldError::new(
            "caFile",
            format!("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----): choose the server's certificate or its CA's, in PEM form."),
        )),
        Err(e) => errors.push(FieldError::new(
            "caFile",
            format!("The CA file {path} cannot be read ({e}): check the path and its permissions."),
        )),
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
        let rules = TextRules {
            max_chars: MAX_DESCRIPTION_LEN,
            multiline: true,
            required: false,
        };
        check_text("description", "The description", d, rules, errors);
    }
    if let Some(k) = &c.api_key_ref {
        let rules = TextRules {
            max_chars: MAX_KEY_REF_LEN,
            multiline: false,
            required: true,
        };
        check_text("apiKeyRef", "The key reference", k, rules, errors);
    }
    if let Some(a) = &c.api_key_auth {
        if let Err(e) = storycore_types::KeyAuth::parse(a) {
            errors.push(FieldError::new("apiKeyAuth", e));
        }
    }
}
