use crate::api;
use crate::components::{
    active_instance_switcher::ShortcutKeys, alert_toasts::AlertToasts,
    confirm_delete_dialog::ConfirmDeleteDialog, instance_editor_dialog::InstanceEditorDialog,
    instance_panel::InstancePanel, pool_dialog::PoolDialog, status_line::StatusLine,
    toolbar::Toolbar, workflows_view::WorkflowsView,
};
pub use crate::state::BackendState;
use crate::state::{Fleet, MainView};
use leptos::prelude::*;
use leptos::task::spawn_local;
use storycore_types::AppEvent;

#[component]
pub fn App() -> impl IntoView {
    let state = BackendState {
        info: RwSignal::new(None),
        heartbeat: RwSignal::new(None),
        notice: RwSignal::new(None),
    };
    let fleet = Fleet::new();
    provide_context(state);
    provide_context(fleet);

    // Subscribe first, then load: an event that arrives in between is applied
    // to the list the load then replaces with a newer answer.
    api::on_event(move |ev| route(state, fleet, &ev));
    fleet.reload_projects();
    fleet.reload_pools();
    spawn_local(async move {
        state
            .info
            .set(Some(api::app_info().await.map_err(|e| e.message)));
    });
    spawn_local(async move {
        match api::list_instances().await {
            Ok(list) => fleet.set_all(list),
            Err(e) => fleet.error.set(Some(e.message)),
        }
        if let Ok(active) = api::active_instance().await {
            fleet.active.set(active.map(|i| i.id));
        }
        if let Ok(jobs) = api::list_jobs().await {
            fleet.jobs.set(jobs);
        }
        if let Ok(notices) = api::take_startup_notices().await {
            fleet.notices.set(notices);
        }
    });

    view! {
        <div class="frame">
            <Toolbar/>
            <Show when=move || fleet.view.get() == MainView::Instances
                fallback=|| view! { <WorkflowsView/> }>
                <InstancePanel/>
            </Show>
            <StatusLine/>
        </div>
        <ShortcutKeys/>
        <AlertToasts/>
        <Show when=move || fleet.editor.with(Option::is_some)>
            <InstanceEditorDialog/>
        </Show>
        // Keyed on what it edits, so a second opening starts from that pool.
        {move || fleet.pool_editor.get().map(|_| view! { <PoolDialog/> })}
        <Show when=move || fleet.confirm_delete.with(Option::is_some)>
            <ConfirmDeleteDialog/>
        </Show>
    }
}

/// Hands one backend event (each of a batch's, in order) to what shows it.
fn route(state: BackendState, fleet: Fleet, ev: &AppEvent) {
    match ev {
        AppEvent::Heartbeat(hb) => state.heartbeat.set(Some(hb.clone())),
        AppEvent::SecondLaunch => state.notice.set(Some(
            "StoryCore Engine was already running: here it is.".into(),
        )),
        AppEvent::Batch(list) => {
            for e in list {
                route(state, fleet, e);
            }
        }
        other => fleet.apply(other),
    }
}
