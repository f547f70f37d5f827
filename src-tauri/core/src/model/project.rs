//! The rules a project keeps: its id, a unique name, absolute folders.

use super::text::{check_text, quote, TextRules};
use std::path::Path;
use storycore_types::{FieldError, Project};

const MAX_NAME: usize = 100;
const MAX_PATH: usize = 4096;

/// The rules a stored project keeps (also checked when the file is read).
pub fn check_project(p: &Project, others: &[Project]) -> Result<(), FieldError> {
    super::validate_id(&p.id)?;
    if others.iter().any(|o| o.id == p.id) {
        return Err(FieldError::new(
            "id",
            format!("The id {} is used twice.", quote(&p.id)),
        ));
    }
    let mut errors = Vec::new();
    check_text(
        "name",
        "The project's name",
        &p.name,
        TextRules {
            max_chars: MAX_NAME,
            multiline: false,
            required: true,
        },
        &mut errors,
    );
    if let Some(e) = errors.pop() {
        return Err(e);
    }
    if others
        .iter()
        .any(|o| o.name.trim().eq_ignore_ascii_case(p.name.trim()))
    {
        return Err(FieldError::new(
            "name",
            format!(
                "There is already a project named {}: choose another name.",
                quote(&p.name)
            ),
        ));
    }
    check_folder("folder", "The project's folder", &p.folder)?;
    if let Some(o) = &p.output_folder {
        check_folder("outputFolder", "The output folder", o)?;
    }
    Ok(())
}

fn check_folder(field: &str, what: &str, value: &str) -> Result<(), FieldError> {
    let bad = |m: String| Err(FieldError::new(field, m));
    if value.trim().is_empty() {
        return bad(format!("{what} is empty: choose a folder."));
    }
    if value.len() > MAX_PATH || value.chars().any(char::is_control) {
        return bad(format!(
            "{what} {} is too long or holds control characters: choose it again.",
            quote(value)
        ));
    }
    let path = Path::new(value);
    if !path.is_absolute() {
        return bad(format!(
            "{what} {} is a relative path: enter the full path (starting at /).",
            quote(value)
        ));
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return bad(format!(
            "{what} {} contains '..': enter the folder's real path.",
            quote(value)
        ));
    }
    Ok(())
}
