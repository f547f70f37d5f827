use crate::state::Fleet;
use leptos::prelude::*;

/// The health monitor's alerts and the last failed action, bottom right.
#[component]
pub fn AlertToasts() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    view! {
        <div class="toasts" id="toasts">
            {move || fleet.error.get().map(|e| view! {
                <div class="toast toast-error" id="action-error">
                    <span>{e}</span>
                    <button class="link" on:click=move |_| fleet.error.set(None)>"Dismiss"</button>
                </div>
            })}
            {move || fleet.alerts.get().into_iter().rev().map(|a| view! {
                <div class="toast alert" data-instance=a.instance_id.clone()>{a.message}</div>
            }).collect_view()}
        </div>
    }
}
