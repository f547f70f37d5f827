//! The report of an import of instances (the UI shows it), and the caller's
//! choice for clashing ids and names.

use crate::error::FieldError;
use serde::{Deserialize, Serialize};

/// What to do with an imported instance whose id or name is already taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClashPolicy {
    /// Import nothing; the report lists the clashes.
    #[default]
    Fail,
    /// Leave the existing instance, drop the imported one.
    Skip,
    /// Import a copy with a new id and name (and a free port if its own is taken).
    Rename,
    /// The imported instance takes the place of the one(s) it clashes with.
    Replace,
}

/// What happened (or, when the import was refused, what would have happened)
/// to one instance of the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ImportAction {
    Added,
    Renamed {
        new_id: String,
        new_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_port: Option<u32>,
    },
    Replaced {
        replaced_ids: Vec<String>,
    },
    Skipped {
        reason: String,
    },
    /// Cannot be imported: see the entry's errors.
    Rejected,
}

/// The report line of one instance of the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportEntry {
    /// Position in the data's `instances`.
    pub index: usize,
    /// Id and name as in the data.
    pub id: String,
    pub name: String,
    pub action: ImportAction,
    pub errors: Vec<FieldError>,
    /// Things to do after import (secrets to set again).
    pub notes: Vec<String>,
}

/// What importing a file would do, shown before it is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportPreview {
    /// The file, as chosen.
    pub path: String,
    /// One line per instance of the file: added, renamed, replaced, skipped
    /// or rejected (with its errors), and what to do after (keys to set again).
    pub entries: Vec<ImportEntry>,
    /// Whether applying now would import (nothing rejected, no clash left
    /// under the chosen policy).
    pub applicable: bool,
    /// Why nothing can be imported from this file at all (not JSON, not an
    /// instances file, a newer format), or why it would be refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportOutcome {
    pub path: String,
    pub instances: usize,
    /// What was left out (API keys, secret-looking values).
    pub notes: Vec<String>,
}
