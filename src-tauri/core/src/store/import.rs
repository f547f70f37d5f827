//! Import: instances from an exported file, all or nothing, with clashes
//! resolved the way the caller chose.

use super::clash::{name_key, Placement};
use super::export::is_redacted;
use super::format::{format_age, FormatAge};
use crate::model::{quote, validate_entries, Checks};
use serde_json::Value;
use std::collections::HashMap;
pub use storycore_types::import::{ClashPolicy, ImportAction, ImportEntry};
use storycore_types::{
    ApiError, ErrorCode, FieldError, InstanceConfig, InstancesFile, INSTANCES_FILE_VERSION,
};

/// A successful import: the new fleet (not yet saved) and the report.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportOutcome {
    pub file: InstancesFile,
    pub entries: Vec<ImportEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the data to import is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("the data to import is not an instances file: {why}")]
    NotInstancesFile { why: String },
    #[error("the data to import is format {found}, newer than this app reads ({INSTANCES_FILE_VERSION}): update the app")]
    NewerFormat { found: String },
    #[error("nothing was imported: {}", rejected_summary(.entries))]
    Rejected { entries: Vec<ImportEntry> },
}

fn rejected_summary(entries: &[ImportEntry]) -> String {
    let names: Vec<String> = entries
        .iter()
        .filter(|e| !e.errors.is_empty())
        .map(|e| quote(if e.name.is_empty() { &e.id } else { &e.name }))
        .collect();
    let shown = names.len().min(10);
    let more = if names.len() > shown {
        format!(" and {} more", names.len() - shown)
    } else {
        String::new()
    };
    format!(
        "fix or drop {}{more} and import again",
        names[..shown].join(", ")
    )
}

impl From<&ImportError> for ApiError {
    fn from(e: &ImportError) -> Self {
        let mut api = ApiError::new(ErrorCode::InvalidInput, e.to_string());
        if let ImportError::Rejected { entries } = e {
            api.fields = entries
                .iter()
                .flat_map(|en| {
                    en.errors.iter().map(move |f| {
                        FieldError::new(
                            format!("instances[{}].{}", en.index, f.field),
                            f.message.clone(),
                        )
                    })
                })
                .collect();
        }
        api
    }
}

/// Parses `data`, resolves clashes with `current` by `policy`, validates every
/// imported instance against the resulting fleet, and returns that fleet only
/// if nothing is wrong. `current` is never changed; the caller saves the result.
pub fn import(
    data: &str,
    current: &InstancesFile,
    policy: ClashPolicy,
) -> Result<ImportOutcome, ImportError> {
    let value: Value = serde_json::from_str(data).map_err(ImportError::NotJson)?;
    let not_file = |why: &str| ImportError::NotInstancesFile {
        why: why.to_string(),
    };
    let version = value["version"]
        .as_str()
        .ok_or_else(|| not_file("it has no \"version\""))?;
    if let FormatAge::Newer(found) = format_age(version, INSTANCES_FILE_VERSION) {
        return Err(ImportError::NewerFormat { found });
    }
    let raw = value["instances"]
        .as_array()
        .ok_or_else(|| not_file("it has no \"instances\" list"))?;

    let (mut entries, decoded) = decode(raw);
    flag_duplicates_within(&decoded, &mut entries);
    let data_ids = decoded.iter().flatten().map(|c| c.id.clone());
    let mut placement = Placement::new(&current.instances, data_ids);
    for (i, c) in decoded.into_iter().enumerate() {
        let Some(c) = c else { continue };
        if entries[i].errors.is_empty() {
            placement.place(i, c, policy, &mut entries[i]);
        }
    }
    let fleet = placement.into_fleet();
    validate_imported(&fleet, &mut entries);

    if entries.iter().any(|e| !e.errors.is_empty()) {
        return Err(ImportError::Rejected { entries });
    }
    let active_instance_id = pick_active(
        current,
        value["activeInstanceId"].as_str(),
        &fleet,
        &entries,
    );
    let file = InstancesFile {
        version: INSTANCES_FILE_VERSION.to_string(),
        instances: fleet.into_iter().map(|(_, c)| c).collect(),
        active_instance_id,
        last_saved: current.last_saved,
    };
    Ok(ImportOutcome { file, entries })
}

