use super::instance_card::InstanceCard;
use super::instance_list_header::Filters;
use crate::state::Fleet;
use leptos::prelude::*;

/// The cards of the instances that pass the filters, keyed by id. The list of
/// ids changes only when instances are added or removed (or, with a filter
/// set, when one starts or stops passing it): an instance's update reaches
/// its own card and nothing else of the grid.
#[component]
pub fn InstanceGrid(filters: Filters) -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let current = Memo::new(move |_| filters.current());
    let visible = Memo::new(move |_| {
        let f = current.get();
        // Pools' members show in their pool's card.
        if f.is_empty() {
            // Tracks the ids only: no instance's figures matter.
            return fleet.ids.with(|ids| {
                ids.iter()
                    .filter(|id| !fleet.in_pool(id))
                    .cloned()
                    .collect::<Vec<_>>()
            });
        }
        fleet.ids.with(|ids| {
            ids.iter()
                .filter(|id| !fleet.in_pool(id))
                .filter(|id| fleet.with(id, |i| f.matches(i)).unwrap_or(false))
                .cloned()
                .collect::<Vec<_>>()
        })
    });
    view! {
        <div class=move || if filters.list_layout.get() { "instance-grid list" } else { "instance-grid" }
            id="instance-grid">
            <For each=move || visible.get() key=|id| id.clone() children=move |id| {
                view! { <InstanceCard id=id/> }
            }/>
            <Show when=move || visible.with(Vec::is_empty) && !current.get().is_empty()>
                <div class="empty-state" id="no-match">
                    {move || format!("No instance matches \u{201c}{}\u{201d}.", filters.query.get().trim())}
                </div>
            </Show>
        </div>
    }
}
