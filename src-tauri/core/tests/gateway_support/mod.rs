//! A gateway's client in the tests: a fleet of stand-ins behind a gateway,
//! and ComfyUI's API spoken to it over HTTP and `/ws`.
#![allow(dead_code)]

use crate::dispatch_fleet::{attached, fast_options, Fleet};
use crate::support::standin::StandIn;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use storycore_core::gateway::Gateway;
use tokio_tungstenite::tungstenite::Message;

/// Running stand-ins (`gpu0`, `gpu1`, ...) and a gateway in front of them.
pub struct GatewayFleet {
    pub standins: Vec<StandIn>,
    pub fleet: Fleet,
    pub gw: Gateway,
    pub base: String,
    pub http: reqwest::Client,
}

impl GatewayFleet {
    pub async fn of(standins: Vec<StandIn>) -> Self {
        let configs = standins
            .iter()
            .enumerate()
            .map(|(i, s)| attached(&format!("gpu{i}"), s.port(), 1))
            .collect();
        let fleet = Fleet::open(configs, fast_options()).await;
        for i in 0..standins.len() {
            fleet.start(&format!("gpu{i}")).await;
        }
        let gw = start(&fleet).await;
        Self {
            base: format!("http://{}", gw.addr()),
            standins,
            fleet,
            gw,
            http: reqwest::Client::new(),
        }
    }

    pub async fn stop(self) {
        self.gw.stop().await;
        self.fleet.queue.shutdown().await;
    }
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub fn workflow(prefix: &str, color: u32) -> Value {
    json!({
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage",
              "inputs": {"images": ["1", 0], "filename_prefix": prefix}, "_meta": {"title": "Save"}}
    })
}

pub async fn open_ws(gw: &Gateway, client: &str) -> Socket {
    let url = format!("ws://{}/ws?clientId={}", gw.addr(), urlencode(client));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The next frame of any kind, within 30 s.
pub async fn next_message(ws: &mut Socket) -> Message {
    tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .expect("a frame within 30 s")
        .expect("the socket open")
        .unwrap()
}

/// The next JSON frame (binary frames are not expected here).
pub async fn next(ws: &mut Socket) -> Value {
    loop {
        match next_message(ws).await {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Binary(b) => panic!("an unasked-for binary frame of {} bytes", b.len()),
            _ => continue,
        }
    }
}

/// Says, as the client's first message, that it takes previews with their
/// metadata (ComfyUI's `feature_flags`); returns the server's answer.
pub async fn announce_preview_metadata(ws: &mut Socket) -> Value {
    use futures_util::SinkExt;
    ws.send(Message::Text(
        json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    next(ws).await
}

/// Frames until `executing` with `node: null` for `prompt`, by type.
pub async fn until_done(ws: &mut Socket, prompt: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let f = next(ws).await;
        let done = f["type"] == "executing"
            && f["data"]["node"].is_null()
            && f["data"]["prompt_id"] == prompt;
        seen.push(f);
        if done {
            return seen;
        }
    }
}

pub fn types(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["type"].as_str().unwrap().to_string())
        .collect()
}

pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

pub async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    http.post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn start(fleet: &Fleet) -> Gateway {
    Gateway::start(
        fleet.queue.clone(),
        fleet.manager.clone(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}
