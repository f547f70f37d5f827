use super::instance_health_indicator::InstanceHealthIndicator;
use super::sparkline::Sparkline;
use crate::api::{self, Lifecycle};
use crate::format::{duration_ms, health_class, millis};
use crate::state::{run_action, EditorMode, Fleet, LogView};
use leptos::prelude::*;
use leptos::task::spawn_local;
use storycore_types::{HealthHistoryFile, HealthStatus, InstancePath};

/// Every optional setting back to its default; name, address and folders stay.
fn reset_patch() -> storycore_types::InstanceConfigPatch {
    storycore_types::InstanceConfigPatch {
        gpu_device: Some(None),
        env_vars: Some(None),
        custom_nodes_path: Some(None),
        max_concurrent_workflows: Some(None),
        timeout_ms: Some(None),
        start_timeout_ms: Some(None),
        enable_queue_monitoring: Some(None),
        auto_start: Some(None),
        extra_args: Some(None),
        ..Default::default()
    }
}

/// A run's duration: hundredths of a second under 10 s, tenths under a minute.
fn run_time(ms: i64) -> String {
    let ms = ms.max(0) as u64;
    if ms < 10_000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        duration_ms(ms)
    }
}

/// The instance's model files as rows: file, the loader input listing it,
/// whether it is loaded now, and its measured load.
fn model_rows(m: Option<storycore_types::InstanceModels>) -> Vec<(String, String, bool, String)> {
    let Some(m) = m else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for (input, files) in &m.files {
        for f in files {
            let secs = m
                .load_secs
                .get(f)
                .map(|s| format!(" (loads in {s:.1} s)"))
                .unwrap_or_default();
            rows.push((f.clone(), input.clone(), m.loaded.contains(f), secs));
        }
    }
    rows
}

/// Most points drawn.
const POINTS: usize = 120;

/// One point of the response-time line and the timeline.
#[derive(Clone, PartialEq)]
struct Sample {
    /// (live, number): the history's index or the live sample's sequence.
    key: (bool, u64),
    response_time: f64,
    status: HealthStatus,
}

