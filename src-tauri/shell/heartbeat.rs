//! A beat every second, so the status line shows the backend is alive.

use std::time::{Duration, Instant};
use storycore_types::{AppEvent, Heartbeat};

pub const PERIOD: Duration = Duration::from_secs(1);

pub fn spawn(app: tauri::AppHandle) {
    tauri::async_runtime::spawn(async move {
        let started = Instant::now();
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut seq = 0u64;
        loop {
            tick.tick().await;
            seq += 1;
            super::events::emit(
                &app,
                AppEvent::Heartbeat(Heartbeat {
                    seq,
                    uptime_secs: started.elapsed().as_secs(),
                }),
            );
        }
    });
}
