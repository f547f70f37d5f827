use super::instance_health_indicator::InstanceHealthIndicator;
use crate::api::{self, Lifecycle};
use crate::format::{bytes, duration_ms, millis};
use crate::state::{run_action, EditorMode, Fleet};
use leptos::prelude::*;
use storycore_types::{HealthStatus, Instance, InstancePath, InstanceStatus};

/// Launched by the app (has a ComfyUI folder) rather than attached.
pub fn is_local(i: &Instance) -> bool {
    i.config.comfyui_path.is_some()
}

/// The actions that make sense in a state (the backend refuses the others).
fn actions(s: InstanceStatus) -> &'static [Lifecycle] {
    use Lifecycle::*;
    match s {
        InstanceStatus::Stopped => &[Start],
        InstanceStatus::Starting => &[Stop],
        InstanceStatus::Running => &[Pause, Stop, Restart],
        InstanceStatus::Paused => &[Resume, Stop, Restart],
        InstanceStatus::Stopping => &[],
        InstanceStatus::Error => &[Restart, Stop],
    }
}

/// "Starting for 12 s" (ticking with the backend's heartbeat) and the last
/// line its ComfyUI wrote, so a slow start shows progress, not trouble.
fn starting_line(i: &Instance) -> impl IntoView {
    let backend = expect_context::<crate::state::BackendState>();
    let since = i.status_since.map(|t| t.timestamp_millis());
    let waiting = if is_local(i) {
        "waiting for ComfyUI to load".to_string()
    } else {
        format!("waiting for a first answer from {}", i.config.base_url())
    };
    let progress = i.start_progress.clone().unwrap_or(waiting);
    view! {
        <div class="card-starting">
            <span class="starting-for">{move || {
                backend.heartbeat.track();
                match since {
                    Some(t) => {
                        let ms = (js_sys::Date::now() as i64 - t).max(0) as u64;
                        format!("starting for {}", duration_ms(ms))
                    }
                    None => "starting".into(),
                }
            }}</span>
            <span class="start-progress" title=progress.clone()>{progress.clone()}</span>
        </div>
    }
}

