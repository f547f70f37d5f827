//! Stand-in-only behaviour, configured by `STANDIN_*` environment variables.

use std::collections::HashMap;

/// One fake GPU from `STANDIN_GPUS` (`name:MiB,name:MiB`).
#[derive(Clone, Debug, PartialEq)]
pub struct Gpu {
    pub name: String,
    pub mib: u64,
}

#[derive(Clone, Debug)]
pub struct Standin {
    pub startup_delay_ms: u64,
    pub node_ms: u64,
    pub prompt_ms: u64,
    pub speed: f64,
    pub progress_steps: u32,
    /// A preview image with every progress step (binary frames).
    pub previews: bool,
    pub gpus: Vec<Gpu>,
    pub crash_after_prompts: Option<u64>,
    pub crash_after_ms: Option<u64>,
    pub crash_exit_code: i32,
    pub crash_signal: Option<i32>,
    pub hang: bool,
    pub hang_after_ms: Option<u64>,
    pub slow_ms: u64,
    pub fail_execution: bool,
    pub fail_node: Option<String>,
    pub system_stats_500: bool,
    pub never_ready: bool,
    /// Read at each `GET /system_stats`: faults a test switches at run time.
    pub control_file: Option<std::path::PathBuf>,
    /// Taken (removed) by the first prompt that starts while it exists,
    /// which then dies out of GPU memory, as PyTorch says it.
    pub oom_file: Option<std::path::PathBuf>,
    /// Like a reverse proxy in front of ComfyUI: every request (HTTP and
    /// `/ws`) without this key is answered 401.
    pub api_key: Option<String>,
    /// How the key must come: `bearer`, `basic` or `header:<Name>`.
    pub api_key_auth: KeyAuth,
    /// Serve HTTPS with this PEM certificate and PKCS#8 PEM key.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// A model's load: this fixed part, and its file's size at this rate.
    pub model_load_ms: u64,
    pub model_read_mbps: f64,
    /// Models held in memory at once (the least recently used let go).
    pub models_held: usize,
    /// Node classes this server lacks (custom nodes not installed).
    pub hidden_classes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum KeyAuth {
    Bearer,
    Basic,
    Header(String),
}

/// Every recognised variable with a one-line description (shown on errors).
pub const VARS: &[(&str, &str)] = &[
    (
        "STANDIN_STARTUP_DELAY_MS",
        "milliseconds before the port is bound (default 0)",
    ),
    (
        "STANDIN_NODE_MS",
        "milliseconds per executed node (default 20)",
    ),
    (
        "STANDIN_PROMPT_MS",
        "milliseconds per prompt before its first node, like loading (default 0)",
    ),
    (
        "STANDIN_SPEED",
        "factor applied to STANDIN_NODE_MS, > 0 (default 1.0)",
    ),
    (
        "STANDIN_PROGRESS_STEPS",
        "progress frames per executed node (default 0: none)",
    ),
    (
        "STANDIN_PREVIEWS",
        "1: a preview image (binary frame, type 4 or 1 as ComfyUI sends them) with every progress step",
    ),
    (
        "STANDIN_GPUS",
        "fake GPUs, `name:MiB` separated by commas (default: none, cpu device)",
    ),
    (
        "STANDIN_CRASH_AFTER_PROMPTS",
        "crash when the Nth prompt starts executing (N >= 1)",
    ),
    (
        "STANDIN_CRASH_AFTER_MS",
        "crash T ms after the port is bound",
    ),
    (
        "STANDIN_OOM_FILE",
        "when this file exists as a prompt starts, remove it and die out of CUDA memory (one of several stand-ins takes it)",
    ),
    (
        "STANDIN_CRASH_EXIT_CODE",
        "exit code of a crash (default 1)",
    ),
    (
        "STANDIN_CRASH_SIGNAL",
        "crash by this signal instead: KILL, SEGV or ABRT",
    ),
    ("STANDIN_HANG", "1: accept connections but never answer"),
    (
        "STANDIN_HANG_AFTER_MS",
        "start hanging T ms after the port is bound",
    ),
    ("STANDIN_SLOW_MS", "delay every HTTP answer by this many ms"),
    (
        "STANDIN_FAIL_EXECUTION",
        "1: every execution ends in execution_error",
    ),
    (
        "STANDIN_FAIL_NODE",
        "executing a node of this class_type raises execution_error",
    ),
    (
        "STANDIN_SYSTEM_STATS_500",
        "1: GET /system_stats answers 500",
    ),
    (
        "STANDIN_NEVER_READY",
        "1: startup never finishes (the port is never bound)",
    ),
    (
        "STANDIN_CONTROL_FILE",
        "a file read at each GET /system_stats: while it holds `system_stats_500`, that route answers 500",
    ),
    (
        "STANDIN_API_KEY",
        "demand this key on every request and on /ws, like a reverse proxy (401 without it)",
    ),
    (
        "STANDIN_API_KEY_AUTH",
        "how the key must come: bearer (default), basic (the key is user:password) or header:<Name>",
    ),
    ("STANDIN_TLS_CERT", "serve HTTPS with this PEM certificate (needs STANDIN_TLS_KEY)"),
    ("STANDIN_TLS_KEY", "the PKCS#8 PEM private key of STANDIN_TLS_CERT"),
    (
        "STANDIN_MODEL_LOAD_MS",
        "fixed milliseconds of a model's load from disk (default 300)",
    ),
    (
        "STANDIN_MODEL_READ_MBPS",
        "megabytes per second a model file is read at (default 1000; its size over this is added)",
    ),
    (
        "STANDIN_MODELS_HELD",
        "models held in memory at once, the least recently used let go (default 1)",
    ),
    (
        "STANDIN_HIDE_CLASSES",
        "node classes this server lacks, separated by commas (as if their custom nodes were not installed)",
    ),
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("invalid value for {name}: '{value}' (expected {expected})")]
    Invalid {
        name: String,
        value: String,
        expected: String,
    },
    #[error("unknown variable {0} (known: {1})")]
    Unknown(String, String),
}

