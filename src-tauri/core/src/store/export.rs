//! Export: the fleet as a file another machine (or a later self) can import,
//! in the same format as `comfyui_instances.json`, without secrets.

use serde_json::json;
use storycore_types::InstancesFile;

/// Put in place of a secret-looking variable's value. Import recognises it and
/// tells the user to set the value again.
pub const REDACTED_VALUE: &str = "<redacted at export: set it again>";

/// Words that mark a variable as holding a secret (matched case-insensitively).
const SECRET_WORDS: &[&str] = &[
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "AUTH",
    "CREDENTIAL",
    "PRIVATE",
    "COOKIE",
];

/// Pretty JSON of `file` with `apiKeyRef` dropped (it names an entry of this
/// machine's keyring, meaningless elsewhere) and secret-looking variable values
/// redacted. An `exportNotes` list says what was left out; a reader of the
/// format ignores it.
pub fn export(file: &InstancesFile) -> String {
    let mut exported = file.clone();
    let mut notes = Vec::new();
    for c in &mut exported.instances {
        if c.api_key_ref.take().is_some() {
            notes.push(format!(
                "The API key of '{}' ({}) was left out: set it again after import.",
                c.name, c.id
            ));
        }
        // Secret variables travel as names only: their values are in this
        // machine's keyring; import asks for them again.
        for (name, _) in c.secret_env_vars.take().into_iter().flatten() {
            c.env_vars
                .get_or_insert_with(Default::default)
                .insert(name, REDACTED_VALUE.to_string());
        }
        for (name, value) in c.env_vars.iter_mut().flatten() {
            if is_redacted(value) || is_secret_name(name) {
                *value = REDACTED_VALUE.to_string();
                notes.push(format!(
                    "The value of envVars.{name} of '{}' ({}) was left out: set it again after import.",
                    c.name, c.id
                ));
            }
        }
    }
    let mut value =
        serde_json::to_value(&exported).expect("an instances file always encodes as JSON");
    if !notes.is_empty() {
        value["exportNotes"] = json!(notes);
    }
    let mut text = serde_json::to_string_pretty(&value).expect("a JSON value always encodes");
    text.push('\n');
    text
}

pub(crate) fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// True for a value export redacted.
pub(crate) fn is_redacted(value: &str) -> bool {
    value == REDACTED_VALUE
}
