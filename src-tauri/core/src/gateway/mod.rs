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
//! | `userdata.rs` | the editor's own data (`/userdata`, `/settings`, `/users`), kept here |
//! | `user_import.rs` | that data as earlier versions left it on the instances, gathered once |
//!
//! | `access.rs` | the token a gateway on the network requires |
//! | `hosts.rs` | the `Host` a request may name (no DNS rebinding) |
//! | `tokens.rs` | named tokens, one per person, kept as hashes |
//! | `tls.rs` | HTTPS on a network address: the user's certificate or one made and kept |
//!
//! Loopback only unless a token is set: another address puts the fleet on
//! the network.

mod access;
mod fleet;
mod held;
mod history;
mod hosts;
mod routes;
mod shapes;
mod socket;
mod state;
mod tls;
mod tokens;
mod uploads;
mod user_files;
mod user_import;
mod userdata;

pub use access::{Access, MIN_TOKEN_CHARS};
pub use tls::{certificate_names, fingerprint, TlsIdentity, TLS_FOLDER, TRUST_FILE};
pub use tokens::{Caller, NamedToken, TokenBook, TokenError, TOKENS_FILE};
pub use userdata::USER_FOLDER;

use crate::dispatch::JobQueue;
use crate::manager::InstanceManager;
use state::GatewayState;
use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Where the gateway listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8288";

/// The clients' uploads, in the queue's folder.
pub const UPLOADS_FOLDER: &str = "gateway-uploads";

/// A running gateway; [`stop`](Self::stop) (or dropping it) stops it.
pub struct Gateway {
    addr: SocketAddr,
    /// The certificate it serves HTTPS with (on a network address only).
    tls: Option<TlsIdentity>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{addr} is not a loopback address: a gateway on the network needs a token (set one in Settings, or STORYCORE_GATEWAY_TOKEN for storycore-engine serve), or listen on 127.0.0.1")]
    NotLoopback { addr: SocketAddr },
    #[error("{addr} is on the network, where the gateway serves HTTPS: give it a certificate and key (Settings, or storycore-engine serve --tls-cert FILE --tls-key FILE), let it make one, or choose plain HTTP explicitly (the token and prompts then travel in clear)")]
    NeedsTls { addr: SocketAddr },
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
        let network = !addr.ip().is_loopback();
        if network && !access.has_token() {
            return Err(GatewayError::NotLoopback { addr });
        }
        if network && access.tls().is_none() && !access.plain_http() {
            return Err(GatewayError::NeedsTls { addr });
        }
        let tls = access.tls().filter(|_| network).cloned();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| GatewayError::Bind { addr, source })?;
        gather_editor_data(&queue, &manager).await;
        let cancel = CancellationToken::new();
        let state = Arc::new(GatewayState {
            queue: queue.clone(),
            counter: AtomicI64::new(0),
            classes: fleet::ClassCache::default(),
            uploads: Arc::new(held::Uploads::new(queue.dir().join(UPLOADS_FOLDER))),
            userdata: user_files::UserFiles::new(queue.dir().join(USER_FOLDER)),
            cancel: cancel.clone(),
            tokens: access.tokens().cloned(),
            max_waiting: access.max_waiting(),
        });
        if let Some(book) = access.tokens() {
            book.spawn_watcher(cancel.clone());
        }
        // The host is checked first: a page on a foreign name gets 403
        // whatever else its request carries.
        let app = routes::router(state)
            .layer(axum::middleware::from_fn_with_state(
                access::Gatekeeper::new(access.clone(), network || access.has_shared_token()),
                access::require_token,
            ))
            .layer(axum::middleware::from_fn_with_state(
                hosts::HostCheck::new(addr, access.hosts()),
                hosts::require_host,
            ));
        let stop = cancel.clone();
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let serving = tls.clone();
        let task = tokio::spawn(async move {
            let served = match serving {
                Some(tls) => {
                    use axum::serve::ListenerExt;
                    // Tapped: so the peer's address reaches the handlers.
                    let listener =
                        tls::TlsListener::new(listener, &tls, stop.clone()).tap_io(|_| ());
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await
                }
                None => {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await
                }
            };
            if let Err(e) = served {
                tracing::error!("the gateway stopped: {e}");
            }
        });
        if !network {
            tracing::info!(%addr, "gateway listening");
        } else if let Some(t) = &tls {
            tracing::warn!(%addr, fingerprint = t.fingerprint(), trust = %t.trust_file().display(), "gateway listening on the network over HTTPS: whoever has a token can run prompts on the fleet");
        } else {
            tracing::warn!(%addr, "gateway listening on the network over PLAIN HTTP, as chosen: tokens and prompts travel in clear; whoever has a token can run prompts on the fleet");
        }
        Ok(Self {
            addr,
            tls,
            cancel,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether it serves HTTPS (on a network address with a certificate).
    pub fn https(&self) -> bool {
        self.tls.is_some()
    }

    /// The certificate it serves HTTPS with.
    pub fn tls(&self) -> Option<&TlsIdentity> {
        self.tls.as_ref()
    }

    /// Its base URL: `http://` or `https://` and the address.
    pub fn url(&self) -> String {
        let scheme = if self.https() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops listening, closes the sockets, and waits for the server.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// The editor's files earlier versions left on the local instances,
/// gathered into the gateway's folder the first time (see `user_import.rs`).
async fn gather_editor_data(queue: &JobQueue, manager: &InstanceManager) {
    let root = queue.dir().join(USER_FOLDER).join(tokens::DEFAULT_USER);
    let instances = manager.instances_dir();
    let done =
        tokio::task::spawn_blocking(move || user_import::import_once(&root, &instances)).await;
    match done {
        Ok(Ok(got)) if got.files > 0 => tracing::info!(
            files = got.files,
            instances = ?got.instances,
            "gateway: the editor's workflows and settings saved on the instances gathered into the gateway's folder"
        ),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("gateway: the editor's files on the instances could not be gathered ({e}); they stay where they are, and the next start tries again"),
        Err(e) => tracing::warn!("gateway: gathering the editor's files failed: {e}"),
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
