//! The app's one event bus: every part (manager, health monitors, queue,
//! pools, gateway sockets) publishes on it and the shell, the tray, the
//! notifier and the gateway's sockets listen. The engine makes it and hands
//! the same bus to each part; no part owns it, so none publishes on
//! another's channel.

use storycore_types::AppEvent;
use tokio::sync::broadcast;

/// Capacity of the bus: a slow listener misses old events (and is told so
/// by `RecvError::Lagged`) instead of slowing the backend.
pub const EVENT_CAPACITY: usize = 1024;

/// A cheap-to-clone handle on the bus.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<AppEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("listeners", &self.sender.receiver_count())
            .finish()
    }
}

impl EventBus {
    pub fn new() -> Self {
        Self::with_capacity(EVENT_CAPACITY)
    }

    /// A bus that keeps `capacity` events for its slowest listener.
    pub fn with_capacity(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity);
        Self { sender }
    }

    /// Sends `event` to every listener; with none, it is dropped.
    pub fn publish(&self, event: AppEvent) {
        let _ = self.sender.send(event);
    }

    /// Every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AppEvent> {
        self.sender.subscribe()
    }

    /// The channel itself, for a part that hands it to code taking a
    /// `broadcast::Sender` (a health monitor).
    pub fn sender(&self) -> broadcast::Sender<AppEvent> {
        self.sender.clone()
    }
}
