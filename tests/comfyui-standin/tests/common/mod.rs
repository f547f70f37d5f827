//! Test harness: launches the real binary in a temp "ComfyUI folder".
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

mod replay;
pub use replay::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_comfyui-standin");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 10 ms until it returns `Some` or `timeout` passes.
pub async fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub child: Child,
    pub base: String,
    pub http: reqwest::Client,
}

pub struct Launch<'a> {
    pub args: Vec<&'a str>,
    pub env: Vec<(&'a str, &'a str)>,
    pub wait_ready: bool,
}

impl Default for Launch<'_> {
    fn default() -> Self {
        Launch {
            args: vec![],
            env: vec![],
            wait_ready: true,
        }
    }
}

impl Server {
    pub async fn start() -> Server {
        Self::launch(Launch::default()).await
    }

    pub async fn with_env(env: Vec<(&str, &str)>) -> Server {
        Self::launch(Launch {
            env,
            ..Default::default()
        })
        .await
    }

    pub async fn launch(l: Launch<'_>) -> Server {
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("main.py"), "# ComfyUI stand-in folder\n").unwrap();
            let port = free_port();
            let child = spawn_in(dir.path(), port, &l.args, &l.env);
            let mut s = Server {
                dir,
                port,
                child,
                base: format!("http://127.0.0.1:{port}"),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap(),
            };
            if !l.wait_ready {
                return s;
            }
            let spawned = Instant::now();
            s.wait_ready().await;
            // Another test's server took the port between free_port() and
            // the bind, and ours exited (at once, as ComfyUI does): what
            // answered was not ours. A server told to crash may have ended
            // by itself.
            let ends_itself = l.env.iter().any(|(k, _)| k.starts_with("STANDIN_CRASH"));
            if ends_itself {
                return s;
            }
            let grace = Duration::from_millis(300).saturating_sub(spawned.elapsed());
            tokio::time::sleep(grace).await;
            if s.child.try_wait().unwrap().is_none() {
                return s;
            }
        }
        panic!("the stand-in could not bind a free port three times");
    }

    pub async fn wait_ready(&self) {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = self
                .http
                .get(self.url("/system_stats"))
                .timeout(Duration::from_millis(500))
                .send()
                .await
            {
                if r.status().is_success() || r.status().as_u16() == 500 {
                    return;
                }
            }
            assert!(Instant::now() < end, "stand-in did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn ws(&self, client_id: Option<&str>) -> Ws {
        let url = match client_id {
            Some(c) => format!("ws://127.0.0.1:{}/ws?clientId={c}", self.port),
            None => format!("ws://127.0.0.1:{}/ws", self.port),
        };
        let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut ws = Ws {
            stream,
            frames: vec![],
        };
        ws.wait_count(1).await;
        ws
    }

    pub async fn wait_history(&self, prompt_id: &str) -> Value {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let h = self.get_json(&format!("/history/{prompt_id}")).await;
            if let Some(e) = h.get(prompt_id) {
                return e.clone();
            }
            assert!(Instant::now() < end, "no history for {prompt_id}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the process to exit; returns its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        wait_for(timeout, "process exit", || child.try_wait().unwrap()).await
    }

    pub fn stderr(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(e) = self.child.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn_in(dir: &Path, port: u16, args: &[&str], env: &[(&str, &str)]) -> Child {
    let port_s = port.to_string();
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .arg("main.py")
        .args(["--port", &port_s])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("STANDIN_") || k == "CUDA_VISIBLE_DEVICES" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    // A test run started without job control (a CI step in the background)
    // passes SIGINT on as ignored, and the stand-in, like ComfyUI, keeps it
    // ignored: the tests that send SIGINT want it as a terminal sends it.
    // SAFETY: async-signal-safe calls only, between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client that records every text frame as JSON.
pub struct Ws {
    pub stream: WsStream,
    pub frames: Vec<Value>,
}

impl Ws {
    async fn read_one(&mut self, end: Instant) -> bool {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.stream.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                self.frames.push(serde_json::from_str(t.as_str()).unwrap());
                true
            }
            // A binary frame, recorded as `{"type": "binary", "event": N,
            // "meta": <type 4's JSON>, "image": <bytes>}`.
            Ok(Some(Ok(Message::Binary(b)))) => {
                let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
                let event = u32_at(0);
                let (meta, image) = if event == 4 {
                    let n = u32_at(4) as usize;
                    (serde_json::from_slice(&b[8..8 + n]).unwrap(), &b[8 + n..])
                } else {
                    (Value::Null, &b[8..])
                };
                self.frames.push(serde_json::json!({"type": "binary", "event": event, "meta": meta, "image": image.len()}));
                true
            }
            Ok(Some(Ok(_))) => true,
            _ => false,
        }
    }

    /// Reads until `n` frames have been received in total.
    pub async fn wait_count(&mut self, n: usize) {
        let end = Instant::now() + Duration::from_secs(15);
        while self.frames.len() < n {
            if !self.read_one(end).await {
                panic!(
                    "got {} of {n} frames: {:?}",
                    self.frames.len(),
                    self.types()
                );
            }
        }
    }

    /// Reads until a frame satisfies `pred`; returns its index.
    pub async fn wait_until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> usize {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(i) = self.frames.iter().position(&pred) {
                return i;
            }
            if !self.read_one(end).await {
                panic!("timed out waiting for {what}; frames: {:?}", self.types());
            }
        }
    }

    /// Like [`Ws::wait_until`] but only frames at index >= `from` count.
    pub async fn wait_after(
        &mut self,
        from: usize,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> usize {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(i) = self.frames.iter().skip(from).position(&pred) {
                return from + i;
            }
            if !self.read_one(end).await {
                panic!("timed out waiting for {what}; frames: {:?}", self.types());
            }
        }
    }

    /// Reads until the final `executing {node: null, prompt_id}` of `prompt_id`.
    pub async fn wait_done(&mut self, prompt_id: &str) -> usize {
        self.wait_until("executing null", |f| {
            f["type"] == "executing"
                && f["data"]["node"].is_null()
                && f["data"]["prompt_id"] == prompt_id
        })
        .await
    }

    pub fn types(&self) -> Vec<String> {
        self.frames
            .iter()
            .map(|f| f["type"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// Says, as the first message, that this client takes previews with
    /// their metadata (ComfyUI's `feature_flags`), and reads the answer.
    pub async fn announce_preview_metadata(&mut self) {
        use futures_util::SinkExt;
        self.stream
            .send(Message::Text(
                serde_json::json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}})
                    .to_string()
                    .into(),
            ))
            .await
            .unwrap();
        let n = self.frames.len();
        self.wait_count(n + 1).await;
    }

    /// Frames received so far without waiting further (drains what is buffered).
    pub async fn drain(&mut self) {
        let end = Instant::now() + Duration::from_millis(1);
        while self.read_one(end).await {}
    }
}

pub fn assert_shape(what: &str, expected: &Value, actual: &Value) {
    let d = shape_diff(expected, actual);
    assert!(
        d.is_empty(),
        "{what}: shape differs from the recording:\n{}\nactual: {actual}",
        d.join("\n")
    );
}
