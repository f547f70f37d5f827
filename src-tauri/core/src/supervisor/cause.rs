//! Why a ComfyUI process ended, in a few words, from its exit status and the
//! last lines it wrote. Pure: tested with sample tails.

use serde::{Deserialize, Serialize};

/// How a process ended: an exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// The status of a process this run of the app did not start (re-attached):
    /// it cannot be waited for, so how it ended is not known.
    pub const UNKNOWN: ExitInfo = ExitInfo {
        code: None,
        signal: None,
    };

    pub fn from_status(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Self {
            code: status.code(),
            signal: status.signal(),
        }
    }

    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "signal {} ({s})", signal_name(s)),
            (None, None) => write!(
                f,
                "ended (exit status unknown: re-attached, not started by this run)"
            ),
        }
    }
}

pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// What a crash looks like it was about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ExitCause {
    PortInUse,
    MissingPythonModule {
        module: String,
    },
    CudaOutOfMemory,
    /// SIGKILL from outside: most often the kernel's out-of-memory killer.
    KilledByOs,
    Crashed {
        signal: String,
    },
    /// The app stopped it: it did not answer within its start timeout.
    StartTimeout {
        seconds: u64,
    },
    /// The app stopped it: it stayed alive without answering (hung).
    Hung {
        seconds: u64,
    },
}

impl ExitCause {
    /// A sentence for the user.
    pub fn describe(&self) -> String {
        match self {
            Self::PortInUse => "the port is already in use by another program".into(),
            Self::MissingPythonModule { module } => format!(
                "the Python module '{module}' is missing: install it in ComfyUI's environment (pip install {module})"
            ),
            Self::CudaOutOfMemory => {
                "the GPU ran out of memory (CUDA out of memory): use a smaller model or batch, or another GPU".into()
            }
            Self::KilledByOs => {
                "killed (SIGKILL), most likely by the system for lack of memory (out-of-memory killer)".into()
            }
            Self::Crashed { signal } => format!("ComfyUI crashed ({signal})"),
            Self::StartTimeout { seconds } => format!(
                "it did not answer within {seconds} s of its start, so the app stopped it; check the end of its log (a missing model folder, a custom node that fails to load, a port another program holds), or raise its start timeout if it loads many custom nodes"
            ),
            Self::Hung { seconds } => format!(
                "its process stayed alive but did not answer for at least {seconds} s (hung), so the app killed it"
            ),
        }
    }
}

/// The recognisable cause, if any. The log is searched from its end, because
/// the last error is the one that ended the process.
pub fn detect_exit_cause(exit: &ExitInfo, tail: &[String]) -> Option<ExitCause> {
    for line in tail.iter().rev() {
        let lower = line.to_ascii_lowercase();
        if lower.contains("address already in use") {
            return Some(ExitCause::PortInUse);
        }
        if let Some(module) = missing_module(line) {
            return Some(ExitCause::MissingPythonModule { module });
        }
        if lower.contains("cuda out of memory") || lower.contains("outofmemoryerror") {
            return Some(ExitCause::CudaOutOfMemory);
        }
    }
    match exit.signal {
        Some(libc::SIGKILL) => Some(ExitCause::KilledByOs),
        Some(s @ (libc::SIGSEGV | libc::SIGABRT | libc::SIGBUS)) => Some(ExitCause::Crashed {
            signal: signal_name(s).into(),
        }),
        _ => None,
    }
}

/// `ModuleNotFoundError: No module named 'x'` -> `x` (also `x.y` -> `x`, the
/// package to install).
fn missing_module(line: &str) -> Option<String> {
    let rest = line.split("No module named ").nth(1)?;
    let name = rest.trim().trim_matches(|c| c == '\'' || c == '"');
    let top = name.split('.').next()?.trim();
    (!top.is_empty()).then(|| top.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }
    const EXIT_1: ExitInfo = ExitInfo {
        code: Some(1),
        signal: None,
    };

    #[test]
    fn port_in_use() {
        let tail = lines("Starting server\n\nTraceback (most recent call last):\n  File \"main.py\", line 1\nOSError: [Errno 98] error while attempting to bind on address ('127.0.0.1', 8188): address already in use");
        assert_eq!(
            detect_exit_cause(&EXIT_1, &tail),
            Some(ExitCause::PortInUse)
        );
    }

    #[test]
    fn missing_module_names_the_package() {
        let tail = lines("Traceback (most recent call last):\n  File \"/opt/comfy/ComfyUI/app/frontend_management.py\", line 12, in <module>\n    import requests\nModuleNotFoundError: No module named 'requests'");
        let cause = detect_exit_cause(&EXIT_1, &tail).unwrap();
        assert_eq!(
            cause,
            ExitCause::MissingPythonModule {
                module: "requests".into()
            }
        );
        assert!(cause.describe().contains("pip install requests"));
        let dotted = lines("ModuleNotFoundError: No module named 'torchvision.transforms'");
        assert_eq!(
            detect_exit_cause(&EXIT_1, &dotted),
            Some(ExitCause::MissingPythonModule {
                module: "torchvision".into()
            })
        );
    }

    #[test]
    fn cuda_out_of_memory() {
        let tail = lines("!!! Exception during processing !!! CUDA out of memory. Tried to allocate 2.00 GiB\ntorch.OutOfMemoryError: CUDA out of memory.");
        assert_eq!(
            detect_exit_cause(&EXIT_1, &tail),
            Some(ExitCause::CudaOutOfMemory)
        );
    }

    #[test]
    fn signals_without_a_log_hint() {
        let killed = ExitInfo {
            code: None,
            signal: Some(libc::SIGKILL),
        };
        assert_eq!(
            detect_exit_cause(&killed, &lines("Prompt executed")),
            Some(ExitCause::KilledByOs)
        );
        assert!(ExitCause::KilledByOs.describe().contains("out-of-memory"));
        let segv = ExitInfo {
            code: None,
            signal: Some(libc::SIGSEGV),
        };
        assert_eq!(
            detect_exit_cause(&segv, &[]),
            Some(ExitCause::Crashed {
                signal: "SIGSEGV".into()
            })
        );
        assert_eq!(detect_exit_cause(&EXIT_1, &lines("something else")), None);
        assert_eq!(killed.to_string(), "signal SIGKILL (9)");
    }

    #[test]
    fn the_last_error_wins() {
        let tail = lines("ModuleNotFoundError: No module named 'foo'\n(handled, optional node skipped)\nOSError: [Errno 98] address already in use");
        assert_eq!(
            detect_exit_cause(&EXIT_1, &tail),
            Some(ExitCause::PortInUse)
        );
    }
}
