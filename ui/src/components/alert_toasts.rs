use crate::api::{self, Lifecycle};
use crate::state::{run_action, Fleet};
use leptos::prelude::*;
use storycore_types::{InstanceConfigPatch, Severity};

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
            {move || fleet.attach_offer.get().map(|(id, why)| view! {
                <div class="toast toast-error" id="attach-offer">
                    <span>{why}</span>
                    <button class="primary" id="attach-instead" on:click=move |_| {
                        let id = id.clone();
                        fleet.attach_offer.set(None);
                        run_action(fleet, async move {
                            // Forget the folder: the instance becomes an attached one.
                            let patch = InstanceConfigPatch {
                                comfyui_path: Some(None),
                                python_path: Some(None),
                                ..Default::default()
                            };
                            api::update_instance(&id, &patch).await?;
                            api::lifecycle(Lifecycle::Start, &id).await.map(|_| ())
                        });
                    }>"Attach instead"</button>
                    <button class="link" on:click=move |_| fleet.attach_offer.set(None)>"Dismiss"</button>
                </div>
            })}
            {move || fleet.notices.get().into_iter().enumerate().map(|(i, n)| view! {
                <div class="toast notice" data-severity="info">
                    <span>{n}</span>
                    <button class="link" on:click=move |_| fleet.notices.update(|v| { if i < v.len() { v.remove(i); } })>"Dismiss"</button>
                </div>
            }).collect_view()}
            {move || fleet.alerts.get().into_iter().rev().map(|(k, a)| {
                let severity = match a.kind.severity() {
                    Severity::Info => "info",
                    Severity::Warning => "warning",
                    Severity::Error => "error",
                };
                view! {
                    <div class=format!("toast alert alert-{severity}") data-instance=a.instance_id.clone()
                        data-severity=severity>
                        <span>{a.message}</span>
                        <button class="link dismiss" on:click=move |_| fleet.alerts.update(|v| v.retain(|(x, _)| *x != k))>"Dismiss"</button>
                    </div>
                }
            }).collect_view()}
        </div>
    }
}
