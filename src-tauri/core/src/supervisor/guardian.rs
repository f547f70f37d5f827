//! The guardian: a tiny process beside the app that stops the ComfyUI servers
//! the app launched when the app dies without stopping them (SIGKILL, the
//! out-of-memory killer, a crash), unless the user chose to keep them running.
//!
//! Why not a parent-death signal (`PR_SET_PDEATHSIG`) on each child: it fires
//! when the *thread* that spawned the child ends, not the process, and it is
//! fixed at spawn, so turning "keep instances running" on later could not
//! spare the servers already running. The guardian instead reads commands on
//! its stdin, a pipe whose only writer is the app: `add <pgid>` / `del <pgid>`
//! as process groups start and end, `keep` / `stop` as the setting changes.
//! When the app ends, however it ends, the kernel closes the pipe; the
//! guardian reads end-of-file and, unless told `keep`, sends SIGINT to every
//! group still listed (ComfyUI's clean stop), waits up to the stop grace, then
//! SIGKILLs what is left, and exits. An orderly quit stops the servers itself
//! and leaves the guardian nothing to do.
//!
//! It is `/bin/sh` running the script below: present on every Linux system,
//! nothing to ship or install, and its whole behaviour fits on one screen. It
//! has its own process group and ignores the signals a terminal or a logout
//! sends, so it outlives the app it watches.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

const SCRIPT: &str = r#"
trap '' INT HUP TERM QUIT PIPE
groups=' '
keep=0
grace=$1
while IFS= read -r line; do
  case $line in
    'add '*) groups="$groups${line#add } " ;;
    'del '*) g=${line#del }; rest=' '
             for x in $groups; do [ "$x" = "$g" ] || rest="$rest$x "; done
             groups=$rest ;;
    keep) keep=1 ;;
    stop) keep=0 ;;
  esac
done
[ "$keep" = 1 ] && exit 0
alive=''
for g in $groups; do
  if kill -INT -$g 2>/dev/null; then kill -CONT -$g 2>/dev/null; alive="$alive $g"; fi
done
n=0
while [ -n "$alive" ] && [ "$n" -lt "$grace" ]; do
  sleep 0.1
  n=$((n + 1))
  still=''
  for g in $alive; do kill -0 -$g 2>/dev/null && still="$still $g"; done
  alive=$still
done
for g in $alive; do kill -KILL -$g 2>/dev/null; done
exit 0
"#;

/// The app's side of the guardian. Every call is cheap (one short write); if
/// the guardian has gone (someone killed it), the next call starts a new one
/// and tells it everything again.
pub struct Guardian {
    grace: Duration,
    state: Mutex<State>,
}

struct State {
    proc: Option<(Child, ChildStdin)>,
    groups: BTreeSet<u32>,
    keep: bool,
    released: bool,
}

impl Guardian {
    /// A guardian that gives each group `grace` to stop after SIGINT. The
    /// process starts at the first group watched.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            state: Mutex::new(State {
                proc: None,
                groups: BTreeSet::new(),
                keep: false,
                released: false,
            }),
        }
    }

    /// Stop this group if the app dies.
    pub fn watch(&self, pgid: u32) {
        if pgid > 1 {
            self.change(|s| s.groups.insert(pgid), &format!("add {pgid}"));
        }
    }

    /// The group has ended (or was stopped by the app): forget it.
    pub fn unwatch(&self, pgid: u32) {
        self.change(|s| s.groups.remove(&pgid), &format!("del {pgid}"));
    }

    /// "Keep instances running": when the app dies, leave the groups alone.
    pub fn set_keep(&self, keep: bool) {
        self.change(
            |s| std::mem::replace(&mut s.keep, keep) != keep,
            if keep { "keep" } else { "stop" },
        );
    }

    /// The groups it would stop now (for tests and logs).
    pub fn watched(&self) -> Vec<u32> {
        self.lock().groups.iter().copied().collect()
    }

    /// The guardian's pid, once it runs.
    pub fn pid(&self) -> Option<u32> {
        self.lock().proc.as_ref().map(|(c, _)| c.id())
    }

    /// The app is done with it (orderly exit): closes the pipe, so the
    /// guardian stops whatever is still listed (nothing, after an orderly
    /// stop; nothing either when told to keep them) and exits.
    pub fn release(&self) {
        let mut s = self.lock();
        s.released = true;
        if let Some((mut child, stdin)) = s.proc.take() {
            drop(stdin);
            // Reap it without blocking the caller.
            std::thread::spawn(move || child.wait());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn change(&self, apply: impl FnOnce(&mut State) -> bool, line: &str) {
        let mut s = self.lock();
        if !apply(&mut s) || s.released {
            return;
        }
        if s.groups.is_empty() && s.proc.is_none() {
            return; // nothing to guard yet: the process starts with the first group
        }
        let sent = match s.proc.as_mut() {
            Some((_, stdin)) => writeln!(stdin, "{line}").and_then(|()| stdin.flush()),
            None => Err(std::io::ErrorKind::NotConnected.into()),
        };
        if sent.is_err() {
            if let Some((mut old, _)) = s.proc.take() {
                tracing::warn!("the process guardian had gone: starting a new one");
                let _ = old.kill();
                std::thread::spawn(move || old.wait());
            }
            match self.spawn(&s) {
                Ok(p) => s.proc = Some(p),
                Err(e) => tracing::error!(
                    "cannot start the process guardian (/bin/sh): {e}; if the app is killed, the ComfyUI servers it launched will keep running"
                ),
            }
        }
    }

    /// Starts the guardian and tells it the whole current state.
    fn spawn(&self, s: &State) -> std::io::Result<(Child, ChildStdin)> {
        use std::os::unix::process::CommandExt;
        let tenths = (self.grace.as_millis() / 100).max(1);
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("storycore-guardian")
            .arg(tenths.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut all = String::new();
        for g in &s.groups {
            all.push_str(&format!("add {g}\n"));
        }
        all.push_str(if s.keep { "keep\n" } else { "stop\n" });
        stdin.write_all(all.as_bytes())?;
        stdin.flush()?;
        tracing::debug!(pid = child.id(), "process guardian started");
        Ok((child, stdin))
    }
}

impl std::fmt::Debug for Guardian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guardian")
            .field("pid", &self.pid())
            .field("groups", &self.watched())
            .finish()
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.release();
    }
}
