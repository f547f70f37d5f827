use super::instance_health_indicator::InstanceHealthIndicator;
use super::sparkline::Sparkline;
use crate::api::{self, Lifecycle};
use crate::format::{duration_ms, health_class, millis};
use crate::state::{run_action, EditorMode, Fleet};
use leptos::prelude::*;
use leptos::task::spawn_local;
use storycore_types::{HealthHistoryFile, HealthStatus};

/// Most points drawn.
const POINTS: usize = 120;

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
    // History samples, then the ones events brought since (by time).
    let samples = Memo::new(move |_| {
        let id = id.get();
        let mut v: Vec<(f64, HealthStatus)> = history.with(|h| {
            h.as_ref()
                .map(|h| {
                    h.samples
                        .iter()
                        .map(|s| (s.response_time, s.status))
                        .collect()
                })
                .unwrap_or_default()
        });
        let since = history.with(|h| h.as_ref().and_then(|h| h.samples.back().map(|s| s.at)));
        fleet.live_health.with(|l| {
            for (i, h) in l {
                if i == &id && h.last_checked.is_some() && h.last_checked > since {
                    v.push((h.response_time, h.status));
                }
            }
        });
        let skip = v.len().saturating_sub(POINTS);
        v.drain(..skip);
        v
    });
    let response = Signal::derive(move || samples.get().iter().map(|s| s.0).collect::<Vec<_>>());
    let log = RwSignal::new(Vec::<String>::new());
    let load_log = move || {
        let id = id.get_untracked();
        spawn_local(async move {
            if let Ok(lines) = api::instance_log(&id, 200).await {
                log.set(lines);
            }
        });
    };
    // The log is read when the selection or the status changes (a start, a
    // crash), and on demand.
    Effect::new(move |_| {
        let _ = (id.get(), inst.with(|i| i.as_ref().map(|i| i.status)));
        load_log();
    });
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
    let status = Signal::derive(move || inst.get().map(|i| i.status).unwrap_or_default());
    let health = Signal::derive(move || inst.get().map(|i| i.health.status).unwrap_or_default());
    view! {
        <aside class="instance-details" id="instance-details">
            {move || inst.get().map(|i| {
                let s = i.stats.clone();
                let rate = if s.total_workflows > 0 {
                    format!("{:.0}%", 100.0 * s.successful_workflows as f64 / s.total_workflows as f64)
                } else { "-".into() };
                let id2 = i.id.clone();
                let id3 = i.id.clone();
                view! {
                    <div class="details-head">
                        <h2 id="details-name">{i.name.clone()}</h2>
                        <InstanceHealthIndicator status=status health=health/>
                    </div>
                    <p class="muted">{i.config.description.clone().unwrap_or_default()}</p>
                    <p class="card-url">{i.config.base_url()}</p>
                    <h3>"Response time"</h3>
                    <Sparkline values=response id="response-sparkline"/>
                    <h3>"Health timeline"</h3>
                    <div class="timeline" id="health-timeline">
                        {move || samples.get().into_iter().map(|(_, st)| view! {
                            <span class=format!("tick {}", health_class(st))></span>
                        }).collect_view()}
                    </div>
                    <dl class="stats" id="details-stats">
                        <dt>"Workflows"</dt><dd>{format!("{} ({} ok, {} failed)", s.total_workflows, s.successful_workflows, s.failed_workflows)}</dd>
                        <dt>"Success rate"</dt><dd>{rate}</dd>
                        <dt>"Average response"</dt><dd>{millis(s.average_response_time)}</dd>
                        <dt>"Uptime"</dt><dd>{duration_ms(s.uptime)}</dd>
                        <dt>"Probe failures"</dt><dd>{format!("{} in a row, {} in all", i.health.consecutive_failures, i.health.error_count)}</dd>
                        <dt>"Last error"</dt><dd id="details-last-error">{s.last_error.unwrap_or_else(|| "none".into())}</dd>
                        <dt>"Jobs"</dt><dd id="details-jobs">{move || { let (r, d) = jobs.get(); format!("{r} running, {d} finished") }}</dd>
                    </dl>
                    <Show when=move || i.config.comfyui_path.is_some()>
                        <h3>"Log" <button class="link" id="details-log-refresh" on:click=move |_| load_log()>"refresh"</button></h3>
                        <pre class="log-tail" id="details-log">{move || log.get().join("\n")}</pre>
                    </Show>
                    <div class="details-actions">
                        <button on:click=move |_| {
                            let id = id2.clone();
                            run_action(fleet, async move { api::lifecycle(Lifecycle::Restart, &id).await.map(|_| ()) })
                        }>"Restart"</button>
                        <button on:click=move |_| fleet.editor.set(Some(EditorMode::Edit(id3.clone())))>"Edit"</button>
                        <button on:click=move |_| fleet.selected.set(None)>"Close"</button>
                    </div>
                }
            })}
        </aside>
    }
}
