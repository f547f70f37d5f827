//! The one typed event channel to the UI.

use std::time::Duration;
use storycore_core::dispatch::JobQueue;
use storycore_core::manager::InstanceManager;
use storycore_types::{AppEvent, Snapshot, APP_EVENT};
use tauri::{Emitter, Manager};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

/// Sends `event` to every window. A failure only means no window listens yet.
pub fn emit(app: &tauri::AppHandle, event: AppEvent) {
    if let Err(e) = app.emit(APP_EVENT, &event) {
        tracing::debug!("event not delivered: {e}");
    }
}

/// How long the bridge gathers frequent events before it sends them as one.
/// Each event sent wakes the main thread and the page (a script evaluated
/// in the webview, then a frame): with 50 instances probed every second,
/// one wake-up per probe was most of the backend's own CPU. The health
/// monitors probe on a shared grid (250 ms at a 1 s interval), so a probe
/// round arrives within a few milliseconds and goes out as one batch; 25 ms
/// adds little to what the window shows (README, "Window cost").
const GATHER: Duration = Duration::from_millis(25);

/// The events worth gathering: frequent, and each applied on its own by the
/// UI (a health probe's figures, a progress step). Everything else goes out
/// at once, after whatever was gathered before it: the order never changes.
fn gathered(e: &AppEvent) -> bool {
    matches!(
        e,
        AppEvent::HealthChanged { .. } | AppEvent::JobProgress { .. }
    )
}

/// Sends what was gathered: one event as itself, several as a batch.
fn flush(send: &mut impl FnMut(AppEvent), gathered: &mut Vec<AppEvent>) {
    match gathered.len() {
        0 => {}
        1 => send(gathered.pop().expect("one event")),
        _ => send(AppEvent::Batch(std::mem::take(gathered))),
    }
}

/// Forwards the backend's broadcast (manager, health monitors, job queue) to
/// the UI, frequent events gathered for [`GATHER`]. When it falls behind and
/// events were skipped, it drops what is still buffered (older than now)
/// and sends one snapshot of everything instead, which the UI replaces its
/// state with: never a stale window.
pub fn bridge(app: tauri::AppHandle, rx: broadcast::Receiver<AppEvent>) {
    tauri::async_runtime::spawn(async move {
        let snap = app.clone();
        forward(
            rx,
            |e| emit(&app, e),
            || AppEvent::Snapshot(Box::new(snapshot(&snap))),
        )
        .await
    });
}

/// The bridge's loop, until the broadcast closes: `send` gets each event
/// to deliver, `snapshot` is called after events were skipped.
async fn forward(
    mut rx: broadcast::Receiver<AppEvent>,
    mut send: impl FnMut(AppEvent),
    snapshot: impl Fn() -> AppEvent,
) {
    let mut pending: Vec<AppEvent> = Vec::new();
    let mut until: Option<Instant> = None;
    loop {
        let next = match until {
            Some(at) => tokio::time::timeout_at(at, rx.recv()).await.ok(),
            None => Some(rx.recv().await),
        };
        match next {
            None => {
                flush(&mut send, &mut pending);
                until = None;
            }
            Some(Ok(e)) if gathered(&e) => {
                pending.push(e);
                until.get_or_insert_with(|| Instant::now() + GATHER);
            }
            Some(Ok(e)) => {
                flush(&mut send, &mut pending);
                until = None;
                send(e);
            }
            Some(Err(RecvError::Lagged(n))) => {
                pending.clear();
                until = None;
                let mut dropped = n;
                while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = rx.try_recv() {
                    dropped += 1;
                }
                tracing::warn!("the UI bridge fell behind by {dropped} events: sending a snapshot");
                send(snapshot());
            }
            Some(Err(RecvError::Closed)) => {
                flush(&mut send, &mut pending);
                break;
            }
        }
    }
}

/// Everything the UI shows, now.
pub fn snapshot(app: &tauri::AppHandle) -> Snapshot {
    let m = app.state::<InstanceManager>();
    Snapshot {
        instances: m.list(),
        active: m.active_instance().map(|i| i.id),
        jobs: app
            .try_state::<JobQueue>()
            .map(|q| q.summaries())
            .unwrap_or_default(),
        pools: app
            .try_state::<storycore_core::pool::Pools>()
            .map(|p| p.list())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storycore_types::InstanceHealth;

    fn health(id: &str) -> AppEvent {
        AppEvent::HealthChanged {
            id: id.into(),
            health: InstanceHealth::default(),
        }
    }

    fn kinds(events: &[AppEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                AppEvent::HealthChanged { id, .. } => format!("health {id}"),
                AppEvent::InstanceRemoved { id } => format!("removed {id}"),
                AppEvent::Batch(list) => format!("batch [{}]", kinds(list).join(", ")),
                AppEvent::Snapshot(_) => "snapshot".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Runs the bridge's loop over a real broadcast channel until it closes.
    async fn forwarded(
        feed: impl FnOnce(&broadcast::Sender<AppEvent>),
        capacity: usize,
    ) -> Vec<String> {
        let (tx, rx) = broadcast::channel(capacity);
        feed(&tx);
        drop(tx);
        let mut out = Vec::new();
        forward(
            rx,
            |e| out.push(e),
            || {
                AppEvent::Snapshot(Box::new(storycore_types::Snapshot {
                    instances: vec![],
                    active: None,
                    jobs: vec![],
                    pools: vec![],
                }))
            },
        )
        .await;
        kinds(&out)
    }

    #[tokio::test]
    async fn probes_that_arrive_together_go_out_as_one_batch() {
        let (tx, rx) = broadcast::channel(64);
        let (out_tx, mut out) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(forward(
            rx,
            move |e| out_tx.send(e).unwrap(),
            || unreachable!(),
        ));
        for id in ["a", "b", "c"] {
            tx.send(health(id)).unwrap();
        }
        let first = out.recv().await.unwrap();
        assert_eq!(kinds(&[first]), ["batch [health a, health b, health c]"]);
        // Alone within its time, an event goes out as itself, late by at most GATHER.
        let sent = std::time::Instant::now();
        tx.send(health("d")).unwrap();
        let alone = out.recv().await.unwrap();
        assert_eq!(kinds(&[alone]), ["health d"]);
        assert!(sent.elapsed() < GATHER * 10, "{:?}", sent.elapsed());
    }

    #[tokio::test]
    async fn other_events_keep_their_order_and_go_out_at_once() {
        let got = forwarded(
            |tx| {
                tx.send(health("a")).unwrap();
                tx.send(health("b")).unwrap();
                tx.send(AppEvent::InstanceRemoved { id: "b".into() })
                    .unwrap();
                tx.send(health("c")).unwrap();
            },
            64,
        )
        .await;
        assert_eq!(got, ["batch [health a, health b]", "removed b", "health c"]);
    }

    #[tokio::test]
    async fn skipped_events_are_replaced_by_one_snapshot() {
        let got = forwarded(
            |tx| {
                for id in ["a", "b", "c", "d", "e"] {
                    tx.send(health(id)).unwrap();
                }
            },
            2,
        )
        .await;
        assert_eq!(got, ["snapshot"]);
    }
}