/// The selected instance: health over time (from its history, then live from
/// events), statistics and actions.
#[component]
pub fn InstanceDetails() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let id = Memo::new(move |_| fleet.selected.get().unwrap_or_default());
    let inst = Memo::new(move |_| fleet.get(&id.get()));
    let history = RwSignal::new(None::<HealthHistoryFile>);
    Effect::new(move |_| {
        let id = id.get();
        history.set(None);
        if id.is_empty() {
            return;
        }
        spawn_local(async move {
            if let Ok(h) = api::health_history(&id).await {
                history.set(Some(h));
            }
        });
    });
    // The history's last points and when its newest was taken; read once
    // per history load, not at every live sample.
    let from_history = Memo::new(move |_| {
        history.with(|h| {
            let Some(h) = h.as_ref() else {
                return (Vec::new(), None);
            };
            let skip = h.samples.len().saturating_sub(POINTS);
            let v: Vec<Sample> = h
                .samples
                .iter()
                .enumerate()
                .skip(skip)
                .map(|(n, s)| Sample {
                    key: (false, n as u64),
                    response_time: s.response_time,
                    status: s.status,
                })
                .collect();
            (v, h.samples.back().map(|s| s.at.timestamp_micros()))
        })
    });
    // History samples, then the ones events brought since (by time). Each
    // keeps its key, so the timeline drops its oldest tick and adds the
    // newest instead of drawing them all again.
    let samples = Memo::new(move |_| {
        let (mut v, since) = from_history.get();
        if let Some(e) = fleet.entry(&id.get()) {
            e.live.with(|l| {
                for s in l {
                    if s.at_us.is_some() && s.at_us > since {
                        v.push(Sample {
                            key: (true, s.seq),
                            response_time: s.response_time,
                            status: s.status,
                        });
                    }
                }
            });
        }
        let skip = v.len().saturating_sub(POINTS);
        v.drain(..skip);
        v
    });
    let response = Signal::derive(move || {
        samples.with(|v| v.iter().map(|s| s.response_time).collect::<Vec<_>>())
    });
    // Resource figures over time, from the history's samples.
    let resource = move |pick: fn(&storycore_types::SystemStats) -> Option<f64>| {
        Signal::derive(move || {
            let mut v: Vec<f64> = history.with(|h| {
                h.as_ref()
                    .map(|h| {
                        h.samples
                            .iter()
                            .filter_map(|s| s.system_stats.as_ref().and_then(pick))
                            .collect()
                    })
                    .unwrap_or_default()
            });
            let skip = v.len().saturating_sub(POINTS);
            v.drain(..skip);
            v
        })
    };
    let cpu = resource(|s| Some(s.cpu_usage));
    let ram = resource(|s| Some(s.memory_usage));
    let vram = resource(|s| s.vram_used_bytes.map(|b| b as f64));
    let exported = RwSignal::new(None::<String>);
    let log = RwSignal::new(LogView::default());
    let follow = RwSignal::new(true);
    let log_box = NodeRef::<leptos::html::Pre>::new();
    let load_log = move || {
        let id = id.get_untracked();
        spawn_local(async move {
            if let Ok(tail) = api::instance_log(&id, 200).await {
                log.set(LogView::from_tail(tail));
            }
        });
    };
    // The tail is read when the selection or the status changes (a start, a
    // crash) and when following is turned back on; while following, the
    // backend's live batches are joined onto it.
    let status = Memo::new(move |_| inst.with(|i| i.as_ref().map(|i| i.status)));
    Effect::new(move |_| {
        let _ = (id.get(), status.get());
        if follow.get() {
            load_log();
        }
    });
    Effect::new(move |_| {
        let Some(b) = fleet.log_lines.get() else {
            return;
        };
        if follow.get_untracked() && b.instance_id == id.get_untracked() {
            log.update(|v| v.join(&b));
        }
    });
    // Following keeps the newest line in sight: scrolled after the next
    // paint, when the new lines are in the DOM.
    Effect::new(move |_| {
        log.track();
        log_box.track();
        if follow.get() {
            request_animation_frame(move || {
                if let Some(el) = log_box.get_untracked() {
                    el.set_scroll_top(el.scroll_height());
                }
            });
        }
    });
    let open = move |what: InstancePath| {
        let id = id.get_untracked();
        run_action(fleet, async move {
            api::open_instance_path(&id, what).await.map(|_| ())
        });
    };
    let jobs = Memo::new(move |_| {
        let id = id.get();
        fleet.jobs.with(|l| {
            let mine = l
                .iter()
                .filter(|j| j.instance_id.as_deref() == Some(id.as_str()));
            let (mut running, mut done) = (0, 0);
            for j in mine {
                if j.state.is_in_flight() {
                    running += 1;
                } else if j.state.is_final() {
                    done += 1;
                }
            }
            (running, done)
        })
    });
    // The instance's last runs, read again when a job of it finishes.
    let runs = RwSignal::new(Vec::<storycore_types::WorkflowExecution>::new());
    Effect::new(move |_| {
        let id = id.get();
        let _ = jobs.get();
        if id.is_empty() {
            return;
        }
        spawn_local(async move {
            if let Ok(r) = api::workflow_history(&id, 20).await {
                runs.set(r);
            }
        });
    });
    // Its model files and what it has loaded, read again with its runs.
    let models = RwSignal::new(None::<storycore_types::InstanceModels>);
    Effect::new(move |_| {
        let id = id.get();
        let _ = jobs.get();
        let _ = fleet.models_read.get();
        if id.is_empty() {
            return;
        }
        spawn_local(async move {
            if let Ok(m) = api::instance_models(&id).await {
                models.set(m);
            }
        });
    });
    let reread_models = move |_| {
        let id = id.get_untracked();
        spawn_local(async move {
            match api::refresh_instance_models(&id).await {
                Ok(m) => models.set(m),
                Err(e) => fleet.error.set(Some(e.message)),
            }
        });
    };
    let checked = RwSignal::new(None::<String>);
    let check_now = move |_| {
        let id = id.get_untracked();
        checked.set(Some("checking\u{2026}".into()));
        spawn_local(async move {
            checked.set(Some(match api::check_instance_health(&id).await {
                Ok(h) => format!(
                    "{} ({} ms) at {}",
                    crate::format::health_label(h.status),
                    h.response_time.round(),
                    h.last_checked
                        .map(crate::format::local_time)
                        .unwrap_or_default()
                ),
                Err(e) => e.message,
            }));
        });
    };
    let status =
        Memo::new(move |_| inst.with(|i| i.as_ref().map(|i| i.status).unwrap_or_default()));
    let health =
        Memo::new(move |_| inst.with(|i| i.as_ref().map(|i| i.health.status).unwrap_or_default()));
    view! {
        <aside class="instance-details" id="instance-details">
            // Rebuilt only when another instance is selected; the figures below
            // follow the instance through their own closures (no flicker, and
            // buttons stay put while health updates stream in).
            {move || { let _ = id.get(); inst.get_untracked() }.map(|i| {
                let id2 = i.id.clone();
                let id3 = i.id.clone();
                let id4 = i.id.clone();
                let stat = move |f: fn(&storycore_types::Instance) -> String| {
                    move || inst.with(|i| i.as_ref().map(f).unwrap_or_default())
                };
                view! {
                    <div class="details-head">
                        <h2 id="details-name">{stat(|i| i.name.clone())}</h2>
                        <InstanceHealthIndicator status=status health=health/>
                    </div>
                    <p class="muted">{stat(|i| i.config.description.clone().unwrap_or_default())}</p>
                    <p class="card-url">{stat(|i| i.config.base_url())}</p>
                    <div class="details-check">
                        <button id="details-check-now" title="Probe the instance now" on:click=check_now>"Check now"</button>
                        <span class="muted" id="details-check-result">{move || checked.get().unwrap_or_default()}</span>
                    </div>
                    <h3>"Response time"</h3>
                    <Sparkline values=response id="response-sparkline"/>
                    <h3>"CPU %, RAM %, VRAM (process tree of a local instance)"</h3>
                    <Sparkline values=cpu id="cpu-sparkline"/>
                    <Sparkline values=ram id="ram-sparkline"/>
                    <Sparkline values=vram id="vram-sparkline"/>
                    <h3>"Health timeline"</h3>
                    <div class="timeline" id="health-timeline">
                        <For each=move || samples.get() key=|s| s.key children=|s| view! {
                            <span class=format!("tick {}", health_class(s.status))></span>
                        }/>
                    </div>
                    <dl class="stats" id="details-stats">
                        <dt>"Workflows"</dt><dd>{stat(|i| format!("{} ({} ok, {} failed)", i.stats.total_workflows, i.stats.successful_workflows, i.stats.failed_workflows))}</dd>
                        <dt>"Success rate"</dt><dd>{stat(|i| if i.stats.total_workflows > 0 {
                            format!("{:.0}%", 100.0 * i.stats.successful_workflows as f64 / i.stats.total_workflows as f64)
                        } else { "-".into() })}</dd>
                        <dt>"Average response"</dt><dd>{stat(|i| millis(i.stats.average_response_time))}</dd>
                        <dt>"Uptime"</dt><dd>{stat(|i| duration_ms(i.stats.uptime))}</dd>
                        <dt>"Probe failures"</dt><dd>{stat(|i| format!("{} in a row, {} in all", i.health.consecutive_failures, i.health.error_count))}</dd>
                        <dt>"Last error"</dt><dd id="details-last-error">{stat(|i| i.stats.last_error.clone().unwrap_or_else(|| "none".into()))}</dd>
                        <dt>"Jobs"</dt><dd id="details-jobs">{move || { let (r, d) = jobs.get(); format!("{r} running, {d} finished") }}</dd>
                    </dl>
                    <h3>"Models"
                        <button class="link" id="details-models-refresh" title="Read its model files again (after adding or removing some)" on:click=reread_models>"read again"</button>
                    </h3>
                    <ul class="models" id="details-models">
                        {move || model_rows(models.get()).into_iter().map(|(file, input, loaded, secs)| view! {
                            <li class="model" data-loaded=loaded.to_string() title=input>
                                {file}
                                {loaded.then(|| view! { <span class="badge">" loaded"</span> })}
                                <span class="muted">{secs}</span>
                            </li>
                        }).collect_view()}
                    </ul>
                    <Show when=move || models.with(|m| m.as_ref().is_none_or(|m| m.files.is_empty()))>
                        <p class="muted" id="details-models-empty">{move || if models.with(Option::is_none) {
                            "Not read yet: it is read when the instance runs."
                        } else {
                            "No model files in its models folders."
                        }}</p>
                    </Show>
                    <h3>"Workflow history"</h3>
                    <table class="history" id="details-history">
                        <thead><tr><th>"Finished"</th><th>"Result"</th><th>"Duration"</th><th>"Outputs"</th></tr></thead>
                        <tbody>
                            {move || runs.get().into_iter().map(|r| view! {
                                <tr class="run" data-state=r.state.as_str() title=r.error.clone().unwrap_or_default()>
                                    <td>{crate::format::local_time(r.finished_at)}</td>
                                    <td>{r.state.as_str()}</td>
                                    <td>{r.duration_ms.map(run_time).unwrap_or_else(|| "-".into())}</td>
                                    <td>{r.outputs}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    <Show when=move || runs.with(Vec::is_empty)>
                        <p class="muted" id="details-history-empty">"Nothing has run here yet."</p>
                    </Show>
                    <Show when=move || inst.with(|i| i.as_ref().is_some_and(|i| i.config.comfyui_path.is_some()))>
                        <h3>"Log"
                            <label class="inline" title="Show new lines as ComfyUI writes them">
                                <input type="checkbox" id="details-log-follow" prop:checked=move || follow.get()
                                    on:change=move |ev| follow.set(event_target_checked(&ev))/>
                                "follow"
                            </label>
                            <button class="link" id="details-log-refresh" on:click=move |_| load_log()>"refresh"</button>
                        </h3>
                        <pre class="log-tail" id="details-log" node_ref=log_box>{move || log.with(|v| v.lines.join("\n"))}</pre>
                        <button id="details-open-log" on:click=move |_| open(InstancePath::Log)>"Open log"</button>
                        <button id="details-open-output" on:click=move |_| open(InstancePath::Output)>"Open output folder"</button>
                        <button id="details-export-log" on:click=move |_| {
                            let id = id.get_untracked();
                            spawn_local(async move {
                                match api::export_instance_log(&id).await {
                                    Ok(path) => exported.set(Some(format!("Saved to {path}"))),
                                    Err(e) => fleet.error.set(Some(e.message)),
                                }
                            });
                        }>"Export log"</button>
                        <span class="muted" id="details-exported">{move || exported.get().unwrap_or_default()}</span>
                    </Show>
                    <div class="details-actions">
                        <button on:click=move |_| {
                            let id = id2.clone();
                            run_action(fleet, async move { api::lifecycle(Lifecycle::Restart, &id).await.map(|_| ()) })
                        }>"Restart"</button>
                        <button on:click=move |_| fleet.editor.set(Some(EditorMode::Edit(id3.clone())))>"Edit"</button>
                        <button id="details-reset" title="Back to the defaults, keeping name, address and folders"
                            on:click=move |_| {
                                let id = id4.clone();
                                run_action(fleet, async move {
                                    api::update_instance(&id, &reset_patch()).await.map(|_| ())
                                })
                            }>"Reset to defaults"</button>
                        <button on:click=move |_| fleet.selected.set(None)>"Close"</button>
                    </div>
                }
            })}
        </aside>
    }
}
