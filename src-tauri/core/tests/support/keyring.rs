//! A real Secret Service for tests: a private D-Bus session bus with GNOME
//! Keyring on it, its login keyring unlocked with a test password and kept in
//! a temp folder. Both processes run in their own groups, killed on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestKeyring {
    /// `DBUS_SESSION_BUS_ADDRESS` of the bus the keyring serves.
    pub bus_address: String,
    dir: tempfile::TempDir,
    bus: Child,
    daemon: Option<Child>,
}

fn spawn_group(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0).spawn()
}

fn kill_group(child: &mut Child) {
    // SAFETY: signals the group this helper made; the child is reaped below.
    unsafe { libc::killpg(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

impl TestKeyring {
    /// A bus with an unlocked keyring on it.
    pub fn start() -> Self {
        let mut k = Self::bus_only();
        k.start_daemon();
        k
    }

    /// A bus with no keyring started on it: D-Bus activation may start one,
    /// locked, that nobody can unlock (a headless box).
    pub fn bus_only() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut bus = spawn_group(
            Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--print-address=1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .expect("cannot start dbus-daemon: run scripts/test.sh, which installs it");
        let mut line = String::new();
        BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("dbus-daemon did not print its address");
        TestKeyring {
            bus_address: line.trim().to_string(),
            dir,
            bus,
            daemon: None,
        }
    }

    fn env(&self, cmd: &mut Command) {
        let run = self.dir.path().join("run");
        let _ = std::fs::create_dir_all(&run);
        cmd.env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
            .env("XDG_RUNTIME_DIR", &run)
            .env("XDG_DATA_HOME", self.dir.path().join("data"))
            .env("HOME", self.dir.path());
    }

    fn start_daemon(&mut self) {
        let mut cmd = Command::new("gnome-keyring-daemon");
        cmd.args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.env(&mut cmd);
        let mut daemon = spawn_group(&mut cmd)
            .expect("cannot start gnome-keyring-daemon: run scripts/test.sh, which installs it");
        // The password that creates and unlocks the login keyring; EOF ends it.
        let mut stdin = daemon.stdin.take().unwrap();
        stdin.write_all(b"storycore-test").unwrap();
        drop(stdin);
        self.daemon = Some(daemon);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.serves_secrets() {
            assert!(
                Instant::now() < deadline,
                "gnome-keyring-daemon did not take org.freedesktop.secrets within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn serves_secrets(&self) -> bool {
        let mut cmd = Command::new("dbus-send");
        cmd.args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            "string:org.freedesktop.secrets",
        ]);
        self.env(&mut cmd);
        cmd.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
            .unwrap_or(false)
    }

    /// The secret the app stored under `reference`, read with libsecret's
    /// `secret-tool`, as another program on the desktop would.
    pub fn lookup(&self, reference: &str) -> Option<String> {
        let mut cmd = Command::new("secret-tool");
        cmd.args([
            "lookup",
            "service",
            "storycore-engine",
            "username",
            reference,
        ]);
        self.env(&mut cmd);
        let out = cmd
            .output()
            .expect("cannot run secret-tool: run scripts/test.sh, which installs it");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
            .filter(|s| !s.is_empty())
    }
}

impl Drop for TestKeyring {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.as_mut() {
            kill_group(d);
        }
        kill_group(&mut self.bus);
        // Whatever the bus activated exits with it; give it a moment.
        std::thread::sleep(Duration::from_millis(50));
    }
}
