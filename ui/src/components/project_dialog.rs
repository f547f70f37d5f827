use crate::api;
use crate::state::{errors_of, run_action, Fleet};
use leptos::prelude::*;
use storycore_types::{InstanceDefaults, JobTarget, Project, ProjectDraft};

/// The current project beside the active instance: choose it, or open the
/// projects dialog.
#[component]
pub fn ProjectSwitcher() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let open = RwSignal::new(false);
    let choose = move |ev: leptos::ev::Event| {
        let v = event_target_value(&ev);
        run_action(fleet, async move {
            let id = (!v.is_empty()).then_some(v);
            api::set_current_project(id.as_deref()).await?;
            fleet.reload_projects();
            Ok(())
        });
    };
    view! {
        <label class="switcher project-switcher" title="Jobs run in the current project: its default target, templates and output folder">
            <span class="muted">"Project"</span>
            <select id="project-select" on:change=choose>
                <option value="" selected=move || fleet.projects.with(|l| l.current_project_id.is_none())>"(none)"</option>
                {move || fleet.projects.get().projects.into_iter().map(|p| {
                    let current = fleet.projects.with_untracked(|l| l.current_project_id.as_deref() == Some(p.id.as_str()));
                    view! { <option value=p.id.clone() selected=current>{p.name.clone()}</option> }
                }).collect_view()}
            </select>
            <button id="projects-button" on:click=move |_| open.set(true)>"Projects\u{2026}"</button>
        </label>
        <Show when=move || open.get()>
            <ProjectsDialog on_close=Callback::new(move |_| open.set(false))/>
        </Show>
    }
}

