use super::about_dialog::AboutDialog;
use super::active_instance_switcher::ActiveInstanceSwitcher;
use leptos::prelude::*;

/// The top bar: the app's name, the active-instance switcher, and About.
#[component]
pub fn Toolbar() -> impl IntoView {
    let about_open = RwSignal::new(false);
    view! {
        <header class="toolbar" id="toolbar">
            <span class="brand">"StoryCore Engine"</span>
            <ActiveInstanceSwitcher/>
            <span class="spacer"></span>
            <button id="about-button" on:click=move |_| about_open.update(|o| *o = !*o)>
                "About"
            </button>
        </header>
        <Show when=move || about_open.get()>
            <AboutDialog on_close=Callback::new(move |_| about_open.set(false))/>
        </Show>
    }
}
