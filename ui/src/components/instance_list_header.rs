use crate::api;
use crate::components::import_dialog::ImportDialog;
use crate::state::{EditorMode, Fleet};
use leptos::prelude::*;
use leptos::task::spawn_local;
use storycore_types::Instance;

/// Search text, filters and layout, shared by the header and the grid.
#[derive(Clone, Copy)]
pub struct Filters {
    pub query: RwSignal<String>,
    pub status: RwSignal<String>,
    pub health: RwSignal<String>,
    pub location: RwSignal<String>,
    pub list_layout: RwSignal<bool>,
}

impl Filters {
    pub fn new() -> Self {
        Self {
            query: RwSignal::new(String::new()),
            status: RwSignal::new(String::new()),
            health: RwSignal::new(String::new()),
            location: RwSignal::new(String::new()),
            list_layout: RwSignal::new(false),
        }
    }

    /// The filters as they are now (tracked), to test many instances with.
    pub fn current(&self) -> FilterValues {
        FilterValues {
            query: self.query.with(|q| q.trim().to_lowercase()),
            status: self.status.get(),
            health: self.health.get(),
            location: self.location.get(),
        }
    }
}

/// The filters' values at one moment.
#[derive(Clone, PartialEq)]
pub struct FilterValues {
    query: String,
    status: String,
    health: String,
    location: String,
}

impl FilterValues {
    /// No filter set: every instance passes, whatever its figures.
    pub fn is_empty(&self) -> bool {
        self.query.is_empty()
            && self.status.is_empty()
            && self.health.is_empty()
            && self.location.is_empty()
    }

    /// Search by name, description, host and port; filter by status, health,
    /// GPU text and local/remote.
    pub fn matches(&self, i: &Instance) -> bool {
        let text_matches = || {
            format!(
                "{} {} {}:{} {}",
                i.name,
                i.config.description.as_deref().unwrap_or(""),
                i.config.host(),
                i.config.port,
                i.config.gpu_device.as_deref().unwrap_or("")
            )
            .to_lowercase()
            .contains(&self.query)
        };
        let local = crate::components::instance_card::is_local(i);
        (self.status.is_empty() || i.status.as_str() == self.status)
            && (self.health.is_empty()
                || crate::format::health_label(i.health.status) == self.health)
            && (self.location.is_empty() || (self.location == "local") == local)
            && (self.query.is_empty() || text_matches())
    }
}

#[component]
pub fn InstanceListHeader(filters: Filters) -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    // The file being imported, while its preview is open.
    let importing = RwSignal::new(None::<String>);
    let select = |id: &'static str,
                  sig: RwSignal<String>,
                  all: &'static str,
                  opts: &'static [&'static str]| {
        view! {
            <select id=id on:change=move |ev| sig.set(event_target_value(&ev))>
                <option value="">{all}</option>
                {opts.iter().map(|o| view! { <option value=*o>{*o}</option> }).collect_view()}
            </select>
        }
    };
    view! {
        <div class="panel-header">
            <h1>"Instances"</h1>
            <input
                id="instance-search"
                type="search"
                placeholder="Search name, description, host, port"
                prop:value=move || filters.query.get()
                on:input=move |ev| filters.query.set(event_target_value(&ev))
                on:change=move |ev| filters.query.set(event_target_value(&ev))
            />
            {select("filter-status", filters.status, "any status",
                &["running", "starting", "paused", "stopped", "stopping", "error"])}
            {select("filter-health", filters.health, "any health",
                &["healthy", "degraded", "unhealthy", "not checked"])}
            {select("filter-location", filters.location, "local and remote", &["local", "remote"])}
            <button id="layout-toggle" title="Grid or list"
                on:click=move |_| filters.list_layout.update(|l| *l = !*l)>
                {move || if filters.list_layout.get() { "Grid" } else { "List" }}
            </button>
            <span class="spacer"></span>
            <button id="export-instances" title="Save the instances to a file, without secrets"
                on:click=move |_| {
                    spawn_local(async move {
                        let result = match api::pick_instances_file(true).await {
                            Ok(Some(path)) => api::export_instances_to(&path).await.map(Some),
                            Ok(None) => Ok(None),
                            Err(e) => Err(e),
                        };
                        match result {
                            Ok(Some(out)) => {
                                let mut text = format!("Exported {} instances to {}.", out.instances, out.path);
                                for n in out.notes {
                                    text.push(' ');
                                    text.push_str(&n);
                                }
                                fleet.notices.update(|v| v.push(text));
                            }
                            Ok(None) => {}
                            Err(e) => fleet.error.set(Some(e.message)),
                        }
                    });
                }>"Export\u{2026}"</button>
            <button id="import-instances" title="Add instances from an exported file, after a preview"
                on:click=move |_| {
                    spawn_local(async move {
                        match api::pick_instances_file(false).await {
                            Ok(Some(path)) => importing.set(Some(path)),
                            Ok(None) => {}
                            Err(e) => fleet.error.set(Some(e.message)),
                        }
                    });
                }>"Import\u{2026}"</button>
            {move || importing.get().map(|path| view! {
                <ImportDialog path=path on_close=Callback::new(move |()| importing.set(None))/>
            })}
            <button id="add-pool" title="Instances of one ComfyUI folder, started when work waits and stopped when idle"
                on:click=move |_| fleet.pool_editor.set(Some(None))>
                "+ Add pool"
            </button>
            <button class="primary" id="add-instance"
                on:click=move |_| fleet.editor.set(Some(EditorMode::New))>
                "+ Add instance"
            </button>
        </div>
    }
}
