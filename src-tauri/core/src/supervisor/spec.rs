//! The exact command a local instance runs: program, arguments, working folder
//! and environment. Built once per start from the config; no shell is ever
//! involved, each argument reaches ComfyUI as is.

use super::error::SupervisorError;
use super::gpu::{parse_gpu_device, resolve_gpu, GpuPinning};
use super::layout::InstanceDirs;
use crate::telemetry::GpuInfo;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use storycore_types::{FieldError, InstanceConfig};

/// The interpreter used when the config names none.
const DEFAULT_PYTHON: &str = if cfg!(windows) { "python" } else { "python3" };

/// What the launch needs beyond the config: where the app keeps its data, and
/// the GPUs with the number of this app's instances on each (for `auto`).
#[derive(Debug, Clone, Default)]
pub struct LaunchContext {
    pub data_dir: PathBuf,
    pub gpus: Vec<GpuInfo>,
    pub instances_per_gpu: HashMap<u32, usize>,
    /// Stops the process if the app dies without stopping it (see `guardian`).
    pub guardian: Option<std::sync::Arc<super::guardian::Guardian>>,
}

impl LaunchContext {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    pub id: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The ComfyUI folder (`main.py` is relative to it).
    pub working_dir: PathBuf,
    /// Set on top of the app's own environment.
    pub env: BTreeMap<String, String>,
    /// The address given to `--listen`.
    pub listen: String,
    pub port: u16,
    pub gpu: GpuPinning,
    pub dirs: InstanceDirs,
    /// Things the user should know but that do not stop the launch.
    pub warnings: Vec<String>,
}

/// Checks the config and builds the command. Creates the instance's folders
/// and its extra-model-paths file (the launch needs them on disk).
pub fn build_launch_spec(
    config: &InstanceConfig,
    ctx: &LaunchContext,
) -> Result<LaunchSpec, SupervisorError> {
    let id = config.id.clone();
    let not_launchable = |reason: &str| SupervisorError::NotLaunchable {
        id: id.clone(),
        reason: reason.to_string(),
    };
    let comfyui = config.comfyui_path.as_deref().ok_or_else(|| {
        not_launchable("it has no ComfyUI folder (comfyuiPath); it can only be attached")
    })?;
    if !crate::model::is_local_host(config.host()) {
        return Err(not_launchable(&format!(
            "its host {} is another machine; the app launches only on this one",
            config.host()
        )));
    }
    let mut problems = crate::model::validate_config(config, &[])
        .err()
        .unwrap_or_default();
    for refused in injecting_vars(config) {
        if !problems.iter().any(|p| p.field == refused.field) {
            problems.push(refused);
        }
    }
    // Secret values come from the keyring, read at the app's start or when
    // they were set; one that is not there stops the launch, said plainly.
    let mut secret_env = BTreeMap::new();
    for (name, reference) in config.secret_env_vars.iter().flatten() {
        match crate::secrets::known(reference) {
            Some(v) => {
                secret_env.insert(name.clone(), v.to_string());
            }
            None => problems.push(FieldError::new(
                format!("secretEnvVars.{name}"),
                format!("the secret value of {name} is not in the keyring (entry {reference}): unlock the keyring and restart the app, or enter the value again in the instance's settings"),
            )),
        }
    }
    let port = u16::try_from(config.port).ok().filter(|p| *p != 0);
    let gpu_request = parse_gpu_device(config.gpu_device.as_deref());
    if problems.is_empty() {
        if let Err(message) = &gpu_request {
            problems.push(FieldError::new("gpuDevice", message.clone()));
        }
        if port.is_none() {
            problems.push(FieldError::new("port", "use a port from 1 to 65535"));
        }
    }
    if !problems.is_empty() {
        return Err(SupervisorError::InvalidLaunch { id, problems });
    }
    let (Ok(gpu_request), Some(port)) = (gpu_request, port) else {
        unreachable!("both were checked above");
    };

    let comfyui = PathBuf::from(comfyui);
    let dirs = InstanceDirs::new(&ctx.data_dir, &id)?;
    dirs.create()?;
    let custom_nodes = config.custom_nodes_path.as_deref().map(Path::new);
    let extra_model_paths = dirs.write_extra_model_paths(custom_nodes)?;
    let mut warnings = Vec::new();
    let input = match comfyui.join("input") {
        shared if shared.is_dir() => shared,
        _ => {
            let own = dirs.own_input();
            std::fs::create_dir_all(&own)
                .map_err(|e| SupervisorError::io(&id, "create the folder", &own, e))?;
            own
        }
    };
    let (gpu, gpu_warning) = resolve_gpu(gpu_request, &ctx.gpus, &ctx.instances_per_gpu);
    warnings.extend(gpu_warning);
    for name in config.env_vars.iter().flatten().map(|(n, _)| n) {
        if crate::model::CODE_PATH_VARS.contains(&name.as_str()) {
            warnings.push(format!(
                "{name} is set (allowRiskyEnvVars): it changes which code ComfyUI runs"
            ));
        }
    }

    let listen = listen_address(config.host());
    let mut args: Vec<String> = vec![
        "main.py".into(),
        "--listen".into(),
        listen.clone(),
        "--port".into(),
        port.to_string(),
        "--disable-auto-launch".into(),
        "--temp-directory".into(),
        path_arg(&dirs.temp_parent()),
        "--user-directory".into(),
        path_arg(&dirs.user()),
        "--output-directory".into(),
        path_arg(&dirs.output()),
        "--input-directory".into(),
        path_arg(&input),
        "--database-url".into(),
        dirs.database_url(),
    ];
    if let Some(file) = extra_model_paths {
        args.extend(["--extra-model-paths-config".into(), path_arg(&file)]);
    }
    if gpu == GpuPinning::Cpu {
        args.push("--cpu".into());
    }
    args.extend(config.extra_args.iter().flatten().cloned());

    let mut env = config.env_vars.clone().unwrap_or_default();
    env.extend(secret_env);
    if let GpuPinning::Gpu(index) = gpu {
        if env.contains_key("CUDA_VISIBLE_DEVICES") {
            warnings.push("envVars sets CUDA_VISIBLE_DEVICES; gpuDevice overrides it".into());
        }
        env.insert("CUDA_DEVICE_ORDER".into(), "PCI_BUS_ID".into());
        env.insert("CUDA_VISIBLE_DEVICES".into(), index.to_string());
    }

    Ok(LaunchSpec {
        program: PathBuf::from(config.python_path.as_deref().unwrap_or(DEFAULT_PYTHON)),
        id,
        args,
        working_dir: comfyui,
        env,
        listen,
        port,
        gpu,
        dirs,
        warnings,
    })
}

/// ComfyUI's `--listen` takes an address; `localhost` is given as the IPv4
/// loopback, which is what ComfyUI binds by default.
pub fn listen_address(host: &str) -> String {
    let h = host.trim_end_matches('.');
    if h.eq_ignore_ascii_case("localhost") || h.to_ascii_lowercase().ends_with(".localhost") {
        "127.0.0.1".into()
    } else {
        h.trim_start_matches('[').trim_end_matches(']').to_string()
    }
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The loader's variables. The model's validation refuses them already;
/// checked again here because this is the last step before the process exists.
fn injecting_vars(config: &InstanceConfig) -> Vec<FieldError> {
    config
        .env_vars
        .iter()
        .flatten()
        .chain(config.secret_env_vars.iter().flatten())
        .filter_map(|(name, _)| {
            crate::model::refused_env_name(name)
                .map(|why| FieldError::new(format!("envVars.{name}"), why))
        })
        .collect()
}
