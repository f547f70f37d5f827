//! `/ws`: ComfyUI's WebSocket endpoint.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::state::{uuid4_hex, App};

pub async fn handler(
    ws: WebSocketUpgrade,
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let sid = q
        .get("clientId")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(uuid4_hex);
    ws.on_upgrade(move |socket| client(app, socket, sid))
}

async fn client(app: Arc<App>, socket: WebSocket, sid: String) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
    let conn = app.register(&sid, tx.clone());
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let mut first = true;
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(t) if std::mem::take(&mut first) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v["type"] == "feature_flags" && v["data"].is_object() {
                    if v["data"]["supports_preview_metadata"] == json!(true) {
                        app.wants_preview_metadata(&sid, conn);
                    }
                    let reply = json!({"type": "feature_flags", "data": crate::routes::features()});
                    let _ = tx.send(Message::Text(reply.to_string().into()));
                }
            }
            Message::Binary(_) => first = false,
            Message::Close(_) => break,
            _ => {}
        }
    }
    app.unregister(&sid, conn);
    writer.abort();
}
