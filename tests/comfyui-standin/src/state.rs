//! Shared server state: queue, history, execution cache and WebSocket clients.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use axum::extract::ws::Message;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, Notify};

use crate::args::Args;
use crate::exec::NodeOutput;
use crate::faults::Standin;

/// `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
#[derive(Clone, Debug)]
pub struct QueueItem {
    pub number: Value,
    pub prompt_id: String,
    pub prompt: Map<String, Value>,
    pub extra_data: Value,
    pub outputs: Vec<String>,
    pub seq: u64,
}

impl QueueItem {
    pub fn to_json(&self) -> Value {
        json!([
            self.number,
            self.prompt_id,
            self.prompt,
            self.extra_data,
            self.outputs
        ])
    }
    fn key(&self) -> (f64, u64) {
        (self.number.as_f64().unwrap_or(0.0), self.seq)
    }
    pub fn client_id(&self) -> Option<String> {
        self.extra_data.get("client_id").and_then(|c| {
            c.as_str()
                .map(String::from)
                .or_else(|| (!c.is_null()).then(|| c.to_string()))
        })
    }
}

#[derive(Default)]
pub struct Inner {
    pub number: i64,
    pub seq: u64,
    /// Pending prompts, kept sorted by (number, arrival).
    pub pending: Vec<QueueItem>,
    pub running: Option<QueueItem>,
    /// prompt_id -> entry, oldest first.
    pub history: Vec<(String, Value)>,
    pub cache: HashMap<String, NodeOutput>,
    /// Node being executed and the client that submitted the running prompt.
    pub current_node: Option<(String, Option<String>)>,
    pub prompts_started: u64,
}

impl Inner {
    pub fn queue_remaining(&self) -> usize {
        self.pending.len() + usize::from(self.running.is_some())
    }
    pub fn push(&mut self, item: QueueItem) {
        let pos = self.pending.partition_point(|p| p.key() <= item.key());
        self.pending.insert(pos, item);
    }
}

pub struct Dirs {
    /// `models/`, with ComfyUI's folders (`checkpoints`, `loras`, ...).
    pub models: PathBuf,
    pub output: PathBuf,
    pub input: PathBuf,
    pub temp: PathBuf,
    pub user: PathBuf,
}

impl Dirs {
    pub fn by_type(&self, t: &str) -> Option<&PathBuf> {
        match t {
            "output" => Some(&self.output),
            "input" => Some(&self.input),
            "temp" => Some(&self.temp),
            _ => None,
        }
    }
}

struct Client {
    conn: u64,
    tx: mpsc::UnboundedSender<Message>,
    /// Its first message announced `supports_preview_metadata`.
    preview_metadata: bool,
}

pub struct App {
    pub args: Args,
    pub cfg: Standin,
    pub dirs: Dirs,
    pub object_info: Value,
    /// `/object_info` with the model files there now.
    pub catalog: crate::models::Catalog,
    /// The models in memory.
    pub held: Mutex<crate::models::Held>,
    pub system_stats: String,
    pub inner: Mutex<Inner>,
    pub work: Notify,
    pub interrupt: AtomicBool,
    pub hung: AtomicBool,
    clients: Mutex<HashMap<String, Client>>,
    next_conn: AtomicU64,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Random 128 bits from std's randomly seeded hasher (no extra dependency).
fn random_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = 0u128;
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        out = (out << 64) | h.finish() as u128;
    }
    out
}

/// uuid4 with dashes.
pub fn uuid4() -> String {
    let v = (random_u128() & !(0xF000u128 << 64) & !(0xC000u128 << 48))
        | (0x4000u128 << 64)
        | (0x8000u128 << 48);
    let s = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &s[..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..]
    )
}

/// uuid4 as 32 hex digits (WebSocket sid).
pub fn uuid4_hex() -> String {
    uuid4().replace('-', "")
}

/// Lowercase letters, like ComfyUI's temp prefix `ComfyUI_temp_xxxxx`.
pub fn random_letters(n: usize) -> String {
    let mut r = random_u128();
    (0..n)
        .map(|_| {
            let c = (b'a' + (r % 26) as u8) as char;
            r /= 26;
            c
        })
        .collect()
}

