//! OS notifications for the health monitor's and supervisor's alerts, through
//! tauri-plugin-notification (D-Bus `org.freedesktop.Notifications` on Linux).
//! De-duplicated: the same kind of alert for the same instance is shown at most
//! once a minute, so a flapping instance cannot flood the desktop. Each kind
//! can be turned off in the settings.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use storycore_core::engine::Engine;
use storycore_types::{Alert, AlertKind, AppEvent};
use tauri::{AppHandle, Manager};
use tauri_plugin_notification::NotificationExt;
use tokio::sync::broadcast::{self, error::RecvError};

pub const DEDUP_WINDOW: Duration = Duration::from_secs(60);

fn kind_key(k: &AlertKind) -> &'static str {
    match k {
        AlertKind::BecameUnhealthy => "becameUnhealthy",
        AlertKind::Recovered => "recovered",
        AlertKind::Crashed { .. } => "crashed",
        AlertKind::GaveUp { .. } => "gaveUp",
        AlertKind::HighErrorRate { .. } => "highErrorRate",
        AlertKind::ResourceHigh { .. } => "resourceHigh",
        AlertKind::NoAnswer { .. } => "noAnswer",
        AlertKind::StartTimedOut { .. } => "startTimedOut",
    }
}

fn title(k: &AlertKind) -> &'static str {
    match k {
        AlertKind::BecameUnhealthy => "ComfyUI instance unhealthy",
        AlertKind::Recovered => "ComfyUI instance recovered",
        AlertKind::Crashed { .. } => "ComfyUI instance crashed",
        AlertKind::GaveUp { .. } => "ComfyUI instance keeps crashing",
        AlertKind::HighErrorRate { .. } => "ComfyUI instance: many errors",
        AlertKind::ResourceHigh { .. } => "ComfyUI instance: resource above 90%",
        AlertKind::NoAnswer { .. } => "ComfyUI instance not answering",
        AlertKind::StartTimedOut { .. } => "ComfyUI instance did not start",
    }
}

/// Which alerts pass, remembering what was shown when.
#[derive(Default)]
pub struct Dedup(HashMap<(String, &'static str), Instant>);

impl Dedup {
    pub fn admit(&mut self, a: &Alert, now: Instant) -> bool {
        let key = (a.instance_id.clone(), kind_key(&a.kind));
        match self.0.get(&key) {
            Some(t) if now.duration_since(*t) < DEDUP_WINDOW => false,
            _ => {
                self.0.insert(key, now);
                true
            }
        }
    }
}

pub fn spawn(app: AppHandle, mut rx: broadcast::Receiver<AppEvent>) {
    tauri::async_runtime::spawn(async move {
        let mut dedup = Dedup::default();
        loop {
            let alert = match rx.recv().await {
                Ok(AppEvent::Alert(a)) => a,
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            };
            let allowed = app
                .state::<Engine>()
                .settings()
                .get()
                .notifications
                .allows(&alert.kind);
            if !allowed || !dedup.admit(&alert, Instant::now()) {
                tracing::debug!(?alert, "notification suppressed");
                continue;
            }
            let shown = app
                .notification()
                .builder()
                .title(title(&alert.kind))
                .body(&alert.message)
                .show();
            if let Err(e) = shown {
                tracing::warn!("could not show a notification: {e}");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str, kind: AlertKind) -> Alert {
        Alert {
            instance_id: id.into(),
            kind,
            message: String::new(),
            at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_flapping_instance_is_shown_once_a_minute() {
        let mut d = Dedup::default();
        let t0 = Instant::now();
        assert!(d.admit(&alert("a", AlertKind::BecameUnhealthy), t0));
        assert!(!d.admit(
            &alert("a", AlertKind::BecameUnhealthy),
            t0 + Duration::from_secs(5)
        ));
        // Another kind or another instance is news.
        assert!(d.admit(
            &alert("a", AlertKind::Recovered),
            t0 + Duration::from_secs(6)
        ));
        assert!(d.admit(
            &alert("b", AlertKind::BecameUnhealthy),
            t0 + Duration::from_secs(7)
        ));
        assert!(d.admit(&alert("a", AlertKind::BecameUnhealthy), t0 + DEDUP_WINDOW));
    }
}
