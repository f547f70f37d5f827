//! What shapes the launched ComfyUI process: `envVars`, `extraArgs`, `gpuDevice`.

use super::text::quote;
use std::collections::BTreeMap;
use storycore_types::FieldError;

/// The dynamic loader's own variables (`LD_PRELOAD`, `LD_AUDIT`, ...) and
/// macOS's (`DYLD_INSERT_LIBRARIES`, ...): set here they would load foreign
/// code into ComfyUI's process. Refused, the whole family.
const LOADER_PREFIXES: &[&str] = &["LD_", "DYLD_"];

/// Variables that change which code ComfyUI runs (where Python and the
/// loader look for modules and libraries). Legitimate in some setups, so
/// refused unless the instance says `allowRiskyEnvVars: true`; then the
/// launch logs a warning.
pub const CODE_PATH_VARS: &[&str] = &[
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "LD_LIBRARY_PATH",
];

/// Limits of what a process can be given. Linux refuses one string longer
/// than 128 KiB ("Argument list too long"), and all of them together are
/// bounded too: stay well inside.
const MAX_ENV_VARS: usize = 200;
const MAX_ENV_NAME: usize = 128;
const MAX_ENV_VALUE: usize = 32 * 1024;
const MAX_ENV_TOTAL: usize = 128 * 1024;
const MAX_EXTRA_ARGS: usize = 100;
const MAX_ARG_LEN: usize = 4096;

/// Why a variable name is refused whatever the settings, if it is.
pub fn refused_env_name(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    if CODE_PATH_VARS.contains(&upper.as_str()) {
        return None;
    }
    LOADER_PREFIXES
        .iter()
        .any(|p| upper.starts_with(p))
        .then(|| {
            format!(
                "{name} is refused: the system's loader reads it and could load a library into ComfyUI's process, which would run foreign code inside it. Remove it."
            )
        })
}

/// ComfyUI flags the app sets itself, and the field the user sets instead.
const APP_CONTROLLED_FLAGS: &[(&str, &str)] = &[
    ("--port", "set the port field instead"),
    ("--listen", "set the host field instead"),
    ("--cuda-device", "set the gpuDevice field instead"),
    (
        "--temp-directory",
        "the app gives each instance its own temp folder so instances never wipe each other's",
    ),
    (
        "--user-directory",
        "the app gives each instance its own user folder",
    ),
    (
        "--output-directory",
        "the app gives each instance its own output folder so outputs never overwrite each other",
    ),
    (
        "--database-url",
        "the app gives each instance its own database",
    ),
    (
        "--extra-model-paths-config",
        "the app writes this file itself from the customNodesPath field: set that instead",
    ),
];

pub(crate) fn check_env_vars(
    vars: &BTreeMap<String, String>,
    allow_code_paths: bool,
    errors: &mut Vec<FieldError>,
) {
    if vars.len() > MAX_ENV_VARS {
        errors.push(FieldError::new(
            "envVars",
            format!(
                "{} variables is too many: keep at most {MAX_ENV_VARS}.",
                vars.len()
            ),
        ));
        return;
    }
    let total: usize = vars.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    if total > MAX_ENV_TOTAL {
        errors.push(FieldError::new(
            "envVars",
            format!(
                "The variables hold {} KiB in all; a process can be given at most {} KiB of them: shorten or remove some.",
                total / 1024,
                MAX_ENV_TOTAL / 1024
            ),
        ));
    }
    for (name, value) in vars {
        let field = format!(
            "envVars.{}",
            name.chars().take(MAX_ENV_NAME).collect::<String>()
        );
        let shown = quote(name);
        if name.chars().count() > MAX_ENV_NAME || !is_env_name(name) {
            errors.push(FieldError::new(
                &field,
                format!("{shown} is not a valid variable name: use letters, digits and '_', not starting with a digit, at most {MAX_ENV_NAME} characters (for example MY_VAR)."),
            ));
            continue;
        }
        if let Some(why) = refused_env_name(name) {
            errors.push(FieldError::new(&field, why));
        }
        if CODE_PATH_VARS.contains(&name.as_str()) && !allow_code_paths {
            errors.push(FieldError::new(
                &field,
                format!("{name} changes which code ComfyUI runs (where Python or the loader look for modules and libraries), so it is refused unless you allow it: set allowRiskyEnvVars to true for this instance, or remove it."),
            ));
        }
        if value.contains('\0') {
            errors.push(FieldError::new(
                &field,
                "The value contains a NUL character, which the system cannot pass to a process: retype it.",
            ));
        } else if value.len() > MAX_ENV_VALUE {
            errors.push(FieldError::new(
                &field,
                format!(
                    "The value of {name} is {} KiB; a variable may hold at most {} KiB: shorten it.",
                    value.len() / 1024,
                    MAX_ENV_VALUE / 1024
                ),
            ));
        }
    }
}

