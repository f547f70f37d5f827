//! End-to-end harness: each test gets its own X display (Xvfb), its own D-Bus
//! session, its own config folder and free ports, and drives the real app in the
//! real WebKitGTK webview through tauri-driver. Everything it starts runs in its
//! own process group and is killed on drop, panics included.
#![allow(dead_code)]

use fantoccini::{Client, ClientBuilder, Locator};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const APP_BIN: &str = env!("CARGO_BIN_EXE_storycore-engine");

/// The app binary WebDriver launches: `STORYCORE_E2E_APP` when set (an
/// absolute path, e.g. a release build that `scripts/window-cost.sh`
/// measures), else the one cargo built for the tests.
pub fn app_bin() -> String {
    std::env::var("STORYCORE_E2E_APP").unwrap_or_else(|_| APP_BIN.to_string())
}

/// A process started in its own group; the whole group is killed on drop.
pub struct Group(pub Child);

impl Group {
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        cmd.spawn().map(Group)
    }
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = self.pid();
        unsafe { libc::killpg(pgid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

pub use standin::free_port;

/// A private X server. Tests never share a display, so screenshots show one app.
pub struct Display {
    pub name: String,
    _proc: Group,
}

impl Display {
    pub fn start() -> Self {
        let mut child = Group::spawn(
            Command::new("Xvfb")
                .args([
                    "-displayfd",
                    "1",
                    "-screen",
                    "0",
                    "1280x800x24",
                    "-nolisten",
                    "tcp",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .expect("cannot start Xvfb: run scripts/test.sh, which installs it");
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("Xvfb did not report its display");
        let n = line.trim();
        assert!(!n.is_empty(), "Xvfb exited without a display number");
        Display {
            name: format!(":{n}"),
            _proc: child,
        }
    }

    /// Saves the whole screen as a PNG (ImageMagick's `import`).
    pub fn screenshot(&self, path: &Path) -> bool {
        Command::new("import")
            .args(["-display", &self.name, "-window", "root"])
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

/// A private D-Bus session bus.
pub struct SessionBus {
    pub address: String,
    _proc: Group,
}

impl SessionBus {
    pub fn start() -> Self {
        let mut child = Group::spawn(
            Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--print-address=1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .expect("cannot start dbus-daemon: run scripts/test.sh, which installs it");
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("dbus-daemon did not print its address");
        SessionBus {
            address: line.trim().to_string(),
            _proc: child,
        }
    }
}

/// Everything the app logged into `<config>/logs/` (its daily files).
pub fn app_log_text(config_dir: &Path) -> String {
    std::fs::read_dir(config_dir.join("logs"))
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// Where screenshots go: target/e2e-screenshots/<test>.png.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The app, launched by tauri-driver in a fresh environment.
pub struct App {
    pub name: String,
    pub client: Client,
    pub config_dir: tempfile::TempDir,
    pub display: Display,
    pub bus: SessionBus,
    _driver: Group,
}

impl App {
    /// Launches the app with extra environment variables and opens a WebDriver session.
    pub async fn launch(name: &str, env: &[(&str, &str)]) -> App {
        Self::launch_prepared(name, env, |_| {}).await
    }

    /// As [`Self::launch`], after `prepare` wrote what the config folder
    /// should hold at start (old or broken files, settings).
    pub async fn launch_prepared(
        name: &str,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
    ) -> App {
        let display = Display::start();
        let bus = SessionBus::start();
        let config_dir = tempfile::tempdir().unwrap();
        prepare(config_dir.path());
        let port = free_port();
        let native = free_port();
        let mut cmd = Command::new(tauri_driver());
        cmd.args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .env("DISPLAY", &display.name)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("STORYCORE_CONFIG_DIR", config_dir.path())
        // Never the user's real data folder.
        .env("STORYCORE_DATA_DIR", config_dir.path().join("data"))
        // Apps started together must not fight over the gateway's port.
        .env("STORYCORE_GATEWAY", "127.0.0.1:0")
        .env_remove("WAYLAND_DISPLAY")
        .env("GDK_BACKEND", "x11")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let driver =
            Group::spawn(&mut cmd).expect("cannot start tauri-driver: run scripts/test.sh");

        let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(
            serde_json::json!({"browserName": "wry", "tauri:options": {"application": app_bin()}}),
        )
        .unwrap();
        // tauri-driver may forward the first request before WebKitWebDriver listens:
        // retry for a bounded time instead of failing at once.
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::native()
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => panic!("no WebDriver session after 30 s: {e}"),
            }
        };
        App {
            name: name.to_string(),
            client,
            config_dir,
            display,
            bus,
            _driver: driver,
        }
    }

    /// The pid of tauri-driver, whose descendants are WebKitWebDriver, the
    /// app and the app's WebKit processes.
    pub fn driver_pid(&self) -> i32 {
        self._driver.pid()
    }

    /// Waits until the element exists and its text satisfies `pred`; returns the text.
    pub async fn wait_text(&self, css: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::from("<element not found>");
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if let Ok(t) = el.text().await {
                    if pred(&t) {
                        return t;
                    }
                    last = t;
                }
            }
            if Instant::now() > deadline {
                self.save_screenshot().await;
                panic!(
                    "{}: {css} never showed {what}; last text: {last:?}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn attr(&self, css: &str, attr: &str) -> Option<String> {
        let el = self.client.find(Locator::Css(css)).await.ok()?;
        el.attr(attr).await.ok().flatten()
    }

    pub async fn click(&self, css: &str) {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: no {css} to click: {e}", self.name));
        // WebKitWebDriver does not scroll inside overflowing panels by itself.
        let arg = serde_json::to_value(&el).unwrap();
        let _ = self
            .client
            .execute("arguments[0].scrollIntoView({block: 'center'});", vec![arg])
            .await;
        el.click()
            .await
            .unwrap_or_else(|e| panic!("{}: cannot click {css}: {e}", self.name));
    }

    /// Picks `action` (its `data-action`) in the "More" menu of instance
    /// `id`'s card.
    pub async fn card_menu(&self, id: &str, action: &str) {
        let card = format!(".instance-card[data-id='{id}']");
        self.click(&format!("{card} .menu-button")).await;
        self.click(&format!("{card} .menu-item[data-action='{action}']"))
            .await;
    }

    /// Chooses `value` in a `<select>` as the user's choice would (clicking an
    /// option opens GTK's native popup menu, which WebDriver cannot reach):
    /// the value is set and a `change` event sent, which the page handles.
    pub async fn choose(&self, css: &str, value: &str) {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: no {css} to choose in: {e}", self.name));
        let arg = serde_json::to_value(&el).unwrap();
        self.client
            .execute(
                "const [s, v] = arguments; s.value = v;\
                 if (s.value !== v) throw new Error('no option ' + v);\
                 s.dispatchEvent(new Event('change', {bubbles: true}));",
                vec![arg, value.into()],
            )
            .await
            .unwrap_or_else(|e| panic!("{}: cannot choose {value} in {css}: {e}", self.name));
    }

    /// Ctrl+<key> as the user presses it (keyboard actions, not synthetic events).
    pub async fn press_ctrl(&self, key: char) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        use fantoccini::key::Key;
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down {
                value: Key::Control.into(),
            })
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key })
            .then(KeyAction::Up {
                value: Key::Control.into(),
            });
        self.client
            .perform_actions(keys)
            .await
            .unwrap_or_else(|e| panic!("{}: Ctrl+{key} failed: {e}", self.name));
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: no {css} to type into: {e}", self.name))
            .send_keys(text)
            .await
            .unwrap();
    }

    /// Replaces the text of an input, as a user selecting all and typing.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: no {css} to fill: {e}", self.name));
        el.clear().await.unwrap();
        if !text.is_empty() {
            el.send_keys(text).await.unwrap();
        }
    }

    /// Answers GTK's file or folder chooser titled `title` (a regex) with
    /// `path`, as a user would: Ctrl+L, type the path, Return.
    pub async fn choose_in_file_dialog(&self, title: &str, path: &Path) {
        let win = self.wait_window(title).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.xdotool(&["windowfocus", "--sync", &win]);
        self.xdotool(&["key", "--clearmodifiers", "ctrl+l"]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.xdotool(&["type", "--delay", "20", &path.display().to_string()]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.xdotool(&["key", "Return"]);
    }

    /// Answers GTK's save dialog titled `title` with `path`. The name field
    /// comes with the suggested name's stem selected (typing would keep its
    /// ".json"): select all of it first, as a user typing a whole path does.
    pub async fn save_in_file_dialog(&self, title: &str, path: &Path) {
        let win = self.wait_window(title).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.xdotool(&["windowfocus", "--sync", &win]);
        self.xdotool(&["key", "--clearmodifiers", "ctrl+a"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.xdotool(&["type", "--delay", "20", &path.display().to_string()]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.xdotool(&["key", "Return"]);
    }

    /// The current `value` of an input (the property, as the user sees it).
    pub async fn value(&self, css: &str) -> String {
        self.client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.value : null;",
                vec![css.into()],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("{}: no {css} with a value", self.name))
    }

    /// Runs xdotool on this app's display (native windows WebDriver cannot
    /// reach, such as the GTK file chooser); answers its stdout.
    pub fn xdotool(&self, args: &[&str]) -> String {
        // Bounded: `windowfocus --sync` waits for ever on a window that
        // never takes the focus; a test must fail instead.
        let out = Command::new("timeout")
            .arg("15")
            .arg("xdotool")
            .args(args)
            .env("DISPLAY", &self.display.name)
            .output()
            .expect("cannot run xdotool: run scripts/test.sh, which installs it");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits for a native window titled `title`; answers its X window id.
    pub async fn wait_window(&self, title: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // Visible only: a chooser used before may linger unmapped, and
            // focusing it would wait for ever.
            let found = self.xdotool(&["search", "--onlyvisible", "--name", &format!("^{title}$")]);
            if let Some(id) = found.lines().next() {
                return id.to_string();
            }
            if Instant::now() > deadline {
                self.save_screenshot().await;
                panic!("{}: no window titled {title:?} appeared", self.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts a notification server on this app's private session bus; returns
    /// it (killed on drop) and the file where each received `Notify` lands.
    pub fn notification_server(&self) -> (Group, PathBuf) {
        let out = self.config_dir.path().join("notifications.jsonl");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/notification_server.py");
        let mut child = Group::spawn(
            Command::new("/usr/bin/python3")
                .arg(script)
                .arg(&out)
                .env("DBUS_SESSION_BUS_ADDRESS", &self.bus.address)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .expect("cannot start the notification server (needs python3-dbus: run scripts/test.sh)");
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the notification server did not start"
        );
        (child, out)
    }

    /// Asks the backend for instance `id` until `done` accepts it; fails with
    /// `what` and the last answer after `within`.
    pub async fn wait_instance(
        &self,
        id: &str,
        within: Duration,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let i = self
                .invoke("get_instance", serde_json::json!({ "id": id }))
                .await
                .unwrap();
            if done(&i) {
                return i;
            }
            assert!(Instant::now() < deadline, "{what}: {i}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Calls a Tauri command from inside the page, exactly as the UI does;
    /// `Err` carries the command's `ApiError` as JSON.
    pub async fn invoke(
        &self,
        cmd: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, serde_json::Value> {
        let out = self
            .client
            .execute_async(
                "const [cmd, args, done] = arguments;\
                 window.__TAURI__.core.invoke(cmd, args)\
                   .then(v => done({ok: v === undefined ? null : v}), e => done({err: e}));",
                vec![cmd.into(), args],
            )
            .await
            .unwrap_or_else(|e| panic!("{}: invoke {cmd} failed in WebDriver: {e}", self.name));
        match out.get("ok") {
            Some(v) => Ok(v.clone()),
            None => Err(out.get("err").cloned().unwrap_or(out)),
        }
    }

    /// The webview's own screenshot, saved as target/e2e-screenshots/<name>.png.
    pub async fn save_screenshot(&self) {
        self.save_screenshot_as(&self.name.clone()).await
    }

    /// A screenshot under another name (several per test).
    pub async fn save_screenshot_as(&self, name: &str) {
        let path = screenshot_dir().join(format!("{name}.png"));
        // WebKit paints asynchronously: let two frames pass so the picture shows
        // the page as the test last saw it, not an older paint.
        let _ = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 50)));",
                vec![],
            )
            .await;
        match self.client.screenshot().await {
            Ok(png) => std::fs::write(&path, png).unwrap(),
            Err(_) => {
                self.display.screenshot(&path);
            }
        }
    }

    /// Takes the last screenshot and ends the session.
    pub async fn finish(self) {
        self.save_screenshot().await;
        let _ = self.client.clone().close().await;
    }
}

fn tauri_driver() -> PathBuf {
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".cargo/bin/tauri-driver");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("tauri-driver")
}

/// The app on a private bus whose keyring (GNOME Keyring, unlocked) it
/// uses, probing every 300 ms, its window up.
pub async fn app_with_keyring(name: &str) -> (keyring::TestKeyring, App) {
    let keyring = keyring::TestKeyring::start();
    let app = App::launch(
        name,
        &[
            ("STORYCORE_HEALTH_INTERVAL_MS", "300"),
            ("DBUS_SESSION_BUS_ADDRESS", &keyring.bus_address),
        ],
    )
    .await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    (keyring, app)
}

/// The app with one attached stand-in, "GPU 0" (`instance_001`), started.
pub async fn app_with_one_instance(name: &str) -> (standin::StandIn, App) {
    let server = standin::StandIn::start();
    let app = App::launch(name, &[("STORYCORE_HEALTH_INTERVAL_MS", "300")]).await;
    app.wait_text("#status-heartbeat", "a beat", |t| t.contains("beat"))
        .await;
    app.invoke(
        "create_instance",
        serde_json::json!({"config": {"id": "", "name": "GPU 0", "port": server.port(), "host": "127.0.0.1"}}),
    )
    .await
    .unwrap();
    app.invoke("start_instance", serde_json::json!({"id": "instance_001"}))
        .await
        .unwrap();
    (server, app)
}

/// The ComfyUI stand-in launcher, shared with the core crate's tests.
#[path = "../../src-tauri/core/tests/support/standin.rs"]
pub mod standin;

/// A real Secret Service (GNOME Keyring) on a private bus, shared with the
/// core crate's tests.
#[path = "../../src-tauri/core/tests/support/keyring.rs"]
pub mod keyring;
