//! Import: instances from an exported file, all or nothing, with clashes
//! resolved the way the caller chose.

use super::clash::{place, same_name, Origin};
use super::export::is_redacted;
use super::format::{format_age, FormatAge};
use crate::model::validate_config;
use serde_json::Value;
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
        .map(|e| format!("'{}'", if e.name.is_empty() { &e.id } else { &e.name }))
        .collect();
    format!("fix or drop {} and import again", names.join(", "))
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
    let mut fleet: Vec<(Origin, InstanceConfig)> = current
        .instances
        .iter()
        .map(|c| (Origin::Current, c.clone()))
        .collect();
    let taken_ids: Vec<String> = current
        .instances
        .iter()
        .chain(decoded.iter().flatten())
        .map(|c| c.id.clone())
        .collect();
    for (i, c) in decoded.into_iter().enumerate() {
        let Some(c) = c else { continue };
        if entries[i].errors.is_empty() {
            place(i, c, policy, &mut fleet, &taken_ids, &mut entries[i]);
        }
    }
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
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
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
                        format!("This instance cannot be read ({e}): correct it in the file."),
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
    for (i, c) in decoded.iter().enumerate() {
        let Some(c) = c else { continue };
        for (j, earlier) in decoded[..i].iter().enumerate() {
            let Some(earlier) = earlier else { continue };
            let (field, what) = if earlier.id == c.id {
                ("id", format!("id '{}'", c.id))
            } else if same_name(&earlier.name, &c.name) {
                ("name", format!("name '{}'", c.name.trim()))
            } else {
                continue;
            };
            entries[i].action = ImportAction::Rejected;
            entries[i].errors.push(FieldError::new(
                field,
                format!("Instance number {} of the imported data has the same {what}: give each instance its own.", j + 1),
            ));
            break;
        }
    }
}

fn validate_imported(fleet: &[(Origin, InstanceConfig)], entries: &mut [ImportEntry]) {
    for (k, (origin, c)) in fleet.iter().enumerate() {
        let Origin::Imported(i) = *origin else {
            continue;
        };
        let others: Vec<InstanceConfig> = fleet
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != k)
            .map(|(_, (_, o))| o.clone())
            .collect();
        if let Err(errors) = validate_config(c, &others) {
            entries[i].action = ImportAction::Rejected;
            entries[i].errors.extend(errors);
        }
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
    fleet: &[(Origin, InstanceConfig)],
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
