use crate::api;
use crate::state::{run_action, Fleet};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::{Map, Value};
use storycore_types::{Job, JobState, JobTarget, ParameterType, WorkflowTemplate};

/// Run a template or an imported API-format workflow on the fleet, and watch
/// the queue: each job's instance, state, progress, outputs and errors.
#[component]
pub fn WorkflowsView() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let templates = RwSignal::new(Vec::<WorkflowTemplate>::new());
    let chosen = RwSignal::new(String::new());
    let values = RwSignal::new(Map::<String, Value>::new());
    let target = RwSignal::new(String::from("auto"));
    let imported = RwSignal::new(String::new());
    spawn_local(async move {
        if let Ok(list) = api::list_templates().await {
            if let Some(first) = list.first() {
                chosen.set(first.id.clone());
            }
            templates.set(list);
        }
    });
    let template =
        Memo::new(move |_| templates.with(|l| l.iter().find(|t| t.id == chosen.get()).cloned()));
    // Newest first.
    let job_ids = Memo::new(move |_| {
        let ids: Vec<String> = fleet
            .jobs
            .with(|l| l.iter().rev().map(|j| j.id.clone()).collect());
        ids
    });
    let job_target = move || match target.get().as_str() {
        "auto" => JobTarget::Auto,
        "active" => JobTarget::Active,
        id => JobTarget::Instance { id: id.to_string() },
    };
    let run_template = move |_| {
        let Some(t) = template.get_untracked() else {
            return;
        };
        let (v, tg) = (values.get_untracked(), job_target());
        run_action(fleet, async move {
            api::submit_template(&t.id, &v, &tg).await.map(|_| ())
        });
    };
    let run_imported = move |_| {
        let (w, tg) = (imported.get_untracked(), job_target());
        run_action(fleet, async move {
            api::submit_workflow(&w, &tg).await.map(|_| ())
        });
    };
    view! {
        <main class="main-panel workflows" id="workflows-view">
            <div class="panel-header"><h1>"Workflows"</h1></div>
            <div class="panel-body">
                <section class="run-form">
                    <h3>"Run a template"</h3>
                    <select id="template-select" on:change=move |ev| { chosen.set(event_target_value(&ev)); values.set(Map::new()); }>
                        {move || templates.get().into_iter().map(|t| view! {
                            <option value=t.id.clone() selected=t.id == chosen.get_untracked()>{t.name.clone()}</option>
                        }).collect_view()}
                    </select>
                    {move || template.get().map(|t| t.parameters.into_iter().map(|p| {
                        let name = p.name.clone();
                        let kind = p.kind;
                        let shown = p.default.to_string().trim_matches('"').to_string();
                        view! {
                            <label class="field">
                                <span>{p.name.clone()}</span>
                                <input data-param=p.name.clone() value=shown on:input=move |ev| {
                                    let raw = event_target_value(&ev);
                                    let v = match kind {
                                        ParameterType::Int => raw.trim().parse::<i64>().map(Value::from).unwrap_or(Value::String(raw)),
                                        ParameterType::Float => raw.trim().parse::<f64>().map(Value::from).unwrap_or(Value::String(raw)),
                                        ParameterType::Bool => Value::Bool(raw.trim() == "true"),
                                        _ => Value::String(raw),
                                    };
                                    values.update(|m| { m.insert(name.clone(), v); });
                                }/>
                            </label>
                        }
                    }).collect_view())}
                    <label class="field">
                        <span>"Run on"</span>
                        <select id="job-target" on:change=move |ev| target.set(event_target_value(&ev))>
                            <option value="auto">"the best instance (automatic)"</option>
                            <option value="active">"the active instance"</option>
                            {move || fleet.instances.get().into_iter().map(|i| view! {
                                <option value=i.id.clone()>{i.name.clone()}</option>
                            }).collect_view()}
                        </select>
                    </label>
                    <button class="primary" id="run-template" on:click=run_template>"Run"</button>
                    <h3>"Or paste an API-format workflow"</h3>
                    <textarea id="workflow-json" placeholder="{\"1\": {\"class_type\": ...}}"
                        on:input=move |ev| imported.set(event_target_value(&ev))></textarea>
                    <button id="run-workflow" on:click=run_imported>"Run workflow"</button>
                </section>
                <section class="job-list" id="job-list">
                    <h3>"Queue"</h3>
                    <For each=move || job_ids.get() key=|id| id.clone()
                        children=move |id| view! { <JobRow id=id/> }/>
                </section>
            </div>
        </main>
    }
}

