//! The `/ws?clientId=<id>` event stream as a long-lived task: it connects,
//! forwards typed messages, and reconnects with back-off when the server goes
//! away, until its cancellation token fires or the consumer drops the receiver.

use super::messages::{parse_binary, parse_text, WsMessage};
use super::ComfyClient;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// What the consumer of a stream sees.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    /// The socket is open; messages follow. Sent again after each reconnection,
    /// so a consumer knows it may have missed messages in between.
    Connected,
    /// The socket closed or could not be opened. Sent once per outage, not at
    /// every failed attempt.
    Disconnected {
        reason: String,
        retry_in: Duration,
    },
    Message(WsMessage),
}

#[derive(Debug, Clone)]
pub struct WsOptions {
    /// Prompts submitted with this `client_id` report their progress here.
    pub client_id: String,
    /// Ask for type-4 previews (with their prompt and node ids) instead of type 1.
    pub announce_preview_metadata: bool,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    /// Frames buffered for a slow consumer before the reader waits for it.
    pub buffer: usize,
}

impl WsOptions {
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            announce_preview_metadata: true,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            buffer: 1024,
        }
    }
}

enum End {
    /// Stop for good: cancelled, or nobody listens any more.
    Stop,
    /// The connection was lost; `had_frames` tells a good connection from one
    /// that the server accepted and dropped at once.
    Lost { reason: String, had_frames: bool },
}

impl ComfyClient {
    /// `ws://host:port[/prefix]/ws?clientId=<id>`.
    pub fn ws_url(&self, client_id: &str) -> String {
        let mut url =
            reqwest::Url::parse(&format!("{}/ws", self.ws_base())).expect("base URL was validated");
        url.query_pairs_mut().append_pair("clientId", client_id);
        url.to_string()
    }

    /// Starts the stream task on the current Tokio runtime and returns its
    /// events. It stops when `cancel` fires or the receiver is dropped.
    pub fn open_events(
        &self,
        options: WsOptions,
        cancel: CancellationToken,
    ) -> mpsc::Receiver<WsEvent> {
        let (tx, rx) = mpsc::channel(options.buffer.max(1));
        let url = self.ws_url(&options.client_id);
        let conn = Connect {
            auth: self.auth.clone(),
            tls: self.tls.clone(),
        };
        tokio::spawn(run(url, conn, options, tx, cancel));
        rx
    }
}

impl ComfyClient {
    /// A bare WebSocket to `path_and_query` on this server (`/ws?clientId=…`),
    /// with the API key and the instance's CA: for the editor proxy, which
    /// passes frames through as they are.
    pub(crate) async fn open_raw_ws(
        &self,
        path_and_query: &str,
    ) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
        let conn = Connect {
            auth: self.auth.clone(),
            tls: self.tls.clone(),
        };
        conn.open(&format!("{}{path_and_query}", self.ws_base()))
            .await
    }

    /// The base URL with `ws://` or `wss://` for its scheme.
    fn ws_base(&self) -> String {
        let base = self.base_url();
        base.strip_prefix("https://")
            .map(|rest| format!("wss://{rest}"))
            .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
            .unwrap_or_else(|| base.to_string())
    }
}

/// What a connection needs beside its URL: the API key and the instance's CA.
struct Connect {
    auth: Option<std::sync::Arc<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>>,
    tls: Option<native_tls::TlsConnector>,
}

impl Connect {
    async fn open(&self, url: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request()?;
        if let Some(auth) = &self.auth {
            // tungstenite's `http` is the same crate and version as reqwest's.
            req.headers_mut().insert(auth.0.clone(), auth.1.clone());
        }
        let connector = self
            .tls
            .clone()
            .map(tokio_tungstenite::Connector::NativeTls);
        tokio_tungstenite::connect_async_tls_with_config(req, None, false, connector)
            .await
            .map(|(s, _)| s)
    }
}

async fn run(
    url: String,
    conn: Connect,
    opts: WsOptions,
    tx: mpsc::Sender<WsEvent>,
    cancel: CancellationToken,
) {
    let mut backoff = opts.initial_backoff;
    let mut outage_reported = false;
    loop {
        let attempt = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tx.closed() => return,
            r = tokio::time::timeout(opts.connect_timeout, conn.open(&url)) => r,
        };
        let reason = match attempt {
            Ok(Ok(stream)) => {
                outage_reported = false;
                if !deliver(&tx, WsEvent::Connected, &cancel).await {
                    return;
                }
                match pump(stream, &opts, &tx, &cancel).await {
                    End::Stop => return,
                    End::Lost { reason, had_frames } => {
                        if had_frames {
                            backoff = opts.initial_backoff;
                        }
                        reason
                    }
                }
            }
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r))) if r.status() == 401 => {
                format!("{url} answered 401: check the API key")
            }
            Ok(Err(e)) => format!("could not connect to {url}: {e}"),
            Err(_) => format!(
                "no WebSocket handshake from {url} within {} ms",
                opts.connect_timeout.as_millis()
            ),
        };
        if !outage_reported {
            outage_reported = true;
            tracing::info!(%url, %reason, "ComfyUI event stream down, reconnecting");
            let ev = WsEvent::Disconnected {
                reason,
                retry_in: backoff,
            };
            if !deliver(&tx, ev, &cancel).await {
                return;
            }
        }
        // Nobody may be listening during a long outage: stop rather than retry forever.
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tx.closed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(opts.max_backoff);
    }
}

/// Hands an event to the consumer, waiting while its buffer is full; false when
/// the consumer is gone or the stream was cancelled meanwhile.
async fn deliver(tx: &mpsc::Sender<WsEvent>, ev: WsEvent, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        r = tx.send(ev) => r.is_ok(),
    }
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn pump(
    mut stream: Socket,
    opts: &WsOptions,
    tx: &mpsc::Sender<WsEvent>,
    cancel: &CancellationToken,
) -> End {
    if opts.announce_preview_metadata {
        // Must be the first message on the socket for the server to honour it.
        let hello = r#"{"type":"feature_flags","data":{"supports_preview_metadata":true}}"#;
        if let Err(e) = stream.send(Message::Text(hello.into())).await {
            return End::Lost {
                reason: format!("announcing feature flags failed: {e}"),
                had_frames: false,
            };
        }
    }
    let mut had_frames = false;
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => {
                let _ = stream.close(None).await;
                return End::Stop;
            }
            f = stream.next() => f,
        };
        let msg = match frame {
            Some(Ok(Message::Text(t))) => parse_text(t.as_str()).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "ComfyUI sent a WebSocket frame this app cannot read");
                WsMessage::Unknown {
                    kind: "unreadable".into(),
                    data: Value::String(t.as_str().to_string()),
                }
            }),
            Some(Ok(Message::Binary(b))) => match parse_binary(&b) {
                Ok(f) => WsMessage::Binary(f),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an unreadable binary WebSocket frame");
                    continue;
                }
            },
            Some(Ok(Message::Close(c))) => {
                let why = c.map(|c| format!("{} {}", c.code, c.reason));
                return End::Lost {
                    reason: format!("the server closed the stream ({})", why.unwrap_or_default()),
                    had_frames,
                };
            }
            // Pings are answered by tungstenite itself.
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return End::Lost {
                    reason: format!("the stream broke: {e}"),
                    had_frames,
                }
            }
            None => {
                return End::Lost {
                    reason: "the stream ended".into(),
                    had_frames,
                }
            }
        };
        had_frames = true;
        if !deliver(tx, WsEvent::Message(msg), cancel).await {
            return End::Stop;
        }
    }
}
