use crate::api;
use crate::components::{main_panel::MainPanel, status_line::StatusLine, toolbar::Toolbar};
use leptos::prelude::*;
use leptos::task::spawn_local;
use storycore_types::{AppEvent, AppInfo, Heartbeat};

/// What the backend has told the UI, shared with every component through context.
#[derive(Clone, Copy)]
pub struct BackendState {
    pub info: RwSignal<Option<Result<AppInfo, String>>>,
    pub heartbeat: RwSignal<Option<Heartbeat>>,
    pub notice: RwSignal<Option<String>>,
}

#[component]
pub fn App() -> impl IntoView {
    let state = BackendState {
        info: RwSignal::new(None),
        heartbeat: RwSignal::new(None),
        notice: RwSignal::new(None),
    };
    provide_context(state);

    spawn_local(async move {
        state
            .info
            .set(Some(api::app_info().await.map_err(|e| e.message)));
    });
    api::on_event(move |ev| match ev {
        AppEvent::Heartbeat(hb) => state.heartbeat.set(Some(hb)),
        AppEvent::SecondLaunch => state.notice.set(Some(
            "StoryCore Engine was already running: here it is.".into(),
        )),
        // Instance events are rendered by the instance panel (its own issue).
        _ => {}
    });

    view! {
        <div class="frame">
            <Toolbar/>
            <MainPanel/>
            <StatusLine/>
        </div>
    }
}
