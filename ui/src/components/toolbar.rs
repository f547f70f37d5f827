use super::about_dialog::AboutDialog;
use super::active_instance_switcher::ActiveInstanceSwitcher;
use super::project_dialog::ProjectSwitcher;
use super::settings_dialog::SettingsDialog;
use crate::api;
use crate::state::{run_action, Fleet, MainView};
use leptos::prelude::*;

/// The top bar: the app's name, the views, the current project, the
/// active-instance switcher, About.
#[component]
pub fn Toolbar() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let about_open = RwSignal::new(false);
    let settings_open = RwSignal::new(false);
    let tab = move |v: MainView, id: &'static str, label: &'static str| {
        view! {
            <button id=id class:current=move || fleet.view.get() == v
                on:click=move |_| fleet.view.set(v)>{label}</button>
        }
    };
    view! {
        <header class="toolbar" id="toolbar">
            <span class="brand">"StoryCore Engine"</span>
            {tab(MainView::Instances, "tab-instances", "Instances")}
            {tab(MainView::Workflows, "tab-workflows", "Workflows")}
            <ProjectSwitcher/>
            <ActiveInstanceSwitcher/>
            <button id="toolbar-open-comfyui" title="The active instance's own ComfyUI editor, in a window"
                disabled=move || fleet.active.get().is_none()
                on:click=move |_| {
                    if let Some(id) = fleet.active.get_untracked() {
                        run_action(fleet, async move { api::open_comfyui(&id).await.map(|_| ()) });
                    }
                }>"Open ComfyUI"</button>
            <button id="toolbar-open-fleet" title="ComfyUI's editor on the gateway: every Queue press runs on the whole fleet"
                on:click=move |_| {
                    run_action(fleet, async move { api::open_fleet_comfyui().await.map(|_| ()) });
                }>"ComfyUI (fleet)"</button>
            <span class="spacer"></span>
            <button id="settings-button" on:click=move |_| settings_open.update(|o| *o = !*o)>
                "Settings"
            </button>
            <button id="about-button" on:click=move |_| about_open.update(|o| *o = !*o)>
                "About"
            </button>
        </header>
        <Show when=move || settings_open.get()>
            <SettingsDialog on_close=Callback::new(move |_| settings_open.set(false))/>
        </Show>
        <Show when=move || about_open.get()>
            <AboutDialog on_close=Callback::new(move |_| about_open.set(false))/>
        </Show>
    }
}