fn invalid(name: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid {
        name: name.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

impl Standin {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_map(&std::env::vars().collect())
    }

    pub fn from_map(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        for k in env.keys().filter(|k| k.starts_with("STANDIN_")) {
            if !VARS.iter().any(|(n, _)| n == k) {
                let known: Vec<&str> = VARS.iter().map(|v| v.0).collect();
                return Err(ConfigError::Unknown(k.clone(), known.join(", ")));
            }
        }
        let get = |n: &str| {
            env.get(n)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let int = |n: &str| -> Result<Option<u64>, ConfigError> {
            get(n)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| invalid(n, &v, "a non-negative integer"))
                })
                .transpose()
        };
        let flag = |n: &str| -> Result<bool, ConfigError> {
            match get(n).as_deref() {
                None | Some("0") | Some("false") => Ok(false),
                Some("1") | Some("true") => Ok(true),
                Some(v) => Err(invalid(n, v, "0 or 1")),
            }
        };
        let speed = match get("STANDIN_SPEED") {
            None => 1.0,
            Some(v) => match v.parse::<f64>() {
                Ok(f) if f.is_finite() && f > 0.0 => f,
                _ => return Err(invalid("STANDIN_SPEED", &v, "a number > 0")),
            },
        };
        let mut gpus = Vec::new();
        if let Some(v) = get("STANDIN_GPUS") {
            for part in v.split(',') {
                let bad = || invalid("STANDIN_GPUS", &v, "name:MiB[,name:MiB...]");
                let (name, mib) = part.trim().rsplit_once(':').ok_or_else(bad)?;
                let mib = mib.trim().parse::<u64>().map_err(|_| bad())?;
                if name.trim().is_empty() || mib == 0 {
                    return Err(bad());
                }
                gpus.push(Gpu {
                    name: name.trim().into(),
                    mib,
                });
            }
        }
        let crash_signal = match get("STANDIN_CRASH_SIGNAL") {
            None => None,
            Some(v) => Some(
                match v.trim_start_matches("SIG").to_ascii_uppercase().as_str() {
                    "KILL" | "9" => libc::SIGKILL,
                    "SEGV" | "11" => libc::SIGSEGV,
                    "ABRT" | "6" => libc::SIGABRT,
                    _ => return Err(invalid("STANDIN_CRASH_SIGNAL", &v, "KILL, SEGV or ABRT")),
                },
            ),
        };
        let crash_exit_code = match get("STANDIN_CRASH_EXIT_CODE") {
            None => 1,
            Some(v) => match v.parse::<i32>() {
                Ok(c) if (0..=255).contains(&c) => c,
                _ => return Err(invalid("STANDIN_CRASH_EXIT_CODE", &v, "an integer 0..=255")),
            },
        };
        let crash_after_prompts = int("STANDIN_CRASH_AFTER_PROMPTS")?;
        if crash_after_prompts == Some(0) {
            return Err(invalid(
                "STANDIN_CRASH_AFTER_PROMPTS",
                "0",
                "an integer >= 1",
            ));
        }
        let progress_steps = int("STANDIN_PROGRESS_STEPS")?.unwrap_or(0);
        let api_key_auth = match get("STANDIN_API_KEY_AUTH") {
            None => KeyAuth::Bearer,
            Some(v) => match v.as_str() {
                "bearer" => KeyAuth::Bearer,
                "basic" => KeyAuth::Basic,
                _ => match v.strip_prefix("header:") {
                    Some(name) if !name.trim().is_empty() => KeyAuth::Header(name.trim().into()),
                    _ => {
                        return Err(invalid(
                            "STANDIN_API_KEY_AUTH",
                            &v,
                            "bearer, basic or header:<Name>",
                        ))
                    }
                },
            },
        };
        let tls = match (get("STANDIN_TLS_CERT"), get("STANDIN_TLS_KEY")) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((c.into(), k.into())),
            (c, _) => {
                let (name, other) = if c.is_some() {
                    ("STANDIN_TLS_KEY", "STANDIN_TLS_CERT")
                } else {
                    ("STANDIN_TLS_CERT", "STANDIN_TLS_KEY")
                };
                return Err(invalid(
                    name,
                    "",
                    &format!("a PEM file, since {other} is set"),
                ));
            }
        };
        let model_read_mbps = match get("STANDIN_MODEL_READ_MBPS") {
            None => 1000.0,
            Some(v) => match v.parse::<f64>() {
                Ok(f) if f.is_finite() && f > 0.0 => f,
                _ => return Err(invalid("STANDIN_MODEL_READ_MBPS", &v, "a number > 0")),
            },
        };
        let models_held = match int("STANDIN_MODELS_HELD")? {
            Some(0) => return Err(invalid("STANDIN_MODELS_HELD", "0", "an integer >= 1")),
            n => n.unwrap_or(1) as usize,
        };
        Ok(Standin {
            model_load_ms: int("STANDIN_MODEL_LOAD_MS")?.unwrap_or(300),
            model_read_mbps,
            models_held,
            hidden_classes: get("STANDIN_HIDE_CLASSES")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            startup_delay_ms: int("STANDIN_STARTUP_DELAY_MS")?.unwrap_or(0),
            node_ms: int("STANDIN_NODE_MS")?.unwrap_or(20),
            prompt_ms: int("STANDIN_PROMPT_MS")?.unwrap_or(0),
            speed,
            progress_steps: u32::try_from(progress_steps.min(10_000)).unwrap_or(0),
            previews: flag("STANDIN_PREVIEWS")?,
            gpus,
            crash_after_prompts,
            crash_after_ms: int("STANDIN_CRASH_AFTER_MS")?,
            crash_exit_code,
            crash_signal,
            hang: flag("STANDIN_HANG")?,
            hang_after_ms: int("STANDIN_HANG_AFTER_MS")?,
            slow_ms: int("STANDIN_SLOW_MS")?.unwrap_or(0),
            fail_execution: flag("STANDIN_FAIL_EXECUTION")?,
            fail_node: get("STANDIN_FAIL_NODE"),
            system_stats_500: flag("STANDIN_SYSTEM_STATS_500")?,
            never_ready: flag("STANDIN_NEVER_READY")?,
            control_file: get("STANDIN_CONTROL_FILE").map(Into::into),
            oom_file: get("STANDIN_OOM_FILE").map(Into::into),
            api_key: get("STANDIN_API_KEY"),
            api_key_auth,
            tls,
        })
    }

    /// Whether `/system_stats` fails now (set at start, or by the control file).
    pub fn system_stats_fails(&self) -> bool {
        self.system_stats_500
            || self.control_file.as_ref().is_some_and(|f| {
                std::fs::read_to_string(f).is_ok_and(|t| t.contains("system_stats_500"))
            })
    }

    /// Wall time one executed node takes.
    pub fn node_time(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.node_ms as f64 * self.speed / 1000.0)
    }

    /// The fixed cost of a prompt (also scaled by `STANDIN_SPEED`).
    pub fn prompt_time(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.prompt_ms as f64 * self.speed / 1000.0)
    }
}

