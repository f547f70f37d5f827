//! What every route of the gateway reads: the queue (which also answers
//! which instance of the fleet answers what is not a job) and the gateway's
//! own stores.

use super::fleet::ClassCache;
use super::held::Uploads;
use super::tokens::TokenBook;
use super::user_files::UserFiles;
use crate::dispatch::JobQueue;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub(crate) struct GatewayState {
    pub queue: JobQueue,
    /// ComfyUI's per-process prompt counter (`number`).
    pub counter: AtomicI64,
    pub classes: ClassCache,
    pub uploads: Arc<Uploads>,
    pub userdata: UserFiles,
    /// Ends the sockets when the gateway stops.
    pub cancel: CancellationToken,
    /// Named tokens: a socket whose token is revoked is closed.
    pub tokens: Option<Arc<TokenBook>>,
    /// The most prompts one person may have waiting (named tokens).
    pub max_waiting: Option<u32>,
}
