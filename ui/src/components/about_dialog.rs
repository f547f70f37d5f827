use crate::state::BackendState;
use leptos::prelude::*;

/// Version and folders, as the backend's `app_info` command answered them.
#[component]
pub fn AboutDialog(on_close: Callback<()>) -> impl IntoView {
    let state = expect_context::<BackendState>();
    view! {
        <div class="dialog about" id="about-dialog" role="dialog">
            <h2>"About StoryCore Engine"</h2>
            {move || match state.info.get() {
                None => view! { <p class="muted">"Asking the backend..."</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" id="about-error">{e}</p> }.into_any(),
                Some(Ok(info)) => view! {
                    <dl>
                        <dt>"Version"</dt><dd id="about-version">{info.version}</dd>
                        <dt>"Config folder"</dt><dd id="about-config-dir">{info.config_dir}</dd>
                        <dt>"Log folder"</dt><dd id="about-log-dir">{info.log_dir}</dd>
                        <dt>"Data folder"</dt><dd id="about-data-dir">{info.data_dir}</dd>
                    </dl>
                }.into_any(),
            }}
            <button id="about-close" on:click=move |_| on_close.run(())>"Close"</button>
        </div>
    }
}
