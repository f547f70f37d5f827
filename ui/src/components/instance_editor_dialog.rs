use crate::api;
use crate::format::bytes;
use crate::state::{EditorMode, Fleet};
use leptos::prelude::*;
use leptos::task::spawn_local;
use std::collections::BTreeMap;
use storycore_types::{
    ConnectionOutcome, ConnectionTest, FieldError, InstanceConfig, InstanceConfigPatch, KeyAuth,
    Scheme,
};

/// The editor's fields as the user types them.
#[derive(Clone, Copy)]
struct Form {
    name: RwSignal<String>,
    description: RwSignal<String>,
    host: RwSignal<String>,
    port: RwSignal<String>,
    https: RwSignal<bool>,
    gpu: RwSignal<String>,
    env: RwSignal<Vec<EnvRow>>,
    comfyui_path: RwSignal<String>,
    python_path: RwSignal<String>,
    custom_nodes: RwSignal<String>,
    max_concurrent: RwSignal<String>,
    timeout: RwSignal<String>,
    /// Empty: the default (5 minutes local, 1 minute attached).
    start_timeout: RwSignal<String>,
    queue_monitoring: RwSignal<bool>,
    auto_start: RwSignal<bool>,
    allow_risky_env: RwSignal<bool>,
    /// Typed here, sent to the keyring on save, never shown again.
    api_key: RwSignal<String>,
    /// `bearer`, `basic` or `header`.
    key_auth: RwSignal<String>,
    key_header: RwSignal<String>,
    key_in_file: RwSignal<bool>,
    key_remove: RwSignal<bool>,
    ca_file: RwSignal<String>,
    /// The stored key's reference, kept as it is by the config fields.
    api_key_ref: StoredValue<Option<String>>,
    /// The secret variables' keyring entries, as loaded.
    secret_refs: StoredValue<BTreeMap<String, String>>,
}

/// One environment variable in the key-value editor. `n` keys the row so
/// typing in one does not re-create the others.
#[derive(Clone, Copy)]
struct EnvRow {
    n: usize,
    key: RwSignal<String>,
    value: RwSignal<String>,
    /// The value is secret: it goes to the keyring, never to the file.
    secret: RwSignal<bool>,
    /// A secret value is already stored for this name (the field stays
    /// empty: typing replaces it).
    stored: bool,
}

static NEXT_ROW: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl EnvRow {
    fn new(key: &str, value: &str) -> Self {
        Self {
            n: NEXT_ROW.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            key: RwSignal::new(key.to_string()),
            value: RwSignal::new(value.to_string()),
            secret: RwSignal::new(false),
            stored: false,
        }
    }

    /// A secret variable whose value is in the keyring.
    fn stored_secret(key: &str) -> Self {
        Self {
            secret: RwSignal::new(true),
            stored: true,
            ..Self::new(key, "")
        }
    }
}

fn text(s: RwSignal<String>) -> Option<String> {
    let v = s.get_untracked().trim().to_string();
    (!v.is_empty()).then_some(v)
}

impl Form {
    fn from_config(c: &InstanceConfig) -> Self {
        let env = c
            .env_vars
            .iter()
            .flatten()
            .map(|(k, v)| EnvRow::new(k, v))
            .chain(
                c.secret_env_vars
                    .iter()
                    .flatten()
                    .map(|(k, _)| EnvRow::stored_secret(k)),
            )
            .collect();
        Self {
            name: RwSignal::new(c.name.clone()),
            description: RwSignal::new(c.description.clone().unwrap_or_default()),
            host: RwSignal::new(c.host().to_string()),
            port: RwSignal::new(c.port.to_string()),
            https: RwSignal::new(c.scheme() == Scheme::Https),
            gpu: RwSignal::new(c.gpu_device.clone().unwrap_or_default()),
            env: RwSignal::new(env),
            comfyui_path: RwSignal::new(c.comfyui_path.clone().unwrap_or_default()),
            python_path: RwSignal::new(c.python_path.clone().unwrap_or_default()),
            custom_nodes: RwSignal::new(c.custom_nodes_path.clone().unwrap_or_default()),
            max_concurrent: RwSignal::new(c.max_concurrent().to_string()),
            timeout: RwSignal::new(c.timeout().to_string()),
            start_timeout: RwSignal::new(
                c.start_timeout_ms
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            ),
            queue_monitoring: RwSignal::new(c.queue_monitoring()),
            auto_start: RwSignal::new(c.autostart()),
            allow_risky_env: RwSignal::new(c.allow_risky_env_vars == Some(true)),
            api_key: RwSignal::new(String::new()),
            key_auth: RwSignal::new(
                match c.key_auth() {
                    KeyAuth::Bearer => "bearer",
                    KeyAuth::Basic => "basic",
                    KeyAuth::Header(_) => "header",
                }
                .to_string(),
            ),
            key_header: RwSignal::new(match c.key_auth() {
                KeyAuth::Header(h) => h,
                _ => "X-API-Key".to_string(),
            }),
            key_in_file: RwSignal::new(
                c.api_key_ref
                    .as_deref()
                    .is_some_and(|r| r.starts_with("file:")),
            ),
            key_remove: RwSignal::new(false),
            ca_file: RwSignal::new(c.ca_file.clone().unwrap_or_default()),
            api_key_ref: StoredValue::new(c.api_key_ref.clone()),
            secret_refs: StoredValue::new(c.secret_env_vars.clone().unwrap_or_default()),
        }
    }