impl App {
    pub fn new(
        args: Args,
        cfg: Standin,
        dirs: Dirs,
        object_info: Value,
        system_stats: String,
    ) -> Self {
        let catalog = crate::models::Catalog::new(
            object_info.clone(),
            crate::routes::OBJECT_INFO.to_string(),
            dirs.models.clone(),
            cfg.hidden_classes.clone(),
        );
        let held = Mutex::new(crate::models::Held {
            capacity: cfg.models_held,
            files: Vec::new(),
        });
        App {
            catalog,
            held,
            args,
            cfg,
            dirs,
            object_info,
            system_stats,
            inner: Mutex::new(Inner::default()),
            work: Notify::new(),
            interrupt: AtomicBool::new(false),
            hung: AtomicBool::new(false),
            clients: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<String, Client>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn log(&self, line: &str) {
        if self.args.log_stdout {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    }

    /// ComfyUI's `send_sync(event, data, sid)`: `sid = None` broadcasts.
    pub fn send(&self, event: &str, data: Value, sid: Option<&str>) {
        if self.hung.load(Ordering::Relaxed) {
            return;
        }
        let text = json!({"type": event, "data": data}).to_string();
        let clients = self.clients();
        match sid {
            None => clients.values().for_each(|c| {
                let _ = c.tx.send(Message::Text(text.clone().into()));
            }),
            Some(sid) => {
                if let Some(c) = clients.get(sid) {
                    let _ = c.tx.send(Message::Text(text.into()));
                }
            }
        }
    }

    pub fn status_data(&self) -> Value {
        json!({"status": {"exec_info": {"queue_remaining": self.lock().queue_remaining()}}})
    }

    /// Broadcasts the `status` frame (ComfyUI's `queue_updated`).
    pub fn queue_updated(&self) {
        self.send("status", self.status_data(), None);
    }

    /// Registers a socket under `sid` (the newest socket wins) and sends the
    /// greeting frames; returns the connection id used to unregister.
    pub fn register(&self, sid: &str, tx: mpsc::UnboundedSender<Message>) -> u64 {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut status = self.status_data();
        status["sid"] = json!(sid);
        let current = self.lock().current_node.clone();
        let mut clients = self.clients();
        let _ = tx.send(Message::Text(
            json!({"type": "status", "data": status}).to_string().into(),
        ));
        if let Some((node, Some(client))) = current {
            if client == sid {
                let _ = tx.send(Message::Text(
                    json!({"type": "executing", "data": {"node": node}})
                        .to_string()
                        .into(),
                ));
            }
        }
        clients.insert(
            sid.to_string(),
            Client {
                conn,
                tx,
                preview_metadata: false,
            },
        );
        conn
    }

    /// The socket `conn` of `sid` announced `supports_preview_metadata`.
    pub fn wants_preview_metadata(&self, sid: &str, conn: u64) {
        if let Some(c) = self.clients().get_mut(sid).filter(|c| c.conn == conn) {
            c.preview_metadata = true;
        }
    }

    pub fn announced_preview_metadata(&self, sid: &str) -> bool {
        self.clients().get(sid).is_some_and(|c| c.preview_metadata)
    }

    /// A preview image to `sid`'s socket, as ComfyUI sends it: type 4 with
    /// `meta` (plus `image_type`) to a socket that announced preview
    /// metadata, else type 1.
    pub fn send_preview(&self, sid: &str, mut meta: Value, png: &[u8]) {
        if self.hung.load(Ordering::Relaxed) {
            return;
        }
        let clients = self.clients();
        let Some(c) = clients.get(sid) else { return };
        let mut frame = Vec::with_capacity(png.len() + 256);
        if c.preview_metadata {
            meta["image_type"] = json!("image/png");
            let m = meta.to_string();
            frame.extend_from_slice(&4u32.to_be_bytes());
            frame.extend_from_slice(&(m.len() as u32).to_be_bytes());
            frame.extend_from_slice(m.as_bytes());
        } else {
            frame.extend_from_slice(&1u32.to_be_bytes());
            frame.extend_from_slice(&2u32.to_be_bytes());
        }
        frame.extend_from_slice(png);
        let _ = c.tx.send(Message::Binary(frame.into()));
    }

    pub fn unregister(&self, sid: &str, conn: u64) {
        let mut clients = self.clients();
        if clients.get(sid).is_some_and(|c| c.conn == conn) {
            clients.remove(sid);
        }
    }
}
