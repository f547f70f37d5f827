//! One OS process: spawn it in its own process group with its output going to
//! its log file, or adopt one a previous run of the app left running; signal
//! the group, stop it (ask, wait, kill) and reap it.

use super::cause::ExitInfo;
use super::error::SupervisorError;
use super::logs::InstanceLog;
use super::spec::LaunchSpec;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long the log reader may take to read the last lines after the process
/// ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the liveness of an adopted process (not our child: it cannot be
/// waited for) is checked.
const ADOPTED_POLL: Duration = Duration::from_millis(100);

/// A running process, leader of its own process group (pgid = pid).
pub struct SpawnedProcess {
    /// None for an adopted process: started by an earlier run of the app.
    child: Option<Child>,
    pub pid: u32,
    pub started: Instant,
    reader: Option<(CancellationToken, JoinHandle<()>)>,
}

/// Starts the spec's command with its output appended to `log`'s file.
pub fn spawn_process(
    spec: &LaunchSpec,
    log: &InstanceLog,
) -> Result<SpawnedProcess, SupervisorError> {
    let io_err = |e| SupervisorError::io(&spec.id, "open the log", log.path(), e);
    let out = log.writer().map_err(io_err)?;
    let err = out.try_clone().map_err(io_err)?;
    let reader = log.reader().map_err(io_err)?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.working_dir)
        // Python buffers stdout to a file in 8 KiB blocks: a crash would lose
        // exactly the lines that explain it. The user's envVars may override.
        .env("PYTHONUNBUFFERED", "1")
        .envs(&spec.env)
        .stdin(Stdio::null())
        // The file itself, not a pipe to the app: a server left running when
        // the app exits (or dies) keeps a working stdout.
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        // Its own group: a stop reaches whatever ComfyUI or a custom node starts,
        // and a Ctrl-C in the app's terminal does not reach ComfyUI.
        .process_group(0);
    let umask = crate::privacy::inherited_umask() as libc::mode_t;
    // SAFETY: `signal` and `umask` are async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // The app's own files are private (umask 0077); ComfyUI's images
            // get the umask the user started the app with.
            libc::umask(umask);
            // A parent started without job control passes SIGINT on as ignored,
            // and Python then never installs its handler, so the clean stop
            // would do nothing (FACTS section 6). Reset it to the default.
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| SupervisorError::Spawn {
        id: spec.id.clone(),
        program: spec.program.clone(),
        source,
    })?;
    let pid = child.id().unwrap_or_default();
    Ok(SpawnedProcess {
        child: Some(child),
        pid,
        started: Instant::now(),
        reader: Some(start_reader(reader)),
    })
}

/// Takes over a process (and its group) that an earlier run of the app left
/// running; its output still goes to `log`'s file.
pub fn adopt_process(pid: u32, log: &InstanceLog) -> SpawnedProcess {
    log.load_recent();
    let reader = log.reader().ok().map(start_reader);
    SpawnedProcess {
        child: None,
        pid,
        started: Instant::now(),
        reader,
    }
}

fn start_reader(reader: super::logs::LogReader) -> (CancellationToken, JoinHandle<()>) {
    let done = CancellationToken::new();
    let task = tokio::spawn(reader.run(done.clone()));
    (done, task)
}

impl SpawnedProcess {
    /// Waits until the process has ended. An adopted one is polled; its
    /// exit status is unknown.
    pub async fn wait(&mut self) -> ExitInfo {
        match self.child.as_mut() {
            Some(child) => match child.wait().await {
                Ok(s) => ExitInfo::from_status(s),
                Err(e) => {
                    tracing::warn!("waiting for pid {} failed: {e}", self.pid);
                    ExitInfo::UNKNOWN
                }
            },
            None => {
                while pid_alive(self.pid) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                ExitInfo::UNKNOWN
            }
        }
    }

    /// Waits until the log reader has read the file to its end, so the log
    /// tail holds the last lines before anyone reads it.
    pub async fn drain_output(&mut self) {
        if let Some((done, task)) = self.reader.take() {
            done.cancel();
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, task).await;
        }
    }

    /// Asks the process to exit with SIGINT (ComfyUI stops cleanly on it: exit
    /// 0, its temp folder removed; SIGTERM would kill it without cleanup), waits
    /// up to `grace`, then SIGKILLs the group. Every member of the group is
    /// killed at the end, the leader is reaped. A zero grace kills at once
    /// (a hung process cannot honour SIGINT).
    pub async fn stop(&mut self, grace: Duration) -> ExitInfo {
        if !grace.is_zero() {
            signal_group(self.pid, libc::SIGINT);
            // A stopped (SIGSTOP) process only acts on SIGINT once it runs.
            signal_group(self.pid, libc::SIGCONT);
        }
        let exit = match tokio::time::timeout(grace, self.wait()).await {
            Ok(exit) => exit,
            Err(_) => {
                signal_group(self.pid, libc::SIGKILL);
                self.wait().await
            }
        };
        // What ComfyUI started (and did not stop) dies with it.
        signal_group(self.pid, libc::SIGKILL);
        if self.child.is_none() {
            // Not our child: its parent (init, or a subreaper) reaps it; the
            // group is gone only then.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while group_alive(self.pid) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.drain_output().await;
        exit
    }

    /// Kills the group at once, without waiting (for `Drop` paths).
    pub fn kill_now(&mut self) {
        signal_group(self.pid, libc::SIGKILL);
        if let Some(child) = self.child.as_mut() {
            let _ = child.try_wait();
        }
        if let Some((done, _)) = &self.reader {
            done.cancel();
        }
    }

    /// Stops reading the log and forgets the process, which keeps running.
    pub fn release(mut self) -> u32 {
        if let Some((done, _)) = self.reader.take() {
            done.cancel();
        }
        self.pid
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

/// True while the process exists and has not ended (a zombie waiting to be
/// reaped by its parent counts as ended).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid_i) = i32::try_from(pid) else {
        return false;
    };
    if pid_i <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid_i, 0) };
    let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && process_state(pid) != Some('Z')
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `T` stopped, `Z` zombie...).
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name in parentheses may hold spaces: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}
