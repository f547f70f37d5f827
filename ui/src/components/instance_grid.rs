use super::instance_card::InstanceCard;
use super::instance_list_header::Filters;
use crate::state::Fleet;
use leptos::prelude::*;

/// The cards of the instances that pass the filters, keyed by id so an update
/// re-renders one card, not the grid.
#[component]
pub fn InstanceGrid(filters: Filters) -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let visible = Memo::new(move |_| {
        fleet.instances.with(|l| {
            l.iter()
                .filter(|i| filters.matches(i))
                .map(|i| i.id.clone())
                .collect::<Vec<_>>()
        })
    });
    view! {
        <div class=move || if filters.list_layout.get() { "instance-grid list" } else { "instance-grid" }
            id="instance-grid">
            <For each=move || visible.get() key=|id| id.clone() children=move |id| {
                view! { <InstanceCard id=id/> }
            }/>
            <Show when=move || visible.with(Vec::is_empty)>
                <div class="empty-state" id="no-match">
                    {move || format!("No instance matches \u{201c}{}\u{201d}.", filters.query.get().trim())}
                </div>
            </Show>
        </div>
    }
}
