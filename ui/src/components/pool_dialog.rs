use crate::api;
use crate::state::{errors_of, run_action, Fleet};
use leptos::prelude::*;
use std::collections::BTreeMap;
use storycore_types::PoolConfig;

/// The fields of the form, as typed.
#[derive(Clone, Copy)]
struct Form {
    name: RwSignal<String>,
    comfyui_path: RwSignal<String>,
    python_path: RwSignal<String>,
    extra_args: RwSignal<String>,
    env: RwSignal<String>,
    devices: RwSignal<String>,
    min: RwSignal<String>,
    max: RwSignal<String>,
    idle: RwSignal<String>,
    trigger: RwSignal<String>,
    cooldown: RwSignal<String>,
    memory: RwSignal<String>,
    limits: RwSignal<String>,
}

impl Form {
    fn new(p: &PoolConfig) -> Self {
        let s = |v: String| RwSignal::new(v);
        Self {
            name: s(p.name.clone()),
            comfyui_path: s(p.comfyui_path.clone()),
            python_path: s(p.python_path.clone().unwrap_or_default()),
            extra_args: s(p.extra_args.clone().unwrap_or_default().join(" ")),
            env: s(p
                .env_vars
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n")),
            devices: s(p.devices.join(", ")),
            min: s(p.min_members.to_string()),
            max: s(p.max_members.to_string()),
            idle: s(p.idle_timeout_secs.to_string()),
            trigger: s(p.scale_up_wait_secs.to_string()),
            cooldown: s(p.cooldown_secs.to_string()),
            memory: s(p.memory_need_mib.map(|m| m.to_string()).unwrap_or_default()),
            limits: s(p
                .device_limits
                .iter()
                .map(|(d, n)| format!("{d}={n}"))
                .collect::<Vec<_>>()
                .join(", ")),
        }
    }

    /// The pool the form describes, or the fields that do not parse.
    fn config(&self, base: &PoolConfig) -> Result<PoolConfig, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut p = base.clone();
        let text = |s: RwSignal<String>| s.get_untracked().trim().to_string();
        let opt = |s: RwSignal<String>| Some(text(s)).filter(|t| !t.is_empty());
        p.name = text(self.name);
        if p.id.is_empty() {
            p.id = pool_id(&p.name);
        }
        p.comfyui_path = text(self.comfyui_path);
        p.python_path = opt(self.python_path);
        let words: Vec<String> = text(self.extra_args)
            .split_whitespace()
            .map(String::from)
            .collect();
        p.extra_args = (!words.is_empty()).then_some(words);
        let mut env = BTreeMap::new();
        for line in self
            .env
            .get_untracked()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            match line.split_once('=') {
                Some((k, v)) => {
                    env.insert(k.trim().to_string(), v.to_string());
                }
                None => errors.push(("envVars".into(), format!("'{line}' is not NAME=value"))),
            }
        }
        p.env_vars = (!env.is_empty()).then_some(env);
        p.devices = text(self.devices)
            .split(',')
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .collect();
        let mut number = |field: &str, s: RwSignal<String>| -> u64 {
            text(s).parse::<u64>().unwrap_or_else(|_| {
                errors.push((field.into(), "enter a whole number".into()));
                0
            })
        };
        p.min_members = number("minMembers", self.min) as u32;
        p.max_members = number("maxMembers", self.max) as u32;
        p.idle_timeout_secs = number("idleTimeoutSecs", self.idle);
        p.cooldown_secs = number("cooldownSecs", self.cooldown);
        match text(self.trigger).parse::<f64>() {
            Ok(v) => p.scale_up_wait_secs = v,
            Err(_) => errors.push(("scaleUpWaitSecs".into(), "enter a number of seconds".into())),
        }
        p.memory_need_mib = match opt(self.memory) {
            None => None,
            Some(m) => match m.parse::<u64>() {
                Ok(v) => Some(v),
                Err(_) => {
                    errors.push((
                        "memoryNeedMib".into(),
                        "enter MiB as a whole number, or leave empty to measure".into(),
                    ));
                    None
                }
            },
        };
        p.device_limits = BTreeMap::new();
        for part in text(self.limits)
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            match part
                .split_once('=')
                .and_then(|(d, n)| Some((d.trim(), n.trim().parse::<u32>().ok()?)))
            {
                Some((d, n)) => {
                    p.device_limits.insert(d.to_string(), n);
                }
                None => errors.push((
                    "deviceLimits".into(),
                    format!("'{part}' is not device=count"),
                )),
            }
        }
        if errors.is_empty() {
            Ok(p)
        } else {
            Err(errors)
        }
    }
}

/// An id from a name: lower case letters, digits and '-'.
fn pool_id(name: &str) -> String {
    let mut id: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while id.contains("--") {
        id = id.replace("--", "-");
    }
    let id = id.trim_matches('-');
    let id: String = id.chars().take(24).collect();
    if id.is_empty() {
        "pool".into()
    } else {
        id
    }
}

