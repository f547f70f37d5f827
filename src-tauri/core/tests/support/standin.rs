//! Launches the ComfyUI stand-in exactly as the app launches ComfyUI
//! (`<bin> main.py --listen 127.0.0.1 --port P --disable-auto-launch`, working
//! directory = a folder holding `main.py`), in its own process group, killed on
//! drop. The binary is built once per test process so `cargo test -p
//! storycore-core` alone is enough.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `cargo build --quiet <args>` in the workspace and answers the
/// artifact at `<target>/debug/<artifact>`. Tests call it once per process so
/// `cargo nextest run -p <package>` alone builds what they launch.
///
/// The README's test command builds every target of the workspace first (the
/// stand-in and the examples with them) and then says so with
/// `STORYCORE_TESTS_PREBUILT=1`: a test then takes the artifact as it is,
/// rather than each of a few hundred test processes queueing on cargo's lock
/// for a build with nothing to do.
pub fn cargo_build(args: &[&str], artifact: &str) -> PathBuf {
    // This file is also compiled into the root package's tests (#[path]):
    // find the workspace root by its Cargo.lock rather than a fixed depth.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .expect("a Cargo.lock above the package");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let bin = target.join("debug").join(artifact);
    if std::env::var_os("STORYCORE_TESTS_PREBUILT").is_some() {
        assert!(
            bin.is_file(),
            "STORYCORE_TESTS_PREBUILT is set but {} is missing: build the workspace's targets first \
             (scripts/test.sh does), or unset it",
            bin.display()
        );
        return bin;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .arg("build")
        .arg("--quiet")
        .args(args)
        .current_dir(workspace)
        .status()
        .unwrap_or_else(|e| panic!("running cargo build {args:?}: {e}"));
    assert!(status.success(), "cargo build {args:?} failed");
    assert!(bin.is_file(), "no {artifact} at {}", bin.display());
    bin
}

/// Path of the stand-in binary, building it on first use.
pub fn standin_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| cargo_build(&["-p", "comfyui-standin"], "comfyui-standin"))
}

/// A free TCP port on 127.0.0.1 (free when asked; a race is possible and the
/// launcher retries).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding an ephemeral port")
        .port()
}

#[derive(Default, Clone)]
pub struct StandInBuilder {
    env: Vec<(String, String)>,
    port: Option<u16>,
    wait_ready: bool,
}

impl StandInBuilder {
    /// A `STANDIN_*` behaviour switch, e.g. `("STANDIN_SYSTEM_STATS_500", "1")`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Use this port (e.g. to restart a server where a client expects it).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Do not wait for `/system_stats` to answer 200 (for servers that never will).
    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    pub fn start(self) -> StandIn {
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = self.port.unwrap_or_else(free_port);
            let dir = tempfile::tempdir().expect("temp folder for the stand-in");
            std::fs::write(dir.path().join("main.py"), "# ComfyUI stand-in\n").unwrap();
            let log = std::fs::File::create(dir.path().join("standin.log")).unwrap();
            let mut cmd = Command::new(standin_binary());
            cmd.args(["main.py", "--listen", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .arg("--disable-auto-launch")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            for (k, v) in &self.env {
                cmd.env(k, v);
            }
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
            let child = cmd.spawn().expect("spawning the stand-in");
            let tls = self.env.iter().any(|(k, _)| k == "STANDIN_TLS_CERT");
            let mut s = StandIn {
                child,
                port,
                dir,
                tls,
            };
            if !self.wait_ready {
                return s;
            }
            match s.wait_ready(READY_TIMEOUT) {
                Ok(()) => return s,
                Err(e) => last_err = e,
            }
            // Port taken between free_port() and bind, or a slow start: retry once more.
            if self.port.is_some() {
                break;
            }
        }
        panic!("the stand-in did not become ready: {last_err}");
    }
}

pub struct StandIn {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// Serves HTTPS (`STANDIN_TLS_CERT`).
    tls: bool,
}

impl StandIn {
    pub fn builder() -> StandInBuilder {
        StandInBuilder {
            wait_ready: true,
            ..StandInBuilder::default()
        }
    }

    /// A ready stand-in with default behaviour.
    pub fn start() -> StandIn {
        Self::builder().start()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn folder(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("standin.log")).unwrap_or_default()
    }

    /// Kills the whole process group at once and reaps it: a crash, not a stop.
    pub fn kill(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: plain syscall on a process group this struct created.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited with {status}; log:\n{}", self.log()));
            }
            // Behind a demanded key, 401 is the answer of a ready server;
            // over TLS, the line it prints once it listens.
            let ready = if self.tls {
                self.log().contains("To see the GUI go to: https://")
            } else {
                matches!(http_status(self.port, "/system_stats"), Some(200 | 401))
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("no 200 from /system_stats within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The status code of a plain GET, or None when nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A "ComfyUI folder" for a local instance: a temp folder holding `main.py`.
pub fn comfyui_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.py"), "# ComfyUI stand-in\n").unwrap();
    dir
}

/// `STANDIN_*` (or any) variables as an instance's `envVars`; none: unset.
pub fn env_vars(env: &[(&str, &str)]) -> Option<std::collections::BTreeMap<String, String>> {
    (!env.is_empty()).then(|| {
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

/// A local instance whose "Python" is the stand-in: the app launches it as
/// `<stand-in> main.py <flags>` in `comfyui`, exactly as it launches ComfyUI.
pub fn local_config(id: &str, comfyui: &Path, port: u16) -> storycore_types::InstanceConfig {
    let mut c = storycore_types::InstanceConfig::new(id, id, port.into());
    c.comfyui_path = Some(comfyui.display().to_string());
    c.python_path = Some(standin_binary().display().to_string());
    c
}
