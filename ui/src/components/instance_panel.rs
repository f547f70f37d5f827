use super::instance_details::InstanceDetails;
use super::instance_grid::InstanceGrid;
use super::instance_list_header::{Filters, InstanceListHeader};
use super::pool_card::PoolSection;
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
                when=move || fleet.ids.with(|l| !l.is_empty()) || fleet.pools.with(|l| !l.is_empty())
                fallback=move || view! {
                    <div class="empty-state" id="instances-empty">
                        <p>"No ComfyUI instances yet."</p>
                        <p class="muted">
                            "Add a local ComfyUI folder for the app to launch, or attach to a server by its address. A pool starts and stops instances of one folder as work comes and goes."
                        </p>
                        <button class="primary" id="empty-add"
                            on:click=move |_| fleet.editor.set(Some(EditorMode::New))>
                            "Add an instance"
                        </button>
                        <button id="empty-add-pool"
                            on:click=move |_| fleet.pool_editor.set(Some(None))>
                            "Add a pool"
                        </button>
                    </div>
                }
            >
                <div class="panel-body">
                    <div class="panel-lists">
                        <PoolSection/>
                        <InstanceGrid filters=filters/>
                    </div>
                    <Show when=move || fleet.selected.with(Option::is_some)>
                        <InstanceDetails/>
                    </Show>
                </div>
            </Show>
        </main>
    }
}
