//! The gateway: one ComfyUI address for the whole fleet. An HTTP and
//! WebSocket server speaking ComfyUI's API (as recorded in
//! `tests/comfyui-api`) whose prompts become jobs of the durable queue: written
//! ahead, placed, failed over. It holds no scheduling logic of its own.
//!
//! | file | concern |
//! | --- | --- |
//! | `routes.rs` | the HTTP routes, at the root and under `/api` |
//! | `shapes.rs` | jobs as ComfyUI's `/queue` and `/history` entries, its error bodies |
//! | `socket.rs` | `/ws`: each client's prompts as ComfyUI's messages |
//! | `uploads.rs` | `/upload/image`, `/upload/mask`: kept, sent with the prompts that read them |
//!
//! | `access.rs` | the token a gateway on the network requires |
//!
//! Loopback only unless a token is set: another address puts the fleet on
//! the network.

mod access;
mod routes;
mod shapes;
mod socket;
mod uploads;

pub use access::{Access, MIN_TOKEN_CHARS};

use crate::dispatch::JobQueue;
use crate::manager::InstanceManager;
use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The clients' uploads, in the queue's folder.
pub const UPLOADS_FOLDER: &str = "gateway-uploads";

/// Where the gateway listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8288";

pub(crate) struct GatewayState {
    pub queue: JobQueue,
    pub manager: InstanceManager,
    /// ComfyUI's per-process prompt counter (`number`).
    pub counter: AtomicI64,
    pub classes: routes::ClassCache,
    pub uploads: Arc<uploads::Uploads>,
    /// Ends the sockets when the gateway stops.
    pub cancel: CancellationToken,
}

/// A running gateway; [`stop`](Self::stop) (or dropping it) stops it.
pub struct Gateway {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{addr} is not a loopback address: a gateway on the network needs a token (set one in Settings, or STORYCORE_GATEWAY_TOKEN for storycore-engine serve), or listen on 127.0.0.1")]
    NotLoopback { addr: SocketAddr },
    #[error("the gateway cannot listen on {addr}: {source} (is another program, or another StoryCore Engine, using the port? choose another address)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl Gateway {
    /// Listens on `addr` (port 0: any free port), a loopback address, and
    /// serves until stopped. Must be called within a Tokio runtime.
    pub async fn start(
        queue: JobQueue,
        manager: InstanceManager,
        addr: SocketAddr,
    ) -> Result<Self, GatewayError> {
        Self::start_with(queue, manager, addr, Access::open()).await
    }

    /// [`start`](Self::start), with requests checked by `access`: with a
    /// token, `addr` may be any address.
    pub async fn start_with(
        queue: JobQueue,
        manager: InstanceManager,
        addr: SocketAddr,
        access: Access,
    ) -> Result<Self, GatewayError> {
        if !addr.ip().is_loopback() && !access.has_token() {
            return Err(GatewayError::NotLoopback { addr });
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let cancel = CancellationToken::new();
        let state = Arc::new(GatewayState {
            queue: queue.clone(),
            manager,
            counter: AtomicI64::new(0),
            classes: routes::ClassCache::default(),
            uploads: Arc::new(uploads::Uploads::new(queue.dir().join(UPLOADS_FOLDER))),
            cancel: cancel.clone(),
        });
        let app = routes::router(state).layer(axum::middleware::from_fn_with_state(
            access.clone(),
            access::require_token,
        ));
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!("the gateway stopped: {e}");
            }
        });
        if addr.ip().is_loopback() {
            tracing::info!(%addr, "gateway listening");
        } else {
            tracing::warn!(%addr, "gateway listening on the network: whoever has its token can run prompts on the fleet and read their outputs");
        }
        Ok(Self {
            addr,
            cancel,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening, closes the sockets, and waits for the server.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