/// Creates a pool, or changes the one `fleet.pool_editor` names.
#[component]
pub fn PoolDialog() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let editing = fleet.pool_editor.get_untracked().flatten();
    let base = editing
        .as_ref()
        .and_then(|id| {
            fleet.pools.with_untracked(|l| {
                l.iter()
                    .find(|p| &p.config.id == id)
                    .map(|p| p.config.clone())
            })
        })
        .unwrap_or_else(|| {
            let mut p = PoolConfig::new("", "", "");
            p.min_members = 0;
            p
        });
    let form = Form::new(&base);
    let field_errors = RwSignal::new(Vec::<(String, String)>::new());
    let error_of = move |field: &'static str| move || errors_of(field_errors, field);
    let is_new = editing.is_none();
    let save = move |_| {
        let config = match form.config(&base) {
            Ok(c) => c,
            Err(errors) => {
                field_errors.set(errors);
                return;
            }
        };
        leptos::task::spawn_local(async move {
            let saved = if is_new {
                api::create_pool(&config).await
            } else {
                api::update_pool(&config).await
            };
            match saved {
                Ok(view) => {
                    // The backend announces every change of a pool
                    // (PoolUpdated), and that event may come before this
                    // answer, and be newer: a new pool's first member already
                    // in it. Putting the answer over it left the card without
                    // its member for good (e2e_pools failed so, now and then,
                    // with the member running). The answer only fills in a
                    // pool the window has not heard of yet.
                    fleet.pools.update(|l| {
                        if !l.iter().any(|x| x.config.id == view.config.id) {
                            l.push(view);
                        }
                    });
                    fleet.pool_editor.set(None);
                }
                Err(e) => {
                    if e.fields.is_empty() {
                        fleet.error.set(Some(e.message.clone()));
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
    let input = move |id: &'static str,
                      label: &'static str,
                      sig: RwSignal<String>,
                      field: &'static str,
                      hint: &'static str| {
        view! {
            <label class="field">
                <span>{label}</span>
                <input id=id placeholder=hint prop:value=move || sig.get()
                    on:input=move |ev| sig.set(event_target_value(&ev))/>
                <span class="error">{error_of(field)}</span>
            </label>
        }
    };
    view! {
        <div class="modal-backdrop">
            <div class="dialog pool-dialog" id="pool-dialog" role="dialog">
                <h2>{if is_new { "New pool" } else { "Pool settings" }}</h2>
                <p class="muted">"A pool starts local ComfyUI instances from one folder when work waits, and stops them when they idle, within the memory of your GPUs (or, without GPUs, of the computer)."</p>
                {input("pool-name", "Name", form.name, "name", "Render farm")}
                <span class="error">{error_of("id")}</span>
                <label class="field">
                    <span>"ComfyUI folder"</span>
                    <span class="with-button">
                        <input id="pool-comfyui-path" placeholder="/home/me/ComfyUI" prop:value=move || form.comfyui_path.get()
                            on:input=move |ev| form.comfyui_path.set(event_target_value(&ev))/>
                        <button on:click=move |_| browse(form.comfyui_path, "The ComfyUI folder")>"Browse\u{2026}"</button>
                    </span>
                    <span class="error">{error_of("comfyuiPath")}</span>
                </label>
                {input("pool-python-path", "Python (empty: python3)", form.python_path, "pythonPath", "/home/me/ComfyUI/venv/bin/python")}
                {input("pool-extra-args", "Extra arguments", form.extra_args, "extraArgs", "--lowvram")}
                <label class="field">
                    <span>"Environment (NAME=value, one per line)"</span>
                    <textarea id="pool-env" rows="3" prop:value=move || form.env.get()
                        on:input=move |ev| form.env.set(event_target_value(&ev))></textarea>
                    <span class="error">{error_of("envVars")}</span>
                </label>
                {input("pool-devices", "GPUs (empty: all; or cpu)", form.devices, "devices", "0, 1")}
                <div class="field-row">
                    {input("pool-min", "Fewest members", form.min, "minMembers", "0")}
                    {input("pool-max", "Most members", form.max, "maxMembers", "4")}
                </div>
                <div class="field-row">
                    {input("pool-trigger", "Add one when the wait passes (s)", form.trigger, "scaleUpWaitSecs", "30")}
                    {input("pool-idle", "Stop one idle for (s)", form.idle, "idleTimeoutSecs", "120")}
                    {input("pool-cooldown", "Between decisions (s)", form.cooldown, "cooldownSecs", "10")}
                </div>
                {input("pool-memory", "Memory a member needs (MiB; empty: measured)", form.memory, "memoryNeedMib", "measured over the first run")}
                {input("pool-limits", "Members at most per device (set after running out of memory)", form.limits, "deviceLimits", "0=2")}
                <div class="dialog-buttons">
                    <button id="pool-cancel" on:click=move |_| fleet.pool_editor.set(None)>"Cancel"</button>
                    <button class="primary" id="pool-save" on:click=save>
                        {if is_new { "Create" } else { "Save" }}
                    </button>
                </div>
            </div>
        </div>
    }
}
