use crate::api;
use crate::state::{run_action, Fleet};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::{Map, Value};
use storycore_types::{
    Job, JobState, JobTarget, ParameterMark, ParameterType, TemplateDraft, WorkflowFile,
    WorkflowInput, WorkflowTemplate,
};

/// Run a template or an imported API-format workflow on the fleet, and watch
/// the queue: each job's instance, state, progress, outputs and errors.
#[component]
pub fn WorkflowsView() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let templates = RwSignal::new(Vec::<WorkflowTemplate>::new());
    let chosen = RwSignal::new(String::new());
    let values = RwSignal::new(Map::<String, Value>::new());
    // "project": the current project's default (else automatic).
    let target = RwSignal::new(String::from("project"));
    let imported = RwSignal::new(String::new());
    // Jobs of the current project only, or all.
    let only_project = RwSignal::new(true);
    let project_id = Memo::new(move |_| fleet.projects.with(|l| l.current_project_id.clone()));
    // Reloads the template list; `select` is chosen when given, else the first.
    let reload = move |select: Option<String>| {
        spawn_local(async move {
            if let Ok(list) = api::list_templates().await {
                let pick = select
                    .filter(|id| list.iter().any(|t| &t.id == id))
                    .or_else(|| list.first().map(|t| t.id.clone()));
                templates.set(list);
                values.set(Map::new());
                if let Some(id) = pick {
                    chosen.set(id);
                }
            }
        });
    };
    // The templates are the global ones and the current project's.
    Effect::new(move |_| {
        project_id.track();
        reload(None);
    });
    let template =
        Memo::new(move |_| templates.with(|l| l.iter().find(|t| t.id == chosen.get()).cloned()));
    // Newest first; the current project's only, unless "all" is chosen.
    let job_ids = Memo::new(move |_| {
        let only = only_project.get().then(|| project_id.get()).flatten();
        let ids: Vec<String> = fleet.jobs.with(|l| {
            l.iter()
                .rev()
                .filter(|j| only.is_none() || j.project_id == only)
                .map(|j| j.id.clone())
                .collect()
        });
        ids
    });
    let job_target = move || match target.get_untracked().as_str() {
        "project" => None,
        "auto" => Some(JobTarget::Auto),
        "active" => Some(JobTarget::Active),
        id => Some(JobTarget::Instance { id: id.to_string() }),
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
                                <input data-param=p.name.clone() prop:value=shown on:input=move |ev| {
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
                            <option value="project">{move || match fleet.current_project() {
                                Some(p) => format!("the project's default ({})", describe_target(&p.default_target, fleet)),
                                None => "the best instance (automatic)".to_string(),
                            }}</option>
                            <option value="auto">"the best instance (automatic)"</option>
                            <option value="active">"the active instance"</option>
                            <For each=move || fleet.ids.get() key=|id| id.clone() children=move |id| {
                                let name = {
                                    let id = id.clone();
                                    move || fleet.with(&id, |i| i.name.clone()).unwrap_or_default()
                                };
                                view! { <option value=id>{name}</option> }
                            }/>
                        </select>
                    </label>
                    <button class="primary" id="run-template" on:click=run_template>"Run"</button>
                    <Show when=move || template.with(|t| t.as_ref().is_some_and(|t| !t.built_in))>
                        <TemplatePins template=template on_saved=Callback::new(move |id: String| reload(Some(id)))/>
                        <button id="delete-template" on:click=move |_| {
                            let id = chosen.get_untracked();
                            run_action(fleet, async move {
                                api::delete_template(&id).await?;
                                reload(None);
                                Ok(())
                            });
                        }>"Delete template"</button>
                    </Show>
                    <ImportTemplate on_saved=Callback::new(move |id: String| reload(Some(id)))
                        target=Callback::new(move |_: ()| job_target())/>
                    <h3>"Or paste an API-format workflow"</h3>
                    <textarea id="workflow-json" placeholder="{\"1\": {\"class_type\": ...}}"
                        on:input=move |ev| imported.set(event_target_value(&ev))></textarea>
                    <button id="run-workflow" on:click=run_imported>"Run workflow"</button>
                </section>
                <section class="job-list" id="job-list">
                    <h3>"Queue"</h3>
                    <Show when=move || project_id.get().is_some()>
                        <label class="check">
                            <input type="checkbox" id="job-filter" prop:checked=move || only_project.get()
                                on:change=move |ev| only_project.set(event_target_checked(&ev))/>
                            {move || format!("Only {}", fleet.current_project().map(|p| p.name).unwrap_or_default())}
                        </label>
                    </Show>
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
    // The instance's name only: its health updates do not reach the row.
    let instance_name = Memo::new(move |_| {
        job.with(|j| j.as_ref().and_then(|j| j.instance_id.clone()))
            .and_then(|i| fleet.with(&i, |x| x.name.clone()))
    });
    let job_id = id.clone();
    view! {
        <div class="job-row" data-id=id.clone()>
            {move || job.get().map(|j: Job| {
                let pct = if j.progress.total_nodes > 0 {
                    100.0 * (j.progress.executed_nodes.len() + j.progress.cached_nodes.len()) as f64 / j.progress.total_nodes as f64
                } else { 0.0 };
                let pct = if j.state == JobState::Succeeded { 100.0 } else { pct.min(100.0) };
                let instance = instance_name.get().unwrap_or_else(|| "-".into());
                let id2 = j.id.clone();
                view! {
                    <div class="job-head">
                        <span class=format!("badge job-{}", j.state.as_str())>{j.state.as_str()}</span>
                        <span class="job-instance">{instance}</span>
                        <span class="muted">{format!("attempt {}", j.attempts)}</span>
                        {j.gateway.as_ref().map(|g| {
                            let from = g.client_id.clone().map(|c| format!("gateway: {c}")).unwrap_or_else(|| "gateway".into());
                            let by = g.owner.clone().map(|o| view! { <span class="job-owner badge" title="Who submitted it: the name of the gateway token it came with">{format!("by {o}")}</span> });
                            view! { <span class="job-gateway badge" title=format!("Posted to the gateway as prompt {}", g.prompt_id)>{from}</span> {by} }
                        })}
                        {j.project_id.as_ref().map(|p| {
                            let name = untrack(|| fleet.projects.with(|l| l.projects.iter().find(|x| &x.id == p).map(|x| x.name.clone())))
                                .unwrap_or_else(|| format!("{p} (deleted)"));
                            view! { <span class="job-project badge">{name}</span> }
                        })}
                        {j.copy.as_ref().map(|c| {
                            // Untracked: the copy's instance's health must not redraw the row.
                            let on = untrack(|| fleet.with(&c.instance_id, |x| x.name.clone()))
                                .unwrap_or_else(|| c.instance_id.clone());
                            view! {
                                <span class="job-copy muted"
                                    title="A copy runs on an idle, faster instance: the first to finish wins, the other is stopped">
                                    {format!("+ copy on {on}")}
                                </span>
                            }
                        })}
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
                    {j.placed_because.filter(|_| j.waiting.is_none()).map(|b| view! { <div class="job-placed muted">{format!("Sent there: {b}")}</div> })}
                    {j.waiting.map(|w| view! { <div class="job-waiting muted">{w}</div> })}
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

/// One input of the imported workflow, as a row the user can mark.
#[derive(Clone)]
struct MarkRow {
    input: WorkflowInput,
    marked: RwSignal<bool>,
    name: RwSignal<String>,
}

/// Import a workflow file, mark the inputs that become parameters, name it,
/// save it as a template.
#[component]
fn ImportTemplate(
    on_saved: Callback<String>,
    target: Callback<(), Option<JobTarget>>,
) -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let path = RwSignal::new(String::new());
    let loaded = RwSignal::new(None::<WorkflowFile>);
    let rows = RwSignal::new(Vec::<MarkRow>::new());
    let name = RwSignal::new(String::new());
    let saved = RwSignal::new(None::<String>);
    // With a current project: its own template, unless made global.
    let global = RwSignal::new(false);
    let load = move || {
        let p = path.get_untracked();
        saved.set(None);
        run_action(fleet, async move {
            let file = api::read_workflow_file(&p).await?;
            let mut seen = std::collections::HashSet::new();
            let list = file
                .inputs
                .iter()
                .map(|i| {
                    // Inputs of the same name on two nodes get the node's id too.
                    let n = if seen.insert(i.input.clone()) {
                        i.input.clone()
                    } else {
                        format!("{}_{}", i.input, i.node_id)
                    };
                    MarkRow {
                        input: i.clone(),
                        marked: RwSignal::new(false),
                        name: RwSignal::new(n),
                    }
                })
                .collect();
            if name.get_untracked().trim().is_empty() {
                let stem = std::path::Path::new(&file.path)
                    .file_stem()
                    .map(|s| s.to_string_lossy().replace(['_', '-'], " "))
                    .unwrap_or_default();
                name.set(stem);
            }
            rows.set(list);
            loaded.set(Some(file));
            Ok(())
        });
    };
    let browse = move |_| {
        run_action(fleet, async move {
            if let Some(p) = api::pick_workflow_file().await? {
                path.set(p);
                load();
            }
            Ok(())
        })
    };
    let save = move |_| {
        let Some(file) = loaded.get_untracked() else {
            return;
        };
        let parameters = rows
            .get_untracked()
            .iter()
            .filter(|r| r.marked.get_untracked())
            .map(|r| ParameterMark {
                name: r.name.get_untracked().trim().to_string(),
                node_id: r.input.node_id.clone(),
                input: r.input.input.clone(),
                kind: None,
                description: None,
            })
            .collect();
        let draft = TemplateDraft {
            name: name.get_untracked(),
            description: None,
            workflow: file.workflow,
            parameters,
        };
        let global = global.get_untracked();
        run_action(fleet, async move {
            let t = api::create_template(&draft, global).await?;
            saved.set(Some(format!(
                "Saved \"{}\" with {} parameter(s).",
                t.name,
                t.parameters.len()
            )));
            loaded.set(None);
            rows.set(Vec::new());
            name.set(String::new());
            on_saved.run(t.id);
            Ok(())
        });
    };
    view! {
        <h3>"Import a workflow as a template"</h3>
        <p class="muted">"A workflow saved with ComfyUI's \"Save (API)\"; mark the inputs to fill in at each run."</p>
        <span class="with-button">
            <input id="import-path" placeholder="/home/me/workflow_api.json" prop:value=move || path.get()
                on:input=move |ev| path.set(event_target_value(&ev))/>
            <button id="import-browse" on:click=browse>"Browse\u{2026}"</button>
            <button id="import-load" on:click=move |_| load()>"Load"</button>
        </span>
        <p class="ok" id="import-saved">{move || saved.get().unwrap_or_default()}</p>
        <Show when=move || loaded.with(Option::is_some)>
            <table class="import-inputs" id="import-inputs">
                <thead><tr><th title="Make this input a parameter">"Use"</th><th>"Node"</th><th>"Input"</th><th>"Value"</th><th>"Name"</th></tr></thead>
                <tbody>
                    {move || rows.get().into_iter().map(|r| {
                        let i = r.input.clone();
                        view! {
                            <tr data-node=i.node_id.clone() data-input=i.input.clone()>
                                <td><input type="checkbox" class="mark" prop:checked=move || r.marked.get()
                                    on:change=move |ev| r.marked.set(event_target_checked(&ev))/></td>
                                <td>{format!("#{} {}", i.node_id, i.class_type)}</td>
                                <td>{i.input.clone()}</td>
                                <td class="value">{format_value(&i)}</td>
                                <td><input class="param-name" prop:value=move || r.name.get()
                                    on:input=move |ev| r.name.set(event_target_value(&ev))/></td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <label class="field">
                <span>"Template name"</span>
                <input id="import-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/>
            </label>
            <Show when=move || fleet.projects.with(|l| l.current_project_id.is_some())>
                <label class="check">
                    <input type="checkbox" id="import-global" prop:checked=move || global.get()
                        on:change=move |ev| global.set(event_target_checked(&ev))/>
                    "For every project (else only this one)"
                </label>
            </Show>
            <button class="primary" id="import-save" on:click=save>"Save as template"</button>
            <button id="import-run" title="Run the workflow once as it is, on the target chosen above"
                on:click=move |_| {
                    let Some(file) = loaded.get_untracked() else { return };
                    let tg = target.run(());
                    run_action(fleet, async move {
                        api::submit_workflow(&file.workflow.to_string(), &tg).await.map(|_| ())
                    });
                }>"Run once as is"</button>
        </Show>
    }
}

/// A target in words, with the instance's name.
fn describe_target(t: &JobTarget, fleet: Fleet) -> String {
    match t {
        JobTarget::Auto => "automatic".into(),
        JobTarget::Active => "the active instance".into(),
        JobTarget::Instance { id } => {
            untrack(|| fleet.with(id, |i| i.name.clone())).unwrap_or_else(|| id.clone())
        }
    }
}

/// The instances a saved template is pinned to (none ticked: any).
#[component]
fn TemplatePins(
    template: Memo<Option<WorkflowTemplate>>,
    on_saved: Callback<String>,
) -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let pins = RwSignal::new(Vec::<String>::new());
    Effect::new(move |_| {
        pins.set(template.with(|t| {
            t.as_ref()
                .map(|t| t.pinned_instances.clone())
                .unwrap_or_default()
        }))
    });
    let save = move |_| {
        let Some(t) = template.get_untracked() else {
            return;
        };
        let chosen = pins.get_untracked();
        run_action(fleet, async move {
            api::set_template_pins(&t.id, &chosen).await?;
            on_saved.run(t.id);
            Ok(())
        });
    };
    view! {
        <fieldset class="pins" id="template-pins">
            <legend>"Runs only on (none ticked: any instance)"</legend>
            <For each=move || fleet.ids.get() key=|id| id.clone() children=move |id| {
                let (a, b) = (id.clone(), id.clone());
                let name = {
                    let id = id.clone();
                    move || fleet.with(&id, |i| i.name.clone()).unwrap_or_default()
                };
                view! {
                    <label class="check">
                        <input type="checkbox" data-pin=id.clone() prop:checked=move || pins.with(|p| p.contains(&a))
                            on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                pins.update(|p| { p.retain(|x| x != &b); if on { p.push(b.clone()); } });
                            }/>
                        {name}
                    </label>
                }
            }/>
            <button id="save-pins" on:click=save>"Save pins"</button>
        </fieldset>
    }
}

/// A value as the table shows it: strings unquoted and cut short.
fn format_value(i: &WorkflowInput) -> String {
    let s = match (&i.value, i.kind) {
        (Value::String(s), ParameterType::String) => s.clone(),
        (v, _) => v.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}\u{2026}", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}
