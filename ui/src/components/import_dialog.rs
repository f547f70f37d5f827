use crate::api;
use crate::state::Fleet;
use leptos::prelude::*;
use leptos::task::spawn_local;
use storycore_types::import::{ClashPolicy, ImportAction, ImportEntry, ImportPreview};

/// The import of an instances file: what it would add, rename, replace or
/// skip (and what it rejects, with why) under the chosen policy for clashing
/// ids and names; nothing changes until "Import" is pressed.
#[component]
pub fn ImportDialog(path: String, on_close: Callback<()>) -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let policy = RwSignal::new(ClashPolicy::Fail);
    let preview = RwSignal::new(None::<Result<ImportPreview, String>>);
    let busy = RwSignal::new(false);
    let path = StoredValue::new(path);
    let load = move || {
        let p = path.get_value();
        let pol = policy.get_untracked();
        spawn_local(async move {
            preview.set(Some(
                api::preview_import(&p, pol).await.map_err(|e| e.message),
            ));
        });
    };
    load();
    let apply = move |_| {
        let p = path.get_value();
        let pol = policy.get_untracked();
        busy.set(true);
        spawn_local(async move {
            match api::import_instances_file(&p, pol).await {
                Ok(entries) => {
                    fleet.notices.update(|n| n.push(summary(&p, &entries)));
                    on_close.run(());
                }
                Err(e) => {
                    busy.set(false);
                    preview.update(|pv| {
                        if let Some(Ok(pv)) = pv {
                            pv.applicable = false;
                            pv.problem = Some(e.message.clone());
                        }
                    });
                }
            }
        });
    };
    let choices = [
        (
            ClashPolicy::Fail,
            "fail",
            "Import nothing if an id or name is taken",
        ),
        (ClashPolicy::Skip, "skip", "Keep mine, skip theirs"),
        (ClashPolicy::Rename, "rename", "Import a renamed copy"),
        (ClashPolicy::Replace, "replace", "Replace mine with theirs"),
    ];
    view! {
        <div class="modal-backdrop">
            <div class="dialog" id="import-dialog" role="dialog">
                <h2>"Import instances"</h2>
                <p class="muted" id="import-path">{path.get_value()}</p>
                <label class="field">
                    <span>"When an id or a name is already taken"</span>
                    <select id="import-policy" on:change=move |ev| {
                        let v = event_target_value(&ev);
                        if let Some((p, _, _)) = choices.iter().find(|(_, k, _)| *k == v) {
                            policy.set(*p);
                            load();
                        }
                    }>
                        {choices.iter().map(|(p, key, label)| {
                            let selected = *p == policy.get_untracked();
                            view! { <option value=*key selected=selected>{*label}</option> }
                        }).collect_view()}
                    </select>
                </label>
                {move || match preview.get() {
                    None => view! { <p class="muted">"Reading the file\u{2026}"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error" id="import-problem">{e}</p> }.into_any(),
                    Some(Ok(pv)) => view! {
                        <table class="import-preview" id="import-preview">
                            <thead><tr><th>"Instance"</th><th>"Will be"</th><th>"Notes"</th></tr></thead>
                            <tbody>
                                {pv.entries.iter().map(entry_row).collect_view()}
                            </tbody>
                        </table>
                        <p class="error" id="import-problem">{pv.problem.clone().unwrap_or_default()}</p>
                    }.into_any(),
                }}
                <div class="dialog-buttons">
                    <button id="import-cancel" on:click=move |_| on_close.run(())>"Cancel"</button>
                    <button class="primary" id="import-apply"
                        disabled=move || busy.get() || !matches!(preview.get(), Some(Ok(ref p)) if p.applicable)
                        on:click=apply>"Import"</button>
                </div>
            </div>
        </div>
    }
}

fn action_key(a: &ImportAction) -> &'static str {
    match a {
        ImportAction::Added => "added",
        ImportAction::Renamed { .. } => "renamed",
        ImportAction::Replaced { .. } => "replaced",
        ImportAction::Skipped { .. } => "skipped",
        ImportAction::Rejected => "rejected",
    }
}

fn action_text(a: &ImportAction) -> String {
    match a {
        ImportAction::Added => "added".into(),
        ImportAction::Renamed {
            new_id,
            new_name,
            new_port,
        } => match new_port {
            Some(p) => format!("added as {new_name} ({new_id}) on port {p}"),
            None => format!("added as {new_name} ({new_id})"),
        },
        ImportAction::Replaced { replaced_ids } => format!("replacing {}", replaced_ids.join(", ")),
        ImportAction::Skipped { reason } => format!("skipped: {reason}"),
        ImportAction::Rejected => "rejected".into(),
    }
}

fn entry_row(e: &ImportEntry) -> impl IntoView {
    let notes: Vec<String> = e
        .errors
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .chain(e.notes.iter().cloned())
        .collect();
    view! {
        <tr class="import-entry" data-action=action_key(&e.action) data-id=e.id.clone()>
            <td>{format!("{} ({})", e.name, e.id)}</td>
            <td>{action_text(&e.action)}</td>
            <td>{notes.join(" ")}</td>
        </tr>
    }
}

/// One line for the notice after an import.
fn summary(path: &str, entries: &[ImportEntry]) -> String {
    let count = |k: &str| {
        entries
            .iter()
            .filter(|e| action_key(&e.action) == k)
            .count()
    };
    let mut parts = Vec::new();
    for (k, word) in [
        ("added", "added"),
        ("renamed", "added under a new name"),
        ("replaced", "replaced"),
        ("skipped", "skipped"),
    ] {
        let n = count(k);
        if n > 0 {
            parts.push(format!("{n} {word}"));
        }
    }
    let todo: Vec<&str> = entries
        .iter()
        .flat_map(|e| e.notes.iter().map(String::as_str))
        .collect();
    let mut text = format!("Imported from {path}: {}.", parts.join(", "));
    if !todo.is_empty() {
        text.push(' ');
        text.push_str(&todo.join(" "));
    }
    text
}
