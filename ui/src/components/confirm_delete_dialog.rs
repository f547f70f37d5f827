use crate::api;
use crate::state::{run_action, Fleet};
use leptos::prelude::*;

/// Delete asks first and says what will be removed.
#[component]
pub fn ConfirmDeleteDialog() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let target = move || fleet.confirm_delete.get().and_then(|id| fleet.get(&id));
    view! {
        <div class="modal-backdrop">
            <div class="dialog" id="confirm-delete" role="alertdialog">
                {move || target().map(|i| view! {
                    <h2>{format!("Delete \u{201c}{}\u{201d}?", i.name)}</h2>
                    <p>"This removes the instance from the fleet, stops monitoring it, and deletes its health history."</p>
                    <p class="muted">{if i.config.comfyui_path.is_some() {
                        "The ComfyUI folder, its models and its output images are not touched."
                    } else {
                        "The server itself keeps running: it is only forgotten here."
                    }}</p>
                })}
                <div class="dialog-buttons">
                    <button id="confirm-delete-cancel" on:click=move |_| fleet.confirm_delete.set(None)>"Cancel"</button>
                    <button class="danger" id="confirm-delete-ok" on:click=move |_| {
                        if let Some(id) = fleet.confirm_delete.get_untracked() {
                            fleet.confirm_delete.set(None);
                            run_action(fleet, async move { api::delete_instance(&id).await });
                        }
                    }>"Delete"</button>
                </div>
            </div>
        </div>
    }
}
