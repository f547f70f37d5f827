use super::about_dialog::AboutDialog;
use leptos::prelude::*;

/// The top bar: the app's name, the place of the active-instance switcher, and About.
#[component]
pub fn Toolbar() -> impl IntoView {
    let about_open = RwSignal::new(false);
    view! {
        <header class="toolbar" id="toolbar">
            <span class="brand">"StoryCore Engine"</span>
            <div class="switcher" id="active-instance-switcher" title="Active instance">
                <span class="muted">"No active instance"</span>
            </div>
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
