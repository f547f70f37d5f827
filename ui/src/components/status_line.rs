use crate::app::BackendState;
use leptos::prelude::*;

/// The bottom line: backend version, config folder, and the live heartbeat.
#[component]
pub fn StatusLine() -> impl IntoView {
    let state = expect_context::<BackendState>();
    view! {
        <footer class="status-line" id="status-line">
            <span id="status-version">
                {move || match state.info.get() {
                    None => "connecting to the backend...".to_string(),
                    Some(Ok(i)) => format!("v{}  \u{b7}  {}", i.version, i.config_dir),
                    Some(Err(e)) => format!("backend error: {e}"),
                }}
            </span>
            <span id="status-notice">{move || state.notice.get().unwrap_or_default()}</span>
            <span class="spacer"></span>
            <span id="status-heartbeat" data-seq=move || state.heartbeat.get().map(|h| h.seq).unwrap_or(0)>
                {move || match state.heartbeat.get() {
                    None => "backend: waiting".to_string(),
                    Some(h) => format!("backend alive \u{b7} up {}s \u{b7} beat {}", h.uptime_secs, h.seq),
                }}
            </span>
        </footer>
    }
}
