//! One OS process: spawn it in its own process group with its output captured,
//! signal the group, stop it (ask, wait, kill) and reap it.

use super::cause::ExitInfo;
use super::error::SupervisorError;
use super::logs::InstanceLog;
use super::spec::LaunchSpec;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How long the output readers may take to drain after the process ended
/// (a grandchild that left the group could keep a pipe open for ever).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A running child, leader of its own process group (pgid = pid).
pub struct SpawnedProcess {
    pub child: Child,
    pub pid: u32,
    pub started: Instant,
    readers: Vec<JoinHandle<()>>,
}

/// Starts the spec's command with output going to `log`.
pub fn spawn_process(
    spec: &LaunchSpec,
    log: &InstanceLog,
) -> Result<SpawnedProcess, SupervisorError> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.working_dir)
        // Python buffers a piped stdout in 8 KiB blocks: a crash would lose
        // exactly the lines that explain it. The user's envVars may override.
        .env("PYTHONUNBUFFERED", "1")
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a stop reaches whatever ComfyUI or a custom node starts,
        // and a Ctrl-C in the app's terminal does not reach ComfyUI.
        .process_group(0);
    // SAFETY: `signal` is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // A parent started without job control passes SIGINT on as ignored,
            // and Python then never installs its handler, so the clean stop
            // would do nothing (FACTS section 6). Reset it to the default.
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| SupervisorError::Spawn {
        id: spec.id.clone(),
        program: spec.program.clone(),
        source,
    })?;
    let pid = child.id().unwrap_or_default();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(copy_lines(out, log.clone())));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(copy_lines(err, log.clone())));
    }
    Ok(SpawnedProcess {
        child,
        pid,
        started: Instant::now(),
        readers,
    })
}

async fn copy_lines(stream: impl AsyncRead + Unpin, log: InstanceLog) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                log.push_line(text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

impl SpawnedProcess {
    /// Waits until the output readers reached the end of the pipes, so the log
    /// tail holds the last lines before anyone reads it.
    pub async fn drain_output(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, reader).await;
        }
    }

    /// Asks the process to exit with SIGINT (ComfyUI stops cleanly on it: exit
    /// 0, its temp folder removed; SIGTERM would kill it without cleanup), waits
    /// up to `grace`, then SIGKILLs the group. Every member of the group is
    /// killed at the end, the leader is reaped.
    pub async fn stop(&mut self, grace: Duration) -> ExitInfo {
        signal_group(self.pid, libc::SIGINT);
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                signal_group(self.pid, libc::SIGKILL);
                self.child.wait().await
            }
        };
        // What ComfyUI started (and did not stop) dies with it.
        signal_group(self.pid, libc::SIGKILL);
        self.drain_output().await;
        match status {
            Ok(s) => ExitInfo::from_status(s),
            Err(e) => {
                tracing::warn!("waiting for pid {} failed: {e}", self.pid);
                ExitInfo {
                    code: None,
                    signal: None,
                }
            }
        }
    }

    /// Kills the group at once, without waiting (for `Drop` paths).
    pub fn kill_now(&mut self) {
        signal_group(self.pid, libc::SIGKILL);
        let _ = self.child.try_wait();
    }
}

/// Sends `signal` to the process group led by `pgid`. A group that is already
/// gone is not an error.
pub fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return; // 0 or 1 would signal our own group or everything.
    }
    // SAFETY: plain syscall with checked arguments.
    unsafe { libc::killpg(pgid, signal) };
}

/// True while any process of the group exists (zombies included).
pub fn group_alive(pgid: u32) -> bool {
    let Ok(pgid) = i32::try_from(pgid) else {
        return false;
    };
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(-pgid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// True while the process exists.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
