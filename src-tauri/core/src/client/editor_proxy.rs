//! ComfyUI's own web editor for an instance that a browser cannot open by
//! itself: one behind a proxy that wants an API key (the page's requests and
//! its `/ws` carry no key), or one with a self-signed certificate. A small
//! server on the loopback address passes every request and the WebSocket
//! through to the instance, adding the key and trusting the instance's CA.
//!
//! Only the window the app opens may use it: its first request carries a
//! random token, answered with a cookie (HttpOnly, SameSite=Strict) and a
//! redirect; every later request must bring the cookie. Another program on
//! the machine gets 403, not the key's access.

use super::ComfyClient;
use axum::body::Body;
use axum::extract::ws::{Message as AxMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_util::sync::CancellationToken;

const COOKIE: &str = "storycore_proxy";
const TOKEN_PARAM: &str = "storycore_token";
/// Largest request body passed on (an image upload).
const MAX_BODY: usize = 512 << 20;
/// A request to ComfyUI through the proxy (a model list, an upload).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

struct ProxyState {
    client: ComfyClient,
    token: String,
}

/// A running proxy; dropping it stops it.
pub struct EditorProxy {
    /// What the window opens first (carries the one-time token).
    pub url: String,
    cancel: CancellationToken,
}

impl Drop for EditorProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl EditorProxy {
    /// Starts a proxy to `client`'s server on 127.0.0.1 and a free port.
    pub async fn start(client: ComfyClient) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let state = Arc::new(ProxyState {
            client,
            token: token.clone(),
        });
        let app = axum::Router::new().fallback(handle).with_state(state);
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!("the editor proxy stopped: {e}");
            }
        });
        Ok(Self {
            url: format!("http://127.0.0.1:{port}/?{TOKEN_PARAM}={token}"),
            cancel,
        })
    }
}

fn has_cookie(headers: &HeaderMap, token: &str) -> bool {
    let want = format!("{COOKIE}={token}");
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.split(';').any(|p| p.trim() == want))
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_string(),
    )
        .into_response()
}

async fn handle(State(st): State<Arc<ProxyState>>, req: Request) -> Response {
    let query_token = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|p| p.strip_prefix(&format!("{TOKEN_PARAM}=")))
    });
    if query_token == Some(st.token.as_str()) {
        // The window's first request: the cookie, then the page itself.
        let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", st.token);
        return (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, cookie),
                (header::LOCATION, req.uri().path().to_string()),
            ],
        )
            .into_response();
    }
    if !has_cookie(req.headers(), &st.token) {
        return plain(
            StatusCode::FORBIDDEN,
            "403: this address is StoryCore Engine's window onto a ComfyUI instance; open it from the app (Open ComfyUI).",
        );
    }
    let wants_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if wants_ws {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/ws".into());
        let (mut parts, _) = req.into_parts();
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(up) => {
                let client = st.client.clone();
                up.on_upgrade(move |socket| bridge(socket, client, path))
            }
            Err(e) => e.into_response(),
        };
    }
    forward(&st.client, req).await
}

/// Hop-by-hop headers, and what the proxy sets itself.
fn passes(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
            | "cookie"
            // ComfyUI refuses a request whose Origin is not its own host
            // (403): the page's origin is this proxy's.
            | "origin"
            | "referer"
    )
}

/// Passes one request to ComfyUI and its answer back (also the gateway's
/// way to an instance's read-only routes).
pub(crate) async fn forward(client: &ComfyClient, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return plain(StatusCode::PAYLOAD_TOO_LARGE, &format!("413: {e}")),
    };
    let mut out = client
        .http
        .request(parts.method.clone(), client.url(path))
        .timeout(REQUEST_TIMEOUT)
        .body(body);
    for (name, value) in parts.headers.iter().filter(|(n, _)| passes(n)) {
        out = out.header(name, value);
    }
    if let Some(auth) = &client.auth {
        out = out.header(auth.0.clone(), auth.1.clone());
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                &format!("502: ComfyUI at {} did not answer: {e}", client.base_url()),
            )
        }
    };
    let mut answer = Response::builder().status(resp.status().as_u16());
    for (name, value) in resp.headers().iter().filter(|(n, _)| passes(n)) {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            answer = answer.header(n, v);
        }
    }
    answer
        .body(Body::from_stream(resp.bytes_stream()))
        .unwrap_or_else(|e| plain(StatusCode::BAD_GATEWAY, &format!("502: {e}")))
}

/// Passes frames both ways until either side closes.
async fn bridge(socket: WebSocket, client: ComfyClient, path: String) {
    let upstream = match client.open_raw_ws(&path).await {
        Ok(u) => u,
        Err(e) => {
            tracing::info!(
                url = client.base_url(),
                "the editor's /ws could not be opened: {e}"
            );
            return;
        }
    };
    let (mut up_tx, mut up_rx) = upstream.split();
    let (mut down_tx, mut down_rx) = socket.split();
    let to_server = async {
        while let Some(Ok(m)) = down_rx.next().await {
            let m = match m {
                AxMessage::Text(t) => TMessage::Text(t.as_str().into()),
                AxMessage::Binary(b) => TMessage::Binary(b),
                AxMessage::Ping(p) => TMessage::Ping(p),
                AxMessage::Pong(p) => TMessage::Pong(p),
                AxMessage::Close(_) => break,
            };
            if up_tx.send(m).await.is_err() {
                break;
            }
        }
        let _ = up_tx.close().await;
    };
    let to_page = async {
        while let Some(Ok(m)) = up_rx.next().await {
            let m = match m {
                TMessage::Text(t) => AxMessage::Text(t.as_str().into()),
                TMessage::Binary(b) => AxMessage::Binary(b),
                TMessage::Ping(p) => AxMessage::Ping(p),
                TMessage::Pong(p) => AxMessage::Pong(p),
                TMessage::Close(_) => break,
                TMessage::Frame(_) => continue,
            };
            if down_tx.send(m).await.is_err() {
                break;
            }
        }
        let _ = down_tx.close().await;
    };
    tokio::select! {
        _ = to_server => {}
        _ = to_page => {}
    }
}