    /// Secret values typed now: (name, value), stored after the save.
    fn typed_secrets(&self) -> Vec<(String, String)> {
        self.env
            .get_untracked()
            .iter()
            .filter(|r| r.secret.get_untracked())
            .map(|r| {
                (
                    r.key.get_untracked().trim().to_string(),
                    r.value.get_untracked(),
                )
            })
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .collect()
    }

    /// The key to store (`Some(Some)`), to remove (`Some(None)`), or nothing
    /// to do (`None`).
    fn key_change(&self) -> Option<Option<String>> {
        let typed = self.api_key.get_untracked().trim().to_string();
        if !typed.is_empty() {
            Some(Some(typed))
        } else if self.key_remove.get_untracked() && self.api_key_ref.with_value(Option::is_some) {
            Some(None)
        } else {
            None
        }
    }

    /// The config the fields describe; numbers and env lines that cannot even
    /// be read are reported here, everything else by the backend.
    fn to_config(self, id: &str) -> Result<InstanceConfig, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut number = |field: &str, s: RwSignal<String>| -> u64 {
            match s.get_untracked().trim().parse::<u64>() {
                Ok(n) => n,
                Err(_) => {
                    errors.push(FieldError::new(field, "Enter a whole number."));
                    0
                }
            }
        };
        let port = number("port", self.port);
        let max = number("maxConcurrentWorkflows", self.max_concurrent);
        let timeout = number("timeoutMs", self.timeout);
        let start_timeout =
            text(self.start_timeout).map(|_| number("startTimeoutMs", self.start_timeout));
        let mut env = BTreeMap::new();
        let mut secret_refs = BTreeMap::new();
        for (n, row) in self.env.get_untracked().iter().enumerate() {
            let key = row.key.get_untracked().trim().to_string();
            let value = row.value.get_untracked();
            if row.secret.get_untracked() {
                // Its value goes to the keyring after the save; a stored one
                // left untouched keeps its entry.
                if let Some(r) = self.secret_refs.with_value(|m| m.get(&key).cloned()) {
                    secret_refs.insert(key.clone(), r);
                } else if value.is_empty() && !key.is_empty() {
                    errors.push(FieldError::new(
                        "envVars",
                        format!("{key} is secret: type its value (it goes to the keyring)."),
                    ));
                }
                continue;
            }
            if key.is_empty() {
                if !value.trim().is_empty() {
                    errors.push(FieldError::new(
                        "envVars",
                        format!("Variable {}: give it a name.", n + 1),
                    ));
                }
                continue;
            }
            if env.insert(key.clone(), value).is_some() {
                errors.push(FieldError::new(
                    "envVars",
                    format!("{key} is set twice: keep one."),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut c = InstanceConfig::new(
            id,
            self.name.get_untracked().trim(),
            port.min(u32::MAX as u64) as u32,
        );
        c.description = text(self.description);
        c.host = text(self.host);
        c.scheme = self.https.get_untracked().then_some(Scheme::Https);
        c.gpu_device = text(self.gpu);
        c.env_vars = (!env.is_empty()).then_some(env);
        c.comfyui_path = text(self.comfyui_path);
        c.python_path = text(self.python_path);
        c.custom_nodes_path = text(self.custom_nodes);
        c.max_concurrent_workflows = Some(max.min(u32::MAX as u64) as u32);
        c.timeout_ms = Some(timeout);
        c.start_timeout_ms = start_timeout;
        c.enable_queue_monitoring = Some(self.queue_monitoring.get_untracked());
        c.auto_start = Some(self.auto_start.get_untracked());
        c.allow_risky_env_vars = self.allow_risky_env.get_untracked().then_some(true);
        c.api_key_auth = match self.key_auth.get_untracked().as_str() {
            "basic" => Some("basic".into()),
            "header" => Some(format!("header:{}", self.key_header.get_untracked().trim())),
            _ => None,
        };
        c.ca_file = text(self.ca_file);
        c.api_key_ref = self.api_key_ref.get_value();
        c.secret_env_vars = (!secret_refs.is_empty()).then_some(secret_refs);
        Ok(c)
    }
}

fn patch_of(c: InstanceConfig) -> InstanceConfigPatch {
    InstanceConfigPatch {
        name: Some(c.name),
        port: Some(c.port),
        host: Some(c.host),
        gpu_device: Some(c.gpu_device),
        env_vars: Some(c.env_vars),
        custom_nodes_path: Some(c.custom_nodes_path),
        max_concurrent_workflows: Some(c.max_concurrent_workflows),
        timeout_ms: Some(c.timeout_ms),
        enable_queue_monitoring: Some(c.enable_queue_monitoring),
        auto_start: Some(c.auto_start),
        description: Some(c.description),
        scheme: Some(c.scheme),
        comfyui_path: Some(c.comfyui_path),
        python_path: Some(c.python_path),
        extra_args: None,
        api_key_ref: None,
        start_timeout_ms: Some(c.start_timeout_ms),
        allow_risky_env_vars: Some(c.allow_risky_env_vars),
        api_key_auth: Some(c.api_key_auth),
        ca_file: Some(c.ca_file),
        secret_env_vars: Some(c.secret_env_vars),
    }
}

/// Add and edit, in the seed's sections, with the backend's field errors next
/// to each field. Nothing is saved while the backend reports errors.
#[component]
pub fn InstanceEditorDialog() -> impl IntoView {
    let fleet = expect_context::<Fleet>();
    let mode = fleet.editor.get_untracked().unwrap_or(EditorMode::New);
    let next_port = fleet
        .all_untracked()
        .iter()
        .map(|i| i.config.port)
        .max()
        .map(|p| p + 1)
        .unwrap_or(8188);
    let mut duplicated_secrets = Vec::new();
    let (title, edit_id, start) = match &mode {
        EditorMode::New => {
            // The current project's defaults for its new instances.
            let mut c = InstanceConfig::new("", "", next_port);
            if let Some(p) = fleet.current_project() {
                p.instance_defaults.apply_to(&mut c);
            }
            ("Add instance", None, c)
        }
        EditorMode::Edit(id) => (
            "Edit instance",
            Some(id.clone()),
            fleet
                .get(id)
                .map(|i| i.config)
                .unwrap_or_else(|| InstanceConfig::new("", "", next_port)),
        ),
        EditorMode::Duplicate(id) => {
            let mut c = fleet
                .get(id)
                .map(|i| i.config)
                .unwrap_or_else(|| InstanceConfig::new("", "", next_port));
            c.id = String::new();
            c.name = format!("{} (copy)", c.name);
            c.port = next_port;
            // Secrets are the original's own: the copy asks for its own key
            // and values (its secret variables stay marked secret).
            c.api_key_ref = None;
            let secret_names: Vec<String> = c
                .secret_env_vars
                .take()
                .into_iter()
                .flatten()
                .map(|(n, _)| n)
                .collect();
            duplicated_secrets = secret_names;
            ("Duplicate instance", None, c)
        }
    };
    let form = Form::from_config(&start);
    for name in duplicated_secrets {
        let row = EnvRow::new(&name, "");
        row.secret.set(true);
        form.env.update(|v| v.push(row));
    }
    let gpus = RwSignal::new(None::<storycore_types::GpuList>);
    spawn_local(async move {
        if let Ok(list) = api::list_gpus().await {
            gpus.set(Some(list));
        }
    });
    let suggest = move |_| {
        let host = form.host.get_untracked();
        let from = form
            .port
            .get_untracked()
            .trim()
            .parse::<u16>()
            .unwrap_or(8188);
        spawn_local(async move {
            if let Ok(Some(p)) = api::suggest_port(&host, from).await {
                form.port.set(p.to_string());
            }
        });
    };
    let errors = RwSignal::new(Vec::<FieldError>::new());
    let general = RwSignal::new(None::<String>);
    let saving = RwSignal::new(false);
    let test = RwSignal::new(None::<Result<ConnectionTest, String>>);
    let error_for = move |field: &'static str| {
        move || {
            errors.with(|v| {
                v.iter()
                    .filter(|e| e.field == field || e.field.starts_with(&format!("{field}.")))
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        }
    };
    let field_error = move |field: &'static str| {
        view! { <span class="field-error" data-field=field>{error_for(field)}</span> }
    };
    let input = move |id: &'static str,
                      label: &'static str,
                      sig: RwSignal<String>,
                      field: &'static str,
                      placeholder: &'static str| {
        view! {
            <label class="field">
                <span>{label}</span>
                <input id=id prop:value=move || sig.get() placeholder=placeholder
                    class:invalid=move || !error_for(field)().is_empty()
                    on:input=move |ev| sig.set(event_target_value(&ev))/>
                {field_error(field)}
            </label>
        }
    };
    // A path field with a button that opens the native folder chooser.
    let folder = move |id: &'static str,
                       label: &'static str,
                       sig: RwSignal<String>,
                       field: &'static str,
                       placeholder: &'static str,
                       title: &'static str| {
        view! {
            <label class="field">
                <span>{label}</span>
                <span class="with-button">
                    <input id=id prop:value=move || sig.get() placeholder=placeholder
                        class:invalid=move || !error_for(field)().is_empty()
                        on:input=move |ev| sig.set(event_target_value(&ev))/>
                    <button id=format!("{id}-browse") on:click=move |ev| {
                        ev.prevent_default();
                        let start = sig.get_untracked();
                        spawn_local(async move {
                            match api::pick_folder(title, &start).await {
                                Ok(Some(path)) => sig.set(path),
                                Ok(None) => {}
                                Err(e) => general.set(Some(e.message)),
                            }
                        });
                    }>"Browse\u{2026}"</button>
                </span>
                {field_error(field)}
            </label>
        }
    };
    let check = |id: &'static str, label: &'static str, sig: RwSignal<bool>| {
        view! {
            <label class="check">
                <input id=id type="checkbox" prop:checked=move || sig.get()
                    on:change=move |ev| sig.set(event_target_checked(&ev))/>
                {label}
            </label>
        }
    };
    // Set once the instance exists (an edit, or a new one saved while its
    // key could not be): the next Save updates it instead of adding another.
    let saved_id = RwSignal::new(edit_id.clone());
    let save = move |_| {
        let id_now = saved_id.get_untracked();
        let config = match form.to_config(id_now.as_deref().unwrap_or("")) {
            Ok(c) => c,
            Err(e) => {
                errors.set(e);
                general.set(Some("Fix the fields marked in red.".into()));
                return;
            }
        };
        let key_change = form.key_change();
        let secrets = form.typed_secrets();
        let in_file = form.key_in_file.get_untracked();
        saving.set(true);
        spawn_local(async move {
            let result = match &id_now {
                Some(id) => api::update_instance(id, &patch_of(config)).await,
                None => api::create_instance(&config).await,
            };
            let inst = match result {
                Ok(i) => i,
                Err(e) => {
                    saving.set(false);
                    general.set(Some(e.message));
                    errors.set(e.fields);
                    return;
                }
            };
            saved_id.set(Some(inst.id.clone()));
            if let Some(key) = key_change {
                if let Err(e) = api::set_api_key(&inst.id, key.as_deref(), in_file).await {
                    saving.set(false);
                    general.set(Some(format!(
                        "The settings were saved, the API key was not: {}",
                        e.message
                    )));
                    errors.set(e.fields);
                    return;
                }
                form.api_key.set(String::new());
            }
            for (name, value) in &secrets {
                if let Err(e) = api::set_secret_env(&inst.id, name, Some(value), in_file).await {
                    saving.set(false);
                    general.set(Some(format!(
                        "The settings were saved, the secret value of {name} was not: {}",
                        e.message
                    )));
                    errors.set(e.fields);
                    return;
                }
            }
            saving.set(false);
            fleet.editor.set(None);
        });
    };
    let test_connection = move |_| {
        let Ok(config) = form.to_config("test") else {
            test.set(Some(Err("Fix the fields marked in red first.".into())));
            return;
        };
        test.set(None);
        let typed = form.api_key.get_untracked().trim().to_string();
        spawn_local(async move {
            let key = (!typed.is_empty()).then_some(typed.as_str());
            test.set(Some(
                api::test_connection(&config, key)
                    .await
                    .map_err(|e| e.message),
            ));
        });
    };
    view! {
        <div class="modal-backdrop">
            <div class="dialog editor" id="instance-editor" role="dialog">
                <h2>{title}</h2>
                <fieldset>
                    <legend>"Basic settings"</legend>
                    {input("editor-name", "Name", form.name, "name", "GPU 0")}
                    {input("editor-description", "Description", form.description, "description", "what it is for")}
                    {input("editor-host", "Host", form.host, "host", "localhost")}
                    {input("editor-port", "Port", form.port, "port", "8188")}
                    <button id="editor-suggest-port" on:click=suggest>"Use the next free port"</button>
                    {check("editor-https", "HTTPS (behind a proxy)", form.https)}
                </fieldset>
                <fieldset>
                    <legend>"Resources"</legend>
                    <label class="field">
                        <span>"GPU"</span>
                        <select id="editor-gpu" class:invalid=move || !error_for("gpuDevice")().is_empty()
                            on:change=move |ev| form.gpu.set(event_target_value(&ev))>
                            {move || gpu_choices(gpus.get().as_ref(), &form.gpu.get_untracked()).into_iter().map(|(value, label)| {
                                let selected = value == form.gpu.get_untracked();
                                view! { <option value=value selected=selected>{label}</option> }
                            }).collect_view()}
                        </select>
                        {field_error("gpuDevice")}
                    </label>
                    <p class="muted" id="editor-gpu-hint">
                        {move || gpus.get().and_then(|g| g.unavailable)}
                    </p>
                    <div class="field">
                        <span>"Environment variables"</span>
                        <div class="env-editor" id="editor-env">
                            <For each=move || form.env.get() key=|r| r.n children=move |r| view! {
                                <div class="env-row">
                                    <input class="env-key" placeholder="NAME" prop:value=move || r.key.get()
                                        on:input=move |ev| r.key.set(event_target_value(&ev))/>
                                    <span>"="</span>
                                    <input class="env-value" prop:value=move || r.value.get()
                                        prop:type=move || if r.secret.get() { "password" } else { "text" }
                                        placeholder=if r.stored { "stored in the keyring: type to replace" } else { "value" }
                                        on:input=move |ev| r.value.set(event_target_value(&ev))/>
                                    <label class="env-secret" title="Keep the value in the OS keyring, not in the instances file">
                                        <input type="checkbox" class="env-secret-check" prop:checked=move || r.secret.get()
                                            on:change=move |ev| r.secret.set(event_target_checked(&ev))/>
                                        "secret"
                                    </label>
                                    <button class="env-remove" title="Remove this variable"
                                        on:click=move |_| form.env.update(|v| v.retain(|x| x.n != r.n))>"\u{2715}"</button>
                                </div>
                            }/>
                            <button id="editor-env-add" on:click=move |_| form.env.update(|v| v.push(EnvRow::new("", "")))>"Add variable"</button>
                        </div>
                        {field_error("envVars")}
                        {check("editor-allow-risky-env", "Allow PYTHONPATH, PYTHONHOME, PYTHONSTARTUP and LD_LIBRARY_PATH (they change which code ComfyUI runs)", form.allow_risky_env)}
                    </div>
                    {folder("editor-comfyui-path", "ComfyUI folder (local instances)", form.comfyui_path, "comfyuiPath", "/home/me/ComfyUI", "Choose the ComfyUI folder")}
                    {input("editor-python-path", "Python interpreter", form.python_path, "pythonPath", "/home/me/ComfyUI/venv/bin/python")}
                    {folder("editor-custom-nodes", "Custom nodes folder", form.custom_nodes, "customNodesPath", "", "Choose the custom nodes folder")}
                    {input("editor-max-concurrent", "Max concurrent workflows", form.max_concurrent, "maxConcurrentWorkflows", "1")}
                </fieldset>
                <fieldset>
                    <legend>"Remote access"</legend>
                    <label class="field">
                        <span>"API key (kept in the OS keyring, never in a file)"</span>
                        <input id="editor-api-key" type="password" autocomplete="off"
                            placeholder=if form.api_key_ref.with_value(Option::is_some) { "a key is stored: type a new one to replace it" } else { "none" }
                            prop:value=move || form.api_key.get()
                            class:invalid=move || !error_for("apiKey")().is_empty()
                            on:input=move |ev| form.api_key.set(event_target_value(&ev))/>
                        {field_error("apiKey")}
                    </label>
                    <label class="field">
                        <span>"Sent as"</span>
                        <select id="editor-api-key-auth" class:invalid=move || !error_for("apiKeyAuth")().is_empty()
                            on:change=move |ev| form.key_auth.set(event_target_value(&ev))>
                            {[("bearer", "Authorization: Bearer <key>"), ("basic", "HTTP basic auth (key written user:password)"), ("header", "A header of its own")]
                                .into_iter().map(|(value, label)| {
                                    let selected = value == form.key_auth.get_untracked();
                                    view! { <option value=value selected=selected>{label}</option> }
                                }).collect_view()}
                        </select>
                        {field_error("apiKeyAuth")}
                    </label>
                    <Show when=move || form.key_auth.get() == "header">
                        {input("editor-api-key-header", "Header name", form.key_header, "apiKeyAuth", "X-API-Key")}
                    </Show>
                    {check("editor-api-key-file", "No keyring on this machine: keep the key and secret values in a file readable only by me", form.key_in_file)}
                    {form.api_key_ref.with_value(Option::is_some).then(|| check("editor-api-key-remove", "Remove the stored key", form.key_remove))}
                    {input("editor-ca-file", "CA certificate (PEM) for HTTPS with a self-signed certificate", form.ca_file, "caFile", "/home/me/comfy-ca.pem")}
                </fieldset>
                <fieldset>
                    <legend>"Runtime"</legend>
                    {input("editor-timeout", "Timeout (ms)", form.timeout, "timeoutMs", "300000")}
                    {input("editor-start-timeout", "Start timeout (ms, empty: 5 min local, 1 min attached)", form.start_timeout, "startTimeoutMs", "300000")}
                    {check("editor-queue-monitoring", "Enable queue monitoring", form.queue_monitoring)}
                    {check("editor-auto-start", "Start when the app starts", form.auto_start)}
                </fieldset>
                <div class="test-connection">
                    <button id="editor-test" on:click=test_connection>"Test connection"</button>
                    <span id="test-connection-result">
                        {move || test.get().map(|r| match r {
                            Ok(t) => {
                                let cls = if t.outcome == ConnectionOutcome::Reached { "ok" } else { "error" };
                                let devices = t.devices.iter()
                                    .map(|d| format!("{} ({} free of {})", d.name, bytes(d.vram_free), bytes(d.vram_total)))
                                    .collect::<Vec<_>>().join(", ");
                                view! { <span class=cls>{t.message}{(!devices.is_empty()).then(|| format!(" \u{2014} {devices}"))}</span> }.into_any()
                            }
                            Err(e) => view! { <span class="error">{e}</span> }.into_any(),
                        })}
                    </span>
                </div>
                <p class="error" id="editor-error">{move || general.get().unwrap_or_default()}</p>
                <div class="dialog-buttons">
                    <button id="editor-cancel" on:click=move |_| fleet.editor.set(None)>"Cancel"</button>
                    <button class="primary" id="editor-save" disabled=move || saving.get() on:click=save>"Save"</button>
                </div>
            </div>
        </div>
    }
}

/// The GPU dropdown's (value, label) pairs: the default, each GPU NVML
/// lists, the CPU, and the current value when it is none of those (cuda:N).
fn gpu_choices(list: Option<&storycore_types::GpuList>, current: &str) -> Vec<(String, String)> {
    let mut out = vec![(String::new(), "Default (ComfyUI picks)".to_string())];
    out.push((
        "auto".into(),
        "Automatic (the GPU with the most free memory)".into(),
    ));
    if let Some(l) = list {
        for d in &l.gpus {
            out.push((
                d.index.to_string(),
                format!(
                    "GPU {}: {} ({} free of {})",
                    d.index,
                    d.name,
                    bytes(d.memory_free_bytes),
                    bytes(d.memory_total_bytes)
                ),
            ));
        }
    }
    out.push(("cpu".into(), "CPU only".into()));
    if !current.is_empty() && !out.iter().any(|(v, _)| v == current) {
        out.push((current.to_string(), format!("{current} (as configured)")));
    }
    out
}