#[component]
fn JobRow(id: String) -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let job = {
        let id = id.clone();
        Memo::new(move |_| fleet.jobs.with(|l| l.iter().find(|j| j.id == id).cloned()))
    };
    let act = move |what: &'static str, id: String| {
        run_action(fleet, async move {
            match what {
                "cancel" => api::job_action("cancel_job", &id).await,
                "retry" => api::job_action("retry_job", &id).await,
                _ => api::job_action("release_job", &id).await,
            }
        })
    };
    // Outputs are keyed, so a job update does not re-create (and re-fetch) them.
    let outputs = Memo::new(move |_| {
        let v: Vec<(usize, String)> = job.with(|j| {
            j.as_ref()
                .map(|j| {
                    j.outputs
                        .iter()
                        .map(|o| o.filename.clone())
                        .enumerate()
                        .collect()
                })
                .unwrap_or_default()
        });
        v
    });
    let job_id = id.clone();
    view! {
        <div class="job-row" data-id=id.clone()>
            {move || job.get().map(|j: Job| {
                let pct = if j.progress.total_nodes > 0 {
                    100.0 * (j.progress.executed_nodes.len() + j.progress.cached_nodes.len()) as f64 / j.progress.total_nodes as f64
                } else { 0.0 };
                let pct = if j.state == JobState::Succeeded { 100.0 } else { pct.min(100.0) };
                let instance = j.instance_id.clone().and_then(|i| fleet.get(&i).map(|x| x.name)).unwrap_or_else(|| "-".into());
                let id2 = j.id.clone();
                view! {
                    <div class="job-head">
                        <span class=format!("badge job-{}", j.state.as_str())>{j.state.as_str()}</span>
                        <span class="job-instance">{instance}</span>
                        <span class="muted">{format!("attempt {}", j.attempts)}</span>
                        <span class="spacer"></span>
                        {match j.state {
                            JobState::Queued | JobState::Dispatched | JobState::Running => Some(("cancel", "Cancel")),
                            JobState::Failed | JobState::Cancelled => Some(("retry", "Retry")),
                            JobState::Suspect | JobState::Held => Some(("release", "Release")),
                            JobState::Succeeded => None,
                        }.map(|(what, label)| view! {
                            <button data-action=what on:click=move |_| act(what, id2.clone())>{label}</button>
                        })}
                    </div>
                    <div class="progress"><div class="bar" style=format!("width: {pct:.0}%")></div></div>
                    {j.error.map(|e| view! { <div class="job-error">{e.message}</div> })}

                }
            })}
            <div class="job-outputs">
                <For each=move || outputs.get() key=|o| o.clone() children=move |(n, f)| {
                    view! { <OutputThumbnail job_id=job_id.clone() index=n filename=f/> }
                }/>
            </div>
        </div>
    }
}

/// A job's output image: a thumbnail that opens full size.
#[component]
fn OutputThumbnail(job_id: String, index: usize, filename: String) -> impl IntoView {
    let src = RwSignal::new(None::<String>);
    let open = RwSignal::new(false);
    spawn_local(async move {
        if let Ok(url) = api::job_output_image(&job_id, index).await {
            src.set(Some(url));
        }
    });
    let name = filename.clone();
    view! {
        <figure class="output">
            {move || src.get().map(|s| view! {
                <img class="thumbnail" src=s alt=name.clone() on:click=move |_| open.set(true)/>
            })}
            <figcaption>{filename.clone()}</figcaption>
            <Show when=move || open.get()>
                <div class="modal-backdrop" on:click=move |_| open.set(false)>
                    <img class="full-image" src=move || src.get().unwrap_or_default()/>
                </div>
            </Show>
        </figure>
    }
}