fn decode(raw: &[Value]) -> (Vec<ImportEntry>, Vec<Option<InstanceConfig>>) {
    raw.iter()
        .enumerate()
        .map(|(index, v)| {
            // What the report shows of the data: never more than a line.
            let text = |k: &str| {
                let t = v[k].as_str().unwrap_or_default();
                if t.chars().count() > crate::model::QUOTE_MAX {
                    quote(t)
                } else {
                    t.to_string()
                }
            };
            let mut entry = ImportEntry {
                index,
                id: text("id"),
                name: text("name"),
                action: ImportAction::Added,
                errors: vec![],
                notes: vec![],
            };
            match serde_json::from_value::<InstanceConfig>(v.clone()) {
                Ok(c) => (entry, Some(c)),
                Err(e) => {
                    entry.action = ImportAction::Rejected;
                    entry.errors.push(FieldError::new(
                        "instance",
                        format!(
                            "This instance cannot be read ({}): correct it in the file.",
                            quote(&e.to_string())
                        ),
                    ));
                    (entry, None)
                }
            }
        })
        .unzip()
}

/// Two instances of the data with one id or one name are a defect of the data,
/// which no clash policy should paper over.
fn flag_duplicates_within(decoded: &[Option<InstanceConfig>], entries: &mut [ImportEntry]) {
    let mut first_id: HashMap<&str, usize> = HashMap::new();
    let mut first_name: HashMap<String, usize> = HashMap::new();
    for (i, c) in decoded.iter().enumerate() {
        let Some(c) = c else { continue };
        let by_id = first_id.get(c.id.as_str()).copied();
        let by_name = first_name.get(&name_key(&c.name)).copied();
        let clash = match (by_id, by_name) {
            (Some(j), _) => Some((j, "id", format!("id {}", quote(&c.id)))),
            (None, Some(j)) => Some((j, "name", format!("name {}", quote(c.name.trim())))),
            (None, None) => None,
        };
        first_id.entry(c.id.as_str()).or_insert(i);
        first_name.entry(name_key(&c.name)).or_insert(i);
        if let Some((j, field, what)) = clash {
            entries[i].action = ImportAction::Rejected;
            entries[i].errors.push(FieldError::new(
                field,
                format!("Instance number {} of the imported data has the same {what}: give each instance its own.", j + 1),
            ));
        }
    }
}

/// Validates the imported instances within the fleet they would join (one
/// pass over an index of it, not one per instance).
fn validate_imported(fleet: &[(Option<usize>, InstanceConfig)], entries: &mut [ImportEntry]) {
    let file = InstancesFile {
        version: INSTANCES_FILE_VERSION.to_string(),
        instances: fleet.iter().map(|(_, c)| c.clone()).collect(),
        active_instance_id: None,
        last_saved: None,
    };
    let problems = validate_entries(&file, Checks::Full, |k| fleet[k].0.is_some());
    for p in problems {
        if let Some(i) = fleet[p.index].0 {
            entries[i].action = ImportAction::Rejected;
            entries[i].errors.extend(p.errors);
        }
    }
    for (origin, c) in fleet {
        let Some(i) = *origin else { continue };
        for (name, value) in c.env_vars.iter().flatten() {
            if is_redacted(value) {
                entries[i].notes.push(format!(
                    "The value of envVars.{name} was left out at export: set it again."
                ));
            }
        }
    }
}

/// Keeps the current active instance if it is still there; else takes the
/// data's, following a rename.
fn pick_active(
    current: &InstancesFile,
    imported_active: Option<&str>,
    fleet: &[(Option<usize>, InstanceConfig)],
    entries: &[ImportEntry],
) -> Option<String> {
    let present = |id: &str| fleet.iter().any(|(_, c)| c.id == id);
    if let Some(a) = current.active_instance_id.as_deref().filter(|a| present(a)) {
        return Some(a.to_string());
    }
    let wanted = imported_active?;
    let entry = entries.iter().find(|e| e.id == wanted)?;
    let id = match &entry.action {
        ImportAction::Added | ImportAction::Replaced { .. } => entry.id.clone(),
        ImportAction::Renamed { new_id, .. } => new_id.clone(),
        ImportAction::Skipped { .. } | ImportAction::Rejected => return None,
    };
    present(&id).then_some(id)
}