#[component]
pub fn InstanceCard(id: String) -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let inst = {
        let id = id.clone();
        Memo::new(move |_| fleet.get(&id))
    };
    let menu_open = RwSignal::new(false);
    let jobs_here = {
        let id = id.clone();
        Memo::new(move |_| {
            fleet.jobs.with(|l| {
                l.iter()
                    .filter(|j| {
                        j.state.is_in_flight() && j.instance_id.as_deref() == Some(id.as_str())
                    })
                    .count()
            })
        })
    };
    let id_for_select = id.clone();
    let selected = {
        let id = id.clone();
        Signal::derive(move || fleet.selected.get().as_deref() == Some(id.as_str()))
    };
    let active = {
        let id = id.clone();
        Signal::derive(move || fleet.active.get().as_deref() == Some(id.as_str()))
    };
    let status = Signal::derive(move || inst.get().map(|i| i.status).unwrap_or_default());
    let health = Signal::derive(move || inst.get().map(|i| i.health.status).unwrap_or_default());
    let act = {
        let id = id.clone();
        move |a: Lifecycle| {
            let id = id.clone();
            leptos::task::spawn_local(async move {
                match api::lifecycle(a, &id).await {
                    Ok(_) => {}
                    Err(e) if e.code == storycore_types::ErrorCode::ComfyuiAlreadyRunning => {
                        fleet.attach_offer.set(Some((id, e.message)))
                    }
                    Err(e) => fleet.error.set(Some(e.message)),
                }
            })
        }
    };
    let menu_item = {
        let id = id.clone();
        move |label: &'static str, key: &'static str| {
            let id = id.clone();
            view! {
                <button class="menu-item" data-action=key on:click=move |ev| {
                    ev.stop_propagation();
                    menu_open.set(false);
                    match key {
                        "edit" => fleet.editor.set(Some(EditorMode::Edit(id.clone()))),
                        "duplicate" => fleet.editor.set(Some(EditorMode::Duplicate(id.clone()))),
                        "delete" => fleet.confirm_delete.set(Some(id.clone())),
                        "open-output" | "open-log" => {
                            let what = if key == "open-log" { InstancePath::Log } else { InstancePath::Output };
                            let id = id.clone();
                            run_action(fleet, async move { api::open_instance_path(&id, what).await.map(|_| ()) });
                        }
                        "copy-url" => {
                            if let Some(url) = fleet.get(&id).map(|i| i.config.base_url()) {
                                run_action(fleet, async move { api::copy_to_clipboard(&url).await });
                            }
                        }
                        _ => {}
                    }
                }>{label}</button>
            }
        }
    };
    view! {
        <div
            class=move || format!("instance-card{}{}", if selected.get() { " selected" } else { "" },
                if active.get() { " active" } else { "" })
            data-id=id.clone()
            on:click=move |_| fleet.selected.set(Some(id_for_select.clone()))
        >
            {move || inst.get().map(|i| {
                let stats = i.health.system_stats.clone().unwrap_or_default();
                view! {
                    <div class="card-head">
                        <span class="card-name">{i.name.clone()}</span>
                        <Show when=move || active.get()><span class="active-mark" title="Active instance">"active"</span></Show>
                        <span class="spacer"></span>
                        <InstanceHealthIndicator status=status health=health/>
                    </div>
                    <div class="card-info">
                        <span class="card-url">{format!("{}:{}", i.config.host(), i.config.port)}</span>
                        <span>{format!("GPU {}", i.config.gpu_device.clone().unwrap_or_else(|| "default".into()))}</span>
                        <span>{if is_local(&i) { "local" } else { "remote" }}</span>
                    </div>
                    <div class="card-metrics">
                        <span title="Response time">{if i.health.status != HealthStatus::Unknown { millis(i.health.response_time) } else { "-".into() }}</span>
                        <span title="Active workflows">{format!("{} active", stats.active_workflows)}</span>
                        <span title="VRAM in use">{match (stats.vram_used_bytes, stats.vram_total_bytes) {
                            (Some(u), Some(t)) => format!("VRAM {} / {}", bytes(u), bytes(t)),
                            _ => "VRAM -".into(),
                        }}</span>
                        <span title="Uptime">{format!("up {}", duration_ms(i.stats.uptime))}</span>
                        <span class="card-jobs" title="Jobs of this app running here">{move || format!("{} jobs", jobs_here.get())}</span>
                    </div>
                    {(i.status == InstanceStatus::Starting).then(|| starting_line(&i))}
                    {i.status_reason.clone().map(|r| view! { <div class="card-reason">{r}</div> })}
                }
            })}
            <div class="card-actions" on:click=|ev| ev.stop_propagation()>
                {move || actions(status.get()).iter().map(|a| {
                    let a = *a;
                    let act = act.clone();
                    view! {
                        <button class="quick-action" data-action=a.label().to_lowercase()
                            on:click=move |_| act(a)>{a.label()}</button>
                    }
                }).collect_view()}
                <span class="spacer"></span>
                <button class="menu-button" title="More" on:click=move |_| menu_open.update(|o| *o = !*o)>"\u{22ef}"</button>
                <Show when=move || menu_open.get()>
                    <div class="context-menu">
                        {menu_item("Edit", "edit")}
                        {menu_item("Duplicate", "duplicate")}
                        {menu_item("Copy URL", "copy-url")}
                        {let mi = menu_item.clone(); move || inst.with(|i| i.as_ref().is_some_and(is_local)).then(|| view! {
                            {mi("Open output folder", "open-output")}
                            {mi("Open log", "open-log")}
                        })}
                        {menu_item("Delete", "delete")}
                    </div>
                </Show>
            </div>
        </div>
    }
}
