use leptos::prelude::*;

/// The main area, where the instance panel lives. Until instances exist it holds
/// the panel's header (search) and an empty state that says what comes next.
#[component]
pub fn MainPanel() -> impl IntoView {
    let query = RwSignal::new(String::new());
    view! {
        <main class="main-panel" id="main-panel">
            <div class="panel-header">
                <h1>"Instances"</h1>
                <input
                    id="instance-search"
                    type="search"
                    placeholder="Search instances"
                    prop:value=move || query.get()
                    on:input=move |ev| query.set(event_target_value(&ev))
                />
            </div>
            <div class="empty-state" id="instances-empty">
                {move || {
                    let q = query.get();
                    if q.trim().is_empty() {
                        "No ComfyUI instances yet.".to_string()
                    } else {
                        format!("No instance matches \u{201c}{}\u{201d}.", q.trim())
                    }
                }}
            </div>
        </main>
    }
}
