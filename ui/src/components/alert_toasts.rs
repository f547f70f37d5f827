use crate::api::{self, Lifecycle};
use crate::state::{run_action, Fleet};
use leptos::prelude::*;
use storycore_types::InstanceConfigPatch;

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
            {move || fleet.alerts.get().into_iter().rev().map(|a| view! {
                <div class="toast alert" data-instance=a.instance_id.clone()>{a.message}</div>
            }).collect_view()}
        </div>
    }
}
