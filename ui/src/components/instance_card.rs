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
fn starting_line(inst: RwSignal<Instance>) -> impl IntoView {
    let backend = expect_context::<crate::state::BackendState>();
    let since = Memo::new(move |_| inst.with(|i| i.status_since.map(|t| t.timestamp_millis())));
    let progress = Memo::new(move |_| {
        inst.with(|i| {
            i.start_progress.clone().unwrap_or_else(|| {
                if is_local(i) {
                    "waiting for ComfyUI to load".to_string()
                } else {
                    format!("waiting for a first answer from {}", i.config.base_url())
                }
            })
        })
    });
    view! {
        <div class="card-starting">
            <span class="starting-for">{move || {
                backend.heartbeat.track();
                match since.get() {
                    Some(t) => {
                        let ms = (js_sys::Date::now() as i64 - t).max(0) as u64;
                        format!("starting for {}", duration_ms(ms))
                    }
                    None => "starting".into(),
                }
            }}</span>
            <span class="start-progress" title=move || progress.get()>{move || progress.get()}</span>
        </div>
    }
}

/// One instance. It reads its own signal only, and each figure is its own
/// small memo or text closure: a health update rewrites the few texts that
/// changed, in place.
#[component]
pub fn InstanceCard(id: String) -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    // The grid lists only ids whose signals exist.
    let entry = fleet.entry(&id)?;
    let inst: RwSignal<Instance> = entry.inst.into();
    let menu_open = RwSignal::new(false);
    let jobs_here = {
        let id = id.clone();
        Memo::new(move |_| {
            fleet
                .jobs_in_flight
                .with(|m| m.get(&id).copied().unwrap_or(0))
        })
    };
    let id_for_select = id.clone();
    let selected = {
        let id = id.clone();
        Memo::new(move |_| fleet.selected.with(|s| s.as_deref() == Some(id.as_str())))
    };
    let active = {
        let id = id.clone();
        Memo::new(move |_| fleet.active.with(|a| a.as_deref() == Some(id.as_str())))
    };
    let status = Memo::new(move |_| inst.with(|i| i.status));
    let health = Memo::new(move |_| inst.with(|i| i.health.status));
    let name = Memo::new(move |_| inst.with(|i| i.name.clone()));
    let local = Memo::new(move |_| inst.with(is_local));
    let address =
        Memo::new(move |_| inst.with(|i| format!("{}:{}", i.config.host(), i.config.port)));
    let gpu = Memo::new(move |_| {
        inst.with(|i| {
            format!(
                "GPU {}",
                i.config.gpu_device.as_deref().unwrap_or("default")
            )
        })
    });
    let reason = Memo::new(move |_| inst.with(|i| i.status_reason.clone()));
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
                        "open-comfyui" => {
                            let id = id.clone();
                            run_action(fleet, async move { api::open_comfyui(&id).await.map(|_| ()) });
                        }
                        "copy-url" => {
                            let url = inst.with_untracked(|i| i.config.base_url());
                            run_action(fleet, async move { api::copy_to_clipboard(&url).await });
                        }
                        _ => {}
                    }
                }>{label}</button>
            }
        }
    };
    Some(view! {
        <div
            class=move || format!("instance-card{}{}", if selected.get() { " selected" } else { "" },
                if active.get() { " active" } else { "" })
            data-id=id.clone()
            on:click=move |_| fleet.selected.set(Some(id_for_select.clone()))
        >
            <div class="card-head">
                <span class="card-name">{move || name.get()}</span>
                <Show when=move || active.get()><span class="active-mark" title="Active instance">"active"</span></Show>
                <span class="spacer"></span>
                <InstanceHealthIndicator status=status health=health/>
            </div>
            <div class="card-info">
                <span class="card-url">{move || address.get()}</span>
                <span>{move || gpu.get()}</span>
                <span>{move || if local.get() { "local" } else { "remote" }}</span>
            </div>
            <div class="card-metrics">
                <span title="Response time">{move || inst.with(|i| {
                    if i.health.status != HealthStatus::Unknown { millis(i.health.response_time) } else { "-".into() }
                })}</span>
                <span title="Active workflows">{move || inst.with(|i| {
                    format!("{} active", i.health.system_stats.as_ref().map_or(0, |s| s.active_workflows))
                })}</span>
                <span title="VRAM in use">{move || inst.with(|i| {
                    match i.health.system_stats.as_ref().map(|s| (s.vram_used_bytes, s.vram_total_bytes)) {
                        Some((Some(u), Some(t))) => format!("VRAM {} / {}", bytes(u), bytes(t)),
                        _ => "VRAM -".into(),
                    }
                })}</span>
                <span title="Uptime">{move || inst.with(|i| format!("up {}", duration_ms(i.stats.uptime)))}</span>
                <span class="card-jobs" title="Jobs of this app running here">{move || format!("{} jobs", jobs_here.get())}</span>
            </div>
            <Show when=move || status.get() == InstanceStatus::Starting>
                {starting_line(inst)}
            </Show>
            {move || reason.get().map(|r| view! { <div class="card-reason">{r}</div> })}
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
                        {menu_item("Open ComfyUI", "open-comfyui")}
                        {menu_item("Edit", "edit")}
                        {menu_item("Duplicate", "duplicate")}
                        {menu_item("Copy URL", "copy-url")}
                        {let mi = menu_item.clone(); move || local.get().then(|| view! {
                            {mi("Open output folder", "open-output")}
                            {mi("Open log", "open-log")}
                        })}
                        {menu_item("Delete", "delete")}
                    </div>
                </Show>
            </div>
        </div>
    })
}