/// Ends the process the configured way (exit code or signal).
pub fn crash(cfg: &Standin, why: &str) -> ! {
    eprintln!("!!! comfyui-standin: simulated crash ({why})");
    if let Some(sig) = cfg.crash_signal {
        // SAFETY: restoring the default disposition and raising a signal at ourselves.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
    std::process::exit(cfg.crash_exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_rejects() {
        let s = Standin::from_map(&m(&[
            (
                "STANDIN_GPUS",
                "NVIDIA H100 80GB HBM3:81559,NVIDIA RTX 4090:24564",
            ),
            ("STANDIN_SPEED", "0.5"),
        ]))
        .unwrap();
        assert_eq!(s.gpus.len(), 2);
        assert_eq!(s.gpus[1].mib, 24564);
        assert_eq!(s.node_time().as_millis(), 10);
        assert!(Standin::from_map(&m(&[("STANDIN_NODE_MS", "abc")])).is_err());
        assert!(Standin::from_map(&m(&[("STANDIN_SPEED", "0")])).is_err());
        assert!(Standin::from_map(&m(&[("STANDIN_CRASH_SIGNAL", "HUP")])).is_err());
        assert!(Standin::from_map(&m(&[("STANDIN_HANG", "yes")])).is_err());
        assert!(Standin::from_map(&m(&[("STANDIN_TYPO", "1")])).is_err());
        assert_eq!(
            Standin::from_map(&m(&[("STANDIN_CRASH_SIGNAL", "SIGKILL")]))
                .unwrap()
                .crash_signal,
            Some(libc::SIGKILL)
        );
    }
}