/// The projects: create, change, delete. A new project becomes current.
#[component]
pub fn ProjectsDialog(on_close: Callback<()>) -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    // None: the form creates; Some(id): it changes that project.
    let editing = RwSignal::new(None::<String>);
    let name = RwSignal::new(String::new());
    let folder = RwSignal::new(String::new());
    let output = RwSignal::new(String::new());
    let target = RwSignal::new(String::from("auto"));
    let args = RwSignal::new(String::new());
    let comfyui_path = RwSignal::new(String::new());
    let python_path = RwSignal::new(String::new());
    let field_errors = RwSignal::new(Vec::<(String, String)>::new());
    let fill = move |p: Option<Project>| {
        field_errors.set(Vec::new());
        let p = p.unwrap_or_else(|| Project {
            id: String::new(),
            name: String::new(),
            folder: String::new(),
            default_target: JobTarget::Auto,
            output_folder: None,
            instance_defaults: InstanceDefaults::default(),
            created_at: None,
        });
        editing.set((!p.id.is_empty()).then(|| p.id.clone()));
        name.set(p.name);
        folder.set(p.folder);
        output.set(p.output_folder.unwrap_or_default());
        target.set(match p.default_target {
            JobTarget::Auto => "auto".into(),
            JobTarget::Active => "active".into(),
            JobTarget::Instance { id } => id,
        });
        let d = p.instance_defaults;
        args.set(d.extra_args.unwrap_or_default().join(" "));
        comfyui_path.set(d.comfyui_path.unwrap_or_default());
        python_path.set(d.python_path.unwrap_or_default());
    };
    let draft = move || {
        let opt = |s: String| {
            let s = s.trim().to_string();
            (!s.is_empty()).then_some(s)
        };
        let words: Vec<String> = args
            .get_untracked()
            .split_whitespace()
            .map(String::from)
            .collect();
        ProjectDraft {
            name: name.get_untracked(),
            folder: folder.get_untracked(),
            default_target: match target.get_untracked().as_str() {
                "auto" => JobTarget::Auto,
                "active" => JobTarget::Active,
                id => JobTarget::Instance { id: id.into() },
            },
            output_folder: opt(output.get_untracked()),
            instance_defaults: InstanceDefaults {
                extra_args: (!words.is_empty()).then_some(words),
                comfyui_path: opt(comfyui_path.get_untracked()),
                python_path: opt(python_path.get_untracked()),
                ..InstanceDefaults::default()
            },
        }
    };
    let save = move |_| {
        let d = draft();
        let id = editing.get_untracked();
        leptos::task::spawn_local(async move {
            let saved = match &id {
                Some(id) => api::update_project(id, &d).await,
                None => api::create_project(&d).await,
            };
            match saved {
                Ok(_) => {
                    fleet.reload_projects();
                    fill(None);
                }
                Err(e) => {
                    if e.fields.is_empty() {
                        fleet.error.set(Some(e.message));
                    }
                    field_errors.set(e.fields.into_iter().map(|f| (f.field, f.message)).collect());
                }
            }
        });
    };
    let browse = move |into: RwSignal<String>, title: &'static str| {
        run_action(fleet, async move {
            if let Some(p) = api::pick_folder(title, &into.get_untracked()).await? {
                into.set(p);
            }
            Ok(())
        })
    };
    let error_of = move |field: &'static str| move || errors_of(field_errors, field);
    view! {
        <div class="modal-backdrop">
            <div class="dialog projects" id="projects-dialog" role="dialog">
                <h2>"Projects"</h2>
                <p class="muted">"A project keeps where its jobs run, its own templates, the folder its outputs are copied to, and what new instances start with."</p>
                <table class="projects" id="project-list">
                    <tbody>
                        {move || fleet.projects.get().projects.into_iter().map(|p| {
                            let (edit, del) = (p.clone(), p.id.clone());
                            view! {
                                <tr data-id=p.id.clone()>
                                    <td>{p.name.clone()}</td>
                                    <td class="muted">{p.folder.clone()}</td>
                                    <td>
                                        <button class="project-edit" on:click=move |_| fill(Some(edit.clone()))>"Edit"</button>
                                        <button class="project-delete" title="Forget the project (its folder and outputs stay)"
                                            on:click=move |_| {
                                                let id = del.clone();
                                                run_action(fleet, async move {
                                                    api::delete_project(&id).await?;
                                                    fleet.reload_projects();
                                                    Ok(())
                                                })
                                            }>"Delete"</button>
                                    </td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
                <h3>{move || if editing.get().is_some() { "Edit project" } else { "New project" }}</h3>
                <label class="field">
                    <span>"Name"</span>
                    <input id="project-name" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/>
                    <span class="error">{error_of("name")}</span>
                </label>
                <label class="field">
                    <span>"Folder"</span>
                    <span class="with-button">
                        <input id="project-folder" placeholder="/home/me/Projects/film" prop:value=move || folder.get()
                            on:input=move |ev| folder.set(event_target_value(&ev))/>
                        <button on:click=move |_| browse(folder, "The project's folder")>"Browse\u{2026}"</button>
                    </span>
                    <span class="error">{error_of("folder")}</span>
                </label>
                <label class="field">
                    <span>"Outputs copied to (empty: the folder's outputs/)"</span>
                    <input id="project-output" prop:value=move || output.get() on:input=move |ev| output.set(event_target_value(&ev))/>
                    <span class="error">{error_of("outputFolder")}</span>
                </label>
                <label class="field">
                    <span>"Its jobs run on"</span>
                    <select id="project-target" on:change=move |ev| target.set(event_target_value(&ev))>
                        <option value="auto" selected=move || target.get() == "auto">"the best instance (automatic)"</option>
                        <option value="active" selected=move || target.get() == "active">"the active instance"</option>
                        {move || fleet.ids.get().into_iter().map(|id| {
                            let label = fleet.with(&id, |i| i.name.clone()).unwrap_or_else(|| id.clone());
                            let chosen = target.get() == id;
                            view! { <option value=id selected=chosen>{label}</option> }
                        }).collect_view()}
                    </select>
                    <span class="error">{error_of("defaultTarget")}</span>
                </label>
                <h3>"New instances in this project start with"</h3>
                <label class="field">
                    <span>"ComfyUI folder"</span>
                    <input id="project-comfyui-path" prop:value=move || comfyui_path.get() on:input=move |ev| comfyui_path.set(event_target_value(&ev))/>
                </label>
                <label class="field">
                    <span>"Python"</span>
                    <input id="project-python-path" prop:value=move || python_path.get() on:input=move |ev| python_path.set(event_target_value(&ev))/>
                </label>
                <label class="field">
                    <span>"Extra arguments"</span>
                    <input id="project-extra-args" placeholder="--lowvram" prop:value=move || args.get() on:input=move |ev| args.set(event_target_value(&ev))/>
                    <span class="error">{error_of("instanceDefaults")}</span>
                </label>
                <div class="dialog-buttons">
                    <Show when=move || editing.get().is_some()>
                        <button id="project-new" on:click=move |_| fill(None)>"New project"</button>
                    </Show>
                    <button id="projects-close" on:click=move |_| on_close.run(())>"Close"</button>
                    <button class="primary" id="project-save" on:click=save>
                        {move || if editing.get().is_some() { "Save" } else { "Create" }}
                    </button>
                </div>
            </div>
        </div>
    }
}
