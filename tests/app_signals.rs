//! The desktop app and the signals of the real world: SIGTERM (logout, a
//! service manager, `kill`), SIGINT (Ctrl-C) and SIGHUP (terminal closed) quit
//! it like Quit does, stopping the ComfyUI it launched; SIGKILL (the
//! out-of-memory killer) leaves that to the guardian; with "keep instances
//! running" on, the servers survive either way. The app runs on a private X
//! display and D-Bus session, with a local stand-in started at launch.

use crate::support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::standin::{comfyui_folder, free_port, http_status, standin_binary};
use support::{Display, SessionBus, APP_BIN};

struct Launched {
    app: Child,
    comfy_pid: u32,
    port: u16,
    config: tempfile::TempDir,
    _comfy: tempfile::TempDir,
    _display: Display,
    _bus: SessionBus,
}

/// Starts the app with one local instance set to start with it, and waits
/// until that ComfyUI answers.
fn launch(keep_running: bool) -> Launched {
    let display = Display::start();
    let bus = SessionBus::start();
    let config = tempfile::tempdir().unwrap();
    let comfy = comfyui_folder();
    let port = free_port();
    let instances = serde_json::json!({
        "version": "1.0",
        "instances": [{
            "id": "local", "name": "Local", "port": port,
            "comfyuiPath": comfy.path(), "pythonPath": standin_binary(),
            "gpuDevice": "cpu", "autoStart": true
        }]
    });
    std::fs::write(
        config.path().join("comfyui_instances.json"),
        serde_json::to_vec_pretty(&instances).unwrap(),
    )
    .unwrap();
    std::fs::write(
        config.path().join("settings.json"),
        serde_json::json!({"keepInstancesRunning": keep_running}).to_string(),
    )
    .unwrap();
    let app = Command::new(APP_BIN)
        .env("DISPLAY", &display.name)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("STORYCORE_CONFIG_DIR", config.path())
        .env("STORYCORE_DATA_DIR", config.path().join("data"))
        .env("STORYCORE_GATEWAY", "127.0.0.1:0")
        .env_remove("WAYLAND_DISPLAY")
        .env("GDK_BACKEND", "x11")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let record = config.path().join("data/instances/local/process.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    let comfy_pid = loop {
        if http_status(port, "/system_stats") == Some(200) {
            if let Some(pid) = read_pid(&record) {
                break pid;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the app did not start its ComfyUI within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    Launched {
        app,
        comfy_pid,
        port,
        config,
        _comfy: comfy,
        _display: display,
        _bus: bus,
    }
}

fn read_pid(record: &Path) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(record).ok()?).ok()?;
    v["pid"].as_u64().map(|p| p as u32)
}

fn group_alive(pgid: u32) -> bool {
    unsafe { libc::kill(-(pgid as i32), 0) == 0 }
}

fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

impl Launched {
    fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.app.id() as i32, signal) };
    }

    /// The app's exit, within `within`.
    fn exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.app.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.app.kill();
        let _ = self.app.wait();
        unsafe { libc::killpg(self.comfy_pid as i32, libc::SIGKILL) };
    }
}

#[test]
fn sigterm_sigint_and_sighup_quit_like_quit_and_stop_what_the_app_launched() {
    for (name, signal) in [
        ("SIGTERM", libc::SIGTERM),
        ("SIGINT", libc::SIGINT),
        ("SIGHUP", libc::SIGHUP),
    ] {
        let mut l = launch(false);
        l.signal(signal);
        let status = l
            .exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("the app did not exit within 20 s of {name}"));
        assert_eq!(status.code(), Some(0), "{name}: an orderly exit, not death");
        assert!(
            !group_alive(l.comfy_pid),
            "{name}: its ComfyUI (pid {}) outlived the app",
            l.comfy_pid
        );
        assert_eq!(http_status(l.port, "/system_stats"), None);
        assert!(
            !l.config
                .path()
                .join("data/instances/local/process.json")
                .exists(),
            "{name}: the process record of a stopped server stays"
        );
        // The app's own log says why it quit.
        let text = support::app_log_text(l.config.path());
        assert!(text.contains(&format!("{name} received")), "{name}: {text}");
    }
}

#[test]
fn a_killed_app_leaves_no_comfyui_behind() {
    let mut l = launch(false);
    l.signal(libc::SIGKILL);
    l.exit(Duration::from_secs(10))
        .expect("SIGKILL ends the app");
    assert!(
        wait_until(Duration::from_secs(15), || !group_alive(l.comfy_pid)),
        "its ComfyUI (pid {}) outlived the killed app",
        l.comfy_pid
    );
}

#[test]
fn with_keep_running_the_servers_outlive_a_quit_and_a_kill() {
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let mut l = launch(true);
        l.signal(signal);
        l.exit(Duration::from_secs(20)).expect("the app ends");
        std::thread::sleep(Duration::from_secs(2));
        assert!(group_alive(l.comfy_pid), "a kept server was stopped");
        assert_eq!(http_status(l.port, "/system_stats"), Some(200));
    }
}
