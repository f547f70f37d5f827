use super::instance_details::InstanceDetails;
use super::instance_grid::InstanceGrid;
use super::instance_list_header::{Filters, InstanceListHeader};
use crate::state::{EditorMode, Fleet};
use leptos::prelude::*;

/// The main area: header (search, filters, add), the grid of cards, and the
/// details of the selected instance.
#[component]
pub fn InstancePanel() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let filters = Filters::new();
    view! {
        <main class="main-panel" id="main-panel">
            <InstanceListHeader filters=filters/>
            <Show
                when=move || fleet.ids.with(|l| !l.is_empty())
                fallback=move || view! {
                    <div class="empty-state" id="instances-empty">
                        <p>"No ComfyUI instances yet."</p>
                        <p class="muted">
                            "Add a local ComfyUI folder for the app to launch, or attach to a server by its address."
                        </p>
                        <button class="primary" id="empty-add"
                            on:click=move |_| fleet.editor.set(Some(EditorMode::New))>
                            "Add an instance"
                        </button>
                    </div>
                }
            >
                <div class="panel-body">
                    <InstanceGrid filters=filters/>
                    <Show when=move || fleet.selected.with(Option::is_some)>
                        <InstanceDetails/>
                    </Show>
                </div>
            </Show>
        </main>
    }
}
