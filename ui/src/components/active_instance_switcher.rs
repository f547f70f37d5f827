use crate::api;
use crate::format::health_label;
use crate::state::{run_action, Fleet};
use leptos::prelude::*;

/// The toolbar dropdown of instances with their health; the active one is
/// selected. Switching is immediate and persisted by the backend.
#[component]
pub fn ActiveInstanceSwitcher() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let on_change = move |ev| {
        let id = event_target_value(&ev);
        let id = (!id.is_empty()).then_some(id);
        run_action(fleet, async move {
            api::set_active_instance(id.as_deref()).await
        });
    };
    view! {
        <div class="switcher" id="active-instance-switcher" title="Active instance (Ctrl+1..9)">
            <Show
                when=move || fleet.ids.with(|l| !l.is_empty())
                fallback=|| view! { <span class="muted">"No active instance"</span> }
            >
                <select id="active-instance-select" on:change=on_change
                    prop:value=move || fleet.active.get().unwrap_or_default()>
                    <option value="">"No active instance: the best one is used"</option>
                    // One option per id, each following its own instance.
                    <For each=move || fleet.ids.get().into_iter().enumerate()
                        key=|(n, id)| (*n, id.clone())
                        children=move |(n, id)| {
                            let label = {
                                let id = id.clone();
                                move || fleet.with(&id, |i| format!(
                                    "{}{} \u{b7} {} \u{b7} {}",
                                    if n < 9 { format!("{}. ", n + 1) } else { String::new() },
                                    i.name, i.status.as_str(), health_label(i.health.status)
                                )).unwrap_or_default()
                            };
                            let selected = {
                                let id = id.clone();
                                move || fleet.active.with(|a| a.as_deref() == Some(id.as_str()))
                            };
                            view! { <option value=id selected=selected>{label}</option> }
                        }/>
                </select>
            </Show>
        </div>
    }
}

/// Ctrl+1..9 (Cmd on macOS) make the first nine instances active.
#[component]
pub fn ShortcutKeys() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let handle = window_event_listener(leptos::ev::keydown, move |ev| {
        if !(ev.ctrl_key() || ev.meta_key()) || ev.alt_key() {
            return;
        }
        let Some(n) = ev
            .key()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=9).contains(n))
        else {
            return;
        };
        let Some(id) = fleet.ids.with_untracked(|l| l.get(n - 1).cloned()) else {
            return;
        };
        ev.prevent_default();
        run_action(
            fleet,
            async move { api::set_active_instance(Some(&id)).await },
        );
    });
    on_cleanup(move || handle.remove());
}