/// Secret variables (values in the keyring): the same name rules, no name
/// both plain and secret, and a keyring entry for each.
pub(crate) fn check_secret_env_vars(
    secret: &BTreeMap<String, String>,
    plain: Option<&BTreeMap<String, String>>,
    allow_code_paths: bool,
    errors: &mut Vec<FieldError>,
) {
    let names: BTreeMap<String, String> =
        secret.keys().map(|n| (n.clone(), String::new())).collect();
    let mut found = Vec::new();
    check_env_vars(&names, allow_code_paths, &mut found);
    for mut e in found {
        if let Some(rest) = e.field.strip_prefix("envVars") {
            e.field = format!("secretEnvVars{rest}");
        }
        errors.push(e);
    }
    for (name, reference) in secret {
        let field = format!(
            "secretEnvVars.{}",
            name.chars().take(MAX_ENV_NAME).collect::<String>()
        );
        if plain.is_some_and(|p| p.contains_key(name)) {
            errors.push(FieldError::new(
                &field,
                format!(
                    "{} is both a plain and a secret variable: keep one.",
                    quote(name)
                ),
            ));
        }
        if reference.trim().is_empty()
            || reference.len() > 256
            || reference.chars().any(char::is_control)
        {
            errors.push(FieldError::new(
                &field,
                "Its keyring entry name is empty, too long or holds control characters: set the value again.",
            ));
        }
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn check_extra_args(args: &[String], errors: &mut Vec<FieldError>) {
    if args.len() > MAX_EXTRA_ARGS {
        errors.push(FieldError::new(
            "extraArgs",
            format!(
                "{} arguments is too many: keep at most {MAX_EXTRA_ARGS}.",
                args.len()
            ),
        ));
        return;
    }
    for (i, arg) in args.iter().enumerate() {
        let field = format!("extraArgs[{i}]");
        if arg.contains('\0') {
            errors.push(FieldError::new(
                field,
                "The argument contains a NUL character, which the system cannot pass to a process: retype it.",
            ));
            continue;
        }
        if arg.len() > MAX_ARG_LEN {
            errors.push(FieldError::new(
                field,
                format!(
                    "The argument {} is {} characters long; use at most {MAX_ARG_LEN}.",
                    quote(arg),
                    arg.chars().count()
                ),
            ));
            continue;
        }
        if let Some((flag, instead)) = controlled_flag(arg) {
            errors.push(FieldError::new(
                field,
                format!(
                    "{} is refused: the app sets {flag} itself; {instead}.",
                    quote(arg)
                ),
            ));
        }
    }
}

/// The app-controlled flag `arg` would set, if any. ComfyUI parses its
/// arguments with Python's argparse, which also accepts any unambiguous prefix
/// (`--list` means `--listen`) and the `--flag=value` form, so both count.
fn controlled_flag(arg: &str) -> Option<(&'static str, &'static str)> {
    let name = arg.split_once('=').map_or(arg, |(n, _)| n);
    if !name.starts_with("--") || name.len() < 3 {
        return None;
    }
    APP_CONTROLLED_FLAGS
        .iter()
        .find(|(flag, _)| flag.starts_with(name))
        .copied()
}

pub(crate) fn check_gpu_device(device: &str, errors: &mut Vec<FieldError>) {
    let valid = match device {
        "auto" | "cpu" => true,
        d => {
            let index = d.strip_prefix("cuda:").unwrap_or(d);
            !index.is_empty() && index.len() <= 3 && index.chars().all(|c| c.is_ascii_digit())
        }
    };
    if !valid {
        errors.push(FieldError::new(
            "gpuDevice",
            format!("{} is not a GPU device: use auto (the app picks), cpu, a GPU number such as 0, or cuda:0.", quote(device)),
        ));
    }
}
