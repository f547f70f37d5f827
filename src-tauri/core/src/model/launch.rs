//! What shapes the launched ComfyUI process: `envVars`, `extraArgs`, `gpuDevice`.

use std::collections::BTreeMap;
use storycore_types::FieldError;

/// Variables that make the dynamic loader inject a library into every process
/// started with them: set here they would run foreign code inside ComfyUI.
const INJECTING_VARS: &[&str] = &["LD_PRELOAD", "DYLD_INSERT_LIBRARIES"];

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

pub(crate) fn check_env_vars(vars: &BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    for (name, value) in vars {
        let field = format!("envVars.{name}");
        if name.contains('\0') {
            errors.push(FieldError::new(
                field,
                "The variable name contains a NUL character: retype it.",
            ));
            continue;
        }
        if !is_env_name(name) {
            errors.push(FieldError::new(
                &field,
                format!("'{name}' is not a valid variable name: use letters, digits and '_', not starting with a digit (for example MY_VAR)."),
            ));
        }
        if INJECTING_VARS.contains(&name.as_str()) {
            errors.push(FieldError::new(
                &field,
                format!("{name} is refused: it makes the system load a library into ComfyUI's process, which would run foreign code inside it. Remove it."),
            ));
        }
        if value.contains('\0') {
            errors.push(FieldError::new(
                &field,
                "The value contains a NUL character, which the system cannot pass to a process: retype it.",
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
    for (i, arg) in args.iter().enumerate() {
        let field = format!("extraArgs[{i}]");
        if arg.contains('\0') {
            errors.push(FieldError::new(
                field,
                "The argument contains a NUL character, which the system cannot pass to a process: retype it.",
            ));
            continue;
        }
        if let Some((flag, instead)) = controlled_flag(arg) {
            errors.push(FieldError::new(
                field,
                format!("'{arg}' is refused: the app sets {flag} itself; {instead}."),
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
            format!("'{}' is not a GPU device: use auto (the app picks), cpu, a GPU number such as 0, or cuda:0.", device.replace('\0', "\\0")),
        ));
    }
}
